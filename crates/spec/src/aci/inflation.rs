//! A limit on what an archive inflates to, checked as it inflates: the
//! bytes a decompressor really produced against the compressed bytes it
//! really consumed, and against a ceiling. Headers, extended (PAX, GNU
//! long-name) records, entry data and anything after the tar's end all
//! count: nothing in the stream is declared rather than measured.
//!
//! The tar reader holds an extended record (PAX, GNU long name or link)
//! in memory whole before the entry it describes: every 512-byte block of
//! the stream that is a valid tar header of such a record is looked at as
//! it passes, and one larger than [`MAX_EXTENSION`] is refused before the
//! tar reader reads it — wherever it stands (no tracking of the archive's
//! structure that an archive could lead astray).

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

/// What an archive may inflate to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the decompressor may produce.
    pub max_bytes: u64,
    /// Most bytes produced per compressed byte consumed, checked once more
    /// than `grace` bytes came out (small runs of zeros are harmless).
    pub max_ratio: u64,
    pub grace: u64,
}

/// The largest extended record (PAX header, GNU long name or link) taken:
/// real ones are a few hundred bytes, a path at most 4 KiB.
pub const MAX_EXTENSION: u64 = 1 << 20;

/// Why `block` (512 bytes at a block boundary of the stream) is refused:
/// a valid tar header of an extended record larger than [`MAX_EXTENSION`].
fn oversized_extension(block: &[u8; 512]) -> Option<String> {
    let header = tar::Header::from_byte_slice(block);
    let kind = header.entry_type();
    let extension = kind.is_pax_global_extensions()
        || kind.is_pax_local_extensions()
        || kind.is_gnu_longname()
        || kind.is_gnu_longlink();
    if !extension && !kind.is_gnu_sparse() {
        return None;
    }
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    if header.cksum().ok() != Some(computed) {
        return None;
    }
    if kind.is_gnu_sparse() {
        // The tar reader follows a sparse entry's extension blocks as
        // long as they say more follow, keeping each: no image has one
        // (they are refused as entries too).
        let path = String::from_utf8_lossy(&header.path_bytes())
            .escape_debug()
            .to_string();
        return Some(format!(
            "a GNU sparse file ({path}): images hold no sparse entries"
        ));
    }
    let size = header.entry_size().ok()?;
    (size > MAX_EXTENSION).then(|| {
        format!(
            "a tar extended record (PAX or long name) of {size} bytes: more than {MAX_EXTENSION} is no real archive's"
        )
    })
}

/// No limit on what a stream inflates to (only the watch on extended
/// records stays).
pub(crate) const UNLIMITED: Limits = Limits {
    max_bytes: u64::MAX,
    max_ratio: u64::MAX,
    grace: u64::MAX,
};

/// A decompressed tar stream watched for what the tar reader would hold
/// in memory whole: an extended record larger than [`MAX_EXTENSION`], or
/// a GNU sparse header. The read that meets one fails, saying why. For tar
/// streams with no inflation limits of their own (an audited file, an OCI
/// archive) or with theirs elsewhere (docker layers).
pub struct ExtensionWatch<R>(Guarded<R>);

impl<R: Read> ExtensionWatch<R> {
    pub fn new(tar_stream: R) -> Self {
        ExtensionWatch(Guarded::new(
            tar_stream,
            Rc::new(Cell::new(0)),
            UNLIMITED,
            Rc::new(RefCell::new(None)),
        ))
    }
}

impl<R: Read> Read for ExtensionWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// Counts the compressed bytes a decompressor consumes.
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// Where a [`Guarded`] reader says why it stopped.
pub(crate) type Verdict = Rc<RefCell<Option<String>>>;

/// The decompressor's output, refused past the [`Limits`]: the read that
/// crosses one fails, and `verdict` says why (the error that reaches the
/// tar reader is only a carrier).
pub(crate) struct Guarded<R> {
    pub(crate) inner: R,
    pub(crate) compressed: Rc<Cell<u64>>,
    pub(crate) produced: u64,
    pub(crate) limits: Limits,
    pub(crate) verdict: Verdict,
    /// The block being filled (its first `produced % 512` bytes).
    pub(crate) block: Box<[u8; 512]>,
}

impl<R: Read> Guarded<R> {
    /// Guards `inner`, whose input `compressed` counts.
    pub(crate) fn new(
        inner: R,
        compressed: Rc<Cell<u64>>,
        limits: Limits,
        verdict: Verdict,
    ) -> Self {
        Guarded {
            inner,
            compressed,
            produced: 0,
            limits,
            verdict,
            block: Box::new([0; 512]),
        }
    }

    /// Looks at each block `out` completes (`out` follows the
    /// `produced` bytes already seen).
    fn scan(&mut self, out: &[u8]) -> Option<String> {
        let mut at = (self.produced % 512) as usize;
        let mut rest = out;
        while !rest.is_empty() {
            if at == 0 && rest.len() >= 512 {
                let (block, tail) = rest.split_at(512);
                if let Ok(block) = <&[u8; 512]>::try_from(block)
                    && let Some(why) = oversized_extension(block)
                {
                    return Some(why);
                }
                rest = tail;
                continue;
            }
            let take = rest.len().min(512 - at);
            self.block[at..at + take].copy_from_slice(&rest[..take]);
            at += take;
            rest = &rest[take..];
            if at == 512 {
                if let Some(why) = oversized_extension(&self.block) {
                    return Some(why);
                }
                at = 0;
            }
        }
        None
    }

    fn judge(&self) -> Option<String> {
        let Limits {
            max_bytes,
            max_ratio,
            grace,
        } = self.limits;
        let compressed = self.compressed.get().max(1);
        if self.produced > max_bytes {
            return Some(format!(
                "the image inflates to more than {max_bytes} bytes (skiff fetch --max-image-size=BYTES takes a larger one)"
            ));
        }
        if self.produced > grace && self.produced / compressed > max_ratio {
            return Some(format!(
                "decompression bomb: {} bytes inflated from {compressed} compressed bytes, more than {max_ratio} times (skiff fetch --max-decompression-ratio=N takes a larger ratio)",
                self.produced
            ));
        }
        None
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(why) = self.verdict.borrow().as_ref() {
            return Err(io::Error::other(why.clone()));
        }
        let n = self.inner.read(buf)?;
        let scanned = self.scan(&buf[..n]);
        self.produced = self.produced.saturating_add(n as u64);
        if let Some(why) = scanned.or_else(|| self.judge()) {
            *self.verdict.borrow_mut() = Some(why.clone());
            return Err(io::Error::other(why));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guarded(
        data: Vec<u8>,
        compressed: u64,
        limits: Limits,
    ) -> (Guarded<io::Cursor<Vec<u8>>>, Verdict) {
        let verdict = Rc::new(RefCell::new(None));
        let g = Guarded::new(
            io::Cursor::new(data),
            Rc::new(Cell::new(compressed)),
            limits,
            verdict.clone(),
        );
        (g, verdict)
    }

    #[test]
    fn the_ratio_and_the_ceiling_stop_the_stream_as_it_inflates() {
        let limits = Limits {
            max_bytes: 10_000,
            max_ratio: 10,
            grace: 100,
        };
        // 1000 bytes from 50 compressed: 20 times, past the grace.
        let (mut g, verdict) = guarded(vec![0; 1000], 50, limits);
        assert!(io::copy(&mut g, &mut io::sink()).is_err());
        assert!(
            verdict
                .borrow()
                .as_ref()
                .is_some_and(|v| v.contains("--max-decompression-ratio"))
        );
        // The same from 500 compressed: 2 times.
        let (mut g, _) = guarded(vec![0; 1000], 500, limits);
        assert_eq!(io::copy(&mut g, &mut io::sink()).unwrap(), 1000);
        // Past the ceiling whatever the ratio.
        let (mut g, verdict) = guarded(vec![7; 20_000], 20_000, limits);
        assert!(io::copy(&mut g, &mut io::sink()).is_err());
        assert!(
            verdict
                .borrow()
                .as_ref()
                .is_some_and(|v| v.contains("--max-image-size"))
        );
    }

    /// A tar with an extended record of `size` bytes before `manifest`.
    fn tar_with_extension(kind: tar::EntryType, size: usize) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut ext = tar::Header::new_ustar();
        ext.set_entry_type(kind);
        ext.set_path("ext").unwrap();
        ext.set_size(size as u64);
        ext.set_cksum();
        // One PAX record of exactly `size` bytes: "SIZE comment=xx…x\n".
        let mut data = format!("{size} comment=").into_bytes();
        data.resize(size - 1, b'x');
        data.push(b'\n');
        builder.append(&ext, data.as_slice()).unwrap();
        let mut file = tar::Header::new_ustar();
        file.set_path("manifest").unwrap();
        file.set_size(2);
        file.set_mode(0o644);
        file.set_cksum();
        builder.append(&file, &b"{}"[..]).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn the_watch_stops_a_tar_reader_at_an_oversized_record_and_passes_the_rest() {
        let read_all = |bytes: Vec<u8>| -> Result<Vec<String>, String> {
            let mut archive = tar::Archive::new(ExtensionWatch::new(bytes.as_slice()));
            let mut names = Vec::new();
            for entry in archive.entries().map_err(|e| e.to_string())? {
                let entry = entry.map_err(|e| e.to_string())?;
                names.push(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
            }
            Ok(names)
        };
        let big = (MAX_EXTENSION + 1) as usize;
        let err = read_all(tar_with_extension(tar::EntryType::XHeader, big)).unwrap_err();
        assert!(err.contains("extended record"), "{err}");
        let err = read_all(tar_with_extension(tar::EntryType::GNUSparse, 100)).unwrap_err();
        assert!(err.contains("sparse"), "{err}");
        assert_eq!(
            read_all(tar_with_extension(tar::EntryType::XHeader, 600)),
            Ok(vec!["manifest".to_string()])
        );
    }

    #[test]
    fn oversized_extended_records_are_refused_before_the_tar_reader_holds_them() {
        for kind in [
            tar::EntryType::XHeader,
            tar::EntryType::XGlobalHeader,
            tar::EntryType::GNULongName,
            tar::EntryType::GNULongLink,
        ] {
            let big = tar_with_extension(kind, (MAX_EXTENSION + 1) as usize);
            // Read in odd-sized pieces: block boundaries fall mid-read.
            let (g, verdict) = guarded(
                big,
                1 << 40,
                Limits {
                    max_bytes: u64::MAX,
                    max_ratio: u64::MAX,
                    grace: u64::MAX,
                },
            );
            let mut reader = io::BufReader::with_capacity(333, g);
            assert!(io::copy(&mut reader, &mut io::sink()).is_err(), "{kind:?}");
            assert!(
                verdict
                    .borrow()
                    .as_ref()
                    .is_some_and(|v| v.contains("extended record")),
                "{kind:?}"
            );
            let bytes = tar_with_extension(kind, (MAX_EXTENSION + 1) as usize);
            let err = crate::aci::read_manifest_bytes(bytes.as_slice()).unwrap_err();
            assert!(err.to_string().contains("extended record"), "{err}");
        }
        // A GNU sparse header, whatever its size.
        let sparse = tar_with_extension(tar::EntryType::GNUSparse, 100);
        let err = crate::aci::read_manifest_bytes(sparse.as_slice()).unwrap_err();
        assert!(err.to_string().contains("sparse"), "{err}");
        // A real-sized record passes.
        let small = tar_with_extension(tar::EntryType::XHeader, 100);
        assert_eq!(
            crate::aci::read_manifest_bytes(small.as_slice()).unwrap(),
            b"{}"
        );
    }
}

//! A limit on what an archive inflates to, checked as it inflates: the
//! bytes a decompressor really produced against the compressed bytes it
//! really consumed, and against a ceiling. Headers, extended (PAX, GNU
//! long-name) records, entry data and anything after the tar's end all
//! count: nothing in the stream is declared rather than measured.

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
}

impl<R: Read> Guarded<R> {
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
        self.produced = self.produced.saturating_add(n as u64);
        if let Some(why) = self.judge() {
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
        let g = Guarded {
            inner: io::Cursor::new(data),
            compressed: Rc::new(Cell::new(compressed)),
            produced: 0,
            limits,
            verdict: verdict.clone(),
        };
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
}

//! Dependencies compiled into binaries: the `.go.buildinfo` section of a
//! Go executable (Go 1.18 and later: the Go version, the main module and
//! every dependency) and the `.dep-v0` section `cargo auditable` puts in
//! Rust executables (zlib-compressed JSON of the crates).

use crate::{Ecosystem, Package};

const MAGIC: &[u8] = b"\xff Go buildinf:";

fn u16_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    )))
}
fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    )))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The bytes of section `name` of a 64-bit little-endian ELF file.
pub(crate) fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if elf.get(..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let shoff = usize::try_from(u64_at(elf, 0x28)?).ok()?;
    let shentsize = usize::try_from(u16_at(elf, 0x3a)?).ok()?;
    let shnum = usize::try_from(u16_at(elf, 0x3c)?).ok()?;
    let shstrndx = usize::try_from(u16_at(elf, 0x3e)?).ok()?;
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    // Offsets come from the file: every sum is checked (a file may put a
    // header at the end of the address space).
    let strtab_off = usize::try_from(u64_at(elf, header(shstrndx)?.checked_add(0x18)?)?).ok()?;
    for i in 0..shnum.min(4096) {
        let h = header(i)?;
        let name_off = usize::try_from(u32_at(elf, h)?).ok()?;
        let start = strtab_off.checked_add(name_off)?;
        let end = start.checked_add(elf.get(start..)?.iter().position(|&c| c == 0)?)?;
        if elf.get(start..end)? == name.as_bytes() {
            let off = usize::try_from(u64_at(elf, h.checked_add(0x18)?)?).ok()?;
            let size = usize::try_from(u64_at(elf, h.checked_add(0x20)?)?).ok()?;
            return elf.get(off..off.checked_add(size)?);
        }
    }
    None
}

/// A uvarint-prefixed string at `at`; returns it and the next offset.
fn varint_string(b: &[u8], mut at: usize) -> Option<(String, usize)> {
    let (mut len, mut shift) = (0usize, 0u32);
    loop {
        let byte = *b.get(at)?;
        at += 1;
        len |= usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 35 {
            return None;
        }
    }
    let s = b.get(at..at.checked_add(len)?)?;
    Some((String::from_utf8_lossy(s).into_owned(), at + len))
}

/// The Go toolchain (as package `stdlib`) and modules of an ELF binary.
pub fn modules(elf: &[u8]) -> Vec<Package> {
    let Some(info) = elf_section(elf, ".go.buildinfo") else {
        return Vec::new();
    };
    // Go 1.18+: flags bit 2 means the strings follow the 32-byte header.
    if info.get(..MAGIC.len()) != Some(MAGIC) || info.get(15).is_none_or(|f| f & 2 == 0) {
        return Vec::new();
    }
    let Some((version, next)) = varint_string(info, 32) else {
        return Vec::new();
    };
    let modinfo = varint_string(info, next)
        .map(|(m, _)| m)
        .unwrap_or_default();
    let package = |name: &str, version: &str| Package {
        ecosystem: Ecosystem::Go,
        name: name.to_string(),
        version: version.to_string(),
        arch: None,
        source: None,
    };
    let mut out = Vec::new();
    if let Some(v) = version.strip_prefix("go") {
        out.push(package("stdlib", v));
    }
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let ["mod" | "dep", path, version, ..] = f.as_slice()
            && *version != "(devel)"
        {
            out.push(package(path, version));
        }
    }
    out
}

/// The crates of a Rust binary built with `cargo auditable`.
pub fn crates(elf: &[u8]) -> Vec<Package> {
    use std::io::Read;
    let Some(section) = elf_section(elf, ".dep-v0") else {
        return Vec::new();
    };
    let mut json = Vec::new();
    let decoder = flate2::read::ZlibDecoder::new(section);
    // The section is small; a bomb stops at 16 MiB.
    if decoder.take(16 << 20).read_to_end(&mut json).is_err() {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json) else {
        return Vec::new();
    };
    v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        // Build-time-only crates are not in the binary.
        .filter(|p| p["kind"].as_str() != Some("build"))
        .filter_map(|p| {
            Some(Package {
                ecosystem: Ecosystem::Crates,
                name: p["name"].as_str()?.to_string(),
                version: p["version"].as_str()?.to_string(),
                arch: None,
                source: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `cargo xtask fuzz` (audit_elf): section headers at the end
    /// of the address space overflowed an offset sum.
    #[test]
    fn section_headers_at_the_end_of_the_address_space_are_no_section() {
        let crash = "7f454c460201010000000100000000000000000000020101000000010000000000000000000000ffffffffffffffffffffffffffff00000000000000000000000000ffffffffffffffffffffffffffff000000000000000000000000000000200000000000ffffffffffffffff30ffffffffffffffffffffff25ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0000000000007f";
        let bytes: Vec<u8> = (0..crash.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&crash[i..i + 2], 16).unwrap())
            .collect();
        assert!(modules(&bytes).is_empty());
        assert!(crates(&bytes).is_empty());
        assert_eq!(u64_at(&[0; 8], usize::MAX - 3), None);
    }

    #[test]
    fn varints_and_non_go_files() {
        assert_eq!(varint_string(b"\x03abc", 0), Some(("abc".into(), 4)));
        assert!(modules(b"not an elf").is_empty());
        assert!(modules(&std::fs::read("/proc/self/exe").unwrap_or_default()).is_empty());
    }
}

//! What `/proc/<pid>/cmdline` and `/proc/<pid>/environ` show of this
//! process: the kernel reads both from the argument and environment
//! areas at the top of its stack, which hold what the program was started
//! with — and which a fork copies. [`show`] overwrites them.

use std::io::{Seek, SeekFrom, Write};

/// Overwrites this process's argument area with `argv` and, given `env`,
/// its environment area with those `NAME=VALUE` entries: each as many
/// whole entries (NUL-terminated) as fit, the rest of the area zeros, so
/// nothing of what was there before is left. The areas keep their size
/// (moving them needs CAP_SYS_RESOURCE). Best effort: a process whose
/// /proc cannot be read or written keeps what it shows.
pub fn show(argv: &[&[u8]], env: Option<&[Vec<u8>]>) {
    // arg_start, arg_end, env_start and env_end are fields 48 to 51 of
    // /proc/self/stat.
    let Some(fields) = crate::proc_stat("self") else {
        return;
    };
    let area = |start: usize, end: usize| {
        let (&start, &end) = (fields.get(start)?, fields.get(end)?);
        Some((start, usize::try_from(end.checked_sub(start)?).ok()?))
    };
    // Our own memory, through the kernel (no pointer into it is held).
    let Ok(mut mem) = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
    else {
        return;
    };
    let mut write = |(start, len): (u64, usize), entries: &[&[u8]]| {
        let _ = mem
            .seek(SeekFrom::Start(start))
            .and_then(|_| mem.write_all(&filled(entries, len)));
    };
    if let Some(args) = area(48, 49) {
        write(args, argv);
    }
    if let (Some(env), Some(entries)) = (area(50, 51), env) {
        let entries: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        write(env, &entries);
    }
}

/// `len` bytes: as many of `entries` as fit, each followed by a NUL, then
/// zeros. An entry with a NUL inside ends there (the kernel would show it
/// as two).
fn filled(entries: &[&[u8]], len: usize) -> Vec<u8> {
    let mut area = Vec::with_capacity(len);
    for entry in entries {
        let entry = entry.split(|&b| b == 0).next().unwrap_or_default();
        if area.len() + entry.len() + 1 > len {
            break;
        }
        area.extend_from_slice(entry);
        area.push(0);
    }
    area.resize(len, 0);
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_entries_that_fit_then_zeros() {
        assert_eq!(filled(&[b"ab", b"cd"], 8), b"ab\0cd\0\0\0");
        // "cd" would need 3 more bytes than the 5 there are.
        assert_eq!(filled(&[b"abc", b"cd"], 5), b"abc\0\0");
        assert_eq!(filled(&[b"abcdef"], 4), b"\0\0\0\0");
        assert_eq!(filled(&[b"a\0b"], 4), b"a\0\0\0");
        assert!(filled(&[b"x"], 0).is_empty());
    }
}

//! What `/proc/<pid>/cmdline` and `/proc/<pid>/environ` show of this
//! process: the kernel reads both from the argument and environment
//! areas at the top of its stack, which hold what the program was started
//! with — and which a fork copies. [`Areas::show`] overwrites them.

use std::io::{Seek, SeekFrom, Write};

/// This process's argument and environment areas, open for overwriting.
pub struct Areas {
    mem: std::fs::File,
    /// Where each starts and how long it is.
    args: (u64, usize),
    env: (u64, usize),
}

impl Areas {
    /// Those of this process (from /proc/self/stat and /proc/self/mem).
    pub fn of_this_process() -> std::io::Result<Areas> {
        let fields = crate::proc_stat("self")
            .ok_or_else(|| std::io::Error::other("cannot read /proc/self/stat"))?;
        Areas::of(&fields)
    }

    /// Those of this process, whose /proc/self/stat says `fields`
    /// ([`crate::proc_stat`]).
    pub fn of(fields: &[u64]) -> std::io::Result<Areas> {
        let unknown = || std::io::Error::other("/proc/self/stat does not say where they are");
        // arg_start, arg_end, env_start and env_end are fields 48 to 51.
        let area = |start: usize, end: usize| {
            let (&start, &end) = (fields.get(start)?, fields.get(end)?);
            Some((start, usize::try_from(end.checked_sub(start)?).ok()?))
        };
        // Our own memory, through the kernel (no pointer into it is held).
        let mem = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/mem")?;
        Ok(Areas {
            mem,
            args: area(48, 49).ok_or_else(unknown)?,
            env: area(50, 51).ok_or_else(unknown)?,
        })
    }

    /// Overwrites the argument area with `argv` and, given `env`, the
    /// environment area with those `NAME=VALUE` entries: each as many
    /// whole entries (NUL-terminated) as fit, the rest of the area zeros,
    /// so nothing of what was there before is left. The areas keep their
    /// size (moving them needs CAP_SYS_RESOURCE).
    pub fn show(&mut self, argv: &[&[u8]], env: Option<&[Vec<u8>]>) -> std::io::Result<()> {
        let (start, len) = self.args;
        self.write(start, &filled(argv, len))?;
        if let Some(env) = env {
            let entries: Vec<&[u8]> = env.iter().map(Vec::as_slice).collect();
            let (start, len) = self.env;
            self.write(start, &filled(&entries, len))?;
        }
        Ok(())
    }

    fn write(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.mem.seek(SeekFrom::Start(at))?;
        self.mem.write_all(bytes)
    }
}

/// [`Areas::show`] for this process, best effort: one whose /proc cannot
/// be read or written keeps what it shows.
pub fn show(argv: &[&[u8]], env: Option<&[Vec<u8>]>) {
    if let Ok(mut areas) = Areas::of_this_process() {
        let _ = areas.show(argv, env);
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

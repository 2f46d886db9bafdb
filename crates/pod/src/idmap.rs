//! The id maps of this process's user namespace (`/proc/self/uid_map`,
//! `gid_map`), for stage0 and stage1 to tell root of the host from root of
//! an ordinary user's namespace, with subordinate ids or a single id
//! (docs/rootless.md). (The store, below this crate, reads the ranges it
//! may give files to itself: `Owners` in crates/store/src/render.rs.)

/// One line of a map: `count` ids from `inside` in the namespace are
/// `outside` onwards in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// Which of the two maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    Uid,
    Gid,
}

/// The ranges of a map's text (lines that do not parse are skipped).
pub fn parse(map: &str) -> Vec<IdRange> {
    map.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some(IdRange {
                inside: f.next()??,
                outside: f.next()??,
                count: f.next()??,
            })
        })
        .collect()
}

/// This process's map (empty if it cannot be read).
pub fn of_this_process(ids: Ids) -> Vec<IdRange> {
    let file = match ids {
        Ids::Uid => "/proc/self/uid_map",
        Ids::Gid => "/proc/self/gid_map",
    };
    parse(&std::fs::read_to_string(file).unwrap_or_default())
}

/// How many ids a map has.
pub fn total(map: &[IdRange]) -> u64 {
    map.iter().map(|r| u64::from(r.count)).sum()
}

/// Whether a map is the initial user namespace's: every id, unshifted.
pub fn is_initial(map: &[IdRange]) -> bool {
    map == [IdRange {
        inside: 0,
        outside: 0,
        count: u32::MAX,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_of_the_host_of_a_user_and_of_a_single_id() {
        let host = parse("         0          0 4294967295\n");
        assert!(is_initial(&host));
        let user = parse("0 1000 1\n1 100000 65535\nbad\n");
        assert_eq!(user.len(), 2);
        assert!(!is_initial(&user));
        assert_eq!(total(&user), 65536);
        assert_eq!(total(&parse("0 1000 1\n")), 1);
    }
}

//! "Did you mean": the closest known option to a mistyped one, by clap's
//! own rule (Jaro similarity above 0.7), for the options clap cannot check
//! itself (`skiff run`'s per-image options come after each image).

/// The option of `known` (names without dashes) closest to `given`, if
/// one is close enough.
pub fn closest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro(given, k), k))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// skiff's long option for a short (or other runtime's) option that
/// docker and podman users type out of habit.
pub fn habit(given: &str) -> Option<&'static str> {
    Some(match given {
        "-e" | "--env" => "--set-env",
        "-v" => "--volume",
        "-p" | "--publish" => "--port",
        "-d" => "--detach",
        "-i" | "-t" | "-it" | "-ti" | "--tty" => "--interactive",
        "-u" => "--user",
        "-w" | "--workdir" => "--working-dir",
        "-m" => "--memory",
        "--cpus" => "--cpu",
        "--cap-add" => "--cap-retain",
        "--cap-drop" => "--cap-remove",
        "--read-only" => "--readonly-rootfs",
        "--entrypoint" => "--exec",
        "--env-file" => "--set-env-file",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_option_and_nonsense_finds_none() {
        let known = ["detach", "memory", "net", "set-env"];
        assert_eq!(closest("detatch", known), Some("detach"));
        assert_eq!(closest("memroy", known), Some("memory"));
        assert_eq!(closest("frobnicate", known), None);
        assert_eq!(habit("-e"), Some("--set-env"));
        assert_eq!(habit("-z"), None);
    }
}

//! Reviewing keys that discovery found, on the terminal.

use std::io::IsTerminal;

use skiff_fetch::{KeyCandidate, KeyReview};

use crate::format::printable;

/// Asks on the terminal before trusting a discovered key.
pub struct TerminalReview {
    pub skip: bool,
}

impl KeyReview for TerminalReview {
    fn approve(&self, key: &KeyCandidate) -> bool {
        // The key and the server chose these words: no terminal controls.
        eprintln!(
            "key for prefix {} from {}:",
            printable(&key.prefix),
            printable(&key.location)
        );
        eprintln!("  fingerprint {}", key.fingerprint);
        for uid in &key.user_ids {
            eprintln!("  user id     {}", printable(uid));
        }
        if self.skip {
            eprintln!("trusting it (--skip-fingerprint-review)");
            return true;
        }
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "not trusting it: no terminal to confirm on (pass --skip-fingerprint-review to accept)"
            );
            return false;
        }
        eprint!("Are you sure you want to trust this key (yes/no)? ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y")
    }
}

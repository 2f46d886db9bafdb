//! Address leases in the CNI host-local plugin's on-disk format, so the
//! built-in networks and host-local (older pods, CNI tools) share one pool:
//! `<dataDir>/<network>/<ip>` holds `<container id>\r\n<ifname>`,
//! `last_reserved_ip.<range>` the last address handed out, and `lock` is
//! held (flock) while the pool changes.

use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::subnet::Subnet;

const LAST_RESERVED: &str = "last_reserved_ip.";
const LOCK: &str = "lock";

/// One network's pool, locked while this is alive.
#[derive(Debug)]
pub struct Leases {
    dir: PathBuf,
    _lock: File,
}

impl Leases {
    /// Locks the pool of `network` under `data_dir` (created if missing).
    pub fn lock(data_dir: &Path, network: &str) -> io::Result<Leases> {
        if network.is_empty() || network.contains('/') || network.starts_with('.') {
            return Err(io::Error::other(format!("bad network name {network:?}")));
        }
        let dir = data_dir.join(network);
        std::fs::create_dir_all(&dir)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(Leases { dir, _lock: lock })
    }

    fn owner(id: &str, ifname: &str) -> String {
        format!("{}\r\n{ifname}", id.trim())
    }

    /// The lease files: `(address, content)`.
    fn entries(&self) -> io::Result<Vec<(IpAddr, String)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            // A lease file is tiny; anything else is not one of ours.
            let content = std::fs::read(entry.path()).unwrap_or_default();
            if content.len() <= 512 {
                found.push((ip, String::from_utf8_lossy(&content).into_owned()));
            }
        }
        Ok(found)
    }

    /// The addresses `id`'s interface `ifname` holds.
    pub fn held_by(&self, id: &str, ifname: &str) -> io::Result<Vec<IpAddr>> {
        let owner = Self::owner(id, ifname);
        Ok(self
            .entries()?
            .into_iter()
            .filter(|(_, c)| c.trim() == owner || c.trim() == id.trim())
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Reserves a free address of `subnet` (range set `range`) for `id`'s
    /// interface `ifname`: the one it already holds there, else the next
    /// free one after the last handed out, wrapping; never the network's
    /// address, the gateway or (IPv4) the broadcast address.
    pub fn reserve(
        &self,
        range: usize,
        subnet: &Subnet,
        id: &str,
        ifname: &str,
    ) -> io::Result<IpAddr> {
        if let Some(ip) = self
            .held_by(id, ifname)?
            .into_iter()
            .find(|ip| subnet.offset(ip).is_some())
        {
            return Ok(ip);
        }
        let last_file = self.dir.join(format!("{LAST_RESERVED}{range}"));
        let last = std::fs::read_to_string(&last_file)
            .ok()
            .and_then(|t| t.trim().parse::<IpAddr>().ok())
            .and_then(|ip| subnet.offset(&ip));
        // Positions 2..=last_host: 0 is the network, 1 the gateway.
        let (first, end) = (2u128, subnet.last_host());
        if end < first {
            return Err(io::Error::other(format!(
                "{subnet} has no address to hand out"
            )));
        }
        let start = match last {
            Some(n) if n >= first && n < end => n + 1,
            _ => first,
        };
        // The owner is written to a file of this process's own, which is
        // then linked in as the lease: a lease appears whole or not at
        // all, and exactly one of two pods linking the same address wins.
        let staged = self.dir.join(format!(".lease-{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        File::options()
            .write(true)
            .create_new(true)
            .open(&staged)?
            .write_all(Self::owner(id, ifname).as_bytes())?;
        let mut position = start;
        let found = loop {
            let Some(ip) = subnet.nth(position) else {
                break Err(io::Error::other("address out of range"));
            };
            match std::fs::hard_link(&staged, self.dir.join(ip.to_string())) {
                Ok(()) => break Ok(ip),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => break Err(e),
            }
            position = if position >= end { first } else { position + 1 };
            if position == start {
                break Err(io::Error::other(format!(
                    "no free address left in {subnet}"
                )));
            }
        };
        let _ = std::fs::remove_file(&staged);
        let ip = found?;
        // Replaced, not rewritten: a crash leaves the old value or the new.
        let next = self.dir.join(format!(".last-{}", std::process::id()));
        std::fs::write(&next, ip.to_string())?;
        std::fs::rename(&next, &last_file)?;
        Ok(ip)
    }

    /// Releases every address `id`'s interface `ifname` holds.
    pub fn release(&self, id: &str, ifname: &str) -> io::Result<()> {
        for ip in self.held_by(id, ifname)? {
            match std::fs::remove_file(self.dir.join(ip.to_string())) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_host_local_files_handed_out_in_turn_and_released_by_owner() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = Subnet::parse("10.9.0.0/29").unwrap();
        let pool = Leases::lock(dir.path(), "net").unwrap();
        let a = pool.reserve(0, &subnet, "pod-a", "eth0").unwrap();
        assert_eq!(a.to_string(), "10.9.0.2");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("net/10.9.0.2")).unwrap(),
            "pod-a\r\neth0"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("net/last_reserved_ip.0")).unwrap(),
            "10.9.0.2"
        );
        // Asking again gives the same address.
        assert_eq!(pool.reserve(0, &subnet, "pod-a", "eth0").unwrap(), a);
        let b = pool.reserve(0, &subnet, "pod-b", "eth0").unwrap();
        assert_eq!(b.to_string(), "10.9.0.3");
        pool.release("pod-a", "eth0").unwrap();
        assert!(!dir.path().join("net/10.9.0.2").exists());
        // After .3 come .4 … .6 (.7 is the broadcast address), then .2 again.
        let got: Vec<String> = ["c", "d", "e", "f"]
            .iter()
            .map(|id| pool.reserve(0, &subnet, id, "eth0").unwrap().to_string())
            .collect();
        assert_eq!(got, ["10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.0.2"]);
        assert!(pool.reserve(0, &subnet, "g", "eth0").is_err());
        assert!(!pool.entries().unwrap().is_empty());
        for id in ["pod-b", "c", "d", "e", "f"] {
            pool.release(id, "eth0").unwrap();
        }
        assert!(pool.entries().unwrap().is_empty());
    }

    #[test]
    fn a_host_local_lease_of_the_old_format_is_released_and_bad_names_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("n")).unwrap();
        std::fs::write(dir.path().join("n/10.9.0.5"), "old-pod").unwrap();
        let pool = Leases::lock(dir.path(), "n").unwrap();
        assert_eq!(pool.held_by("old-pod", "eth0").unwrap().len(), 1);
        pool.release("old-pod", "eth0").unwrap();
        assert!(pool.entries().unwrap().is_empty());
        assert!(Leases::lock(dir.path(), "../x").is_err());
        assert!(Leases::lock(dir.path(), "").is_err());
    }
}

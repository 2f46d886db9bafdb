//! The portmap plugin's host-wide chains. portmap makes `CNI-HOSTPORT-DNAT`,
//! `-SETMARK` and `-MASQ` (and the jumps to them from PREROUTING, OUTPUT
//! and POSTROUTING) on first use and never removes them. skiff removes them
//! when the last forwarded port is gone, so a host without pods has no
//! rule of ours. ADDs and this cleanup of skiff pods are serialised by a
//! host-wide lock; another CNI user of portmap that adds a port at the same
//! instant could race with it (its ADD would fail and can be retried).

use std::fs::File;
use std::process::Command;

use crate::{NetError, io_err};

const LOCK: &str = "/run/skiff/portmap.lock";

/// The jumps portmap adds to the built-in chains (chain, then the rule).
const JUMPS: &[&[&str]] = &[
    &[
        "PREROUTING",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "CNI-HOSTPORT-DNAT",
    ],
    &[
        "OUTPUT",
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "CNI-HOSTPORT-DNAT",
    ],
    &[
        "POSTROUTING",
        "-m",
        "comment",
        "--comment",
        "CNI portfwd requiring masquerade",
        "-j",
        "CNI-HOSTPORT-MASQ",
    ],
];

/// Holds the host-wide portmap lock while alive.
pub struct PortmapLock(#[allow(dead_code)] File);

/// Takes the lock (blocking).
pub fn lock() -> Result<PortmapLock, NetError> {
    std::fs::create_dir_all("/run/skiff").map_err(io_err("create /run/skiff"))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(io_err(format!("open {LOCK}")))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(format!("lock {LOCK}"))(e.into()))?;
    Ok(PortmapLock(file))
}

fn iptables(args: &[&str]) -> Option<String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(["-t", "nat"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes portmap's host-wide chains if no port is forwarded any more
/// (call with the lock held). Missing chains are fine.
pub fn remove_unused_chains(_lock: &PortmapLock) {
    let Some(dnat) = iptables(&["-S", "CNI-HOSTPORT-DNAT"]) else {
        return;
    };
    if dnat.lines().any(|l| l.starts_with("-A ")) {
        return;
    }
    for jump in JUMPS {
        let mut args = vec!["-D"];
        args.extend_from_slice(jump);
        // Every copy (other tools' repeated ADDs may have doubled one).
        while iptables(&args).is_some() {}
    }
    for chain in [
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-MASQ",
        "CNI-HOSTPORT-SETMARK",
    ] {
        iptables(&["-F", chain]);
        iptables(&["-X", chain]);
    }
}

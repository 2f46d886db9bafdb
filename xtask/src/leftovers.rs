//! What pods and tests can leave on the host, listed so a run can be
//! compared before and after: `cargo xtask test`'s final check, and the
//! crash torture (tests/e2e/torture.rs includes this file).

use std::path::Path;
use std::process::Command;

/// Mount points a host tool makes on first use and keeps until reboot:
/// `ip netns add` (tests/e2e/share.rs) bind-mounts /run/netns onto itself
/// the first time after boot. The namespaces mounted below it are still
/// listed.
const BOOT_MOUNTS: [&str; 1] = ["/run/netns"];

/// The host's mount points (from /proc/self/mountinfo), pod cgroups
/// (`skiff/<uuid>` in every hierarchy) and what pod networks make.
pub fn leftovers() -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| !BOOT_MOUNTS.contains(m))
        .map(|m| format!("mount {m}"))
        .collect();
    for hierarchy in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/devices",
        "/sys/fs/cgroup/unified",
    ] {
        for parent in ["skiff", "skiff-runtime"] {
            let dir = Path::new(hierarchy).join(parent);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    found.push(format!("cgroup {}", entry.path().display()));
                }
            }
        }
    }
    // Rootless tests' users (tests/e2e/users.rs): accounts, subordinate
    // ranges, homes.
    for file in ["/etc/passwd", "/etc/subuid", "/etc/subgid"] {
        for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
            if line.starts_with("skiff-e2e-") {
                found.push(format!("{file} {line}"));
            }
        }
    }
    for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("skiff-e2e-home-")
        {
            found.push(format!("home {}", entry.path().display()));
        }
    }
    // Loop devices (the power-loss torture's disk).
    for entry in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(file) = std::fs::read_to_string(entry.path().join("loop/backing_file")) {
            found.push(format!(
                "loop {} {}",
                entry.file_name().to_string_lossy(),
                file.trim()
            ));
        }
    }
    // Pod networking: namespaces, CNI iptables rules, host-local leases,
    // veth pairs.
    for entry in std::fs::read_dir("/run/skiff/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        found.push(format!("netns {}", entry.path().display()));
    }
    // Rules that name a pod's chain (CNI-<hash>, CNI-DN-<hash>, …); the
    // portmap plugin's shared CNI-HOSTPORT-* chains and their jumps stay
    // by design, as in every CNI host.
    let per_pod = |line: &str| {
        line.starts_with("-A")
            && line
                .split(|c: char| c.is_whitespace() || c == '"')
                .any(|w| {
                    w.starts_with("CNI-")
                        && !matches!(
                            w,
                            "CNI-HOSTPORT-DNAT" | "CNI-HOSTPORT-MASQ" | "CNI-HOSTPORT-SETMARK"
                        )
                })
    };
    for tool in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = Command::new(tool).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if per_pod(line) {
                    found.push(format!("{tool} {line}"));
                }
            }
        }
    }
    // skiff's nf_tables chains: the built-in networks' own stay with their
    // bridges, by design; any other (a test network's) is left behind.
    for family in ["ip", "ip6"] {
        if let Ok(out) = Command::new("nft")
            .args(["list", "table", family, "skiff"])
            .output()
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(chain) = line.trim().strip_prefix("chain ") {
                    let chain = chain.trim_end_matches(" {");
                    if !matches!(chain, "default" | "default-restricted") {
                        found.push(format!("nft {family} skiff {chain}"));
                    }
                }
            }
        }
    }
    for net in std::fs::read_dir("/run/skiff/ipam")
        .into_iter()
        .flatten()
        .flatten()
    {
        for lease in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = lease.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                found.push(format!("lease {}", lease.path().display()));
            }
        }
    }
    if let Ok(out) = Command::new("ip")
        .args(["-o", "link", "show", "type", "veth"])
        .output()
    {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            found.push(format!(
                "link {}",
                line.split(':').nth(1).unwrap_or(line).trim()
            ));
        }
    }
    found.sort();
    found
}

//! CNI network configurations: `net.d/*.conflist` and `*.conf` files (the
//! local config dir first, then the vendor one) and the built-in `default`.
//! Everything is checked here, before any plugin runs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::NetError;

/// The bridge of the built-in `default` network.
/// The source of the built-in networks' configurations.
pub const BUILT_IN: &str = "built-in";

pub const DEFAULT_BRIDGE: &str = "skiff0";

/// The bridge of the built-in `default-restricted` network.
pub const RESTRICTED_BRIDGE: &str = "skiff1";

/// Where host-local keeps the leases of the built-in network: on tmpfs, as
/// the pods and their addresses do not outlive a reboot.
pub const DEFAULT_IPAM_DIR: &str = "/run/skiff/ipam";

/// Subnets tried for the built-in network, in order (rkt's first).
const DEFAULT_SUBNETS: &[[u8; 3]] = &[
    [172, 16, 28],
    [172, 16, 29],
    [172, 16, 30],
    [172, 16, 31],
    [10, 88, 28],
    [10, 88, 29],
    [192, 168, 228],
];

/// The IPv6 subnet of the built-in network (a unique local /64, "skiff"
/// in its global ID), given when the host routes IPv6 already.
pub const DEFAULT_SUBNET6: &str = "fd73:6b69:6666::/64";

/// Subnets tried for the built-in `default-restricted` network.
const RESTRICTED_SUBNETS: &[[u8; 3]] = &[
    [172, 17, 28],
    [172, 17, 29],
    [10, 89, 28],
    [10, 89, 29],
    [192, 168, 229],
];

/// Network names that are not CNI configurations.
const RESERVED: &[&str] = &["host", "none", "all"];

/// Largest network configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// CNI spec versions the runtime speaks (results of all of them parse).
const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// One network: a conflist (a `.conf` is turned into a one-plugin list).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub name: String,
    pub cni_version: String,
    /// The plugin objects, in ADD order.
    pub plugins: Vec<Map<String, Value>>,
    /// Where it came from (a file, or "built-in").
    pub source: String,
}

impl NetworkConfig {
    /// The conflist JSON (what is stored with the pod, so DEL uses exactly
    /// the configuration ADD used).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": self.plugins,
        })
    }

    /// Parses and checks a conflist (or a single-plugin `.conf`) from JSON.
    pub fn from_json(source: &str, value: Value) -> Result<NetworkConfig, NetError> {
        let bad = |problem: String| NetError::Config {
            file: source.to_string(),
            problem,
        };
        let Value::Object(mut obj) = value else {
            return Err(bad("not a JSON object".into()));
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad("\"name\" must be a string".into())),
            None => return Err(bad("no \"name\"".into())),
        };
        check_name(&name).map_err(bad)?;
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(s)) if VERSIONS.contains(&s.as_str()) => s.clone(),
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "cniVersion {s:?} is not supported (supported: {})",
                    VERSIONS.join(", ")
                )));
            }
            _ => return Err(bad("no \"cniVersion\" string".into())),
        };
        let plugins = match obj.remove("plugins") {
            Some(Value::Array(list)) => {
                if list.is_empty() {
                    return Err(bad("\"plugins\" is empty".into()));
                }
                list.into_iter()
                    .map(|p| match p {
                        Value::Object(m) => Ok(m),
                        _ => Err(bad("each of \"plugins\" must be an object".into())),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => return Err(bad("\"plugins\" must be a list".into())),
            // A single plugin's .conf: the whole object is the plugin.
            None => vec![obj],
        };
        for p in &plugins {
            match p.get("type") {
                Some(Value::String(t)) => check_plugin_type(t).map_err(bad)?,
                _ => return Err(bad("a plugin has no \"type\" string".into())),
            }
        }
        Ok(NetworkConfig {
            name,
            cni_version,
            plugins,
            source: source.to_string(),
        })
    }

    /// Reads one configuration file.
    pub fn from_file(path: &Path) -> Result<NetworkConfig, NetError> {
        let source = path.display().to_string();
        let bad = |problem: String| NetError::Config {
            file: source.clone(),
            problem,
        };
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
            &mut bytes,
        )
        .map_err(|e| bad(e.to_string()))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(bad(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed JSON: {e}")))?;
        NetworkConfig::from_json(&source, value)
    }

    /// The plugin types, in order (for messages and status).
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
            .collect()
    }
}

/// A CNI network name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, not a reserved one.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(format!(
            "network name {name:?} is invalid (letters, digits, '_', '.', '-'; at most 64)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!("network name {name:?} is reserved"));
    }
    Ok(())
}

/// A plugin type is a file name in the plugin path: no paths, no dot files.
fn check_plugin_type(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin type {t:?} is invalid (a plugin file name: letters, digits, '_', '.', '-')"
        ))
    }
}

/// Finds the network `name` in the `net.d` directories (first match wins,
/// files in name order); `default` falls back to the built-in network.
pub fn load(name: &str, dirs: &[PathBuf]) -> Result<NetworkConfig, NetError> {
    check_name(name).map_err(|problem| NetError::Config {
        file: "--net".into(),
        problem,
    })?;
    let mut first_error = None;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conf" | "conflist" | "json")
                )
            })
            .collect();
        files.sort();
        for file in files {
            match NetworkConfig::from_file(&file) {
                Ok(config) if config.name == name => return Ok(config),
                Ok(_) => {}
                Err(e) => {
                    // A broken file named after the network is the answer.
                    if file.file_stem().and_then(|s| s.to_str()) == Some(name) {
                        return Err(e);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match name {
        "default" => return default_network(),
        "default-restricted" => return restricted_network(),
        _ => {}
    }
    Err(first_error.unwrap_or_else(|| NetError::UnknownNetwork(name.to_string())))
}

/// The built-in `default` network: a bridge with NAT, host-local addresses
/// on a private /24 that no host route covers, and port forwarding.
pub fn default_network() -> Result<NetworkConfig, NetError> {
    let subnet = free_subnet("default", DEFAULT_BRIDGE, DEFAULT_SUBNETS)?;
    let mut ranges = vec![serde_json::json!([{"subnet": subnet}])];
    if host_routes_ipv6() {
        ranges.push(serde_json::json!([{"subnet": DEFAULT_SUBNET6}]));
    }
    let value = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "default",
        "plugins": [
            {
                "type": "bridge",
                "bridge": DEFAULT_BRIDGE,
                "isDefaultGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": ranges,
                    "dataDir": DEFAULT_IPAM_DIR,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    });
    NetworkConfig::from_json(BUILT_IN, value)
}

/// Whether the host forwards IPv6 (`net.ipv6.conf.all.forwarding` is 1
/// and IPv6 is not disabled): then the default network is dual-stack.
/// skiff does not turn forwarding on itself: on a host that takes its
/// IPv6 route from router advertisements, forwarding stops accepting
/// them (unless `accept_ra=2`), which would cut the host off.
pub fn host_routes_ipv6() -> bool {
    let on = |path: &str| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
    on("/proc/sys/net/ipv6/conf/all/forwarding") && !on("/proc/sys/net/ipv6/conf/all/disable_ipv6")
}

/// The built-in `default-restricted` network (rkt's): a bridge of its own
/// where pods reach the host (its address on the bridge, the gateway:
/// the metadata service, for one) and each other, and nothing else — no
/// default route, no NAT, no port forwarding.
pub fn restricted_network() -> Result<NetworkConfig, NetError> {
    let subnet = free_subnet("default-restricted", RESTRICTED_BRIDGE, RESTRICTED_SUBNETS)?;
    let value = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "default-restricted",
        "plugins": [
            {
                "type": "bridge",
                "bridge": RESTRICTED_BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": DEFAULT_IPAM_DIR,
                }
            }
        ]
    });
    NetworkConfig::from_json(BUILT_IN, value)
}

/// The subnet of the built-in network `name` on `bridge`, from `candidates`.
fn free_subnet(name: &str, bridge: &str, candidates: &[[u8; 3]]) -> Result<String, NetError> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    pick_subnet(&routes, bridge, candidates).ok_or_else(|| NetError::Config {
        file: format!("built-in network '{name}'"),
        problem: format!("every candidate subnet overlaps a host route; define '{name}' in net.d"),
    })
}

/// One IPv4 route of `/proc/net/route`.
struct Route {
    iface: String,
    dest: u32,
    mask: u32,
}

fn parse_routes(table: &str) -> Vec<Route> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // The kernel prints the network-order bytes as a native integer.
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
            Some(Route {
                iface: f.first()?.to_string(),
                dest: hex(f.get(1)?)?,
                mask: hex(f.get(7)?)?,
            })
        })
        .collect()
}

/// A built-in network's subnet: the one already on its `bridge`, else the
/// first of `candidates` that overlaps no host route (the default route
/// aside).
fn pick_subnet(route_table: &str, bridge: &str, candidates: &[[u8; 3]]) -> Option<String> {
    let routes = parse_routes(route_table);
    let cidr = |net: u32| format!("{}/24", Ipv4Addr::from(net));
    if let Some(r) = routes
        .iter()
        .find(|r| r.iface == bridge && r.mask == 0xffff_ff00)
    {
        return Some(cidr(r.dest));
    }
    candidates
        .iter()
        .map(|[a, b, c]| u32::from(Ipv4Addr::new(*a, *b, *c, 0)))
        .find(|&net| {
            routes.iter().filter(|r| r.mask != 0).all(|r| {
                let mask = r.mask & 0xffff_ff00;
                (r.dest & mask) != (net & mask)
            })
        })
        .map(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn default_subnet_avoids_host_routes_and_reuses_its_bridge() {
        let default_subnet = |table: &str| pick_subnet(table, DEFAULT_BRIDGE, DEFAULT_SUBNETS);
        assert_eq!(default_subnet(TABLE).as_deref(), Some("172.16.28.0/24"));
        // A host route covering 172.16.0.0/12 rules out every 172.16 candidate.
        let busy = format!("{TABLE}eth1\t000010AC\t00000000\t0001\t0\t0\t0\t0000F0FF\t0\t0\t0\n");
        assert_eq!(default_subnet(&busy).as_deref(), Some("10.88.28.0/24"));
        // Our bridge already has a subnet: keep it.
        let ours = format!("{TABLE}skiff0\t001E10AC\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n");
        assert_eq!(default_subnet(&ours).as_deref(), Some("172.16.30.0/24"));
        // The restricted network has its own bridge and subnets.
        assert_eq!(
            pick_subnet(&ours, RESTRICTED_BRIDGE, RESTRICTED_SUBNETS).as_deref(),
            Some("172.17.28.0/24")
        );
    }

    #[test]
    fn conf_and_conflist_parse_and_bad_ones_say_why() {
        let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "n1", "type": "bridge"});
        let c = NetworkConfig::from_json("a.conf", conf).unwrap();
        assert_eq!(c.plugin_types(), vec!["bridge"]);
        let list = serde_json::json!({"cniVersion": "0.4.0", "name": "n2",
            "plugins": [{"type": "ptp"}, {"type": "portmap"}]});
        assert_eq!(
            NetworkConfig::from_json("b", list).unwrap().plugin_types(),
            vec!["ptp", "portmap"]
        );
        for (bad, why) in [
            (serde_json::json!([]), "not a JSON object"),
            (
                serde_json::json!({"cniVersion": "1.0.0", "type": "x"}),
                "no \"name\"",
            ),
            (
                serde_json::json!({"cniVersion": "9", "name": "a", "type": "x"}),
                "not supported",
            ),
            (
                serde_json::json!({"cniVersion": "1.0.0", "name": "a"}),
                "no \"type\"",
            ),
            (
                serde_json::json!({"cniVersion": "1.0.0", "name": "a", "type": "../../bin/sh"}),
                "invalid",
            ),
            (
                serde_json::json!({"cniVersion": "1.0.0", "name": "a", "plugins": []}),
                "empty",
            ),
            (
                serde_json::json!({"cniVersion": "1.0.0", "name": "host", "type": "x"}),
                "reserved",
            ),
            (
                serde_json::json!({"cniVersion": "1.0.0", "name": "-x", "type": "x"}),
                "invalid",
            ),
        ] {
            let e = NetworkConfig::from_json("f", bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn load_finds_by_name_and_reports_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"alpha","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.conflist"), "{ not json").unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        assert_eq!(load("alpha", &dirs).unwrap().name, "alpha");
        let e = load("bad", &dirs).unwrap_err().to_string();
        assert!(
            e.contains("bad.conflist") && e.contains("malformed JSON"),
            "{e}"
        );
        // Not found anywhere: the broken file is the likely reason.
        let e = load("gamma", &dirs).unwrap_err().to_string();
        assert!(e.contains("malformed JSON"), "{e}");
        let e = load("gamma", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown network 'gamma'"), "{e}");
        assert_eq!(
            load("default", &[]).unwrap().plugin_types(),
            vec!["bridge", "portmap"]
        );
        // No route out, no NAT, no forwarded ports.
        let restricted = load("default-restricted", &[]).unwrap();
        assert_eq!(restricted.plugin_types(), vec!["bridge"]);
        let bridge = &restricted.plugins[0];
        assert_eq!(bridge["bridge"], RESTRICTED_BRIDGE);
        assert_eq!(bridge["ipMasq"], false);
        assert!(bridge.get("isDefaultGateway").is_none());
        assert!(bridge["ipam"].get("routes").is_none());
    }
}

//! ADD, CHECK and DEL of whole networks (conflists) for one pod, as the CNI
//! 1.0 spec orders them: ADD through the plugins in order, each given the
//! previous one's result; DEL in reverse, each given the final result.
//! A failed ADD deletes what it had added, so nothing is left half-made.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::NetError;
use crate::config::NetworkConfig;
use crate::plugin::{Target, Verb, invoke};

/// A port forwarded from the host (the portmap plugin's `portMappings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// One network of a pod: what was (or is being) added, kept in the pod so
/// that DEL runs with exactly the configuration ADD used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: String,
    pub ifname: String,
    /// `CNI_ARGS` pairs from `--net=NAME:K=V,...`.
    #[serde(default)]
    pub args: Vec<(String, String)>,
    /// The conflist.
    pub config: Value,
    /// The final ADD result, once ADD succeeded.
    #[serde(default)]
    pub result: Option<Value>,
    /// A built-in network: its bridge plugin is done in process
    /// ([`crate::builtin`]); records of older pods lack it and keep
    /// running the plugins.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin: bool,
    /// With `builtin`: the CNI plugins after the bridge (portmap) run too,
    /// because the pod forwards ports on this network. Set before ADD, so
    /// a DEL after a crash knows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chained: bool,
}

impl Attachment {
    /// The pod's addresses on this network (from the ADD result), without
    /// prefix lengths.
    pub fn ips(&self) -> Vec<IpAddr> {
        let Some(result) = &self.result else {
            return Vec::new();
        };
        result
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.get("address").and_then(Value::as_str))
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect()
    }

    /// The gateway of the pod's first address on this network (the host
    /// side of a bridge network), from the ADD result.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.result
            .as_ref()?
            .get("ips")?
            .as_array()?
            .iter()
            .find_map(|ip| ip.get("gateway")?.as_str()?.parse().ok())
    }

    /// The pod-side interface's MAC address and its addresses (with
    /// prefix lengths), from the ADD result: what a VM's own network card
    /// takes over.
    pub fn pod_interface(&self) -> Option<(String, Vec<String>)> {
        let result = self.result.as_ref()?;
        let interfaces = result.get("interfaces")?.as_array()?;
        let index = interfaces.iter().position(|i| {
            i.get("name").and_then(Value::as_str) == Some(self.ifname.as_str())
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })?;
        let mac = interfaces[index].get("mac")?.as_str()?.to_string();
        let addresses = result
            .get("ips")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|ip| ip.get("interface").and_then(Value::as_u64) == Some(index as u64))
            .filter_map(|ip| ip.get("address")?.as_str().map(str::to_string))
            .collect();
        Some((mac, addresses))
    }

    /// Name servers, search domains and options the plugins returned.
    pub fn dns(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let list = |key: &str| -> Vec<String> {
            self.result
                .as_ref()
                .and_then(|r| r.get("dns"))
                .and_then(|d| d.get(key))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        (list("nameservers"), list("search"), list("options"))
    }
}

/// Everything a pod's networks need to be added or deleted.
#[derive(Debug, Clone)]
pub struct PodNetwork<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub cni_path: &'a [PathBuf],
    pub ports: &'a [PortMapping],
}

impl PodNetwork<'_> {
    /// The configuration handed to one plugin: its own object plus the
    /// network's name and version, the previous result and the runtime
    /// config for the capabilities it declares.
    fn plugin_config(
        &self,
        list: &Value,
        plugin: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Value {
        let mut conf = plugin.clone();
        conf.insert("name".into(), list["name"].clone());
        conf.insert("cniVersion".into(), list["cniVersion"].clone());
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let wants_ports = plugin
            .get("capabilities")
            .and_then(|c| c.get("portMappings"))
            .and_then(Value::as_bool)
            == Some(true);
        if wants_ports && !self.ports.is_empty() {
            conf.insert(
                "runtimeConfig".into(),
                serde_json::json!({ "portMappings": self.ports }),
            );
        }
        Value::Object(conf)
    }

    fn plugins(config: &Value) -> Vec<Map<String, Value>> {
        config
            .get("plugins")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_object().cloned())
            .collect()
    }

    fn run(
        &self,
        a: &Attachment,
        verb: Verb,
        plugin: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Result<Value, NetError> {
        let kind = plugin.get("type").and_then(Value::as_str).unwrap_or("");
        let target = Target {
            container_id: self.container_id,
            netns: self.netns,
            ifname: &a.ifname,
            args: &a.args,
        };
        let conf = self.plugin_config(&a.config, plugin, prev);
        invoke(self.cni_path, &a.name, kind, verb, &target, &conf)
    }

    /// The plugins run as processes: all of them, or for a built-in
    /// network those after its bridge when the pod forwards ports.
    fn processes(a: &Attachment) -> Vec<Map<String, Value>> {
        let mut plugins = Self::plugins(&a.config);
        if a.builtin {
            plugins = match a.chained {
                true => plugins.into_iter().skip(1).collect(),
                false => Vec::new(),
            };
        }
        plugins
    }

    /// ADDs one network; on failure DELs it again before returning the error.
    pub fn add(&self, a: &mut Attachment) -> Result<(), NetError> {
        let mut prev: Option<Value> = None;
        let done = self.add_steps(a, &mut prev);
        if let Err(e) = done {
            a.result = prev;
            let _ = self.del(a);
            a.result = None;
            return Err(e);
        }
        a.result = Some(prev.unwrap_or_else(|| serde_json::json!({})));
        Ok(())
    }

    fn add_steps(&self, a: &Attachment, prev: &mut Option<Value>) -> Result<(), NetError> {
        if a.builtin {
            *prev = Some(crate::builtin::add(a, self.container_id, self.netns)?);
        }
        for plugin in Self::processes(a) {
            match self.run(a, Verb::Add, &plugin, prev.as_ref())? {
                Value::Null => {}
                result => *prev = Some(result),
            }
        }
        Ok(())
    }

    /// CHECKs one added network (CNI 0.4.0 and later).
    pub fn check(&self, a: &Attachment) -> Result<(), NetError> {
        if a.builtin {
            crate::builtin::check(a, self.container_id, self.netns)?;
        }
        for plugin in Self::processes(a) {
            self.run(a, Verb::Check, &plugin, a.result.as_ref())?;
        }
        Ok(())
    }

    /// DELs one network, plugins in reverse; every plugin is asked even
    /// when an earlier one failed. DEL of what is already gone succeeds; a
    /// plugin that is not installed has nothing to delete.
    pub fn del(&self, a: &Attachment) -> Result<(), NetError> {
        let mut first_error = None;
        for plugin in Self::processes(a).iter().rev() {
            match self.run(a, Verb::Del, plugin, a.result.as_ref()) {
                Ok(_) | Err(NetError::PluginNotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if a.builtin
            && let Err(e) = crate::builtin::del(a, self.container_id)
        {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Whether a conflist has a plugin that takes `portMappings` (where a pod's
/// forwarded ports go: the first such network).
pub fn forwards_ports(config: &Value) -> bool {
    config["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["capabilities"]["portMappings"].as_bool() == Some(true))
}

/// A new attachment of `config` as interface `ifname`.
pub fn attachment(config: &NetworkConfig, ifname: &str, args: Vec<(String, String)>) -> Attachment {
    Attachment {
        name: config.name.clone(),
        ifname: ifname.to_string(),
        args,
        config: config.to_json(),
        result: None,
        builtin: config.source == crate::config::BUILT_IN,
        chained: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_and_dns_come_from_the_result() {
        let mut a = attachment(&crate::config::default_network().unwrap(), "eth0", vec![]);
        assert!(a.ips().is_empty());
        a.result = Some(serde_json::json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "172.16.28.5/24", "gateway": "172.16.28.1"},
                    {"address": "fd00::5/64"}],
            "dns": {"nameservers": ["10.0.0.53"], "search": ["pod.local"]}
        }));
        assert_eq!(
            a.ips(),
            vec![
                "172.16.28.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(a.dns().0, vec!["10.0.0.53"]);
        assert_eq!(a.gateway(), Some("172.16.28.1".parse().unwrap()));
        assert_eq!(a.dns().1, vec!["pod.local"]);
    }

    #[test]
    fn runtime_config_goes_only_to_plugins_that_ask() {
        let ports = [PortMapping {
            host_port: 18080,
            container_port: 8080,
            protocol: "tcp".into(),
            host_ip: None,
        }];
        let net = PodNetwork {
            container_id: "c",
            netns: Path::new("/x"),
            cni_path: &[],
            ports: &ports,
        };
        let list = crate::config::default_network().unwrap().to_json();
        let plugins = PodNetwork::plugins(&list);
        let bridge = net.plugin_config(&list, &plugins[0], None);
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(bridge["name"], "default");
        let prev = serde_json::json!({"ips": []});
        let portmap = net.plugin_config(&list, &plugins[1], Some(&prev));
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            18080
        );
        assert_eq!(portmap["prevResult"], prev);
    }
}

//! The CNI runtime against Debian's real plugins (root, like CI): a bridge
//! network is added to a fresh namespace, checked, deleted, and nothing is
//! left behind; a failing chain is rolled back.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use skiff_net::attach::{PodNetwork, attachment};
use skiff_net::{NetworkConfig, netns};

fn plugins_installed() -> bool {
    skiff_net::cni_path()
        .iter()
        .any(|d| d.join("bridge").is_file())
}

fn links() -> String {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn network(name: &str, bridge: &str, subnet: &str, ipam: &Path, extra: &str) -> NetworkConfig {
    let text = format!(
        r#"{{"cniVersion":"1.0.0","name":"{name}","plugins":[
            {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,
              "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"dataDir":"{}"}}}}
            {extra}]}}"#,
        ipam.display()
    );
    NetworkConfig::from_json("test", serde_json::from_str(&text).unwrap()).unwrap()
}

struct Cleanup(Vec<String>, Vec<std::path::PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.1 {
            netns::remove(ns);
        }
        for link in &self.0 {
            let _ = Command::new("ip").args(["link", "del", link]).status();
        }
    }
}

#[test]
fn add_check_del_leaves_nothing_behind() {
    assert!(
        plugins_installed(),
        "containernetworking-plugins missing: run cargo xtask deps"
    );
    let tmp = tempfile::tempdir().unwrap();
    let id = format!("skiff-test-{}", std::process::id());
    let bridge = format!("sktb{}", std::process::id() % 100_000);
    let ns = tmp.path().join("ns");
    let _cleanup = Cleanup(vec![bridge.clone()], vec![ns.clone()]);
    netns::create(&ns).unwrap();
    let config = network(
        "t-ok",
        &bridge,
        "10.231.7.0/24",
        &tmp.path().join("ipam"),
        "",
    );
    let mut a = attachment(&config, "eth0", vec![]);
    let net = PodNetwork {
        container_id: &id,
        netns: &ns,
        cni_path: &skiff_net::cni_path(),
        ports: &[],
    };
    let before = links();
    net.add(&mut a).unwrap();
    let ip = a.ips()[0].to_string();
    assert!(ip.starts_with("10.231.7."), "{ip}");
    net.check(&a).unwrap();
    let lease = tmp.path().join("ipam/t-ok").join(&ip);
    assert!(lease.exists(), "host-local lease {}", lease.display());
    let nat = |ip: &str| {
        let out = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(ip)
    };
    assert!(nat(&ip), "ipMasq rule for {ip}");

    net.del(&a).unwrap();
    assert!(!lease.exists(), "lease left after DEL");
    assert!(!nat(&ip), "masquerade rule left after DEL");
    let after = links();
    // Only this test's veth would be new (other tests make bridges).
    let extra: Vec<&str> = after
        .lines()
        .filter(|l| l.contains(&format!("master {bridge}")) && !before.contains(*l))
        .collect();
    assert!(extra.is_empty(), "links left: {extra:?}");
    // DEL again (gc after a crash) is fine.
    net.del(&a).unwrap();
}

#[test]
fn a_failing_chain_is_rolled_back_and_names_the_plugin() {
    assert!(
        plugins_installed(),
        "containernetworking-plugins missing: run cargo xtask deps"
    );
    let tmp = tempfile::tempdir().unwrap();
    let id = format!("skiff-test-rb-{}", std::process::id());
    let bridge = format!("sktr{}", std::process::id() % 100_000);
    let ns = tmp.path().join("ns");
    let _cleanup = Cleanup(vec![bridge.clone()], vec![ns.clone()]);
    netns::create(&ns).unwrap();
    let path = skiff_net::cni_path();
    let net = PodNetwork {
        container_id: &id,
        netns: &ns,
        cni_path: &path,
        ports: &[],
    };
    // An unknown plugin after a working one.
    let config = network(
        "t-bad",
        &bridge,
        "10.231.8.0/24",
        &tmp.path().join("ipam"),
        r#",{"type":"no-such-plugin"}"#,
    );
    let mut a = attachment(&config, "eth0", vec![]);
    let e = net.add(&mut a).unwrap_err().to_string();
    assert!(
        e.contains("no-such-plugin") && e.contains("not found"),
        "{e}"
    );
    assert!(a.result.is_none());
    let leases: Vec<_> = std::fs::read_dir(tmp.path().join("ipam/t-bad"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leases
            .iter()
            .all(|f| f.to_string_lossy().starts_with("last_reserved") || f == "lock"),
        "leases left after a failed ADD: {leases:?}"
    );

    // A range of one address: the second pod gets a clear error.
    let bridge2 = format!("sktf{}", std::process::id() % 100_000);
    let tiny = network(
        "t-full",
        &bridge2,
        "10.231.9.0/30",
        &tmp.path().join("ipam"),
        "",
    );
    let ns2 = tmp.path().join("ns2");
    netns::create(&ns2).unwrap();
    let _cleanup2 = Cleanup(vec![bridge2.clone()], vec![ns2.clone()]);
    let mut first = attachment(&tiny, "eth0", vec![]);
    net.add(&mut first).unwrap();
    let id2 = format!("{id}-2");
    let net2 = PodNetwork {
        container_id: &id2,
        netns: &ns2,
        cni_path: &path,
        ports: &[],
    };
    let mut second = attachment(&tiny, "eth0", vec![]);
    let e = net2.add(&mut second).unwrap_err().to_string();
    assert!(e.contains("t-full") && e.contains("bridge"), "{e}");
    net.del(&first).unwrap();
}

//! The built-in bridge network done in process against the real CNI
//! plugins (root, like CI): the same configuration is added to one pod
//! natively and to another through bridge + host-local + portmap, and the
//! results, the pods' addresses and routes, the bridge ports, NAT and port
//! forwarding (measured with real packets from a third namespace outside)
//! and the teardown must match.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skiff_net::attach::{PodNetwork, PortMapping, attachment};
use skiff_net::{NetworkConfig, netns};

/// Runs `f` on a thread inside the network namespace at `ns`.
fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(ns).unwrap();
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS` inside the namespace at `ns`.
fn ip_in(ns: &Path, args: &[&str]) -> String {
    let net = format!("--net={}", ns.display());
    let mut all = vec!["nsenter", net.as_str(), "ip"];
    all.extend(args);
    run(&all)
}

struct Cleanup {
    links: Vec<String>,
    namespaces: Vec<PathBuf>,
    /// skiff's chain of the test's network (both families).
    nat_chain: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for family in ["ip", "ip6"] {
            let _ = Command::new("nft")
                .args(["delete", "chain", family, "skiff", &self.nat_chain])
                .stderr(std::process::Stdio::null())
                .status();
        }
        for ns in &self.namespaces {
            netns::remove(ns);
        }
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).status();
        }
    }
}

/// The result with what differs between any two pods (addresses, MACs,
/// the veth's name, the namespace) replaced by placeholders.
fn normalized(result: &Value) -> Value {
    let mut r = result.clone();
    for iface in r["interfaces"].as_array_mut().unwrap() {
        iface["mac"] = "MAC".into();
        if iface.get("sandbox").is_some() {
            iface["sandbox"] = "NETNS".into();
        }
        if iface["name"].as_str().unwrap().starts_with("veth") {
            iface["name"] = "VETH".into();
        }
    }
    for ip in r["ips"].as_array_mut().unwrap() {
        let prefix = ip["address"].as_str().unwrap().split('/').nth(1).unwrap();
        ip["address"] = format!("ADDRESS/{prefix}").into();
    }
    r
}

#[test]
fn the_builtin_bridge_network_does_what_the_cni_plugins_do() {
    let pid = std::process::id();
    let tmp = tempfile::tempdir().unwrap();
    let bridge = format!("skeq{}", pid % 100_000);
    let outside_link = format!("skeo{}", pid % 100_000);
    let (native_ns, cni_ns, outside_ns) = (
        tmp.path().join("native"),
        tmp.path().join("cni"),
        tmp.path().join("outside"),
    );
    let name = format!("t-eq{}", pid % 100_000);
    let _cleanup = Cleanup {
        links: vec![bridge.clone(), outside_link.clone()],
        namespaces: vec![native_ns.clone(), cni_ns.clone(), outside_ns.clone()],
        nat_chain: name.clone(),
    };
    for ns in [&native_ns, &cni_ns, &outside_ns] {
        netns::create(ns).unwrap();
    }
    // "Outside": a namespace routed from the host over a veth pair, where
    // masqueraded traffic arrives from the host's address 10.231.11.1.
    let outside_path = outside_ns.display().to_string();
    run(&[
        "ip",
        "link",
        "add",
        &outside_link,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &outside_path,
    ]);
    run(&["ip", "addr", "add", "10.231.11.1/24", "dev", &outside_link]);
    run(&["ip", "link", "set", &outside_link, "up"]);
    ip_in(
        &outside_ns,
        &["addr", "add", "10.231.11.2/24", "dev", "eth0"],
    );
    ip_in(&outside_ns, &["link", "set", "eth0", "up"]);

    let config = NetworkConfig::from_json(
        "test",
        serde_json::json!({
            "cniVersion": "1.0.0", "name": name,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isDefaultGateway": true, "ipMasq": true,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.231.10.0/24"}]],
                          "dataDir": tmp.path().join("ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        }),
    )
    .unwrap();
    let host_port = 19000 + (pid % 500) as u16;
    let ports = [PortMapping {
        host_port,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: None,
    }];
    let cni_path = skiff_net::cni_path();
    let (native_id, cni_id) = (format!("skiff-eq-n-{pid}"), format!("skiff-eq-c-{pid}"));
    let mut native = attachment(&config, "eth0", vec![]);
    native.builtin = true;
    native.chained = true;
    let mut cni = attachment(&config, "eth0", vec![]);
    let native_net = PodNetwork {
        container_id: &native_id,
        netns: &native_ns,
        cni_path: &cni_path,
        ports: &ports,
    };
    let cni_net = PodNetwork {
        container_id: &cni_id,
        netns: &cni_ns,
        cni_path: &cni_path,
        ports: &[],
    };
    cni_net.add(&mut cni).unwrap();
    native_net.add(&mut native).unwrap();
    // (portmap's own CHECK fails without an IPv6 address: only the bridge.)
    skiff_net::builtin::check(&native, &native_id, &native_ns).unwrap();

    // The same result, but for what differs between any two pods.
    let (native_result, cni_result) = (native.result.clone().unwrap(), cni.result.clone().unwrap());
    assert_eq!(
        normalized(&native_result),
        normalized(&cni_result),
        "native {native_result:#}\nCNI {cni_result:#}"
    );
    let (native_ip, cni_ip) = (native.ips()[0].to_string(), cni.ips()[0].to_string());
    assert_ne!(native_ip, cni_ip, "one pool, two leases");
    // Leases in host-local's format, in one pool.
    for (id, ip) in [(&native_id, &native_ip), (&cni_id, &cni_ip)] {
        let lease = std::fs::read_to_string(tmp.path().join("ipam").join(&name).join(ip)).unwrap();
        assert_eq!(lease, format!("{id}\r\neth0"));
    }

    // Inside: the same addresses and routes, the pod's own address aside.
    for args in [
        &["-o", "-4", "addr", "show", "dev", "eth0"][..],
        &["-4", "route"][..],
    ] {
        let own = |text: String, ip: &str| {
            text.replace(&format!("{ip}/"), "POD/")
                .replace(&format!("src {ip} "), "src POD ")
        };
        let native_view = own(ip_in(&native_ns, args), &native_ip);
        let cni_view = own(ip_in(&cni_ns, args), &cni_ip);
        let strip = |s: &str| {
            s.split_whitespace()
                .filter(|w| !w.starts_with("eth0@") && !w.starts_with("valid_lft"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(strip(&native_view), strip(&cni_view), "ip {args:?}");
    }
    // On the host: both veths are ports of the bridge, in hairpin mode.
    for result in [&native_result, &cni_result] {
        let veth = result["interfaces"][1]["name"].as_str().unwrap();
        let master = std::fs::read_link(format!("/sys/class/net/{veth}/master")).unwrap();
        assert!(master.ends_with(&bridge), "{veth} on {master:?}");
        let hairpin =
            std::fs::read_to_string(format!("/sys/class/net/{veth}/brport/hairpin_mode")).unwrap();
        assert_eq!(hairpin.trim(), "1", "{veth} hairpin");
    }
    // The NAT rule, as nft shows it.
    let rules = run(&["nft", "list", "chain", "ip", "skiff", &name]);
    assert!(
        rules.contains(&format!(
            "iifname \"{bridge}\" ip saddr 10.231.10.0/24 ip daddr != 10.231.10.0/24 ip daddr != 224.0.0.0/4 masquerade"
        )),
        "{rules}"
    );

    // Traffic to the outside leaves masqueraded, from either pod.
    let udp_port = 19500 + (pid % 400) as u16;
    for ns in [&native_ns, &cni_ns] {
        let listener = in_ns(&outside_ns, move || {
            UdpSocket::bind(("10.231.11.2", udp_port)).unwrap()
        });
        listener
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        in_ns(ns, move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"hello", ("10.231.11.2", udp_port)).unwrap();
        });
        let mut buf = [0u8; 16];
        let (n, from) = listener.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(
            from.ip().to_string(),
            "10.231.11.1",
            "from {}",
            ns.display()
        );
    }

    // The forwarded port reaches the native pod from outside.
    let server = in_ns(&native_ns, || TcpListener::bind("0.0.0.0:8080").unwrap());
    let serve = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        conn.write_all(b"from the pod").unwrap();
    });
    let got = in_ns(&outside_ns, move || {
        let mut c = TcpStream::connect_timeout(
            &format!("10.231.11.1:{host_port}").parse().unwrap(),
            Duration::from_secs(10),
        )
        .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text
    });
    serve.join().unwrap();
    assert_eq!(got, "from the pod");

    // A network without NAT or default route (default-restricted's shape):
    // nothing is forwarded to or from its bridge, even for a pod that
    // makes a default route of its own.
    let isolated_ns = tmp.path().join("isolated");
    netns::create(&isolated_ns).unwrap();
    let isolated_name = format!("t-iso{}", pid % 100_000);
    let isolated_bridge = format!("skei{}", pid % 100_000);
    let _cleanup_isolated = Cleanup {
        links: vec![isolated_bridge.clone()],
        namespaces: vec![isolated_ns.clone()],
        nat_chain: isolated_name.clone(),
    };
    let isolated_config = NetworkConfig::from_json(
        "test",
        serde_json::json!({
            "cniVersion": "1.0.0", "name": isolated_name,
            "plugins": [{"type": "bridge", "bridge": isolated_bridge, "isGateway": true,
                "ipMasq": false, "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.231.12.0/24"}]],
                         "dataDir": tmp.path().join("ipam")}}]
        }),
    )
    .unwrap();
    let isolated_id = format!("skiff-eq-i-{pid}");
    let mut isolated = attachment(&isolated_config, "eth0", vec![]);
    isolated.builtin = true;
    let isolated_net = PodNetwork {
        container_id: &isolated_id,
        netns: &isolated_ns,
        cni_path: &cni_path,
        ports: &[],
    };
    isolated_net.add(&mut isolated).unwrap();
    let isolated_ip = isolated.ips()[0].to_string();
    ip_in(
        &isolated_ns,
        &["route", "add", "default", "via", "10.231.12.1"],
    );
    let chain = run(&["nft", "list", "chain", "ip", "skiff", &isolated_name]);
    assert!(
        chain.contains(&format!("iifname \"{isolated_bridge}\" drop"))
            && chain.contains(&format!("oifname \"{isolated_bridge}\" drop")),
        "{chain}"
    );
    let never_arrives = |from: &Path, to: &Path, to_ip: String, port: u16| {
        let bind_ip = to_ip.clone();
        let listener = in_ns(to, move || {
            UdpSocket::bind((bind_ip.as_str(), port)).unwrap()
        });
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        in_ns(from, move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let _ = s.send_to(b"escape", (to_ip.as_str(), port));
        });
        let mut buf = [0u8; 16];
        listener.recv_from(&mut buf).map(|(_, from)| from)
    };
    // To the outside, and to a pod of another network, and back.
    for (from, to, to_ip) in [
        (&isolated_ns, &outside_ns, "10.231.11.2".to_string()),
        (&isolated_ns, &native_ns, native_ip.clone()),
        (&native_ns, &isolated_ns, isolated_ip.clone()),
    ] {
        let got = never_arrives(from, to, to_ip.clone(), udp_port + 1);
        assert!(
            got.is_err(),
            "{} reached {to_ip} from {got:?}",
            from.display()
        );
    }
    isolated_net.del(&isolated).unwrap();
    // The rules stay with the bridge (deleting a base chain costs every
    // last pod an RCU grace period); the guard removes them.
    assert!(run(&["nft", "list", "chain", "ip", "skiff", &isolated_name]).contains("drop"));

    // Teardown: the pod leaves the bridge, its leases and port rules go.
    cni_net.del(&cni).unwrap();
    // The attack of a pod with CAP_NET_ADMIN whose namespace something
    // holds open (an nsenter session): it renames its interface, puts a
    // decoy eth0 in its place and keeps its address with another prefix
    // and on loopback. At DEL it must still be cut off the bridge, or its
    // address would live on there once the lease went to another pod.
    let held = std::fs::File::open(&native_ns).unwrap();
    let (wide, host_only) = (format!("{native_ip}/16"), format!("{native_ip}/32"));
    let narrow = format!("{native_ip}/24");
    for args in [
        &["link", "set", "eth0", "down"][..],
        &["link", "set", "eth0", "name", "eth9"],
        &["link", "set", "eth9", "up"],
        &["addr", "del", &narrow, "dev", "eth9"],
        &["addr", "add", &wide, "dev", "eth9"],
        &["addr", "add", &host_only, "dev", "lo"],
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "decoy",
        ],
    ] {
        ip_in(&native_ns, args);
    }
    let pod_port = udp_port + 2;
    let reaches_pod = || {
        let listener = in_ns(&native_ns, move || {
            UdpSocket::bind(("0.0.0.0", pod_port)).unwrap()
        });
        listener
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            let _ = s.send_to(b"still there?", (native_ip.as_str(), pod_port));
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut buf = [0u8; 16];
        listener.recv_from(&mut buf).is_ok()
    };
    assert!(
        reaches_pod(),
        "the disguised pod is on the bridge before DEL"
    );
    native_net.del(&native).unwrap();
    assert!(
        !reaches_pod(),
        "{native_ip} still reaches the pod on the bridge after DEL"
    );
    drop(held);
    assert!(
        !tmp.path()
            .join("ipam")
            .join(&name)
            .join(&native_ip)
            .exists()
    );
    let nat = run(&["iptables-save", "-t", "nat"]);
    assert!(!nat.contains(&native_id), "port rules left: {nat}");
    // DEL again (gc after a crash) is fine.
    native_net.del(&native).unwrap();
}

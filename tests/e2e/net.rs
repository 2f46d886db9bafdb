//! Pod networking with Debian's CNI plugins: the default bridge network,
//! pod-to-pod traffic, port forwarding from the host, none/host, DNS and
//! hosts files, teardown after stop, gc and a killed stage1, bad configs.
//! Only addresses of this machine are used (loopback and the pods' own).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A busybox ACI whose app has a port named `http` (8080/tcp).
pub fn web_aci(dir: &Path) -> PathBuf {
    let aci = dir.join("web.aci");
    busybox_aci(dir, "example.com/web", &aci);
    let layout = dir.join("layout-example.com_web");
    std::fs::write(
        layout.join("manifest"),
        BUSYBOX_MANIFEST
            .replace("example.com/busybox", "example.com/web")
            .replace(
                r#""group": "0"}"#,
                r#""group": "0", "ports": [{"name": "http", "protocol": "tcp", "port": 8080}]}"#,
            ),
    )
    .unwrap();
    let built = output(
        skiff()
            .args(["image", "build", "--overwrite"])
            .arg(&layout)
            .arg(&aci),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    aci
}

fn sh(root: &Path, aci: &Path, net: &[&str], script: &str) -> std::process::Output {
    output(
        skiff_in(root)
            .args(["run", "--insecure-options=image"])
            .args(net)
            .arg(aci)
            .args(["--exec=/bin/sh", "--", "-c", script]),
    )
}

/// Starts a detached busybox httpd pod serving /etc on port 8080.
fn start_httpd(root: &Path, aci: &Path, extra: &[&str]) -> String {
    let out = httpd_output(root, aci, extra);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// What `skiff run --detach` of a busybox httpd pod said.
fn httpd_output(root: &Path, aci: &Path, extra: &[&str]) -> std::process::Output {
    output(
        skiff_in(root)
            .args(["run", "--detach", "--insecure-options=image"])
            .args(extra)
            .arg(aci)
            .args([
                "--exec=/bin/busybox",
                "--",
                "httpd",
                "-f",
                "-p",
                "8080",
                "-h",
                "/etc",
            ]),
    )
}

/// The pod's first IPv4 address from `skiff status`.
fn pod_ip(root: &Path, uuid: &str) -> String {
    let out = output(skiff_in(root).args(["status", uuid]));
    let text = stdout(&out);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("networks="))
        .unwrap_or_else(|| panic!("no networks in status: {text}"));
    line.split("ip4=")
        .nth(1)
        .and_then(|s| s.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("no ip4 in {line}"))
        .to_string()
}

/// Host state that a pod's networking could leave behind, as lines that
/// name the pod (iptables rules carry its id, host-local leases its id).
fn traces_of(uuid: &str) -> Vec<String> {
    let mut found = Vec::new();
    let nat = Command::new("iptables-save").output().unwrap();
    for line in String::from_utf8_lossy(&nat.stdout).lines() {
        if line.contains(uuid) {
            found.push(format!("iptables: {line}"));
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
            if std::fs::read_to_string(lease.path())
                .unwrap_or_default()
                .contains(uuid)
            {
                found.push(format!("lease: {}", lease.path().display()));
            }
        }
    }
    let ns = Path::new("/run/skiff/netns").join(uuid);
    if ns.exists() {
        found.push(format!("netns: {}", ns.display()));
    }
    found
}

fn wait_exited(root: &Path, uuid: &str) {
    eventually(&format!("pod {uuid} exits"), || {
        let out = output(skiff_in(root).args(["status", uuid]));
        (!stdout(&out).contains("state=running")).then_some(())
    });
}

#[test]
fn default_network_pod_to_pod_and_port_forwarding() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = web_aci(tmp.path());
    let port = 18000 + (std::process::id() % 1000) as u16;
    let uuid = start_httpd(tmp.path(), &aci, &[&format!("--port=http:{port}")]);
    let ip = pod_ip(tmp.path(), &uuid);
    assert!(
        ip.starts_with("172.16.") || ip.starts_with("10.88.") || ip.starts_with("192.168."),
        "{ip}"
    );
    let listed = stdout(&output(skiff_in(tmp.path()).args(["list", "--full"])));
    assert!(listed.contains(&format!("default:ip4={ip}")), "{listed}");

    // A second pod on the same network: its address, its gateway (the host
    // side of the bridge), and the first pod's web server.
    let out = sh(
        tmp.path(),
        &aci,
        &[],
        &format!(
            "/bin/busybox ip -o -4 addr show eth0; gw=$(/bin/busybox ip route | /bin/busybox awk '/default/ {{print $3}}'); \
             /bin/busybox ping -c1 -W2 $gw >/dev/null && echo GATEWAY-OK; \
             /bin/busybox wget -q -O - http://{ip}:8080/passwd"
        ),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("eth0") && text.contains("GATEWAY-OK"),
        "{text}"
    );
    assert!(
        text.contains("root:x:0:0"),
        "second pod did not reach {ip}: {text}"
    );

    // From the host through the forwarded port on 127.0.0.1.
    let curl = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/passwd"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&curl.stdout).contains("root:x:0:0"),
        "curl 127.0.0.1:{port}: {curl:?}"
    );

    // stop + gc: nothing of the pod is left.
    assert!(
        output(skiff_in(tmp.path()).args(["stop", &uuid]))
            .status
            .success()
    );
    assert!(
        output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]))
            .status
            .success()
    );
    assert_eq!(traces_of(&uuid), Vec::<String>::new());
}

#[test]
fn a_killed_stage1_is_cleaned_up_by_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = web_aci(tmp.path());
    let uuid = start_httpd(tmp.path(), &aci, &[]);
    let ip = pod_ip(tmp.path(), &uuid);
    assert!(!traces_of(&uuid).is_empty());
    // SIGKILL the supervisor (stage1, the parent of the pod's init): it
    // cannot tear anything down.
    let supervisor = supervisor_of(tmp.path(), &uuid);
    // A quiet pod's supervisor rests as skiff-wait (crate::rest).
    let comm = std::fs::read_to_string(format!("/proc/{supervisor}/comm")).unwrap();
    assert!(
        ["skiff-stage1", "skiff-wait"].contains(&comm.trim()),
        "{comm}"
    );
    assert!(
        Command::new("kill")
            .args(["-KILL", &supervisor])
            .status()
            .unwrap()
            .success()
    );
    wait_exited(tmp.path(), &uuid);
    assert!(
        !traces_of(&uuid).is_empty(),
        "nothing left to clean after a SIGKILL: the test would prove nothing"
    );
    let gc = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert_eq!(traces_of(&uuid), Vec::<String>::new(), "after gc ({ip})");
}

#[test]
fn none_has_only_loopback_and_host_sees_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = web_aci(tmp.path());
    let out = sh(tmp.path(), &aci, &["--net=none"], "/bin/busybox ip -o link");
    let links = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(links.contains(": lo:") && links.contains("UP"), "{links}");
    assert_eq!(links.lines().count(), 1, "{links}");

    let host_links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let first_host_if = host_links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .find(|n| *n != "lo")
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let out = sh(tmp.path(), &aci, &["--net=host"], "/bin/busybox ip -o link");
    assert!(
        stdout(&out).contains(&format!(": {first_host_if}")),
        "--net=host pod does not see {first_host_if}: {}",
        stdout(&out)
    );
}

#[test]
fn dns_hostname_and_hosts_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = web_aci(tmp.path());
    let out = sh(
        tmp.path(),
        &aci,
        &[
            "--hostname=web1",
            "--dns=192.0.2.53",
            "--dns-search=corp.example",
            "--dns-opt=ndots:2",
            "--hosts-entry=192.0.2.10=db.corp.example",
        ],
        "/bin/busybox cat /etc/resolv.conf /etc/hosts; /bin/busybox hostname",
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for want in [
        "nameserver 192.0.2.53",
        "search corp.example",
        "options ndots:2",
        "192.0.2.10\tdb.corp.example",
        "\tweb1\n",
        "127.0.0.1\tlocalhost",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
    assert!(text.trim_end().ends_with("web1"), "{text}");
    // Bad values are refused before anything runs.
    for bad in [
        "--dns=not-an-ip",
        "--dns-search=bad domain",
        "--hosts-entry=db=1.2.3.4",
        "--port=nosuch:80",
    ] {
        let out = sh(tmp.path(), &aci, &[bad], "true");
        assert_refused(&out, bad);
    }
}

#[test]
fn bad_network_configs_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = web_aci(tmp.path());
    let netd = tmp.path().join("etc/net.d");
    std::fs::create_dir_all(&netd).unwrap();
    let bridge = format!("skt{}", std::process::id() % 100_000);
    // A working first plugin, then one that does not exist: the bridge's
    // ADD must be undone.
    std::fs::write(
        netd.join("10-halfway.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"halfway","plugins":[
                {{"type":"bridge","bridge":"{bridge}","isGateway":true,"ipMasq":true,
                  "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.231.20.0/24"}}]],"dataDir":"/run/skiff/ipam"}}}},
                {{"type":"no-such-plugin"}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(netd.join("broken.conflist"), "{ \"name\": ").unwrap();
    // A range with room for one pod.
    std::fs::write(
        netd.join("20-tiny.conflist"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"tiny","plugins":[
                {{"type":"bridge","bridge":"{bridge}t","isGateway":true,
                  "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.231.21.0/30"}}]],"dataDir":"/run/skiff/ipam"}}}}]}}"#
        ),
    )
    .unwrap();
    let _bridges = DeleteLinks(vec![bridge.clone(), format!("{bridge}t")]);
    let out = sh(tmp.path(), &aci, &["--net=halfway"], "true");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("no-such-plugin") && err.contains("not found"),
        "{err}"
    );
    let leftovers = |ip_prefix: &str| {
        let nat = Command::new("iptables-save").output().unwrap();
        let rules = String::from_utf8_lossy(&nat.stdout)
            .matches(ip_prefix)
            .count();
        let leases = std::fs::read_dir("/run/skiff/ipam/halfway")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(ip_prefix))
            .count();
        rules + leases
    };
    assert_eq!(
        leftovers("10.231.20."),
        0,
        "a failed ADD left rules or leases"
    );
    for uuid in pod_uuids(tmp.path()) {
        assert_eq!(traces_of(&uuid), Vec::<String>::new(), "failed pod {uuid}");
    }

    let out = sh(tmp.path(), &aci, &["--net=broken"], "true");
    assert_refused(&out, "malformed net.d file");
    assert!(
        stderr(&out).contains("broken.conflist") && stderr(&out).contains("malformed JSON"),
        "{}",
        stderr(&out)
    );

    let first = start_httpd(tmp.path(), &aci, &["--net=tiny"]);
    let out = sh(tmp.path(), &aci, &["--net=tiny"], "true");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("network 'tiny'") && err.contains("bridge"),
        "{err}"
    );
    let _ = output(skiff_in(tmp.path()).args(["stop", &first]));
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert_eq!(traces_of(&first), Vec::<String>::new());
}

/// Deletes host links (test bridges) when dropped.
struct DeleteLinks(Vec<String>);

impl Drop for DeleteLinks {
    fn drop(&mut self) {
        for link in &self.0 {
            let _ = Command::new("ip").args(["link", "del", link]).status();
        }
    }
}

fn pod_uuids(root: &Path) -> Vec<String> {
    let out = output(skiff_in(root).args(["list", "--format=json"]));
    let pods: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    pods.as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["uuid"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn several_networks_get_eth0_eth1_and_enter_sees_them() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = web_aci(tmp.path());
    let netd = tmp.path().join("etc/net.d");
    std::fs::create_dir_all(&netd).unwrap();
    let bridge = format!("sku{}", std::process::id() % 100_000);
    let _bridges = DeleteLinks(vec![bridge.clone()]);
    std::fs::write(
        netd.join("backend.conf"),
        format!(
            r#"{{"cniVersion":"1.0.0","name":"backend","type":"bridge","bridge":"{bridge}",
                "isGateway":true,
                "ipam":{{"type":"host-local","ranges":[[{{"subnet":"10.231.30.0/24"}}]],"dataDir":"/run/skiff/ipam"}}}}"#
        ),
    )
    .unwrap();
    let uuid = start_httpd(tmp.path(), &aci, &["--net=default,backend", "--dns=host"]);
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &uuid])));
    assert!(
        status.contains("default:ip4=") && status.contains("backend:ip4=10.231.30."),
        "{status}"
    );
    let out = output(skiff_in(tmp.path()).args([
        "enter",
        &uuid,
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox ip -o -4 addr; /bin/busybox cat /etc/resolv.conf",
    ]));
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("eth0") && text.contains("eth1") && text.contains("10.231.30."),
        "{text}"
    );
    // --dns=host: the host's resolv.conf as it is.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if let Some(line) = host.lines().find(|l| l.starts_with("nameserver")) {
        assert!(text.contains(line), "{text}");
    }
    assert!(
        output(skiff_in(tmp.path()).args(["stop", &uuid]))
            .status
            .success()
    );
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert_eq!(traces_of(&uuid), Vec::<String>::new());
}

/// podman's `-p HOSTPORT:PODPORT` forwards to a port no image names (the
/// pod manifest records it as a podPort), `-p PODPORT` from a free host
/// port, and `--dns-domain` writes
/// resolv.conf's `domain` beside the network's name servers.
#[test]
fn numeric_ports_and_dns_domain() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let port = 19000 + (std::process::id() % 1000) as u16;
    let uuid = start_httpd(tmp.path(), &aci, &["-p", &format!("{port}:8080/tcp")]);
    // The pod's /etc/passwd through host port `port` of the loopback.
    let serves_passwd = |port: u16| {
        let curl = eventually("the forwarded port answers", || {
            let curl = Command::new("curl")
                .args(["-s", "--max-time", "5"])
                .arg(format!("http://127.0.0.1:{port}/passwd"))
                .output()
                .unwrap();
            curl.status.success().then_some(curl)
        });
        assert!(
            String::from_utf8_lossy(&curl.stdout).contains("root:x:0:0"),
            "{curl:?}"
        );
    };
    serves_passwd(port);
    let manifest: serde_json::Value =
        serde_json::from_slice(&output(skiff_in(tmp.path()).args(["cat-manifest", &uuid])).stdout)
            .unwrap();
    let exposed = &manifest["ports"][0];
    assert_eq!(exposed["hostPort"], port, "{manifest}");
    assert_eq!(exposed["podPort"]["port"], 8080, "{manifest}");
    let stopped = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));

    // `-p PODPORT`: a free host port, said on stderr and by status.
    let out = httpd_output(tmp.path(), &aci, &["-p", "8080", "-p", "8080"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let said: u16 = stderr(&out)
        .split("forwarding host port ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no chosen port said: {}", stderr(&out)));
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &uuid])));
    // Two host ports to one pod port: one line, both on it.
    let line = status
        .lines()
        .find(|l| l.starts_with("port-tcp-8080="))
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(status.matches("port-tcp-8080=").count(), 1, "{status}");
    assert!(
        line.contains(&said.to_string()) && line.contains(','),
        "{status}"
    );
    serves_passwd(said);
    let stopped = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));

    for (flag, why) in [
        ("8080:0", "not a port"),
        ("0", "not a port"),
        ("[::1]", "an address needs ports"),
        ("80:8080/sctp", "use tcp or udp"),
        ("nosuch:80", "no app has a port named"),
        ("bad!name:80", "no port name"),
    ] {
        let out = sh(tmp.path(), &aci, &[&format!("--port={flag}")], "true");
        assert_refused(&out, flag);
        assert!(stderr(&out).contains(why), "{flag}: {}", stderr(&out));
    }

    // Refused for want of a network that forwards: no port announced.
    let out = sh(tmp.path(), &aci, &["--net=none", "-p", "8080"], "true");
    assert_refused(&out, "-p on --net=none");
    assert!(
        !stderr(&out).contains("forwarding host port"),
        "{}",
        stderr(&out)
    );

    let out = sh(
        tmp.path(),
        &aci,
        &["--dns-domain=corp.example"],
        "cat /etc/resolv.conf",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let resolv = stdout(&out);
    assert!(resolv.contains("domain corp.example\n"), "{resolv}");
    assert!(resolv.contains("nameserver "), "{resolv}");
    let out = sh(tmp.path(), &aci, &["--dns-domain=bad domain"], "true");
    assert_refused(&out, "a domain with a space");
}

/// rkt's `default-restricted`: a pod reaches the host (its address on the
/// network's own bridge) and nothing else — no default route, no way to
/// the default network — and takes no forwarded ports.
#[test]
fn the_restricted_network_reaches_the_host_and_nothing_else() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        text
    });
    let script = format!(
        "gw=$(ip -4 addr show eth0 | sed -n 's/.*inet \\([0-9.]*\\)\\.[0-9]*\\/.*/\\1.1/p'); \
         echo gateway=$gw; ip route; \
         echo hello | nc -w 10 $gw {port} && echo reached-host; \
         nc -w 3 1.1.1.1 80 </dev/null 2>&1; \
         nc -w 3 172.16.28.1 80 </dev/null 2>&1; true"
    );
    let out = sh(tmp.path(), &aci, &["--net=default-restricted"], &script);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("reached-host"), "{text}");
    assert_eq!(heard.join().unwrap(), "hello\n");
    assert!(!text.contains("default"), "a default route: {text}");
    assert_eq!(
        text.matches("Network is unreachable").count(),
        2,
        "the outside or the default network reached: {text}"
    );
    let out = sh(
        tmp.path(),
        &aci,
        &["--net=default-restricted", "--port=18099:80"],
        "true",
    );
    assert_refused(&out, "--port on default-restricted");
}

/// Puts `net.ipv6.conf.all.forwarding` back as it was.
struct Ipv6Forwarding(String);

impl Drop for Ipv6Forwarding {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", &self.0);
    }
}

/// On a host that forwards IPv6, the default network is dual-stack: the
/// pod has an address of fd73:6b69:6666::/64 and a default route, and the
/// host reaches it over IPv6. (Changes a host setting for its duration:
/// run alone.)
#[test]
#[ignore = "turns on the host's IPv6 forwarding for a while: cargo xtask test runs it alone, after the parallel suite"]
fn the_default_network_has_ipv6_when_the_host_forwards_it() {
    let path = "/proc/sys/net/ipv6/conf/all/forwarding";
    let _restore = Ipv6Forwarding(std::fs::read_to_string(path).unwrap());
    std::fs::write(path, "1").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let uuid = start_httpd(tmp.path(), &aci, &[]);
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &uuid])));
    let address = status
        .split("ip6=")
        .nth(1)
        .and_then(|rest| rest.split([',', '\n']).next())
        .unwrap_or_else(|| panic!("no IPv6 address: {status}"))
        .to_string();
    assert!(address.starts_with("fd73:6b69:6666:"), "{status}");
    let routes = output(skiff_in(tmp.path()).args(["enter", &uuid]).args([
        "/bin/busybox",
        "ip",
        "-6",
        "route",
    ]));
    assert!(
        stdout(&routes).contains("default via fd73:6b69:6666::1"),
        "{}{}",
        stdout(&routes),
        stderr(&routes)
    );
    let curl = eventually("the pod answers over IPv6", || {
        let curl = Command::new("curl")
            .args(["-s", "-g", "--max-time", "5"])
            .arg(format!("http://[{address}]:8080/passwd"))
            .output()
            .unwrap();
        curl.status.success().then_some(curl)
    });
    assert!(
        String::from_utf8_lossy(&curl.stdout).contains("root:x:0:0"),
        "{curl:?}"
    );
    let stopped = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
}

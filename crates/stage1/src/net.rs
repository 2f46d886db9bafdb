//! The pod's networking (`ns` flavor): its network namespace, CNI ADD
//! before init starts and DEL when the pod ends — or at `gc` after a crash —
//! and the `/etc/hosts` and `/etc/resolv.conf` its apps see.
//!
//! The record (`<pod>/net/info.json`, [`skiff_net::record`]) is written
//! before ADD runs, so a teardown always knows what to delete, however far
//! setup got.

use std::fs::File;
use std::path::{Path, PathBuf};

use skiff_net::attach::{PodNetwork, forwards_ports};
use skiff_net::record::{self, NetInfo};
use skiff_net::{Attachment, files, netns};
use skiff_pod::{DnsMode, NetMode, Pod, Runtime};

use crate::Stage1Error;
use crate::setup_err;

/// Sets the pod's networking up; returns its network namespace to join
/// (none with host networking). On failure nothing is left behind.
pub fn set_up(pod: &Pod, runtime: &Runtime) -> Result<Option<File>, Stage1Error> {
    std::fs::create_dir_all(record::dir(&pod.path)).map_err(setup_err(format!(
        "create {}",
        record::dir(&pod.path).display()
    )))?;
    if runtime.net.mode == NetMode::Host {
        write_etc_files(pod, runtime, &[])?;
        return Ok(None);
    }
    match (runtime.net.mode, runtime.rootless) {
        // An ordinary user's pod with --net=none: a namespace that lives as
        // long as the pod's processes.
        (NetMode::None, true) => {
            write_etc_files(pod, runtime, &[])?;
            return Ok(Some(netns::create_unbound()?));
        }
        (NetMode::User, _) => {
            return Err(Stage1Error::Config(
                "the user-mode network is for an ordinary user's pods of the ns flavor".into(),
            ));
        }
        (_, true) => {
            return Err(Stage1Error::Config(
                "an ordinary user's pods have the user-mode network or none: CNI networks need root".into(),
            ));
        }
        _ => {}
    }
    let path = netns::path_for(&pod.uuid);
    let mut info = NetInfo {
        netns: path.clone(),
        networks: runtime.net.networks.clone(),
    };
    // A built-in network runs portmap only for a pod that forwards ports;
    // recorded before ADD, so a DEL after a crash runs it too.
    let port_network = info.networks.iter().position(|a| forwards_ports(&a.config));
    for (i, a) in info.networks.iter_mut().enumerate() {
        a.chained = a.builtin && Some(i) == port_network && !runtime.net.ports.is_empty();
    }
    record::write(&pod.path, &info)?;
    let attached = netns::create(&path)
        .map_err(Stage1Error::from)
        .and_then(|()| add_all(pod, runtime, &mut info));
    let file = attached.and_then(|()| {
        write_etc_files(pod, runtime, &info.networks)?;
        File::open(&path).map_err(setup_err(format!("open {}", path.display())))
    });
    match file {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            let _ = tear_down(&pod.path, &pod.uuid);
            Err(e)
        }
    }
}

fn add_all(pod: &Pod, runtime: &Runtime, info: &mut NetInfo) -> Result<(), Stage1Error> {
    let net = &runtime.net;
    let port_network = info.networks.iter().position(|a| forwards_ports(&a.config));
    let _lock = match net.ports.is_empty() {
        true => None,
        false => Some(skiff_net::portmap::lock()?),
    };
    for i in 0..info.networks.len() {
        let cni = PodNetwork {
            container_id: &pod.uuid,
            netns: &info.netns,
            cni_path: &net.cni_path,
            ports: if Some(i) == port_network {
                &net.ports
            } else {
                &[]
            },
        };
        cni.add(&mut info.networks[i])?;
        record::write(&pod.path, info)?;
    }
    Ok(())
}

/// Deletes the pod's networks (in reverse) and its namespace; safe to run
/// again on a half-torn-down pod. The record and the namespace stay while a
/// DEL fails, for `gc` to retry.
pub fn tear_down(pod: &Path, uuid: &str) -> Result<(), Stage1Error> {
    let Some(info) = record::read(pod) else {
        // No record: at most a namespace made before it was written.
        netns::remove(&netns::path_for(uuid));
        return Ok(());
    };
    let runtime: Option<Runtime> = std::fs::read(pod.join("runtime.json"))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok());
    let (cni_path, ports) = runtime
        .map(|r| (r.net.cni_path, r.net.ports))
        .unwrap_or_else(|| (skiff_net::cni_path(), Vec::new()));
    // The namespace is where stage1 binds it for this pod, whatever the
    // record says (a record is a file in the pod's directory: unbinding and
    // unlinking a path taken from it would act on any file).
    let path = netns::path_for(uuid);
    let port_network = info.networks.iter().position(|a| forwards_ports(&a.config));
    let lock = match ports.is_empty() {
        true => None,
        false => Some(skiff_net::portmap::lock()?),
    };
    let mut first_error = None;
    for (i, a) in info.networks.iter().enumerate().rev() {
        let cni = PodNetwork {
            container_id: uuid,
            netns: &path,
            cni_path: &cni_path,
            ports: if Some(i) == port_network { &ports } else { &[] },
        };
        if let Err(e) = cni.del(a) {
            first_error.get_or_insert(e);
        }
    }
    if let Some(lock) = &lock {
        skiff_net::portmap::remove_unused_chains(lock);
    }
    match first_error {
        // The namespace stays too: a retried DEL needs it to find the
        // addresses whose NAT rules it removes.
        Some(e) => Err(e.into()),
        None => {
            netns::remove(&path);
            record::remove(pod);
            Ok(())
        }
    }
}

/// Writes `<pod>/net/hosts` and (unless the image's own is kept)
/// `<pod>/net/resolv.conf`.
pub(crate) fn write_etc_files(
    pod: &Pod,
    runtime: &Runtime,
    networks: &[Attachment],
) -> Result<(), Stage1Error> {
    let net = &runtime.net;
    let ips: Vec<_> = networks
        .iter()
        .filter_map(|a| a.ips().first().copied())
        .collect();
    let mut hosts = files::hosts(&runtime.hostname, &ips, &net.hosts_entries);
    if net.hosts_from_host {
        hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default()
            + &files::hosts(&runtime.hostname, &ips, &net.hosts_entries);
    }
    let host_resolv = || std::fs::read_to_string("/etc/resolv.conf").ok();
    let resolv = match net.dns.mode {
        DnsMode::None => None,
        DnsMode::Host => host_resolv(),
        DnsMode::Explicit => {
            // --dns-search, --dns-opt or --dns-domain without --dns keep the
            // name servers the pod would have had.
            let mut servers = net.dns.servers.clone();
            if servers.is_empty() {
                servers = networks.iter().flat_map(|a| a.dns().0).collect();
            }
            if servers.is_empty() {
                let host = host_resolv().unwrap_or_default();
                let host = match net.mode {
                    NetMode::Host => Some(host),
                    _ => files::filter_loopback_servers(&host),
                };
                servers = files::nameservers(&host.unwrap_or_default());
            }
            Some(files::resolv_conf(
                net.dns.domain.as_deref(),
                &servers,
                &net.dns.search,
                &net.dns.options,
            ))
        }
        DnsMode::Default => {
            let (mut servers, mut search, mut options) = (Vec::new(), Vec::new(), Vec::new());
            for a in networks {
                let (s, d, o) = a.dns();
                servers.extend(s);
                search.extend(d);
                options.extend(o);
            }
            if !servers.is_empty() {
                Some(files::resolv_conf(None, &servers, &search, &options))
            } else if net.mode == NetMode::Host {
                host_resolv()
            } else {
                host_resolv().and_then(|h| files::filter_loopback_servers(&h))
            }
        }
    };
    let d = record::dir(&pod.path);
    std::fs::write(d.join("hosts"), hosts).map_err(setup_err("write the pod's hosts file"))?;
    match resolv {
        Some(text) => std::fs::write(d.join("resolv.conf"), text)
            .map_err(setup_err("write the pod's resolv.conf"))?,
        None => {
            let _ = std::fs::remove_file(d.join("resolv.conf"));
        }
    }
    Ok(())
}

/// The files to bind over each app's `/etc/hosts` and `/etc/resolv.conf`.
pub fn etc_files(pod: &Path) -> Vec<(PathBuf, &'static str)> {
    [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf")]
        .into_iter()
        .map(|(f, target)| (record::dir(pod).join(f), target))
        .filter(|(f, _)| f.is_file())
        .collect()
}

//! skiff as an ordinary user (docs/rootless.md): its own directories, its
//! own trust, signed fetches over HTTPS discovery; pods are refused until
//! rootless pods exist, saying so; root's store is out of its reach.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::fetch;
use crate::users::TestUser;

#[test]
fn an_ordinary_user_trusts_and_fetches_in_its_own_directories() {
    let site = fetch::site();
    let user = TestUser::new("fetch");
    let ca = user.copy_in(&site.ca_file);
    let key_file = site.root.path().join("signer.asc");
    std::fs::write(&key_file, site.gpg.public_key()).unwrap();
    let key = user.copy_in(&key_file);

    let out = output(
        user.skiff()
            .args([
                "trust",
                "--prefix",
                fetch::NAME,
                "--skip-fingerprint-review",
            ])
            .arg(&key),
    );
    assert!(out.status.success(), "trust: {}", stderr(&out));
    let out = output(
        user.skiff()
            .env("SSL_CERT_FILE", &ca)
            .args(["fetch", "127.0.0.2/busybox:1.0"]),
    );
    assert!(out.status.success(), "fetch: {}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert!(
        stderr(&out).contains("signature of 127.0.0.2/busybox verified"),
        "{}",
        stderr(&out)
    );
    let out = output(user.skiff().args(["image", "list", "--format", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));

    // In the XDG directories, the data one private, all of it the user's.
    let data = user.home().join(".local/share/skiff");
    assert!(data.join("cas").is_dir(), "no store in {}", data.display());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the data directory is {mode:o}");
    let keys = user.home().join(".config/skiff/trustedkeys");
    assert!(keys.is_dir(), "no trusted keys in {}", keys.display());
    assert_eq!(user.foreign_files(), Vec::<std::path::PathBuf>::new());

    // A pod on the default network: refused, saying why, before anything
    // is made.
    let out = output(
        user.skiff()
            .env("SSL_CERT_FILE", &ca)
            .args(["run", "127.0.0.2/busybox:1.0"]),
    );
    assert_refused(&out, "a pod on the default network as an ordinary user");
    assert!(
        stderr(&out).contains("need --net=none for now"),
        "{}",
        stderr(&out)
    );
    assert!(
        !data.join("pods").exists()
            || std::fs::read_dir(data.join("pods/prepare"))
                .map_or(true, |mut d| d.next().is_none())
    );

    // Root's store, even where the user can reach its directory, is not
    // the user's: refused (it is root's own and 0700).
    std::fs::set_permissions(site.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = fetch::run(&site, &["image", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(
        user.skiff()
            .arg("--dir")
            .arg(site.root.path().join("data"))
            .args(["image", "list"]),
    );
    assert_refused(&out, "the user listing root's store");
    assert!(
        stderr(&out).contains("is not this user's"),
        "{}",
        stderr(&out)
    );
}

/// An unsigned ACI whose files have owners other than root: uid:gid
/// 1234:2345 for etc/owned, 1000:1000 for home.
fn owners_aci(path: &Path) {
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add =
        |name: &str, data: &[u8], kind: tar::EntryType, owner: u64, group: u64, mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_uid(owner);
            h.set_gid(group);
            h.set_mode(mode);
            tar.append_data(&mut h, name, data).unwrap();
        };
    let manifest = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/owners","labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;
    add("manifest", manifest, tar::EntryType::Regular, 0, 0, 0o644);
    add("rootfs", b"", tar::EntryType::Directory, 0, 0, 0o755);
    add("rootfs/etc", b"", tar::EntryType::Directory, 0, 0, 0o755);
    add(
        "rootfs/etc/owned",
        b"x",
        tar::EntryType::Regular,
        1234,
        2345,
        0o644,
    );
    add(
        "rootfs/home",
        b"",
        tar::EntryType::Directory,
        1000,
        1000,
        0o750,
    );
    add(
        "rootfs/su",
        b"#!/bin/sh\n",
        tar::EntryType::Regular,
        0,
        0,
        0o4755,
    );
    tar.finish().unwrap();
}

fn tree_of(user: &TestUser, id: &str) -> PathBuf {
    user.home()
        .join(".local/share/skiff/trees")
        .join(id.trim().trim_start_matches("sha512-"))
        .join("rootfs")
}

/// An ordinary user's commands run as root of a user namespace of its own
/// with its subordinate ids (newuidmap/newgidmap): rendered files keep
/// their in-image owners, shifted into the user's range, and the user can
/// remove them again. Without subordinate ids: one id, a warning saying
/// what is lost and how to add a range, every file the user's.
#[test]
fn images_keep_their_owners_in_the_users_subordinate_range() {
    let user = TestUser::new("owners");
    let (start, _) = user.subordinate_uids();
    let aci = user.home().join("owners.aci");
    owners_aci(&aci);
    user.give(&aci);
    let fetch = |user: &TestUser| {
        let out = output(
            user.skiff()
                .args(["fetch", "--insecure-options=image", "--allow-setuid"])
                .arg(&aci),
        );
        assert!(out.status.success(), "fetch: {}", stderr(&out));
        out
    };
    let out = fetch(&user);
    assert!(!stderr(&out).contains("single id"), "{}", stderr(&out));
    let tree = tree_of(&user, &stdout(&out));
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(tree.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    // In-image id N is host id start + N - 1 (0 is the user itself).
    assert_eq!(owner("etc/owned"), (start + 1233, start + 2344));
    assert_eq!(owner("home"), (start + 999, start + 999));
    assert_eq!(owner("etc"), (user.uid, user.gid));
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(
        mode(&tree.join("su")),
        0o4755,
        "in the store: as in the image"
    );
    // Extracted to a directory of the user's (which other users may reach),
    // a setuid file is not setuid: it would be any local user's way into
    // the user's ids.
    let out = output(
        user.skiff()
            .args(["image", "extract", "example.com/owners"])
            .arg(user.home().join("out")),
    );
    assert!(out.status.success(), "extract: {}", stderr(&out));
    assert_eq!(mode(&user.home().join("out/rootfs/su")), 0o755);
    std::fs::remove_dir_all(user.home().join("out")).unwrap();
    // What the user's namespace made, the user can remove.
    for args in [&["image", "rm", "example.com/owners"][..], &["image", "gc"]] {
        let out = output(user.skiff().args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert!(!tree.exists(), "{} is left", tree.display());

    user.without_subordinate_ids();
    let out = fetch(&user);
    assert!(
        stderr(&out).contains("has no subordinate ids")
            && stderr(&out).contains("usermod --add-subuids"),
        "{}",
        stderr(&out)
    );
    let tree = tree_of(&user, &stdout(&out));
    assert_eq!(owner_of(&tree.join("etc/owned")), (user.uid, user.gid));
    // Pods need subordinate ids: refused, saying how to add them.
    let out = output(
        user.skiff()
            .args(["--insecure-options=image", "run", "--net=none"])
            .arg(&aci),
    );
    assert_refused(&out, "a pod of a user without subordinate ids");
    assert!(
        stderr(&out).contains("need subordinate ids"),
        "{}",
        stderr(&out)
    );
    assert_eq!(user.foreign_files(), Vec::<PathBuf>::new());
}

fn owner_of(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// An ordinary user's pod (`--net=none`): its apps run as root of the
/// user's namespace (the user outside, nothing more), the exit status comes
/// back, a detached pod is listed (by the user, not by root), stopped and
/// collected with nothing left; what needs root is refused before anything
/// is made.
#[test]
fn an_ordinary_user_runs_stops_and_collects_pods() {
    let user = TestUser::new("pods");
    let (start, _) = user.subordinate_uids();
    let build = tempfile::tempdir().unwrap();
    let aci = user.home().join("busybox.aci");
    busybox_aci(build.path(), "example.com/busybox", &aci);
    user.give(&aci);
    let run = |args: &[&str]| {
        output(
            user.skiff()
                .args(["--insecure-options=image", "run", "--net=none"])
                .args(args),
        )
    };
    let out = run(&[
        aci.to_str().unwrap(),
        "--exec=/bin/sh",
        "--",
        "-c",
        "id -u; cat /proc/self/uid_map; echo hello > /tmp/x; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "run: {}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("0"), "{text}");
    let maps: Vec<Vec<u64>> = lines
        .take(2)
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        maps,
        [
            vec![0, u64::from(user.uid), 1],
            vec![1, u64::from(start), 65535]
        ],
        "{text}"
    );

    // Detached: listed by the user, not by root; stopped and collected.
    let out = output(
        user.skiff()
            .args(["--insecure-options=image", "run", "--detach", "--net=none"])
            .arg(&aci)
            .args(["--exec=/bin/busybox", "--", "sleep", "1000"]),
    );
    assert!(out.status.success(), "run --detach: {}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let out = output(user.skiff().args(["list", "--format=json"]));
    assert!(stdout(&out).contains(&uuid), "{}", stdout(&out));
    let root_dir = tempfile::tempdir().unwrap();
    let out = output(skiff_in(root_dir.path()).args(["list", "--format=json"]));
    assert!(!stdout(&out).contains(&uuid), "root lists the user's pod");
    // Root pointed at the user's data directory trusts none of it: its pod
    // records would make root act on files the user chose.
    let user_data = user.home().join(".local/share/skiff");
    for args in [&["list"][..], &["gc"], &["stop", &uuid]] {
        let out = output(skiff().arg("--dir").arg(&user_data).args(args));
        assert_refused(
            &out,
            &format!("root's {args:?} in the user's data directory"),
        );
        assert!(
            stderr(&out).contains("is not this user's"),
            "{}",
            stderr(&out)
        );
    }
    let out = output(user.skiff().args(["enter", &uuid, "/bin/true"]));
    assert_refused(&out, "enter (not implemented yet)");
    assert!(
        stderr(&out).contains("not implemented yet"),
        "{}",
        stderr(&out)
    );
    let out = output(user.skiff().args(["stop", &uuid]));
    assert!(out.status.success(), "stop: {}", stderr(&out));
    eventually("the pod to exit", || {
        let out = output(user.skiff().args(["status", &uuid]));
        stdout(&out).contains("state=exited").then_some(())
    });
    let out = output(user.skiff().args(["gc", "--grace-period=0"]));
    assert!(out.status.success(), "gc: {}", stderr(&out));
    let out = output(user.skiff().args(["list", "--format=json"]));
    assert_eq!(stdout(&out).trim(), "[]");
    let gone = (0..100).any(|_| {
        let none = crate::users::processes_of(user.uid).is_empty();
        if !none {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        none
    });
    assert!(
        gone,
        "the user's processes are left: {:?}",
        crate::users::processes_of(user.uid)
    );
    // Nothing in the home is owned by an id outside the user and its range.
    let outside: Vec<PathBuf> = user
        .foreign_files()
        .into_iter()
        .filter(|p| {
            let uid = std::fs::symlink_metadata(p).unwrap().uid();
            !(start..start + 65535).contains(&uid)
        })
        .collect();
    assert_eq!(outside, Vec::<PathBuf>::new());

    // What needs root: refused before anything is made.
    let image = aci.to_str().unwrap();
    for (args, why) in [
        (vec![image, "--memory=64M"], "need cgroups"),
        (vec!["--pids-limit=10", image], "need cgroups"),
        (
            vec!["--private-users", image],
            "already in the user's own namespace",
        ),
        (vec!["--stage1=fly", image], "ns flavor"),
    ] {
        let out = run(&args);
        assert_refused(&out, &format!("{args:?}"));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    let out = output(user.skiff().args(["list", "--format=json"]));
    assert_eq!(stdout(&out).trim(), "[]", "a refused pod was made");

    // A root pod whose record claims to be a user's is refused by stage1
    // (it would run without cgroups and device policy).
    let root_pods = tempfile::tempdir().unwrap();
    let out = output(
        skiff_in(root_pods.path())
            .args(["--insecure-options=image", "prepare", "--net=none"])
            .arg(&aci),
    );
    assert!(out.status.success(), "prepare: {}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let record = root_pods
        .path()
        .join("data/pods/prepared")
        .join(&uuid)
        .join("runtime.json");
    let mut runtime: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    runtime["rootless"] = true.into();
    std::fs::write(&record, runtime.to_string()).unwrap();
    let out = output(skiff_in(root_pods.path()).args(["run-prepared", &uuid]));
    assert!(!out.status.success(), "a root pod ran as a user's");
    assert!(
        stderr(&out).contains("prepared by a user other than root"),
        "{}",
        stderr(&out)
    );
    let out = output(skiff_in(root_pods.path()).args(["gc", "--grace-period=0"]));
    assert!(out.status.success(), "gc: {}", stderr(&out));
}

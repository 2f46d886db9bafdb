//! Pods with the `ns` flavor: isolation facts seen from inside, exit
//! statuses, lifecycle (detach, list, status, stop, gc), no leaked mounts.

use std::process::Stdio;

use crate::common::*;

/// The host's mount points, without the network namespaces of pods that
/// other tests run meanwhile, nor the mounts of their fly pods (in the
/// host's mount namespace, under those tests' own temporary directories);
/// the suite-wide check in xtask covers those. `own`: this test's
/// temporary directory, whose mounts all count.
fn mounts(own: &std::path::Path) -> Vec<String> {
    let others = std::env::temp_dir().join(".tmp");
    let others = others.to_string_lossy();
    let mut m: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| !p.starts_with("/run/skiff/netns/"))
        .filter(|p| !p.starts_with(others.as_ref()) || std::path::Path::new(p).starts_with(own))
        .collect();
    m.sort();
    m
}

/// [`layout_aci`], fetched into the store under `root` (as
/// `example.com/busybox`); its file.
fn stored_busybox(root: &std::path::Path) -> std::path::PathBuf {
    let aci = layout_aci(root);
    let out = output(
        skiff_in(root)
            .args(["fetch", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    aci
}

fn layout_aci(dir: &std::path::Path) -> std::path::PathBuf {
    let aci = dir.join("bb.aci");
    busybox_aci(dir, "example.com/busybox", &aci);
    aci
}

fn run_sh(root: &std::path::Path, aci: &std::path::Path, script: &str) -> std::process::Output {
    output(
        skiff_in(root)
            .args(["run", "--insecure-options=image"])
            .arg(aci)
            .args(["--exec=/bin/sh", "--", "-c", script]),
    )
}

#[test]
fn a_pod_is_isolated_and_reports_its_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    let before = mounts(tmp.path());
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let out = run_sh(
        tmp.path(),
        &aci,
        "echo ok; hostname; cat /proc/self/status; echo procs=$(ls /proc | grep -c '^[0-9]'); \
         (echo x > /proc/sysrq-trigger) 2>/dev/null && echo SYSRQ-WRITABLE; \
         echo fds=$(ls /proc/self/fd | tr '\\n' ' '); echo $AC_APP_NAME; pwd; exit 7",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ok\nskiff-"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    let cap = text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .unwrap();
    let cap = u64::from_str_radix(cap.trim(), 16).unwrap();
    assert_eq!(cap & (1 << 21), 0, "CAP_SYS_ADMIN in the pod");
    assert_eq!(cap, 0xa80425fb, "the appc default capability set");
    let procs: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs < 10, "{procs} processes visible: no pid namespace?");
    assert!(!text.contains("SYSRQ-WRITABLE"), "{text}");
    let fds: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("fds="))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "extra fds reach the app (3 is ls's own)"
    );
    assert!(text.contains("\nbusybox\n/\n"), "{text}");
    // The pod is recorded as exited with the status.
    let list = stdout(&output(
        skiff_in(tmp.path()).args(["list", "--format=json"]),
    ));
    assert!(list.contains("\"exitCode\": 7"), "{list}");
    let out = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let left = std::fs::read_dir(tmp.path().join("data/pods/exited-garbage"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
    assert_eq!(mounts(tmp.path()), before, "mounts leaked");
}

#[test]
fn the_host_binary_and_directories_are_out_of_reach() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let skiff_bin = env!("CARGO_BIN_EXE_skiff");
    let stage1 = std::path::Path::new(skiff_bin).with_file_name("skiff-stage1");
    let full = std::path::Path::new(env!("CARGO_BIN_EXE_skiff-full"));
    let hash = |p: &std::path::Path| std::fs::read(p).unwrap();
    let (h0, h1, h2) = (
        hash(std::path::Path::new(skiff_bin)),
        hash(&stage1),
        hash(full),
    );
    let out = run_sh(
        tmp.path(),
        &aci,
        "for p in /proc/[0-9]*; do (echo '#!/bin/sh' > $p/exe) 2>/dev/null && echo WROTE $p/exe; \
         ls $p/fd/ 2>/dev/null | while read f; do readlink $p/fd/$f; done; readlink $p/cwd $p/root; done; ls /",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("WROTE"), "{text}");
    assert!(
        !text.contains(tmp.path().to_str().unwrap()),
        "a host path is reachable: {text}"
    );
    assert_eq!(hash(std::path::Path::new(skiff_bin)), h0);
    assert_eq!(hash(&stage1), h1);
    assert_eq!(hash(full), h2);
}

#[test]
fn detached_pods_are_listed_stopped_and_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let before = mounts(tmp.path());
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let mut uuids = Vec::new();
    for i in 0..2 {
        let file = tmp.path().join(format!("uuid{i}"));
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--detach", "--insecure-options=image"])
                .arg(format!("--uuid-file-save={}", file.display()))
                .arg(&aci)
                .args(["--exec=/bin/busybox", "--", "sleep", "300"])
                .stdin(Stdio::null()),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        uuids.push(std::fs::read_to_string(&file).unwrap().trim().to_string());
    }
    let logs: Vec<String> = std::fs::read_dir(tmp.path().join("data/pods/run"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_to_string(e.path().join("stage1.log")).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let list = stdout(&output(skiff_in(tmp.path()).args(["list", "--no-legend"])));
    let json = stdout(&output(
        skiff_in(tmp.path()).args(["list", "--format=json"]),
    ));
    assert_eq!(
        list.matches("running").count(),
        2,
        "{list}\nstage1 logs: {logs:?}\n{json}"
    );
    let status = stdout(&output(
        skiff_in(tmp.path()).args(["status", &uuids[0][..8]]),
    ));
    assert!(
        status.contains("state=running") && status.contains("pid="),
        "{status}"
    );
    for u in &uuids {
        let out = output(skiff_in(tmp.path()).args(["stop", u]));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &uuids[0]])));
    assert!(
        status.contains("state=exited") && status.contains("app-busybox=143"),
        "{status}"
    );
    let out = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let pods: usize = ["run", "exited-garbage", "garbage", "prepared"]
        .iter()
        .map(|s| {
            std::fs::read_dir(tmp.path().join("data/pods").join(s))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(pods, 0);
    assert_eq!(mounts(tmp.path()), before, "mounts leaked");
}

#[test]
fn setup_failures_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image"])
            .arg(&aci)
            .args(["--exec=/no/such/program"]),
    );
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot execute /no/such/program"),
        "{}",
        stderr(&out)
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image"])
            .arg(&aci)
            .args(["--user=nobody"]),
    );
    // Refused before the pod is made (exit 1, as every refusal).
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("user 'nobody' is not in the image's /etc/passwd"),
        "{}",
        stderr(&out)
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--net=nosuchnet"])
            .arg(&aci),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown network 'nosuchnet'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn seccomp_blocks_what_capabilities_alone_would_not() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let out = run_sh(
        tmp.path(),
        &aci,
        "grep Seccomp: /proc/self/status; \
         /bin/busybox unshare -U /bin/busybox true 2>/dev/null && echo UNSHARE-USERNS-ALLOWED; \
         /bin/busybox reboot -f 2>/dev/null; echo still-here",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Seccomp:\t2"), "{text}");
    assert!(!text.contains("UNSHARE-USERNS-ALLOWED"), "{text}");
    assert!(text.contains("still-here"), "{text}");
}

#[test]
fn enter_runs_inside_a_running_pod() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--detach",
                "--insecure-options=image",
                "--hostname=inside",
            ])
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo marker > /marker; exec /bin/busybox sleep 300",
            ])
            .stdin(Stdio::null()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let seen = eventually("the app wrote /marker", || {
        let out = output(skiff_in(tmp.path()).args(["enter", &uuid[..8], "/bin/sh", "-c", "cat /marker; hostname; grep -E 'NoNewPrivs|Seccomp:' /proc/self/status; echo $AC_APP_NAME"]));
        Some(stdout(&out)).filter(|seen| seen.contains("marker"))
    });
    assert!(seen.contains("marker\ninside\n"), "{seen}");
    assert!(
        seen.contains("NoNewPrivs:\t1") && seen.contains("Seccomp:\t2") && seen.contains("busybox"),
        "{seen}"
    );
    let out = output(skiff_in(tmp.path()).args(["enter", &uuid, "/bin/sh", "-c", "exit 5"]));
    assert_eq!(out.status.code(), Some(5));
    // As another user (a number the image does not name: group 0), with
    // more environment and another directory; stdin only with -i.
    let enter_with = |args: &[&str], input: &str| {
        let mut child = skiff_in(tmp.path())
            .arg("enter")
            .args(args)
            .arg(&uuid)
            .args(["/bin/sh", "-c", "id -u; id -g; echo $GREETING; pwd; cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // A command that does not read its stdin may end first.
        let _ = stdin.write_all(input.as_bytes());
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let out = enter_with(
        &["--user=1234", "-e", "GREETING=hi", "--workdir=/etc"],
        "typed\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1234\n0\nhi\n/etc\n", "{}", stderr(&out));
    let out = enter_with(&["-i", "-u", "root:42"], "typed\n");
    assert_eq!(stdout(&out), "0\n42\n\n/\ntyped\n", "{}", stderr(&out));
    for (bad, what) in [
        ("--user=nosuchuser", "not in the image's /etc/passwd"),
        ("--workdir=relative", "absolute path"),
        ("--env=NOVALUE", "NAME=VALUE"),
    ] {
        let out = enter_with(&[bad], "");
        assert!(!out.status.success(), "{bad}");
        assert!(stderr(&out).contains(what), "{bad}: {}", stderr(&out));
    }
    // `status --wait` returns once the pod has exited.
    let waiter = skiff_in(tmp.path())
        .args(["status", "--wait", &uuid])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output(skiff_in(tmp.path()).args(["stop", "--force", &uuid]));
    assert!(out.status.success(), "{}", stderr(&out));
    let waited = waiter.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&waited.stdout);
    assert!(
        text.contains("state=exited") && text.contains("app-busybox=137"),
        "{text}"
    );
    let out = output(skiff_in(tmp.path()).args(["enter", &uuid, "/bin/true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    let out = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success());
}

fn cgroup_dirs() -> Vec<String> {
    let mut dirs = Vec::new();
    for base in [
        "/sys/fs/cgroup/memory/skiff",
        "/sys/fs/cgroup/cpu/skiff",
        "/sys/fs/cgroup/pids/skiff",
        "/sys/fs/cgroup/skiff",
    ] {
        if let Ok(rd) = std::fs::read_dir(base) {
            dirs.extend(
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path().display().to_string()),
            );
        }
    }
    dirs
}

/// A pod of one app has one memory cgroup on v1 (each costs the kernel a
/// slot per superblock of the host), which init is not in (the OOM killer
/// cannot pick it); its process limit and device policy stay a level
/// above the app.
#[test]
fn a_pod_of_one_app_has_one_memory_cgroup_that_init_is_no_victim_of() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let uuid = run_detached(
        tmp.path(),
        &[
            aci.to_str().unwrap(),
            "--memory=64M",
            "--exec=/bin/busybox",
            "--",
            "sleep",
            "60",
        ],
    );
    let status = stdout(&output(skiff_in(tmp.path()).args(["status", &uuid])));
    let init = pid_in(&status);
    let app = eventually("the app's process", || child_of(init)).to_string();
    if !std::path::Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        eprintln!("skipped: not a cgroup v1 host (v2 keeps the nested layout)");
        let _ = output(skiff_in(tmp.path()).args(["stop", &uuid]));
        return;
    }
    let below = |dir: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    };
    let memory = format!("/sys/fs/cgroup/memory/skiff/{uuid}");
    assert!(below(&memory).is_empty(), "{:?}", below(&memory));
    // The app's process joins its cgroups after the fork, before exec.
    let procs = eventually("the app in the pod's memory cgroup", || {
        let procs = std::fs::read_to_string(format!("{memory}/cgroup.procs")).unwrap();
        procs.lines().any(|p| p == app).then_some(procs)
    });
    let members: Vec<&str> = procs.lines().collect();
    assert!(
        !members.contains(&init.to_string().as_str()),
        "init shares the app's memory cgroup: {procs}"
    );
    let pids = format!("/sys/fs/cgroup/pids/skiff/{uuid}");
    assert_eq!(below(&pids).len(), 1, "{:?}", below(&pids));
    // Init and the app each moved themselves (v1: a single thread through
    // `tasks`) into every hierarchy: init at the pod level (memory: in
    // `skiff`), the app at its own level (memory: the pod's).
    let app_level = below(&pids)[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let cgroup_of = |pid: &str, controller: &str| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap()
            .lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, set, path) = (f.next()?, f.next()?, f.next()?);
                set.split(',')
                    .any(|c| c == controller)
                    .then(|| path.to_string())
            })
            .unwrap_or_default()
    };
    let (init, pod) = (init.to_string(), format!("/skiff/{uuid}"));
    let mut controllers = vec!["cpu", "pids"];
    if std::path::Path::new("/sys/fs/cgroup/devices/cgroup.procs").exists() {
        controllers.push("devices");
    }
    for c in controllers {
        assert_eq!(cgroup_of(&init, c), pod, "init, {c}");
        assert_eq!(cgroup_of(&app, c), format!("{pod}/{app_level}"), "app, {c}");
    }
    assert_eq!(cgroup_of(&init, "memory"), "/skiff");
    assert_eq!(cgroup_of(&app, "memory"), pod);
    let out = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(out.status.success(), "{}", stderr(&out));
    // The attack of an app given CAP_SYS_ADMIN and a seccomp filter that
    // lets it mount: it makes its cgroup view writable and opens the
    // device policy. The policy is the pod's, a level above the app's
    // cgroup namespace: the write is refused.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image"])
            .arg(&aci)
            .args([
                "--cap-retain=CAP_SYS_ADMIN",
                "--seccomp=mode=remove,kexec_load",
                "--exec=/bin/sh",
                "--",
                "-c",
                "mount -o remount,rw,bind /sys/fs/cgroup/devices && echo REMOUNTED; \
                 echo a > /sys/fs/cgroup/devices/devices.allow && echo DEVICES-OPEN; \
                 mount -o remount,rw,bind /sys/fs/cgroup/pids && mkdir -p /sys/fs/cgroup/pids/x/y && echo MADE; true",
            ]),
    );
    let text = stdout(&out);
    assert!(
        text.contains("REMOUNTED") && text.contains("MADE"),
        "{text} {}",
        stderr(&out)
    );
    assert!(!text.contains("DEVICES-OPEN"), "{text}");
    // The cgroups it made go with the pod's.
    let list: serde_json::Value = serde_json::from_str(&stdout(&output(
        skiff_in(tmp.path()).args(["list", "--format=json"]),
    )))
    .unwrap();
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    for pod in list.as_array().unwrap() {
        let uuid = pod["uuid"].as_str().unwrap();
        let left = std::path::Path::new("/sys/fs/cgroup/pids/skiff").join(uuid);
        assert!(!left.exists(), "{} left behind", left.display());
    }
}

#[test]
fn memory_limits_kill_and_read_only_roots_refuse_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image"])
            .arg(&aci)
            .args([
                "--memory=32M",
                "--exec=/bin/busybox",
                "--",
                "dd",
                "if=/dev/zero",
                "of=/dev/null",
                "bs=64M",
                "count=1",
            ]),
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("exceeding its memory limit"),
        "{}",
        stderr(&out)
    );
    let status = stdout(&output(
        skiff_in(tmp.path()).args(["list", "--format=json"]),
    ));
    assert!(status.contains("\"exitCode\": 137"), "{status}");
    // The kill is in the pod's health: JSON, the list's EXIT column and
    // status.
    assert!(status.contains("\"oomKills\": 1"), "{status}");
    let listed = stdout(&output(skiff_in(tmp.path()).args(["list", "--no-legend"])));
    assert!(listed.contains(" 137 oom "), "{listed}");
    let uuid = stdout(&output(skiff_in(tmp.path()).args([
        "list",
        "--full",
        "--no-legend",
    ])))
    .split_whitespace()
    .next()
    .unwrap()
    .to_string();
    let text = stdout(&output(skiff_in(tmp.path()).args(["status", &uuid])));
    assert!(text.contains("app-busybox-oom-kills=1"), "{text}");
    let out = run_sh(
        tmp.path(),
        &aci,
        "dd if=/dev/zero of=/dev/null bs=16M count=1 2>/dev/null && echo fits",
    );
    assert!(stdout(&out).contains("fits"));

    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image"])
            .arg(&aci)
            .args([
                "--readonly-rootfs",
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo x > /written && echo WROTE; touch /dev/shm/ok && echo shm-ok",
            ]),
    );
    let text = stdout(&out);
    assert!(
        !text.contains("WROTE") && text.contains("shm-ok"),
        "{text} {}",
        stderr(&out)
    );
    let list: serde_json::Value = serde_json::from_str(&stdout(&output(
        skiff_in(tmp.path()).args(["list", "--format=json"]),
    )))
    .unwrap();
    let uuids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["uuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(uuids.len(), 3);
    let out = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success());
    let left: Vec<String> = cgroup_dirs()
        .into_iter()
        .filter(|d| uuids.iter().any(|u| d.ends_with(u.as_str())))
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn volumes_are_shared_bound_and_read_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let host = tmp.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("from-host"), b"hello").unwrap();
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image"])
            .arg(format!("--volume=h,kind=host,source={},readOnly=true", host.display()))
            .arg("--volume=shared,kind=empty,mode=0700")
            .arg("--mount=volume=shared,target=/shared")
            .arg(&aci)
            .args(["--mount=volume=h,target=/host", "--exec=/bin/sh", "--", "-c",
                   "cat /host/from-host; echo; (echo x > /host/new) 2>/dev/null && echo HOST-WRITABLE; echo one > /shared/one"])
            .arg("---")
            .arg(&aci)
            .args(["--name=second", "--exec=/bin/sh", "--", "-c", "i=0; while [ ! -e /shared/one ] && [ $i -lt 30000 ]; do i=$((i+1)); /bin/busybox usleep 20000; done; cat /shared/one"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("hello"), "{text}");
    assert!(!text.contains("HOST-WRITABLE"), "{text}");
    assert!(
        text.contains("one"),
        "the empty volume is not shared: {text}"
    );
    assert!(!host.join("new").exists());
    // Bad volume flags are refused before anything runs.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--volume=x,kind=host,source=relative"])
            .arg(&aci),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("absolute"), "{}", stderr(&out));
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
}

#[test]
fn ctrl_c_stops_the_pod_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let mut child = skiff_in(tmp.path())
        .args(["run", "--insecure-options=image"])
        .arg(&aci)
        .args([
            "--exec=/bin/sh",
            "--",
            "-c",
            "echo up; exec /bin/busybox sleep 600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the app says it runs, then interrupt `skiff run` as a
    // terminal would.
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "up\n");
    let _ = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "the app's SIGINT status is skiff run's"
    );
    let json = stdout(&output(
        skiff_in(tmp.path()).args(["list", "--format=json"]),
    ));
    assert!(
        json.contains("\"state\": \"exited\"") && json.contains("\"exitCode\": 130"),
        "{json}"
    );
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
}

/// Blocks SIGTERM, sends it to itself and executes its arguments: the
/// signal waits, pending, for the program that takes the process over.
const EXEC_WITH_SIGTERM_PENDING: &str = "import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
os.kill(os.getpid(), signal.SIGTERM)
os.execv(sys.argv[1], sys.argv[1:])";

/// `run` (its program, arguments and environment) started by the Python
/// program `program`, which ends by executing `sys.argv[1:]`.
fn through_python(program: &str, run: &std::process::Command) -> std::process::Command {
    let mut python = std::process::Command::new("python3");
    python.args(["-c", program]);
    through(python, run)
}

/// An app starts with no signal ignored or blocked, whatever skiff and
/// stage1 started with: std starts a detached pod's stage1 (and this test
/// starts skiff) with glibc's `posix_spawn`, which leaves glibc's own
/// signals 32 and 33 ignored, and those were passed down to the apps.
#[test]
fn apps_start_with_every_signal_at_its_default_action() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let show = [
        "--exec=/bin/busybox",
        "--",
        "grep",
        "-E",
        "^Sig(Ign|Blk)",
        "/proc/self/status",
    ];
    let clean = |flavor: &str, how: &str, text: &str| {
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Sig")).collect();
        assert_eq!(lines.len(), 2, "{flavor} {how}: {text}");
        for line in lines {
            assert!(
                line.ends_with("\t0000000000000000"),
                "{flavor} {how}: {line}"
            );
        }
    };
    for (flavor, net) in [("ns", "--net=none"), ("fly", "--net=host")] {
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--insecure-options=image", net])
                .arg(format!("--stage1={flavor}"))
                .arg(&aci)
                .args(show),
        );
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        clean(flavor, "foreground", &stdout(&out));
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--detach", "--insecure-options=image", net])
                .arg(format!("--stage1={flavor}"))
                .arg(&aci)
                .args(show),
        );
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        let uuid = stdout(&out).trim().to_string();
        let out = output(skiff_in(tmp.path()).args(["status", "--wait", &uuid]));
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        let out = output(skiff_in(tmp.path()).args(["logs", &uuid]));
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        clean(flavor, "detached", &stdout(&out));
        // A caller that ignores signals (a real-time one among them).
        let mut run = skiff_in(tmp.path());
        run.args(["run", "--insecure-options=image", net])
            .arg(format!("--stage1={flavor}"))
            .arg(&aci)
            .args(show);
        let out = output(&mut through_python(
            "import os, signal, sys
for sig in (signal.SIGUSR1, signal.SIGRTMIN + 6):
    signal.signal(sig, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])",
            &run,
        ));
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        clean(flavor, "started ignoring signals", &stdout(&out));
    }
}

/// A stop that reaches a pod before its apps exist (here it is pending as
/// `skiff run` starts, as a Ctrl-C right after Enter or a `skiff stop`
/// right after `run --detach` can be) still ends them: the `ns` init and
/// the `fly` supervisor pass it on to every app they start after it.
/// Before, init passed it on to no one (or, still without a handler,
/// discarded it) and the fly supervisor never took it: the apps ran on
/// until `stop` killed the supervisor (fly's apps outlived it).
#[test]
fn a_stop_that_comes_before_the_apps_still_stops_them() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    for (flavor, net) in [("ns", "--net=none"), ("fly", "--net=host")] {
        let mut run = skiff_in(tmp.path());
        run.args(["run", "--insecure-options=image", net])
            .arg(format!("--stage1={flavor}"))
            .arg(&aci)
            .args(["--exec=/bin/busybox", "--", "sleep", "600"]);
        let mut child = through_python(EXEC_WITH_SIGTERM_PENDING, &run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Not a time limit on the stop: only how long a test waits for an
        // app that would otherwise sleep for 600 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut errors = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut errors);
        }
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(143),
            "{flavor}: the app did not end on the SIGTERM that came first: {errors}"
        );
    }
    // `skiff stop` right after `run --detach`, while init still mounts the
    // pod's 150 volumes: the supervisor passes the stop on to an init
    // that has no handler yet. Before, init discarded it (a pid
    // namespace's init ignores such signals) in most rounds, and `stop`
    // killed the pod after 10 s.
    let mut volumes = Vec::new();
    for i in 0..150 {
        volumes.push(format!("--volume=v{i},kind=empty"));
        volumes.push(format!("--mount=volume=v{i},target=/m{i}"));
    }
    for round in 0..4 {
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--detach", "--net=none", "--insecure-options=image"])
                .args(&volumes)
                .arg(&aci)
                .args(["--exec=/bin/busybox", "--", "sleep", "600"])
                .stdin(Stdio::null()),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let uuid = stdout(&out).trim().to_string();
        let out = output(skiff_in(tmp.path()).args(["stop", &uuid]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            !stdout(&out).contains("killed") && !stderr(&out).contains("killed"),
            "round {round}: the SIGTERM was lost: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let json = stdout(&output(
        skiff_in(tmp.path()).args(["list", "--format=json"]),
    ));
    assert_eq!(json.matches("\"exitCode\": 143").count(), 6, "{json}");
}

#[test]
fn two_pods_do_not_see_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let before = mounts(tmp.path());
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let start = |marker: &str| -> String {
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--detach", "--insecure-options=image"])
                .arg(&aci)
                .args([
                    "--exec=/bin/sh",
                    "--",
                    "-c",
                    &format!("echo {marker} > /{marker}; exec /bin/busybox sleep 300"),
                ])
                .stdin(Stdio::null()),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let (a, b) = (start("alpha"), start("beta"));
    let look = |uuid: &str| -> String {
        eventually("the app wrote its marker", || {
            let text = stdout(&output(skiff_in(tmp.path()).args([
                "enter", uuid, "/bin/sh", "-c",
                "ls /; for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done",
            ])));
            Some(text).filter(|t| t.contains("alpha") || t.contains("beta"))
        })
    };
    let (seen_a, seen_b) = (look(&a), look(&b));
    assert!(
        seen_a.contains("alpha") && !seen_a.contains("beta"),
        "pod A sees: {seen_a}"
    );
    assert!(
        seen_b.contains("beta") && !seen_b.contains("alpha"),
        "pod B sees: {seen_b}"
    );
    let list = stdout(&output(skiff_in(tmp.path()).args(["list", "--no-legend"])));
    assert_eq!(list.matches("running").count(), 2, "{list}");
    let out = output(skiff_in(tmp.path()).args(["stop", &a]));
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&output(skiff_in(tmp.path()).args(["list", "--no-legend"])));
    assert_eq!(
        (
            list.matches("running").count(),
            list.matches("exited").count()
        ),
        (1, 1),
        "{list}"
    );
    let out = output(skiff_in(tmp.path()).args(["stop", &b]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success());
    let left: Vec<String> = cgroup_dirs()
        .into_iter()
        .filter(|d| d.ends_with(&a) || d.ends_with(&b))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(mounts(tmp.path()), before, "mounts leaked");
}

#[test]
fn capability_seccomp_and_env_file_options() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let run = |opts: &[&str], script: &str| {
        output(
            skiff_in(tmp.path())
                .args(["run", "--insecure-options=image"])
                .arg(&aci)
                .args(opts)
                .args(["--exec=/bin/sh", "--", "-c", script]),
        )
    };
    let out = run(
        &["--cap-retain=CAP_NET_BIND_SERVICE"],
        "grep CapEff /proc/self/status",
    );
    assert!(
        stdout(&out).contains("CapEff:\t0000000000000400"),
        "{}",
        stdout(&out)
    );
    // CAP_NET_ADMIN on a bridged network reaches the host's network
    // through the veth's peer namespace: said, unless a user namespace
    // keeps it to the pod's own.
    let warning = "CAP_NET_ADMIN without --private-users";
    let out = run(&["--cap-retain=CAP_NET_ADMIN"], "true");
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    let out = run(&["--cap-retain=CAP_NET_ADMIN", "--private-users"], "true");
    assert!(!stderr(&out).contains(warning), "{}", stderr(&out));
    // Also where the image asks for it and the user grants what images ask.
    let asking = image_with_app(
        tmp.path(),
        "example.com/net-admin",
        r#"{"exec": ["/bin/busybox", "true"], "user": "0", "group": "0",
            "isolators": [{"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_ADMIN"]}}]}"#,
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image,capabilities"])
            .arg(&asking),
    );
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    let out = run(&["--cap-remove=CAP_CHOWN"], "grep CapEff /proc/self/status");
    assert!(
        stdout(&out).contains("CapEff:\t00000000a80425fa"),
        "{}",
        stdout(&out)
    );
    let out = run(
        &["--seccomp=mode=remove,errno=EACCES,mkdir"],
        "mkdir /x 2>&1; echo done",
    );
    assert!(
        stdout(&out).contains("Permission denied") && stdout(&out).contains("done"),
        "{}",
        stdout(&out)
    );
    let env = tmp.path().join("env");
    std::fs::write(&env, "# comment\nGREETING=hi there\nN=2\n").unwrap();
    let out = run(
        &[
            &format!("--set-env-file={}", env.display()),
            "--set-env=N=3",
        ],
        "echo \"$GREETING $N\"",
    );
    assert_eq!(stdout(&out).trim(), "hi there 3");
    let out = run(&["--seccomp=mode=sometimes,read"], "true");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("use retain or remove"),
        "{}",
        stderr(&out)
    );
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
}

#[test]
fn the_fly_flavor_runs_with_host_namespaces_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let before = mounts(tmp.path());
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--stage1=fly", "--insecure-options=image"])
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "cat /proc/sys/kernel/hostname; ls /; echo x > /written; exit 4",
            ]),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&host_name),
        "fly shares the host's UTS namespace: {text}"
    );
    assert!(text.contains("bin\n") && text.contains("proc\n"), "{text}");
    assert_eq!(mounts(tmp.path()), before, "fly left mounts behind");
    // Detached, with enter.
    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--detach",
                "--stage1=fly",
                "--insecure-options=image",
            ])
            .arg(&aci)
            .args(["--exec=/bin/busybox", "--", "sleep", "300"])
            .stdin(Stdio::null()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let out = output(skiff_in(tmp.path()).args([
        "enter",
        &uuid,
        "/bin/sh",
        "-c",
        "ls /bin/busybox && exit 6",
    ]));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let out = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
    assert!(out.status.success());
    assert_eq!(mounts(tmp.path()), before, "fly left mounts behind");
}

#[test]
fn pids_and_open_file_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--pids-limit=6", "--insecure-options=image"])
            .arg(&aci)
            // The forks run in a subshell (a failed fork ends a
            // non-interactive shell) whose stderr is a file; the sleeps
            // that started are counted and killed with builtins only, so
            // the outcome does not depend on how fast anything runs.
            .args(["--exec=/bin/sh", "--", "-c",
                   "ulimit -n; \
                    ( for i in 1 2 3 4 5 6 7 8; do /bin/busybox sleep 600 & echo $! >> /pids; done ) 2>/err; \
                    n=0; while read p; do kill $p; n=$((n+1)); done < /pids; wait; \
                    echo started=$n; grep -c fork /err"]),
    );
    let text = stdout(&out);
    let mut lines = text.lines();
    let nofile: u64 = lines.next().unwrap().parse().unwrap();
    let host_hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    assert_eq!(nofile, host_hard.min(65536));
    let started: u32 = lines
        .next()
        .and_then(|l| l.strip_prefix("started="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of started sleeps: {text} {}", stderr(&out)));
    assert!(
        started < 8,
        "the pids limit let all 8 forks through: {text}"
    );
    let refused: u32 = lines.next().unwrap_or("0").trim().parse().unwrap_or(0);
    assert_eq!(
        refused,
        1,
        "the refused fork was not reported once: {text} {}",
        stderr(&out)
    );
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
}

#[test]
fn interactive_pods_get_a_terminal_of_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    // A terminal for skiff; the input is typed once the pod's app says it
    // reads (a shell's `read`, not its line editor, which queries the
    // terminal in ways a test's terminal does not answer). Also in a user
    // namespace, where host-owned ttys would be `nobody`'s.
    for extra in ["", "--private-users"] {
        let mut term = Terminal::start(&format!(
            "SKIFF_DIR={}/data {} run --insecure-options=image --interactive {extra} {} --exec=/bin/sh -- -c 'echo ready-for-input:; read line; eval \"$line\"; exit 3' 2>/dev/null",
            tmp.path().display(),
            env!("CARGO_BIN_EXE_skiff"),
            aci.display()
        ));
        term.wait_for("ready-for-input:");
        term.send("echo answer-$((6*7)); [ -t 0 ] && echo stdin-is-a-tty; echo name=$(tty)\n");
        let (text, code) = term.finish();
        assert!(text.contains("answer-42"), "{text}");
        assert!(text.contains("stdin-is-a-tty"), "{text}");
        // The terminal comes from the pod's own devpts instance.
        assert!(text.contains("name=/dev/pts/0"), "{text}");
        assert_eq!(code, Some(3), "{text}");
    }
    // Without a terminal, --interactive is refused clearly.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--interactive", "--insecure-options=image"])
            .arg(&aci)
            .stdin(Stdio::null()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs a terminal"),
        "{}",
        stderr(&out)
    );
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
}

#[test]
fn private_users_map_pod_root_to_an_unprivileged_host_uid() {
    let tmp = tempfile::tempdir().unwrap();
    let before = mounts(tmp.path());
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--private-users"])
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c 'owner=%u:%g' /bin/busybox; \
                 echo data > /written && stat -c 'new=%u:%g' /written; \
                 (echo x > /proc/sys/kernel/hostname) 2>/dev/null && echo SYSCTL-WRITABLE; \
                 cat /proc/self/status",
            ]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let maps: Vec<Vec<u64>> = text
        .lines()
        .take(2)
        .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
        .collect();
    for map in &maps {
        assert_eq!(map[0], 0, "{text}");
        assert!(map[1] >= 1 << 20, "pod root is a high host id: {text}");
        assert_eq!(map[2], 65536, "{text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[2], "0", "root inside the pod: {text}");
    assert_eq!(
        lines[3], "owner=0:0",
        "image files keep their in-pod owner: {text}"
    );
    assert_eq!(
        lines[4], "new=0:0",
        "root can write its root filesystem: {text}"
    );
    assert!(!text.contains("SYSCTL-WRITABLE"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    // On disk, what pod root wrote belongs to the pod's host id, not to
    // host root.
    let written = glob_one(&tmp.path().join("data/pods"), "written");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&written).unwrap());
    assert_eq!(u64::from(owner), maps[0][1], "{}", written.display());
    // The id allocation's lock beside the pod states does not stop image gc.
    let gc = output(skiff_in(tmp.path()).args(["image", "gc"]));
    assert!(gc.status.success(), "{}", stderr(&gc));
    // Host volumes are not idmapped: host root's files show as `nobody`.
    // A non-root app user is mapped too.
    let host = tmp.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--private-users"])
            .arg(format!("--volume=h,kind=host,source={}", host.display()))
            .arg(&aci)
            .args([
                "--mount=volume=h,target=/host",
                "--user=1000",
                "--group=1000",
                "--exec=/bin/sh",
                "--",
                "-c",
                "stat -c 'vol=%u' /host; id -u; (echo x > /host/new) 2>/dev/null && echo VOL-WRITABLE; \
                 (echo x > /root-owned) 2>/dev/null && echo ROOT-WRITABLE; stat -c 'bin=%u' /bin/busybox",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("vol=65534\n1000\n"), "{text}");
    assert!(!text.contains("VOL-WRITABLE"), "{text}");
    assert!(!text.contains("ROOT-WRITABLE"), "{text}");
    assert!(text.contains("bin=0"), "{text}");
    // `enter` joins the pod's user namespace too.
    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--detach",
                "--insecure-options=image",
                "--private-users",
            ])
            .arg(&aci)
            .args(["--exec=/bin/busybox", "--", "sleep", "300"])
            .stdin(Stdio::null()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let seen = eventually("skiff enter reaches the app", || {
        let out = output(skiff_in(tmp.path()).args([
            "enter",
            &uuid,
            "/bin/busybox",
            "cat",
            "/proc/self/uid_map",
        ]));
        Some(format!("{}{}", stdout(&out), stderr(&out))).filter(|_| out.status.success())
    });
    let map: Vec<&str> = seen
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(map.len(), 3, "{seen}");
    assert_eq!((map[0], map[2]), ("0", "65536"), "{seen}");
    drop(_guard);
    assert_eq!(mounts(tmp.path()), before, "pods leave no mounts behind");
}

#[test]
fn no_overlay_gives_each_app_a_private_copy_of_its_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let before = mounts(tmp.path());
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    // The root's filesystem type (field 9 of mountinfo, after the "-").
    let script = "awk '$5 == \"/\" { for (i = 7; $i != \"-\"; i++); print $(i+1) }' /proc/self/mountinfo; \
                  echo data > /written; stat -c 'owner=%u' /bin/busybox; cat /written";
    for (extra, fs) in [
        (&[][..], "overlay"),
        (&["--no-overlay"][..], "ext4"),
        (&["--no-overlay", "--private-users"][..], "ext4"),
    ] {
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--insecure-options=image"])
                .args(extra)
                .arg(&aci)
                .args(["--exec=/bin/sh", "--", "-c", script]),
        );
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        let text = stdout(&out);
        let host_fs = fs == "ext4";
        let first = text.lines().next().unwrap_or("");
        assert!(
            if host_fs {
                first != "overlay" && !first.is_empty()
            } else {
                first == fs
            },
            "{extra:?}: {text}"
        );
        assert!(text.ends_with("\nowner=0\ndata\n"), "{extra:?}: {text}");
    }
    // The store's tree is untouched; the copies live in the pods' dirs.
    let written: Vec<_> = walkdir(&tmp.path().join("data"))
        .into_iter()
        .filter(|p| p.ends_with("written"))
        .collect();
    let copies = written
        .iter()
        .filter(|p| p.to_string_lossy().contains("/copy/busybox/"))
        .count();
    assert_eq!((written.len(), copies), (3, 2), "{written:?}");
    drop(_guard);
    assert_eq!(mounts(tmp.path()), before, "pods leave no mounts behind");
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                found.extend(walkdir(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn without_a_usable_overlay_upper_layer_no_overlay_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(base.join(d)).unwrap();
    }
    let aci = layout_aci(base);
    // An overlayfs cannot be the upper layer of another overlay. The pods'
    // directory is put on one inside a private mount namespace, so that
    // the mount is gone with it whatever happens (and other tests never
    // see it).
    let script = r#"
        set -u
        mount -t overlay overlay -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$B/merged" || exit 99
        export SKIFF_DIR="$B/merged/data"
        s() { "$SKIFF" --local-config "$B/merged/etc" --system-config "$B/merged/usr" "$@"; }
        s run --insecure-options=image "$ACI" --exec=/bin/sh -- -c 'echo ran' >"$B/out1" 2>"$B/err1"; echo $? >"$B/rc1"
        s run --insecure-options=image --no-overlay "$ACI" --exec=/bin/sh -- -c 'echo ran' >"$B/out2" 2>"$B/err2"; echo $? >"$B/rc2"
        s gc --grace-period=0s
    "#;
    let out = output(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation=private", "sh", "-c", script])
            .env("B", base)
            .env("ACI", &aci)
            .env("SKIFF", skiff().get_program()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |f: &str| std::fs::read_to_string(base.join(f)).unwrap_or_default();
    assert_eq!(read("rc1").trim(), "125", "{}", read("err1"));
    assert!(read("err1").contains("--no-overlay"), "{}", read("err1"));
    assert_eq!(read("rc2").trim(), "0", "{}", read("err2"));
    assert_eq!(read("out2"), "ran\n");
}

#[test]
fn a_skiff_without_its_stage1_says_how_to_get_one_and_makes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = layout_aci(tmp.path());
    // A copy of skiff without its stage1, as hand-copied binaries would be.
    let bin = tmp.path().join("prefix/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let alone = bin.join("skiff");
    std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &alone).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_skiff-full"), bin.join("skiff-full")).unwrap();
    let run = |extra: &[&str]| {
        output(
            std::process::Command::new(&alone)
                .env("SKIFF_DIR", tmp.path().join("data"))
                .args(extra)
                .args(["run", "--insecure-options=image", "--net=none"])
                .arg(&aci),
        )
    };
    let out = run(&[]);
    assert_refused(&out, "run without a stage1");
    let err = stderr(&out);
    for part in [
        &format!("{}/skiff-stage1", bin.display()),
        &format!(
            "{}/lib/skiff/stage1/skiff-stage1",
            tmp.path().join("prefix").display()
        ),
        "cargo install --path crates/cli",
        "--stage1-path",
    ] {
        assert!(err.contains(part), "{part} not in: {err}");
    }
    // Refused before anything was made.
    let listed = stdout(&output(skiff_in(tmp.path()).args(["list", "--no-legend"])));
    assert!(listed.trim().is_empty(), "a pod was left: {listed}");
    // Named explicitly, the same binary runs pods.
    let stage1 = std::path::Path::new(env!("CARGO_BIN_EXE_skiff")).with_file_name("skiff-stage1");
    let out = run(&[&format!("--stage1-path={}", stage1.display())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello"), "{}", stdout(&out));
    let _ = output(skiff_in(tmp.path()).args(["gc", "--grace-period=0s"]));
}

/// The one file called `name` under `dir` (searched recursively).
fn glob_one(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if entry.file_name() == name {
                found.push(path);
            }
        }
    }
    assert_eq!(found.len(), 1, "{name} under {}: {found:?}", dir.display());
    found.remove(0)
}

#[test]
fn bad_network_options_and_a_bad_policy_are_refused_before_any_image_is_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let aci = root.join("app.aci");
    busybox_aci(root, "example.com/early", &aci);
    let run = |extra: &[&str]| {
        output(
            skiff_in(root)
                .args(["--insecure-options=image", "run"])
                .args(extra)
                .arg(&aci),
        )
    };
    // Checked without the image (only --port needs its manifest).
    for (flags, what) in [
        (&["--net=no-such-network"][..], "no-such-network"),
        (&["--dns=not-an-ip"][..], "--dns"),
        (&["--net=host", "--stage1=kvm"][..], "--net=host"),
    ] {
        let out = run(flags);
        assert_refused(&out, &format!("{flags:?}"));
        assert!(stderr(&out).contains(what), "{flags:?}: {}", stderr(&out));
        assert!(
            !root.join("data/cas").exists(),
            "{flags:?}: the store was made (and the image fetched) before the refusal"
        );
    }
    // A malformed run policy: refused before the store is created.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/policy.toml"), "max-severity = 3\n").unwrap();
    let out = run(&["--net=none"]);
    assert_refused(&out, "a malformed policy");
    assert!(stderr(&out).contains("policy.toml"), "{}", stderr(&out));
    assert!(!root.join("data/cas").exists(), "the store was made");
}

/// `stop --timeout`: SIGTERM, and SIGKILL for a pod whose app ignores it
/// once the timeout has passed; stopping a pod that is not running is done
/// (exit 0, as podman).
#[test]
fn stop_escalates_to_sigkill_and_is_a_no_op_on_an_exited_pod() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--net=none", "--detach"])
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "trap '' TERM; echo ready > /ready; sleep 1000",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    eventually("the app to ignore SIGTERM", || {
        let out =
            output(skiff_in(tmp.path()).args(["enter", &uuid, "/bin/busybox", "cat", "/ready"]));
        stdout(&out).contains("ready").then_some(())
    });
    let out = output(skiff_in(tmp.path()).args(["stop", "--timeout=1", &uuid]));
    assert!(out.status.success(), "stop: {}", stderr(&out));
    assert!(stderr(&out).contains("killed"), "{}", stderr(&out));
    let out = output(skiff_in(tmp.path()).args(["status", &uuid]));
    let text = stdout(&out);
    assert!(
        text.contains("state=exited") && text.contains("app-busybox=137"),
        "{text}"
    );
    // Again: nothing to do, and no error.
    let out = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(out.status.success(), "second stop: {}", stderr(&out));
    assert_eq!(stdout(&out).trim(), uuid);
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
}

/// A detached start hands stage1 the pod's lock as its standard input;
/// stage1 takes it off first thing, so its own fd 0 and its apps' are
/// /dev/null and no process of the pod holds the pod's directory — also
/// under `fly`, whose apps get stage1's standard input as it is.
#[test]
fn a_detached_pods_processes_read_dev_null_and_hold_no_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let aci = root.join("busybox.aci");
    busybox_aci(root, "example.com/busybox", &aci);
    let script = "readlink /proc/self/fd/0; for f in /proc/self/fd/*; do readlink $f; done; echo listed; exec sleep 3600";
    for flavor in ["ns", "fly"] {
        let out = output(
            skiff_in(root)
                .args(["run", "--insecure-options=image", "--net=host", "--detach"])
                .arg(format!("--stage1={flavor}"))
                .arg(&aci)
                .args(["--exec=/bin/sh", "--", "-c", script]),
        );
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
        let uuid = stdout(&out).trim().to_string();
        let logs = eventually("the app's list of its fds", || {
            let logs = stdout(&output(skiff_in(root).args(["logs", &uuid])));
            logs.contains("listed").then_some(logs)
        });
        assert_eq!(logs.lines().next(), Some("/dev/null"), "{flavor}: {logs}");
        assert!(
            !logs.contains("/pods/"),
            "{flavor}: an app holds a pod directory: {logs}"
        );
        let status = stdout(&output(skiff_in(root).args(["status", &uuid])));
        assert!(status.contains("state=running"), "{flavor}: {status}");
        if flavor == "ns" {
            let supervisor = supervisor_of(root, &uuid);
            let stdin = std::fs::read_link(format!("/proc/{supervisor}/fd/0")).unwrap();
            assert_eq!(stdin, std::path::Path::new("/dev/null"), "{flavor}");
        }
        let out = output(skiff_in(root).args(["stop", &uuid]));
        assert!(out.status.success(), "{flavor}: {}", stderr(&out));
    }
}

/// stage1 started with something else than the pod's locked directory as
/// its lock (here as its standard input) refuses to run the pod, in one
/// line, instead of running it unlocked (which every other command would
/// take for ended).
#[test]
fn stage1_refuses_a_lock_that_is_not_the_pods_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let pod = tmp
        .path()
        .join("data/pods/run/0b0e2a44-1c51-4d0e-9d37-0d6a4c8a1f1e");
    std::fs::create_dir_all(&pod).unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for stdin in [std::path::Path::new("/dev/null"), other.as_path()] {
        let out = output(
            std::process::Command::new(env!("CARGO_BIN_EXE_skiff-stage1"))
                .args(["run", "--lock-stdin", "--detached"])
                .arg(&pod)
                .stdin(std::fs::File::open(stdin).unwrap()),
        );
        assert_eq!(
            out.status.code(),
            Some(125),
            "{}: {}",
            stdin.display(),
            stderr(&out)
        );
        let said = stderr(&out);
        assert!(
            said.contains("the pod's lock") && said.contains("is not the directory"),
            "{}: {said}",
            stdin.display()
        );
        assert_eq!(said.trim().lines().count(), 1, "{said}");
    }
}

/// The project's build links `skiff-stage1` as a static executable
/// (`.cargo/rustc-workspace-wrapper`): loading it dynamically cost ~0.3 ms
/// of every pod's start (docs/performance.md). If the build stops making it
/// so, say so here rather than in a benchmark.
#[test]
fn stage1_is_a_static_executable() {
    assert_static_executable(env!("CARGO_BIN_EXE_skiff-stage1"));
}

/// A closed stdout (`skiff run … | head -1`) ends neither the pod nor its
/// supervisor: the app runs to its end and `skiff run` exits with its
/// status. Through the small `skiff`, whose own process becomes the
/// supervisor (docs/stage1.md, "Invocation"), as through an executed stage1.
#[test]
fn a_closed_stdout_ends_neither_the_pod_nor_its_supervisor() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    stored_busybox(root);
    let mut child = skiff_in(root)
        .args(["run", "--net=none", "example.com/busybox", "--exec=/bin/sh"])
        .args([
            "--",
            "-c",
            "echo first; sleep 1; echo second; echo third; exit 7",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .unwrap();
    }
    assert_eq!(first, "first\n");
    // The supervisor is skiff's own process (the path under test).
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert!(
        exe.ends_with("skiff"),
        "stage1 was executed: {}",
        exe.display()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{:?}: {}",
        out.status,
        stderr(&out)
    );
    let list = stdout(&output(skiff_in(root).args(["list", "--no-legend"])));
    assert!(list.contains("exited"), "{list}");
}

/// The small `skiff` of pod starts is static too (~0.5 ms of each start,
/// docs/performance.md); `skiff-full`, which resolves host names, is not.
#[test]
fn the_small_skiff_is_a_static_executable() {
    assert_static_executable(env!("CARGO_BIN_EXE_skiff"));
}

/// `skiff` starts pods from the store itself (`run-prepared`, and `run` and
/// `prepare` of stored images) and hands everything else to `skiff-full`
/// beside it: without that file, pod starts from the store still work,
/// and anything else (a run that needs a fetch, a fetch, a list) is
/// refused in one line naming it, with nothing made. Units it generates
/// run `skiff`, not `skiff-full`.
#[test]
fn skiff_starts_stored_pods_itself_and_hands_the_rest_to_skiff_full() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    // Stored, and a pod prepared, by the whole skiff.
    let aci = stored_busybox(root);
    let out = output(skiff_in(root).args([
        "prepare",
        "--net=none",
        "example.com/busybox",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo prepared",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let prepared = stdout(&out).trim().to_string();

    // skiff and its stage1, without skiff-full.
    let bin = root.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let small = bin.join("skiff");
    std::fs::copy(env!("CARGO_BIN_EXE_skiff"), &small).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_skiff-stage1"), bin.join("skiff-stage1")).unwrap();
    let skiff = |args: &[&str]| {
        let mut cmd = std::process::Command::new(&small);
        cmd.env("SKIFF_DIR", root.join("data"))
            .arg("--local-config")
            .arg(root.join("etc"))
            .args(args);
        output(&mut cmd)
    };
    let out = skiff(&["run-prepared", &prepared]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("prepared"), "{}", stdout(&out));
    let run = [
        "run",
        "--net=none",
        "example.com/busybox",
        "--exec=/bin/sh",
        "--",
        "-c",
        "echo stored",
    ];
    let out = skiff(&run);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("stored"), "{}", stdout(&out));

    let pods = |root: &std::path::Path| {
        stdout(&output(skiff_in(root).args(["list", "--no-legend"])))
            .lines()
            .count()
    };
    let before = pods(root);
    let aci_arg = aci.display().to_string();
    for args in [
        vec![
            "run",
            "--insecure-options=image",
            "--net=none",
            aci_arg.as_str(),
        ],
        vec!["run", "--net=none", "example.com/elsewhere"],
        vec!["fetch", "--insecure-options=image", aci_arg.as_str()],
        vec!["list"],
    ] {
        let out = skiff(&args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        let said = stderr(&out);
        assert!(
            said.contains(&format!("{}/skiff-full", bin.display()))
                && said.contains("beside skiff"),
            "{args:?}: {said}"
        );
        assert_eq!(said.trim().lines().count(), 1, "{said}");
    }
    assert_eq!(pods(root), before, "a pod was made");

    // skiff under the other name (a link made by mistake) is refused, not
    // handed the command for ever.
    std::fs::hard_link(&small, bin.join("skiff-full")).unwrap();
    let out = skiff(&["list"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is this skiff itself"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(bin.join("skiff-full")).unwrap();

    // With skiff-full beside it, the same commands run there; units name skiff.
    std::fs::copy(env!("CARGO_BIN_EXE_skiff-full"), bin.join("skiff-full")).unwrap();
    let out = skiff(&["list", "--no-legend"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = skiff(&["generate", "systemd", "example.com/busybox"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("ExecStart={} ", small.display())),
        "{}",
        stdout(&out)
    );
    // A run handed on reads its input there: an env file that is a pipe
    // (here under a run policy, which skiff-full enforces) reaches the pod.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/policy.toml"), "").unwrap();
    let mut piped = std::process::Command::new(&small)
        .env("SKIFF_DIR", root.join("data"))
        .arg("--local-config")
        .arg(root.join("etc"))
        .args(["run", "--net=none", "example.com/busybox"])
        .args([
            "--set-env-file=/dev/stdin",
            "--exec=/bin/sh",
            "--",
            "-c",
            "echo X=$X",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = piped.stdin.take().unwrap();
        stdin.write_all(b"X=piped\n").unwrap();
    }
    let out = piped.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("X=piped"), "{}", stdout(&out));
    std::fs::remove_file(root.join("etc/policy.toml")).unwrap();

    // The small binary links no fetch, trust or server code.
    let size = |path: &std::path::Path| std::fs::metadata(path).unwrap().len();
    assert!(
        size(&small) * 2 < size(&bin.join("skiff-full")),
        "skiff is {} bytes, skiff-full {}",
        size(&small),
        size(&bin.join("skiff-full"))
    );
}

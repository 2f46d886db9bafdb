//! What new users of skiff trip over, typed as they would: typos in
//! options, another runtime's short options, values that can only fail
//! later, an `--exec` with quotes, isolators skiff does not enforce. Each
//! is refused (or said) before anything is made.

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn no_pods(root: &Path, what: &str) {
    let listed = output(skiff_in(root).args(["list", "--no-legend"]));
    assert_eq!(stdout(&listed), "", "{what}: a pod was made");
}

/// Typos and other runtimes' options: "unknown option" with what was
/// meant, and no pod.
#[test]
fn mistyped_options_say_what_was_meant() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let aci = aci.to_str().unwrap();
    for (args, said) in [
        (
            vec!["--detatch", aci],
            "unknown option --detatch (did you mean --detach?)",
        ),
        (
            vec![aci, "--memroy=5M"],
            "unknown option --memroy=5M (did you mean --memory?)",
        ),
        (
            vec![aci, "-e", "FOO=1"],
            "-e is an option of the pod: put it before the first image",
        ),
        (vec![aci, "--net=none"], "--net is an option of the pod"),
    ] {
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--insecure-options=image"])
                .args(&args),
        );
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(said), "{args:?}: {}", stderr(&out));
        no_pods(tmp.path(), &format!("{args:?}"));
    }
}

/// Values that used to fail only once the pod existed (or never): refused
/// first, nothing left in `list`.
#[test]
fn values_that_would_fail_later_are_refused_before_the_pod_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let aci = aci.to_str().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let volume = format!("--volume=data,kind=host,source={}", missing.display());
    for (args, said) in [
        (vec![aci, "--memory=-5M"], "a limit must be more than zero"),
        (vec![aci, "--memory=0"], "a limit must be more than zero"),
        (vec![aci, "--cpu=0"], "a limit must be more than zero"),
        (
            vec![aci, "--cap-retain=CAP_BOGUS"],
            "unknown capability 'CAP_BOGUS'",
        ),
        (
            vec![aci, "--user=nosuchuser"],
            "not in the image's /etc/passwd",
        ),
        (
            vec![aci, "--group=nosuchgroup"],
            "not in the image's /etc/group",
        ),
        (vec![volume.as_str(), aci], "does not exist"),
        (vec!["--hostname=bad host!", aci], "--hostname=bad host!"),
        (vec![aci, "--set-env==x"], "must not be empty"),
        (
            vec![aci, "--environment=A B=1"],
            "not a valid variable name",
        ),
        (vec!["--set-env=$(id)=1", aci], "not a valid variable name"),
    ] {
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--insecure-options=image", "--net=none"])
                .args(&args)
                .args(["--exec=/bin/true"]),
        );
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(said), "{args:?}: {}", stderr(&out));
        no_pods(tmp.path(), &format!("{args:?}"));
    }
    assert!(!missing.exists());
    let out = output(skiff_in(tmp.path()).args(["vuln-db", "import", "/nonexistent"]));
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("no such file"), "{}", stderr(&out));
    assert!(
        !tmp.path().join("data/vuln").exists(),
        "a database was made"
    );
}

/// `image build --exec` reads shell words: quotes group.
#[test]
fn build_exec_takes_shell_words() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let layout = tmp.path().join("layout");
    busybox_layout(&layout);
    let aci = tmp.path().join("words.aci");
    let built = output(
        skiff()
            .args(["image", "build", "--overwrite", "--name=example.com/words"])
            .arg("--exec=/bin/sh -c 'echo two words'")
            .arg(&layout)
            .arg(&aci),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--net=none"])
            .arg(&aci),
    );
    assert_eq!(stdout(&out), "two words\n", "{}", stderr(&out));
    let bad = output(
        skiff()
            .args(["image", "build", "--overwrite", "--exec=/bin/sh -c 'open"])
            .arg(&layout)
            .arg(&aci),
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("unbalanced quotes"),
        "{}",
        stderr(&bad)
    );
}

/// Isolators skiff reads but does not enforce are said, not ignored; a
/// higher OOM score is applied, a lower one is not (a privilege).
#[test]
fn isolators_not_enforced_are_said_and_a_higher_oom_score_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = image_with_app(
        tmp.path(),
        "example.com/parity",
        r#"{"exec": ["/bin/busybox", "cat", "/proc/self/oom_score_adj"], "user": "0", "group": "0",
            "isolators": [
              {"name": "os/linux/oom-score-adj", "value": 500},
              {"name": "os/unix/sysctl", "value": {"net.ipv4.ip_forward": "1"}},
              {"name": "os/linux/selinux-context", "value": {"user": "u", "role": "r", "type": "t", "level": "s0"}}
            ]}"#,
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--net=none"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "500\n", "{}", stderr(&out));
    let err = stderr(&out);
    for said in [
        "os/unix/sysctl is not enforced",
        "os/linux/selinux-context is not enforced",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
    let aci = image_with_app(
        tmp.path(),
        "example.com/parity",
        r#"{"exec": ["/bin/busybox", "cat", "/proc/self/oom_score_adj"], "user": "0", "group": "0",
            "isolators": [{"name": "os/linux/oom-score-adj", "value": -500}]}"#,
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--insecure-options=image", "--net=none"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(stdout(&out), "-500\n", "an image lowered its OOM score");
    assert!(
        stderr(&out).contains("a lower OOM score is a privilege"),
        "{}",
        stderr(&out)
    );
}

/// Writes `len` bytes that do not compress (xorshift64*) to `path`.
fn write_random(path: &Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            chunk.copy_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// A 2 GiB image whose 1.5 GiB file is random data (model weights, a
/// database) fetches and runs, as an ACI and as an OCI layout: its ratio
/// is about 1. A real bomb (zeros)
/// is still refused, naming the option that takes a larger ratio.
#[test]
#[ignore = "2 GiB through gzip, import and render: cargo xtask test runs it alone, after the parallel suite"]
fn a_two_gib_image_of_random_data_fetches_and_a_bomb_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let layout = tmp.path().join("big");
    busybox_layout(&layout);
    write_random(&layout.join("rootfs/weights"), 1536 << 20, 1);
    for i in 0..8 {
        write_random(&layout.join(format!("rootfs/part-{i}")), 64 << 20, 2 + i);
    }
    let aci = tmp.path().join("big.aci");
    let built = output(
        skiff()
            .args([
                "image",
                "build",
                "--name=example.com/big",
                "--compression=gzip",
            ])
            .arg(&layout)
            .arg(&aci),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    std::fs::remove_dir_all(&layout).unwrap();
    // Fetched, then run: the file is whole.
    let fetch_and_run = |image: &str| {
        let fetched = output(
            skiff_in(tmp.path())
                .args(["fetch", "--insecure-options=image"])
                .arg(image),
        );
        assert!(fetched.status.success(), "{image}: {}", stderr(&fetched));
        let id = stdout(&fetched).trim().to_string();
        let out = output(
            skiff_in(tmp.path())
                .args(["run", "--insecure-options=image", "--net=none"])
                .arg(&id)
                .args(["--exec=/bin/busybox", "--", "stat", "-c", "%s", "/weights"]),
        );
        assert_eq!(
            stdout(&out),
            format!("{}\n", 1536u64 << 20),
            "{image}: {}",
            stderr(&out)
        );
    };
    fetch_and_run(aci.to_str().unwrap());
    std::fs::remove_file(&aci).unwrap();

    // The same image as an OCI layout (one 2 GiB gzip layer) fetches too.
    let layout = tmp.path().join("big-oci");
    let exported = output(
        skiff_in(tmp.path())
            .args(["image", "export", "--format=oci", "example.com/big"])
            .arg(&layout),
    );
    assert!(exported.status.success(), "{}", stderr(&exported));
    // Room for the OCI copy: the ACI's blob and tree go first.
    for args in [
        &["gc", "--grace-period=0s"][..],
        &["image", "rm", "example.com/big"],
        &["image", "gc", "--grace-period=0s"],
    ] {
        let _ = output(skiff_in(tmp.path()).args(args));
    }
    fetch_and_run(&format!("oci:{}", layout.display()));
    std::fs::remove_dir_all(&layout).unwrap();

    let layout = tmp.path().join("bomb");
    busybox_layout(&layout);
    let zeros = std::fs::File::create(layout.join("rootfs/zeros")).unwrap();
    // 1 GiB from about 2 MiB (busybox and the zeros): past 250 times.
    zeros.set_len(1 << 30).unwrap();
    let bomb = tmp.path().join("bomb.aci");
    let built = output(
        skiff()
            .args([
                "image",
                "build",
                "--name=example.com/bomb",
                "--compression=gzip",
            ])
            .arg(&layout)
            .arg(&bomb),
    );
    assert!(built.status.success(), "{}", stderr(&built));
    let out = output(
        skiff_in(tmp.path())
            .args(["fetch", "--insecure-options=image"])
            .arg(&bomb),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("decompression bomb") && err.contains("--max-decompression-ratio"),
        "{err}"
    );
}

/// rkt's spellings and files: `--uuid-file` on status, enter, stop and
/// rm; `status --wait-ready`; `cat-manifest`; pod-level `--set-env-file`
/// and `--inherit-env`; `--caps-retain`, `--user-annotation`,
/// `--user-label`.
#[test]
fn rkt_flags_and_uuid_files_work_as_in_rkt() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let uuid_file = tmp.path().join("pod.uuid");
    let env_file = tmp.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=file-value\n\n").unwrap();
    let out = output(
        skiff_in(tmp.path())
            .env("FROM_HOST", "host-value")
            .args([
                "run",
                "--insecure-options=image",
                "--net=none",
                "--detach",
                "--inherit-env",
            ])
            .arg(format!("--uuid-file-save={}", uuid_file.display()))
            .arg(format!("--set-env-file={}", env_file.display()))
            .arg(&aci)
            .args([
                "--caps-retain=CAP_CHOWN,CAP_KILL",
                "--user-annotation=team=infra",
                "--user-label=tier=web",
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo $FROM_FILE $FROM_HOST; exec /bin/busybox sleep 600",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let with_file = |command: &[&str]| {
        output(
            skiff_in(tmp.path())
                .args(command)
                .arg(format!("--uuid-file={}", uuid_file.display())),
        )
    };
    let ready = with_file(&["status", "--wait-ready"]);
    assert!(ready.status.success(), "{}", stderr(&ready));
    assert!(stdout(&ready).contains("\nready=20"), "{}", stdout(&ready));
    let manifest: serde_json::Value =
        serde_json::from_slice(&with_file(&["cat-manifest"]).stdout).unwrap();
    let app = &manifest["apps"][0]["app"];
    assert_eq!(app["userAnnotations"]["team"], "infra", "{manifest}");
    assert_eq!(app["userLabels"]["tier"], "web", "{manifest}");
    assert!(manifest.to_string().contains("CAP_CHOWN"), "{manifest}");
    let entered = output(
        skiff_in(tmp.path())
            .arg("enter")
            .arg(format!("--uuid-file={}", uuid_file.display()))
            .args([
                "/bin/sh",
                "-c",
                "echo $FROM_FILE; grep CapBnd /proc/self/status",
            ]),
    );
    assert!(
        stdout(&entered).starts_with("file-value\n"),
        "{}",
        stderr(&entered)
    );
    // CAP_CHOWN (0) and CAP_KILL (5) only.
    assert!(
        stdout(&entered).contains("0000000000000021"),
        "{}",
        stdout(&entered)
    );
    let logs = stdout(&output(skiff_in(tmp.path()).args(["logs", &uuid])));
    assert_eq!(logs, "file-value host-value\n");
    let stopped = with_file(&["stop"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let removed = with_file(&["rm"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    no_pods(tmp.path(), "rm --uuid-file");
}

/// `skiff completion bash` prints a script bash loads.
#[test]
fn completions_load_in_bash() {
    let binary = env!("CARGO_BIN_EXE_skiff");
    let out = output(std::process::Command::new("bash").arg("-c").arg(format!(
        "source <('{binary}' completion bash) && complete -p skiff"
    )));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("skiff"), "{}", stdout(&out));
    for shell in ["zsh", "fish"] {
        let out = output(skiff().args(["completion", shell]));
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
}

/// podman's short options where podman has them: `-d -e -v -q --rm`
/// (`-p` is in the network tests), and `-q` of the listings.
#[test]
fn podman_short_options_work() {
    let tmp = tempfile::tempdir().unwrap();
    let _guard = PodsGuard { root: tmp.path() };
    let aci = tmp.path().join("busybox.aci");
    busybox_aci(tmp.path(), "example.com/busybox", &aci);
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("file"), "from-host\n").unwrap();
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "-d", "-e", "FOO=bar", "--net=none", "--insecure-options=image"])
            .arg("-v")
            .arg(format!("{}:/mnt:ro", shared.display()))
            .arg(&aci)
            .args([
                "--exec=/bin/sh",
                "--",
                "-c",
                "echo $FOO; /bin/busybox cat /mnt/file; /bin/busybox touch /mnt/x 2>/dev/null || echo read-only; exec /bin/busybox sleep 600",
            ]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let listed = stdout(&output(skiff_in(tmp.path()).args(["list", "-q"])));
    assert_eq!(listed, format!("{uuid}\n"));
    let logs = eventually("the app wrote its lines", || {
        let logs = stdout(&output(skiff_in(tmp.path()).args(["logs", &uuid])));
        logs.contains("read-only").then_some(logs)
    });
    assert_eq!(logs, "bar\nfrom-host\nread-only\n");
    assert!(!shared.join("x").exists());
    let stopped = output(skiff_in(tmp.path()).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    let removed = output(skiff_in(tmp.path()).args(["rm", &uuid]));
    assert!(removed.status.success(), "{}", stderr(&removed));

    // --rm: the pod is gone once it has ended, its status with it.
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--rm", "--net=none", "--insecure-options=image"])
            .arg(&aci),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    no_pods(tmp.path(), "run --rm");
    let pods_dir = tmp.path().join("data/pods");
    let left: Vec<_> = walk_names(&pods_dir);
    assert!(left.is_empty(), "left in {}: {left:?}", pods_dir.display());

    let out = output(
        skiff_in(tmp.path())
            .args([
                "run",
                "--net=none",
                "--insecure-options=image",
                "-v",
                "data:/mnt",
            ])
            .arg(&aci),
    );
    assert_refused(&out, "-v with a named volume");
    assert!(
        stderr(&out).contains("not an absolute host path"),
        "{}",
        stderr(&out)
    );
    let out = output(
        skiff_in(tmp.path())
            .args(["run", "--rm", "--stage1=fly", "--insecure-options=image"])
            .arg(&aci),
    );
    assert_refused(&out, "--rm with the fly flavor");

    let ids = stdout(&output(skiff_in(tmp.path()).args(["image", "list", "-q"])));
    assert!(
        ids.lines().count() == 1 && ids.starts_with("sha512-") && ids.trim().len() == 135,
        "{ids}"
    );
}

/// The names of the pod directories under `dir` (every state).
fn walk_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for state in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for pod in std::fs::read_dir(state.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            names.push(pod.path().display().to_string());
        }
    }
    names
}

/// Man pages from the clap definitions render with man(1); the metadata
/// service's units pass `systemd-analyze verify`.
#[test]
fn man_pages_render_and_metadata_units_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let man = tmp.path().join("man");
    let out = output(skiff().args(["generate", "man"]).arg(&man));
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "skiff.1",
        "skiff-run.1",
        "skiff-image-list.1",
        "skiff-export.1",
    ] {
        assert!(man.join(page).is_file(), "{page}: {}", stdout(&out));
    }
    let rendered = output(
        Command::new("man")
            .env("MANWIDTH", "100")
            .arg("-l")
            .arg(man.join("skiff-run.1")),
    );
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let text = stdout(&rendered);
    assert!(text.contains("pod-manifest"), "{text}");

    let units = tmp.path().join("units");
    std::fs::create_dir(&units).unwrap();
    let out = output(skiff_in(tmp.path()).current_dir(&units).args([
        "generate",
        "metadata-service",
        "--files",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_units_verify(&units, &["skiff-metadata.service", "skiff-metadata.socket"]);
    let out = output(skiff_in(tmp.path()).args([
        "generate",
        "metadata-service",
        "--listen=18112\nExecStartPre=/bin/evil",
    ]));
    assert_refused(&out, "a listen address with a newline");
}

/// Keys of `value` that are not camelCase, with their paths. The maps
/// whose keys are data (label, annotation and environment names) are not
/// looked into.
fn non_camel_keys(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    const DATA_MAPS: [&str; 5] = [
        "labels",
        "annotations",
        "environment",
        "userAnnotations",
        "userLabels",
    ];
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let camel = key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && key.chars().all(|c| c.is_ascii_alphanumeric());
                if !camel {
                    out.push(format!("{path}.{key}"));
                }
                if !DATA_MAPS.contains(&key.as_str()) {
                    non_camel_keys(v, &format!("{path}.{key}"), out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                non_camel_keys(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The string values of keys named `key` anywhere in `value`.
fn values_of<'a>(value: &'a serde_json::Value, key: &str, out: &mut Vec<&'a serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    out.push(v);
                }
                values_of(v, key, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| values_of(v, key, out)),
        _ => {}
    }
}

#[test]
fn json_keys_are_camel_case_times_have_a_zone_and_tables_say_how_long_ago() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let aci = root.join("busybox.aci");
    busybox_aci(root, "example.com/busybox", &aci);
    let out = output(
        skiff_in(root)
            .args(["run", "-d", "--net=none", "--insecure-options=image"])
            .arg(&aci)
            .args(["--exec=/bin/busybox", "--", "sleep", "600"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uuid = stdout(&out).trim().to_string();
    let json = |args: &[&str]| -> serde_json::Value {
        let out = output(skiff_in(root).args(args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&out)))
    };
    let documents = [
        json(&["list", "--format=json"]),
        json(&["status", &uuid, "--format=json"]),
        json(&["top", &uuid, "--format=json"]),
        json(&["stats", &uuid, "--format=json"]),
        json(&["image", "list", "--format=json"]),
        json(&["image", "inspect", "example.com/busybox"]),
        json(&["trust", "list", "--format=json"]),
        json(&["version", "--format=json"]),
    ];
    let mut bad = Vec::new();
    for doc in &documents {
        non_camel_keys(doc, "", &mut bad);
    }
    assert!(bad.is_empty(), "keys not in camelCase: {bad:?}");
    // Times are RFC 3339 with a zone.
    let mut times = Vec::new();
    for key in ["created", "started", "importTime", "lastUsed"] {
        for doc in &documents {
            values_of(doc, key, &mut times);
        }
    }
    assert!(times.len() >= 5, "{times:?}");
    for t in times {
        let t = t
            .as_str()
            .unwrap_or_else(|| panic!("a time that is not text: {t}"));
        assert!(
            t.len() == 20 && t.as_bytes()[10] == b'T' && t.ends_with('Z'),
            "not RFC 3339 UTC: {t}"
        );
    }
    let inspected = &documents[5][0];
    assert_eq!(inspected["name"], "example.com/busybox");
    assert_eq!(inspected["manifest"]["acKind"], "ImageManifest");
    // Tables say how long ago.
    for args in [&["list"][..], &["image", "list"]] {
        let table = stdout(&output(skiff_in(root).args(args)));
        assert!(
            table.contains(" ago ") || table.contains("just now"),
            "{args:?}: {table}"
        );
    }
    let missing = output(skiff_in(root).args(["image", "inspect", "example.com/nothing"]));
    assert_refused(&missing, "image inspect of an image not stored");
    let stopped = output(skiff_in(root).args(["stop", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
}

/// Whether `text` has an SGR escape (a color or a style): `ESC [ digits m`.
fn has_color(text: &str) -> bool {
    text.split('\u{1b}').skip(1).any(|rest| {
        rest.strip_prefix('[').is_some_and(|r| {
            let end = r.find(|c: char| !c.is_ascii_digit() && c != ';');
            end.is_some_and(|i| r[i..].starts_with('m'))
        })
    })
}

/// On a terminal, every long operation (build, local import, render,
/// export of an image and of a pod) draws a progress bar and warnings are
/// colored, in one style; `NO_COLOR` takes the colors away, not the bars;
/// on a pipe there is neither. `--debug` traces each step with how long
/// it took.
#[test]
fn long_operations_show_progress_on_a_terminal_only_and_debug_times_each_step() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let layout = root.join("layout");
    busybox_layout(&layout);
    // Large enough that each step takes a moment; the bar is drawn on its
    // first bytes whatever the speed.
    write_random(&layout.join("rootfs/data"), 48 << 20, 7);
    let aci = root.join("big.aci");
    let exported = root.join("exported.aci");
    let pod_export = root.join("pod.aci");
    // Each step and the bars it draws (fetch renders too).
    let steps = |no_color: bool| -> Vec<(&'static [&'static str], Command)> {
        let mut build = skiff();
        build
            .args(["image", "build", "--overwrite", "--name=example.com/big"])
            .arg(&layout)
            .arg(&aci);
        let mut fetch = skiff_in(root);
        fetch.args(["fetch", "--insecure-options=image"]).arg(&aci);
        let mut run = skiff_in(root);
        run.args([
            "run",
            "--insecure-options=image",
            "--net=none",
            "--uuid-file-save",
        ])
        .arg(root.join("uuid"))
        .arg(&aci)
        .args(["--exec=/bin/busybox", "--", "true"]);
        let mut export = skiff_in(root);
        export
            .args(["image", "export", "--overwrite", "example.com/big"])
            .arg(&exported);
        let mut cmds = vec![
            (&["building big.aci"][..], build),
            (&["importing", "rendering example.com/big"], fetch),
            (&["exporting example.com/big"], export),
            (&[], run),
        ];
        for (_, cmd) in &mut cmds {
            if no_color {
                cmd.env("NO_COLOR", "1");
            }
        }
        cmds
    };
    for no_color in [false, true] {
        // A fresh store each round: the import and the render happen again.
        let _ = std::fs::remove_dir_all(root.join("data"));
        for (bars, cmd) in steps(no_color) {
            let (shown, status) = Terminal::start(&shell_line(&cmd)).finish();
            assert_eq!(status, Some(0), "{shown}");
            for bar in bars {
                assert!(
                    shown.contains(&format!("{bar} [")) && shown.contains("B/s"),
                    "no {bar:?} bar: {shown:?}"
                );
            }
            if no_color {
                assert!(!has_color(&shown), "NO_COLOR=1: {shown:?}");
            }
            // Fetch and run are told to skip the signature: a warning.
            if bars.is_empty() || bars[0] == "importing" {
                let warning = if no_color {
                    "skiff: warning: "
                } else {
                    "skiff: \u{1b}[1;33mwarning: \u{1b}[0m"
                };
                assert!(shown.contains(warning), "{shown:?}");
            }
        }
    }
    let uuid = std::fs::read_to_string(root.join("uuid")).unwrap();
    let mut export = skiff_in(root);
    export.args(["export", uuid.trim()]).arg(&pod_export);
    let (shown, status) = Terminal::start(&shell_line(&export)).finish();
    assert_eq!(status, Some(0), "{shown}");
    assert!(shown.contains("exporting "), "no bar: {shown:?}");

    // On a pipe: the same work, no bar, no escape, one warning style.
    let _ = std::fs::remove_dir_all(root.join("data"));
    for (bars, mut cmd) in steps(false) {
        let out = output(&mut cmd);
        assert!(out.status.success(), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            !bars.iter().any(|bar| err.contains(bar))
                && !err.contains('\u{1b}')
                && !err.contains('\r'),
            "a bar or an escape on a pipe: {err:?}"
        );
        for line in err.lines().filter(|l| l.to_lowercase().contains("warn")) {
            assert!(
                line.starts_with("skiff: warning: "),
                "a warning not in skiff's style: {line:?}"
            );
        }
    }

    // --debug: each step with its duration, in order.
    let _ = std::fs::remove_dir_all(root.join("data"));
    let out = output(
        skiff_in(root)
            .args(["--debug", "run", "--insecure-options=image", "--net=none"])
            .arg(&aci)
            .args(["--exec=/bin/busybox", "--", "true"]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let mut at = 0;
    for step in ["fetch", "render", "prepare"] {
        let line = err
            .lines()
            .enumerate()
            .skip(at)
            .find(|(_, l)| {
                l.starts_with("skiff: debug: +")
                    && l.contains(&format!(" ms {step}"))
                    && l.contains(" took ")
                    && l.ends_with(" ms")
            })
            .unwrap_or_else(|| panic!("no timing of {step} after line {at}: {err}"));
        at = line.0;
    }
    assert!(
        err.lines()
            .any(|l| l.contains("[fetch > verify]") || l.contains(" ms verify")),
        "no verify step: {err}"
    );
    assert!(err.contains("exec "), "stage1's exec not traced: {err}");
}

/// rkt's per-app `--cpu-shares`, `--oom-score-adj`, `--supplementary-gids`
/// and `--environment` apply to the app they follow (and only to it);
/// values the kernel would refuse, and a lower OOM score (a privilege),
/// are refused before the pod exists.
#[test]
fn rkt_per_app_resource_flags_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let aci = root.join("busybox.aci");
    busybox_aci(root, "example.com/busybox", &aci);
    let show = "cat /proc/self/oom_score_adj; cat /sys/fs/cgroup/cpu/cpu.shares; id -G; echo $E";
    let out = output(
        skiff_in(root)
            .args(["run", "--insecure-options=image", "--net=none"])
            .arg(&aci)
            .args([
                "--name=tuned",
                "--user=0",
                "--group=0",
                "--cpu-shares=512",
                "--oom-score-adj=700",
                "--supplementary-gids=5,6",
                "--environment=E=set",
                "--exec=/bin/sh",
                "--",
                "-c",
                show,
                "---",
            ])
            .arg(&aci)
            .args([
                "--name=plain",
                "--user=0",
                "--group=0",
                "--exec=/bin/sh",
                "--",
                "-c",
            ])
            .arg(format!("sleep 1; {show}")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("700\n512\n0 5 6\nset\n"), "{text}");
    let mut plain = text.replace("700\n512\n0 5 6\nset\n", "");
    plain.retain(|c| c != '\r');
    assert!(!plain.contains("700") && !plain.contains("5 6"), "{text}");
    let collected = output(skiff_in(root).args(["gc", "--grace-period=0s"]));
    assert!(collected.status.success(), "{}", stderr(&collected));
    no_pods(root, "gc");

    for (flag, why) in [
        ("--cpu-shares=1", "between 2 and 262144"),
        ("--cpu-shares=many", "not a whole number"),
        ("--oom-score-adj=-500", "a lower score is a privilege"),
        ("--oom-score-adj=1001", "give 0 to 1000"),
        ("--supplementary-gids=5,-1", "not a group ID"),
    ] {
        let out = output(
            skiff_in(root)
                .args(["run", "--insecure-options=image", "--net=none"])
                .arg(&aci)
                .args([flag, "--exec=/bin/true"]),
        );
        assert_refused(&out, flag);
        assert!(stderr(&out).contains(why), "{flag}: {}", stderr(&out));
        no_pods(root, flag);
    }
}

/// Whether `text` holds anything that would drive a terminal or forge a
/// line of skiff's: ESC, BEL, CR, C1 controls, a line that is a message.
fn drives_a_terminal(text: &str) -> bool {
    text.chars().any(|c| {
        matches!(
            c,
            '\u{1b}' | '\u{7}' | '\r' | '\u{80}'..='\u{9f}' | '\u{202e}'
        )
    }) || text.lines().any(|l| l.starts_with("skiff: error: forged"))
}

/// Text an image or a file name carries never reaches the terminal raw:
/// an image's label in `image list`, its package database and os-release
/// in `image audit`, a file name in `image build`'s warning, an image
/// file's name in `--debug`'s step lines. Each holds escape sequences and
/// a forged `skiff: error:` line.
#[test]
fn text_from_images_and_file_names_cannot_drive_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let line = "x\u{1b}]0;T\u{7}\u{1b}[2J\r\u{9b}31m\u{202e}";
    let forged = format!("{line}\nskiff: error: forged");
    let layout = root.join("layout");
    busybox_layout(&layout);
    let manifest = BUSYBOX_MANIFEST.replace(
        r#""name": "example.com/busybox","#,
        &format!(
            r#""name": "example.com/hostile", "annotations": [{{"name": "note", "value": {}}}],"#,
            serde_json::to_string(&forged).unwrap()
        ),
    );
    let mut manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    manifest["labels"]
        .as_array_mut()
        .unwrap()
        .retain(|l| l["name"] != "version");
    manifest["labels"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "version", "value": forged}));
    std::fs::write(layout.join("manifest"), manifest.to_string()).unwrap();
    let dpkg = layout.join("rootfs/var/lib/dpkg");
    std::fs::create_dir_all(&dpkg).unwrap();
    std::fs::write(
        dpkg.join("status"),
        format!("Package: pkg{line}\nStatus: install ok installed\nVersion: 1{line}\nArchitecture: amd64{line}\n"),
    )
    .unwrap();
    std::fs::write(
        layout.join("rootfs/etc/os-release"),
        format!("ID=evil{line}\nVERSION_ID=1{line}\n"),
    )
    .unwrap();
    let socket = layout.join(format!("rootfs/{}", forged.replace('/', "_")));
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let aci = root.join(format!("e{}.aci", forged.replace('/', "_")));
    let built = build_image(&layout, &aci);
    assert!(built.contains("warning"), "{built}");
    let fetched = output(
        skiff_in(root)
            .args(["--debug", "--insecure-options=image", "fetch"])
            .arg(&aci),
    );
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    let audit = output(skiff_in(root).args(["image", "audit"]).arg(&aci));
    assert!(audit.status.success(), "{}", stderr(&audit));
    assert!(stdout(&audit).contains("pkg"), "{}", stdout(&audit));
    let list = output(skiff_in(root).args(["image", "list"]));
    assert!(list.status.success(), "{}", stderr(&list));
    let validated = output(skiff().args(["image", "validate"]).arg(&aci));
    assert!(validated.status.success(), "{}", stderr(&validated));
    for (what, text) in [
        ("build's warning", built),
        ("fetch --debug", stderr(&fetched)),
        ("audit's table", stdout(&audit)),
        ("audit's summary", stderr(&audit)),
        ("image list", stdout(&list)),
        ("image validate", stdout(&validated)),
    ] {
        assert!(!drives_a_terminal(&text), "{what}: {text:?}");
    }
}

/// A key's user ID (in trust's review, `trust list` and a verified
/// fetch), capability names an image asks for, and a working directory
/// `skiff enter` fails on reach the terminal without controls.
#[test]
fn words_of_keys_and_pods_cannot_drive_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let line = "x\u{1b}]0;T\u{7}\u{1b}[2J\r\u{9b}31m";
    let gpg = Gpg::new(
        &format!("Evil {line}\nskiff: error: forged <e@example.com>"),
        "ed25519",
    );
    let key = root.join("key.asc");
    std::fs::write(&key, gpg.public_key()).unwrap();
    let trusted = output(
        skiff_in(root)
            .args([
                "trust",
                "--skip-fingerprint-review",
                "--prefix=example.com/evil",
            ])
            .arg(&key),
    );
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let listed = output(skiff_in(root).args(["trust", "list"]));
    assert!(listed.status.success(), "{}", stderr(&listed));

    // A signed image whose app asks for a capability with a hostile
    // name and works in a directory with one.
    let workdir = format!("/w{line}\nskiff: error: forged");
    let app = serde_json::json!({
        "exec": ["/bin/sh", "-c", "rmdir /w*; exec sleep 600"],
        "user": "0", "group": "0",
        "workingDirectory": workdir,
    });
    let aci = image_with_app(root, "example.com/evil/app", &app.to_string());
    let layout = root.join("layout-example.com_evil_app");
    std::fs::create_dir_all(layout.join(format!("rootfs{workdir}"))).unwrap();
    build_image(&layout, &aci);
    let mut signature = aci.clone().into_os_string();
    signature.push(".asc");
    std::fs::write(&signature, gpg.sign(&aci)).unwrap();
    let fetched = output(skiff_in(root).arg("fetch").arg(&aci));
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    assert!(
        stderr(&fetched).contains("verified"),
        "{}",
        stderr(&fetched)
    );
    let ran = output(skiff_in(root).args(["run", "-d", "--net=none"]).arg(&aci));
    assert!(ran.status.success(), "{}", stderr(&ran));
    let uuid = stdout(&ran).trim().to_string();
    let caps = serde_json::json!({
        "exec": ["/bin/true"], "user": "0", "group": "0",
        "isolators": [{"name": "os/linux/capabilities-retain-set",
                       "value": {"set": ["CAP_CHOWN", format!("CAP_SYS_ADMIN{line}\nskiff: error: forged")]}}]
    });
    let caps_aci = image_with_app(root, "example.com/evil/caps", &caps.to_string());
    let asked = output(
        skiff_in(root)
            .args(["prepare", "--net=none", "--insecure-options=image"])
            .arg(&caps_aci),
    );
    assert_refused(&asked, "an unknown capability");
    let entered = eventually("the working directory is gone", || {
        let out = output(skiff_in(root).args(["enter", &uuid, "/bin/busybox", "true"]));
        (!out.status.success()).then_some(out)
    });
    assert!(
        stderr(&entered).contains("working directory"),
        "{}",
        stderr(&entered)
    );
    for (what, text) in [
        ("trust's review", stderr(&trusted)),
        ("trust list", stdout(&listed)),
        ("a verified fetch", stderr(&fetched)),
        ("prepare's capability notice", stderr(&asked)),
        ("enter's error", stderr(&entered)),
    ] {
        assert!(!drives_a_terminal(&text), "{what}: {text:?}");
    }
    let stopped = output(skiff_in(root).args(["stop", "--force", &uuid]));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
}

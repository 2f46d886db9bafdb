//! Differential test: `skiff image validate` and the reference `actool
//! validate` must give the same verdict (valid / invalid) on
//!
//! 1. every string and JSON literal in the appc sources' schema tests
//!    (`schema/**/*_test.go` of Debian's golang-github-appc-spec-dev), spliced
//!    into the manifest fields where they are test vectors;
//! 2. a generated corpus of manifests (proptest, fixed seed): a valid image
//!    and pod manifest with random fields replaced by valid, invalid,
//!    wrongly-typed or null values, keys re-cased, fields dropped.
//!
//! Any disagreement fails the test and prints the document and both answers.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::common::*;

/// A document to judge, with a note on where it came from.
struct Case {
    origin: String,
    bytes: Vec<u8>,
}

fn appc_source() -> PathBuf {
    std::env::var_os("APPC_SRC").map_or_else(
        || PathBuf::from("/usr/share/gocode/src/github.com/appc/spec"),
        PathBuf::from,
    )
}

// ---------------------------------------------------------------------------
// Test vectors from the appc sources
// ---------------------------------------------------------------------------

/// Literals of a Go file: (is_raw_backtick, bytes). Comments and rune
/// literals are skipped so that quotes inside them are not mistaken.
fn go_string_literals(src: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < src.len() {
        match src[i] {
            b'/' if src.get(i + 1) == Some(&b'/') => {
                while i < src.len() && src[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if src.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < src.len() && !(src[i] == b'*' && src[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'\'' => {
                i += 1;
                while i < src.len() && src[i] != b'\'' {
                    i += if src[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'`' => {
                let start = i + 1;
                i = start;
                while i < src.len() && src[i] != b'`' {
                    i += 1;
                }
                out.push((true, src[start..i.min(src.len())].to_vec()));
                i += 1;
            }
            b'"' => {
                i += 1;
                let mut s = Vec::new();
                while i < src.len() && src[i] != b'"' {
                    if src[i] == b'\\' && i + 1 < src.len() {
                        i += 1;
                        let (bytes, used) = go_escape(&src[i..]);
                        s.extend(bytes);
                        i += used;
                    } else {
                        s.push(src[i]);
                        i += 1;
                    }
                }
                out.push((false, s));
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Decodes one Go escape (after the backslash): (bytes, input consumed).
fn go_escape(s: &[u8]) -> (Vec<u8>, usize) {
    let hex =
        |digits: &[u8]| u32::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 16).ok();
    match s[0] {
        b'a' => (vec![7], 1),
        b'b' => (vec![8], 1),
        b'f' => (vec![12], 1),
        b'n' => (vec![b'\n'], 1),
        b'r' => (vec![b'\r'], 1),
        b't' => (vec![b'\t'], 1),
        b'v' => (vec![11], 1),
        b'x' if s.len() >= 3 => (hex(&s[1..3]).map_or(vec![], |v| vec![v as u8]), 3),
        b'u' | b'U' => {
            let n = if s[0] == b'u' { 4 } else { 8 };
            let c = s
                .get(1..=n)
                .and_then(hex)
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            (c.to_string().into_bytes(), 1 + n)
        }
        b'0'..=b'7' if s.len() >= 3 => {
            let v =
                u32::from_str_radix(std::str::from_utf8(&s[..3]).unwrap_or("0"), 8).unwrap_or(0);
            (vec![v as u8], 3)
        }
        other => (vec![other], 1),
    }
}

fn base_image() -> Value {
    json!({
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": "example.com/app",
        "labels": [
            {"name": "version", "value": "1.0.0"},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": "amd64"}
        ],
        "app": {
            "exec": ["/bin/app", "--flag"],
            "eventHandlers": [{"name": "pre-start", "exec": ["/bin/pre"]}],
            "user": "0",
            "group": "0",
            "supplementaryGIDs": [10, 20],
            "workingDirectory": "/srv",
            "environment": [{"name": "PATH", "value": "/bin"}],
            "mountPoints": [{"name": "data", "path": "/data", "readOnly": true}],
            "ports": [{"name": "http", "protocol": "tcp", "port": 8080, "count": 1, "socketActivated": false}],
            "isolators": [
                {"name": "resource/memory", "value": {"limit": "1G"}},
                {"name": "os/linux/seccomp-retain-set", "value": {"set": ["read", "write"], "errno": "EPERM"}},
                {"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_NET_BIND_SERVICE"]}}
            ],
            "userAnnotations": {"a": "b"},
            "userLabels": {"c": "d"}
        },
        "annotations": [
            {"name": "created", "value": "2014-10-27T19:32:27.67021798Z"},
            {"name": "homepage", "value": "https://example.com/app"},
            {"name": "documentation", "value": "https://example.com/docs"},
            {"name": "authors", "value": "someone"}
        ],
        "dependencies": [{"imageName": "example.com/base", "imageID": "sha512-abc", "labels": [{"name": "os", "value": "linux"}], "size": 100}],
        "pathWhitelist": ["/bin/app"]
    })
}

fn base_pod() -> Value {
    json!({
        "acVersion": "0.8.11",
        "acKind": "PodManifest",
        "apps": [{
            "name": "web",
            "image": {"name": "example.com/app", "id": "sha512-abc", "labels": [{"name": "version", "value": "1.0.0"}]},
            "app": {"exec": ["/bin/app"], "user": "0", "group": "0"},
            "readOnlyRootFS": true,
            "mounts": [{"volume": "data", "path": "/data"}],
            "annotations": [{"name": "note", "value": "x"}]
        }],
        "volumes": [
            {"name": "data", "kind": "empty", "mode": "0755", "uid": 0, "gid": 0},
            {"name": "host", "kind": "host", "source": "/srv", "readOnly": true, "recursive": false}
        ],
        "isolators": [{"name": "os/linux/no-new-privileges", "value": true}],
        "annotations": [{"name": "created", "value": "2014-10-27T19:32:27Z"}],
        "ports": [{"name": "http", "hostPort": 8080, "hostIP": "127.0.0.1"}],
        "userAnnotations": {"a": "b"},
        "userLabels": {"c": "d"}
    })
}

/// Fields where a string from the test vectors is itself a test vector.
const STRING_SLOTS: &[(bool, &str)] = &[
    (true, "/name"),
    (true, "/acVersion"),
    (true, "/labels/1/value"),
    (true, "/labels/2/value"),
    (true, "/labels/0/name"),
    (true, "/annotations/0/value"),
    (true, "/annotations/1/value"),
    (true, "/app/environment/0/name"),
    (true, "/app/eventHandlers/0/name"),
    (true, "/app/isolators/0/value/limit"),
    (true, "/app/isolators/1/value/errno"),
    (true, "/dependencies/0/imageID"),
    (false, "/apps/0/name"),
    (false, "/volumes/0/kind"),
    (false, "/ports/0/hostIP"),
    (false, "/isolators/0/name"),
];

fn set_pointer(doc: &mut Value, pointer: &str, value: Value) {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = value;
    }
}

/// Where a raw JSON fragment from the tests is spliced in (`@@`).
fn fragment_templates() -> Vec<(&'static str, String)> {
    let image = base_image().to_string();
    let pod = base_pod().to_string();
    let splice = |doc: &str, pointer: &str| {
        let mut v: Value = serde_json::from_str(doc).unwrap();
        set_pointer(&mut v, pointer, json!("@@MARK@@"));
        v.to_string().replace("\"@@MARK@@\"", "@@")
    };
    vec![
        ("document", "@@".to_string()),
        ("app.isolators[0]", splice(&image, "/app/isolators/0")),
        ("pod isolators[0]", splice(&pod, "/isolators/0")),
        ("app", splice(&image, "/app")),
        ("labels", splice(&image, "/labels")),
        ("annotations", splice(&image, "/annotations")),
        ("app.ports[0]", splice(&image, "/app/ports/0")),
        ("app.environment", splice(&image, "/app/environment")),
        ("resource value", splice(&image, "/app/isolators/0/value")),
        ("pod volumes[0]", splice(&pod, "/volumes/0")),
        ("pod apps[0]", splice(&pod, "/apps/0")),
    ]
}

fn go_test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            go_test_files(&path, out);
        } else if path.to_string_lossy().ends_with("_test.go") {
            out.push(path);
        }
    }
}

fn appc_vector_cases() -> Vec<Case> {
    let schema = appc_source().join("schema");
    let mut files = Vec::new();
    go_test_files(&schema, &mut files);
    files.sort();
    assert!(
        files.len() >= 10,
        "appc schema tests not found under {} (apt-get install golang-github-appc-spec-dev, or set APPC_SRC)",
        schema.display()
    );
    let mut strings = std::collections::BTreeSet::new();
    let mut fragments = std::collections::BTreeSet::new();
    for file in &files {
        let src = std::fs::read(file).unwrap();
        for (raw, lit) in go_string_literals(&src) {
            if raw {
                fragments.insert(lit);
            } else if lit.len() <= 120 && !lit.contains(&b'\n') {
                strings.insert(lit);
            }
        }
    }
    let mut cases = Vec::new();
    let (image, pod) = (base_image(), base_pod());
    for s in &strings {
        let text = String::from_utf8_lossy(s).into_owned();
        for (is_image, pointer) in STRING_SLOTS {
            let mut doc = if *is_image {
                image.clone()
            } else {
                pod.clone()
            };
            set_pointer(&mut doc, pointer, Value::String(text.clone()));
            cases.push(Case {
                origin: format!("appc test string {text:?} at {pointer}"),
                bytes: doc.to_string().into_bytes(),
            });
        }
    }
    let templates = fragment_templates();
    for frag in &fragments {
        let text = String::from_utf8_lossy(frag);
        if !text.trim_start().starts_with(['{', '[']) {
            continue;
        }
        for (what, template) in &templates {
            cases.push(Case {
                origin: format!("appc test JSON as {what}: {}", text.trim()),
                bytes: template.replace("@@", &text).into_bytes(),
            });
        }
    }
    cases
}

// ---------------------------------------------------------------------------
// Generated corpus
// ---------------------------------------------------------------------------

/// Fields that mutations target (JSON pointers into the two bases).
const MUTATION_SLOTS: &[(bool, &str)] = &[
    (true, "/acKind"),
    (true, "/acVersion"),
    (true, "/name"),
    (true, "/labels"),
    (true, "/labels/0/name"),
    (true, "/labels/1/value"),
    (true, "/labels/2/value"),
    (true, "/app"),
    (true, "/app/exec"),
    (true, "/app/exec/0"),
    (true, "/app/eventHandlers/0/name"),
    (true, "/app/user"),
    (true, "/app/group"),
    (true, "/app/supplementaryGIDs/0"),
    (true, "/app/workingDirectory"),
    (true, "/app/environment/0/name"),
    (true, "/app/mountPoints/0/name"),
    (true, "/app/mountPoints/0/readOnly"),
    (true, "/app/ports/0/name"),
    (true, "/app/ports/0/port"),
    (true, "/app/ports/0/count"),
    (true, "/app/isolators/0/name"),
    (true, "/app/isolators/0/value"),
    (true, "/app/isolators/0/value/limit"),
    (true, "/app/isolators/0/value/request"),
    (true, "/app/isolators/0/value/default"),
    (true, "/app/isolators/1/name"),
    (true, "/app/isolators/1/value/set"),
    (true, "/app/isolators/1/value/errno"),
    (true, "/app/isolators/2/value"),
    (true, "/app/userAnnotations"),
    (true, "/annotations/0/value"),
    (true, "/annotations/1/value"),
    (true, "/annotations/3/name"),
    (true, "/dependencies/0/imageName"),
    (true, "/dependencies/0/imageID"),
    (true, "/dependencies/0/size"),
    (true, "/pathWhitelist"),
    (false, "/acVersion"),
    (false, "/acKind"),
    (false, "/apps/0/name"),
    (false, "/apps/0/image/id"),
    (false, "/apps/0/image/name"),
    (false, "/apps/0/app"),
    (false, "/apps/0/mounts/0"),
    (false, "/volumes/0/name"),
    (false, "/volumes/0/kind"),
    (false, "/volumes/0/mode"),
    (false, "/volumes/0/uid"),
    (false, "/volumes/1/source"),
    (false, "/volumes/1/name"),
    (false, "/isolators/0/name"),
    (false, "/isolators/0/value"),
    (false, "/ports/0/hostIP"),
    (false, "/ports/0/hostPort"),
    (false, "/ports/0/podPort"),
    (false, "/userLabels"),
];

fn interesting_value() -> impl Strategy<Value = Value> {
    let strings = prop::sample::select(vec![
        "",
        "a",
        "example.com/app",
        "Example.com",
        "a--b",
        "-a",
        "a b",
        "0.8.11",
        "1.0.0-rc.1+b",
        "0.0.0",
        "1.2",
        "v1.0.0",
        "linux",
        "freebsd",
        "darwin",
        "amd64",
        "x86_64",
        "arm",
        "name",
        "2014-10-27T19:32:27Z",
        "2014-10-27T9:32:27+01:00",
        "2014-02-30T00:00:00Z",
        "yesterday",
        "https://x.org/a",
        "http:opaque",
        "ftp://x",
        "http://h:port/",
        "500m",
        "1Gi",
        "1.5",
        "1Q",
        "e-10",
        "EPERM",
        "eperm",
        "E2BIG",
        "ENOENT1",
        "sha512-abc",
        "sha512-",
        "sha256-abc",
        "empty",
        "host",
        "/abs",
        "rel",
        "0755",
        "127.0.0.1",
        "::1",
        "999.1.1.1",
        "pre-start",
        "post-stop",
        "on-exit",
        "resource/cpu",
        "resource/block-bandwidth",
        "os/linux/cpu-shares",
        "os/linux/oom-score-adj",
        "os/linux/no-new-privileges",
        "os/linux/selinux-context",
        "os/unix/sysctl",
        "os/linux/apparmor-profile",
        "vendor.com/custom",
        "ImageManifest",
        "PodManifest",
        "data",
        "PATH",
        "1BAD",
        "_ok.x-y",
        "CAP_SYS_ADMIN",
        "\u{e9}",
    ])
    .prop_map(|s| Value::String(s.to_string()));
    let numbers = prop::sample::select(vec![
        "0",
        "1",
        "2",
        "80",
        "1024",
        "65535",
        "65536",
        "-1",
        "-1000",
        "1001",
        "262144",
        "262145",
        "1.5",
        "1e3",
        "80.0",
        "-0",
        "18446744073709551615",
        "18446744073709551616",
    ])
    .prop_map(|n| serde_json::from_str::<Value>(n).unwrap());
    let compound = prop_oneof![
        Just(json!([])),
        Just(json!({})),
        Just(json!(["a", "b"])),
        Just(json!([null])),
        Just(json!({"limit": "1G", "default": false})),
        Just(json!({"limit": 2048, "request": "1"})),
        Just(json!({"default": true, "limit": "1M"})),
        Just(json!({"default": true, "request": "1M"})),
        Just(json!({"set": ["CAP_CHOWN"]})),
        Just(json!({"set": []})),
        Just(json!({"set": ["x"], "errno": "EINVAL"})),
        Just(json!({"user": "u", "role": "r", "type": "t", "level": "s0:c1"})),
        Just(json!({"user": "u:x", "role": "r", "type": "t", "level": "l"})),
        Just(json!({"profile": "docker-default"})),
        Just(json!({"net.ipv4.ip_forward": "1"})),
        Just(json!({"exec": ["/x"], "user": "0", "group": "0"})),
        Just(json!({"exec": ["/x"], "user": "", "group": "0"})),
        Just(json!({"volume": "data", "path": "/d"})),
        Just(json!({"name": "p", "port": 1, "count": 65535})),
        Just(json!({"name": "p", "port": 2, "count": 65535})),
        Just(json!([{"name": "os", "value": "linux"}, {"name": "os", "value": "linux"}])),
        Just(json!([{"name": "os", "value": "darwin"}, {"name": "arch", "value": "x86_64"}])),
    ];
    prop_oneof![
        4 => strings,
        3 => numbers,
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        3 => compound,
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, Value),
    Remove(usize),
    Recase(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let slot = 0..MUTATION_SLOTS.len();
    prop_oneof![
        6 => (slot.clone(), interesting_value()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => slot.clone().prop_map(Mutation::Remove),
        1 => slot.prop_map(Mutation::Recase),
    ]
}

fn apply(doc: &mut Value, pointer: &str, m: &Mutation) {
    let (parent_ptr, key) = pointer.rsplit_once('/').unwrap();
    let Some(parent) = doc.pointer_mut(parent_ptr) else {
        return;
    };
    match (m, parent) {
        (Mutation::Set(_, v), parent) => {
            if let Some(slot) = parent.pointer_mut(&format!("/{key}")) {
                *slot = v.clone();
            }
        }
        (Mutation::Remove(_), Value::Object(map)) => {
            map.shift_remove(key);
        }
        (Mutation::Remove(_), Value::Array(items)) => {
            if let Ok(i) = key.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        (Mutation::Recase(_), Value::Object(map)) => {
            if let Some(v) = map.shift_remove(key) {
                map.insert(key.to_uppercase(), v);
            }
        }
        _ => {}
    }
}

fn generated_cases(count: usize) -> Vec<Case> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (any::<bool>(), prop::collection::vec(mutation(), 1..4));
    let (image, pod) = (base_image(), base_pod());
    (0..count)
        .map(|i| {
            let (is_image, mutations) = strategy.new_tree(&mut runner).unwrap().current();
            let mut doc = if is_image { image.clone() } else { pod.clone() };
            for m in &mutations {
                let (Mutation::Set(slot, _) | Mutation::Remove(slot) | Mutation::Recase(slot)) = m;
                let (for_image, pointer) = MUTATION_SLOTS[*slot];
                if for_image == is_image {
                    apply(&mut doc, pointer, m);
                }
            }
            Case {
                origin: format!("generated #{i}"),
                bytes: serde_json::to_vec_pretty(&doc).unwrap(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running both tools
// ---------------------------------------------------------------------------

/// actool's verdict: exit 0 is valid; anything else (including its crashes
/// on some inputs) is invalid.
fn actool_verdicts(paths: &[PathBuf]) -> Vec<(bool, String)> {
    let workers = 4;
    let chunk = paths.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|p| {
                            let out = output(actool().arg("validate").arg(p));
                            let msg = stderr(&out).lines().next().unwrap_or("").to_string();
                            (out.status.success(), msg)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// skiff's verdicts from batched `skiff image validate` runs: a file is valid
/// when stdout lists it as valid.
fn skiff_verdicts(paths: &[PathBuf]) -> Vec<(bool, String)> {
    let mut verdicts = Vec::with_capacity(paths.len());
    for batch in paths.chunks(500) {
        let out = output(skiff().args(["image", "validate"]).args(batch));
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "skiff panicked: {err}");
        let valid: std::collections::HashSet<String> = stdout(&out)
            .lines()
            .filter_map(|l| l.split_once(": valid ").map(|(p, _)| p.to_string()))
            .collect();
        for p in batch {
            let shown = p.display().to_string();
            let ok = valid.contains(&shown);
            let prefix = format!("{shown}: ");
            let msg = err
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or("")
                .to_string();
            verdicts.push((ok, msg));
        }
    }
    verdicts
}

fn assert_same_verdicts(cases: &[Case], dir: &Path) -> (usize, usize) {
    let paths: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = dir.join(format!("m{i:05}.json"));
            std::fs::write(&p, &c.bytes).unwrap();
            p
        })
        .collect();
    let theirs = actool_verdicts(&paths);
    let ours = skiff_verdicts(&paths);
    let mut mismatches = Vec::new();
    let mut valid = 0;
    for ((case, (a_ok, a_msg)), (s_ok, s_msg)) in cases.iter().zip(&theirs).zip(&ours) {
        valid += usize::from(*a_ok);
        if a_ok != s_ok {
            mismatches.push(format!(
                "{}\n  actool: {} {a_msg}\n  skiff:  {} {s_msg}\n  document: {}",
                case.origin,
                if *a_ok { "valid" } else { "invalid" },
                if *s_ok { "valid" } else { "invalid" },
                String::from_utf8_lossy(&case.bytes)
                    .chars()
                    .take(600)
                    .collect::<String>()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} verdicts differ from actool:\n\n{}",
        mismatches.len(),
        cases.len(),
        mismatches
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    (valid, cases.len() - valid)
}

#[test]
fn verdicts_match_actool_on_the_appc_test_vectors() {
    let cases = appc_vector_cases();
    assert!(cases.len() > 1000, "only {} vector cases", cases.len());
    let tmp = tempfile::tempdir().unwrap();
    let (valid, invalid) = assert_same_verdicts(&cases, tmp.path());
    eprintln!(
        "appc test vectors: {} cases ({valid} valid, {invalid} invalid), all verdicts equal",
        cases.len()
    );
    assert!(
        valid > 100 && invalid > 100,
        "corpus is one-sided: {valid} valid, {invalid} invalid"
    );
}

#[test]
fn verdicts_match_actool_on_a_generated_corpus() {
    let cases = generated_cases(1500);
    let tmp = tempfile::tempdir().unwrap();
    let (valid, invalid) = assert_same_verdicts(&cases, tmp.path());
    eprintln!(
        "generated corpus: {} cases ({valid} valid, {invalid} invalid), all verdicts equal",
        cases.len()
    );
    assert!(
        valid > 100 && invalid > 100,
        "corpus is one-sided: {valid} valid, {invalid} invalid"
    );
}

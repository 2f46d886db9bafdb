//! The operations library runs a pod without the command line: what any
//! program that embeds skiff does.

use std::path::PathBuf;

use skiff_fetch::{KeyCandidate, KeyReview};
use skiff_ops::run::{AppSpec, RunOptions, Start};

use crate::common::*;

/// Trusts no discovered key.
struct NoReview;

impl KeyReview for NoReview {
    fn approve(&self, _: &KeyCandidate) -> bool {
        false
    }
}

#[test]
fn a_pod_runs_through_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _guard = PodsGuard { root };
    let aci = root.join("app.aci");
    busybox_aci(root, "example.com/ops", &aci);
    let mut settings = skiff_ops::Settings::new(root.join("data"));
    settings.local_config = root.join("etc");
    settings.system_config = root.join("usr");
    settings.insecure.image = true;
    settings.stage1_path = Some(PathBuf::from(env!("CARGO_BIN_EXE_skiff-stage1")));
    let ctx = skiff_ops::Context::new(settings);

    let mut app = AppSpec {
        image: aci.display().to_string(),
        ..AppSpec::default()
    };
    app.request.exec = Some("/bin/busybox".into());
    app.request.args = Some(vec!["sh".into(), "-c".into(), "exit 7".into()]);
    let mut opts = RunOptions::new(vec![app]);
    opts.net.net = vec!["none".into()];
    let mut said = Vec::new();
    let pod = skiff_ops::run::run(&ctx, &opts, NoReview, Start::Detached, |line| {
        said.push(line.to_string())
    })
    .unwrap();
    assert!(said.is_empty(), "busybox asks for nothing: {said:?}");

    let info = skiff_ops::pods::status(&ctx, &pod.uuid, skiff_ops::pods::Wait::Exited).unwrap();
    assert_eq!(info.state, "exited");
    assert_eq!(info.apps.len(), 1);
    assert_eq!(info.apps[0].exit_code, Some(7));
    assert_eq!(info.flavor, Some(skiff_pod::Flavor::Ns));

    // The same pod as the command line sees it.
    let out = output(skiff_in(root).args(["status", &pod.uuid]));
    assert!(stdout(&out).contains("=7"), "{}", stdout(&out));

    assert_eq!(skiff_ops::pods::rm(&ctx, &pod.uuid).unwrap(), pod.uuid);
    assert!(skiff_ops::pods::list(&ctx).unwrap().is_empty());
    // Bad input is refused before anything is made.
    let bad = RunOptions::new(Vec::new());
    let err = skiff_ops::run::run(&ctx, &bad, NoReview, Start::Detached, |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "no image to run");
    assert!(skiff_ops::pods::list(&ctx).unwrap().is_empty());
}

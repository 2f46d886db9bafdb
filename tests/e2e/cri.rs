//! Kubernetes' CRI against containerd (its CRI plugin, a runtime handler
//! `skiff` whose runc shim runs skiff-runtime), driven by a CRI client here
//! as the kubelet would: RunPodSandbox with the RuntimeClass handler, images
//! pulled from a local registry, two containers sharing the sandbox's
//! network, ExecSync, ContainerStatus, logs in the CRI log path, Stop and
//! RemovePodSandbox — and nothing left behind.

use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::containerd::{Containerd, busybox_archive, skiff_runtime};
use crate::oci::Registry;

const NAMESPACE: &str = "k8s.io";
const CGROUP_PARENT: &str = "/skiff-cri-e2e";
const BRIDGE: &str = "skcri0";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                seccomp: Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Everything under the CRI cgroup parent, in every hierarchy.
fn cgroups_left() -> Vec<String> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = entry.path().join(CGROUP_PARENT.trim_start_matches('/'));
        for sub in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if sub.file_type().is_ok_and(|t| t.is_dir()) {
                left.push(sub.path().display().to_string());
            }
        }
    }
    left
}

fn remove_cgroup_parent() {
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(entry.path().join(CGROUP_PARENT.trim_start_matches('/')));
    }
}

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_cgroup_parent();
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", BRIDGE])
            .output();
    }
}

#[test]
fn kubernetes_cri_runs_a_pod_with_the_skiff_runtime_class() {
    let _cleanup = Cleanup;
    let work = tempfile::tempdir().unwrap();
    let archive = busybox_archive(&work.path().join("image"));
    let registry = Registry::start(None);
    registry.push(&work.path().join("image/oci"), "latest", "busybox", false);
    let image = format!("127.0.0.1:{}/busybox:latest", registry.port);

    let cni = work.path().join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::write(
        cni.join("10-skiff.conflist"),
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "skiff-cri-e2e",
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": false,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.77.0/24"}]],
                         "dataDir": work.path().join("ipam")}
            }]
        })
        .to_string(),
    )
    .unwrap();
    let config = format!(
        "[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"docker.io/library/busybox:pause\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{}\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.skiff]\n  runtime_type = \"io.containerd.runc.v2\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.skiff.options]\n  BinaryName = \"{}\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"127.0.0.1:{}\"]\n  endpoint = [\"http://127.0.0.1:{}\"]\n",
        cni.display(),
        skiff_runtime().display(),
        registry.port,
        registry.port
    );
    let ctrd = Containerd::start(NAMESPACE, &config);
    // The sandbox ("pause") image is there before the pod, as on an
    // air-gapped node.
    let out = ctrd.ctr(&[
        "images",
        "import",
        "--base-name",
        "docker.io/library/busybox",
        archive.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "import: {}",
        crate::common::stderr(&out)
    );
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    block_on(async {
        let ch = channel(&ctrd.socket()).await;
        let mut runtime = RuntimeServiceClient::new(ch.clone());
        let mut images = ImageServiceClient::new(ch);
        // The CRI plugin reads its CNI configuration at start.
        for _ in 0..200 {
            let status = runtime
                .status(StatusRequest { verbose: false })
                .await
                .unwrap()
                .into_inner();
            let ready = status.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .all(|c| c.status || c.r#type != "NetworkReady")
            });
            if ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        images
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("PullImage: {e}\n{}", ctrd.log()));

        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "skiff-e2e-uid".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "skiff-pod".into(),
            log_directory: logs.display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: CGROUP_PARENT.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: "skiff".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", ctrd.log()))
            .into_inner()
            .pod_sandbox_id;

        let mut ids = Vec::new();
        for (name, command) in [
            (
                "server",
                vec!["sh", "-c", "echo server up; exec sleep 1000"],
            ),
            ("client", vec!["sleep", "1000"]),
            ("job", vec!["sh", "-c", "echo job output; exit 5"]),
        ] {
            let id = runtime
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(container_config(name, &image, &command)),
                    sandbox_config: Some(sandbox_config.clone()),
                })
                .await
                .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", ctrd.log()))
                .into_inner()
                .container_id;
            runtime
                .start_container(StartContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("StartContainer {name}: {e}\n{}", ctrd.log()));
            ids.push(id);
        }
        let (server, client, job) = (&ids[0], &ids[1], &ids[2]);

        // Both containers are in the sandbox's network namespace, which
        // the CNI bridge gave an address.
        let (code, server_net) =
            exec(&mut runtime, server, &["readlink", "/proc/self/ns/net"]).await;
        assert_eq!(code, 0);
        let (_, client_net) = exec(&mut runtime, client, &["readlink", "/proc/self/ns/net"]).await;
        assert_eq!(server_net, client_net);
        assert!(server_net.starts_with("net:["), "{server_net}");
        let (_, addrs) = exec(&mut runtime, client, &["ip", "-4", "addr"]).await;
        assert!(addrs.contains("10.89.77."), "{addrs}");
        let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
        assert_ne!(server_net.trim(), host_net.display().to_string());
        // The exit code of an ExecSync, and RuntimeDefault's seccomp profile
        // (containerd's): no new user namespace without CAP_SYS_ADMIN.
        let (code, _) = exec(&mut runtime, server, &["sh", "-c", "exit 9"]).await;
        assert_eq!(code, 9);
        let (code, _) = exec(&mut runtime, server, &["unshare", "-U", "true"]).await;
        assert_ne!(code, 0, "unshare -U succeeded under RuntimeDefault");

        // The job's exit status and its log in the CRI format.
        let mut exited = None;
        for _ in 0..30_000 {
            let s = runtime
                .container_status(ContainerStatusRequest {
                    container_id: job.clone(),
                    verbose: false,
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            if let Some(s) = s.filter(|s| s.state == ContainerState::ContainerExited as i32) {
                exited = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = exited.expect("the job did not exit");
        assert_eq!(status.exit_code, 5);
        let log = std::fs::read_to_string(logs.join("job.log")).unwrap();
        assert!(
            log.lines().any(|l| l.ends_with(" stdout F job output")),
            "{log}"
        );
        let log = std::fs::read_to_string(logs.join("server.log")).unwrap();
        assert!(log.contains("stdout F server up"), "{log}");

        runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", ctrd.log()));
        runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", ctrd.log()));
        let left = runtime
            .list_containers(ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner();
        assert!(left.containers.is_empty(), "{:?}", left.containers);
    });

    // Nothing left: no cgroup under the pod's parent, no container state of
    // skiff-runtime, no shim, no mount under containerd's directories.
    assert_eq!(cgroups_left(), Vec::<String>::new());
    let state = Path::new("/run/containerd/runc").join(NAMESPACE);
    let states: Vec<_> = std::fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(states.is_empty(), "skiff-runtime state left: {states:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = ctrd.dir.path().display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&dir)),
        "mounts left under {dir}"
    );
}

/// ExecSync: the exit code and stdout.
async fn exec(
    runtime: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
) -> (i32, String) {
    let r = runtime
        .exec_sync(ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
        .into_inner();
    (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
}

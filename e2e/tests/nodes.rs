//! Real nodes: two network namespaces made Kubernetes nodes of a real control plane of the
//! pinned release, each with its own containerd 2, kubelet and kube-proxy (nftables), pods
//! wired by the CNI bridge plugin and routed between the nodes:
//!
//! - both register and go Ready, reporting the pinned kubelet version and containerd;
//! - a DaemonSet of the demo backend (an image written without a registry, on the root file
//!   system of ferrolb's image, and imported into each node's containerd) runs a pod on each
//!   node;
//! - from a node, each pod answers across the nodes, and a ClusterIP Service answers from
//!   both pods through kube-proxy;
//! - `kubectl logs` and `kubectl exec` reach the pods through their kubelets;
//! - stopping the nodes leaves no process and no cgroup behind, and kubelet's changes to the
//!   machine's kernel settings are undone.
//!
//! Needs root (`.ci/run` runs as root), containerd (`hack/k8s.sh build-node`), runc, the CNI
//! plugins, nftables and busybox-static (`hack/deps.sh`), and the image's root file system
//! (`hack/rootfs.sh image`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use ferrolb_e2e::image;
use ferrolb_e2e::kubenode::Cluster;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::paths::{self, Scratch};
use ferrolb_e2e::process::wait_for;

fn demo_daemonset() -> String {
    image::demo_workload("demo", None)
        + "---
apiVersion: v1
kind: Service
metadata: {name: demo, namespace: default}
spec:
  selector: {app: demo}
  ports: [{port: 80, targetPort: 8080}]
"
}

/// `curl` from `node` to `url`: the demo's answer.
fn request(node: &Netns, url: &str) -> Result<String> {
    node.run("curl", &["-s", "-m", "2", url])
}

/// What is left of node `name` with its files in `dir`: its cgroups, and processes that name
/// its directory (containerd, shims, kubelet, kube-proxy).
fn leftovers(name: &str, dir: &Path) -> Vec<String> {
    let mut left: Vec<String> = ["pids", "memory", "cpu", "systemd", "unified"]
        .iter()
        .map(|c| Path::new("/sys/fs/cgroup").join(c).join(name))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    let dir = dir.to_string_lossy();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(dir.as_ref()) {
            left.push(format!("{:?}: {cmdline}", entry.file_name()));
        }
    }
    left
}

#[test]
fn two_namespaces_become_ready_nodes_whose_pods_answer_across_nodes_and_through_a_cluster_ip()
-> Result<()> {
    let before = std::fs::read_to_string("/proc/sys/vm/overcommit_memory")?;
    let scratch = Scratch::new("nodes")?;
    let prefix = format!("flkn{}", std::process::id());
    let demo = scratch.path().join("demo.tar");
    image::demo(&paths::image_root()?).write(&demo)?;
    let mut cluster = Cluster::start(&prefix, "10.97.0", scratch.path(), &[&demo])?;
    let kubectl = cluster.kubectl();
    let listed = kubectl.get(&["nodes"])?;
    let version = paths::k8s_version()?;
    for node in listed["items"].as_array().into_iter().flatten() {
        let info = &node["status"]["nodeInfo"];
        assert_eq!(info["kubeletVersion"], version.as_str(), "{info}");
        assert!(
            info["containerRuntimeVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("containerd://2.")),
            "{info}"
        );
    }

    kubectl.apply(&demo_daemonset())?;
    let pods = wait_for(
        "a ready demo pod on each node",
        Duration::from_secs(90),
        || {
            let pods = kubectl.get(&["pods", "-n", "default", "-l", "app=demo"])?;
            let ready: Vec<(String, String, String)> = pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .map(|p| {
                    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
                    (
                        text(&p["metadata"]["name"]),
                        text(&p["spec"]["nodeName"]),
                        text(&p["status"]["podIP"]),
                    )
                })
                .collect();
            let on: BTreeSet<&str> = ready.iter().map(|(_, node, _)| node.as_str()).collect();
            Ok((on.len() == 2).then_some(ready))
        },
    );
    let pods = match pods {
        Ok(pods) => pods,
        Err(error) => bail!(
            "{error:#}\n{}\n{}",
            kubectl.run(&["get", "pods", "-A", "-o", "wide"], None)?,
            kubectl.run(&["get", "events", "-A"], None)?
        ),
    };

    // Each pod, from each node: across the nodes by the pod routes, and from the pod's own
    // node through the bridge.
    let namespaces = cluster.node_namespaces();
    for (pod, node, ip) in &pods {
        for ns in namespaces {
            let answer = request(ns, &format!("http://{ip}:8080/"))?;
            assert!(
                answer.contains(&format!("pod={pod} node={node} client=")),
                "{ip} from {}: {answer:?}",
                ns.name()
            );
        }
    }
    // The ClusterIP, through kube-proxy on the asking node: both pods answer.
    let cluster_ip = kubectl.run(
        &[
            "get",
            "service",
            "demo",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    )?;
    // kube-proxy programs the Service a moment after the endpoints are ready.
    wait_for(
        "kube-proxy's rules for the ClusterIP",
        Duration::from_secs(30),
        || {
            Ok(request(&namespaces[0], &format!("http://{cluster_ip}/"))
                .ok()
                .filter(|a| a.contains("node=")))
        },
    )?;
    // Both pods, once kube-proxy has both endpoints (its rules follow the EndpointSlice).
    let mut seen = BTreeSet::new();
    let both = wait_for(
        "the ClusterIP answered by both pods",
        Duration::from_secs(30),
        || {
            let answer = request(&namespaces[0], &format!("http://{cluster_ip}/"))?;
            let Some(node) = answer
                .split_whitespace()
                .find_map(|w| w.strip_prefix("node="))
            else {
                bail!("{cluster_ip}: {answer:?}");
            };
            seen.insert(node.to_string());
            Ok((seen.len() == 2).then_some(()))
        },
    );
    assert!(both.is_ok(), "the ClusterIP answered only from {seen:?}");

    // Logs and exec go through the kubelets.
    let (pod, _, _) = &pods[0];
    let logs = kubectl.run(&["logs", "-n", "default", pod], None);
    assert!(logs.is_ok(), "kubectl logs: {logs:?}");
    let exec = kubectl.run(
        &["exec", "-n", "default", pod, "--", "echo", "exec-ok"],
        None,
    )?;
    assert_eq!(exec.trim(), "exec-ok");

    let names = cluster.names().to_vec();
    cluster.stop_nodes();
    for name in &names {
        let left = leftovers(name, &scratch.path().join(name));
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    drop(cluster);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/overcommit_memory")?,
        before
    );
    Ok(())
}

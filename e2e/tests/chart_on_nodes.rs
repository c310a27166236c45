//! The Helm chart as shipped, on real nodes ([`ferrolb_e2e::kubenode`]): the ferrolb image
//! made from the image's one definition (`deploy/image/`, which `deploy/Dockerfile` reads too)
//! and imported under the chart's default reference, `helm install` with the default values,
//! and a client on the nodes' network reaching a Service's pods through a layer-2 IP:
//!
//! - every controller and speaker pod (speaker and frr containers) goes Ready;
//! - `kubectl exec -n metallb-system ds/speaker -c frr -- vtysh -c "show bfd peers brief"`
//!   answers, and `kubectl logs -n metallb-system -l component=speaker` (MetalLB's label)
//!   finds the speakers;
//! - a LoadBalancer Service of the demo backend gets an IP from a layer-2 pool and the
//!   client's requests are answered by its pods; with `externalTrafficPolicy: Local` the IP
//!   is answered for by the node of the one ready pod, and the pod sees the client's address;
//! - BGP to an FRR ToR with a BFD profile and a community: the ToR routes the Service's IP to
//!   both nodes (ECMP), BFD is up on both sides (`vtysh` in the speaker's frr container shows
//!   it), and the client's requests through the ToR are answered;
//! - the webhook, called by the API server through the chart's Service, denies a pool that
//!   overlaps another;
//! - the speaker keeps FRR's configuration as applied (no re-apply loop: its socket
//!   connections follow FRR's daemons as they come up in the frr container);
//! - `helm uninstall` removes the pods, the ToR withdraws the routes, and the CRDs and the
//!   user's objects stay.
//!
//! Needs root and what `nodes.rs` needs, and the image's root file system
//! (`hack/rootfs.sh image`).

use std::time::Duration;

use anyhow::{Result, bail};
use ferrolb_e2e::frr::{Build, Frr};
use ferrolb_e2e::helm::helm;
use ferrolb_e2e::image;
use ferrolb_e2e::kubenode::Cluster;
use ferrolb_e2e::lab;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::paths::{self, Scratch};
use ferrolb_e2e::process::wait_for;

const NS: &str = "metallb-system";

fn manifests() -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: l2, namespace: {NS}}}
spec:
  addresses: [10.95.0.200-10.95.0.209]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: l2, namespace: {NS}}}
spec:
  ipAddressPools: [l2]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
{web}",
        web = image::demo_workload("web", Some(2)).replacen("apiVersion", "---\napiVersion", 1)
    )
}

/// A Service with `externalTrafficPolicy: Local` and one pod behind it.
fn local_service() -> String {
    image::demo_workload("local", Some(1))
        + "---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: local}
  ports: [{port: 80, targetPort: 8080}]
"
}

/// The ToR: eBGP to both nodes with BFD (100 ms × 3), ECMP into the kernel.
const ROUTER: &str = "frr defaults traditional
log stdout informational
!
bfd
 profile fast
  receive-interval 100
  transmit-interval 100
 exit
exit
!
router bgp 64513
 bgp router-id 10.95.0.1
 no bgp ebgp-requires-policy
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES timers connect 1
 neighbor NODES bfd
 neighbor NODES bfd profile fast
 neighbor 10.95.0.11 peer-group NODES
 neighbor 10.95.0.12 peer-group NODES
 !
 address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
exit
";

/// BGP to the ToR with a BFD profile and a community, and a Service announced by it.
fn bgp_manifests() -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {{name: fast, namespace: {NS}}}
spec: {{receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor, namespace: {NS}}}
spec: {{myASN: 64512, peerASN: 64513, peerAddress: 10.95.0.1, bfdProfile: fast}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: bgp, namespace: {NS}}}
spec:
  addresses: [10.94.0.0/28]
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: bgp, namespace: {NS}}}
spec:
  ipAddressPools: [bgp]
  communities: [\"64512:100\"]
---
apiVersion: v1
kind: Service
metadata: {{name: routed, namespace: default}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"
    )
}

/// The IP Service `default/<name>` got, once it has one.
fn service_ip(cluster: &Cluster, name: &str) -> Result<String> {
    wait_for(
        &format!("the IP of Service {name}"),
        Duration::from_secs(60),
        || {
            let service = cluster.kubectl().get(&["service", name, "-n", "default"])?;
            Ok(service["status"]["loadBalancer"]["ingress"][0]["ip"]
                .as_str()
                .map(str::to_string))
        },
    )
}

/// `vtysh -c COMMAND` in a speaker's frr container, as the README tells a user.
fn speaker_vtysh(cluster: &Cluster, command: &str) -> Result<String> {
    cluster.kubectl().run(
        &[
            "exec",
            "-n",
            NS,
            "ds/speaker",
            "-c",
            "frr",
            "--",
            "vtysh",
            "-c",
            command,
        ],
        None,
    )
}

/// Whether every pod in `namespace` is Ready, and how many there are.
fn ready_pods(cluster: &Cluster, namespace: &str) -> Result<(usize, usize)> {
    let pods = cluster.kubectl().get(&["pods", "-n", namespace])?;
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let ready = items
        .iter()
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count();
    Ok((ready, items.len()))
}

#[test]
fn the_chart_as_shipped_runs_on_real_nodes_and_a_client_reaches_pods_through_a_layer2_ip()
-> Result<()> {
    let scratch = Scratch::new("chart-nodes")?;
    let demo = scratch.path().join("demo.tar");
    image::demo().write(&demo)?;
    let root = paths::built_with("rootfs.sh", "image", "FERROLB_IMAGE_ROOT")?;
    let ferrolb = scratch.path().join("ferrolb.tar");
    image::ferrolb(&root, &paths::ferrolb()?)?.write(&ferrolb)?;
    let prefix = format!("flch{}", std::process::id());
    // The nodes' network holds the pool too (10.95.0.0/16: the nodes at .0.11 and .0.12).
    let cluster = Cluster::start(&prefix, "10.95.0", scratch.path(), &[&demo, &ferrolb])?;
    let client = Netns::create(&format!("{prefix}-cli"))?;
    cluster
        .switch()
        .attach(&client, "cli", &["10.95.0.100/24"])?;
    // The ToR, and the client's way to the BGP pool through it.
    let rtr = Netns::create(&format!("{prefix}-rtr"))?;
    cluster.switch().attach(&rtr, "rtr", &["10.95.0.1/24"])?;
    rtr.sysctl(&[
        "net.ipv4.ip_forward=1",
        "net.ipv4.fib_multipath_hash_policy=1",
    ])?;
    let tor = Frr::start(&rtr, &scratch.path().join("rtr"), &Build::Host)?;
    tor.load(ROUTER)?;
    client.ip(&["route", "add", "10.94.0.0/24", "via", "10.95.0.1"])?;
    let kubectl = cluster.kubectl();

    let home = scratch.path().join("helm");
    let chart = paths::repo().join("deploy/charts/ferrolb");
    helm(
        cluster.kubeconfig(),
        &home,
        Some(cluster.control_plane().name()),
        &[
            "install",
            "ferrolb",
            &chart.to_string_lossy(),
            "-n",
            NS,
            "--create-namespace",
        ],
    )?;
    let all_ready = wait_for("every ferrolb pod Ready", Duration::from_secs(120), || {
        let (ready, total) = ready_pods(&cluster, NS)?;
        Ok((total == 4 && ready == total).then_some(()))
    });
    if let Err(error) = all_ready {
        bail!(
            "{error:#}\n{}\n{}",
            kubectl.run(&["get", "pods", "-n", NS, "-o", "wide"], None)?,
            kubectl.run(&["get", "events", "-n", NS], None)?
        );
    }

    let bfd = speaker_vtysh(&cluster, "show bfd peers brief")?;
    assert!(bfd.contains("Session count"), "{bfd}");

    kubectl.apply(&manifests())?;
    let ip = service_ip(&cluster, "web")?;
    assert!(ip.starts_with("10.95.0.20"), "{ip}");
    let answer = wait_for(
        "a pod's answer through the IP",
        Duration::from_secs(60),
        || {
            Ok(client
                .run("curl", &["-s", "-m", "1", &format!("http://{ip}/")])
                .ok()
                .filter(|a| a.starts_with("pod=web-")))
        },
    )?;
    assert!(answer.contains(" node="), "{answer}");

    // externalTrafficPolicy Local: the IP's owner is the node of the one ready pod, and the
    // pod sees the client's own address.
    kubectl.apply(&local_service())?;
    let local_ip = service_ip(&cluster, "local")?;
    let answer = wait_for("the Local pod's answer", Duration::from_secs(60), || {
        Ok(client
            .run("curl", &["-s", "-m", "1", &format!("http://{local_ip}/")])
            .ok()
            .filter(|a| a.starts_with("pod=local-")))
    })?;
    assert!(
        answer.trim_end().ends_with("client=10.95.0.100"),
        "{answer}"
    );
    let pod_node = answer
        .split_whitespace()
        .find_map(|w| w.strip_prefix("node="))
        .unwrap_or_default()
        .to_string();
    let owner = client.run("ip", &["neigh", "show", &local_ip])?;
    // `ip netns exec` mounts the namespace's own /sys.
    let mac_of = |ns: &Netns| -> Result<String> {
        Ok(ns
            .run("cat", &["/sys/class/net/eth0/address"])?
            .trim()
            .to_string())
    };
    let node_index = cluster
        .names()
        .iter()
        .position(|n| *n == pod_node)
        .unwrap_or(usize::MAX);
    let owner_mac = cluster
        .node_namespaces()
        .get(node_index)
        .map(&mac_of)
        .transpose()?
        .unwrap_or_default();
    assert!(
        !owner_mac.is_empty() && owner.contains(&owner_mac),
        "{local_ip} is answered by {owner:?}, not by the pod's node {pod_node} ({owner_mac})"
    );

    // The webhook, reached by the API server through its Service: an overlapping pool is
    // denied, and the existing pool stays.
    let denied = kubectl.apply(&format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: overlap, namespace: {NS}}}
spec:
  addresses: [10.95.0.205-10.95.0.220]
"
    ));
    let message = format!("{denied:?}");
    assert!(
        denied.is_err() && message.contains("overlap"),
        "an overlapping pool was not denied: {message}"
    );

    // BGP: the ToR learns the Service's IP from both nodes (ECMP), BFD comes up on both
    // sides, and the client's requests through the ToR are answered.
    kubectl.apply(&bgp_manifests())?;
    let routed_ip = service_ip(&cluster, "routed")?;
    let both = wait_for(
        "ECMP to both nodes at the ToR",
        Duration::from_secs(60),
        || {
            let mut hops = lab::nexthops(&rtr, &routed_ip)?;
            hops.sort();
            Ok((hops == ["10.95.0.11", "10.95.0.12"]).then_some(()))
        },
    );
    if let Err(error) = both {
        bail!(
            "{error:#}\n{}\n{}",
            tor.vtysh("show bgp summary")?,
            kubectl.run(
                &["logs", "-n", NS, "-l", "component=speaker", "-c", "speaker"],
                None
            )?
        );
    }
    wait_for("BFD up at the ToR", Duration::from_secs(30), || {
        let peers = tor.json("show bfd peers json")?;
        let up = peers
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["status"] == "up"));
        Ok(up.then_some(()))
    })?;
    let route = tor.json(&format!("show bgp ipv4 unicast {routed_ip}/32 json"))?;
    assert!(route.to_string().contains("64512:100"), "{route}");
    let speaker_bfd = speaker_vtysh(&cluster, "show bfd peers brief")?;
    assert!(
        speaker_bfd.contains("10.95.0.1") && speaker_bfd.contains("up"),
        "{speaker_bfd}"
    );
    for _ in 0..20 {
        let answer = client.run("curl", &["-s", "-m", "2", &format!("http://{routed_ip}/")])?;
        assert!(answer.starts_with("pod=web-"), "{routed_ip}: {answer:?}");
    }

    // Settled: FRR runs what the speaker applied; no speaker keeps re-applying it.
    std::thread::sleep(Duration::from_secs(6));
    let logs = kubectl.run(
        &[
            "logs",
            "-n",
            NS,
            "-l",
            "component=speaker",
            "-c",
            "speaker",
            "--tail=-1",
        ],
        None,
    )?;
    assert!(logs.contains("FRR configuration applied"), "{logs}");
    assert!(
        !logs.contains("differs from the applied one"),
        "a speaker re-applies FRR's configuration:\n{logs}"
    );

    helm(
        cluster.kubeconfig(),
        &home,
        Some(cluster.control_plane().name()),
        &["uninstall", "ferrolb", "-n", NS, "--wait"],
    )?;
    wait_for("the ferrolb pods gone", Duration::from_secs(60), || {
        Ok((ready_pods(&cluster, NS)?.1 == 0).then_some(()))
    })?;
    wait_for(
        "the routes withdrawn at the ToR",
        Duration::from_secs(30),
        || Ok(lab::nexthops(&rtr, &routed_ip)?.is_empty().then_some(())),
    )?;
    let pools = kubectl.get(&["ipaddresspools", "-n", NS])?;
    assert_eq!(pools["items"].as_array().map(Vec::len), Some(2));
    Ok(())
}

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
//!   overlaps another, and nothing routed changes;
//! - the speaker keeps FRR's configuration as applied (no re-apply loop: its socket
//!   connections follow FRR's daemons as they come up in the frr container);
//! - a controller pod deleted under traffic: no IP changes and no failed request;
//! - bgpd, then zebra, killed in a node's frr container: watchfrr starts them again and the
//!   ToR routes through the node again; so it does after bgpd crashed again and again for
//!   25 s (the speaker's applies failing all along);
//! - node 2's switch port down under traffic to Services whose pod is on node 1: BFD takes
//!   its next hop from the ToR, and node 1 takes over node 2's layer-2 IP, within seconds;
//! - a `helm upgrade` that restarts every speaker: requests to the BGP IP keep being
//!   answered (a failure is rare), and with `enableGracefulRestart` on the BGPPeer the ToR
//!   withdraws no next hop;
//! - `kubectl drain` of a node under traffic to an `externalTrafficPolicy: Local` Service
//!   with a pod on each node: the ToR stops routing to the node while its pod terminates
//!   (requests fail only if caught mid-flight), and `kubectl uncordon` brings the next hop
//!   back once the node's kube-proxy forwards to the new pod;
//! - `helm uninstall` removes the pods, the ToR withdraws the routes, and the CRDs and the
//!   user's objects stay.
//!
//! Needs root and what `nodes.rs` needs, and the image's root file system
//! (`hack/rootfs.sh image`).

use std::time::Duration;

use anyhow::{Result, bail};
use ferrolb_e2e::chart_lab::{
    ChartLab, NS, RequestLoop, bgp_manifests, drain_under_traffic, l2_manifests, ready_pods,
    service_ip, speaker_logs_args, speaker_vtysh, spread_manifests, survivor_manifests,
};
use ferrolb_e2e::image;
use ferrolb_e2e::lab;
use ferrolb_e2e::netns::Netns;
use ferrolb_e2e::paths::Scratch;
use ferrolb_e2e::process::wait_for;
use ferrolb_e2e::sampler::NexthopSampler;

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

#[test]
fn the_chart_as_shipped_runs_on_real_nodes_and_a_client_reaches_pods_through_a_layer2_ip()
-> Result<()> {
    let scratch = Scratch::new("chart-nodes")?;
    let prefix = format!("flch{}", std::process::id());
    let lab = ChartLab::start(&prefix, scratch.path())?;
    let (cluster, client, rtr, tor) = (&lab.cluster, &lab.client, &lab.rtr, &lab.tor);
    let kubectl = cluster.kubectl();

    let bfd = speaker_vtysh(kubectl, "show bfd peers brief")?;
    assert!(bfd.contains("Session count"), "{bfd}");

    kubectl.apply(&l2_manifests())?;
    let ip = service_ip(cluster, "web")?;
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
    let local_ip = service_ip(cluster, "local")?;
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

    // BGP: the ToR learns the Service's IP from both nodes (ECMP), BFD comes up on both
    // sides, and the client's requests through the ToR are answered.
    kubectl.apply(&bgp_manifests())?;
    kubectl.apply(&spread_manifests())?;
    let routed_ip = service_ip(cluster, "routed")?;
    let both = wait_for(
        "ECMP to both nodes at the ToR",
        Duration::from_secs(60),
        || {
            let mut hops = lab::nexthops(rtr, &routed_ip)?;
            hops.sort();
            Ok((hops == ["10.95.0.11", "10.95.0.12"]).then_some(()))
        },
    );
    if let Err(error) = both {
        bail!(
            "{error:#}\n{}\n{}",
            tor.vtysh("show bgp summary")?,
            kubectl.run(&speaker_logs_args(&[]), None)?
        );
    }
    wait_for("BFD up at the ToR", Duration::from_secs(30), || {
        let peers = tor.json("show bfd peers json")?;
        let up = peers
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["status"] == "up"));
        Ok(up.then_some(()))
    })?;
    // The webhook, reached by the API server through its Service: a pool overlapping the
    // BGP pool is denied, the pools stay as they were, and nothing routed changes.
    let denied = kubectl.apply(&format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: overlap, namespace: {NS}}}
spec:
  addresses: [10.94.0.8-10.94.0.20]
"
    ));
    let message = format!("{denied:?}");
    assert!(
        denied.is_err() && message.contains("overlap"),
        "an overlapping pool was not denied: {message}"
    );
    let pools = kubectl.get(&["ipaddresspools", "-n", NS])?;
    assert_eq!(pools["items"].as_array().map(Vec::len), Some(2));
    std::thread::sleep(Duration::from_secs(2));
    let mut hops = lab::nexthops(rtr, &routed_ip)?;
    hops.sort();
    assert_eq!(hops, ["10.95.0.11", "10.95.0.12"], "after the denied pool");
    assert_eq!(service_ip(cluster, "routed")?, routed_ip);

    let route = tor.json(&format!("show bgp ipv4 unicast {routed_ip}/32 json"))?;
    assert!(route.to_string().contains("64512:100"), "{route}");
    let speaker_bfd = speaker_vtysh(kubectl, "show bfd peers brief")?;
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
    let logs = kubectl.run(&speaker_logs_args(&["--tail=-1"]), None)?;
    assert!(logs.contains("FRR configuration applied"), "{logs}");
    assert!(
        !logs.contains("differs from the applied one"),
        "a speaker re-applies FRR's configuration:\n{logs}"
    );

    // A controller pod deleted under traffic: no IP changes, no failed request.
    let requests = RequestLoop::start(client, &ip, Duration::from_millis(20))?;
    let controller = kubectl.run(
        &[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "component=controller",
            "-o",
            "name",
        ],
        None,
    )?;
    let controller = controller.lines().next().unwrap_or_default().to_string();
    kubectl.run(&["delete", "-n", NS, &controller, "--wait=false"], None)?;
    std::thread::sleep(Duration::from_secs(5));
    let results = requests.finish();
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", results.len());
    assert_eq!(service_ip(cluster, "web")?, ip);
    assert_eq!(service_ip(cluster, "routed")?, routed_ip);

    // bgpd, then zebra, crash in node 1's frr container: watchfrr starts them again (the
    // container's init reaps the dead one; when zebra dies, watchfrr stops and starts
    // every daemon) and the ToR routes through node 1 again.
    for daemon in ["bgpd", "zebra"] {
        let killed = lab.kill_on_node(0, daemon)?;
        assert!(!killed.is_empty(), "no {daemon} ran on node 1");
        // The one started in its place, not the dying one.
        wait_for(
            &format!("{daemon} running again on node 1"),
            Duration::from_secs(60),
            || Ok(lab.restarted_on_node(0, daemon, &killed)?.then_some(())),
        )?;
        lab.wait_settled(
            &format!("node 1 announcing again after {daemon} crashed"),
            &routed_ip,
            &[&ip],
        )?;
    }
    // bgpd crashing again and again on node 2 for 25 s: watchfrr's restart back-off grows
    // to 15 s, and every apply the speaker tries meanwhile fails, so its own back-off
    // grows past its poll period. Once bgpd stays up the speaker applies its configuration
    // again (the neighbour's BFD included) within a poll, and node 2 announces again.
    let until = std::time::Instant::now() + Duration::from_secs(25);
    let mut kills = 0;
    while std::time::Instant::now() < until {
        if !lab.kill_on_node(1, "bgpd")?.is_empty() {
            kills += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for(
        "bgpd running again on node 2",
        Duration::from_secs(30),
        || Ok(lab.runs_on_node(1, "bgpd")?.then_some(())),
    )?;
    lab.wait_settled(
        &format!("node 2 announcing again after bgpd crashed {kills} times in 25 s"),
        &routed_ip,
        &[&ip],
    )?;

    // Node 2's switch port fails under traffic to Services whose one pod is on node 1:
    // through the ToR, BFD (100 ms × 3; the ToR's BGP hold time is 180 s) takes node 2's
    // next hop away; on layer 2, node 1 takes over the IP node 2 answered for. How long
    // requests fail is the figure `traffic_bfd_window_ms` / `traffic_l2_window_ms` of
    // `benches/traffic.rs`; here, a failover that does not happen within seconds (BGP's
    // hold time, a layer-2 IP left on a dead node) is a failure.
    kubectl.apply(&survivor_manifests(cluster)?)?;
    let survivor_bgp = service_ip(cluster, "survivor-bgp")?;
    let survivor_l2 = service_ip(cluster, "survivor-l2")?;
    lab.wait_settled(
        "Services on node 1 answered",
        &survivor_bgp,
        &[&survivor_l2],
    )?;
    let window = lab.port_failure_window(&survivor_bgp, 1, Duration::from_secs(10))?;
    println!(
        "BFD hard failure: requests failed for {} ms",
        window.as_millis()
    );
    assert!(
        window < Duration::from_secs(3),
        "requests through the ToR failed for {window:?} after node 2's port went down"
    );
    lab.wait_settled("node 2 back", &survivor_bgp, &[&survivor_l2])?;
    // Node 1 answered for node 2's layer-2 IP while node 2 was away; node 2 takes it back.
    wait_for(
        "node 2 answering for the IP the election gives it",
        Duration::from_secs(10),
        || Ok((lab.l2_owner(&survivor_l2)? == 1).then_some(())),
    )?;
    let window = lab.port_failure_window(&survivor_l2, 1, Duration::from_secs(10))?;
    println!(
        "layer-2 owner failure: requests failed for {} ms",
        window.as_millis()
    );
    assert!(
        window < Duration::from_secs(4),
        "requests to the layer-2 IP failed for {window:?} after its owner's port went down"
    );
    lab.wait_settled("node 2 back", &survivor_bgp, &[&survivor_l2])?;
    wait_for(
        "node 2 answering for its IP again",
        Duration::from_secs(10),
        || Ok((lab.l2_owner(&survivor_l2)? == 1).then_some(())),
    )?;

    // `helm upgrade` that restarts every speaker, one node at a time: no failed request to
    // the BGP IP, and the ToR keeps both next hops throughout (the BGPPeer enables graceful
    // restart: the ToR keeps a restarting node's routes until its new FRR has sent them
    // again, while a node's port going down still withdraws them at once, through BFD:
    // `benches/traffic.rs`).
    let bgp_requests = RequestLoop::start(client, &routed_ip, Duration::from_millis(20))?;
    let sampler = NexthopSampler::start(rtr, &routed_ip);
    lab.upgrade_speakers("debug")?;
    std::thread::sleep(Duration::from_secs(5));
    let fewest = sampler.finish().fewest;
    let results = bgp_requests.finish();
    // How many fail is the figure `traffic_upgrade_failed_requests` (goal 0; 0 in most runs,
    // a few in some, cause not yet known); here, more than one in a hundred is a failure.
    let failed = results.iter().filter(|(_, ok)| !ok).count();
    println!("upgrade: {failed} of {} requests failed", results.len());
    assert!(
        failed * 100 < results.len(),
        "{failed} of {} requests failed across the upgrade",
        results.len()
    );
    assert_eq!(
        fewest, 2,
        "the ToR withdrew a next hop during the upgrade (fewest {fewest} of 2)"
    );

    // `kubectl drain` of node 2 under traffic to a Local Service with a pod on each node:
    // the ToR stops routing it to node 2 while node 2's pod still answers, and no request
    // fails; `kubectl uncordon` brings the pod and the next hop back.
    let spread_ip = service_ip(cluster, "spread")?;
    // (How many fail is the figure `traffic_drain_failed_requests` of `benches/traffic.rs`;
    // here, a few connections caught mid-flight as the next hop leaves are tolerated, a
    // node withdrawn only after its pods are gone is not.)
    let drained = drain_under_traffic(&lab, &spread_ip, 1)?;
    println!(
        "drain: {} of {} requests failed; after uncordon: {} of {}",
        drained.failed, drained.requests, drained.rejoin_failed, drained.rejoin_requests
    );
    assert!(
        drained.failed * 100 < drained.requests,
        "{} of {} requests failed across the drain",
        drained.failed,
        drained.requests
    );
    // After the uncordon, node 2 announces the Service again only once its kube-proxy
    // reports forwarding to the new pod (on the Service's health check node port), so the
    // requests the ToR sends there are answered.
    assert!(
        drained.rejoin_failed * 50 < drained.rejoin_requests,
        "{} of {} requests failed after the uncordon",
        drained.rejoin_failed,
        drained.rejoin_requests
    );
    let logs = kubectl.run(&speaker_logs_args(&["--tail=-1"]), None)?;
    assert!(
        logs.contains("kube-proxy forwards to this node's new endpoints"),
        "no speaker waited for kube-proxy after the uncordon:\n{logs}"
    );

    let log_file = scratch.path().join("speakers-stopping.log");
    let mut logs = kubectl.follow(
        &speaker_logs_args(&["-f", "--prefix", "--tail=1"]),
        &log_file,
    )?;
    std::thread::sleep(Duration::from_secs(1));
    lab.helm(&["uninstall", "ferrolb", "-n", NS, "--wait"])?;
    wait_for("the ferrolb pods gone", Duration::from_secs(60), || {
        Ok((ready_pods(cluster.kubectl(), NS)?.1 == 0).then_some(()))
    })?;
    // The speakers go for good: they end their sessions with a Cease, so the ToR does not
    // keep their routes as a graceful restart's stale ones.
    let withdrawn = wait_for(
        "the routes withdrawn at the ToR",
        Duration::from_secs(30),
        || Ok(lab::nexthops(rtr, &routed_ip)?.is_empty().then_some(())),
    );
    let _ = logs.kill();
    let _ = logs.wait();
    if let Err(error) = withdrawn {
        bail!(
            "{error:#}\n{}\nthe speakers as they stopped:\n{}",
            tor.vtysh(&format!("show bgp ipv4 unicast {routed_ip}/32"))?,
            std::fs::read_to_string(&log_file).unwrap_or_default()
        );
    }
    let pools = kubectl.get(&["ipaddresspools", "-n", NS])?;
    assert_eq!(pools["items"].as_array().map(Vec::len), Some(2));
    Ok(())
}

//! MetalLB beside ferrolb on the same real nodes, ToR and client, and the switch from one to
//! the other as the README's "Replacing MetalLB" tells a user:
//!
//! - MetalLB's controller and speaker, built from the Go module pinned in
//!   `hack/tools/metallb` and installed with MetalLB's own Helm chart (its default FRR mode,
//!   FRR from an image made offline, and layer 2), give a BGP Service and a layer-2 Service
//!   their IPs, the BGP one through a BGPPeer with BFD and graceful restart; the ToR routes the
//!   BGP IP to both nodes, MetalLB's FRR holds it, and the client's requests to both IPs are
//!   answered;
//! - under request loops to both IPs, the switch node by node ([`metallb::hand_over`]):
//!   MetalLB's CRDs kept out of its Helm release and its speaker DaemonSet deleted with the
//!   pods left running, ferrolb's CRD definitions in place of MetalLB's, ferrolb's chart
//!   installed (its speakers wait while MetalLB's hold the node's ports), MetalLB's speaker
//!   deleted node by node, MetalLB uninstalled: no Service's IP changes, every object MetalLB
//!   served is still there, the ToR routes the BGP IP through both nodes throughout (graceful
//!   restart keeps a node's routes from MetalLB's session until ferrolb's has sent them
//!   again), ferrolb alone announces both IPs at the end, and the failed requests are printed
//!   (the figures of `hack/bench.sh versus`);
//! - the same from MetalLB's FRR-K8s mode (the default from MetalLB 0.16), where frr-k8s's
//!   DaemonSet runs the FRR that holds each node's session: its pods are orphaned and deleted
//!   node by node with the speakers; then back from ferrolb to MetalLB in that mode, node by
//!   node ([`metallb::hand_back`]: ferrolb's speaker leaving a node, MetalLB's put there,
//!   its chart taking its CRDs back): no IP changed, the ToR routing the BGP IP through one
//!   node at least throughout, every object still there, MetalLB's FRR sending the route
//!   again, no node left tainted; the failed requests are printed;
//! - MetalLB v0.12.1, configured by its legacy ConfigMap, announcing the same two Services,
//!   and the switch from it through `ferrolb convert` ([`metallb_legacy::hand_over`]): the
//!   same promises (but its native BGP has no graceful restart: the ToR routes through one
//!   node at least), and no object of MetalLB's left but those ferrolb took over.
//!
//! Needs root and what `chart_on_nodes.rs` needs, and the go command (`hack/metallb.sh`).

use std::time::Duration;

use anyhow::Result;
use ferrolb_e2e::chart_lab::{NS, bgp_manifests, l2_manifests, service_ip, speaker_vtysh};
use ferrolb_e2e::kubectl::Kubectl;
use ferrolb_e2e::metallb;
use ferrolb_e2e::metallb_legacy;
use ferrolb_e2e::paths::Scratch;
use ferrolb_e2e::process::wait_for;

/// The tests' labs run one at a time: each is a control plane, two nodes and their FRRs, and
/// three at once on two cores would measure their contention more than the switch.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`ONE_LAB`], taken even if a test that held it failed.
fn one_lab() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn metallb_announces_and_the_switch_to_ferrolb_keeps_every_ip() -> Result<()> {
    switch_from(metallb::Mode::Frr, "flmb")
}

#[test]
fn metallb_in_frr_k8s_mode_switches_to_ferrolb_keeping_every_ip() -> Result<()> {
    switch_from(metallb::Mode::FrrK8s, "flmk")
}

/// MetalLB in `mode` (FRR or FRR-K8s: its speaker's FRR, or frr-k8s's, sends the route)
/// announcing a BGP Service and a layer-2 Service, then the switch node by node.
fn switch_from(mode: metallb::Mode, prefix: &str) -> Result<()> {
    let _lab = one_lab();
    let scratch = Scratch::new(&format!("metallb-switch-{}", mode.name()))?;
    let built = metallb::built()?;
    let version = metallb::version(&built)?;
    let prefix = format!("{prefix}{}", std::process::id());
    let lab = metallb::lab(&prefix, scratch.path(), &built)?;
    let cluster = &lab.cluster;
    let kubectl = cluster.kubectl();

    metallb::install(&lab, &built, mode)?;
    let manifests = format!("{}---\n{}", l2_manifests(), bgp_manifests());
    metallb::apply_when_admitted(kubectl, &manifests)?;
    let routed = service_ip(cluster, "routed")?;
    let web = service_ip(cluster, "web")?;
    wait_for(
        &format!("MetalLB {version} announcing {routed} over BGP and {web} over layer 2"),
        Duration::from_secs(120),
        || Ok(lab.announced(&routed, &[&web])?.then_some(())),
    )?;
    // MetalLB's FRR (or frr-k8s's), not its native speaker, sends the route.
    assert_metallb_frr_sends(kubectl, mode, &routed)?;
    println!("MetalLB {version} ({mode:?} mode, layer 2) announces {routed} and {web}");
    let objects_before = objects(kubectl)?;
    assert_eq!(objects_before.len(), 5, "{objects_before:?}");

    let switched =
        metallb::switch_to_ferrolb(&lab, &built, metallb::Switch::NodeByNode, &routed, &web)?;
    report(
        &format!("switch MetalLB {version} ({mode:?} mode) → ferrolb"),
        &switched,
        &routed,
        cluster.addresses().len(),
        Hops::All,
    );
    assert_eq!(objects(kubectl)?, objects_before);
    // ferrolb's speakers, not a leftover, announce it: their FRR sends it to the ToR.
    let sent = speaker_vtysh(kubectl, "show bgp ipv4 unicast")?;
    assert!(sent.contains(&format!("{routed}/32")), "{sent}");
    // Nothing of MetalLB's (or frr-k8s's) is left running.
    let pods = kubectl.run(&["get", "pods", "-n", NS, "-o", "name"], None)?;
    assert!(
        pods.lines()
            .all(|p| p.starts_with("pod/speaker-") || p.starts_with("pod/controller-")),
        "{pods}"
    );
    if mode != metallb::Mode::FrrK8s {
        return Ok(());
    }

    // And back, as the README's "Going back to MetalLB" tells: every IP and object kept,
    // MetalLB's FRR sending the route again.
    let back = metallb::roll_back(
        &lab,
        &built,
        mode,
        metallb::Back::NodeByNode,
        || Ok(()),
        &routed,
        &web,
    )?;
    report(
        &format!("roll-back ferrolb → MetalLB {version} ({mode:?} mode)"),
        &back,
        &routed,
        cluster.addresses().len(),
        Hops::One,
    );
    // No node was left to a taint of the hand-back.
    let taints = kubectl.run(
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].spec.taints[*].key}",
        ],
        None,
    )?;
    assert!(!taints.contains(metallb::HANDING_BACK), "{taints}");
    assert_eq!(objects(kubectl)?, objects_before);
    assert_metallb_frr_sends(kubectl, mode, &routed)?;
    Ok(())
}

/// Checks that MetalLB's FRR in `mode` (its speaker pod's, or frr-k8s's in FRR-K8s mode) has
/// `routed` in its BGP table.
fn assert_metallb_frr_sends(kubectl: &Kubectl, mode: metallb::Mode, routed: &str) -> Result<()> {
    let pods = match mode {
        metallb::Mode::FrrK8s => "ds/metallb-frr-k8s",
        _ => "ds/metallb-speaker",
    };
    let theirs = kubectl.run(
        &[
            "exec",
            "-n",
            NS,
            pods,
            "-c",
            "frr",
            "--",
            "vtysh",
            "-c",
            "show bgp ipv4 unicast",
        ],
        None,
    )?;
    assert!(theirs.contains(&format!("{routed}/32")), "{theirs}");
    Ok(())
}

#[test]
fn legacy_metallb_switches_to_ferrolb_through_convert_keeping_every_ip() -> Result<()> {
    let _lab = one_lab();
    let scratch = Scratch::new("metallb-legacy-switch")?;
    let built = metallb_legacy::built()?;
    let version = metallb_legacy::version(&built)?;
    let prefix = format!("flml{}", std::process::id());
    let lab = metallb_legacy::lab(&prefix, scratch.path(), &built)?;
    let cluster = &lab.cluster;
    let kubectl = cluster.kubectl();

    metallb_legacy::install(&lab, &built)?;
    let routed = service_ip(cluster, "routed")?;
    let web = service_ip(cluster, "web")?;
    wait_for(
        &format!("MetalLB {version} announcing {routed} over BGP and {web} over layer 2"),
        Duration::from_secs(120),
        || Ok(lab.announced(&routed, &[&web])?.then_some(())),
    )?;
    println!("MetalLB {version} (ConfigMap) announces {routed} and {web}");

    let switched =
        metallb::switch_to_ferrolb(&lab, &built, metallb::Switch::FromConfigMap, &routed, &web)?;
    report(
        &format!("switch MetalLB {version} (ConfigMap) → ferrolb"),
        &switched,
        &routed,
        cluster.addresses().len(),
        Hops::One,
    );
    // The converted objects, and ferrolb's FRR sending the route.
    let objects = objects(kubectl)?;
    assert_eq!(objects.len(), 5, "{objects:?}");
    let sent = speaker_vtysh(kubectl, "show bgp ipv4 unicast")?;
    assert!(sent.contains(&format!("{routed}/32")), "{sent}");
    // Nothing of MetalLB's is left but what ferrolb took over: no pod of its, none of its
    // cluster roles, the speaker's and config watcher's roles, its ConfigMap or secret.
    let mut left = kubectl.run(
        &["get", "pods", "-n", NS, "-l", "app=metallb", "-o", "name"],
        None,
    )?;
    for (kinds, names) in [
        (
            "clusterroles,clusterrolebindings",
            "metallb-system:controller metallb-system:speaker",
        ),
        ("roles,rolebindings", "config-watcher pod-lister"),
        ("configmaps", "config"),
        ("secrets", "memberlist"),
    ] {
        let mut args = vec!["get", kinds, "-n", NS, "--ignore-not-found", "-o", "name"];
        args.extend(names.split(' '));
        left += &kubectl.run(&args, None)?;
    }
    assert_eq!(left.trim(), "", "MetalLB's objects left: {left}");
    Ok(())
}

/// The metallb.io objects in `metallb-system` (pools, advertisements, peers), sorted.
fn objects(kubectl: &ferrolb_e2e::kubectl::Kubectl) -> Result<Vec<String>> {
    let list = kubectl.run(
        &[
            "get",
            "ipaddresspools,l2advertisements,bgpadvertisements,bgppeers",
            "-n",
            NS,
            "-o",
            "name",
        ],
        None,
    )?;
    let mut names: Vec<String> = list.lines().map(str::to_string).collect();
    names.sort();
    Ok(names)
}

/// The next hops the ToR keeps for the BGP IP throughout a switch.
enum Hops {
    /// Every node's: MetalLB's sessions have graceful restart.
    All,
    /// One at least: each node's are withdrawn while it is handed over.
    One,
}

/// Prints what the switch `what` did, and checks what it promises: no Service's IP changed,
/// and the ToR kept the next hops `hops` for the BGP IP `routed` throughout.
fn report(what: &str, switched: &metallb::Switched, routed: &str, nodes: usize, hops: Hops) {
    println!(
        "{what}: {} IPs changed; BGP IP: {} of {} requests failed, fewest next hops {} of \
         {nodes} ({} ms with fewer); layer-2 IP: {} of {} failed; {} ms from the first step \
         and {} ms from `helm install` to all announced",
        switched.ip_changes.len(),
        switched.bgp_requests.1,
        switched.bgp_requests.0,
        switched.hops.fewest,
        switched.hops.reduced.as_millis(),
        switched.l2_requests.1,
        switched.l2_requests.0,
        switched.total.as_millis(),
        switched.install_to_announced.as_millis(),
    );
    assert!(
        switched.ip_changes.is_empty(),
        "Services' IPs changed: {:?}",
        switched.ip_changes
    );
    match hops {
        Hops::All => assert_eq!(
            switched.hops.fewest, nodes,
            "the ToR withdrew a next hop for {routed} during the switch"
        ),
        Hops::One => assert!(
            switched.hops.fewest >= 1,
            "the ToR lost every next hop for {routed} during the switch"
        ),
    }
}

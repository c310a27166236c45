//! What `ferrolb render frr` produces, on the wire: two nodes load their rendered frr.conf
//! into real FRR instances, and a ToR router running FRR must see the Service IP over ECMP,
//! BFD sessions up, the advertisement's community, and lose a node within BFD's detection
//! time when its switch port fails. Needs root (network namespaces) and Debian's `frr`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_e2e::frr::Frr;
use ferrolb_e2e::lab::{ROUTER_CONFIG, nexthops};
use ferrolb_e2e::netns::{Netns, Switch};
use ferrolb_e2e::paths::{self, Scratch};
use ferrolb_e2e::process::wait_for;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
status: {addresses: [{type: InternalIP, address: 10.99.0.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {kubernetes.io/hostname: n2}}
status: {addresses: [{type: InternalIP, address: 10.99.0.12}]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: bgp, namespace: metallb-system}
spec: {addresses: [10.98.0.0/28]}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
spec: {receiveInterval: 100, transmitInterval: 100}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64513, peerAddress: 10.99.0.1, bfdProfile: fast, holdTime: 9s, keepaliveTime: 3s}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: tagged, namespace: metallb-system}
spec: {ipAddressPools: [bgp], communities: ["64512:100"]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {type: LoadBalancer, externalTrafficPolicy: Cluster, ports: [{port: 80, protocol: TCP}]}
status: {loadBalancer: {ingress: [{ip: 10.98.0.10}]}}
"#;

fn render(node: &str, manifests: &std::path::Path) -> Result<String> {
    let out = std::process::Command::new(paths::ferrolb()?)
        .args(["render", "frr", "--node", node, "-f"])
        .arg(manifests)
        .output()
        .context("running ferrolb render")?;
    if !out.status.success() {
        bail!("render: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn rendered_configs_give_the_router_ecmp_bfd_and_communities() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("this scenario needs root: it builds network namespaces");
    }
    let scratch = Scratch::new("wire")?;
    let prefix = format!("flw{}", std::process::id());
    let name = |n: &str| format!("{prefix}-{n}");
    let switch = Switch::create(&name("sw"))?;
    let router = Netns::create(&name("rtr"))?;
    let n1 = Netns::create(&name("n1"))?;
    let n2 = Netns::create(&name("n2"))?;
    switch.attach(&router, "rtr", &["10.99.0.1/24"])?;
    switch.attach(&n1, "n1", &["10.99.0.11/24"])?;
    switch.attach(&n2, "n2", &["10.99.0.12/24"])?;
    router.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
    for node in [&n1, &n2] {
        node.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
    }

    let manifests = scratch.path().join("lab.yaml");
    std::fs::write(&manifests, MANIFESTS)?;
    let router_frr = Frr::start(&router, &scratch.path().join("rtr"))?;
    router_frr.load(ROUTER_CONFIG)?;
    let n1_frr = Frr::start(&n1, &scratch.path().join("n1"))?;
    let n2_frr = Frr::start(&n2, &scratch.path().join("n2"))?;
    let started = Instant::now();
    n1_frr.load(&render("n1", &manifests)?)?;
    n2_frr.load(&render("n2", &manifests)?)?;

    // ECMP: both nodes are next hops for the Service IP in the router's kernel.
    let hops = wait_for(
        "two next hops for 10.98.0.10",
        Duration::from_secs(30),
        || {
            let hops = nexthops(&router, "10.98.0.10")?;
            Ok((hops.len() == 2).then_some(hops))
        },
    )?;
    println!(
        "FIGURE wire_first_ecmp_ms {}",
        started.elapsed().as_millis()
    );
    assert!(hops.contains(&"10.99.0.11".to_string()) && hops.contains(&"10.99.0.12".to_string()));

    // BFD up to both nodes.
    wait_for("BFD up to both nodes", Duration::from_secs(15), || {
        let peers = router_frr.json("show bfd peers json")?;
        let up = peers
            .as_array()
            .map(|p| p.iter().filter(|p| p["status"] == "up").count())
            .unwrap_or(0);
        Ok((up == 2).then_some(()))
    })?;

    // The advertisement's community arrives with the route.
    let route = router_frr.json("show bgp ipv4 unicast 10.98.0.10/32 json")?;
    let communities: Vec<&str> = route["paths"]
        .as_array()
        .map(|paths| {
            paths
                .iter()
                .filter_map(|p| p["community"]["string"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(communities, ["64512:100", "64512:100"], "{route}");

    // Hard failure of n1 (its switch port): BFD drops it from the route.
    let failed = Instant::now();
    switch.set_port("n1", false)?;
    wait_for("n1 gone from the route", Duration::from_secs(15), || {
        Ok((nexthops(&router, "10.98.0.10")? == ["10.99.0.12"]).then_some(()))
    })?;
    let failover = failed.elapsed();
    println!("FIGURE wire_bfd_failover_ms {}", failover.as_millis());
    // BFD 100 ms × 3; the hold timer alone would take 9 s.
    assert!(failover < Duration::from_secs(3), "{failover:?}");

    // And it comes back when the port does.
    switch.set_port("n1", true)?;
    wait_for("n1 back in the route", Duration::from_secs(30), || {
        Ok((nexthops(&router, "10.98.0.10")?.len() == 2).then_some(()))
    })?;
    drop((n1_frr, n2_frr, router_frr));
    Ok(())
}

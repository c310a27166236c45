//! What `ferrolb render frr` produces, on the wire: two nodes load their rendered frr.conf
//! into real FRR instances, and a ToR router running FRR must see the Service IP over ECMP,
//! BFD sessions up, the advertisement's community, and lose a node within BFD's detection
//! time when its switch port fails. Needs root (network namespaces) and Debian's `frr`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrolb_e2e::fabric::Fabric;
use ferrolb_e2e::process::wait_for;

const MANIFESTS: &str = include_str!("fabric.yaml");

#[test]
fn rendered_configs_give_the_router_ecmp_bfd_and_communities() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("this scenario needs root: it builds network namespaces");
    }
    let started = Instant::now();
    let fabric = Fabric::start("wire", MANIFESTS)?;

    // ECMP: both nodes are next hops for the Service IP in the router's kernel.
    fabric.wait_nexthops("10.98.0.10", 2, Duration::from_secs(30))?;
    println!(
        "FIGURE wire_first_ecmp_ms {}",
        started.elapsed().as_millis()
    );
    let mut hops = fabric.nexthops("10.98.0.10")?;
    hops.sort();
    assert_eq!(hops, ["10.99.0.11", "10.99.0.12"]);

    // BFD up to both nodes.
    wait_for("BFD up to both nodes", Duration::from_secs(15), || {
        let peers = fabric.router_frr.json("show bfd peers json")?;
        let up = peers
            .as_array()
            .map(|p| p.iter().filter(|p| p["status"] == "up").count())
            .unwrap_or(0);
        Ok((up == 2).then_some(()))
    })?;

    // The advertisement's community arrives with the route.
    let route = fabric
        .router_frr
        .json("show bgp ipv4 unicast 10.98.0.10/32 json")?;
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
    fabric.switch.set_port("n1", false)?;
    wait_for("n1 gone from the route", Duration::from_secs(15), || {
        Ok((fabric.nexthops("10.98.0.10")? == ["10.99.0.12"]).then_some(()))
    })?;
    let failover = failed.elapsed();
    println!("FIGURE wire_bfd_failover_ms {}", failover.as_millis());
    // BFD 100 ms × 3; the hold timer alone would take 9 s.
    assert!(failover < Duration::from_secs(3), "{failover:?}");

    // And it comes back when the port does.
    fabric.switch.set_port("n1", true)?;
    fabric.wait_nexthops("10.98.0.10", 2, Duration::from_secs(30))?;
    Ok(())
}

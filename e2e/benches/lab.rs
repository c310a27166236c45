//! Benchmarks on the wire (root; network namespaces and Debian's FRR). Prints
//! `BENCH <name> <value> <unit>` lines; names and goals are in the README.
//!
//! - `bfd_failover`: a node's switch port goes down → its next hop is gone from the router's
//!   kernel route; BFD 100 ms × 3; median of 7 runs (the port comes back and ECMP is
//!   restored between runs).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ferrolb_e2e::fabric::Fabric;
use ferrolb_e2e::process::wait_for;
use ferrolb_e2e::sampler::median;

const MANIFESTS: &str = include_str!("../tests/fabric.yaml");
const PREFIX: &str = "10.98.0.10";
const RUNS: usize = 7;

fn bfd_failover() -> Result<()> {
    let fabric = Fabric::start("bench", MANIFESTS)?;
    fabric.wait_nexthops(PREFIX, 2, Duration::from_secs(30))?;
    let mut runs = Vec::new();
    for run in 0..RUNS {
        // Alternate the failed node.
        let node = &fabric.nodes[run % fabric.nodes.len()];
        let survivor = fabric
            .nodes
            .iter()
            .find(|n| n.name != node.name)
            .map(|n| n.address.to_string());
        // Both BFD sessions must be up before the port goes.
        wait_for("BFD up", Duration::from_secs(30), || {
            let peers = fabric.router_frr.json("show bfd peers json")?;
            let up = peers
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["status"] == "up").count());
            Ok((up == fabric.nodes.len()).then_some(()))
        })?;
        let started = Instant::now();
        fabric.switch.set_port(node.name, false)?;
        loop {
            let hops = fabric.nexthops(PREFIX)?;
            if hops.len() == 1 && hops.first() == survivor.as_ref() {
                break;
            }
            if started.elapsed() > Duration::from_secs(15) {
                bail!("{} never left the route: {hops:?}", node.name);
            }
        }
        runs.push(started.elapsed().as_secs_f64() * 1e3);
        fabric.switch.set_port(node.name, true)?;
        fabric.wait_nexthops(PREFIX, 2, Duration::from_secs(60))?;
    }
    let text: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
    eprintln!("bfd_failover runs (ms): {}", text.join(" "));
    println!("BENCH bfd_failover {:.0} ms", median(&runs));
    Ok(())
}

fn main() -> Result<()> {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    if !runs("bfd_failover") {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("bfd_failover skipped: needs root (network namespaces)");
        return Ok(());
    }
    bfd_failover()
}

//! A BGP fabric for scenarios and benchmarks: a switch, an FRR ToR router
//! ([`lab::ROUTER_CONFIG`]: AS 64513, ECMP, BFD 100 ms) and the lab's nodes running FRR, each
//! loaded with what `ferrolb render frr --node N` makes of the given manifests. Namespaces
//! are named after the fabric, so several can exist at once; everything goes on drop.

use std::time::Duration;

use anyhow::Result;

use crate::frr::{Build, Frr};
use crate::lab::{self, NODES, ROUTER_CONFIG};
use crate::netns::{Netns, Switch};
use crate::paths::Scratch;
use crate::process::wait_for;

/// One node of the fabric.
#[derive(Debug)]
pub struct FabricNode {
    /// The node's name (`n1`, …) and its switch port's name.
    pub name: &'static str,
    /// Its address on the lab network.
    pub address: &'static str,
    /// Its FRR instance.
    pub frr: Frr,
    /// Its namespace.
    pub netns: Netns,
}

/// Router and nodes on a switch. Field order is drop order: FRR stops before namespaces go.
#[derive(Debug)]
pub struct Fabric {
    /// The router's FRR instance.
    pub router_frr: Frr,
    /// The nodes.
    pub nodes: Vec<FabricNode>,
    /// The router's namespace.
    pub router: Netns,
    /// The switch.
    pub switch: Switch,
    _scratch: Scratch,
}

impl Fabric {
    /// Builds the fabric `name` and loads each node with its rendering of `manifests`.
    pub fn start(name: &str, manifests: &str) -> Result<Fabric> {
        let scratch = Scratch::new(name)?;
        let prefix = format!("fl{name}{}", std::process::id());
        let switch = Switch::create(&format!("{prefix}-sw"))?;
        let node_build = Build::frr10()?;
        let router = Netns::create(&format!("{prefix}-rtr"))?;
        switch.attach(&router, "rtr", &["10.99.0.1/24"])?;
        router.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
        let router_frr = Frr::start(&router, &scratch.path().join("rtr"), &Build::Host)?;
        router_frr.load(ROUTER_CONFIG)?;
        let input = scratch.path().join("manifests.yaml");
        std::fs::write(&input, manifests)?;
        let mut nodes = Vec::new();
        for (node, address) in NODES {
            let netns = Netns::create(&format!("{prefix}-{node}"))?;
            switch.attach(&netns, node, &[&format!("{address}/24")])?;
            netns.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
            let frr = Frr::start(&netns, &scratch.path().join(node), &node_build)?;
            nodes.push(FabricNode {
                name: node,
                address,
                frr,
                netns,
            });
        }
        for node in &nodes {
            node.frr.load(&lab::render_frr(
                node.name,
                &input,
                node.frr.build().dialect(),
            )?)?;
        }
        Ok(Fabric {
            router_frr,
            nodes,
            router,
            switch,
            _scratch: scratch,
        })
    }

    /// The router's next hops for `prefix`.
    pub fn nexthops(&self, prefix: &str) -> Result<Vec<String>> {
        lab::nexthops(&self.router, prefix)
    }

    /// Waits until `prefix` has exactly `count` next hops at the router.
    pub fn wait_nexthops(&self, prefix: &str, count: usize, timeout: Duration) -> Result<()> {
        wait_for(&format!("{count} next hops for {prefix}"), timeout, || {
            Ok((self.nexthops(prefix)?.len() == count).then_some(()))
        })
    }
}

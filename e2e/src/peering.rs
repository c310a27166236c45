//! One node's FRR instance peering with two FRR routers on a switch: the place where
//! ferrolb's applier is tested and measured against real daemons.
//!
//! Router `tor1` is 10.98.0.1 and `tor2` 10.98.0.2, both AS 64513, both configured for the
//! node 10.98.0.11 (AS 64512) with a 1 s connect timer and BFD (FRR 10 opens no session
//! that has BFD configured while BFD is down); the node's FRR starts empty, for ferrolb to
//! configure. Namespaces are named after the peering; everything goes on drop.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::frr::{Build, Frr};
use crate::netns::{Netns, Switch};
use crate::paths::Scratch;
use crate::process::wait_for;

/// The node's address.
pub const NODE_ADDRESS: &str = "10.98.0.11";
/// The routers: name and address.
pub const ROUTERS: [(&str, &str); 2] = [("tor1", "10.98.0.1"), ("tor2", "10.98.0.2")];

fn router_config(address: &str) -> String {
    format!(
        "frr defaults traditional
log stdout informational
!
router bgp 64513
 bgp router-id {address}
 no bgp ebgp-requires-policy
 neighbor {NODE_ADDRESS} remote-as 64512
 neighbor {NODE_ADDRESS} bfd
 neighbor {NODE_ADDRESS} timers connect 1
 !
 address-family ipv6 unicast
  neighbor {NODE_ADDRESS} activate
 exit-address-family
exit
"
    )
}

/// A node facing two routers. Field order is drop order: FRR stops before namespaces go.
#[derive(Debug)]
pub struct Peering {
    /// The node's FRR, empty at start.
    pub node_frr: Frr,
    /// The routers' FRR, in [`ROUTERS`] order.
    pub router_frr: Vec<Frr>,
    /// The node's namespace.
    pub node: Netns,
    /// The routers' namespaces.
    pub routers: Vec<Netns>,
    /// The switch.
    pub switch: Switch,
    _scratch: Scratch,
}

impl Peering {
    /// Builds the peering `name`: the node runs FRR `node_build`, the routers this
    /// machine's FRR 8.4.
    pub fn start(name: &str, node_build: &Build) -> Result<Peering> {
        let scratch = Scratch::new(name)?;
        let prefix = format!("fl{name}{}", std::process::id());
        let switch = Switch::create(&format!("{prefix}-sw"))?;
        let mut routers = Vec::new();
        let mut router_frr = Vec::new();
        for (router, address) in ROUTERS {
            let netns = Netns::create(&format!("{prefix}-{router}"))?;
            switch.attach(&netns, router, &[&format!("{address}/24")])?;
            let frr = Frr::start(&netns, &scratch.path().join(router), &Build::Host)?;
            frr.load(&router_config(address))?;
            routers.push(netns);
            router_frr.push(frr);
        }
        let node = Netns::create(&format!("{prefix}-node"))?;
        switch.attach(&node, "node", &[&format!("{NODE_ADDRESS}/24")])?;
        node.sysctl(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])?;
        let node_frr = Frr::start(&node, &scratch.path().join("node"), node_build)?;
        Ok(Peering {
            node_frr,
            router_frr,
            node,
            routers,
            switch,
            _scratch: scratch,
        })
    }

    /// The node's view of its BGP neighbours (`show bgp neighbors json`).
    pub fn neighbors(&self) -> Result<Value> {
        self.node_frr.json("show bgp neighbors json")
    }

    /// Waits until the node's session to `address` is Established.
    pub fn wait_established(&self, address: &str, timeout: Duration) -> Result<()> {
        wait_for(&format!("BGP session to {address}"), timeout, || {
            let state = self.neighbors()?;
            Ok((state[address]["bgpState"] == "Established").then_some(()))
        })
    }

    /// How many prefixes router `index` has received from the node in the IPv4 unicast
    /// table.
    pub fn received(&self, index: usize) -> Result<u64> {
        let summary = self.router_frr[index].json("show bgp ipv4 unicast summary json")?;
        summary["peers"][NODE_ADDRESS]["pfxRcd"]
            .as_u64()
            .context("no pfxRcd for the node")
    }
}

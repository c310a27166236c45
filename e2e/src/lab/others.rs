//! The lab's routers that are not FRR, peering with every node over eBGP: BIRD 2 ("bird",
//! Debian's `bird2`) with BFD and a TCP-MD5 password, its routes in its namespace's kernel
//! with ECMP, and GoBGP ("gobgp", Debian's `gobgpd`), which holds routes in its RIB only.
//! Both keep BIRD's and GoBGP's own defaults otherwise, as a user's router would, but for
//! BIRD's error wait after a failed session (60 s, doubling), shortened to 5 s so scenarios
//! that fail a node do not wait minutes; a session that flaps still shows in BIRD's log
//! ([`Bird::established`]).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::{NODES, ns};
use crate::bird::Bird;
use crate::gobgp::GoBgp;
use crate::netns::{Netns, Switch};

/// BIRD's address and AS.
pub const BIRD: (&str, u32) = ("10.99.0.4", 64514);
/// GoBGP's address and AS.
pub const GOBGP: (&str, u32) = ("10.99.0.5", 64515);
/// The TCP-MD5 password BIRD's sessions use (the lab's BGPPeer `bird` has it).
pub const BIRD_PASSWORD: &str = "bird-secret";

/// BIRD's configuration: a session per node with BFD 100 ms × 3 and the password; what
/// it learns goes to the kernel, equal paths merged (ECMP).
pub fn bird_config() -> String {
    let (address, asn) = BIRD;
    let mut out = format!(
        "router id {address};
debug protocols {{ states, events }};
protocol device {{}}
protocol kernel {{ merge paths on; ipv4 {{ import none; export all; }}; }}
protocol bfd {{ interface \"*\" {{ interval 100 ms; multiplier 3; }}; }}
template bgp nodes {{
  local {address} as {asn};
  bfd on;
  password \"{BIRD_PASSWORD}\";
  hold time 9;
  keepalive time 3;
  error wait time 5, 30;
  ipv4 {{ import all; export none; }};
}}
"
    );
    for (name, node) in NODES {
        let _ = writeln!(
            out,
            "protocol bgp {name} from nodes {{ neighbor {node} as 64512; }}"
        );
    }
    out
}

/// GoBGP's configuration: a session per node.
pub fn gobgp_config() -> String {
    let (address, asn) = GOBGP;
    let mut out = format!(
        "[global.config]\n  as = {asn}\n  router-id = \"{address}\"\n  local-address-list = [\"{address}\"]\n"
    );
    for (_, node) in NODES {
        let _ = write!(
            out,
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{node}\"\n    peer-as = 64512\n  [neighbors.timers.config]\n    connect-retry = 1\n    hold-time = 9\n    keepalive-interval = 3\n"
        );
    }
    out
}

/// The two routers, started; dropped, they stop and their namespaces go.
#[derive(Debug)]
pub struct Started {
    // Processes first: they stop before their namespaces go.
    bird: Bird,
    gobgp: GoBgp,
    namespaces: Vec<Netns>,
}

impl Started {
    /// Leaves both running; returns their PIDs and namespaces.
    pub fn keep(self) -> (Vec<u32>, Vec<String>) {
        let pids = self
            .bird
            .keep()
            .into_iter()
            .chain(self.gobgp.keep())
            .collect();
        (pids, self.namespaces.into_iter().map(Netns::keep).collect())
    }
}

/// Creates the two routers' namespaces on `switch` and starts them.
pub fn start(switch: &Switch, dir: &Path) -> Result<Started> {
    let bird_ns = Netns::create(&ns("bird"))?;
    switch.attach(&bird_ns, "bird", &[&format!("{}/24", BIRD.0)])?;
    let gobgp_ns = Netns::create(&ns("gobgp"))?;
    switch.attach(&gobgp_ns, "gobgp", &[&format!("{}/24", GOBGP.0)])?;
    let bird = Bird::start(&bird_ns, &dir.join("bird"), &bird_config())?;
    let gobgp = GoBgp::start(&gobgp_ns, &dir.join("gobgp"), &gobgp_config())?;
    Ok(Started {
        bird,
        gobgp,
        namespaces: vec![bird_ns, gobgp_ns],
    })
}

/// The lab's BIRD.
pub fn bird(dir: &Path) -> Bird {
    Bird::client(&dir.join("bird"))
}

/// The lab's GoBGP.
pub fn gobgp(dir: &Path) -> GoBgp {
    GoBgp::client(&dir.join("gobgp"), &ns("gobgp"))
}

/// What `hack/lab.sh status` shows of the two: their sessions, and BIRD's kernel routes.
pub fn status(dir: &Path, out: &mut String) -> Result<()> {
    writeln!(out, "\nBIRD {}: show protocols", ns("bird"))?;
    for line in bird(dir).birdc("show protocols")?.lines() {
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "\nBIRD {}: kernel routes from BGP", ns("bird"))?;
    let routes = Netns::attach(&ns("bird")).ip(&["route", "show", "proto", "bird"])?;
    for line in routes.lines() {
        writeln!(out, "  {line}")?;
    }
    writeln!(out, "\nGoBGP {}: gobgp neighbor", ns("gobgp"))?;
    for line in gobgp(dir).gobgp(&["neighbor"])?.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

//! The faults a campaign injects on the lab, each healed after a random time: processes
//! killed with SIGKILL and started again (a speaker, FRR's bgpd or zebra, the leading
//! controller, kube-apiserver, etcd), a node's switch port down or flapping, a node cut from
//! the control plane and the other nodes but not from the routers (or from the routers but
//! not the rest), a node's gossip port blocked.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Rng, Scope, Shared};
use crate::lab::{self, Killed, NODES};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A node's speaker killed, started again after a while.
    Speaker,
    /// A node's bgpd killed and started again at once, empty.
    Bgpd,
    /// A node's zebra killed and started again at once.
    Zebra,
    /// The controller replica holding the Lease killed, started again after a while.
    Controller,
    /// kube-apiserver killed, started again after a while.
    Apiserver,
    /// etcd killed, started again after a while.
    Etcd,
    /// A node's switch port down for a while.
    LinkDown,
    /// A node's switch port going down and up every 0.3 to 1 s for a while.
    LinkFlap,
    /// A node cut from the control plane and the other nodes, not from the routers.
    CutControlPlane,
    /// A node cut from the routers, not from the control plane or the other nodes.
    CutRouters,
    /// A node's gossip (UDP to and from the memberlist port) dropped.
    BlockGossip,
}

/// Each kind with its weight in the draw.
const KINDS: [(Kind, u64); 11] = [
    (Kind::Speaker, 12),
    (Kind::Bgpd, 8),
    (Kind::Zebra, 5),
    (Kind::Controller, 10),
    (Kind::Apiserver, 8),
    (Kind::Etcd, 6),
    (Kind::LinkDown, 10),
    (Kind::LinkFlap, 8),
    (Kind::CutControlPlane, 12),
    (Kind::CutRouters, 10),
    (Kind::BlockGossip, 11),
];

impl Kind {
    /// Whether it acts on one node.
    fn on_node(self) -> bool {
        !matches!(self, Kind::Controller | Kind::Apiserver | Kind::Etcd)
    }

    /// What it holds while active: two faults on one thing never overlap.
    fn holds(self, node: Option<&str>) -> String {
        let what = match self {
            Kind::Speaker => "speaker",
            Kind::Bgpd | Kind::Zebra => "frr",
            Kind::LinkDown | Kind::LinkFlap => "link",
            Kind::CutControlPlane | Kind::CutRouters => "cut",
            Kind::BlockGossip => "gossip",
            Kind::Controller => "controller",
            Kind::Apiserver => "apiserver",
            Kind::Etcd => "etcd",
        };
        format!(
            "{}{what}",
            node.map(|n| format!("{n}/")).unwrap_or_default()
        )
    }

    /// Whether a route the node announced may go while it lasts: the node's sessions or
    /// FRR fail. The speaker's, the control plane's and gossip's faults take no route away
    /// (FRR keeps announcing; a restarted speaker adopts what it finds).
    fn takes_routes(self) -> bool {
        matches!(
            self,
            Kind::Bgpd | Kind::Zebra | Kind::LinkDown | Kind::LinkFlap | Kind::CutRouters
        )
    }

    /// Whether the controller's decisions may lag behind the objects while it lasts (the
    /// pools' grace runs again from its end).
    fn stalls_control(self) -> bool {
        matches!(self, Kind::Controller | Kind::Apiserver | Kind::Etcd)
    }

    /// How long it lasts, drawn.
    fn duration(self, rng: &mut Rng) -> Duration {
        let ms = match self {
            Kind::Bgpd | Kind::Zebra => 0,
            Kind::Speaker => rng.between(500, 4_000),
            Kind::Controller | Kind::Apiserver | Kind::Etcd => rng.between(1_000, 6_000),
            Kind::LinkDown => rng.between(1_000, 6_000),
            Kind::LinkFlap => rng.between(2_000, 6_000),
            // Past the 10 s after which an isolated owner stops answering, sometimes.
            Kind::CutControlPlane => rng.between(3_000, 15_000),
            Kind::CutRouters => rng.between(1_000, 8_000),
            Kind::BlockGossip => rng.between(2_000, 10_000),
        };
        Duration::from_millis(ms)
    }
}

/// A fault in force.
#[derive(Debug)]
pub struct Active {
    /// Its kind.
    pub kind: Kind,
    /// Its node, for a node's fault.
    pub node: Option<&'static str>,
    /// When it began.
    pub from: Instant,
    /// When it is healed.
    pub until: Instant,
    killed: Option<Killed>,
    excuse: Option<usize>,
    port_up: bool,
    next_flip: Instant,
}

impl Active {
    /// What it holds ([`Kind::holds`]).
    pub fn holds(&self) -> String {
        self.kind.holds(self.node)
    }

    /// How it reads in the campaign's log.
    pub fn describe(&self) -> String {
        let what = match self.kind {
            Kind::Speaker => "speaker killed",
            Kind::Bgpd => "bgpd killed",
            Kind::Zebra => "zebra killed",
            Kind::Controller => "leading controller killed",
            Kind::Apiserver => "kube-apiserver killed",
            Kind::Etcd => "etcd killed",
            Kind::LinkDown => "switch port down",
            Kind::LinkFlap => "switch port flapping",
            Kind::CutControlPlane => "cut from the control plane and the other nodes",
            Kind::CutRouters => "cut from the routers",
            Kind::BlockGossip => "gossip blocked",
        };
        let role = self
            .killed
            .as_ref()
            .filter(|_| self.kind == Kind::Controller)
            .map(|k| format!(" ({})", k.role))
            .unwrap_or_default();
        match self.node {
            Some(node) => format!("{node}: {what}{role}"),
            None => format!("{what}{role}"),
        }
    }
}

/// Draws a fault whose target is free of `busy`, and injects it.
pub fn inject(
    dir: &Path,
    rng: &mut Rng,
    busy: &[String],
    shared: &Arc<Mutex<Shared>>,
) -> Result<Option<Active>> {
    let total: u64 = KINDS.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    let mut kind = KINDS[0].0;
    for (k, w) in KINDS {
        if roll < w {
            kind = k;
            break;
        }
        roll -= w;
    }
    let node = kind
        .on_node()
        .then(|| NODES[rng.below(NODES.len() as u64) as usize].0);
    if busy.contains(&kind.holds(node)) {
        return Ok(None);
    }
    let duration = kind.duration(rng);
    let from = Instant::now();
    let excuse = match node {
        Some(node) if kind.takes_routes() => Some(
            shared
                .lock()
                .expect("shared")
                .excuse_open(Scope::Node(node.to_string())),
        ),
        _ => None,
    };
    let mut killed = None;
    match (kind, node) {
        (Kind::Speaker, Some(node)) => killed = Some(lab::kill(dir, &format!("speaker-{node}"))?),
        (Kind::Bgpd, Some(node)) => lab::crash_daemon(dir, node, "bgpd")?,
        (Kind::Zebra, Some(node)) => lab::crash_daemon(dir, node, "zebra")?,
        (Kind::Controller, _) => {
            let role = lab::leading_controller(dir)
                .ok()
                .flatten()
                .unwrap_or_else(|| "controller".to_string());
            killed = Some(lab::kill(dir, &role)?);
        }
        (Kind::Apiserver, _) => killed = Some(lab::kill(dir, "kube-apiserver")?),
        (Kind::Etcd, _) => killed = Some(lab::kill(dir, "etcd")?),
        (Kind::LinkDown | Kind::LinkFlap, Some(node)) => lab::set_node_port(node, false)?,
        (Kind::CutControlPlane, Some(node)) => lab::cut_off_node(dir, node, true)?,
        (Kind::CutRouters, Some(node)) => lab::cut_from_routers(dir, node, true)?,
        (Kind::BlockGossip, Some(node)) => lab::block_gossip(dir, node, true)?,
        _ => unreachable!("node faults are drawn with a node"),
    }
    Ok(Some(Active {
        kind,
        node,
        from,
        until: from + duration,
        killed,
        excuse,
        port_up: false,
        next_flip: from + Duration::from_millis(rng.between(300, 1_000)),
    }))
}

/// Moves a flapping port on when its time has come.
pub fn tick(active: &mut Active, rng: &mut Rng) -> Result<()> {
    if active.kind != Kind::LinkFlap || Instant::now() < active.next_flip {
        return Ok(());
    }
    active.port_up = !active.port_up;
    if let Some(node) = active.node {
        lab::set_node_port(node, active.port_up)?;
    }
    active.next_flip = Instant::now() + Duration::from_millis(rng.between(300, 1_000));
    Ok(())
}

/// Ends the fault: what was killed started again, the port up, the cut mended; closes its
/// excuse.
pub fn heal(dir: &Path, active: Active, shared: &Arc<Mutex<Shared>>) -> Result<()> {
    if let Some(killed) = &active.killed {
        lab::respawn(dir, killed)?;
    }
    match (active.kind, active.node) {
        (Kind::LinkDown | Kind::LinkFlap, Some(node)) => lab::set_node_port(node, true)?,
        (Kind::CutControlPlane, Some(node)) => lab::cut_off_node(dir, node, false)?,
        (Kind::CutRouters, Some(node)) => lab::cut_from_routers(dir, node, false)?,
        (Kind::BlockGossip, Some(node)) => lab::block_gossip(dir, node, false)?,
        _ => {}
    }
    let now = Instant::now();
    let mut shared = shared.lock().expect("shared");
    if let Some(excuse) = active.excuse {
        shared.excuse_close(excuse, now);
    }
    if active.kind.stalls_control() {
        shared.config_event = now;
    }
    Ok(())
}

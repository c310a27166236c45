//! Which speakers are alive: SWIM gossip ([foca]) between the speakers over UDP, so a node
//! that dies stops owning its layer-2 IPs within about a second, long before its Node turns
//! NotReady (40 s by default).
//!
//! - Identity: the node name, the address others reach it at, and a generation: the time the
//!   speaker started, in microseconds, moved on when it learns it was declared dead (so it
//!   rejoins at once instead of waiting for the cluster to forget it). A restarted speaker is
//!   therefore always newer than its predecessor, whose dead identity the others may still
//!   hold; a random or counted generation could be older, and would be declared dead again
//!   and again until it counted past it.
//! - Seeds: the speaker's peers come from the API (every Node's internal address, at the
//!   memberlist port); each one that is not an active member is announced to every
//!   [`REANNOUNCE`], so a healed partition or a late starter joins within that time.
//! - Every datagram carries an HMAC-SHA256 under the cluster key (the `memberlist` Secret's
//!   `secretkey`, as MetalLB installs it), the sender's name and a stamp ([`seal`]). Datagrams
//!   without a valid tag, and replayed or stale ones, are dropped and counted before foca
//!   reads a byte of them.
//! - Liveness ([`Liveness`]): this node plus every member foca holds active (alive or
//!   suspected). It is `settled` once this node has been accepted by another member, once it
//!   knows no other seed, or [`SETTLE`] after start, whichever comes first; before that a
//!   speaker does not yet know who else is alive, and does not claim IPs on its own.
//!
//! Timings ([`Timings::default`]): a probe every 300 ms with 100 ms for a direct answer, and a
//! suspect declared dead after 600 ms. A dead node is noticed on average within about one
//! probe period by one of the others, so it is declared dead about 1 s after it stops
//! answering; memberlist's LAN defaults (1 s, 500 ms, 4× suspicion) give 5 s or more.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use foca::{
    AccumulatingRuntime, Config, Foca, Identity, OwnedNotification, PeriodicParams, PostcardCodec,
    Timer,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// MetalLB's memberlist port.
pub const DEFAULT_PORT: u16 = 7946;
/// How often seeds that are not active members are announced to.
pub const REANNOUNCE: Duration = Duration::from_secs(2);
/// The longest a speaker waits to hear from the others before it decides alone.
pub const SETTLE: Duration = Duration::from_secs(3);
/// How often a sender whose datagrams are dropped for its clock is warned about.
const WARN_EVERY: Duration = Duration::from_secs(60);

pub mod budget;
pub mod seal;

use budget::Budgets;
pub use seal::now_micros;
use seal::{Opener, Refused, Sealer};

/// A speaker as gossip knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Speaker {
    /// Its node's name.
    pub node: String,
    /// Where its gossip socket is reached.
    pub addr: SocketAddr,
    /// Generation, changed on restart and on rejoining.
    generation: u64,
}

impl Speaker {
    /// A speaker of a new generation.
    pub fn new(node: &str, addr: SocketAddr) -> Speaker {
        Speaker {
            node: node.to_string(),
            addr,
            generation: now_micros(),
        }
    }
}

impl Identity for Speaker {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Speaker {
            generation: (self.generation + 1).max(now_micros()),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.node.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// Failure-detection timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How often a random member is probed.
    pub probe_period: Duration,
    /// How long a direct probe may take before others are asked to probe.
    pub probe_rtt: Duration,
    /// How long a suspected member has to refute before it is declared dead.
    pub suspect_to_down: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(100),
            suspect_to_down: Duration::from_millis(600),
        }
    }
}

impl Timings {
    fn config(self, cluster_size: usize) -> Config {
        let size = NonZeroU32::new(u32::try_from(cluster_size.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let mut config = Config::new_lan(size);
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.suspect_to_down_after = self.suspect_to_down;
        config.periodic_announce_to_down_members = Some(PeriodicParams {
            frequency: REANNOUNCE,
            num_members: NonZeroUsize::MIN.saturating_add(1),
        });
        config
    }
}

/// How a speaker joins the gossip.
#[derive(Clone, Debug)]
pub struct MembersOptions {
    /// This node's name.
    pub node: String,
    /// The local address the gossip socket binds (`0.0.0.0:7946` on a node).
    pub bind: SocketAddr,
    /// The address others reach this speaker at (the node's IP and the port); `None` for
    /// the bound address.
    pub advertise: Option<SocketAddr>,
    /// The cluster key every datagram is authenticated with.
    pub key: Vec<u8>,
    /// Failure-detection timings.
    pub timings: Timings,
    /// Also take ferrolb 0.1's unstamped datagrams (format 2), and send them to speakers
    /// not heard in format 3: for a rolling upgrade from 0.1 only, as it lets a captured
    /// format-2 datagram be replayed.
    pub accept_format_2: bool,
}

/// Who is alive, as this speaker knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Alive speakers by node name, this one included.
    pub alive: BTreeSet<String>,
    /// Whether this speaker has heard enough to decide with this set.
    pub settled: bool,
    /// Whether this speaker is cut off from the other speakers and the API server
    /// ([`crate::l2::isolation`]); gossip itself leaves it false.
    pub isolated: bool,
    /// How many times the others declared this speaker down and it rejoined: while they
    /// held it down they took its layer-2 IPs and told the clients so, and it may not have
    /// noticed any of them go (each kept seeing the others alive).
    pub rejoined: u64,
}

/// Gossip counters.
#[derive(Debug, Default)]
pub struct MembersMetrics {
    /// Datagrams dropped because their tag did not verify under the key.
    pub rejected: Counter,
    /// Signed datagrams dropped as replays or for a stamp outside the window.
    pub replayed: Counter,
    /// Datagrams dropped unread, over the port's budget.
    pub dropped: Counter,
    /// Datagrams foca could not use.
    pub invalid: Counter,
}

impl MembersMetrics {
    /// Registers the counters in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ferrolb_memberlist_rejected_packets",
            "Gossip datagrams dropped because they were not signed with the cluster key",
            self.rejected.clone(),
        );
        registry.register(
            "ferrolb_memberlist_replayed_packets",
            "Signed gossip datagrams dropped because they were seen before or their stamp \
             was more than 30 s from this node's clock",
            self.replayed.clone(),
        );
        registry.register(
            "ferrolb_memberlist_dropped_packets",
            "Gossip datagrams dropped unread because their source sent more than 500 a \
             second, or all sources together more than 20,000",
            self.dropped.clone(),
        );
        registry.register(
            "ferrolb_memberlist_invalid_packets",
            "Signed gossip datagrams the membership protocol refused",
            self.invalid.clone(),
        );
    }
}

/// A running gossip member.
#[derive(Debug)]
pub struct Members {
    seeds: mpsc::UnboundedSender<BTreeMap<String, SocketAddr>>,
    liveness: watch::Receiver<Liveness>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Members {
    /// Binds the gossip socket and starts gossiping until `shutdown` (then leaves the cluster
    /// politely, so the others move its IPs at once).
    pub async fn start(
        options: MembersOptions,
        metrics: Arc<MembersMetrics>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Members> {
        let socket = UdpSocket::bind(options.bind).await?;
        let local = socket.local_addr()?;
        let (seeds_tx, seeds) = mpsc::unbounded_channel();
        let (liveness_tx, liveness) = watch::channel(Liveness {
            alive: BTreeSet::from([options.node.clone()]),
            settled: false,
            isolated: false,
            rejoined: 0,
        });
        let advertise = options.advertise.unwrap_or(local);
        let wire = Wire::new(socket, &options, metrics);
        let task = tokio::spawn(gossip(
            options,
            advertise,
            wire,
            seeds,
            liveness_tx,
            shutdown,
        ));
        Ok(Members {
            seeds: seeds_tx,
            liveness,
            local,
            task,
        })
    }

    /// Stops gossiping without a word to the others, as a node that dies would.
    pub fn crash(&self) {
        self.task.abort();
    }

    /// Replaces the seeds: node name → gossip address, this node's own entry ignored.
    pub fn seed(&self, seeds: BTreeMap<String, SocketAddr>) {
        let _ = self.seeds.send(seeds);
    }

    /// Follows liveness.
    pub fn liveness(&self) -> watch::Receiver<Liveness> {
        self.liveness.clone()
    }

    /// The bound gossip address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

type Gossip = Foca<Speaker, PostcardCodec, StdRng, foca::NoCustomBroadcast>;

/// The gossip socket: datagrams sealed on the way out, checked on the way in.
struct Wire {
    socket: UdpSocket,
    sealer: Sealer,
    opener: Opener,
    budgets: Budgets,
    accept_format_2: bool,
    /// Addresses heard in format 3: they get no format-2 copy.
    current: HashSet<SocketAddr>,
    /// When each sender (or address) was last warned about.
    warned: HashMap<String, Instant>,
    metrics: Arc<MembersMetrics>,
}

impl Wire {
    fn new(socket: UdpSocket, options: &MembersOptions, metrics: Arc<MembersMetrics>) -> Wire {
        Wire {
            socket,
            sealer: Sealer::new(&options.key, &options.node),
            opener: Opener::new(
                &options.key,
                &options.node,
                now_micros(),
                options.accept_format_2,
            ),
            budgets: Budgets::new(Instant::now()),
            accept_format_2: options.accept_format_2,
            current: HashSet::new(),
            warned: HashMap::new(),
            metrics,
        }
    }

    /// The payload of a datagram from `from`, or `None` (counted, and warned about when
    /// the cause is one an operator can fix) when it is dropped.
    fn check<'a>(&mut self, datagram: &'a [u8], from: SocketAddr) -> Option<&'a [u8]> {
        if !self.budgets.take(from.ip(), Instant::now()) {
            self.metrics.dropped.inc();
            if self.warn(format!("flood from {}", from.ip())) {
                tracing::warn!(from = %from.ip(), per_source = budget::PER_SOURCE, all = budget::ALL, "gossip datagrams over the port's budget dropped unread (a flood, or a misdirected sender)");
            }
            return None;
        }
        let refused = match self.opener.open(datagram, now_micros()) {
            Ok(opened) => {
                if !opened.format_2 {
                    self.current.insert(from);
                }
                return Some(opened.payload);
            }
            Err(refused) => refused,
        };
        match refused {
            Refused::NotSigned => {
                self.metrics.rejected.inc();
                tracing::debug!(%from, len = datagram.len(), "gossip datagram with a bad tag dropped");
            }
            Refused::Format2 => {
                self.metrics.rejected.inc();
                if self.warn(from.to_string()) {
                    tracing::warn!(%from, "gossip from a ferrolb 0.1 speaker (format 2) dropped: during an upgrade from 0.1, run the speakers with --ml-accept-format-2 (chart value speaker.memberlist.acceptFormat2)");
                }
            }
            Refused::Replayed { sender } => {
                self.metrics.replayed.inc();
                tracing::debug!(%from, %sender, "gossip datagram seen before dropped");
            }
            Refused::OutOfWindow { sender, ahead_ms } => {
                self.metrics.replayed.inc();
                if self.warn(sender.clone()) {
                    tracing::warn!(%from, %sender, ahead_ms, window_s = seal::WINDOW.as_secs(), "gossip datagram dropped: its stamp is further from this node's clock than the window (a replay, or the node clocks disagree: check NTP)");
                }
            }
        }
        None
    }

    /// Whether `about` is due a warning (the first time, then once a [`WARN_EVERY`]).
    fn warn(&mut self, about: String) -> bool {
        let now = Instant::now();
        if self.warned.len() > 1_024 {
            self.warned
                .retain(|_, at| now.duration_since(*at) < WARN_EVERY);
        }
        match self.warned.get(&about) {
            Some(at) if now.duration_since(*at) < WARN_EVERY => false,
            _ => {
                self.warned.insert(about, now);
                true
            }
        }
    }

    /// Sends `data` to `to`, with a format-2 copy when format 2 is accepted and `to` has
    /// not been heard in format 3.
    async fn send(&mut self, to: &Speaker, data: &[u8]) {
        let mut datagrams = vec![self.sealer.seal(data, &to.node, now_micros())];
        let to = to.addr;
        if self.accept_format_2 && !self.current.contains(&to) {
            datagrams.push(self.sealer.seal_format_2(data));
        }
        for datagram in datagrams {
            if let Err(error) = self.socket.send_to(&datagram, to).await {
                tracing::debug!(%to, %error, "sending gossip");
            }
        }
    }

    /// Forgets what is too old to matter.
    fn tidy(&mut self) {
        self.opener.forget_old(now_micros());
        if self.current.len() > 4_096 {
            self.current.clear();
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn gossip(
    options: MembersOptions,
    advertise: SocketAddr,
    mut wire: Wire,
    mut seed_updates: mpsc::UnboundedReceiver<BTreeMap<String, SocketAddr>>,
    liveness: watch::Sender<Liveness>,
    shutdown: CancellationToken,
) {
    let me = Speaker::new(&options.node, advertise);
    let mut foca: Gossip = Foca::new(
        me,
        options.timings.config(1),
        rand::make_rng::<StdRng>(),
        PostcardCodec,
    );
    let mut runtime = AccumulatingRuntime::new();
    let (timer_tx, mut timers) = mpsc::unbounded_channel::<Timer<Speaker>>();
    let mut seeds: BTreeMap<String, SocketAddr> = BTreeMap::new();
    let mut seeded = false;
    let mut accepted = false;
    let mut rejoined: u64 = 0;
    let started = Instant::now();
    let mut reannounce = tokio::time::interval(REANNOUNCE);
    reannounce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 65_536];
    loop {
        let result = tokio::select! {
            received = wire.socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => match wire.check(&buf[..len], from) {
                    Some(payload) => foca.handle_data(payload, &mut runtime).inspect_err(|_| { wire.metrics.invalid.inc(); }),
                    // Nothing changed: the next datagram at once (a flood is drained at
                    // the cost of its check alone).
                    None => continue,
                },
                Err(error) => {
                    tracing::warn!(%error, "receiving gossip");
                    Ok(())
                }
            },
            Some(timer) = timers.recv() => foca.handle_timer(timer, &mut runtime),
            Some(update) = seed_updates.recv() => {
                seeds = update;
                seeds.remove(&options.node);
                seeded = true;
                foca.set_config(options.timings.config(seeds.len() + 1)).ok();
                announce(&mut foca, &seeds, &mut runtime)
            }
            _ = reannounce.tick() => {
                wire.tidy();
                announce(&mut foca, &seeds, &mut runtime)
            }
            () = tokio::time::sleep_until(started + SETTLE), if !liveness.borrow().settled => Ok(()),
            () = shutdown.cancelled() => {
                if foca.leave_cluster(&mut runtime).is_ok() {
                    flush(&mut wire, &mut runtime, &timer_tx).await;
                }
                return;
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "gossip");
        }
        let heard = notifications(&mut foca, &mut runtime);
        accepted |= heard.accepted;
        rejoined += heard.rejoined;
        flush(&mut wire, &mut runtime, &timer_tx).await;
        let mut alive: BTreeSet<String> =
            foca.iter_members().map(|m| m.id().node.clone()).collect();
        alive.insert(options.node.clone());
        let settled = liveness.borrow().settled
            || accepted
            || (seeded && seeds.is_empty())
            || started.elapsed() >= SETTLE;
        liveness.send_if_modified(|was| {
            let now = Liveness {
                alive,
                settled,
                isolated: false,
                rejoined,
            };
            let changed = *was != now;
            if changed {
                *was = now;
            }
            changed
        });
    }
}

/// Gives `payload` to a new member's membership protocol, as a datagram that passed the
/// checks would be given (for the fuzz target of [`crate::fuzzing`]).
pub fn feed(payload: &[u8]) {
    use rand::SeedableRng;
    let me = Speaker::new("n1", SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
    let mut foca: Gossip = Foca::new(
        me,
        Timings::default().config(3),
        StdRng::seed_from_u64(0),
        PostcardCodec,
    );
    let mut runtime = AccumulatingRuntime::new();
    let _ = foca.handle_data(payload, &mut runtime);
}

/// What [`notifications`] read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Heard {
    /// foca became active: another member accepted this speaker.
    accepted: bool,
    /// How many times it rejoined under a new identity.
    rejoined: u64,
}

/// Reads and logs what foca has to tell, and makes it probe the members it holds again after
/// it rejoined under a new identity. foca 2.0 leaves a speaker that rejoins disconnected,
/// whatever members it still holds, and connects it again only when one of them sends a
/// datagram addressed to the new identity; one that knows only the old identity never does
/// (what it sends is dropped). Meanwhile the speaker would probe none of them, so one that
/// dies would never be declared down and would keep its layer-2 IPs; nor would it announce
/// itself to them, as they count as active. foca connects a speaker that holds members
/// whenever it applies updates: an empty set of them is enough.
fn notifications(foca: &mut Gossip, runtime: &mut AccumulatingRuntime<Speaker>) -> Heard {
    let mut heard = Heard::default();
    let mut reconnected = false;
    loop {
        let mut renewed = false;
        while let Some(notification) = runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(s) => {
                    tracing::info!(node = %s.node, addr = %s.addr, "speaker up");
                }
                OwnedNotification::MemberDown(s) => {
                    tracing::info!(node = %s.node, addr = %s.addr, "speaker down");
                }
                OwnedNotification::Active => {
                    heard.accepted = true;
                    if reconnected {
                        tracing::info!(
                            members = foca.num_members(),
                            "rejoined holding live members: probing them again"
                        );
                    }
                }
                OwnedNotification::Rejoin(s) => {
                    heard.rejoined += 1;
                    renewed = true;
                    tracing::info!(
                        generation = s.generation,
                        "declared down by the others; rejoined"
                    );
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("declared down by the others");
                }
                _ => {}
            }
        }
        if !renewed {
            return heard;
        }
        reconnected = true;
        if let Err(error) = foca.apply_many(std::iter::empty(), true, &mut *runtime) {
            tracing::debug!(%error, "gossip");
        }
    }
}

/// Announces this speaker to every seed that is not an active member.
fn announce(
    foca: &mut Gossip,
    seeds: &BTreeMap<String, SocketAddr>,
    runtime: &mut AccumulatingRuntime<Speaker>,
) -> Result<(), foca::Error> {
    let active: BTreeSet<String> = foca.iter_members().map(|m| m.id().node.clone()).collect();
    for (node, addr) in seeds {
        if !active.contains(node) {
            // The generation does not matter: the seed answers with its real identity.
            foca.announce(
                Speaker {
                    node: node.clone(),
                    addr: *addr,
                    generation: 0,
                },
                &mut *runtime,
            )?;
        }
    }
    Ok(())
}

/// Sends what foca queued and schedules its timers.
async fn flush(
    wire: &mut Wire,
    runtime: &mut AccumulatingRuntime<Speaker>,
    timers: &mpsc::UnboundedSender<Timer<Speaker>>,
) {
    while let Some((to, data)) = runtime.to_send() {
        wire.send(&to, &data).await;
    }
    while let Some((after, timer)) = runtime.to_schedule() {
        let timers = timers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = timers.send(timer);
        });
    }
}

#[cfg(test)]
mod tests;

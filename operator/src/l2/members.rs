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
//! - Every datagram carries an HMAC-SHA256 of its payload under the cluster key (the
//!   `memberlist` Secret's `secretkey`, as MetalLB installs it). Datagrams without a valid tag
//!   are dropped and counted before foca reads a byte of them.
//! - Liveness ([`Liveness`]): this node plus every member foca holds active (alive or
//!   suspected). It is `settled` once this node has been accepted by another member, once it
//!   knows no other seed, or [`SETTLE`] after start, whichever comes first; before that a
//!   speaker does not yet know who else is alive, and does not claim IPs on its own.
//!
//! Timings ([`Timings::default`]): a probe every 300 ms with 100 ms for a direct answer, and a
//! suspect declared dead after 600 ms. A dead node is noticed on average within about one
//! probe period by one of the others, so it is declared dead about 1 s after it stops
//! answering; memberlist's LAN defaults (1 s, 500 ms, 4× suspicion) give 5 s or more.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use foca::{
    AccumulatingRuntime, Config, Foca, Identity, OwnedNotification, PeriodicParams, PostcardCodec,
    Timer,
};
use hmac::{Hmac, KeyInit, Mac};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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
/// Bytes of the authentication tag in front of every datagram.
const TAG: usize = 32;
/// The format version, first byte of every datagram.
const VERSION: u8 = 2;

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

/// Microseconds since the Unix epoch.
fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
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
}

/// Who is alive, as this speaker knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Alive speakers by node name, this one included.
    pub alive: BTreeSet<String>,
    /// Whether this speaker has heard enough to decide with this set.
    pub settled: bool,
}

/// Gossip counters.
#[derive(Debug, Default)]
pub struct MembersMetrics {
    /// Datagrams dropped because their tag did not verify under the key.
    pub rejected: Counter,
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
        });
        let advertise = options.advertise.unwrap_or(local);
        let task = tokio::spawn(gossip(
            options,
            advertise,
            socket,
            seeds,
            liveness_tx,
            metrics,
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

/// Signs `payload` under `key`: version, tag, payload.
pub fn seal(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(&[VERSION]);
    mac.update(payload);
    let mut out = Vec::with_capacity(1 + TAG + payload.len());
    out.push(VERSION);
    out.extend_from_slice(&mac.finalize().into_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of `datagram` if its tag verifies under `key`.
pub fn open<'a>(key: &[u8], datagram: &'a [u8]) -> Option<&'a [u8]> {
    if datagram.len() < 1 + TAG || datagram[0] != VERSION {
        return None;
    }
    let (tag, payload) = datagram[1..].split_at(TAG);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(&[VERSION]);
    mac.update(payload);
    mac.verify_slice(tag).ok().map(|()| payload)
}

type Gossip = Foca<Speaker, PostcardCodec, StdRng, foca::NoCustomBroadcast>;

#[allow(clippy::too_many_lines)]
async fn gossip(
    options: MembersOptions,
    advertise: SocketAddr,
    socket: UdpSocket,
    mut seed_updates: mpsc::UnboundedReceiver<BTreeMap<String, SocketAddr>>,
    liveness: watch::Sender<Liveness>,
    metrics: Arc<MembersMetrics>,
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
    let started = Instant::now();
    let mut reannounce = tokio::time::interval(REANNOUNCE);
    reannounce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 65_536];
    loop {
        let result = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, _from)) => match open(&options.key, &buf[..len]) {
                    Some(payload) => foca.handle_data(payload, &mut runtime).inspect_err(|_| { metrics.invalid.inc(); }),
                    None => {
                        metrics.rejected.inc();
                        tracing::debug!(len, "gossip datagram with a bad tag dropped");
                        Ok(())
                    }
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
            _ = reannounce.tick() => announce(&mut foca, &seeds, &mut runtime),
            () = tokio::time::sleep_until(started + SETTLE), if !liveness.borrow().settled => Ok(()),
            () = shutdown.cancelled() => {
                if foca.leave_cluster(&mut runtime).is_ok() {
                    flush(&options.key, &socket, &mut runtime, &timer_tx).await;
                }
                return;
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "gossip");
        }
        while let Some(notification) = runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(s) => {
                    tracing::info!(node = %s.node, addr = %s.addr, "speaker up");
                }
                OwnedNotification::MemberDown(s) => {
                    tracing::info!(node = %s.node, addr = %s.addr, "speaker down");
                }
                OwnedNotification::Active => accepted = true,
                OwnedNotification::Rejoin(s) => {
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
        flush(&options.key, &socket, &mut runtime, &timer_tx).await;
        let mut alive: BTreeSet<String> =
            foca.iter_members().map(|m| m.id().node.clone()).collect();
        alive.insert(options.node.clone());
        let settled = liveness.borrow().settled
            || accepted
            || (seeded && seeds.is_empty())
            || started.elapsed() >= SETTLE;
        liveness.send_if_modified(|was| {
            let now = Liveness { alive, settled };
            let changed = *was != now;
            if changed {
                *was = now;
            }
            changed
        });
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
    key: &[u8],
    socket: &UdpSocket,
    runtime: &mut AccumulatingRuntime<Speaker>,
    timers: &mpsc::UnboundedSender<Timer<Speaker>>,
) {
    while let Some((to, data)) = runtime.to_send() {
        if let Err(error) = socket.send_to(&seal(key, &data), to.addr).await {
            tracing::debug!(to = %to.addr, %error, "sending gossip");
        }
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
mod tests {
    use super::*;

    #[test]
    fn only_datagrams_sealed_with_the_key_open() {
        let sealed = seal(b"cluster key", b"payload");
        assert_eq!(open(b"cluster key", &sealed), Some(&b"payload"[..]));
        assert_eq!(open(b"another key", &sealed), None);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(open(b"cluster key", &tampered), None);
        assert_eq!(open(b"cluster key", &sealed[..TAG]), None);
        let mut other_version = sealed;
        other_version[0] = VERSION + 1;
        assert_eq!(open(b"cluster key", &other_version), None);
    }

    #[test]
    fn a_restarted_speaker_is_newer_than_its_predecessor_however_often_that_renewed() {
        let addr: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        let mut old = Speaker::new("n1", addr);
        // Renewals come seconds apart in life; a burst of them runs a microsecond each
        // ahead of the clock.
        for _ in 0..1_000 {
            old = old.renew().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        let new = Speaker::new("n1", addr);
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        let renewed = new.renew().unwrap();
        assert!(renewed.win_addr_conflict(&new));
        assert!(!old.win_addr_conflict(&new));
        assert!(!old.win_addr_conflict(&old));
        assert_eq!(new.addr(), "n1");
    }

    async fn member(node: &str, key: &[u8]) -> (Members, Arc<MembersMetrics>) {
        let metrics = Arc::new(MembersMetrics::default());
        let members = Members::start(
            MembersOptions {
                node: node.into(),
                bind: "127.0.0.1:0".parse().unwrap(),
                advertise: None,
                key: key.to_vec(),
                timings: Timings::default(),
            },
            Arc::clone(&metrics),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        (members, metrics)
    }

    async fn until(members: &Members, what: impl Fn(&Liveness) -> bool) -> Duration {
        let started = Instant::now();
        let mut liveness = members.liveness();
        tokio::time::timeout(Duration::from_secs(10), liveness.wait_for(|l| what(l)))
            .await
            .expect("in time")
            .expect("gossip running");
        started.elapsed()
    }

    fn names(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// Three members on loopback find each other from their seeds; one that falls silent
    /// is declared dead by the others within about a second; one with another key never
    /// gets in, and its datagrams are counted as rejected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_join_a_silent_one_dies_and_a_wrong_key_stays_out() {
        let mut all = Vec::new();
        for node in ["n1", "n2", "n3"] {
            all.push(member(node, b"cluster key").await);
        }
        let (stranger, _) = member("n4", b"wrong key").await;
        let mut seeds: BTreeMap<String, SocketAddr> = all
            .iter()
            .zip(["n1", "n2", "n3"])
            .map(|((m, _), n)| (n.to_string(), m.local_addr()))
            .collect();
        seeds.insert("n4".into(), stranger.local_addr());
        for (m, _) in &all {
            m.seed(seeds.clone());
        }
        stranger.seed(seeds.clone());
        for (m, _) in &all {
            until(m, |l| l.settled && l.alive == names(&["n1", "n2", "n3"])).await;
        }
        assert_eq!(stranger.liveness().borrow().alive, names(&["n4"]));
        // The stranger's datagrams may still be on their way when the others settle.
        let rejected = || all.iter().map(|(_, m)| m.rejected.get()).sum::<u64>();
        let deadline = Instant::now() + Duration::from_secs(5);
        while rejected() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(rejected() > 0, "no datagram of the stranger was rejected");

        all[2].0.crash();
        let took = until(&all[0].0, |l| l.alive == names(&["n1", "n2"])).await;
        until(&all[1].0, |l| l.alive == names(&["n1", "n2"])).await;
        assert!(
            took < Duration::from_secs(3),
            "declared dead after {took:?}"
        );
    }
}

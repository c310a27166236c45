//! The node's ARP and NDP responder: [`run`] keeps one ARP socket and one NDP socket open on
//! every interface that answers ([`super::interfaces::responders`]), answers requests for the
//! IPs this node owns now ([`Announcer::answer`]), and announces IPs it has just won
//! ([`Announcer::due`]).
//!
//! - Ownership comes in through a watch channel: a new list takes effect at once, so an IP that
//!   is lost stops being answered for before the next request is read.
//! - NDP sockets join the solicited-node multicast group of every owned IPv6 address, so
//!   solicitations reach them on NICs that filter multicast.
//! - Interfaces are read from sysfs at start, on every netlink link or address event, and every
//!   few seconds as a fallback; an interface that appears (or comes back with a new index or
//!   MAC) gets its sockets and one announcement of every owned IP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::L2Announcement;
use super::announcer::{Announcer, announcement_frames};
use super::interfaces::{Exclusions, Link, answers_on, responders};
use super::socket::{Kind, PacketSocket, register};
use super::wire::Mac;
use super::wire::ndp::{multicast_mac, solicited_node};

/// How often interfaces are read again without a netlink event.
const RESCAN: Duration = Duration::from_secs(5);

/// Where the responder reads interfaces, and which it leaves alone.
#[derive(Clone, Debug)]
pub(crate) struct ResponderOptions {
    /// Interfaces never answered on.
    pub exclusions: Exclusions,
    /// `/sys/class/net`.
    pub class_net: PathBuf,
    /// `/proc/net/if_inet6`.
    pub if_inet6: PathBuf,
}

impl Default for ResponderOptions {
    fn default() -> Self {
        ResponderOptions {
            exclusions: Exclusions::default(),
            class_net: PathBuf::from("/sys/class/net"),
            if_inet6: PathBuf::from("/proc/net/if_inet6"),
        }
    }
}

/// The `ip` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct IpLabel {
    /// The announced IP.
    pub ip: String,
}

/// Layer-2 counters, under MetalLB's names.
#[derive(Debug, Default)]
pub(crate) struct L2Metrics {
    /// Requests received for an IP this node owns.
    pub requests: Family<IpLabel, Counter>,
    /// Answers sent.
    pub responses: Family<IpLabel, Counter>,
    /// Gratuitous announcements sent.
    pub gratuitous: Family<IpLabel, Counter>,
}

impl L2Metrics {
    /// Registers the counters in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "metallb_layer2_requests_received",
            "Number of layer 2 requests received for owned IPs",
            self.requests.clone(),
        );
        registry.register(
            "metallb_layer2_responses_sent",
            "Number of layer 2 responses sent for owned IPs",
            self.responses.clone(),
        );
        registry.register(
            "metallb_layer2_gratuitous_sent",
            "Number of gratuitous layer 2 packets sent for owned IPs",
            self.gratuitous.clone(),
        );
    }

    fn count(family: &Family<IpLabel, Counter>, ip: IpAddr) {
        family.get_or_create(&IpLabel { ip: ip.to_string() }).inc();
    }
}

/// One answering interface.
#[derive(Debug)]
struct Attached {
    index: u32,
    mac: Mac,
    arp: Option<Arc<PacketSocket>>,
    ndp: Option<Arc<PacketSocket>>,
    /// Multicast groups the NDP socket is in.
    groups: BTreeSet<Mac>,
    stop: CancellationToken,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the responder answers for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Owned {
    /// The Services and IPs this node owns.
    pub list: Vec<L2Announcement>,
    /// Raised whenever a speaker (re)joins: every owned IP is announced again, since while it
    /// was apart the other side may have claimed it and told the clients so.
    pub epoch: u64,
}

/// Answers and announces for the IPs in `announcements` until `shutdown`.
pub(crate) async fn run(
    options: ResponderOptions,
    mut announcements: watch::Receiver<Owned>,
    metrics: Arc<L2Metrics>,
    shutdown: CancellationToken,
) {
    let announcer = Arc::new(RwLock::new(Announcer::default()));
    let mut attached: BTreeMap<String, Attached> = BTreeMap::new();
    let events = match link_events() {
        Ok(fd) => Some(fd),
        Err(error) => {
            tracing::warn!(%error, "no netlink link events; interfaces are read every {}s", RESCAN.as_secs());
            None
        }
    };
    let mut epoch = 0;
    let mut rescan = tokio::time::interval(RESCAN);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = announcer.read().map(|a| a.next_due()).unwrap_or_default();
        tokio::select! {
            changed = announcements.changed() => {
                if changed.is_err() {
                    return;
                }
                let owned = announcements.borrow_and_update().clone();
                if let Ok(mut a) = announcer.write() {
                    let now = Instant::now().into_std();
                    a.set(now, &owned.list);
                    if owned.epoch != epoch {
                        a.reannounce(now);
                        epoch = owned.epoch;
                    }
                }
                sync_groups(&announcer, &mut attached);
            }
            () = sleep_until(next) => {}
            readable = readable(events.as_ref()) => {
                if readable && let Some(fd) = &events {
                    drain(fd);
                }
                attach(&options, &announcer, &mut attached, &metrics, &shutdown);
            }
            _ = rescan.tick() => attach(&options, &announcer, &mut attached, &metrics, &shutdown),
            () = shutdown.cancelled() => return,
        }
        let due = announcer
            .write()
            .map(|mut a| a.due(Instant::now().into_std()))
            .unwrap_or_default();
        for (ip, interfaces) in due {
            announce(attached.iter(), ip, &interfaces, &metrics);
        }
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Sends the announcement frames of `ip` on every interface of `links` it may use.
fn announce<'a>(
    links: impl Iterator<Item = (&'a String, &'a Attached)>,
    ip: IpAddr,
    interfaces: &BTreeSet<String>,
    metrics: &L2Metrics,
) {
    for (name, link) in links {
        if !answers_on(interfaces, name) {
            continue;
        }
        let socket = match ip {
            IpAddr::V4(_) => &link.arp,
            IpAddr::V6(_) => &link.ndp,
        };
        let Some(socket) = socket else {
            continue;
        };
        for frame in announcement_frames(ip, link.mac) {
            match socket.send(&frame) {
                Ok(()) => L2Metrics::count(&metrics.gratuitous, ip),
                Err(error) => {
                    tracing::warn!(%ip, interface = %name, %error, "sending an announcement");
                }
            }
        }
    }
}

/// Reads the interfaces and opens, replaces or closes sockets to match.
fn attach(
    options: &ResponderOptions,
    announcer: &Arc<RwLock<Announcer>>,
    attached: &mut BTreeMap<String, Attached>,
    metrics: &Arc<L2Metrics>,
    shutdown: &CancellationToken,
) {
    let links = match Link::scan(&options.class_net, &options.if_inet6) {
        Ok(links) => links,
        Err(error) => {
            tracing::warn!(%error, "reading the interfaces");
            return;
        }
    };
    let mut seen = BTreeSet::new();
    for link in links {
        let wants = responders(&link, &options.exclusions);
        if !wants.arp && !wants.ndp {
            continue;
        }
        seen.insert(link.name.clone());
        if let Some(was) = attached.get(&link.name)
            && was.index == link.index
            && was.mac == link.mac
            && was.arp.is_some() == wants.arp
            && was.ndp.is_some() == wants.ndp
        {
            continue;
        }
        let stop = shutdown.child_token();
        let open = |kind| match PacketSocket::open(link.index, kind) {
            Ok(socket) => Some(Arc::new(socket)),
            Err(error) => {
                tracing::warn!(interface = %link.name, ?kind, %error, "opening a packet socket");
                None
            }
        };
        let arp = if wants.arp { open(Kind::Arp) } else { None };
        let ndp = if wants.ndp { open(Kind::Ndp) } else { None };
        for socket in arp.iter().chain(ndp.iter()) {
            tokio::spawn(serve(
                Arc::clone(socket),
                link.name.clone(),
                link.mac,
                Arc::clone(announcer),
                Arc::clone(metrics),
                stop.clone(),
            ));
        }
        tracing::info!(interface = %link.name, mac = %link.mac, arp = arp.is_some(), ndp = ndp.is_some(), "answering on interface");
        let fresh = Attached {
            index: link.index,
            mac: link.mac,
            arp,
            ndp,
            groups: BTreeSet::new(),
            stop,
        };
        attached.insert(link.name.clone(), fresh);
        // A new or changed interface hears every owned IP once.
        let owned: Vec<(IpAddr, BTreeSet<String>)> = announcer
            .read()
            .map(|a| a.owned().map(|(ip, i)| (ip, i.clone())).collect())
            .unwrap_or_default();
        if let Some((name, one)) = attached.get_key_value(&link.name) {
            for (ip, interfaces) in owned {
                announce(std::iter::once((name, one)), ip, &interfaces, metrics);
            }
        }
    }
    attached.retain(|name, _| {
        let keep = seen.contains(name);
        if !keep {
            tracing::info!(interface = %name, "interface gone or no longer answering");
        }
        keep
    });
    sync_groups(announcer, attached);
}

/// Puts every NDP socket in the solicited-node groups of the IPv6 addresses it answers for.
fn sync_groups(announcer: &Arc<RwLock<Announcer>>, attached: &mut BTreeMap<String, Attached>) {
    let Ok(announcer) = announcer.read() else {
        return;
    };
    for (name, link) in attached.iter_mut() {
        let Some(socket) = &link.ndp else {
            continue;
        };
        let wanted: BTreeSet<Mac> = announcer
            .owned()
            .filter_map(|(ip, interfaces)| match ip {
                IpAddr::V6(v6) if answers_on(interfaces, name) => {
                    Some(multicast_mac(solicited_node(v6)))
                }
                _ => None,
            })
            .collect();
        for mac in wanted.difference(&link.groups) {
            if let Err(error) = socket.multicast(*mac, true) {
                tracing::warn!(interface = %name, group = %mac, %error, "joining a multicast group");
            }
        }
        for mac in link.groups.difference(&wanted) {
            if let Err(error) = socket.multicast(*mac, false) {
                tracing::debug!(interface = %name, group = %mac, %error, "leaving a multicast group");
            }
        }
        link.groups = wanted;
    }
}

/// Answers what arrives on `socket` until `stop`.
async fn serve(
    socket: Arc<PacketSocket>,
    interface: String,
    mac: Mac,
    announcer: Arc<RwLock<Announcer>>,
    metrics: Arc<L2Metrics>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let received = tokio::select! {
            received = socket.recv(&mut buf) => received,
            () = stop.cancelled() => return,
        };
        let len = match received {
            Ok(len) => len,
            Err(error) => {
                tracing::warn!(%interface, kind = ?socket.kind(), %error, "receiving; closing the socket");
                return;
            }
        };
        let answer = announcer
            .read()
            .ok()
            .and_then(|a| a.answer(&interface, mac, &buf[..len]));
        let Some((ip, frame)) = answer else {
            continue;
        };
        L2Metrics::count(&metrics.requests, ip);
        match socket.send(&frame) {
            Ok(()) => L2Metrics::count(&metrics.responses, ip),
            Err(error) => tracing::warn!(%interface, %ip, %error, "answering"),
        }
    }
}

/// rtnetlink groups: links, IPv4 and IPv6 addresses.
const GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// A netlink socket that becomes readable on every link or address change.
fn link_events() -> nix::Result<AsyncFd<OwnedFd>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, GROUPS))?;
    register(fd).map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

async fn readable(fd: Option<&AsyncFd<OwnedFd>>) -> bool {
    match fd {
        Some(fd) => match fd.readable().await {
            Ok(mut guard) => {
                guard.clear_ready();
                true
            }
            Err(_) => false,
        },
        None => std::future::pending().await,
    }
}

/// Reads and drops the pending events (their content does not matter: interfaces are read
/// again from sysfs).
fn drain(fd: &AsyncFd<OwnedFd>) {
    let mut buf = [0u8; 8192];
    while recv(fd.get_ref().as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
}

//! The FRR configuration of one node as data, in the exact order and form FRR 8.4's
//! `show running-config` prints it, so the rendered file and the running configuration can be
//! compared line by line and a reload never finds a spurious difference.
//!
//! [`build`] decides everything: which routers, neighbours, lists and route-maps exist, their
//! names, their order and their sequence numbers. The templates only print. Canonical-form
//! rules learnt from FRR itself: defaults are left out (`port 179`, BFD `detect-multiplier 3`,
//! intervals 300, echo 50, `minimum-ttl 254`), `ebgp-multihop` is printed with its TTL 255,
//! `neighbor X bfd` stands beside `neighbor X bfd profile P`, well-known communities print by
//! name, neighbours print interfaces first then IPv4 then IPv6 in address order, networks print
//! in prefix order, and `no ip forwarding` appears exactly when the node does not forward.
//!
//! Naming, stable for the same input:
//! - a neighbour's ID is its address or interface, plus `-VRF` in a VRF;
//! - the prefixes a neighbour receives are partitioned by the attributes they get;
//!   `ID-ATTRS-ipv4|ipv6` lists one part, ATTRS being `plain` (no attributes) or the attributes
//!   joined by `-` (`lp200`, `c64500:100`, `lc64500:1:2`; a hash `aXXXXXXXX` when long), and is
//!   matched by one route-map entry that sets them all; a neighbour's route-map permits exactly
//!   what its lists hold;
//! - `ID-out-HASH` is the outbound route-map, named by a hash of its entries, so a route-map's
//!   contents never change: a different policy is a new route-map, which FRR applies at once
//!   (edits to an attached route-map wait for FRR's 5 s route-map delay timer);
//! - `ferrolb-in` denies every received route: ferrolb announces and never learns;
//! - prefix-list sequence numbers are a hash of the entry's text, so adding or removing one
//!   prefix never renumbers the others;
//! - a list that holds every network inside a pool CIDR holds `CIDR le 32|128` instead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::Serialize;

use crate::bgp::{NodeIntent, RouteAttributes, SessionIntent};
use crate::config::{BfdProfile, BgpCommunity, Config, PeerEndpoint};
use crate::views::NodeView;

use super::commands::{Line, NotFrrText, Word, defaults};

mod policy;
pub(in crate::frr) use policy::span;
use policy::{FamilyNetworks, SeqCache, outbound_policy};

/// The route-map every neighbour uses inbound.
pub(crate) const INBOUND_ROUTE_MAP: &str = "ferrolb-in";
/// FRR's subgroup coalesce time we set, in ms (FRR's default is 1000).
pub(crate) const COALESCE_TIME_MS: u32 = 100;

/// Node facts FRR prints that are not in the intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeFacts {
    /// `net.ipv4.ip_forward` is on (zebra prints `no ip forwarding` otherwise).
    pub ipv4_forwarding: bool,
    /// `net.ipv6.conf.all.forwarding` is on.
    pub ipv6_forwarding: bool,
}

impl Default for NodeFacts {
    /// Kubernetes nodes forward both families.
    fn default() -> Self {
        NodeFacts {
            ipv4_forwarding: true,
            ipv6_forwarding: true,
        }
    }
}

/// A whole frr.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FrrConfig {
    /// `log stdout LEVEL`.
    pub log_level: Word,
    /// Print `no ip forwarding`.
    pub no_ipv4_forwarding: bool,
    /// Print `no ipv6 forwarding`.
    pub no_ipv6_forwarding: bool,
    /// `router bgp` blocks: the default VRF first, then VRFs by name.
    pub routers: Vec<Router>,
    /// IPv4 prefix-lists, by name (print order).
    pub ipv4_prefix_lists: Vec<PrefixList>,
    /// IPv6 prefix-lists, by name (print order).
    pub ipv6_prefix_lists: Vec<PrefixList>,
    /// Route-maps, by name (print order).
    pub route_maps: Vec<RouteMap>,
    /// `bgp route-map delay-timer N`; `None` for FRR's default (not printed).
    pub route_map_delay: Option<u32>,
    /// Next hops resolve through the default route (`ip|ipv6 nht resolve-via-default`:
    /// printed by FRR 8.4, FRR 10's default).
    pub nht_resolve_via_default: bool,
    /// BFD profiles by name.
    pub bfd_profiles: Vec<BfdProfileConfig>,
}

/// One `router bgp` block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Router {
    /// The local AS.
    pub asn: u32,
    /// The VRF, `None` for the default one.
    pub vrf: Option<Word>,
    /// `bgp router-id`.
    pub router_id: Option<Ipv4Addr>,
    /// `coalesce-time`.
    pub coalesce_time: u32,
    /// Neighbours, in FRR's order.
    pub neighbors: Vec<Neighbor>,
    /// `address-family ipv4 unicast`, if it has anything.
    pub ipv4: Option<AddressFamily>,
    /// `address-family ipv6 unicast`, if it has anything.
    pub ipv6: Option<AddressFamily>,
}

/// One neighbour's session lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Neighbor {
    /// The address or interface, as FRR names the neighbour.
    pub peer: Word,
    /// An unnumbered (interface) neighbour.
    pub interface: bool,
    /// `remote-as` value: a number, `internal` or `external`.
    pub remote_as: Word,
    /// `local-as X no-prepend replace-as`.
    pub local_as: Option<u32>,
    /// `bfd` + `bfd profile P` (profile name).
    pub bfd_profile: Option<Word>,
    /// `password`.
    pub password: Option<Word>,
    /// `port`, when not 179.
    pub port: Option<u16>,
    /// `ebgp-multihop 255` (FRR 10 prints it without the hop count).
    pub ebgp_multihop: bool,
    /// `disable-connected-check`.
    pub disable_connected_check: bool,
    /// `update-source`.
    pub update_source: Option<Word>,
    /// `timers KEEPALIVE HOLD` in seconds.
    pub timers: Option<(u64, u64)>,
    /// `timers connect N` in seconds.
    pub connect_time: Option<u64>,
    /// `graceful-restart`.
    pub graceful_restart: bool,
}

/// One address family block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddressFamily {
    /// `network` lines, in prefix order.
    pub networks: Vec<IpNet>,
    /// Activated neighbours, in neighbour order.
    pub neighbors: Vec<NeighborPolicy>,
}

/// A neighbour's activation and route-maps in one family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NeighborPolicy {
    /// The neighbour, as in [`Neighbor::peer`].
    pub peer: Word,
    /// Inbound route-map.
    pub route_map_in: Word,
    /// Outbound route-map.
    pub route_map_out: Word,
}

/// A prefix-list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrefixList {
    /// Name.
    pub name: Word,
    /// Entries by sequence number.
    pub entries: Vec<PrefixListEntry>,
}

/// One prefix-list line. Serialised as `[seq, action, prefix or null, le or null]`: lists are
/// the bulk of a large configuration, and arrays are the cheapest shape for the template engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixListEntry {
    /// Sequence number.
    pub seq: u32,
    /// `permit` or `deny`.
    pub action: &'static str,
    /// The prefix; `None` is `any`.
    pub prefix: Option<IpNet>,
    /// `le N`: the entry matches every prefix inside `prefix` up to length N.
    pub le: Option<u8>,
}

impl RouteMap {
    /// A route-map with one entry that denies every route.
    pub fn deny_all(name: Word) -> RouteMap {
        RouteMap {
            name,
            entries: vec![RouteMapEntry {
                action: "deny",
                seq: 1,
                match_prefix_list: None,
                set: Vec::new(),
            }],
        }
    }
}

impl Serialize for PrefixListEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.seq, self.action, self.prefix, self.le).serialize(serializer)
    }
}

/// A route-map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteMap {
    /// Name.
    pub name: Word,
    /// Entries by sequence number.
    pub entries: Vec<RouteMapEntry>,
}

/// One route-map entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteMapEntry {
    /// `permit` or `deny`.
    pub action: &'static str,
    /// Sequence number.
    pub seq: u32,
    /// `match ip|ipv6 address prefix-list NAME`: (`ip` or `ipv6`, list name).
    pub match_prefix_list: Option<(&'static str, Word)>,
    /// The `set` lines, without `set `, in FRR's order.
    pub set: Vec<Line>,
}

/// A BFD profile with only the non-default fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BfdProfileConfig {
    /// Name.
    pub name: Word,
    /// `detect-multiplier`.
    pub detect_multiplier: Option<u32>,
    /// `transmit-interval`.
    pub transmit_interval: Option<u32>,
    /// `receive-interval`.
    pub receive_interval: Option<u32>,
    /// `passive-mode`.
    pub passive_mode: bool,
    /// `echo-mode`.
    pub echo_mode: bool,
    /// `echo transmit-interval` and `echo receive-interval`.
    pub echo_interval: Option<u32>,
    /// `minimum-ttl`.
    pub minimum_ttl: Option<u32>,
}

/// Builds the node's FRR configuration from its intent. Every name and secret from the
/// configuration is checked on its way in ([`Word`]); one that is not a word (the loader
/// refuses those first) is an error.
pub fn build(
    config: &Config,
    intent: &NodeIntent,
    node: &NodeView,
    facts: NodeFacts,
) -> Result<FrrConfig, NotFrrText> {
    let mut out = FrrConfig {
        log_level: Word::of("informational"),
        no_ipv4_forwarding: !facts.ipv4_forwarding,
        no_ipv6_forwarding: !facts.ipv6_forwarding,
        nht_resolve_via_default: true,
        route_map_delay: Some(defaults::ROUTE_MAP_DELAY_S)
            .filter(|s| *s != defaults::FRR_ROUTE_MAP_DELAY_S),
        bfd_profiles: config
            .bfd_profiles
            .values()
            .map(bfd_profile)
            .collect::<Result<_, _>>()?,
        ..FrrConfig::default()
    };
    let router_id = intent
        .sessions
        .iter()
        .find_map(|s| s.peer.router_id)
        .or_else(|| node_router_id(node));
    let mut by_vrf: BTreeMap<Option<&str>, Vec<&SessionIntent>> = BTreeMap::new();
    for session in &intent.sessions {
        by_vrf
            .entry(session.peer.vrf.as_deref())
            .or_default()
            .push(session);
    }
    let mut pool_cidrs: [BTreeSet<IpNet>; 2] = Default::default();
    for cidr in config.pools.values().flat_map(|p| p.cidrs()) {
        pool_cidrs[usize::from(matches!(cidr, IpNet::V6(_)))].insert(*cidr);
    }
    let mut route_maps = Vec::new();
    let mut seqs = SeqCache::default();
    for (vrf, mut sessions) in by_vrf {
        sessions.sort_by(|a, b| frr_peer_order(&a.peer.endpoint, &b.peer.endpoint));
        let mut router = Router {
            asn: sessions[0].peer.my_asn,
            vrf: vrf.map(Word::new).transpose()?,
            router_id,
            coalesce_time: COALESCE_TIME_MS,
            neighbors: Vec::new(),
            ipv4: None,
            ipv6: None,
        };
        // In prefix order, each once: one session's keys already are.
        let mut split: [Vec<IpNet>; 2] = Default::default();
        for session in &sessions {
            for prefix in session.announcements.keys() {
                split[usize::from(matches!(prefix, IpNet::V6(_)))].push(*prefix);
            }
        }
        if sessions.len() > 1 {
            for networks in &mut split {
                networks.sort_unstable();
                networks.dedup();
            }
        }
        let [nets4, nets6] = split;
        let networks = [
            FamilyNetworks::new(nets4, &pool_cidrs[0]),
            FamilyNetworks::new(nets6, &pool_cidrs[1]),
        ];
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for session in sessions {
            let id = neighbor_id(session);
            let neighbor = neighbor(session)?;
            let peer = neighbor.peer.clone();
            router.neighbors.push(neighbor);
            let policy = outbound_policy(&id, session, &networks, &mut seqs);
            let route_map_out = policy.route_map.name.clone();
            out.ipv4_prefix_lists.extend(policy.ipv4_lists);
            out.ipv6_prefix_lists.extend(policy.ipv6_lists);
            route_maps.push(policy.route_map);
            let entry = NeighborPolicy {
                peer,
                route_map_in: Word::of(INBOUND_ROUTE_MAP),
                route_map_out,
            };
            if session.carries_ipv4() {
                v4.push(entry.clone());
            }
            if session.carries_ipv6() {
                v6.push(entry);
            }
        }
        let [nets4, nets6] = networks.map(|n| n.networks);
        router.ipv4 = family(nets4, v4);
        router.ipv6 = family(nets6, v6);
        out.routers.push(router);
    }
    if !out.routers.is_empty() {
        route_maps.push(RouteMap::deny_all(Word::of(INBOUND_ROUTE_MAP)));
    }
    out.route_maps = route_maps;
    // By name, the order FRR 10 prints them in (and FRR 8.4 prints a file's).
    out.ipv4_prefix_lists.sort_by(|a, b| a.name.cmp(&b.name));
    out.ipv6_prefix_lists.sort_by(|a, b| a.name.cmp(&b.name));
    out.route_maps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn family(networks: Vec<IpNet>, neighbors: Vec<NeighborPolicy>) -> Option<AddressFamily> {
    (!networks.is_empty() || !neighbors.is_empty()).then_some(AddressFamily {
        networks,
        neighbors,
    })
}

/// The neighbour's ID used in list and route-map names.
pub(crate) fn neighbor_id(session: &SessionIntent) -> String {
    match &session.peer.vrf {
        Some(vrf) => format!("{}-{vrf}", session.peer.endpoint),
        None => session.peer.endpoint.to_string(),
    }
}

/// FRR lists neighbours with interface names first (by name), then IPv4, then IPv6 addresses,
/// each in numeric order.
fn frr_peer_order(a: &PeerEndpoint, b: &PeerEndpoint) -> std::cmp::Ordering {
    fn key(e: &PeerEndpoint) -> (u8, &str, Option<IpAddr>) {
        match e {
            PeerEndpoint::Interface(name) => (0, name.as_str(), None),
            PeerEndpoint::Address(IpAddr::V4(a)) => (1, "", Some(IpAddr::V4(*a))),
            PeerEndpoint::Address(IpAddr::V6(a)) => (2, "", Some(IpAddr::V6(*a))),
        }
    }
    key(a).cmp(&key(b))
}

fn neighbor(session: &SessionIntent) -> Result<Neighbor, NotFrrText> {
    let peer = &session.peer;
    let ipv6_single_hop_ebgp = matches!(peer.endpoint, PeerEndpoint::Address(IpAddr::V6(_)))
        && !peer.ebgp_multihop
        && !peer.dual_stack_address_family
        && !peer.is_ibgp();
    Ok(Neighbor {
        peer: Word::new(peer.endpoint.to_string())?,
        interface: matches!(peer.endpoint, PeerEndpoint::Interface(_)),
        remote_as: Word::of(peer.peer_asn),
        local_as: peer.local_asn,
        bfd_profile: peer.bfd_profile.clone().map(Word::new).transpose()?,
        password: (peer.password.as_ref())
            .map(|p| Word::new(p.expose()))
            .transpose()?,
        port: (peer.port != 179).then_some(peer.port),
        ebgp_multihop: peer.ebgp_multihop,
        disable_connected_check: ipv6_single_hop_ebgp,
        update_source: peer.source_address.map(Word::of),
        timers: peer
            .timers
            .map(|t| (t.keepalive.as_secs(), t.hold.as_secs())),
        connect_time: peer.connect_time.map(|d| d.as_secs()),
        graceful_restart: peer.graceful_restart,
    })
}

fn bfd_profile(p: &BfdProfile) -> Result<BfdProfileConfig, NotFrrText> {
    let unless = |v: Option<u32>, default: u32| v.filter(|v| *v != default);
    Ok(BfdProfileConfig {
        name: Word::new(p.name.as_str())?,
        detect_multiplier: unless(p.detect_multiplier, defaults::BFD_DETECT_MULTIPLIER),
        transmit_interval: unless(p.transmit_interval, defaults::BFD_INTERVAL_MS),
        receive_interval: unless(p.receive_interval, defaults::BFD_INTERVAL_MS),
        passive_mode: p.passive_mode,
        echo_mode: p.echo_mode,
        echo_interval: unless(p.echo_interval, defaults::BFD_ECHO_INTERVAL_MS),
        minimum_ttl: unless(p.minimum_ttl, defaults::BFD_MINIMUM_TTL),
    })
}

/// The router ID when no BGPPeer sets one: the node's first IPv4 address (its InternalIP).
/// Left to itself FRR takes the highest address on any interface, which on a node can be a
/// Service IP (kube-proxy in IPVS mode puts every one on `kube-ipvs0`): the same ID on every
/// node, which an iBGP route reflector's clients take for their own routes (MetalLB and
/// frr-k8s leave it to FRR). A node known to have only IPv6 addresses gets one derived from
/// its name (CRC-32, as frr-k8s does), stable and distinct; one whose addresses are not
/// known gets none, and FRR picks.
fn node_router_id(node: &NodeView) -> Option<Ipv4Addr> {
    if let Some(IpAddr::V4(v4)) = node.addresses.iter().find(|a| a.is_ipv4()) {
        return Some(*v4);
    }
    if node.addresses.is_empty() {
        return None;
    }
    Some(Ipv4Addr::from(crc32(node.name.as_bytes())))
}

/// CRC-32 (IEEE 802.3), bitwise.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests;

//! The checked configuration: what every other part of ferrolb consumes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;

pub(super) use super::addresses::AddressEntry;
pub(super) use super::community::BgpCommunity;
use super::error::ConfigWarning;
pub(super) use super::selector::Selector;
use super::selector::any_matches;

/// A loaded, consistent configuration. Maps are keyed by object name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// The namespace the configuration was read from.
    pub namespace: String,
    /// Address pools.
    pub pools: BTreeMap<String, Pool>,
    /// BGP peers.
    pub peers: BTreeMap<String, Peer>,
    /// BFD profiles.
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
    /// BGP advertisements.
    pub bgp_advertisements: BTreeMap<String, BgpAdvertisement>,
    /// L2 advertisements.
    pub l2_advertisements: BTreeMap<String, L2Advertisement>,
    /// Community aliases from Community objects.
    pub community_aliases: BTreeMap<String, BgpCommunity>,
    /// What was accepted but deserves a look.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// The pool holding every one of `ips` (honouring each pool's avoidBuggyIPs), if there is
    /// one: where a Service's IPs come from, for announcing and for explaining. The allocator
    /// decides with the same rule ([`Pool::contains`]).
    pub fn pool_of(&self, ips: &[IpAddr]) -> Option<&Pool> {
        let first = *ips.first()?;
        let pool = self.pools.values().find(|p| p.contains(first))?;
        ips.iter().all(|ip| pool.contains(*ip)).then_some(pool)
    }
}

/// An address pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// The pool's labels (for ipAddressPoolSelectors).
    pub labels: BTreeMap<String, String>,
    /// The address entries in the order written.
    pub entries: Vec<AddressEntry>,
    /// Whether Services get addresses from the pool without asking for it.
    pub auto_assign: bool,
    /// Whether IPv4 addresses ending in .0 and .255 are skipped.
    pub avoid_buggy_ips: bool,
    /// Restriction to namespaces/Services, if any.
    pub allocation: Option<PoolAllocation>,
    /// Names of the BGPAdvertisements that announce this pool.
    pub bgp_advertisements: BTreeSet<String>,
    /// Names of the L2Advertisements that announce this pool.
    pub l2_advertisements: BTreeSet<String>,
}

impl Pool {
    /// All CIDR blocks of the pool, in entry order.
    pub fn cidrs(&self) -> impl Iterator<Item = &IpNet> {
        self.entries.iter().flat_map(|e| e.cidrs.iter())
    }

    /// Whether the pool holds IPv4 addresses.
    pub fn has_ipv4(&self) -> bool {
        self.entries.iter().any(AddressEntry::is_ipv4)
    }

    /// Whether the pool holds IPv6 addresses.
    pub fn has_ipv6(&self) -> bool {
        self.entries.iter().any(|e| !e.is_ipv4())
    }

    /// Whether `ip` belongs to the pool (honouring avoidBuggyIPs).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.avoid_buggy_ips && is_buggy(ip) {
            return false;
        }
        self.cidrs().any(|c| c.contains(&ip))
    }
}

/// True for IPv4 addresses ending in .0 or .255, which some old devices mishandle.
pub fn is_buggy(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255))
}

/// A pool's `serviceAllocation`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolAllocation {
    /// Lower first; 0 (unset) is tried last.
    pub priority: i32,
    /// Namespaces listed, plus those matched by namespaceSelectors at load time.
    pub namespaces: BTreeSet<String>,
    /// The namespaceSelectors, kept to re-resolve when Namespaces change.
    pub namespace_selectors: Vec<Selector>,
    /// Service selectors. A serviceAllocation with no namespaces and no selectors matches
    /// every Service (MetalLB's rule), expressed as one selector that matches everything.
    pub service_selectors: Vec<Selector>,
}

/// How the router's AS number is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerAsn {
    /// A fixed AS number.
    Number(u32),
    /// Any AS number equal to ours.
    Internal,
    /// Any AS number different from ours.
    External,
}

impl PeerAsn {
    /// True when a session from `my_asn` to this AS is iBGP.
    pub fn is_internal_to(self, my_asn: u32) -> bool {
        match self {
            PeerAsn::Number(n) => n == my_asn,
            PeerAsn::Internal => true,
            PeerAsn::External => false,
        }
    }
}

impl fmt::Display for PeerAsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAsn::Number(n) => write!(f, "{n}"),
            PeerAsn::Internal => f.write_str("internal"),
            PeerAsn::External => f.write_str("external"),
        }
    }
}

/// Where the session goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerEndpoint {
    /// A router address.
    Address(IpAddr),
    /// An unnumbered session over a node interface.
    Interface(String),
}

impl fmt::Display for PeerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerEndpoint::Address(a) => write!(f, "{a}"),
            PeerEndpoint::Interface(i) => f.write_str(i),
        }
    }
}

/// BGP hold and keepalive, after MetalLB's derivation (one given ⇒ the other follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timers {
    /// Hold time.
    pub hold: Duration,
    /// Keepalive interval.
    pub keepalive: Duration,
}

/// A TCP MD5 password. Never printed: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Password(String);

impl Password {
    /// Wraps a checked password.
    pub(crate) fn new(value: String) -> Self {
        Password(value)
    }

    /// The password itself, for the one place that must write it (frr.conf).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A BGP peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The BGPPeer's name.
    pub name: String,
    /// Our AS number.
    pub my_asn: u32,
    /// The router's AS number.
    pub peer_asn: PeerAsn,
    /// AS number presented instead of `my_asn`.
    pub local_asn: Option<u32>,
    /// Address or interface.
    pub endpoint: PeerEndpoint,
    /// Source address of the session.
    pub source_address: Option<IpAddr>,
    /// TCP port (179 unless set).
    pub port: u16,
    /// Hold/keepalive; `None` keeps FRR's defaults.
    pub timers: Option<Timers>,
    /// Connect retry interval.
    pub connect_time: Option<Duration>,
    /// Router ID.
    pub router_id: Option<Ipv4Addr>,
    /// Nodes that open this session; empty means all.
    pub node_selectors: Vec<Selector>,
    /// The password, from `password` or from the referenced Secret.
    pub password: Option<Password>,
    /// The Secret the password came from, if any.
    pub password_secret: Option<String>,
    /// BFD profile name.
    pub bfd_profile: Option<String>,
    /// Graceful restart.
    pub graceful_restart: bool,
    /// eBGP multi-hop.
    pub ebgp_multihop: bool,
    /// VRF name.
    pub vrf: Option<String>,
    /// Both address families on one session.
    pub dual_stack_address_family: bool,
}

impl Peer {
    /// Whether a node with these labels opens this session.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        any_matches(&self.node_selectors, labels)
    }

    /// True when the session is iBGP (same AS on both ends).
    pub fn is_ibgp(&self) -> bool {
        self.peer_asn.is_internal_to(self.my_asn)
    }
}

/// A BFD profile; unset fields keep FRR's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BfdProfile {
    /// Profile name.
    pub name: String,
    /// Receive interval, ms.
    pub receive_interval: Option<u32>,
    /// Transmit interval, ms.
    pub transmit_interval: Option<u32>,
    /// Detect multiplier.
    pub detect_multiplier: Option<u32>,
    /// Echo interval, ms.
    pub echo_interval: Option<u32>,
    /// Echo mode.
    pub echo_mode: bool,
    /// Passive mode.
    pub passive_mode: bool,
    /// Minimum TTL (multi-hop).
    pub minimum_ttl: Option<u32>,
}

/// A BGP advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpAdvertisement {
    /// Name.
    pub name: String,
    /// IPv4 aggregation length (32 = none).
    pub aggregation_length: u8,
    /// IPv6 aggregation length (128 = none).
    pub aggregation_length_v6: u8,
    /// LOCAL_PREF, if set (0 counts as unset, as in MetalLB).
    pub local_pref: Option<u32>,
    /// Communities, aliases resolved.
    pub communities: BTreeSet<BgpCommunity>,
    /// The pools this advertisement announces.
    pub pools: BTreeSet<String>,
    /// Announcing nodes; empty means all.
    pub node_selectors: Vec<Selector>,
    /// Receiving peers by name; empty means all.
    pub peers: BTreeSet<String>,
    /// Services announced; empty means all.
    pub service_selectors: Vec<Selector>,
}

impl BgpAdvertisement {
    /// Whether a node with these labels announces through this advertisement.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        any_matches(&self.node_selectors, labels)
    }

    /// Whether the named peer receives this advertisement.
    pub fn reaches_peer(&self, peer: &str) -> bool {
        self.peers.is_empty() || self.peers.contains(peer)
    }
}

/// A weighted node preference of an L2Advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePreference {
    /// Weight, 1–100.
    pub weight: u32,
    /// Preferred nodes.
    pub selector: Selector,
}

/// An L2 advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Advertisement {
    /// Name.
    pub name: String,
    /// The pools this advertisement announces.
    pub pools: BTreeSet<String>,
    /// Nodes that may announce; empty means all.
    pub node_selectors: Vec<Selector>,
    /// Interfaces; empty means all suitable ones.
    pub interfaces: BTreeSet<String>,
    /// Services announced; empty means all.
    pub service_selectors: Vec<Selector>,
    /// Soft preferences among the eligible nodes.
    pub preferred_nodes: Vec<NodePreference>,
}

impl L2Advertisement {
    /// Whether a node with these labels may announce through this advertisement.
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        any_matches(&self.node_selectors, labels)
    }
}

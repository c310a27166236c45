//! Each neighbour's outbound policy: its prefix-lists, partitioned by the attributes the
//! advertisements give their prefixes, and the route-map that sets those attributes; the
//! sequence numbers and names that keep both stable from one configuration to the next.

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::*;

pub(super) struct OutboundPolicy {
    pub(super) ipv4_lists: Vec<PrefixList>,
    pub(super) ipv6_lists: Vec<PrefixList>,
    pub(super) route_map: RouteMap,
}

/// The router's announced networks of one family, and how many of them lie in each pool CIDR
/// of that family: what a prefix-list may cover with one `CIDR le MAX` entry.
pub(super) struct FamilyNetworks {
    /// In prefix order, each once.
    pub(super) networks: Vec<IpNet>,
    pub(super) ranges: Vec<(IpNet, usize)>,
}

impl FamilyNetworks {
    pub(super) fn new(networks: Vec<IpNet>, pool_cidrs: &BTreeSet<IpNet>) -> FamilyNetworks {
        let ranges = pool_cidrs
            .iter()
            .filter(|c| c.prefix_len() < c.max_prefix_len())
            .map(|c| (*c, within(&networks, c).count()))
            .filter(|(_, n)| *n >= MIN_RANGE_MEMBERS)
            .collect();
        FamilyNetworks { networks, ranges }
    }
}

/// The lowest and highest prefixes, in `IpNet` order, that lie inside `cidr`.
pub(in crate::frr) fn span(cidr: &IpNet) -> (IpNet, IpNet) {
    match cidr {
        IpNet::V4(c) => (
            IpNet::V4(ipnet::Ipv4Net::new_assert(c.network(), 0)),
            IpNet::V4(ipnet::Ipv4Net::new_assert(c.broadcast(), 32)),
        ),
        IpNet::V6(c) => (
            IpNet::V6(ipnet::Ipv6Net::new_assert(c.network(), 0)),
            IpNet::V6(ipnet::Ipv6Net::new_assert(c.broadcast(), 128)),
        ),
    }
}

/// A range entry replaces at least this many single-prefix entries.
pub(super) const MIN_RANGE_MEMBERS: usize = 2;

/// The networks of `networks` (sorted) that lie inside `cidr`.
pub(super) fn within<'a>(
    networks: &'a [IpNet],
    cidr: &'a IpNet,
) -> impl Iterator<Item = &'a IpNet> {
    let (low, high) = span(cidr);
    let from = networks.partition_point(|n| *n < low);
    let to = networks.partition_point(|n| *n <= high);
    networks[from..to]
        .iter()
        .filter(move |n| n.prefix_len() >= cidr.prefix_len())
}

/// The outbound policy of one neighbour. Its prefixes are partitioned by the attributes they
/// get; each part is one prefix-list and one route-map entry that sets all of them. A part
/// that holds every network of the router inside a pool CIDR lists that CIDR once
/// (`permit CIDR le 32`) instead of each prefix: exact, because the router's BGP table holds
/// only its networks, and a pool's Services then cost one line per neighbour, not one each.
pub(super) fn outbound_policy(
    id: &str,
    session: &SessionIntent,
    networks: &[FamilyNetworks; 2],
    seqs: &mut SeqCache,
) -> OutboundPolicy {
    // Few distinct attribute sets, and runs of prefixes sharing one: the last set used is
    // tried first. Parts end in attribute order.
    let mut parts: [Vec<(&RouteAttributes, Vec<IpNet>)>; 2] = Default::default();
    let mut last = [0usize; 2];
    for (prefix, attributes) in &session.announcements {
        let f = usize::from(matches!(prefix, IpNet::V6(_)));
        let part = &mut parts[f];
        if part.get(last[f]).is_none_or(|(a, _)| *a != attributes) {
            last[f] = match part.iter().position(|(a, _)| *a == attributes) {
                Some(at) => at,
                None => {
                    part.push((attributes, Vec::new()));
                    part.len() - 1
                }
            };
        }
        part[last[f]].1.push(*prefix);
    }
    for part in &mut parts {
        part.sort_by(|a, b| a.0.cmp(b.0));
    }
    let mut entries = Vec::new();
    let mut out_lists: [Vec<PrefixList>; 2] = Default::default();
    for f in 0..2 {
        for (attributes, prefixes) in &parts[f] {
            let name = Word::of(format!(
                "{id}-{}-{}",
                attributes_word(attributes),
                FAMILIES[f].1
            ));
            entries.push(RouteMapEntry {
                action: "permit",
                seq: 0,
                match_prefix_list: Some((FAMILIES[f].0, name.clone())),
                set: set_lines(attributes),
            });
            out_lists[f].push(prefix_list(name, prefixes, &networks[f], seqs));
        }
    }
    if entries.is_empty() {
        entries.push(RouteMapEntry {
            action: "deny",
            seq: 0,
            match_prefix_list: None,
            set: Vec::new(),
        });
    }
    for (i, entry) in entries.iter_mut().enumerate() {
        entry.seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    let name = Word::of(format!("{id}-out-{:08x}", route_map_hash(&entries)));
    let [ipv4_lists, ipv6_lists] = out_lists;
    OutboundPolicy {
        ipv4_lists,
        ipv6_lists,
        route_map: RouteMap { name, entries },
    }
}

/// Longest attribute part of a list name; longer ones are replaced by a hash.
pub(super) const MAX_ATTRIBUTES_WORD: usize = 48;

/// The attributes as a name part: `plain`, or e.g. `lp200-c64500:100-lc64500:1:2`.
pub(super) fn attributes_word(attributes: &RouteAttributes) -> String {
    let mut parts = Vec::new();
    if let Some(lp) = attributes.local_pref {
        parts.push(format!("lp{lp}"));
    }
    for community in &attributes.communities {
        parts.push(match *community {
            BgpCommunity::Standard(a, b) => format!("c{a}:{b}"),
            BgpCommunity::Large(a, b, c) => format!("lc{a}:{b}:{c}"),
        });
    }
    if parts.is_empty() {
        return "plain".to_string();
    }
    let word = parts.join("-");
    if word.len() <= MAX_ATTRIBUTES_WORD {
        word
    } else {
        format!("a{:08x}", fnv1a(word.as_bytes()))
    }
}

/// The `set` lines (without `set `) of a route-map entry, in the order FRR prints them
/// (by command name).
pub(super) fn set_lines(attributes: &RouteAttributes) -> Vec<Line> {
    let mut lines = Vec::new();
    let words = |large: bool| -> Vec<String> {
        attributes
            .communities
            .iter()
            .filter(|c| c.is_large() == large)
            .map(|c| match *c {
                BgpCommunity::Standard(a, b) => community_word(a, b),
                BgpCommunity::Large(a, b, c) => format!("{a}:{b}:{c}"),
            })
            .collect()
    };
    let standard = words(false);
    if !standard.is_empty() {
        lines.push(Line::of(format!(
            "community {} additive",
            standard.join(" ")
        )));
    }
    let large = words(true);
    if !large.is_empty() {
        lines.push(Line::of(format!(
            "large-community {} additive",
            large.join(" ")
        )));
    }
    if let Some(lp) = attributes.local_pref {
        lines.push(Line::of(format!("local-preference {lp}")));
    }
    lines
}

/// Sequence numbers of list entries, computed once per entry text and shared by every list.
#[derive(Default)]
pub(super) struct SeqCache(pub(super) std::collections::HashMap<(IpNet, bool), u32>);

impl SeqCache {
    pub(super) fn seq(&mut self, prefix: IpNet, range: bool) -> u32 {
        *self.0.entry((prefix, range)).or_insert_with(|| {
            let text = if range {
                format!("{prefix} le {}", prefix.max_prefix_len())
            } else {
                prefix.to_string()
            };
            prefix_seq(&text)
        })
    }
}

/// (`match` keyword, list-name suffix) per family index.
pub(super) const FAMILIES: [(&str, &str); 2] = [("ip", "ipv4"), ("ipv6", "ipv6")];

/// A prefix-list permitting `prefixes` (given in prefix order). A pool CIDR whose every network
/// is in `prefixes` becomes one range entry. Entries are ordered by sequence number, as FRR
/// prints them.
pub(super) fn prefix_list(
    name: Word,
    prefixes: &[IpNet],
    networks: &FamilyNetworks,
    seqs: &mut SeqCache,
) -> PrefixList {
    let mut covered = vec![false; prefixes.len()];
    let mut ranges = Vec::new();
    for (cidr, count) in &networks.ranges {
        let low = prefixes.partition_point(|p| p.addr() < cidr.network());
        let high = prefixes.partition_point(|p| p.addr() <= cidr.broadcast());
        let inside: Vec<usize> = (low..high)
            .filter(|i| prefixes[*i].prefix_len() >= cidr.prefix_len())
            .collect();
        if inside.len() == *count {
            inside.iter().for_each(|i| covered[*i] = true);
            ranges.push(*cidr);
        }
    }
    let mut used = std::collections::HashSet::new();
    let mut entries = Vec::new();
    let mut add = |prefix: IpNet, range: bool, seqs: &mut SeqCache| {
        let mut seq = seqs.seq(prefix, range);
        while !used.insert(seq) {
            seq = if seq >= MAX_HASHED_SEQ { 1 } else { seq + 1 };
        }
        entries.push(PrefixListEntry {
            seq,
            action: "permit",
            prefix: Some(prefix),
            le: range.then(|| prefix.max_prefix_len()),
        });
    };
    for cidr in ranges {
        add(cidr, true, seqs);
    }
    for (prefix, _) in prefixes.iter().zip(&covered).filter(|(_, c)| !**c) {
        add(*prefix, false, seqs);
    }
    entries.sort_unstable_by_key(|e| e.seq);
    PrefixList { name, entries }
}

/// FRR sequence numbers go up to 4294967295; hashed ones stay below.
pub(super) const MAX_HASHED_SEQ: u32 = 4_294_967_294;

/// The sequence number of a prefix in any list: a hash of its text, 1..=MAX_HASHED_SEQ.
/// Collisions (rare) move to the next free number, in prefix order.
pub(crate) fn prefix_seq(prefix: &str) -> u32 {
    fnv1a(prefix.as_bytes()) % MAX_HASHED_SEQ + 1
}

pub(super) fn route_map_hash(entries: &[RouteMapEntry]) -> u32 {
    let mut text = String::new();
    for e in entries {
        text.push_str(&format!(
            "{} {} {:?} {:?}\n",
            e.action, e.seq, e.match_prefix_list, e.set
        ));
    }
    fnv1a(text.as_bytes())
}

/// 32-bit FNV-1a: a fixed, dependency-free hash whose values never change between builds.
pub(super) fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A standard community as FRR prints it: well-known values by name.
pub(crate) fn community_word(high: u16, low: u16) -> String {
    let name = match (high, low) {
        (0, 0) => "internet",
        (0xFFFF, 0) => "graceful-shutdown",
        (0xFFFF, 1) => "accept-own",
        (0xFFFF, 2) => "route-filter-translated-v4",
        (0xFFFF, 3) => "route-filter-v4",
        (0xFFFF, 4) => "route-filter-translated-v6",
        (0xFFFF, 5) => "route-filter-v6",
        (0xFFFF, 6) => "llgr-stale",
        (0xFFFF, 7) => "no-llgr",
        (0xFFFF, 8) => "accept-own-nexthop",
        (0xFFFF, 0x029A) => "blackhole",
        (0xFFFF, 0xFF01) => "no-export",
        (0xFFFF, 0xFF02) => "no-advertise",
        (0xFFFF, 0xFF03) => "local-AS",
        (0xFFFF, 0xFF04) => "no-peer",
        _ => return format!("{high}:{low}"),
    };
    name.to_string()
}

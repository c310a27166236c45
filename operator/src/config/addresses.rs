//! Pool address entries: CIDRs and ranges, parsed into CIDR blocks; overlap detection.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};

/// One entry of `IPAddressPool.spec.addresses` and the CIDR blocks it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressEntry {
    /// The entry as written.
    pub text: String,
    /// The blocks: one for a CIDR, the smallest cover for a range.
    pub cidrs: Vec<IpNet>,
}

impl AddressEntry {
    /// The shortest prefix length among the entry's blocks.
    pub fn shortest_prefix(&self) -> u8 {
        self.cidrs.iter().map(IpNet::prefix_len).min().unwrap_or(0)
    }

    /// True when the entry holds IPv4 addresses.
    pub fn is_ipv4(&self) -> bool {
        matches!(self.cidrs.first(), Some(IpNet::V4(_)))
    }
}

/// The result of parsing an entry: the blocks, and a note when the text was corrected.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedEntry {
    /// The parsed entry.
    pub entry: AddressEntry,
    /// Set when a CIDR had host bits, which were cleared (as MetalLB does).
    pub host_bits_cleared: Option<IpNet>,
}

/// Parses `10.0.0.0/24`, `fc00::/120`, or `10.0.0.1-10.0.0.9` (whitespace around the dash
/// allowed). A CIDR with host bits (`10.0.0.5/24`) is taken as its network, as MetalLB does.
pub fn parse_entry(text: &str) -> Result<ParsedEntry, String> {
    if let Some((start, end)) = text.split_once('-') {
        let start: IpAddr = start.trim().parse().map_err(|_| {
            format!(
                "{text:?} is not a valid range: {:?} is not an IP address",
                start.trim()
            )
        })?;
        let end: IpAddr = end.trim().parse().map_err(|_| {
            format!(
                "{text:?} is not a valid range: {:?} is not an IP address",
                end.trim()
            )
        })?;
        let cidrs: Vec<IpNet> = match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) if s <= e => {
                Ipv4Subnets::new(s, e, 0).map(IpNet::V4).collect()
            }
            (IpAddr::V6(s), IpAddr::V6(e)) if s <= e => {
                Ipv6Subnets::new(s, e, 0).map(IpNet::V6).collect()
            }
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                return Err(format!(
                    "{text:?} is not a valid range: the start {start} is after the end {end}"
                ));
            }
            _ => {
                return Err(format!(
                    "{text:?} is not a valid range: the start and the end are of different IP families"
                ));
            }
        };
        return Ok(ParsedEntry {
            entry: AddressEntry {
                text: text.to_string(),
                cidrs,
            },
            host_bits_cleared: None,
        });
    }
    let trimmed = text.trim();
    let net: IpNet = match trimmed.parse() {
        Ok(net) => net,
        Err(_) if trimmed.parse::<IpAddr>().is_ok() => {
            let width = if trimmed.contains(':') { 128 } else { 32 };
            return Err(format!(
                "{text:?} is a single address without a prefix length; write {trimmed}/{width} for one address"
            ));
        }
        Err(_) => {
            return Err(format!(
                "{text:?} is neither a CIDR (10.0.0.0/24) nor a range (10.0.0.1-10.0.0.9)"
            ));
        }
    };
    let network = net.trunc();
    let host_bits_cleared = (network != net).then_some(network);
    Ok(ParsedEntry {
        entry: AddressEntry {
            text: text.to_string(),
            cidrs: vec![network],
        },
        host_bits_cleared,
    })
}

/// Number of addresses in `net`, saturating at `u128::MAX`.
pub fn size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// A CIDR block tagged with where it was defined.
#[derive(Clone, Debug)]
pub(super) struct PlacedCidr<T> {
    /// The block.
    pub cidr: IpNet,
    /// Where it came from (pool and entry index, typically).
    pub origin: T,
}

/// Finds overlapping blocks. Returns pairs `(covering, overlapping)` where `overlapping`
/// starts inside `covering`; each block is reported against the first block it overlaps,
/// in address order. Runs in O(n log n).
pub(super) fn overlaps<T: Clone>(
    mut blocks: Vec<PlacedCidr<T>>,
) -> Vec<(PlacedCidr<T>, PlacedCidr<T>)> {
    // IpAddr orders every IPv4 address before every IPv6 one, so families stay apart.
    blocks.sort_by_key(|b| (b.cidr.network(), b.cidr.prefix_len()));
    let mut out = Vec::new();
    let mut cover: Option<&PlacedCidr<T>> = None;
    for block in &blocks {
        match cover {
            Some(c) if c.cidr.contains(&block.cidr.network()) => {
                out.push((c.clone(), block.clone()));
            }
            _ => cover = Some(block),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(e: &ParsedEntry) -> Vec<String> {
        e.entry.cidrs.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn cidrs_parse_and_host_bits_are_cleared() {
        let p = parse_entry("192.168.10.0/24").unwrap();
        assert_eq!(nets(&p), ["192.168.10.0/24"]);
        assert_eq!(p.host_bits_cleared, None);
        let p = parse_entry("192.168.10.7/24").unwrap();
        assert_eq!(nets(&p), ["192.168.10.0/24"]);
        assert_eq!(p.host_bits_cleared.unwrap().to_string(), "192.168.10.0/24");
        assert_eq!(
            nets(&parse_entry("fc00:f853:ccd:e799::/124").unwrap()),
            ["fc00:f853:ccd:e799::/124"]
        );
    }

    #[test]
    fn ranges_become_the_smallest_cover_of_cidrs() {
        let p = parse_entry("192.168.9.1 - 192.168.9.5").unwrap();
        assert_eq!(
            nets(&p),
            ["192.168.9.1/32", "192.168.9.2/31", "192.168.9.4/31"]
        );
        assert_eq!(p.entry.shortest_prefix(), 31);
        assert_eq!(
            nets(&parse_entry("10.0.0.0-10.0.0.255").unwrap()),
            ["10.0.0.0/24"]
        );
        assert_eq!(
            nets(&parse_entry("fc00::1-fc00::1").unwrap()),
            ["fc00::1/128"]
        );
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        assert_eq!(
            parse_entry("10.0.0.9-10.0.0.1").unwrap_err(),
            "\"10.0.0.9-10.0.0.1\" is not a valid range: the start 10.0.0.9 is after the end 10.0.0.1"
        );
        assert_eq!(
            parse_entry("10.0.0.1-fc00::1").unwrap_err(),
            "\"10.0.0.1-fc00::1\" is not a valid range: the start and the end are of different IP families"
        );
        assert_eq!(
            parse_entry("10.0.0.1").unwrap_err(),
            "\"10.0.0.1\" is a single address without a prefix length; write 10.0.0.1/32 for one address"
        );
        assert_eq!(
            parse_entry("10.0.0.300/24").unwrap_err(),
            "\"10.0.0.300/24\" is neither a CIDR (10.0.0.0/24) nor a range (10.0.0.1-10.0.0.9)"
        );
        assert_eq!(
            parse_entry("10.0.0.1-10.0.0.x").unwrap_err(),
            "\"10.0.0.1-10.0.0.x\" is not a valid range: \"10.0.0.x\" is not an IP address"
        );
    }

    #[test]
    fn overlapping_blocks_are_paired_with_their_cover() {
        let placed = |s: &str, o: u32| PlacedCidr {
            cidr: s.parse().unwrap(),
            origin: o,
        };
        let found = overlaps(vec![
            placed("10.0.0.0/24", 1),
            placed("10.0.1.0/24", 2),
            placed("10.0.0.128/25", 3),
            placed("fc00::/64", 4),
            placed("10.0.0.0/24", 5),
        ]);
        let pairs: Vec<(u32, u32)> = found.iter().map(|(a, b)| (a.origin, b.origin)).collect();
        assert_eq!(pairs, [(1, 5), (1, 3)]);
    }

    proptest::proptest! {
        #[test]
        fn a_range_is_covered_exactly_by_disjoint_blocks(a: u32, b: u32) {
            let (lo, hi) = (a.min(b), a.max(b));
            let text = format!("{}-{}", std::net::Ipv4Addr::from(lo), std::net::Ipv4Addr::from(hi));
            let cidrs = parse_entry(&text).unwrap().entry.cidrs;
            let mut next = u64::from(lo);
            for cidr in &cidrs {
                let IpNet::V4(v4) = cidr else { panic!("IPv6 block for an IPv4 range") };
                proptest::prop_assert_eq!(u64::from(u32::from(v4.network())), next);
                next += size(cidr) as u64;
            }
            proptest::prop_assert_eq!(next, u64::from(hi) + 1);
        }
    }

    #[test]
    fn sizes_count_addresses() {
        assert_eq!(size(&"10.0.0.0/24".parse().unwrap()), 256);
        assert_eq!(size(&"::/0".parse().unwrap()), u128::MAX);
    }
}

//! IPv6 neighbour discovery (RFC 4861): neighbour solicitations and advertisements, as whole
//! IPv6 packets (header, ICMPv6 with its checksum, link-layer address options).

use std::net::Ipv6Addr;

use super::{Mac, WireError, mac_at, need};

/// ICMPv6's IPv6 next-header value.
const ICMPV6: u8 = 58;
/// ICMPv6 type of a neighbour solicitation.
pub(crate) const SOLICITATION: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub(crate) const ADVERTISEMENT: u8 = 136;
/// Option: source link-layer address.
const SOURCE_LL: u8 = 1;
/// Option: target link-layer address.
const TARGET_LL: u8 = 2;
/// All-nodes multicast address.
pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbour solicitation: who has `target`?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Solicitation {
    /// IPv6 source (`::` in duplicate address detection).
    pub src: Ipv6Addr,
    /// IPv6 destination (the target's solicited-node group, or the target).
    pub dst: Ipv6Addr,
    /// The address asked about.
    pub target: Ipv6Addr,
    /// The asker's link-layer address option.
    pub source_mac: Option<Mac>,
}

/// A neighbour advertisement: `target` is at `target_mac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Advertisement {
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// R: the sender is a router.
    pub router: bool,
    /// S: an answer to a solicitation.
    pub solicited: bool,
    /// O: replace a cached link-layer address.
    pub override_cache: bool,
    /// The address advertised.
    pub target: Ipv6Addr,
    /// Its link-layer address option.
    pub target_mac: Option<Mac>,
}

/// A neighbour discovery message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ndp {
    /// Type 135.
    Solicitation(Solicitation),
    /// Type 136.
    Advertisement(Advertisement),
}

fn addr_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(a)
}

/// ICMPv6's checksum of `message` (checksum field zeroed) from `src` to `dst`.
pub(crate) fn checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Reads a neighbour discovery message from an IPv6 packet. The packet must be ICMPv6 with
/// hop limit 255 (RFC 4861's guard against off-link senders), code 0, a correct checksum,
/// and well-formed options; other ICMPv6 types are [`WireError::Unsupported`].
pub(crate) fn parse(packet: &[u8]) -> Result<Ndp, WireError> {
    need("IPv6 header", packet, 40)?;
    if packet[0] >> 4 != 6 {
        return Err(WireError::Unsupported {
            what: "IP version",
            value: u32::from(packet[0] >> 4),
        });
    }
    if packet[6] != ICMPV6 {
        return Err(WireError::Unsupported {
            what: "IPv6 next header",
            value: packet[6].into(),
        });
    }
    if packet[7] != 255 {
        return Err(WireError::Unsupported {
            what: "NDP hop limit",
            value: packet[7].into(),
        });
    }
    let length = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    need("IPv6 payload", &packet[40..], length)?;
    let message = &packet[40..40 + length];
    need("neighbour discovery message", message, 24)?;
    let (src, dst) = (addr_at(packet, 8), addr_at(packet, 24));
    let kind = message[0];
    if kind != SOLICITATION && kind != ADVERTISEMENT {
        return Err(WireError::Unsupported {
            what: "ICMPv6 type",
            value: kind.into(),
        });
    }
    if message[1] != 0 {
        return Err(WireError::Unsupported {
            what: "ICMPv6 code",
            value: message[1].into(),
        });
    }
    let found = u16::from_be_bytes([message[2], message[3]]);
    let mut zeroed = message.to_vec();
    zeroed[2] = 0;
    zeroed[3] = 0;
    let expected = checksum(src, dst, &zeroed);
    if found != expected {
        return Err(WireError::Checksum { found, expected });
    }
    let target = addr_at(message, 8);
    let wanted = if kind == SOLICITATION {
        SOURCE_LL
    } else {
        TARGET_LL
    };
    let mac = link_layer_option(&message[24..], wanted)?;
    Ok(if kind == SOLICITATION {
        Ndp::Solicitation(Solicitation {
            src,
            dst,
            target,
            source_mac: mac,
        })
    } else {
        let flags = message[4];
        Ndp::Advertisement(Advertisement {
            src,
            dst,
            router: flags & 0x80 != 0,
            solicited: flags & 0x40 != 0,
            override_cache: flags & 0x20 != 0,
            target,
            target_mac: mac,
        })
    })
}

/// The Ethernet address in option `wanted` among `options`, if present.
fn link_layer_option(mut options: &[u8], wanted: u8) -> Result<Option<Mac>, WireError> {
    let mut found = None;
    while !options.is_empty() {
        need("NDP option header", options, 2)?;
        let length = usize::from(options[1]) * 8;
        if length == 0 {
            return Err(WireError::Unsupported {
                what: "NDP option length",
                value: 0,
            });
        }
        need("NDP option", options, length)?;
        if options[0] == wanted && length >= 8 {
            found = Some(mac_at(options, 2));
        }
        options = &options[length..];
    }
    Ok(found)
}

/// An IPv6 packet carrying ICMPv6 `message` (whose checksum is filled in here).
fn packet(src: Ipv6Addr, dst: Ipv6Addr, mut message: Vec<u8>) -> Vec<u8> {
    let sum = checksum(src, dst, &message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut out = Vec::with_capacity(40 + message.len());
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.push(ICMPV6);
    out.push(255);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&message);
    out
}

fn message(kind: u8, flags: u8, target: Ipv6Addr, option: Option<(u8, Mac)>) -> Vec<u8> {
    let mut out = vec![kind, 0, 0, 0, flags, 0, 0, 0];
    out.extend_from_slice(&target.octets());
    if let Some((code, mac)) = option {
        out.extend_from_slice(&[code, 1]);
        out.extend_from_slice(&mac.0);
    }
    out
}

impl Solicitation {
    /// The whole IPv6 packet (a solicitation is only ever read; tests build them).
    #[cfg(test)]
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let option = self.source_mac.map(|m| (SOURCE_LL, m));
        packet(
            self.src,
            self.dst,
            message(SOLICITATION, 0, self.target, option),
        )
    }
}

impl Advertisement {
    /// The whole IPv6 packet.
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let flags = u8::from(self.router) << 7
            | u8::from(self.solicited) << 6
            | u8::from(self.override_cache) << 5;
        let option = self.target_mac.map(|m| (TARGET_LL, m));
        packet(
            self.src,
            self.dst,
            message(ADVERTISEMENT, flags, self.target, option),
        )
    }

    /// The answer to `solicitation` from the owner of its target, at `mac`: to the asker,
    /// or to all nodes when the asker has no address yet (duplicate address detection).
    /// Override is set (MetalLB leaves it clear): a client still holding the previous
    /// owner's address replaces it at once instead of only marking it stale.
    pub(crate) fn answer(solicitation: &Solicitation, mac: Mac) -> Advertisement {
        let dad = solicitation.src.is_unspecified();
        Advertisement {
            src: solicitation.target,
            dst: if dad { ALL_NODES } else { solicitation.src },
            router: false,
            solicited: !dad,
            override_cache: true,
            target: solicitation.target,
            target_mac: Some(mac),
        }
    }

    /// An unsolicited advertisement to all nodes that `ip` is now at `mac` (overriding
    /// cached entries): what a new owner sends at once.
    pub(crate) fn unsolicited(mac: Mac, ip: Ipv6Addr) -> Advertisement {
        Advertisement {
            src: ip,
            dst: ALL_NODES,
            router: false,
            solicited: false,
            override_cache: true,
            target: ip,
            target_mac: Some(mac),
        }
    }
}

/// The solicited-node multicast group of `ip` (ff02::1:ffXX:XXXX, its low 24 bits), which an
/// owner joins to hear solicitations for it.
pub(crate) fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address IPv6 multicast group `group` is sent to (33:33 and its low 32 bits).
pub(crate) fn multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

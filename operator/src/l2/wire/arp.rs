//! ARP for IPv4 over Ethernet (RFC 826): 28 bytes after the Ethernet header.

use std::net::Ipv4Addr;

use super::{Mac, WireError, mac_at, need};

/// Bytes of an Ethernet/IPv4 ARP packet.
pub(crate) const LEN: usize = 28;

/// ARP's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Who has `target_ip`?
    Request,
    /// `sender_ip` is at `sender_mac`.
    Reply,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arp {
    /// Request or reply.
    pub op: Op,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (zero in a request).
    pub target_mac: Mac,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

fn ip_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

impl Arp {
    /// Reads an ARP packet (what follows the Ethernet header; trailing padding is ignored).
    /// Only Ethernet hardware and IPv4 protocol addresses are handled.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Arp, WireError> {
        need("ARP packet", bytes, LEN)?;
        let field = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        if field(0) != 1 {
            return Err(WireError::Unsupported {
                what: "ARP hardware type",
                value: field(0).into(),
            });
        }
        if field(2) != 0x0800 {
            return Err(WireError::Unsupported {
                what: "ARP protocol type",
                value: field(2).into(),
            });
        }
        if bytes[4] != 6 || bytes[5] != 4 {
            return Err(WireError::Unsupported {
                what: "ARP address lengths",
                value: u32::from(bytes[4]) << 8 | u32::from(bytes[5]),
            });
        }
        let op = match field(6) {
            1 => Op::Request,
            2 => Op::Reply,
            other => {
                return Err(WireError::Unsupported {
                    what: "ARP operation",
                    value: other.into(),
                });
            }
        };
        Ok(Arp {
            op,
            sender_mac: mac_at(bytes, 8),
            sender_ip: ip_at(bytes, 14),
            target_mac: mac_at(bytes, 18),
            target_ip: ip_at(bytes, 24),
        })
    }

    /// The packet's 28 bytes.
    pub(crate) fn to_bytes(self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..2].copy_from_slice(&1u16.to_be_bytes());
        out[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        out[4] = 6;
        out[5] = 4;
        let op: u16 = match self.op {
            Op::Request => 1,
            Op::Reply => 2,
        };
        out[6..8].copy_from_slice(&op.to_be_bytes());
        out[8..14].copy_from_slice(&self.sender_mac.0);
        out[14..18].copy_from_slice(&self.sender_ip.octets());
        out[18..24].copy_from_slice(&self.target_mac.0);
        out[24..28].copy_from_slice(&self.target_ip.octets());
        out
    }

    /// Whether this is a request for `ip` that is not an address probe's own announcement
    /// (a gratuitous request, where sender and target IP are the same, asks nothing).
    pub(crate) fn asks_for(&self, ip: Ipv4Addr) -> bool {
        self.op == Op::Request && self.target_ip == ip && self.sender_ip != ip
    }

    /// The reply `mac` gives to this request: `target_ip` is at `mac`.
    pub(crate) fn reply(&self, mac: Mac) -> Arp {
        Arp {
            op: Op::Reply,
            sender_mac: mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }

    /// A gratuitous ARP announcing that `ip` is at `mac`: a reply whose sender and target IP
    /// are both `ip`, to the broadcast address. MetalLB sends this and
    /// [`Arp::gratuitous_request`] each round; hosts update their caches from either.
    pub(crate) fn gratuitous(mac: Mac, ip: Ipv4Addr) -> Arp {
        Arp {
            op: Op::Reply,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: Mac::BROADCAST,
            target_ip: ip,
        }
    }

    /// The request form of a gratuitous ARP: sender and target IP both `ip`, target
    /// hardware address zero.
    pub(crate) fn gratuitous_request(mac: Mac, ip: Ipv4Addr) -> Arp {
        Arp {
            op: Op::Request,
            target_mac: Mac::ZERO,
            ..Arp::gratuitous(mac, ip)
        }
    }
}

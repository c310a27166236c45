//! The packets layer-2 announcing reads and writes, parsed and built byte for byte: Ethernet
//! frames, ARP for IPv4 over Ethernet ([`arp`]), and IPv6 neighbour discovery ([`ndp`]).
//! Pure: no sockets here. Parsing never panics, whatever the bytes (a property test feeds
//! it arbitrary input); anything malformed or outside what announcing needs is an error that
//! says what and where.

pub(crate) mod arp;
pub(crate) mod ndp;

#[cfg(test)]
mod tests;

use std::fmt;

/// An Ethernet (EUI-48) address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub(crate) const BROADCAST: Mac = Mac([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub(crate) const ZERO: Mac = Mac([0; 6]);
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl std::str::FromStr for Mac {
    type Err = WireError;

    /// Parses `aa:bb:cc:dd:ee:ff` as sysfs prints it.
    fn from_str(text: &str) -> Result<Mac, WireError> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or(WireError::Mac)?;
            if part.len() != 2 {
                return Err(WireError::Mac);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| WireError::Mac)?;
        }
        if parts.next().is_some() {
            return Err(WireError::Mac);
        }
        Ok(Mac(bytes))
    }
}

/// EtherType of ARP.
pub(crate) const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Why bytes are not a packet announcing handles.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// Fewer bytes than the header or field needs.
    #[error("{what}: {got} bytes, need {need}")]
    Truncated {
        /// The part being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        got: usize,
    },
    /// A field holds a value outside what is handled.
    #[error("{what}: unsupported value {value:#x}")]
    Unsupported {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u32,
    },
    /// The ICMPv6 checksum does not match the packet.
    #[error("ICMPv6 checksum {found:#06x}, the packet sums to {expected:#06x}")]
    Checksum {
        /// The checksum in the packet.
        found: u16,
        /// The checksum the packet should carry.
        expected: u16,
    },
    /// Text that is not six colon-separated hex bytes.
    #[error("not a MAC address (want aa:bb:cc:dd:ee:ff)")]
    Mac,
}

pub(crate) fn need(what: &'static str, bytes: &[u8], need: usize) -> Result<(), WireError> {
    if bytes.len() < need {
        return Err(WireError::Truncated {
            what,
            need,
            got: bytes.len(),
        });
    }
    Ok(())
}

pub(crate) fn mac_at(bytes: &[u8], at: usize) -> Mac {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&bytes[at..at + 6]);
    Mac(mac)
}

/// An Ethernet II frame (no VLAN tag: the kernel strips tags before an AF_PACKET socket on
/// the VLAN interface sees the frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    /// Destination.
    pub dst: Mac,
    /// Source.
    pub src: Mac,
    /// EtherType.
    pub ethertype: u16,
    /// What follows the header (with any padding).
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a frame's header.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Frame<'a>, WireError> {
        need("Ethernet header", bytes, 14)?;
        Ok(Frame {
            dst: mac_at(bytes, 0),
            src: mac_at(bytes, 6),
            ethertype: u16::from_be_bytes([bytes[12], bytes[13]]),
            payload: &bytes[14..],
        })
    }

    /// The frame's bytes, padded to Ethernet's 60-byte minimum.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity((14 + self.payload.len()).max(60));
        out.extend_from_slice(&self.dst.0);
        out.extend_from_slice(&self.src.0);
        out.extend_from_slice(&self.ethertype.to_be_bytes());
        out.extend_from_slice(self.payload);
        out.resize(out.len().max(60), 0);
        out
    }
}

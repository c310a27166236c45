//! Link-layer sockets for one interface: an `AF_PACKET` socket bound to the interface and one
//! ethertype, with a classic BPF filter so the kernel hands over only the frames a responder
//! answers (ARP requests, or ICMPv6 neighbour solicitations without extension headers), never
//! frames this host sent. Frames go out with the Ethernet header the caller built.
//!
//! Two calls have no safe wrapper in socket2 or nix, because neither can build a
//! `sockaddr_ll` or a `packet_mreq`: `bind` and the multicast membership `setsockopt`. They and
//! tokio's registration of a descriptor ([`register`]) are the only `unsafe` here.

use std::io::{self, Read};
use std::os::fd::AsRawFd;

use socket2::{Domain, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::wire::{ETHERTYPE_ARP, ETHERTYPE_IPV6, Mac};

/// What a socket receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// ARP requests.
    Arp,
    /// ICMPv6 neighbour solicitations.
    Ndp,
}

impl Kind {
    fn ethertype(self) -> u16 {
        match self {
            Kind::Arp => ETHERTYPE_ARP,
            Kind::Ndp => ETHERTYPE_IPV6,
        }
    }
}

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: loads the packet type into the accumulator.
const PKTTYPE: u32 = 0xffff_f000 + 4;
/// `PACKET_OUTGOING`: a frame this host sent.
const OUTGOING: u32 = 4;
const ACCEPT: u32 = 0x0004_0000;

/// The filter for `kind`; offsets count from the Ethernet header.
pub(crate) fn filter(kind: Kind) -> Vec<SockFilter> {
    match kind {
        Kind::Arp => vec![
            SockFilter::new(LD_W_ABS, 0, 0, PKTTYPE),
            SockFilter::new(JEQ_K, 3, 0, OUTGOING),  // → drop
            SockFilter::new(LD_H_ABS, 0, 0, 14 + 6), // ARP operation
            SockFilter::new(JEQ_K, 0, 1, 1),         // request → accept
            SockFilter::new(RET_K, 0, 0, ACCEPT),
            SockFilter::new(RET_K, 0, 0, 0),
        ],
        Kind::Ndp => vec![
            SockFilter::new(LD_W_ABS, 0, 0, PKTTYPE),
            SockFilter::new(JEQ_K, 5, 0, OUTGOING),   // → drop
            SockFilter::new(LD_B_ABS, 0, 0, 14 + 6),  // IPv6 next header
            SockFilter::new(JEQ_K, 0, 3, 58),         // ICMPv6, else drop
            SockFilter::new(LD_B_ABS, 0, 0, 14 + 40), // ICMPv6 type
            SockFilter::new(JEQ_K, 0, 1, 135),        // solicitation → accept
            SockFilter::new(RET_K, 0, 0, ACCEPT),
            SockFilter::new(RET_K, 0, 0, 0),
        ],
    }
}

/// An `AF_PACKET` socket on one interface.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    fd: AsyncFd<Socket>,
    index: u32,
    kind: Kind,
}

impl PacketSocket {
    /// Opens a socket on the interface with index `index` receiving `kind`. Needs
    /// `CAP_NET_RAW`.
    pub(crate) fn open(index: u32, kind: Kind) -> io::Result<PacketSocket> {
        // Protocol 0: nothing is received until bind names the ethertype, so no frame of
        // another interface slips in before the filter and the binding are in place.
        let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
        socket.attach_filter(&filter(kind))?;
        bind(&socket, index, kind.ethertype())?;
        socket.set_nonblocking(true)?;
        Ok(PacketSocket {
            fd: register(socket)?,
            index,
            kind,
        })
    }

    /// What it receives.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Waits for the next frame and copies it into `buf`; its length.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|socket| socket.get_ref().read(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one whole frame (Ethernet header included) out of the interface.
    pub(crate) fn send(&self, frame: &[u8]) -> io::Result<()> {
        let sent = self.fd.get_ref().send(frame)?;
        if sent != frame.len() {
            return Err(io::Error::other(format!(
                "sent {sent} of {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }

    /// Starts (`join`) or stops receiving frames sent to the multicast `mac`: the interface's
    /// filter is programmed, so a solicited-node group reaches this socket on real NICs.
    pub(crate) fn multicast(&self, mac: Mac, join: bool) -> io::Result<()> {
        membership(self.fd.get_ref(), self.index, mac, join)
    }
}

/// Descriptor owners whose descriptor stays open and the same for as long as they live.
///
/// # Safety
///
/// An implementor must own its descriptor: open from construction until drop, closed by
/// nothing else, and `as_raw_fd` must always return that one descriptor. [`register`] hands
/// it to tokio's reactor on that promise.
#[allow(unsafe_code)]
pub(crate) unsafe trait OwnsFd: AsRawFd {}
// SAFETY: socket2's Socket owns its descriptor, closes it only on drop and returns it from
// as_raw_fd.
#[allow(unsafe_code)]
unsafe impl OwnsFd for Socket {}
// SAFETY: an OwnedFd closes its descriptor only when dropped.
#[allow(unsafe_code)]
unsafe impl OwnsFd for std::os::fd::OwnedFd {}

/// Registers `owner`'s descriptor with tokio's reactor.
#[allow(unsafe_code)]
pub(crate) fn register<T: OwnsFd>(owner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: an `OwnsFd` type owns its descriptor: it is open from construction until drop,
    // and `as_raw_fd` always returns that one descriptor; the `AsyncFd` takes ownership.
    unsafe { AsyncFd::register(owner) }.map_err(|error| error.into_parts().1)
}

/// Binds `socket` to interface `index` and `ethertype`.
#[allow(unsafe_code)]
fn bind(socket: &Socket, index: u32, ethertype: u16) -> io::Result<()> {
    let index = i32::try_from(index).map_err(|_| io::Error::other("interface index too large"))?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ethertype.to_be();
    address.sll_ifindex = index;
    // SAFETY: the pointer and length describe `address`, which lives across the call; the
    // descriptor is open for as long as `socket` is borrowed.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            std::ptr::from_ref(&address).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `PACKET_ADD_MEMBERSHIP` / `PACKET_DROP_MEMBERSHIP` of a multicast MAC.
#[allow(unsafe_code)]
fn membership(socket: &Socket, index: u32, mac: Mac, join: bool) -> io::Result<()> {
    let index = i32::try_from(index).map_err(|_| io::Error::other("interface index too large"))?;
    // SAFETY: packet_mreq is plain data; all-zero is a valid value.
    let mut request: libc::packet_mreq = unsafe { std::mem::zeroed() };
    request.mr_ifindex = index;
    request.mr_type = libc::PACKET_MR_MULTICAST as u16;
    request.mr_alen = 6;
    request.mr_address[..6].copy_from_slice(&mac.0);
    let option = if join {
        libc::PACKET_ADD_MEMBERSHIP
    } else {
        libc::PACKET_DROP_MEMBERSHIP
    };
    // SAFETY: the pointer and length describe `request`, which lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            std::ptr::from_ref(&request).cast::<libc::c_void>(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

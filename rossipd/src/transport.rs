//! The gossip UDP socket.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Kernel receive buffer we ask for: a burst of pushes and repairs arriving
/// while the driver is busy should queue, not be dropped by the kernel.
const RECV_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Kernel send buffer we ask for.
const SEND_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Binds the gossip socket. Must be called inside a tokio runtime.
pub fn bind(ip: IpAddr, port: u16) -> anyhow::Result<UdpSocket> {
    let addr = SocketAddr::new(ip, port);
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .context("cannot create the gossip UDP socket")?;
    if addr.is_ipv6() {
        // One socket serves IPv4 peers too when bound to `::`.
        let _ = socket.set_only_v6(false);
    }
    // Buffer sizes are a wish: the kernel caps them at net.core.rmem_max.
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER_BYTES) {
        tracing::debug!("cannot enlarge the UDP receive buffer: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(SEND_BUFFER_BYTES) {
        tracing::debug!("cannot enlarge the UDP send buffer: {e}");
    }
    // The kernel stamps each datagram with its arrival, so the driver knows
    // how long it waited in the queue (see `Received::waited`).
    if let Err(e) = nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimestampns,
        &true,
    ) {
        tracing::debug!("cannot ask for UDP receive timestamps: {e}");
    }
    socket
        .set_nonblocking(true)
        .context("cannot make the gossip socket non-blocking")?;
    socket.bind(&addr.into()).with_context(|| {
        if port != 0 {
            format!("cannot bind UDP {addr} for gossip (is another rossipd using port {port}? pass --port 0 to pick a free one)")
        } else {
            format!("cannot bind UDP {addr} for gossip")
        }
    })?;
    UdpSocket::from_std(socket.into()).context("cannot register the gossip socket with tokio")
}

/// One datagram read from the gossip socket.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Its length (the bytes are at the start of the buffer read into).
    pub len: usize,
    /// Who sent it.
    pub from: SocketAddr,
    /// How long it waited in the kernel's receive queue before it was read
    /// (`None` without the kernel's arrival stamp): how far the driver runs
    /// behind its socket.
    pub waited: Option<Duration>,
}

/// Room for one `SO_TIMESTAMPNS` control message.
pub fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(nix::sys::time::TimeSpec)
}

/// Reads one datagram into `buf` without waiting (`WouldBlock` when none is
/// queued), with the kernel's arrival stamp; `control` is
/// [`control_buffer`]'s, reused across calls. Call it inside
/// [`UdpSocket::try_io`], so that tokio learns when the queue is empty.
pub fn recv_stamped(
    udp: &UdpSocket,
    buf: &mut [u8],
    control: &mut [u8],
) -> std::io::Result<Received> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = nix::sys::socket::recvmsg::<SockaddrStorage>(
        udp.as_raw_fd(),
        &mut iov,
        Some(control),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let from = msg
        .address
        .as_ref()
        .and_then(|a| match a.family() {
            Some(nix::sys::socket::AddressFamily::Inet) => a
                .as_sockaddr_in()
                .map(|v4| SocketAddr::V4(std::net::SocketAddrV4::from(*v4))),
            Some(nix::sys::socket::AddressFamily::Inet6) => a
                .as_sockaddr_in6()
                .map(|v6| SocketAddr::V6(std::net::SocketAddrV6::from(*v6))),
            _ => None,
        })
        .ok_or_else(|| std::io::Error::other("a datagram without a sender address"))?;
    let arrived = msg.cmsgs().ok().and_then(|mut cmsgs| {
        cmsgs.find_map(|cmsg| match cmsg {
            ControlMessageOwned::ScmTimestampns(ts) => {
                let secs = u64::try_from(ts.tv_sec()).ok()?;
                let nanos = u32::try_from(ts.tv_nsec()).ok()?;
                SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
            }
            _ => None,
        })
    });
    // The stamp is wall-clock time: a clock step makes it meaningless for
    // one datagram, and a stamp "in the future" says the wait was short.
    let waited = arrived.map(|at| SystemTime::now().duration_since(at).unwrap_or_default());
    Ok(Received {
        len: msg.bytes,
        from,
        waited,
    })
}

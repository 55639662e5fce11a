//! The gossip UDP socket.

use std::net::{IpAddr, SocketAddr};

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

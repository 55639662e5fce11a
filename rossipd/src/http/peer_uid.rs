//! Who owns the other end of a loopback TCP connection: what `SO_PEERCRED`
//! tells for the local socket, found for TCP in the kernel's socket tables
//! `/proc/net/tcp` and `/proc/net/tcp6`. The client's socket is the row whose
//! local address is the client's and whose remote address is ours; its
//! `uid` column is the user that created it. Only meaningful on loopback,
//! where both ends are on this host.
//!
//! Hand-written rather than a crate: the crates that read these tables
//! (procfs, netstat2) bring a large API or netlink for one column of one row.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's socket tables, IPv4 then IPv6 (an IPv4 client of a
/// dual-stack listener is listed in the IPv6 one, as `::ffff:a.b.c.d`).
const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// The uid owning the client socket `client` connected to `server` (our
/// side of an accepted connection), or `None` when no table lists it (the
/// client already hung up, or is not on this host). Reads files: call it
/// off the async workers (see [`lookup`]).
pub fn find(client: SocketAddr, server: SocketAddr) -> Option<u32> {
    TABLES.iter().find_map(|path| {
        let table = std::fs::read_to_string(path)
            .inspect_err(|e| tracing::debug!("cannot read {path}: {e}"))
            .ok()?;
        find_in(&table, client, server)
    })
}

/// [`find`], run on the blocking pool.
pub async fn lookup(client: SocketAddr, server: SocketAddr) -> Option<u32> {
    tokio::task::spawn_blocking(move || find(client, server))
        .await
        .ok()
        .flatten()
}

/// The uid of the row of `table` (the text of one of [`TABLES`]) whose
/// local address is `client` and remote address is `server`.
fn find_in(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u32> {
    let client = canonical(client);
    let server = canonical(server);
    // The first line is the header.
    table.lines().skip(1).find_map(|line| {
        let row = Row::parse(line)?;
        (row.local == client && row.remote == server).then_some(row.uid)
    })
}

/// One row of a socket table, the columns that matter.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    local: SocketAddr,
    remote: SocketAddr,
    uid: u32,
}

impl Row {
    /// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid …`
    fn parse(line: &str) -> Option<Row> {
        let mut fields = line.split_whitespace();
        let _slot = fields.next()?;
        let local = parse_endpoint(fields.next()?)?;
        let remote = parse_endpoint(fields.next()?)?;
        // state, tx_queue:rx_queue, tr:tm->when, retrnsmt, then uid.
        let uid = fields.nth(4)?.parse().ok()?;
        Some(Row {
            local: canonical(local),
            remote: canonical(remote),
            uid,
        })
    }
}

/// `0100007F:1F90`: the address as the kernel prints it, 32-bit words in
/// hex each in the host's byte order (`%08X` of the in-memory word), then
/// the port in hex.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The four bytes of one printed word, in memory order.
fn word(hex: &str) -> Option<[u8; 4]> {
    u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
}

/// An IPv4-mapped IPv6 address as the IPv4 one, so that a listener's and
/// the kernel's views of the same connection compare equal.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

// The samples are as a little-endian host prints them.
#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1D2A 00000000:0000 0A 00000000:00000000 00:00000000 00000000   998        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1D2A 01 00000000:00000000 00:00000000 00000000  1000        0 40001 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1D2A 0100007F:D431 01 00000000:00000000 00:00000000 00000000   998        0 40002 1 0000000000000000 20 4 30 10 -1
   3: 0A00A8C0:D431 0100007F:1D2A 01 00000000:00000000 00:00000000 00000000  1001        0 40003 1 0000000000000000 20 4 30 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:E3C2 00000000000000000000000001000000:1D2A 01 00000000:00000000 00:00000000 00000000  1002        0 50001 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:B00B 0000000000000000FFFF00000100007F:1D2A 01 00000000:00000000 00:00000000 00000000  1003        0 50002 1 0000000000000000 20 4 30 10 -1
";

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn endpoints_read_as_the_kernel_prints_them() {
        assert_eq!(
            parse_endpoint("0100007F:1D2A"),
            Some(addr("127.0.0.1:7466"))
        );
        assert_eq!(
            parse_endpoint("00000000000000000000000001000000:1D2A"),
            Some(addr("[::1]:7466"))
        );
        assert_eq!(
            parse_endpoint("B80D0120000000000000000001000000:0050"),
            Some(addr("[2001:db8::1]:80"))
        );
        for bad in ["", "0100007F", "0100007F:", "XX00007F:0050", "01007F:0050"] {
            assert_eq!(parse_endpoint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_client_row_gives_the_uid_not_the_server_row() {
        let server = addr("127.0.0.1:7466");
        assert_eq!(find_in(TCP, addr("127.0.0.1:54321"), server), Some(1000));
        // Another client port: no row.
        assert_eq!(find_in(TCP, addr("127.0.0.1:54322"), server), None);
        // The same client port towards another server port: no row.
        assert_eq!(
            find_in(TCP, addr("127.0.0.1:54321"), addr("127.0.0.1:7467")),
            None
        );
        assert_eq!(find_in(TCP, addr("192.168.0.10:54321"), server), Some(1001));
    }

    #[test]
    fn ipv6_and_mapped_ipv4_rows_are_found() {
        assert_eq!(
            find_in(TCP6, addr("[::1]:58306"), addr("[::1]:7466")),
            Some(1002)
        );
        // An IPv4 client of a dual-stack listener, as the listener sees it
        // (mapped) and as plain IPv4.
        assert_eq!(
            find_in(
                TCP6,
                addr("[::ffff:127.0.0.1]:45067"),
                addr("[::ffff:127.0.0.1]:7466")
            ),
            Some(1003)
        );
        assert_eq!(
            find_in(TCP6, addr("127.0.0.1:45067"), addr("127.0.0.1:7466")),
            Some(1003)
        );
    }

    /// The real tables: a connection this test opens is found, owned by
    /// this process's user.
    #[test]
    fn a_real_loopback_connection_is_owned_by_this_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, peer) = listener.accept().expect("accept");
        let server = accepted.local_addr().expect("local addr");
        assert_eq!(peer, client.local_addr().expect("client addr"));
        assert_eq!(find(peer, server), Some(crate::config::current_uid()));
    }
}

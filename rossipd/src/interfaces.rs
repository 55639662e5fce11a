//! Which network interfaces rossip uses, for mDNS and for the address it
//! advertises to peers.
//!
//! Default (DESIGN.md): every up, non-loopback interface except virtual
//! bridges that containers and VMs create, whose addresses other machines on
//! the LAN cannot reach. `--iface` chooses explicitly.

use std::net::{IpAddr, Ipv4Addr};

/// Interface name prefixes excluded by default: container and VM bridges.
pub const VIRTUAL_BRIDGE_PREFIXES: &[&str] = &["docker", "br-", "veth", "virbr", "cni"];

/// Whether an interface name is a virtual bridge excluded by default.
pub fn is_virtual_bridge(name: &str) -> bool {
    VIRTUAL_BRIDGE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// An interface address that passed the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Interface name.
    pub name: String,
    /// One of its addresses.
    pub ip: IpAddr,
}

/// The interface addresses rossip may use: those of `wanted` when it is not
/// empty, else every up, non-loopback, non-virtual-bridge interface.
pub fn select(wanted: &[String]) -> std::io::Result<Vec<Selected>> {
    let all = if_addrs::get_if_addrs()?;
    Ok(all
        .into_iter()
        .filter(|i| {
            if !wanted.is_empty() {
                return wanted.iter().any(|w| w == &i.name);
            }
            !i.is_loopback()
                && !is_virtual_bridge(&i.name)
                && !matches!(i.oper_status, if_addrs::IfOperStatus::Down)
        })
        .map(|i| Selected {
            name: i.name.clone(),
            ip: i.ip(),
        })
        .collect())
}

/// The address to advertise: the bind address if it is specific, else the
/// first IPv4 address of the selected interfaces (IPv4 first because most
/// LANs route it without scope ids), else loopback so a lone node still works.
pub fn advertise_addr(bind: IpAddr, selected: &[Selected]) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    selected
        .iter()
        .map(|s| s.ip)
        .find(|ip| ip.is_ipv4())
        .or_else(|| {
            selected
                .iter()
                .map(|s| s.ip)
                .find(|ip| !is_link_local_v6(ip))
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Whether `ip` is an address of this host: loopback (all of 127.0.0.0/8
/// reaches this host), unspecified, or an address of any of its interfaces
/// (up or down, bridges included: a datagram sent there stays here). An
/// interface list that cannot be read counts as no match.
pub fn is_own_ip(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    match if_addrs::get_if_addrs() {
        Ok(all) => all.iter().any(|i| i.ip() == ip),
        Err(e) => {
            tracing::debug!("listing network interfaces: {e}");
            false
        }
    }
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_bridges_are_recognised() {
        for name in ["docker0", "br-1a2b", "veth12", "virbr0", "cni0"] {
            assert!(is_virtual_bridge(name), "{name}");
        }
        for name in ["eth0", "enp3s0", "wlan0", "bridge0"] {
            assert!(!is_virtual_bridge(name), "{name}");
        }
    }

    #[test]
    fn loopback_and_unspecified_are_own() {
        for ip in [
            "127.0.0.1",
            "127.0.1.1",
            "127.0.0.2",
            "0.0.0.0",
            "::1",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_own_ip(ip.parse().expect("ip")), "{ip}");
        }
        // TEST-NET-3: documentation only, never an interface's.
        assert!(!is_own_ip("203.0.113.9".parse().expect("ip")));
    }

    #[test]
    fn advertise_prefers_bind_then_ipv4_then_loopback() {
        let v4: IpAddr = "10.77.0.11".parse().expect("ip");
        let v6: IpAddr = "fd00::1".parse().expect("ip");
        let ll: IpAddr = "fe80::1".parse().expect("ip");
        let sel = |ips: &[IpAddr]| -> Vec<Selected> {
            ips.iter()
                .map(|ip| Selected {
                    name: "eth0".into(),
                    ip: *ip,
                })
                .collect()
        };
        let any: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        assert_eq!(
            advertise_addr("127.0.0.1".parse().expect("ip"), &sel(&[v4])),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(advertise_addr(any, &sel(&[v6, v4])), v4);
        assert_eq!(advertise_addr(any, &sel(&[ll, v6])), v6);
        assert_eq!(advertise_addr(any, &[]), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}

//! A LAN of network namespaces on one machine, as in `netns/README.md`:
//!
//! ```text
//! netns "<prefix>sw":  bridge br0 (stp off, mcast_snooping 0, no address)
//!    ├── veth v1 ── eth0 in netns "<prefix>h1"  10.77.0.11/24
//!    ├── veth v1i1 ─ eth1 in netns "<prefix>h1"  10.77.0.211/24  (add_interface)
//!    └── …
//! ```
//!
//! Everything is created inside namespaces (the veth pairs directly between
//! the switch and the host namespace), so nothing touches the root
//! namespace and no packet can leave the machine. Faults use one nftables
//! table per host whose input chain jumps to a `loss` and a `part` chain;
//! cutting a host off entirely ([`Lan::isolate`]) is done at the switch.
//! Host interfaces get fixed MAC addresses (`02:77:00:00:<octet>:<n>`) so
//! partitions can match every frame of a host, IPv6 included.
//!
//! Declare the `Lan` before the daemons that run in it: locals drop in
//! reverse order, so the daemons (and their logs) go first and the `Lan`
//! then kills whatever is left in its namespaces and deletes them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use crate::sys;

/// Namespaces this harness creates start with this, then the creating
/// process's PID, which is how stale ones are recognised.
pub const NS_PREFIX: &str = "rsp";

/// First host address: h1 is 10.77.0.11, h2 10.77.0.12, …
pub const FIRST_HOST_OCTET: u8 = 11;

/// Name of the per-host nftables table holding the fault chains.
pub const FAULT_TABLE: &str = "rossip_faults";

/// Most hosts one `Lan` may have: h1..h200 are 10.77.0.11..=10.77.0.210.
pub const MAX_HOSTS: usize = 200;

/// Second (and further) interfaces of a host take addresses from here up to
/// .254, after every possible host address, in the order they are added
/// (see [`Lan::add_interface`]).
pub const FIRST_EXTRA_OCTET: u8 = 211;

/// Name of the nftables table (family `bridge`, in the switch namespace)
/// that cuts hosts off the LAN (see [`Lan::isolate`]).
pub const SWITCH_TABLE: &str = "rossip_switch";

static LANS_CREATED: AtomicUsize = AtomicUsize::new(0);

/// Stale namespaces are swept once per test process, not by every test
/// thread at the same time.
static SWEEP: Once = Once::new();

/// The test was skipped because this machine cannot build namespaces (not
/// root, or no iproute2). [`Lan::new`] has already printed why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip;

mod isolation;

/// One host of a [`Lan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Short name, `h1`, `h2`, … (also a good `--name` for its daemon).
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Address of its `eth0`.
    pub addr: Ipv4Addr,
}

/// One interface of a host on the bridge: `eth0`, or one added by
/// [`Lan::add_interface`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Name inside the host (`eth0`, `eth1`, …).
    pub name: String,
    /// Name of its peer on the bridge, in the switch namespace.
    pub port: String,
    /// Its IPv4 address (a /24 of 10.77.0.0).
    pub addr: Ipv4Addr,
    /// Its MAC address, fixed by the harness (locally administered), so
    /// faults can match every frame of the host, IPv6 and ARP included.
    pub mac: String,
}

/// A bridge namespace plus hosts; removed (processes killed by PID,
/// namespaces deleted) on drop, also when the test panics.
#[derive(Debug)]
pub struct Lan {
    prefix: String,
    ip: PathBuf,
    switch: String,
    hosts: Vec<Host>,
    /// Each host's interfaces on the bridge, `eth0` first.
    ifaces: Vec<Vec<Iface>>,
    /// Octet the next [`Lan::add_interface`] gets.
    next_extra_octet: u8,
    /// Every namespace created so far, so a failed setup is cleaned too.
    created: Vec<String>,
    /// Which hosts have their fault table (created on first use, so tests
    /// without faults do not need nftables).
    fault_tables: Mutex<Vec<bool>>,
    /// Which hosts are cut off at the switch ([`Lan::isolate`]).
    isolated: Mutex<Vec<bool>>,
}

impl Lan {
    /// Builds a LAN of `hosts` hosts for test `test`. Without root or
    /// iproute2, prints one line and returns `Err(Skip)` — or panics when
    /// `CI=true`, where multi-host tests are mandatory. Panics if a setup
    /// command fails.
    pub fn new(test: &str, hosts: usize) -> Result<Lan, Skip> {
        assert!(
            (1..=MAX_HOSTS).contains(&hosts),
            "a Lan has 1..={MAX_HOSTS} hosts"
        );
        let skip = |why: &str| -> Result<Lan, Skip> {
            if sys::ci() {
                panic!("{test}: multi-host tests are required with CI=true, but {why}");
            }
            sys::skipped(
                test,
                &format!("multi-host tests need root and iproute2 ({why})"),
            );
            Err(Skip)
        };
        let ip = match preconditions() {
            Ok(ip) => ip,
            Err(why) => return skip(&why),
        };
        SWEEP.call_once(|| sweep_stale(&ip));
        let prefix = format!(
            "{NS_PREFIX}{}-{}{}-",
            std::process::id(),
            tag(test),
            LANS_CREATED.fetch_add(1, Ordering::Relaxed)
        );
        let mut lan = Lan {
            switch: format!("{prefix}sw"),
            prefix,
            ip,
            hosts: Vec::new(),
            ifaces: Vec::new(),
            next_extra_octet: FIRST_EXTRA_OCTET,
            created: Vec::new(),
            fault_tables: Mutex::new(vec![false; hosts]),
            isolated: Mutex::new(vec![false; hosts]),
        };
        // Root without CAP_SYS_ADMIN (an unprivileged container) cannot
        // create namespaces: that is a skip too, not a failure.
        let sw = lan.switch.clone();
        if let Err(e) = sys::run(&lan.ip, &["netns", "add", &sw]) {
            return skip(&format!("creating a namespace failed: {e}"));
        }
        lan.created.push(sw);
        lan.create_switch();
        for index in 1..=hosts {
            lan.add_host(index);
        }
        Ok(lan)
    }

    /// The prefix of every namespace of this LAN.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hosts; `hosts()[0]` is h1.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `index` (0-based: 0 is h1).
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    /// Host `index`'s interfaces on the bridge, `eth0` first.
    pub fn ifaces(&self, index: usize) -> &[Iface] {
        &self.ifaces[index]
    }

    /// Gives host `index` one more interface on the bridge (`eth1`, `eth2`,
    /// …) with the next address from [`FIRST_EXTRA_OCTET`] on, set up like
    /// `eth0` (multicast on, same /24). Returns it. Add interfaces before
    /// faults: [`Lan::partition`] and [`Lan::isolate`] cover the interfaces
    /// that exist when they are called.
    pub fn add_interface(&mut self, index: usize) -> Iface {
        let octet = self.next_extra_octet;
        assert!(
            octet < 255,
            "the address plan has no room for another interface"
        );
        self.next_extra_octet += 1;
        let number = self.ifaces[index].len();
        let iface = Iface {
            name: format!("eth{number}"),
            port: format!("v{}i{number}", index + 1),
            addr: Ipv4Addr::new(10, 77, 0, octet),
            mac: mac_for(self.hosts[index].addr, number),
        };
        let ns = self.hosts[index].ns.clone();
        self.plug(&ns, &iface);
        self.ifaces[index].push(iface.clone());
        iface
    }

    /// Runs a command inside host `index`'s namespace; `Err` describes a
    /// failure.
    pub fn exec(&self, index: usize, args: &[&str]) -> Result<Output, String> {
        let mut full = vec!["netns", "exec", &self.hosts[index].ns];
        full.extend_from_slice(args);
        sys::run(&self.ip, &full)
    }

    /// Drops `percent`% of the packets host `index` receives on eth0
    /// (0 removes the loss).
    pub fn set_loss(&self, index: usize, percent: u8) {
        assert!(percent <= 100, "loss is a percentage");
        let mut script = format!("flush chain inet {FAULT_TABLE} loss\n");
        // `numgen random mod 100` yields 0..=99, so `< 100` is out of range.
        match percent {
            0 => {}
            100 => script.push_str(&format!(
                "add rule inet {FAULT_TABLE} loss iifname \"eth0\" counter drop\n"
            )),
            _ => script.push_str(&format!(
                "add rule inet {FAULT_TABLE} loss iifname \"eth0\" numgen random mod 100 < {percent} counter drop\n"
            )),
        }
        self.nft(index, &script);
    }

    /// [`Lan::set_loss`] on every host.
    pub fn set_loss_all(&self, percent: u8) {
        for index in 0..self.hosts.len() {
            self.set_loss(index, percent);
        }
    }

    /// Host `index` drops everything it receives from the hosts in `from`:
    /// by IPv4 source address and by source MAC, so that IPv6 (mDNS on
    /// link-local addresses) and ARP are cut as well.
    pub fn partition(&self, index: usize, from: &[usize]) {
        let script: String = from
            .iter()
            .flat_map(|&other| &self.ifaces[other])
            .map(|iface| {
                format!(
                    "add rule inet {FAULT_TABLE} part ip saddr {} counter drop\n\
                     add rule inet {FAULT_TABLE} part ether saddr {} counter drop\n",
                    iface.addr, iface.mac
                )
            })
            .collect();
        self.nft(index, &script);
    }

    /// Packets host `index` has dropped through its loss and partition
    /// rules so far (their counters; reset by [`Lan::set_loss`] and
    /// [`Lan::heal`]). Shows that a fault really was in force.
    pub fn fault_drops(&self, index: usize) -> u64 {
        let has_table = self
            .fault_tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[index];
        if !has_table {
            return 0;
        }
        self.nft_packets(&self.hosts[index].ns, "inet", FAULT_TABLE)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Removes every loss and partition rule and reconnects isolated hosts.
    pub fn heal(&self) {
        self.reconnect_all();
        let ready = self
            .fault_tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (index, has_table) in ready.into_iter().enumerate() {
            if has_table {
                self.nft(
                    index,
                    &format!(
                        "flush chain inet {FAULT_TABLE} loss\nflush chain inet {FAULT_TABLE} part\n"
                    ),
                );
            }
        }
    }

    /// Sets up the bridge in the (already created) switch namespace.
    fn create_switch(&mut self) {
        let sw = self.switch.clone();
        self.ip_must(&["-n", &sw, "link", "set", "lo", "up"]);
        self.ip_must(&[
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ]);
        self.ip_must(&["-n", &sw, "link", "set", "br0", "up"]);
    }

    fn add_host(&mut self, index: usize) {
        let octet = u8::try_from(index)
            .ok()
            .and_then(|i| i.checked_add(FIRST_HOST_OCTET - 1))
            .expect("host index fits the address plan");
        let host = Host {
            name: format!("h{index}"),
            ns: format!("{}h{index}", self.prefix),
            addr: Ipv4Addr::new(10, 77, 0, octet),
        };
        self.add_namespace(&host.ns);
        // Before any address exists: a tentative IPv6 address stalls mDNS
        // libraries for seconds (see netns/README.md). eth0 is created
        // below and inherits `default`.
        if Path::new("/proc/sys/net/ipv6/conf/all/accept_dad").exists() {
            let sysctl = sys::find_program("sysctl")
                .expect("`sysctl` (procps) is needed to turn off IPv6 DAD");
            self.ip_must(&[
                "netns",
                "exec",
                &host.ns,
                &sysctl.to_string_lossy(),
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]);
        }
        self.ip_must(&["-n", &host.ns, "link", "set", "lo", "up"]);
        let eth0 = Iface {
            name: "eth0".to_owned(),
            port: format!("v{index}"),
            addr: host.addr,
            mac: mac_for(host.addr, 0),
        };
        self.plug(&host.ns, &eth0);
        // No default route: multicast senders that name no interface
        // still find one.
        self.ip_must(&["-n", &host.ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        self.ifaces.push(vec![eth0]);
        self.hosts.push(host);
    }

    /// Connects namespace `ns` to the bridge through a veth pair: `port` on
    /// the bridge, `iface.name` (with its MAC and address) in `ns`.
    fn plug(&self, ns: &str, iface: &Iface) {
        let sw = self.switch.as_str();
        let port = iface.port.as_str();
        self.ip_must(&[
            "-n",
            sw,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            &iface.name,
            "address",
            &iface.mac,
            "netns",
            ns,
        ]);
        self.ip_must(&["-n", sw, "link", "set", port, "master", "br0"]);
        self.ip_must(&["-n", sw, "link", "set", port, "multicast", "on", "up"]);
        let cidr = format!("{}/24", iface.addr);
        self.ip_must(&["-n", ns, "addr", "add", &cidr, "dev", &iface.name]);
        self.ip_must(&[
            "-n",
            ns,
            "link",
            "set",
            &iface.name,
            "multicast",
            "on",
            "up",
        ]);
    }

    fn add_namespace(&mut self, ns: &str) {
        self.ip_must(&["netns", "add", ns]);
        self.created.push(ns.to_owned());
    }

    fn ip_must(&self, args: &[&str]) {
        if let Err(e) = sys::run(&self.ip, args) {
            panic!("network namespace setup failed: {e}");
        }
    }

    /// Applies an nft script in host `index`, creating its table first.
    fn nft(&self, index: usize, script: &str) {
        let mut ready = self
            .fault_tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut full = String::new();
        if !ready[index] {
            full.push_str(&format!(
                "add table inet {FAULT_TABLE}\n\
                 add chain inet {FAULT_TABLE} loss\n\
                 add chain inet {FAULT_TABLE} part\n\
                 add chain inet {FAULT_TABLE} input {{ type filter hook input priority 0; policy accept; }}\n\
                 add rule inet {FAULT_TABLE} input jump loss\n\
                 add rule inet {FAULT_TABLE} input jump part\n"
            ));
        }
        full.push_str(script);
        self.nft_script(&self.hosts[index].ns, &full);
        ready[index] = true;
    }

    /// Runs `nft ARGS…` in namespace `ns`, with `stdin` as its input.
    fn nft_in(&self, ns: &str, nft_args: &[&str], stdin: Option<&str>) -> Result<Output, String> {
        let nft = sys::find_program("nft")
            .expect("`nft` not found: faults need nftables (apt-get install nftables)");
        let nft = nft.to_string_lossy();
        let mut args = vec!["netns", "exec", ns, nft.as_ref()];
        args.extend_from_slice(nft_args);
        sys::run_with_stdin(&self.ip, &args, stdin)
    }

    /// Applies an nft `script` in namespace `ns`; panics (with the script)
    /// if nft refuses it.
    fn nft_script(&self, ns: &str, script: &str) {
        if let Err(e) = self.nft_in(ns, &["-f", "-"], Some(script)) {
            panic!("nft in {ns} failed: {e}\nscript:\n{script}");
        }
    }

    /// The packets counted by every rule of `table` (of `family`) in
    /// namespace `ns`, together.
    fn nft_packets(&self, ns: &str, family: &str, table: &str) -> Result<u64, String> {
        let out = self.nft_in(ns, &["list", "table", family, table], None)?;
        let listing = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = listing.split_whitespace().collect();
        Ok(words
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            remove_namespace(&self.ip, ns);
        }
    }
}

/// Runs `make` on a helper thread that has entered network namespace `ns`
/// (as `ip netns add` names it) and returns what it made: a socket stays
/// in the namespace it was created in, whichever thread uses it, and no
/// thread of this process is left in the namespace.
pub fn in_namespace<T: Send>(
    ns: &str,
    make: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    use std::os::fd::AsFd as _;
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path)
                    .map_err(|e| format!("open {}: {e}", path.display()))?;
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| format!("enter network namespace {ns}: {e}"))?;
                make()
            })
            .join()
            .map_err(|_| format!("the thread entering {ns} panicked"))?
    })
}

/// A locally administered, unicast MAC for interface `number` of the host
/// whose `eth0` is `addr`: unique within a LAN, the same on every run.
fn mac_for(addr: Ipv4Addr, number: usize) -> String {
    let [_, _, _, octet] = addr.octets();
    format!("02:77:00:00:{octet:02x}:{:02x}", number & 0xff)
}

/// `Ok(path of ip)` when namespaces can be built here, else why not.
fn preconditions() -> Result<PathBuf, String> {
    if sys::effective_uid() != Some(0) {
        return Err("this process is not root".to_owned());
    }
    sys::find_program("ip").ok_or_else(|| "`ip` (iproute2) is not installed".to_owned())
}

/// A short tag from the test name, so namespaces say which test made them.
fn tag(test: &str) -> String {
    test.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Removes namespaces left by runs whose process no longer exists.
fn sweep_stale(ip: &Path) {
    let Ok(out) = sys::run(ip, &["netns", "list"]) else {
        return;
    };
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    for ns in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !sys::pid_alive(pid) {
            sys::say(&format!("removing stale network namespace {ns}"));
            remove_namespace(ip, ns);
        }
    }
}

/// Kills every process in `ns` by PID, then deletes it. Best effort: this
/// runs in `Drop`, possibly while panicking.
fn remove_namespace(ip: &Path, ns: &str) {
    let pids = |ip: &Path| -> Vec<u32> {
        sys::run(ip, &["netns", "pids", ns])
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for pid in pids(ip) {
        let _ = sys::signal(pid, "KILL");
    }
    // SIGKILL is asynchronous: wait (briefly) until the namespace is empty
    // so no process outlives its network.
    let _ = crate::wait::try_wait_until(Duration::from_secs(5), || pids(ip).is_empty());
    if let Err(e) = sys::run(ip, &["netns", "del", ns]) {
        eprintln!("could not delete network namespace {ns}: {e}");
    }
}

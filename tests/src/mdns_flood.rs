//! A flood of forged `_rossip._udp.local.` mDNS records, and the memory
//! figures of a daemon that receives it.
//!
//! Any device on a LAN can multicast mDNS answers. A flood of records that
//! look exactly like rossip nodes of the cluster (id, name, cluster label,
//! protocol version in TXT; an SRV and an A record naming an address) must
//! neither grow a daemon's memory for as long as the records' TTL says nor
//! make the daemon send hellos faster than its configured rate.
//!
//! [`packets`] builds the flood (hand-written DNS answers: no DNS crate is in
//! the tree, and the encoding needed is four record types with name
//! compression), [`udp_socket_in`] opens the socket that sends it inside a
//! host of a namespaced [`Lan`], and [`measure`] runs the whole experiment
//! against one real `rossipd` (the figures of the `memory-bench` binary, and
//! of `mdns-flood-bench`). All traffic stays inside namespaces created here.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rossip_proto::rpc::DiscoveryStatus;

use crate::daemon::Daemon;
use crate::netns::Lan;
use crate::sys;

/// The mDNS group and port.
pub const MDNS_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// First UDP port the forged records name; record `i` names
/// `FIRST_VICTIM_PORT + i % VICTIM_PORTS`, so that each record of a flood
/// of up to that many is a distinct address (the worst case for per-address
/// backoff).
pub const FIRST_VICTIM_PORT: u16 = 20_000;

/// How many distinct ports the forged records name.
pub const VICTIM_PORTS: usize = 40_000;

/// Largest forged answer built: a little under the usual 1,500-byte MTU.
const MAX_PACKET_BYTES: usize = 1_400;

/// DNS record types and the class used.
const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_TXT: u16 = 16;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
/// Class IN with the mDNS cache-flush bit (unique records: SRV, TXT, A).
const CLASS_IN_FLUSH: u16 = 0x8001;

/// Which records make up each forged node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSet {
    /// PTR, SRV, TXT and A: what a real node announces.
    Service,
    /// SRV, TXT and A without the PTR that lists the instance: mdns-sd
    /// takes a response without any PTR as meant for it, and caches it
    /// even where nothing browses.
    WithoutPtr,
}

impl RecordSet {
    /// Records a forged node takes.
    fn records(self) -> u16 {
        match self {
            RecordSet::Service => 4,
            RecordSet::WithoutPtr => 3,
        }
    }
}

/// What the forged records claim.
#[derive(Debug, Clone)]
pub struct Forgery {
    /// How many forged nodes (one PTR, SRV, TXT and A record each).
    pub records: usize,
    /// Their TTL in seconds (a day keeps them cached for a day).
    pub ttl_s: u32,
    /// Cluster label in TXT: the victim's, so that it takes them.
    pub cluster: String,
    /// Cluster key id in TXT (empty: none, as an unkeyed victim expects).
    pub key_id: String,
    /// The address every record names (with ports from
    /// [`FIRST_VICTIM_PORT`]).
    pub target: Ipv4Addr,
    /// Makes the forged node ids differ between floods (record `i` of seed
    /// `s` has id `{s:016x}{i:016x}`).
    pub seed: u64,
    /// The records of each forged node.
    pub records_each: RecordSet,
}

impl Forgery {
    /// The forged node id of record `i`: 32 hex digits, like a real one.
    pub fn id(&self, i: usize) -> String {
        format!("{:016x}{:016x}", self.seed, i)
    }

    /// The address record `i` names.
    pub fn target_of(&self, i: usize) -> SocketAddrV4 {
        let port = FIRST_VICTIM_PORT as usize + i % VICTIM_PORTS;
        SocketAddrV4::new(self.target, u16::try_from(port).unwrap_or(u16::MAX))
    }
}

/// The flood as mDNS answer packets, each holding as many whole forged
/// nodes as fit in [`MAX_PACKET_BYTES`].
pub fn packets(forgery: &Forgery) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = 0;
    while next < forgery.records {
        let mut packet = AnswerPacket::new();
        let each = forgery.records_each.records();
        while next < forgery.records {
            let mark = packet.bytes.len();
            packet.add_node(forgery, next);
            if packet.bytes.len() > MAX_PACKET_BYTES && packet.answers > each {
                // Did not fit: undo, and start the next packet with it.
                packet.bytes.truncate(mark);
                packet.answers -= each;
                break;
            }
            next += 1;
        }
        out.push(packet.finish());
    }
    out
}

/// One mDNS answer being written. The service type is written in full
/// once; every later mention of it, or of `local.`, is a compression
/// pointer to it.
struct AnswerPacket {
    bytes: Vec<u8>,
    answers: u16,
    /// Where `_rossip._udp.local.` was written, once it was.
    service: Option<u16>,
}

/// The service type's labels.
const SERVICE_NAME: &[u8] = b"\x07_rossip\x04_udp\x05local\x00";
/// Where `local.` starts in it.
const LOCAL_IN_SERVICE: u16 = 8 + 5;

impl AnswerPacket {
    fn new() -> AnswerPacket {
        let mut bytes = Vec::with_capacity(MAX_PACKET_BYTES + 256);
        // id 0, flags: response + authoritative; counts patched in finish().
        bytes.extend_from_slice(&[0, 0, 0x84, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        AnswerPacket {
            bytes,
            answers: 0,
            service: None,
        }
    }

    /// The service type: in full the first time, a pointer after that.
    fn service_name(&mut self) -> u16 {
        if let Some(at) = self.service {
            self.pointer(at);
            return at;
        }
        let at = self.offset();
        self.bytes.extend_from_slice(SERVICE_NAME);
        self.service = Some(at);
        at
    }

    fn add_node(&mut self, forgery: &Forgery, i: usize) {
        let id = forgery.id(i);
        let target = forgery.target_of(i);
        let instance = match forgery.records_each {
            RecordSet::Service => {
                // PTR _rossip._udp.local. -> <id>._rossip._udp.local.
                self.service_name();
                self.record_header(TYPE_PTR, CLASS_IN, forgery.ttl_s);
                let rdata = self.begin_rdata();
                let instance = self.offset();
                self.label(&id);
                self.service_name();
                self.end_rdata(rdata);
                self.pointer(instance);
                instance
            }
            RecordSet::WithoutPtr => {
                let instance = self.offset();
                self.label(&id);
                self.service_name();
                instance
            }
        };
        let local = self.service.unwrap_or(0) + LOCAL_IN_SERVICE;
        // SRV <instance> -> <id>.local.:port (its owner name written above)
        self.record_header(TYPE_SRV, CLASS_IN_FLUSH, forgery.ttl_s);
        let rdata = self.begin_rdata();
        self.bytes.extend_from_slice(&[0, 0, 0, 0]); // priority, weight
        self.bytes.extend_from_slice(&target.port().to_be_bytes());
        let host = self.offset();
        self.label(&id);
        self.pointer(local);
        self.end_rdata(rdata);
        // TXT <instance>: what a rossip node puts there.
        self.pointer(instance);
        self.record_header(TYPE_TXT, CLASS_IN_FLUSH, forgery.ttl_s);
        let rdata = self.begin_rdata();
        let mut entries = vec![
            format!("id={id}"),
            format!("name=forged-{i}"),
            format!("cluster={}", forgery.cluster),
            "proto=1".to_owned(),
        ];
        if !forgery.key_id.is_empty() {
            entries.push(format!("key={}", forgery.key_id));
        }
        for entry in entries {
            self.label(&entry);
        }
        self.end_rdata(rdata);
        // A <id>.local. -> the target address.
        self.pointer(host);
        self.record_header(TYPE_A, CLASS_IN_FLUSH, forgery.ttl_s);
        let rdata = self.begin_rdata();
        self.bytes.extend_from_slice(&target.ip().octets());
        self.end_rdata(rdata);
        self.answers += forgery.records_each.records();
    }

    fn offset(&self) -> u16 {
        u16::try_from(self.bytes.len()).unwrap_or(u16::MAX)
    }

    /// One length-prefixed label (or TXT string), at most 63 bytes here.
    fn label(&mut self, text: &str) {
        let text = &text.as_bytes()[..text.len().min(63)];
        self.bytes.push(text.len() as u8);
        self.bytes.extend_from_slice(text);
    }

    fn pointer(&mut self, offset: u16) {
        self.bytes
            .extend_from_slice(&(0xc000 | offset).to_be_bytes());
    }

    fn record_header(&mut self, rtype: u16, class: u16, ttl: u32) {
        self.bytes.extend_from_slice(&rtype.to_be_bytes());
        self.bytes.extend_from_slice(&class.to_be_bytes());
        self.bytes.extend_from_slice(&ttl.to_be_bytes());
    }

    /// Reserves the rdata length; returns where it goes.
    fn begin_rdata(&mut self) -> usize {
        self.bytes.extend_from_slice(&[0, 0]);
        self.bytes.len()
    }

    fn end_rdata(&mut self, start: usize) {
        let len = u16::try_from(self.bytes.len() - start).unwrap_or(u16::MAX);
        self.bytes[start - 2..start].copy_from_slice(&len.to_be_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes[6..8].copy_from_slice(&self.answers.to_be_bytes());
        self.bytes
    }
}

/// A UDP socket bound to `bind` inside network namespace `ns` (as `ip
/// netns add` names it); see [`crate::netns::in_namespace`].
pub fn udp_socket_in(ns: &str, bind: SocketAddrV4) -> Result<UdpSocket, String> {
    crate::netns::in_namespace(ns, || {
        UdpSocket::bind(bind).map_err(|e| format!("bind {bind} in {ns}: {e}"))
    })
}

/// Sends `packets` to the mDNS group from `socket` (bound to port 5353 of a
/// namespaced host), `per_second` packets a second; stops early when `stop`
/// is set. Returns how many were sent.
pub fn send_flood(
    socket: &UdpSocket,
    packets: &[Vec<u8>],
    per_second: u32,
    stop: &AtomicBool,
) -> Result<usize, String> {
    socket
        .set_multicast_ttl_v4(255)
        .map_err(|e| format!("multicast TTL: {e}"))?;
    let started = Instant::now();
    let per_second = f64::from(per_second.max(1));
    for (n, packet) in packets.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            return Ok(n);
        }
        // Paced against the start, so a slow send is caught up on.
        let due = started + Duration::from_secs_f64(n as f64 / per_second);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        socket
            .send_to(packet, MDNS_GROUP)
            .map_err(|e| format!("send to {MDNS_GROUP}: {e}"))?;
    }
    Ok(packets.len())
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// Forged nodes in the flood.
    pub records: usize,
    /// Their TTL in seconds.
    pub ttl_s: u32,
    /// Flood packets sent a second.
    pub packets_per_s: u32,
    /// How long after the last packet the `after` figure is taken.
    pub settle: Duration,
    /// The daemon's `--log-level`.
    pub log_level: String,
    /// The records of each forged node.
    pub records_each: RecordSet,
}

impl Default for FloodOptions {
    /// The flood of the report that made mDNS hints bounded: 90,000
    /// records with a one-day TTL.
    fn default() -> Self {
        FloodOptions {
            records: 90_000,
            ttl_s: 86_400,
            packets_per_s: 2_000,
            settle: Duration::from_secs(10),
            log_level: "info".to_owned(),
            records_each: RecordSet::Service,
        }
    }
}

/// What [`measure`] found. Memory is `VmRSS` of `/proc/PID/status`, in KiB.
#[derive(Debug, Clone)]
pub struct FloodFigures {
    /// Before the flood, the daemon started and idle.
    pub baseline_kib: u64,
    /// The most seen during the flood and the settling time after it
    /// (sampled every 20 ms).
    pub peak_kib: u64,
    /// At the end of the settling time.
    pub after_kib: u64,
    /// Forged nodes sent.
    pub records_sent: usize,
    /// Packets they took.
    pub packets_sent: usize,
    /// How long sending took.
    pub flood_time: Duration,
    /// Datagrams the daemon sent from the start of the flood to the end of
    /// the settling time: all of them hellos to the forged addresses (the
    /// daemon has no peers).
    pub datagrams_sent: u64,
    /// The daemon's discovery counters at the end (all zero from a daemon
    /// whose `status` has none).
    pub discovery: DiscoveryStatus,
}

/// Floods one `rossipd` (mDNS on, no key, on host h1 of a two-host
/// namespaced LAN) with forged records sent from h2 that name addresses of
/// h2, and reports its memory before, at most during, and after. Needs
/// root; `Err` says why it could not run.
pub fn measure(options: &FloodOptions) -> Result<FloodFigures, String> {
    let lan = Lan::new("mdns_flood", 2)
        .map_err(|_| "the mDNS flood needs network namespaces (root and iproute2)".to_owned())?;
    let daemon = Daemon::builder(&lan.host(0).name)
        .netns(&lan.host(0).ns)
        .log_level(&options.log_level)
        .spawn();
    let pid = daemon.pid();
    let rss = || sys::vm_rss_kib(pid).ok_or_else(|| format!("rossipd (pid {pid}) is gone"));
    // Idle figure: after mDNS started up and the first announcements went.
    std::thread::sleep(Duration::from_secs(2));
    let baseline_kib = rss()?;
    let sent_before = daemon.status().datagrams.sent;

    let forgery = Forgery {
        records: options.records,
        ttl_s: options.ttl_s,
        cluster: "rossip".to_owned(),
        key_id: String::new(),
        target: lan.host(1).addr,
        seed: u64::from(std::process::id()),
        records_each: options.records_each,
    };
    let flood = packets(&forgery);
    let socket = udp_socket_in(&lan.host(1).ns, SocketAddrV4::new(lan.host(1).addr, 5353))?;

    let peak = Arc::new(AtomicU64::new(baseline_kib));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = sys::vm_rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let sent = send_flood(&socket, &flood, options.packets_per_s, &stop);
    let flood_time = started.elapsed();
    std::thread::sleep(options.settle);
    let after_kib = rss();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let packets_sent = sent?;
    let after_kib = after_kib?;
    let status = daemon.status();
    let records_sent = flood
        .iter()
        .take(packets_sent)
        .map(|p| {
            usize::from(u16::from_be_bytes([p[6], p[7]]))
                / usize::from(options.records_each.records())
        })
        .sum();
    Ok(FloodFigures {
        baseline_kib,
        peak_kib: peak.load(Ordering::Relaxed).max(after_kib),
        after_kib,
        records_sent,
        packets_sent,
        flood_time,
        datagrams_sent: status.datagrams.sent.saturating_sub(sent_before),
        discovery: status.discovery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forgery(records: usize) -> Forgery {
        Forgery {
            records,
            ttl_s: 86_400,
            cluster: "rossip".to_owned(),
            key_id: String::new(),
            target: Ipv4Addr::new(10, 77, 0, 12),
            seed: 7,
            records_each: RecordSet::Service,
        }
    }

    /// Reads a possibly compressed name at `at`; returns it and where the
    /// bytes after it start.
    fn name(packet: &[u8], mut at: usize) -> (String, usize) {
        let mut labels = Vec::new();
        let mut end = None;
        loop {
            let len = packet[at] as usize;
            if len & 0xc0 == 0xc0 {
                end.get_or_insert(at + 2);
                at = (len & 0x3f) << 8 | packet[at + 1] as usize;
                continue;
            }
            if len == 0 {
                end.get_or_insert(at + 1);
                break;
            }
            labels.push(String::from_utf8_lossy(&packet[at + 1..at + 1 + len]).into_owned());
            at += 1 + len;
        }
        (labels.join(".") + ".", end.unwrap_or(at))
    }

    #[test]
    fn packets_hold_whole_nodes_and_fit() {
        for records_each in [RecordSet::Service, RecordSet::WithoutPtr] {
            let flood = packets(&Forgery {
                records_each,
                ..forgery(1_000)
            });
            let each = usize::from(records_each.records());
            let mut nodes = 0;
            for packet in &flood {
                assert!(packet.len() <= MAX_PACKET_BYTES, "{} bytes", packet.len());
                let answers = u16::from_be_bytes([packet[6], packet[7]]) as usize;
                assert_eq!(answers % each, 0);
                nodes += answers / each;
            }
            assert_eq!(nodes, 1_000);
        }
    }

    /// (type, owner name, value) of every answer of `packet`.
    fn answers(packet: &[u8]) -> Vec<(u16, String, String)> {
        let mut at = 12;
        let mut seen = Vec::new();
        for _ in 0..u16::from_be_bytes([packet[6], packet[7]]) {
            let (owner, next) = name(packet, at);
            let rtype = u16::from_be_bytes([packet[next], packet[next + 1]]);
            let len = u16::from_be_bytes([packet[next + 8], packet[next + 9]]) as usize;
            let rdata = next + 10;
            let value = match rtype {
                TYPE_PTR => name(packet, rdata).0,
                TYPE_SRV => {
                    let port = u16::from_be_bytes([packet[rdata + 4], packet[rdata + 5]]);
                    format!("{}:{port}", name(packet, rdata + 6).0)
                }
                TYPE_A => format!(
                    "{}.{}.{}.{}",
                    packet[rdata],
                    packet[rdata + 1],
                    packet[rdata + 2],
                    packet[rdata + 3]
                ),
                _ => String::from_utf8_lossy(&packet[rdata..rdata + len]).into_owned(),
            };
            seen.push((rtype, owner, value));
            at = rdata + len;
        }
        assert_eq!(at, packet.len());
        seen
    }

    #[test]
    fn records_decode_as_a_rossip_service() {
        let f = forgery(3);
        let seen = answers(&packets(&f)[0]);
        let id = f.id(1);
        assert_eq!(
            seen[4],
            (
                TYPE_PTR,
                "_rossip._udp.local.".to_owned(),
                format!("{id}._rossip._udp.local.")
            )
        );
        assert_eq!(
            seen[5],
            (
                TYPE_SRV,
                format!("{id}._rossip._udp.local."),
                format!("{id}.local.:{}", FIRST_VICTIM_PORT + 1)
            )
        );
        assert!(seen[6].2.contains("cluster=rossip"), "{:?}", seen[6]);
        assert_eq!(
            seen[7],
            (TYPE_A, format!("{id}.local."), "10.77.0.12".to_owned())
        );
    }

    #[test]
    fn records_without_ptr_decode_too() {
        let f = Forgery {
            records_each: RecordSet::WithoutPtr,
            ..forgery(3)
        };
        let seen = answers(&packets(&f)[0]);
        let types: Vec<u16> = seen.iter().map(|(t, ..)| *t).collect();
        assert_eq!(
            types[..6],
            [TYPE_SRV, TYPE_TXT, TYPE_A, TYPE_SRV, TYPE_TXT, TYPE_A]
        );
        let id = f.id(1);
        assert_eq!(
            seen[3],
            (
                TYPE_SRV,
                format!("{id}._rossip._udp.local."),
                format!("{id}.local.:{}", FIRST_VICTIM_PORT + 1)
            )
        );
        assert_eq!(seen[5].1, format!("{id}.local."));
    }
}

//! A forged mDNS announcement never makes a member (issue 5, "hostile
//! input"). Two keyed daemons on hosts h1 and h2 of a namespaced LAN find
//! each other by mDNS; on h3 a forger announces two `_rossip._udp.local.`
//! services whose TXT looks exactly like a rossip node of this cluster and
//! key (node id, name, cluster, protocol version, key id), pointing at UDP
//! sockets that do not speak rossip: one reads and ignores everything, one
//! answers every datagram with garbage and with the datagram echoed back.
//!
//! The daemons must try the forged addresses (mDNS is a hint: their logs
//! say "discovered", the forger's sockets receive their hellos) and refuse
//! them: for a 10-second window `rossipctl peers --all` never lists a forged
//! node, the membership counts stay at the one real peer, and the garbage
//! shows in the drop counters.
//!
//! The forger runs inside h3's namespace as this same test binary, started
//! again with `ip netns exec` on the ignored test [`forger_child`] (mdns-sd
//! must run in the namespace whose interfaces it announces on). Needs root
//! and iproute2; without them one line says it was skipped, except with
//! `CI=true`, where it must run.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rossip_proto::rpc::PeerView;
use rossip_tests::cluster;
use rossip_tests::ctl::rossipctl_in;
use rossip_tests::daemon::Daemon;
use rossip_tests::netns::Lan;
use rossip_tests::{sys, wait};

const KEY: &str = "6b1e0f3a9c2d4e5f60718293a4b5c6d7e8f9011223344556677889900aabbccd";

/// mDNS plus the first probes; generous for a loaded 2-core machine.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the forged records are watched not becoming members.
const WATCH_WINDOW: Duration = Duration::from_secs(10);
/// Environment variable that turns [`forger_child`] into the forger:
/// `KEY_ID ADDR` (the key id to put in TXT, the address to announce).
const FORGER_ENV: &str = "ROSSIP_TEST_FORGER";
/// The forger gives up by itself after this long (the parent also kills it).
const FORGER_LIFETIME: Duration = Duration::from_secs(180);

/// The forged services: (instance and node id, name, UDP port, answers?).
const FORGED: &[(&str, &str, u16, bool)] = &[
    (
        "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0",
        "forged-silent",
        7465,
        false,
    ),
    (
        "f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1",
        "forged-garbage",
        7466,
        true,
    ),
];

/// The forger's half: announces [`FORGED`] and serves its sockets until its
/// stdin closes. Does nothing unless [`FORGER_ENV`] is set.
#[test]
#[ignore = "the forger process of forged_mdns_never_becomes_a_member; run by it"]
fn forger_child() {
    let Ok(spec) = std::env::var(FORGER_ENV) else {
        return;
    };
    let mut parts = spec.split_whitespace();
    let key_id = parts.next().expect("key id").to_owned();
    let addr: Ipv4Addr = parts
        .next()
        .expect("addr")
        .parse()
        .expect("an IPv4 address");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // The parent holds our stdin: EOF means it is done (or gone).
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::SeqCst);
        });
    }
    let counters: Vec<Arc<AtomicU64>> =
        FORGED.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut servers = Vec::new();
    for ((_, name, port, answers), count) in FORGED.iter().zip(&counters) {
        let socket = UdpSocket::bind((addr, *port)).expect("bind a forged socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let (stop, count, answers, name) = (stop.clone(), count.clone(), *answers, *name);
        servers.push(std::thread::spawn(move || {
            serve_forged(&socket, &stop, &count, answers, name);
        }));
    }
    let mdns = mdns_sd::ServiceDaemon::new().expect("start mdns-sd");
    for (id, name, port, _) in FORGED {
        let properties = [
            ("id", *id),
            ("name", *name),
            ("cluster", "rossip"),
            ("proto", "1"),
            ("key", key_id.as_str()),
        ];
        let info = mdns_sd::ServiceInfo::new(
            "_rossip._udp.local.",
            id,
            &format!("{id}.local."),
            IpAddr::V4(addr),
            *port,
            &properties[..],
        )
        .expect("a forged service record");
        mdns.register(info).expect("register the forged service");
    }
    println!("forger: registered");
    let started = Instant::now();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < FORGER_LIFETIME {
        let line: Vec<String> = FORGED
            .iter()
            .zip(&counters)
            .map(|((_, name, ..), c)| format!("{name}={}", c.load(Ordering::SeqCst)))
            .collect();
        println!("forger: received {}", line.join(" "));
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::SeqCst);
    for server in servers {
        let _ = server.join();
    }
    if let Ok(done) = mdns.shutdown() {
        let _ = done.recv_timeout(Duration::from_secs(2));
    }
}

/// Reads datagrams until `stop`; counts them; if `answers`, sends back
/// random garbage (never starting with the rossip magic) and the datagram
/// itself (a reflection of the sender's own sealed hello).
fn serve_forged(
    socket: &UdpSocket,
    stop: &AtomicBool,
    count: &AtomicU64,
    answers: bool,
    name: &str,
) {
    let mut buf = vec![0u8; 65_536];
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
    while !stop.load(Ordering::SeqCst) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        count.fetch_add(1, Ordering::SeqCst);
        if !answers {
            continue;
        }
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let garbage: Vec<u8> = (0..(state % 1_200) as usize + 2)
            .map(|i| (state.rotate_left(i as u32 % 64) & 0xff) as u8)
            .collect();
        let mut garbage = garbage;
        garbage[0] = b'X';
        let _ = socket.send_to(&garbage, from);
        let _ = socket.send_to(&buf[..len], from);
    }
}

/// The forger process: killed (by PID) and reaped when dropped.
struct Forger {
    child: Child,
    log: std::path::PathBuf,
}

impl Forger {
    fn start(lan: &Lan, host: usize, key_id: &str, dir: &Path) -> Forger {
        let log = dir.join("forger.log");
        let out = File::create(&log).expect("forger log");
        let err = out.try_clone().expect("clone the log handle");
        let exe = std::env::current_exe().expect("this test binary");
        let args = [
            "forger_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]
        .map(Into::into)
        .to_vec();
        let (program, args) = sys::in_netns(Some(&lan.host(host).ns), exe, args);
        let child = Command::new(&program)
            .args(&args)
            .env(FORGER_ENV, format!("{key_id} {}", lan.host(host).addr))
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start the forger `{}`: {e}",
                    sys::command_line(&program, &args)
                )
            });
        Forger { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The forger's latest datagram counts, by forged name.
    fn received(&self) -> BTreeMap<String, u64> {
        let output = self.output();
        let Some(line) = output
            .lines()
            .rev()
            .find(|l| l.starts_with("forger: received"))
        else {
            return BTreeMap::new();
        };
        line.trim_start_matches("forger: received")
            .split_whitespace()
            .filter_map(|pair| {
                let (name, n) = pair.split_once('=')?;
                Some((name.to_owned(), n.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- forger output ---\n{}", self.output());
        }
    }
}

fn peers_via_ctl(lan: &Lan, index: usize, daemon: &Daemon) -> Vec<PeerView> {
    let out = rossipctl_in(
        Some(&lan.host(index).ns),
        daemon.socket(),
        &["--json", "peers", "--all"],
    );
    out.assert_success();
    out.json_lines()
        .into_iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}")))
        .collect()
}

/// Whether `peers` lists anything forged.
fn lists_forged(peers: &[PeerView]) -> bool {
    peers.iter().any(|p| {
        FORGED
            .iter()
            .any(|(id, name, ..)| p.name == *name || p.id == *id)
    })
}

#[test]
fn forged_mdns_never_becomes_a_member() {
    let Ok(lan) = Lan::new("forged_mdns", 3) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("cluster.key");
    std::fs::write(&key, format!("{KEY}\n")).expect("write key file");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key_arg = key.to_str().expect("utf-8 path");
    let mut daemons: Vec<Daemon> = (0..2)
        .map(|i| {
            Daemon::builder(&lan.host(i).name)
                .netns(&lan.host(i).ns)
                .args(["--key-file", key_arg])
                .spawn_unready()
        })
        .collect();
    for d in &mut daemons {
        d.wait_ready(rossip_tests::daemon::READY_TIMEOUT);
    }
    let nodes: Vec<(&str, &Path)> = daemons.iter().map(|d| (d.name(), d.socket())).collect();
    cluster::wait_all_alive(&nodes, DISCOVERY_TIMEOUT);
    let key_id = daemons[0]
        .status()
        .keys
        .first()
        .cloned()
        .expect("a keyed daemon names its key");

    let forger = Forger::start(&lan, 2, &key_id, dir.path());
    wait::wait_until(Duration::from_secs(30), "the forger registered", || {
        forger.output().contains("forger: registered")
    });
    // mDNS is a hint: each daemon discovers the forged records and tries
    // them (its log says so; the forged sockets get its hellos).
    wait::wait_until(
        DISCOVERY_TIMEOUT,
        "both daemons tried both forged records",
        || {
            let tried = daemons.iter().all(|d| {
                let log = d.log();
                // Logged by the name and short id the record claims.
                FORGED.iter().all(|(id, name, ..)| {
                    let peer = format!("peer={name}");
                    let peer_id = format!("peer_id={}", &id[..rossip_proto::NodeId::SHORT_LEN]);
                    log.lines().any(|l| {
                        l.contains("mDNS: discovered") && l.contains(&peer) && l.contains(&peer_id)
                    })
                })
            });
            let received = forger.received();
            let reached = FORGED
                .iter()
                .all(|(_, name, ..)| received.get(*name).copied().unwrap_or(0) > 0);
            if tried && reached {
                Ok(())
            } else {
                Err(format!(
                    "discovered in logs: {tried}; forger received {received:?}"
                ))
            }
        },
    );

    let window = Instant::now() + WATCH_WINDOW;
    let mut polls = 0;
    while Instant::now() < window {
        for (i, d) in daemons.iter().enumerate() {
            let peers = peers_via_ctl(&lan, i, d);
            assert!(
                !lists_forged(&peers),
                "{} lists a forged node: {}",
                d.name(),
                cluster::describe_peers(&peers)
            );
            // Exactly one member, whatever its liveness: on a loaded
            // machine the real peer may be `suspect` for a moment, which is
            // not what this test is about (it ends by waiting for it alive).
            let counts = d.status().peers;
            assert_eq!(
                counts.alive + counts.suspect + counts.failed + counts.left,
                1,
                "{} counts members other than its one real peer: {}",
                d.name(),
                cluster::describe_peers(&peers)
            );
        }
        polls += 1;
        std::thread::sleep(wait::POLL_INTERVAL * 4);
    }

    // Through it all, the real pair stayed (or became again) alive to each other.
    cluster::wait_all_alive(&nodes, DISCOVERY_TIMEOUT);

    // The garbage answers were refused and counted.
    let dropped: Vec<BTreeMap<String, u64>> = daemons
        .iter()
        .map(|d| d.status().datagrams.dropped)
        .collect();
    assert!(
        dropped
            .iter()
            .any(|d| d.get("bad_magic").copied().unwrap_or(0) > 0),
        "no daemon counted the forger's garbage: {dropped:?}"
    );
    sys::say(&format!(
        "forged mDNS: {polls} polls over {WATCH_WINDOW:?}, no forged member; forger received {:?}; \
         drops {dropped:?}",
        forger.received()
    ));
}

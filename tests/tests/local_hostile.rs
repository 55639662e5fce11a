//! Hostile and unprivileged clients of the local socket (issue 5, items 5
//! and 6): 1,000 idle connections and a client past the connection limit,
//! 100 subscribers that never read, and the system socket's permissions
//! (0660 `root:rossip`; a refused user is told to join the group).
//!
//! The tests run real `rossipd` and `rossipctl` processes. They raise this
//! process's open-files limit when it is too low for the connections they
//! hold (the daemon inherits it). The permission test needs root: it skips
//! with a notice otherwise, except under `CI=true`, where it must run.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rossip_proto::rpc::EventBody;
use rossip_proto::rpc::code::BUSY;
use rossip_tests::ctl::{rossipctl, spawn_rossipctl};
use rossip_tests::daemon::Daemon;
use rossip_tests::rpc::RpcClient;
use rossip_tests::{bins, sys, wait};
use serde_json::{Value, json};

/// Idle connections held open while other clients must be served.
const IDLE_CONNECTIONS: usize = 1000;

/// rossipd's `rpc::MAX_CONNECTIONS` (the daemon's crate keeps it private).
const MAX_CONNECTIONS: usize = 4096;

/// rossipd's `rpc::RESERVED_FDS`: open files it keeps for itself.
const RESERVED_FDS: u64 = 128;

/// Subscribers that subscribe and then never read.
const SLOW_SUBSCRIBERS: usize = 100;

/// Messages sent while the slow subscribers stall: enough to overflow what
/// each of them may hold back, many times over.
const FLOOD_MESSAGES: usize = 20_000;

/// Text bytes of each flood message (the event line is about twice that).
const FLOOD_TEXT_BYTES: usize = 200;

/// Requests written before their answers are read, in the flood.
const PIPELINE: usize = 200;

/// The daemon's resident memory must stay under this with 100 stalled
/// subscribers (measured: see the figures the test prints).
const RSS_BOUND_MIB: u64 = 300;

/// How long a client of a loaded daemon may wait for its answer: generous,
/// the machine may be compiling; the figures printed are what matters.
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// How long the flood may take, and the normal subscriber to see all of it.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(180);

/// The unprivileged user the permission test runs `rossipctl` as (`nobody`).
const NOBODY: u32 = 65534;

/// The group of the system socket.
const GROUP: &str = "rossip";

#[test]
fn idle_connections_do_not_starve_other_clients() {
    if !raise_open_files(
        IDLE_CONNECTIONS as u64 + 512,
        "idle_connections_do_not_starve_other_clients",
    ) {
        return;
    }
    let daemon = Daemon::builder("idle").loopback().spawn();
    let rss_before = sys::vm_rss_kib(daemon.pid()).unwrap_or(0);
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for i in 0..IDLE_CONNECTIONS {
        let stream = UnixStream::connect(daemon.socket())
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}\n{}", daemon.log_excerpt()));
        idle.push(stream);
    }

    let started = Instant::now();
    let status = rossipctl(daemon.socket(), &["status"]);
    let status_took = started.elapsed();
    status.assert_success();
    let started = Instant::now();
    let send = rossipctl(
        daemon.socket(),
        &["send", "heard over 1,000 idle connections"],
    );
    let send_took = started.elapsed();
    send.assert_success();
    assert!(
        status_took < ANSWER_DEADLINE && send_took < ANSWER_DEADLINE,
        "status took {status_took:?}, send {send_took:?}"
    );
    // The idle ones were served, not parked in the accept queue: the first
    // and the last answer too.
    for which in [0, IDLE_CONNECTIONS - 1] {
        let answer = status_over(&idle[which]);
        assert!(
            answer.as_ref().is_ok_and(|a| a["result"].is_object()),
            "idle connection {which} was not served: {answer:?}"
        );
    }
    let rss = sys::vm_rss_kib(daemon.pid()).unwrap_or(0);
    let rpc = daemon.status().rpc;
    assert!(
        rpc.connections > IDLE_CONNECTIONS as u64 && rpc.refused == 0,
        "status counts the idle connections, refusing none: {rpc:?}"
    );
    let log = daemon.log();
    assert!(
        !log.contains("the most rossipd serves at once"),
        "1,000 connections are within the limit; the log says otherwise:\n{}",
        daemon.log_excerpt()
    );
    sys::say(&format!(
        "local_hostile: {IDLE_CONNECTIONS} idle connections: `rossipctl status` {status_took:?}, \
         `rossipctl send` {send_took:?}; daemon VmRSS {} MiB before, {} MiB with them",
        rss_before / 1024,
        rss / 1024
    ));
}

#[test]
fn a_client_past_the_connection_limit_is_refused_with_an_error() {
    // The daemon needs MAX_CONNECTIONS + RESERVED_FDS files; this process
    // as many again for its ends of the connections.
    let needed = (MAX_CONNECTIONS as u64 + RESERVED_FDS) + 1024;
    if !raise_open_files(
        needed,
        "a_client_past_the_connection_limit_is_refused_with_an_error",
    ) {
        return;
    }
    let daemon = Daemon::builder("limit").loopback().spawn();
    let mut held = Vec::with_capacity(MAX_CONNECTIONS);
    for i in 0..MAX_CONNECTIONS {
        let stream = UnixStream::connect(daemon.socket())
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", daemon.log_excerpt()));
        held.push(stream);
    }
    // The last held one is served (so every one before it was accepted)…
    let answer = status_over(held.last().expect("held"));
    assert!(
        answer.as_ref().is_ok_and(|a| a["result"].is_object()),
        "connection {MAX_CONNECTIONS} was not served: {answer:?}"
    );
    let rss = sys::vm_rss_kib(daemon.pid()).unwrap_or(0);

    // …and the next one is told why it is not.
    let refused = UnixStream::connect(daemon.socket()).expect("connect past the limit");
    let answer = status_over(&refused)
        .unwrap_or_else(|e| panic!("connection {} past the limit: {e}", MAX_CONNECTIONS + 1));
    assert_eq!(answer["id"], Value::Null, "{answer}");
    assert_eq!(answer["error"]["code"], BUSY, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("at most {MAX_CONNECTIONS} connections")),
        "{answer}"
    );
    let out = rossipctl(daemon.socket(), &["status"]);
    assert_eq!(out.code, Some(1), "rossipctl past the limit: {out:?}");
    assert!(out.stderr.contains("connections at once"), "{}", out.stderr);

    // Logged once for the episode, not once per refused client.
    let warnings = |log: &str| log.matches("the most rossipd serves at once").count();
    assert_eq!(warnings(&daemon.log()), 1, "{}", daemon.log_excerpt());

    // Room again once some close.
    held.truncate(MAX_CONNECTIONS - 10);
    wait::wait_until(ANSWER_DEADLINE, "a connection to be served again", || {
        let out = rossipctl(daemon.socket(), &["status"]);
        if out.code == Some(0) {
            Ok(())
        } else {
            Err(out.stderr)
        }
    });
    let rpc = daemon.status().rpc;
    assert_eq!(rpc.max_connections, MAX_CONNECTIONS as u64, "{rpc:?}");
    assert!(rpc.refused >= 2, "status counts the refusals: {rpc:?}");
    sys::say(&format!(
        "local_hostile: {MAX_CONNECTIONS} open connections: daemon VmRSS {} MiB; the next client \
         got code {BUSY}",
        rss / 1024
    ));
}

#[test]
fn slow_subscribers_lag_while_others_are_served_and_memory_stays_bounded() {
    if !raise_open_files(
        SLOW_SUBSCRIBERS as u64 + 256,
        "slow_subscribers_lag_while_others_are_served_and_memory_stays_bounded",
    ) {
        return;
    }
    // A subscriber's backlog is the history window: a stalled one loses
    // events once the window drops what it has not read. A window smaller
    // than the flood makes that happen (the sender's back-pressure lets the
    // flood through all the same).
    let daemon = Daemon::builder("slow")
        .loopback()
        .log_level("info")
        .args(["--history", "5000"])
        .spawn();
    let mut slow: Vec<RpcClient> = (0..SLOW_SUBSCRIBERS)
        .map(|_| {
            let mut client = daemon.client();
            client.subscribe(json!({}));
            client
        })
        .collect();
    let mut tail = spawn_rossipctl(None, daemon.socket(), &["--json", "tail", "-f", "-n", "0"]);
    // Until `tail -f` shows one, it may not have subscribed yet.
    let mut sender = daemon.client();
    let mut ready_sent = 0u64;
    wait::wait_until(ANSWER_DEADLINE, "`tail -f` to print a message", || {
        sender.send("tail ready?");
        ready_sent += 1;
        tail.lines().iter().any(|l| l.contains("tail ready?"))
    });

    // Meanwhile another client keeps asking, and times every answer.
    let socket = daemon.socket().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        std::thread::spawn(move || probe_until(&socket, &stop))
    };
    let pid = daemon.pid();
    let mut peak_rss = sys::vm_rss_kib(pid).unwrap_or(0);
    let started = Instant::now();
    let padding = "x".repeat(FLOOD_TEXT_BYTES);
    let mut sent = 0;
    while sent < FLOOD_MESSAGES {
        let batch = PIPELINE.min(FLOOD_MESSAGES - sent);
        for k in sent..sent + batch {
            let line = json!({"jsonrpc": "2.0", "id": k, "method": "send",
                              "params": {"text": format!("flood {k} {padding}")}});
            sender.send_line(&line.to_string()).expect("write a send");
        }
        for k in sent..sent + batch {
            let answer = sender.recv_value(FLOOD_TIMEOUT);
            assert!(
                answer["result"]["id"].is_string(),
                "send {k} refused: {answer}"
            );
        }
        sent += batch;
        peak_rss = peak_rss.max(sys::vm_rss_kib(pid).unwrap_or(0));
        assert!(
            started.elapsed() < FLOOD_TIMEOUT,
            "the flood took too long ({sent} sent)"
        );
    }
    let flood_took = started.elapsed();
    let last = format!("flood {} ", FLOOD_MESSAGES - 1);
    tail.wait_for_line(FLOOD_TIMEOUT, "the flood's last message", |l| {
        l.contains(&last)
    });
    peak_rss = peak_rss.max(sys::vm_rss_kib(pid).unwrap_or(0));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (probes, probe_sends) = prober.join().expect("the prober thread");

    // The normal subscriber got everything; the slow ones lost events, counted.
    let tailed = tail
        .lines()
        .iter()
        .filter(|l| l.contains("\"flood "))
        .count();
    assert_eq!(
        tailed, FLOOD_MESSAGES,
        "`rossipctl tail -f` missed messages"
    );
    // A slow subscriber that reads at last: events, then a `lagged` notice
    // with the count of what it missed; nothing vanishes unaccounted.
    let (delivered, dropped) = drain_subscriber(&mut slow[0]);
    // Counted as the subscriber is told (a stalled one holds only its
    // position, so what it misses is known when it reads on).
    let status = daemon.status();
    assert!(
        status.subscriber_drops > 0,
        "stalled subscribers must lose events, not hold them all"
    );
    assert!(dropped > 0, "no `lagged` notice (got {delivered} events)");
    assert_eq!(
        delivered + dropped,
        FLOOD_MESSAGES as u64 + ready_sent + probe_sends,
        "every event is delivered or counted as dropped"
    );
    assert!(
        peak_rss / 1024 < RSS_BOUND_MIB,
        "daemon VmRSS peaked at {} MiB with {SLOW_SUBSCRIBERS} stalled subscribers (bound \
         {RSS_BOUND_MIB} MiB)\n{}",
        peak_rss / 1024,
        daemon.log_excerpt()
    );
    let worst = probes.iter().max().copied().unwrap_or_default();
    assert!(worst < ANSWER_DEADLINE, "a probe waited {worst:?}");
    sys::say(&format!(
        "local_hostile: {FLOOD_MESSAGES} messages in {flood_took:?} with {SLOW_SUBSCRIBERS} stalled \
         subscribers: daemon VmRSS peak {} MiB; {} status+send probes, slowest {worst:?}, median {:?}; \
         {} events dropped for the stalled ones; one of them got {delivered} events and a `lagged` \
         count of {dropped}",
        peak_rss / 1024,
        probes.len(),
        median(&probes),
        status.subscriber_drops,
    ));
}

#[test]
fn the_system_socket_is_for_root_and_the_rossip_group() {
    if sys::effective_uid() != Some(0) {
        assert!(!sys::ci(), "CI=true: the permission test must run as root");
        sys::skipped(
            "the_system_socket_is_for_root_and_the_rossip_group",
            "it needs root",
        );
        return;
    }
    let created = ensure_group();
    let gid = group_id(GROUP).expect("the rossip group exists now");
    let base = tempfile::tempdir().expect("temp dir");
    // Open to all, so that only rossipd's own modes decide below.
    set_mode(base.path(), 0o755);
    let run_dir = base.path().join("run");
    let socket = run_dir.join("rossipd.sock");
    let daemon = Daemon::builder("perm").loopback().socket(&socket).spawn();

    let meta = std::fs::metadata(&socket).expect("stat the socket");
    assert_eq!(
        (meta.mode() & 0o777, meta.uid(), meta.gid()),
        (0o660, 0, gid),
        "a root daemon's socket is 0660 root:rossip"
    );
    let meta = std::fs::metadata(&run_dir).expect("stat the socket directory");
    assert_eq!(
        (meta.mode() & 0o777, meta.uid(), meta.gid()),
        (0o750, 0, gid),
        "the directory rossipd made for it is 0750 root:rossip"
    );

    // A member of the group is served, and its changes are logged with its uid.
    let member = ["--groups", &gid.to_string()];
    let out = rossipctl_as_nobody(&member, &socket, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a rossip member: {}",
        describe(&out)
    );
    let out = rossipctl_as_nobody(&member, &socket, &["send", "from nobody"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a rossip member: {}",
        describe(&out)
    );
    wait::wait_until(ANSWER_DEADLINE, "the send's audit line", || {
        let log = daemon.log();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("connection from uid {NOBODY} pid")));
        match line {
            Some(l) if l.contains("calls send") => Ok(()),
            _ => Err(sys::tail_lines(daemon.log_path(), 5)),
        }
    });

    // Anyone else is refused with exit 77 and told what to do.
    let outsider = ["--clear-groups"];
    let out = rossipctl_as_nobody(&outsider, &socket, &["status"]);
    assert_refused_with_hint(&out, &socket);

    // A 0600 socket (what a root daemon makes when the group is missing).
    // The group exists by now, so the hint says that a restart of rossipd
    // opens the socket to it (rossipctl's own tests cover the hint for a
    // group that is still missing: `groupadd -r rossip`).
    set_mode(&socket, 0o600);
    let out = rossipctl_as_nobody(&member, &socket, &["status"]);
    assert_refused_with_hint(&out, &socket);
    assert!(
        text(&out.stderr).contains("the group exists now: restart rossipd"),
        "{}",
        describe(&out)
    );

    // `leave` from a member is an audited call too.
    set_mode(&socket, 0o660);
    let out = rossipctl_as_nobody(&member, &socket, &["leave"]);
    assert_eq!(out.status.code(), Some(0), "leave: {}", describe(&out));
    let mut daemon = daemon;
    daemon.assert_clean_exit(ANSWER_DEADLINE, "rossipctl leave");
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("uid {NOBODY} pid")) && l.contains("calls leave")),
        "no audit line for leave:\n{}",
        daemon.log_excerpt()
    );
    drop(daemon);
    if created {
        // Only a group this test made is removed; a real one stays.
        if let Err(e) = sys::run("groupdel", &[GROUP]) {
            sys::say(&format!(
                "local_hostile: cannot remove the test's `rossip` group: {e}"
            ));
        }
    }
}

/// Raises this process's soft open-files limit to `needed` (and the hard
/// one too, as root) with `prlimit`; daemons started afterwards inherit
/// it. `false` (after a skip notice for `test`) when it cannot, except under `CI=true`.
fn raise_open_files(needed: u64, test: &str) -> bool {
    // The limit is the process's: tests running at once must not lower
    // what another one raised between its check and its change.
    static RAISING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = RAISING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some((soft, hard)) = open_files_limits() else {
        assert!(!sys::ci(), "CI=true: cannot read /proc/self/limits");
        sys::skipped(test, "cannot read /proc/self/limits");
        return false;
    };
    if soft >= needed {
        return true;
    }
    let root = sys::effective_uid() == Some(0);
    let spec = if hard >= needed {
        format!("--nofile={needed}:")
    } else if root {
        format!("--nofile={needed}:{needed}")
    } else {
        assert!(
            !sys::ci(),
            "CI=true: the open-files hard limit {hard} is below {needed}"
        );
        sys::skipped(
            test,
            &format!("the open-files hard limit {hard} is below {needed}"),
        );
        return false;
    };
    let pid = std::process::id().to_string();
    if let Err(e) = sys::run("prlimit", &["--pid", &pid, &spec]) {
        // Root without CAP_SYS_RESOURCE (some containers) cannot raise the
        // hard limit either.
        let why = format!(
            "cannot raise the open-files limit from {soft} (hard {hard}) to {needed}: {e}; \
             run the tests with a higher `ulimit -n`"
        );
        assert!(!sys::ci(), "CI=true: {why}");
        sys::skipped(test, &why);
        return false;
    }
    let now = open_files_limits().map(|(soft, _)| soft);
    assert!(
        now >= Some(needed),
        "prlimit left the soft limit at {now:?}"
    );
    true
}

/// `(soft, hard)` of `Max open files` in `/proc/self/limits`.
fn open_files_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line.trim_start_matches("Max open files").split_whitespace();
    let parse = |f: Option<&str>| match f? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((parse(fields.next())?, parse(fields.next())?))
}

/// Sends one `status` request over an already open connection and reads
/// the answer line (`Err`: what went wrong instead).
fn status_over(stream: &UnixStream) -> Result<Value, String> {
    let mut writer = stream;
    writer
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"status\"}\n")
        .map_err(|e| format!("write: {e}"))?;
    stream
        .set_read_timeout(Some(ANSWER_DEADLINE))
        .map_err(|e| format!("set timeout: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): {line:?}"))
}

/// Runs `rossipctl status` and `rossipctl send` alternately until `stop`,
/// returning how long each took and how many sends it made; panics if one
/// fails.
fn probe_until(socket: &Path, stop: &std::sync::atomic::AtomicBool) -> (Vec<Duration>, u64) {
    let mut took = Vec::new();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let text = format!("probe {n}");
        let args: &[&str] = if n % 2 == 0 {
            &["status"]
        } else {
            &["send", &text]
        };
        let started = Instant::now();
        rossipctl(socket, args).assert_success();
        took.push(started.elapsed());
        n += 1;
    }
    (took, n / 2)
}

/// Reads a stalled subscriber's queued events until it goes quiet:
/// (messages delivered, events its `lagged` notices said were dropped).
fn drain_subscriber(client: &mut RpcClient) -> (u64, u64) {
    let (mut delivered, mut dropped) = (0, 0);
    while let Some(event) = client.next_event(Duration::from_secs(5)) {
        match event.event {
            EventBody::Message { .. } => delivered += 1,
            EventBody::Lagged { dropped: n, .. } => dropped += n,
            EventBody::Peer { .. }
            | EventBody::Presence { .. }
            | EventBody::DirectStatus { .. } => {}
        }
    }
    (delivered, dropped)
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// Creates the `rossip` group if it does not exist; `true` if it did so.
fn ensure_group() -> bool {
    if group_id(GROUP).is_some() {
        return false;
    }
    if let Err(e) = sys::run("groupadd", &["-r", GROUP]) {
        panic!("cannot create the `{GROUP}` group: {e}");
    }
    true
}

/// The gid of `name`, from `getent group` (NSS, as rossipd sees it).
fn group_id(name: &str) -> Option<u32> {
    let out = sys::run("getent", &["group", name]).ok()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.trim().split(':').nth(2)?.parse().ok()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Runs `rossipctl --socket SOCKET ARGS…` as uid/gid 65534 with the
/// supplementary groups `groups` gives `setpriv`.
fn rossipctl_as_nobody(groups: &[&str], socket: &Path, args: &[&str]) -> Output {
    let setpriv = sys::find_program("setpriv").expect("`setpriv` (util-linux) is needed");
    let mut cmd = Command::new(setpriv);
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args(groups)
        .arg(bins::rossipctl())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("ROSSIP_SOCKET");
    cmd.output().expect("run rossipctl under setpriv")
}

fn assert_refused_with_hint(out: &Output, socket: &Path) {
    assert_eq!(out.status.code(), Some(77), "{}", describe(out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
    assert!(stderr.contains("`rossip` group"), "{stderr}");
    assert!(stderr.contains("usermod -aG rossip"), "{stderr}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

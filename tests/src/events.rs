//! Recording a daemon's membership changes as a subscriber sees them.
//!
//! A [`PeerRecorder`] is a background thread with its own connection to one
//! daemon (the *observer*): it connects as soon as the socket answers,
//! `subscribe {events: ["peer"]}`, then takes a `peers {all: true}`
//! snapshot on the same connection (so nothing falls between the two: what
//! changed after the snapshot arrives as an event), and stamps every
//! notification with the `Instant` it was read. Tests and the benchmark
//! then ask the records questions ("when did h3 first become failed here
//! after the kill?", "how many failed transitions under loss?") instead of
//! polling `peers`, so measured times do not depend on a polling interval.
//!
//! Peers are named by their `--name`; the tests give every daemon a unique
//! one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rossip_proto::rpc::{EventBody, PeerStateName, PeerView, PeersResult};
use serde_json::json;

use crate::daemon::Daemon;
use crate::rpc::{CALL_TIMEOUT, RpcClient};
use crate::wait;

/// How long a recorder keeps trying to connect and subscribe before it
/// gives up (the daemon may have just been spawned on a busy machine).
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the recorder retries connecting while the daemon starts: short,
/// so the subscription starts (and the snapshot is taken) right after the
/// socket appears.
const CONNECT_RETRY: Duration = Duration::from_millis(5);

/// How long one read waits before the thread checks whether to stop.
const READ_SLICE: Duration = Duration::from_millis(100);

/// One `peer` notification as received.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRecord {
    /// When the recorder read it.
    pub at: Instant,
    /// The member after the change.
    pub peer: PeerView,
    /// Its state before; `None` when it was new to the observer.
    pub previous: Option<PeerStateName>,
}

impl PeerRecord {
    /// Whether this record is a change *into* `state` (not a restart
    /// notice that keeps the state, where `previous == Some(state)`).
    pub fn enters(&self, state: PeerStateName) -> bool {
        self.peer.state == state && self.previous != Some(state)
    }
}

/// The `peers {all: true}` answer taken right after subscribing.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// When the answer was read (an upper bound for "already in this state").
    pub at: Instant,
    /// The members the observer knew then.
    pub peers: Vec<PeerView>,
}

#[derive(Debug, Default)]
struct Shared {
    snapshot: Option<Snapshot>,
    records: Vec<PeerRecord>,
    /// Events the daemon reported as dropped for this subscriber.
    lagged: u64,
    /// Why the stream ended (daemon gone, attach failed), and when.
    ended: Option<(Instant, String)>,
}

/// Records every `peer` event of one daemon; see the module docs. The
/// thread stops when the recorder is dropped or the daemon closes the
/// connection.
#[derive(Debug)]
pub struct PeerRecorder {
    observer: String,
    started: Instant,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeerRecorder {
    /// Starts recording `daemon`'s peer events; returns at once (the
    /// thread connects as soon as the socket answers). Use
    /// [`PeerRecorder::wait_subscribed`] before causing events.
    pub fn start(daemon: &Daemon) -> PeerRecorder {
        PeerRecorder::start_at(daemon.name(), daemon.socket())
    }

    /// [`PeerRecorder::start`] for an observer named `observer` listening
    /// on `socket`.
    pub fn start_at(observer: &str, socket: &Path) -> PeerRecorder {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let socket = socket.to_path_buf();
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("peer-recorder-{observer}"))
                .spawn(move || record(&socket, &shared, &stop))
                .expect("spawn a peer recorder thread")
        };
        PeerRecorder {
            observer: observer.to_owned(),
            started: Instant::now(),
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// The observer's name.
    pub fn observer(&self) -> &str {
        &self.observer
    }

    /// When the recorder was started (the base of [`PeerRecorder::describe`]).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The instant the subscription was in place (its snapshot's), once it
    /// is; `Err` says why it never will be.
    pub fn subscribed(&self) -> Result<Option<Instant>, String> {
        let shared = self.lock();
        match (&shared.snapshot, &shared.ended) {
            (Some(snapshot), _) => Ok(Some(snapshot.at)),
            (None, Some((_, why))) => Err(format!("{}: {why}", self.observer)),
            (None, None) => Ok(None),
        }
    }

    /// Blocks until the subscription is in place and returns its instant;
    /// panics if it cannot be set up within `timeout`.
    pub fn wait_subscribed(&self, timeout: Duration) -> Instant {
        let what = format!("the peer recorder of {} to subscribe", self.observer);
        wait::wait_until(timeout, &what, || match self.subscribed() {
            Ok(Some(at)) => Ok(at),
            Ok(None) => Err("not subscribed yet".to_owned()),
            Err(why) => panic!("{why}"),
        })
    }

    /// The snapshot taken right after subscribing, once there is one.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.lock().snapshot.clone()
    }

    /// Every record so far, oldest first.
    pub fn records(&self) -> Vec<PeerRecord> {
        self.lock().records.clone()
    }

    /// Records about the member called `name`, oldest first.
    pub fn records_of(&self, name: &str) -> Vec<PeerRecord> {
        self.lock()
            .records
            .iter()
            .filter(|r| r.peer.name == name)
            .cloned()
            .collect()
    }

    /// How many events the daemon said it dropped for this subscriber
    /// (`lagged` notices). Anything but 0 means the records are incomplete.
    pub fn lagged(&self) -> u64 {
        self.lock().lagged
    }

    /// Why and when the stream ended, if it did (the daemon exited, or the
    /// recorder could not attach).
    pub fn ended(&self) -> Option<(Instant, String)> {
        self.lock().ended.clone()
    }

    /// The observer's latest known state of `name`: its last record, else
    /// the snapshot; `None` if it never heard of it.
    pub fn state_of(&self, name: &str) -> Option<PeerStateName> {
        let shared = self.lock();
        shared
            .records
            .iter()
            .rev()
            .find(|r| r.peer.name == name)
            .map(|r| r.peer.state)
            .or_else(|| {
                let snapshot = shared.snapshot.as_ref()?;
                snapshot
                    .peers
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.state)
            })
    }

    /// The first instant at or after `after` at which a record says `name`
    /// entered `state` (see [`PeerRecord::enters`]).
    pub fn first_entered(
        &self,
        name: &str,
        state: PeerStateName,
        after: Instant,
    ) -> Option<Instant> {
        self.lock()
            .records
            .iter()
            .find(|r| r.at >= after && r.peer.name == name && r.enters(state))
            .map(|r| r.at)
    }

    /// The first instant the observer is known to have had `name` in
    /// `state`: the snapshot's instant if the snapshot already shows it so
    /// (an upper bound: it may have been so earlier), else the first record
    /// entering it.
    pub fn first_seen_in(&self, name: &str, state: PeerStateName) -> Option<Instant> {
        let shared = self.lock();
        let in_snapshot = shared.snapshot.as_ref().and_then(|s| {
            s.peers
                .iter()
                .any(|p| p.name == name && p.state == state)
                .then_some(s.at)
        });
        in_snapshot.or_else(|| {
            shared
                .records
                .iter()
                .find(|r| r.peer.name == name && r.peer.state == state)
                .map(|r| r.at)
        })
    }

    /// Changes into `state` recorded at or after `after`, for any member.
    pub fn count_entered(&self, state: PeerStateName, after: Instant) -> usize {
        self.lock()
            .records
            .iter()
            .filter(|r| r.at >= after && r.enters(state))
            .count()
    }

    /// Names of every member the observer has heard of (snapshot and
    /// records), sorted, without duplicates.
    pub fn names(&self) -> Vec<String> {
        let shared = self.lock();
        let mut names: Vec<String> = shared
            .snapshot
            .iter()
            .flat_map(|s| s.peers.iter())
            .map(|p| p.name.clone())
            .chain(shared.records.iter().map(|r| r.peer.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether the observer currently has every member in `names` as
    /// `alive`; `Err` lists those it does not.
    pub fn all_alive(&self, names: &[&str]) -> Result<(), String> {
        let missing: Vec<String> = names
            .iter()
            .filter_map(|name| match self.state_of(name) {
                Some(PeerStateName::Alive) => None,
                Some(state) => Some(format!("{name}={}", state.as_str())),
                None => Some(format!("{name}=unknown")),
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{} sees {}", self.observer, missing.join(", ")))
        }
    }

    /// The snapshot and every transition, one per line, with times relative
    /// to `base`, for failure messages and `--verbose` output.
    pub fn describe(&self, base: Instant) -> String {
        let shared = self.lock();
        let rel = |at: Instant| signed_secs(at, base);
        let mut out = format!("peer events seen by {}:\n", self.observer);
        if let Some(snapshot) = &shared.snapshot {
            let peers: Vec<String> = snapshot
                .peers
                .iter()
                .map(|p| format!("{}={}", p.name, p.state.as_str()))
                .collect();
            out.push_str(&format!(
                "  {:+8.3}s snapshot [{}]\n",
                rel(snapshot.at),
                peers.join(", ")
            ));
        }
        for r in &shared.records {
            out.push_str(&format!(
                "  {:+8.3}s {} ({}) {} -> {}\n",
                rel(r.at),
                r.peer.name,
                r.peer.addr,
                r.previous.map_or("new", PeerStateName::as_str),
                r.peer.state.as_str()
            ));
        }
        if shared.lagged > 0 {
            out.push_str(&format!("  lagged: {} events dropped\n", shared.lagged));
        }
        if let Some((at, why)) = &shared.ended {
            out.push_str(&format!("  {:+8.3}s stream ended: {why}\n", rel(*at)));
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PeerRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.describe(self.started));
        }
    }
}

/// Waits until `condition` holds for every recorder and returns each value
/// (in `recorders` order); `Err` names the recorders it did not hold for
/// (with what they saw) once `timeout` passed, or at once if one of their
/// streams ended.
pub fn try_wait_every<T>(
    recorders: &[&PeerRecorder],
    timeout: Duration,
    mut condition: impl FnMut(&PeerRecorder) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let mut ended = None;
    let result = wait::try_wait_until(timeout, || {
        let mut values = Vec::with_capacity(recorders.len());
        let mut missing = Vec::new();
        for recorder in recorders {
            match condition(recorder) {
                Ok(value) => values.push(value),
                Err(seen) => {
                    if let Some((_, why)) = recorder.ended() {
                        ended = Some(format!("{}: {why}; {seen}", recorder.observer()));
                        return Ok(None);
                    }
                    missing.push(seen);
                }
            }
        }
        if missing.is_empty() {
            Ok(Some(values))
        } else {
            Err(missing.join("; "))
        }
    });
    match (result, ended) {
        (_, Some(why)) => Err(format!("a recorder's stream ended: {why}")),
        (Ok(Some(values)), None) => Ok(values),
        (Ok(None), None) => Err("no value".to_owned()),
        (Err(last), None) => Err(format!(
            "not within {timeout:?}: {}",
            last.unwrap_or_default()
        )),
    }
}

/// `peers {all: true}` over a fresh connection to `socket`, without
/// panicking (for polling loops and the benchmark).
pub fn peers_all(socket: &Path) -> Result<Vec<PeerView>, String> {
    let mut client =
        RpcClient::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    match client.try_call("peers", json!({"all": true}), CALL_TIMEOUT) {
        Ok(Ok(value)) => serde_json::from_value::<PeersResult>(value)
            .map(|r| r.peers)
            .map_err(|e| format!("peers result does not parse: {e}")),
        Ok(Err(error)) => Err(format!("peers failed: {error}")),
        Err(e) => Err(format!("peers on {}: {e}", socket.display())),
    }
}

/// `at - base` in seconds, negative when `at` is earlier.
pub fn signed_secs(at: Instant, base: Instant) -> f64 {
    match at.checked_duration_since(base) {
        Some(after) => after.as_secs_f64(),
        None => -(base - at).as_secs_f64(),
    }
}

/// The recorder thread: attach, then read until told to stop or the
/// daemon goes away.
fn record(socket: &Path, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let end = |why: String| {
        shared.lock().unwrap_or_else(PoisonError::into_inner).ended = Some((Instant::now(), why));
    };
    let mut client = match attach(socket, shared, stop) {
        Ok(client) => client,
        Err(why) => return end(why),
    };
    while !stop.load(Ordering::Relaxed) {
        match client.try_next_event(READ_SLICE) {
            Ok(Some(params)) => {
                let at = Instant::now();
                let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
                match params.event {
                    EventBody::Peer { peer, previous } => {
                        shared.records.push(PeerRecord { at, peer, previous });
                    }
                    EventBody::Lagged { dropped, .. } => shared.lagged += dropped,
                    // Not subscribed to messages or presence; nothing to record.
                    EventBody::Message { .. }
                    | EventBody::Presence { .. }
                    | EventBody::DirectStatus { .. } => {}
                }
            }
            Ok(None) => {}
            Err(e) => return end(e.to_string()),
        }
    }
}

/// Connects, subscribes and takes the snapshot, retrying every
/// [`CONNECT_RETRY`] until [`ATTACH_TIMEOUT`] (the socket may not exist yet,
/// or be a stale file of a killed daemon).
fn attach(socket: &Path, shared: &Mutex<Shared>, stop: &AtomicBool) -> Result<RpcClient, String> {
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    let mut last_error = String::from("never tried");
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return Err("stopped before it could subscribe".to_owned());
        }
        match try_attach(socket) {
            Ok((client, snapshot)) => {
                shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .snapshot = Some(snapshot);
                return Ok(client);
            }
            Err(e) => last_error = e,
        }
        std::thread::sleep(CONNECT_RETRY);
    }
    Err(format!(
        "could not subscribe on {} within {ATTACH_TIMEOUT:?}: {last_error}",
        socket.display()
    ))
}

fn try_attach(socket: &Path) -> Result<(RpcClient, Snapshot), String> {
    let mut client = RpcClient::connect(socket).map_err(|e| e.to_string())?;
    match client.try_call("subscribe", json!({"events": ["peer"]}), CALL_TIMEOUT) {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(format!("subscribe failed: {error}")),
        Err(e) => return Err(format!("subscribe: {e}")),
    }
    // Events that arrive while this call is outstanding stay queued in the
    // client and are read (and stamped) right after.
    let peers = match client.try_call("peers", json!({"all": true}), CALL_TIMEOUT) {
        Ok(Ok(value)) => {
            serde_json::from_value::<PeersResult>(value)
                .map_err(|e| format!("peers result does not parse: {e}"))?
                .peers
        }
        Ok(Err(error)) => return Err(format!("peers failed: {error}")),
        Err(e) => return Err(format!("peers: {e}")),
    };
    let snapshot = Snapshot {
        at: Instant::now(),
        peers,
    };
    Ok((client, snapshot))
}

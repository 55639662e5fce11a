//! HashiCorp Serf on the benchmark's LAN: one `serf agent -discover` per
//! host (mDNS, zero configuration, like rossip), observed through each
//! agent's own log on its stdout, and sent to through its RPC port.
//!
//! Why the agent's log: it prints `serf: EventMemberJoin: NAME ADDR` (also
//! `…Failed`, `…Leave`) the moment its member list changes, and `agent:
//! Received event: user-event: NAME` the moment a user event is handed to
//! the agent (after Serf's own de-duplication, before any event handler).
//! Reading a pipe the agent writes anyway adds no process, no connection
//! and no work to the agent, which a `serf monitor` per node (a second
//! process and RPC stream) or an event-handler script (a process per
//! event) would. Each line is stamped with the instant this process read
//! it, as rossip's subscriber stamps its notifications.
//!
//! User events are sent with `-coalesce=false`: with coalescing (Serf's
//! default) the agent holds each event for a quiet period of a second.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rossip_proto::rpc::PeerStateName;
use serde::{Deserialize, Serialize};

use crate::delivery::{key_of, tag_of};
use crate::delivery_bench::Deliveries;
use crate::delivery_send::{MESSAGE_BYTES, SendOutcome, Sent, paced};
use crate::netns::{Lan, Skip};
use crate::sys;

/// The `-discover` cluster name every agent of a LAN announces.
pub const DISCOVER_NAME: &str = "rossipbench";

/// Where each agent's RPC listens, inside its own namespace.
pub const RPC_ADDR: &str = "127.0.0.1:7373";

/// The `serf` program: found in `PATH`, else installed from Debian's
/// packages (`apt-get install -y serf`, root only).
pub fn program() -> Result<PathBuf, String> {
    if let Some(serf) = sys::find_program("serf") {
        return Ok(serf);
    }
    if sys::effective_uid() != Some(0) {
        return Err("`serf` not found; install it with `apt-get install serf`".to_owned());
    }
    sys::say("serf not found: apt-get install -y serf");
    let apt =
        sys::find_program("apt-get").ok_or("`serf` not found and no apt-get to install it")?;
    let mut install = Command::new(&apt);
    install
        .args(["install", "-y", "serf"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    let out = sys::output(&mut install);
    if !out.status.success() {
        return Err(format!(
            "apt-get install -y serf failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    sys::find_program("serf").ok_or_else(|| "apt-get installed serf, but it is not in PATH".into())
}

/// `serf version`'s first line and the Debian package's version, for the
/// report.
pub fn version() -> String {
    let reported = program()
        .and_then(|serf| sys::run(serf, &["version"]))
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("(unknown: {e})"));
    let package = sys::run("dpkg-query", &["-W", "-f=${Version}", "serf"])
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|_| "not from a Debian package".to_owned());
    format!("{reported} (Debian package serf {package})")
}

/// What one line of an agent's log says, if it matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// Member `name` entered `state` in this agent's member list.
    Member {
        /// The member's node name.
        name: String,
        /// Alive (join), failed, or left.
        state: PeerStateName,
    },
    /// A user event called `name` reached the agent.
    UserEvent {
        /// The event's name (the benchmark's message key).
        name: String,
    },
}

/// Reads one line of `serf agent`'s log (e.g. `    2026/12/08 02:24:41
/// [INFO] serf: EventMemberJoin: h2 10.77.0.12`).
pub fn parse_line(line: &str) -> Option<LogEvent> {
    if let Some((_, rest)) = line.split_once("agent: Received event: user-event: ") {
        let name = rest.split_whitespace().next()?;
        return Some(LogEvent::UserEvent {
            name: name.to_owned(),
        });
    }
    let (_, rest) = line.split_once("serf: EventMember")?;
    let (kind, rest) = rest.split_once(": ")?;
    let state = match kind {
        "Join" => PeerStateName::Alive,
        "Failed" => PeerStateName::Failed,
        "Leave" => PeerStateName::Left,
        _ => return None,
    };
    let name = rest.split_whitespace().next()?;
    Some(LogEvent::Member {
        name: name.to_owned(),
        state,
    })
}

/// What an agent's log has said so far, stamped on read.
#[derive(Debug, Default)]
struct Record {
    /// Each member's transitions, in order.
    members: BTreeMap<String, Vec<(Instant, PeerStateName)>>,
    /// First arrival of each user event, by tag (see [`crate::delivery`]).
    arrivals: HashMap<String, HashMap<String, Instant>>,
    /// User events that arrived a second time.
    duplicates: u64,
    /// The last lines, for failure reports.
    tail: Vec<String>,
}

/// Log lines kept for failure reports.
const TAIL_LINES: usize = 40;

/// One `serf agent` process and the record of its log.
#[derive(Debug)]
pub struct Agent {
    name: String,
    child: Child,
    record: Arc<Mutex<Record>>,
}

impl Agent {
    /// Starts `serf agent` as node `name` on `ns`'s `eth0` (address
    /// `addr`), discovering its peers by mDNS.
    pub fn spawn(serf: &Path, name: &str, ns: &str, addr: std::net::Ipv4Addr) -> Agent {
        let args: Vec<OsString> = [
            "agent".to_owned(),
            format!("-node={name}"),
            format!("-discover={DISCOVER_NAME}"),
            "-iface=eth0".to_owned(),
            format!("-bind={addr}:7946"),
            format!("-rpc-addr={RPC_ADDR}"),
            "-log-level=info".to_owned(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let (program, args) = sys::in_netns(Some(ns), serf.to_path_buf(), args);
        let line = sys::command_line(&program, &args);
        let mut child = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{line}`: {e}"));
        let record = Arc::new(Mutex::new(Record::default()));
        if let Some(stdout) = child.stdout.take() {
            let record = Arc::clone(&record);
            std::thread::spawn(move || read_log(stdout, &record));
        }
        Agent {
            name: name.to_owned(),
            child,
            record,
        }
    }

    /// Its node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The agent's pid (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGINT: Serf's agent leaves the cluster gracefully on it (on SIGTERM
    /// it does not, unless configured to), then exits.
    pub fn interrupt(&self) {
        // Gone already is fine: the wait for its exit says so.
        let _ = sys::signal(self.pid(), "INT");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        crate::wait::try_wait_until(timeout, || self.child.try_wait().ok().flatten().is_some())
            .is_ok()
    }

    /// The latest state this agent has for `member`.
    pub fn state_of(&self, member: &str) -> Option<PeerStateName> {
        self.lock()
            .members
            .get(member)
            .and_then(|t| t.last())
            .map(|(_, state)| *state)
    }

    /// The first time after `after` this agent recorded `member` entering
    /// `state`.
    pub fn entered(&self, member: &str, state: PeerStateName, after: Instant) -> Option<Instant> {
        self.lock().members.get(member).and_then(|t| {
            t.iter()
                .find(|(at, s)| *s == state && *at >= after)
                .map(|(at, _)| *at)
        })
    }

    /// Transitions into `state` of any member recorded after `after`.
    pub fn count_entered(&self, state: PeerStateName, after: Instant) -> usize {
        self.lock()
            .members
            .values()
            .flatten()
            .filter(|(at, s)| *s == state && *at >= after)
            .count()
    }

    /// The log's last lines.
    pub fn tail(&self) -> String {
        self.lock().tail.join("\n")
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_log(stdout: std::process::ChildStdout, record: &Mutex<Record>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let at = Instant::now();
        let mut guard = record.lock().unwrap_or_else(PoisonError::into_inner);
        let record = &mut *guard;
        match parse_line(&line) {
            Some(LogEvent::Member { name, state }) => {
                record.members.entry(name).or_default().push((at, state));
            }
            Some(LogEvent::UserEvent { name }) => {
                let key = key_of(&name).to_owned();
                let keys = record.arrivals.entry(tag_of(&key).to_owned()).or_default();
                match keys.entry(key) {
                    Entry::Occupied(_) => record.duplicates += 1,
                    Entry::Vacant(slot) => {
                        slot.insert(at);
                    }
                }
                continue;
            }
            None => {}
        }
        record.tail.push(line);
        if record.tail.len() > TAIL_LINES {
            record.tail.remove(0);
        }
    }
}

/// The header of every request and response of Serf's RPC protocol.
#[derive(Debug, Serialize)]
struct RequestHeader<'a> {
    #[serde(rename = "Command")]
    command: &'a str,
    #[serde(rename = "Seq")]
    seq: u64,
}

#[derive(Debug, Deserialize)]
struct ResponseHeader {
    #[serde(rename = "Seq")]
    _seq: u64,
    #[serde(rename = "Error")]
    error: String,
}

#[derive(Debug, Serialize)]
struct Handshake {
    #[serde(rename = "Version")]
    version: i32,
}

#[derive(Debug, Serialize)]
struct UserEvent<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Payload")]
    payload: &'a str,
    #[serde(rename = "Coalesce")]
    coalesce: bool,
}

/// A connection to an agent's RPC port (MessagePack over TCP, the protocol
/// of `serf`'s own CLI), made inside the agent's namespace.
#[derive(Debug)]
pub struct Rpc {
    stream: TcpStream,
    seq: u64,
}

impl Rpc {
    /// Connects to the agent in `ns` and does the handshake.
    pub fn connect(ns: &str) -> Result<Rpc, String> {
        let stream = crate::netns::in_namespace(ns, || {
            TcpStream::connect(RPC_ADDR).map_err(|e| format!("connect {RPC_ADDR} in {ns}: {e}"))
        })?;
        stream
            .set_read_timeout(Some(crate::rpc::CALL_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut rpc = Rpc { stream, seq: 0 };
        rpc.call("handshake", &Handshake { version: 1 })?
            .map_err(|e| format!("handshake refused: {e}"))?;
        Ok(rpc)
    }

    /// Sends user event `name` with `payload`, not coalesced. `Ok(Err)`:
    /// the agent refused it (e.g. too large).
    pub fn event(&mut self, name: &str, payload: &str) -> Result<Result<(), String>, String> {
        let body = UserEvent {
            name,
            payload,
            coalesce: false,
        };
        self.call("event", &body)
    }

    fn call(&mut self, command: &str, body: &impl Serialize) -> Result<Result<(), String>, String> {
        let header = RequestHeader {
            command,
            seq: self.seq,
        };
        self.seq += 1;
        let mut bytes = rmp_serde::to_vec_named(&header).map_err(|e| e.to_string())?;
        bytes.extend(rmp_serde::to_vec_named(body).map_err(|e| e.to_string())?);
        std::io::Write::write_all(&mut self.stream, &bytes).map_err(|e| e.to_string())?;
        let response: ResponseHeader =
            rmp_serde::from_read(&mut self.stream).map_err(|e| e.to_string())?;
        Ok(if response.error.is_empty() {
            Ok(())
        } else {
            Err(response.error)
        })
    }
}

/// The name and payload of a user event of `bytes` bytes (name and
/// payload together) whose name is `key`.
pub fn user_event(key: &str, bytes: usize) -> (String, String) {
    let payload = "x".repeat(bytes.saturating_sub(key.len()));
    (key.to_owned(), payload)
}

/// A LAN with one Serf agent per running host.
#[derive(Debug)]
pub struct SerfSwarm {
    /// `agents[i]` runs on `lan.host(i)`; `None` while stopped.
    agents: Vec<Option<Agent>>,
    serf: PathBuf,
    /// Dropped last: it kills whatever is left and removes the namespaces.
    lan: Lan,
    spawned: Instant,
}

impl SerfSwarm {
    /// A LAN of `hosts + idle` hosts with an agent started on each of the
    /// first `hosts`, all at once; does not wait for anything.
    pub fn start(test: &str, hosts: usize, idle: usize) -> Result<SerfSwarm, Skip> {
        let serf = program().unwrap_or_else(|e| panic!("{e}"));
        let lan = Lan::new(test, hosts + idle)?;
        let spawned = Instant::now();
        let agents = lan.hosts()[..hosts]
            .iter()
            .map(|h| Some(Agent::spawn(&serf, &h.name, &h.ns, h.addr)))
            .collect();
        Ok(SerfSwarm {
            agents,
            serf,
            lan,
            spawned,
        })
    }

    /// The network.
    pub fn lan(&self) -> &Lan {
        &self.lan
    }

    /// Just before the first agent was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Agent `i`; panics if it is stopped.
    pub fn agent(&self, i: usize) -> &Agent {
        self.agents[i].as_ref().expect("the agent is running")
    }

    /// Agents started so far (running or stopped).
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no agent was started.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Starts an agent on the next host that has none; returns its index.
    pub fn start_next(&mut self) -> usize {
        let index = self.agents.len();
        let host = self.lan.host(index);
        self.agents.push(Some(Agent::spawn(
            &self.serf, &host.name, &host.ns, host.addr,
        )));
        index
    }

    /// Restarts agent `i` (after it was killed or left).
    pub fn restart(&mut self, i: usize) {
        let host = self.lan.host(i);
        self.agents[i] = Some(Agent::spawn(&self.serf, &host.name, &host.ns, host.addr));
    }

    /// SIGKILL of agent `i`; it stays stopped until [`SerfSwarm::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut agent) = self.agents[i].take() {
            agent.kill9();
        }
    }

    /// Graceful leave of agent `i` (SIGINT); `Err` if it does not exit.
    pub fn leave(&mut self, i: usize, timeout: Duration) -> Result<(), String> {
        let Some(mut agent) = self.agents[i].take() else {
            return Ok(());
        };
        agent.interrupt();
        if agent.wait_exit(timeout) {
            Ok(())
        } else {
            Err(format!(
                "serf agent {} did not exit after SIGINT",
                agent.name()
            ))
        }
    }

    /// Every running agent's log tail, for failure reports.
    pub fn describe(&self) -> String {
        self.agents
            .iter()
            .flatten()
            .map(|a| format!("--- serf agent {}:\n{}\n", a.name(), a.tail()))
            .collect()
    }

    /// The command line of `serf ARGS…` against agent `i`, entering its
    /// namespace with `nsenter` (see [`sys::nsenter_net`]).
    pub fn cli(&self, i: usize, args: Vec<OsString>) -> (OsString, Vec<OsString>) {
        sys::nsenter_net(&self.lan.host(i).ns, self.serf.clone(), args)
    }

    /// The names `serf members` of agent `i` lists as alive.
    pub fn cli_alive(&self, i: usize) -> Result<Vec<String>, String> {
        let (program, args) = self.cli(i, vec!["members".into(), "-format=json".into()]);
        let out = sys::run(&program, &args)?;
        parse_members(&String::from_utf8_lossy(&out.stdout))
    }
}

/// The alive members of `serf members -format=json`'s output.
pub fn parse_members(json: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Members {
        members: Vec<Member>,
    }
    #[derive(Deserialize)]
    struct Member {
        name: String,
        status: String,
    }
    let members: Members =
        serde_json::from_str(json).map_err(|e| format!("serf members: {e}: {json}"))?;
    Ok(members
        .members
        .into_iter()
        .filter(|m| m.status == "alive")
        .map(|m| m.name)
        .collect())
}

impl Deliveries for SerfSwarm {
    fn nodes(&self) -> usize {
        self.agents.len()
    }

    /// Sequential `event` calls on one RPC connection: each answer comes
    /// within microseconds, far faster than Serf gossips the events.
    fn send_paced(&self, from: usize, tag: &str, rate: f64, duration: Duration) -> Sent {
        let ns = &self.lan.host(from).ns;
        let mut rpc = match Rpc::connect(ns) {
            Ok(rpc) => rpc,
            Err(e) => return Sent::broken(e),
        };
        paced(tag, from, rate, duration, |key| {
            let (name, payload) = user_event(key, MESSAGE_BYTES);
            match rpc.event(&name, &payload) {
                Ok(Ok(())) => SendOutcome::Accepted,
                Ok(Err(why)) => SendOutcome::Refused(why),
                Err(why) => SendOutcome::Broken(why),
            }
        })
    }

    fn count(&self, node: usize, tag: &str) -> usize {
        self.agents[node]
            .as_ref()
            .map_or(0, |a| a.lock().arrivals.get(tag).map_or(0, HashMap::len))
    }

    fn take(&self, node: usize, tag: &str) -> HashMap<String, Instant> {
        self.agents[node]
            .as_ref()
            .and_then(|a| a.lock().arrivals.remove(tag))
            .unwrap_or_default()
    }

    fn lagged(&self) -> u64 {
        0
    }

    fn duplicates(&self) -> u64 {
        self.agents
            .iter()
            .flatten()
            .map(|a| a.lock().duplicates)
            .sum()
    }
}

impl SerfSwarm {
    /// When user event `key` first reached agent `node`.
    pub fn arrival(&self, node: usize, key: &str) -> Option<Instant> {
        let agent = self.agents[node].as_ref()?;
        agent
            .lock()
            .arrivals
            .get(tag_of(key))
            .and_then(|keys| keys.get(key))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `serf agent -log-level=info` (Debian's serf 0.9.4~ds1,
    /// which calls itself 0.8.2-dev) printed them in a run of this
    /// benchmark.
    const SAMPLE: &str = "\
==> Log data will now stream in as it occurs:

    2026/12/08 02:24:41 [INFO] agent: Serf agent starting
    2026/12/08 02:24:41 [INFO] serf: EventMemberJoin: h2 10.77.0.12
    2026/12/08 02:24:41 [INFO] agent: joining: [10.77.0.11:7946 10.77.0.12:7946] replay: false
    2026/12/08 02:24:41 [INFO] serf: EventMemberJoin: h1 10.77.0.11
    2026/12/08 02:24:42 [INFO] agent: Received event: member-join
    2026/12/08 02:24:44 [INFO] agent: Received event: user-event: l0r0/0.17
    2026/12/08 02:24:50 [INFO] serf: EventMemberFailed: h1 10.77.0.11
    2026/12/08 02:24:55 [INFO] serf: EventMemberLeave: h3 10.77.0.13
    2026/12/08 02:24:56 [INFO] serf: EventMemberUpdate: h3
";

    #[test]
    fn agent_log_lines_become_events() {
        let events: Vec<LogEvent> = SAMPLE.lines().filter_map(parse_line).collect();
        let member = |name: &str, state| LogEvent::Member {
            name: name.to_owned(),
            state,
        };
        assert_eq!(
            events,
            [
                member("h2", PeerStateName::Alive),
                member("h1", PeerStateName::Alive),
                LogEvent::UserEvent {
                    name: "l0r0/0.17".to_owned()
                },
                member("h1", PeerStateName::Failed),
                member("h3", PeerStateName::Left),
            ]
        );
    }

    #[test]
    fn members_json_lists_the_alive() {
        let json = r#"{"members":[{"name":"h1","addr":"10.77.0.11:7946","port":7946,"tags":{},"status":"alive","protocol":{"max":5,"min":2,"version":5}},{"name":"h2","addr":"10.77.0.12:7946","port":7946,"tags":{},"status":"failed","protocol":{"max":5,"min":2,"version":5}}]}"#;
        assert_eq!(parse_members(json), Ok(vec!["h1".to_owned()]));
    }

    #[test]
    fn user_events_have_the_size_asked_for() {
        let (name, payload) = user_event("t/0.1", 200);
        assert_eq!(name.len() + payload.len(), 200);
    }
}

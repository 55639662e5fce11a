//! Printing membership changes, for `rossipctl events` and `rossipctl tail -f --peers`.
//!
//! Human lines start with the local time and `*`, then read as a sentence, so they stand
//! out among message lines (`TIME NAME: TEXT`) and `grep failed` finds what it should:
//!
//! ```text
//! 2026-11-24 05:20:01 * bob joined (01234567 at 192.0.2.7:7465; new -> alive)
//! 2026-11-24 05:20:01 * bob is alive (01234567 at 192.0.2.7:7465; since 2026-11-24 05:17:49)
//! ```
//!
//! The second form is a snapshot entry (the member list at (re)connection), not a change.
//! JSON lines are [`PeerLine`] objects; their `kind` is always `"peer"`, which tells them
//! apart from message lines (those have no `kind`).

use std::io::Write;

use jiff::tz::TimeZone;
use rossip_proto::rpc::{PeerStateName, PeerView};
use serde::Serialize;

use crate::output::Out;
use crate::sanitize::sanitize;
use crate::timefmt::format_time;

/// What happened to a member, in words a script can match on.
///
/// Derived from the state before and after, so every transition the daemon can report
/// has a name: the target state decides, except that `alive` distinguishes a first
/// appearance, the end of a suspicion and a comeback, and an unchanged state means the
/// member restarted with a new name or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// New to this node, and alive.
    Joined,
    /// Missed probes; `failed` follows unless it refutes the suspicion.
    Suspected,
    /// Was suspect and proved it is alive.
    Recovered,
    /// Declared dead by the failure detector.
    Failed,
    /// Left gracefully (SIGTERM, Ctrl-C, `rossipctl leave`).
    Left,
    /// Was failed or left and is alive again (typically a restart).
    Rejoined,
    /// A new run of the member (restart) with another name or address; state unchanged.
    Restarted,
    /// Not a change: the member as it was when rossipctl (re)connected (`--snapshot`).
    Snapshot,
}

impl Change {
    /// Classifies a transition from `previous` (None: new to this node) to `state`.
    pub fn of(previous: Option<PeerStateName>, state: PeerStateName) -> Change {
        if previous == Some(state) {
            return Change::Restarted;
        }
        match state {
            PeerStateName::Alive => match previous {
                None => Change::Joined,
                Some(PeerStateName::Suspect) => Change::Recovered,
                Some(_) => Change::Rejoined,
            },
            PeerStateName::Suspect => Change::Suspected,
            PeerStateName::Failed => Change::Failed,
            PeerStateName::Left => Change::Left,
        }
    }

    /// The verb phrase in human lines.
    fn phrase(self, state: PeerStateName) -> String {
        match self {
            Change::Joined => "joined".to_owned(),
            Change::Suspected => "is suspected".to_owned(),
            Change::Recovered => "recovered".to_owned(),
            Change::Failed => "failed".to_owned(),
            Change::Left => "left".to_owned(),
            Change::Rejoined => "rejoined".to_owned(),
            Change::Restarted => "restarted".to_owned(),
            Change::Snapshot => format!("is {}", state.as_str()),
        }
    }
}

/// One peer line of `--json` output.
///
/// `{"kind":"peer","change":"failed","time":1795497601250,"peer":{…},"previous":"suspect"}`:
/// the daemon's `peer` event (`kind`, `peer`, `previous`) plus `change` and `time`.
/// `previous` is always present, `null` for a member new to this node and for snapshot
/// entries.
#[derive(Debug, Clone, Serialize)]
pub struct PeerLine<'a> {
    /// Always `"peer"`: message lines of `tail -f --peers` have no `kind`.
    pub kind: &'static str,
    /// What happened, see [`Change`].
    pub change: Change,
    /// When rossipctl received the event (or took the snapshot), ms since the Unix epoch.
    pub time: u64,
    /// The member after the change, as the daemon reported it.
    pub peer: &'a PeerView,
    /// Its state before the change.
    pub previous: Option<PeerStateName>,
}

/// Prints peer events as human lines or JSON objects.
#[derive(Debug, Clone)]
pub struct PeerPrinter {
    json: bool,
    tz: TimeZone,
}

impl PeerPrinter {
    /// `json`: one [`PeerLine`] per line; else [`human_line`] in zone `tz`.
    pub fn new(json: bool, tz: TimeZone) -> Self {
        PeerPrinter { json, tz }
    }

    /// Prints a change the daemon reported, received at `now_ms`.
    pub fn print_change(
        &self,
        out: &mut Out<impl Write>,
        peer: &PeerView,
        previous: Option<PeerStateName>,
        now_ms: u64,
    ) -> anyhow::Result<()> {
        self.print(
            out,
            peer,
            previous,
            Change::of(previous, peer.state),
            now_ms,
        )
    }

    /// Prints a member of a snapshot taken at `now_ms`.
    pub fn print_snapshot(
        &self,
        out: &mut Out<impl Write>,
        peer: &PeerView,
        now_ms: u64,
    ) -> anyhow::Result<()> {
        self.print(out, peer, None, Change::Snapshot, now_ms)
    }

    fn print(
        &self,
        out: &mut Out<impl Write>,
        peer: &PeerView,
        previous: Option<PeerStateName>,
        change: Change,
        now_ms: u64,
    ) -> anyhow::Result<()> {
        if self.json {
            out.json(&PeerLine {
                kind: "peer",
                change,
                time: now_ms,
                peer,
                previous,
            })
        } else {
            out.line(&human_line(peer, previous, change, now_ms, &self.tz))
        }
    }
}

/// `TIME * NAME PHRASE (ID8 at ADDR; DETAIL)`, where DETAIL is the transition (`alive ->
/// failed`, `new -> alive`) or, for a snapshot entry, `since TIME`. Name, id and address
/// come from the network and are sanitized, so the result is one inert line.
pub fn human_line(
    peer: &PeerView,
    previous: Option<PeerStateName>,
    change: Change,
    now_ms: u64,
    tz: &TimeZone,
) -> String {
    let id8: String = peer.id.chars().take(8).collect();
    let detail = if change == Change::Snapshot {
        format!("since {}", format_time(peer.since, tz))
    } else {
        let before = previous.map_or("new", PeerStateName::as_str);
        format!("{before} -> {}", peer.state.as_str())
    };
    format!(
        "{} * {} {} ({} at {}; {detail})",
        format_time(now_ms, tz),
        sanitize(&peer.name),
        change.phrase(peer.state),
        sanitize(&id8),
        sanitize(&peer.addr),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerStateName::{Alive, Failed, Left, Suspect};

    /// 2026-11-24T05:20:01.250Z
    const NOW: u64 = 1_795_497_601_250;

    fn peer(name: &str, state: PeerStateName) -> PeerView {
        PeerView {
            id: "0123456789abcdef0123456789abcdef".to_owned(),
            name: name.to_owned(),
            addr: "192.0.2.7:7465".to_owned(),
            state,
            // 2026-11-24T05:17:49Z
            since: 1_795_497_469_000,
            last_seen: None,
            rtt_ms: None,
            generation: 1,
            incarnation: 0,
            key: String::new(),
            name_trust: rossip_proto::rpc::NameTrust::Pinned,
        }
    }

    fn line(previous: Option<PeerStateName>, state: PeerStateName) -> String {
        let p = peer("bob", state);
        human_line(
            &p,
            previous,
            Change::of(previous, state),
            NOW,
            &TimeZone::UTC,
        )
    }

    #[test]
    fn every_transition_has_a_name() {
        let cases = [
            (None, Alive, Change::Joined),
            (Some(Alive), Suspect, Change::Suspected),
            (Some(Suspect), Alive, Change::Recovered),
            (Some(Suspect), Failed, Change::Failed),
            (Some(Alive), Failed, Change::Failed),
            (Some(Alive), Left, Change::Left),
            (Some(Suspect), Left, Change::Left),
            (Some(Failed), Alive, Change::Rejoined),
            (Some(Left), Alive, Change::Rejoined),
            (Some(Alive), Alive, Change::Restarted),
            (Some(Suspect), Suspect, Change::Restarted),
            (None, Failed, Change::Failed),
        ];
        for (previous, state, expected) in cases {
            assert_eq!(
                Change::of(previous, state),
                expected,
                "{previous:?} -> {state:?}"
            );
        }
    }

    #[test]
    fn human_lines_read_as_sentences() {
        let t = "2026-11-24 05:20:01";
        let at = "(01234567 at 192.0.2.7:7465;";
        let cases = [
            (None, Alive, "joined", "new -> alive"),
            (Some(Alive), Suspect, "is suspected", "alive -> suspect"),
            (Some(Suspect), Alive, "recovered", "suspect -> alive"),
            (Some(Suspect), Failed, "failed", "suspect -> failed"),
            (Some(Alive), Left, "left", "alive -> left"),
            (Some(Failed), Alive, "rejoined", "failed -> alive"),
            (Some(Alive), Alive, "restarted", "alive -> alive"),
        ];
        for (previous, state, phrase, transition) in cases {
            assert_eq!(
                line(previous, state),
                format!("{t} * bob {phrase} {at} {transition})"),
                "{previous:?} -> {state:?}"
            );
        }
    }

    #[test]
    fn snapshot_lines_say_since_when() {
        let p = peer("bob", Failed);
        let minus3 = TimeZone::fixed(jiff::tz::offset(-3));
        assert_eq!(
            human_line(&p, None, Change::Snapshot, NOW, &minus3),
            "2026-11-24 02:20:01 * bob is failed (01234567 at 192.0.2.7:7465; \
             since 2026-11-24 02:17:49)"
        );
    }

    #[test]
    fn untrusted_fields_are_sanitized() {
        let mut p = peer("eve\x1b[2J\n2026-11-24 05:20:02 * root", Alive);
        p.id = "\x1b]0;x\x07abcdef".to_owned();
        p.addr = "\u{202e}1.2.3.4:5".to_owned();
        let line = human_line(&p, None, Change::Joined, NOW, &TimeZone::UTC);
        assert!(!line.chars().any(char::is_control), "{line}");
        assert_eq!(
            line,
            "2026-11-24 05:20:01 * eve\\x1b[2J\\n2026-11-24 05:20:02 * root joined \
             (\\x1b]0;x\\x07ab at \\u{202e}1.2.3.4:5; new -> alive)"
        );
    }

    #[test]
    fn json_lines_carry_the_event_and_a_time() {
        let mut p = peer("bob", Failed);
        p.rtt_ms = Some(0.25);
        let mut out = Out::new(Vec::new());
        let printer = PeerPrinter::new(true, TimeZone::UTC);
        printer
            .print_change(&mut out, &p, Some(Suspect), NOW)
            .expect("write to Vec");
        printer
            .print_change(&mut out, &peer("carol", Alive), None, NOW + 1)
            .expect("write to Vec");
        printer
            .print_snapshot(&mut out, &peer("dave", Left), NOW + 2)
            .expect("write to Vec");
        let text = String::from_utf8(out.get_ref().clone()).expect("UTF-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({
                "kind": "peer", "change": "failed", "time": NOW, "previous": "suspect",
                "peer": {"id": "0123456789abcdef0123456789abcdef", "name": "bob",
                         "addr": "192.0.2.7:7465", "state": "failed",
                         "since": 1_795_497_469_000u64, "rtt_ms": 0.25,
                         "generation": 1, "incarnation": 0, "key": "",
                         "name_trust": "pinned"}
            })
        );
        assert_eq!(lines[1]["change"], "joined");
        assert_eq!(lines[1]["previous"], serde_json::Value::Null);
        assert!(
            lines[1]
                .as_object()
                .is_some_and(|o| o.contains_key("previous"))
        );
        assert_eq!(lines[2]["change"], "snapshot");
        assert_eq!(lines[2]["peer"]["state"], "left");
        let back: PeerView = serde_json::from_value(lines[0]["peer"].clone()).expect("PeerView");
        assert_eq!(back, p);
    }
}

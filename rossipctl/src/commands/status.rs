//! `rossipctl status`: this node at a glance.

use std::io::Write;

use rossip_proto::rpc::{ProblemKind, StatusResult, method};
use serde_json::json;

use super::Ctx;
use crate::output::Out;
use crate::sanitize::sanitize;
use crate::timefmt::{format_age, format_ago, now_ms};

/// Shows the daemon's status.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let status: StatusResult = client.call(method::STATUS, json!({}))?;
    if ctx.json {
        return out.json(&status);
    }
    for line in lines(&status)
        .into_iter()
        .chain(problem_lines(&status, now_ms()))
    {
        out.line(&line)?;
    }
    Ok(())
}

/// A `problems:` section when there are any (nothing otherwise), one
/// problem a line: what it is and what to check, how often and how
/// recently (ages against `now_ms`).
fn problem_lines(s: &StatusResult, now_ms: u64) -> Vec<String> {
    if s.problems.is_empty() {
        return Vec::new();
    }
    let mut lines = vec!["problems:".to_owned()];
    lines.extend(s.problems.iter().map(|p| {
        let what = match p.kind {
            ProblemKind::SeedSilent => "unanswered contacts",
            // A newer daemon's kind: its detail says what it is, and what
            // it counts is not known here.
            ProblemKind::Unknown => "times",
            _ => "datagrams",
        };
        format!(
            "  {}: {} ({} {what}; first {} ago, last {} ago)",
            p.kind.as_str(),
            sanitize(&p.detail),
            p.count,
            format_ago(now_ms, p.since),
            format_ago(now_ms, p.last_seen)
        )
    }));
    lines
}

/// `key: value` lines for humans.
fn lines(s: &StatusResult) -> Vec<String> {
    let p = &s.peers;
    let m = &s.messages;
    let d = &s.datagrams;
    let v = &s.discovery;
    vec![
        format!("id: {}", sanitize(&s.id)),
        format!("name: {}", sanitize(&s.name)),
        format!("cluster: {}", sanitize(&s.cluster)),
        format!("version: {}", sanitize(&s.version)),
        format!("state: {}", sanitize(&s.state)),
        format!("addr: {}", sanitize(&s.addr)),
        format!("bind: {}", sanitize(&s.bind)),
        format!("socket: {}", sanitize(&s.socket)),
        format!("state dir: {}", sanitize(&s.state_dir)),
        format!("mdns: {}", if s.mdns { "on" } else { "off" }),
        format!(
            "uptime: {}",
            format_age(std::time::Duration::from_secs(s.uptime_s))
        ),
        format!(
            "peers: {} alive, {} suspect, {} failed, {} left",
            p.alive, p.suspect, p.failed, p.left
        ),
        format!(
            "membership: generation {}, {} suspicions of this node refuted, {} failures postponed, \
             {} ms behind, {} detector waits stretched",
            s.membership.generation,
            s.membership.suspicions_refuted,
            s.membership.failures_postponed,
            s.membership.lag_ms,
            s.membership.detector_waits_stretched
        ),
        format!(
            "messages: {} sent, {} received, {} duplicates, {} in history ({} bytes)",
            m.sent, m.received, m.duplicates, m.in_history, m.history_bytes
        ),
        format!(
            "repair: {} repairs sent, {} gap pulls, {} lost, {} large messages partly received ({} dropped incomplete)",
            m.repairs_sent, m.gap_pulls, m.lost, m.partial, m.partial_evicted
        ),
        format!(
            "push acks: {} sent, {} retransmissions, {} unacknowledged, {} left to anti-entropy",
            m.acks_sent, m.retransmissions, m.unacknowledged, m.retransmit_given_up
        ),
        format!(
            "back-pressure: {} sends held, {} waiting, {} refused busy",
            m.sends_held, m.sends_waiting, m.sends_refused
        ),
        format!(
            "direct: {} waiting for their recipients, {} copies sent, {} received, {} expired",
            m.direct_pending, m.direct_sent, m.direct_received, m.direct_expired
        ),
        format!(
            "datagrams: {} received ({} bytes), {} sent ({} bytes)",
            d.received, d.bytes_received, d.sent, d.bytes_sent
        ),
        format!("datagrams dropped: {}", counts_by_reason(&d.dropped)),
        format!(
            "discovery: {} mDNS records, {} hints, {} unverified addresses, {} hellos sent ({} waited for the rate), {} cache resets",
            v.records, v.hints, v.unverified, v.hellos_sent, v.hellos_deferred, v.cache_resets
        ),
        format!("discovery dropped: {}", counts_by_reason(&v.hints_dropped)),
        format!("subscriber drops: {}", s.subscriber_drops),
        format!(
            "local socket: {} connections (at most {}), {} refused",
            s.rpc.connections, s.rpc.max_connections, s.rpc.refused
        ),
        format!(
            "store: {} messages, {} bytes, {} errors{}{} ({})",
            s.store.messages,
            s.store.size_bytes,
            s.store.errors,
            // Only when the store failed: messages it still owes, and gave up on.
            if s.store.pending > 0 {
                format!(", {} waiting to be stored", s.store.pending)
            } else {
                String::new()
            },
            if s.store.dropped > 0 {
                format!(", {} given up", s.store.dropped)
            } else {
                String::new()
            },
            sanitize(&s.store.path)
        ),
        format!(
            "identity: key {}, {} names pinned, {} names seen with another key",
            sanitize(&s.identity.key),
            s.identity.pinned_names,
            s.identity.name_conflicts
        ),
        match &s.http {
            None => "web: off (see rossipd --http)".to_owned(),
            Some(http) => format!(
                "web: http://{}/ ({}); {} connections, {} refused (full), {} forbidden (Host/Origin), \
                 {} unauthorized",
                sanitize(&http.addr),
                if http.login {
                    "login token needed: `rossipctl web` prints your link"
                } else {
                    "loopback, no login"
                },
                http.connections,
                http.refused,
                http.forbidden,
                http.unauthorized
            ),
        },
        match s.keys.split_first() {
            None => "encryption: off (gossip is plaintext; see rossipd --key-file)".to_owned(),
            Some((primary, [])) => {
                format!("encryption: on, key {}", sanitize(primary))
            }
            Some((primary, others)) => format!(
                "encryption: on, key {} (also accepting {})",
                sanitize(primary),
                sanitize(&others.join(", "))
            ),
        },
    ]
}

/// `2 malformed, 1 wrong_cluster`, or `none`.
fn counts_by_reason(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    counts
        .iter()
        .map(|(reason, n)| format!("{n} {}", sanitize(reason)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::rpc::{
        DatagramCounts, MembershipCounts, MessageCounts, PeerCounts, ProblemView, StoreStatus,
    };

    #[test]
    fn status_lines_cover_every_counter() {
        let status = StatusResult {
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "web\x1b]0;x\x07".into(),
            version: "0.1.0".into(),
            cluster: "rossip".into(),
            addr: "192.0.2.7:7946".into(),
            bind: "0.0.0.0:7946".into(),
            socket: "/run/rossip/rossipd.sock".into(),
            state_dir: "/var/lib/rossip".into(),
            mdns: true,
            state: "running".into(),
            uptime_s: 3725,
            peers: PeerCounts {
                alive: 2,
                suspect: 1,
                failed: 0,
                left: 3,
            },
            membership: MembershipCounts {
                generation: 1_795_497_469,
                suspicions_refuted: 2,
                failures_postponed: 1,
                renewals: 0,
                identity_conflicts: 0,
                lag_ms: 0,
                detector_waits_stretched: 0,
            },
            messages: MessageCounts {
                sent: 4,
                received: 5,
                duplicates: 6,
                in_history: 9,
                history_bytes: 900,
                repairs_sent: 12,
                gap_pulls: 3,
                lost: 0,
                sends_held: 20,
                sends_waiting: 0,
                sends_refused: 1,
                partial: 0,
                partial_evicted: 0,
                ..MessageCounts::default()
            },
            datagrams: DatagramCounts {
                received: 10,
                sent: 11,
                bytes_received: 1200,
                bytes_sent: 1300,
                dropped: [("malformed".to_owned(), 2), ("wrong_cluster".to_owned(), 1)]
                    .into_iter()
                    .collect(),
            },
            subscriber_drops: 7,
            store: StoreStatus {
                path: "/var/lib/rossip/history.db".into(),
                size_bytes: 40960,
                messages: 9,
                errors: 1,
                pending: 2,
                dropped: 0,
            },
            keys: vec!["1a2b3c4d".into(), "5e6f7081".into()],
            identity: rossip_proto::rpc::IdentityStatus::default(),
            rpc: rossip_proto::rpc::RpcStatus {
                connections: 3,
                max_connections: 4096,
                refused: 2,
            },
            problems: Vec::new(),
            discovery: rossip_proto::rpc::DiscoveryStatus {
                records: 900,
                hints: 890,
                unverified: 256,
                hellos_sent: 300,
                hellos_deferred: 40,
                cache_resets: 1,
                hints_dropped: [("set_full".to_owned(), 600), ("evicted".to_owned(), 34)]
                    .into_iter()
                    .collect(),
            },
            http: Some(rossip_proto::rpc::HttpView {
                addr: "127.0.0.1:7466".into(),
                login: false,
                connections: 2,
                refused: 0,
                forbidden: 1,
                unauthorized: 0,
            }),
        };
        let text = lines(&status).join("\n");
        for expected in [
            "name: web\\x1b]0;x\\x07",
            "state dir: /var/lib/rossip",
            "uptime: 1h02m",
            "peers: 2 alive, 1 suspect, 0 failed, 3 left",
            "membership: generation 1795497469, 2 suspicions of this node refuted, 1 failures postponed, 0 ms behind, 0 detector waits stretched",
            "messages: 4 sent, 5 received, 6 duplicates, 9 in history (900 bytes)",
            "repair: 12 repairs sent, 3 gap pulls, 0 lost, 0 large messages partly received (0 dropped incomplete)",
            "back-pressure: 20 sends held, 0 waiting, 1 refused busy",
            "direct: 0 waiting for their recipients, 0 copies sent, 0 received, 0 expired",
            "datagrams: 10 received (1200 bytes), 11 sent (1300 bytes)",
            "datagrams dropped: 2 malformed, 1 wrong_cluster",
            "subscriber drops: 7",
            "discovery: 900 mDNS records, 890 hints, 256 unverified addresses, 300 hellos sent (40 waited for the rate), 1 cache resets",
            "discovery dropped: 34 evicted, 600 set_full",
            "local socket: 3 connections (at most 4096), 2 refused",
            "store: 9 messages, 40960 bytes, 1 errors, 2 waiting to be stored (/var/lib/rossip/history.db)",
            "encryption: on, key 1a2b3c4d (also accepting 5e6f7081)",
            "web: http://127.0.0.1:7466/ (loopback, no login); 2 connections, 0 refused (full), \
             1 forbidden (Host/Origin), 0 unauthorized",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(
            problem_lines(&status, 0).is_empty(),
            "no problems: nothing extra"
        );

        let mut troubled = status;
        troubled.problems = vec![ProblemView {
            kind: ProblemKind::WrongCluster,
            addr: Some("10.0.0.5:7465".into()),
            detail: "datagrams from 10.0.0.5:7465 carry another cluster label\x1b[2J".into(),
            since: 1_000,
            last_seen: 61_000,
            count: 12,
        }];
        assert_eq!(
            problem_lines(&troubled, 66_000),
            vec![
                "problems:".to_owned(),
                "  wrong_cluster: datagrams from 10.0.0.5:7465 carry another cluster \
                 label\\x1b[2J (12 datagrams; first 1m05s ago, last 5s ago)"
                    .to_owned(),
            ]
        );

        // A kind added by a newer daemon is shown with its detail.
        troubled.problems[0].kind = ProblemKind::Unknown;
        troubled.problems[0].detail = "something new is wrong".into();
        assert_eq!(
            problem_lines(&troubled, 66_000)[1],
            "  unknown: something new is wrong (12 times; first 1m05s ago, last 5s ago)"
        );
    }
}

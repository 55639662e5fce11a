//! `rossipctl peers`: the member list as a table, or one JSON object per member.

use std::io::Write;

use rossip_proto::rpc::{PeerView, PeersParams, PeersResult, method};

use super::Ctx;
use crate::cli::PeersArgs;
use crate::output::{Out, aligned};
use crate::sanitize::sanitize;
use crate::timefmt::{format_ago, now_ms};

/// Lists the members.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: PeersArgs) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let result: PeersResult = client.call(method::PEERS, PeersParams { all: args.all })?;
    out.listing(ctx.json, &result.peers, "no peers", |peers| {
        table(peers, now_ms())
    })
}

const HEADER: [&str; 7] = ["NAME", "ID", "ADDR", "STATE", "SINCE", "LAST SEEN", "RTT"];

/// The table's lines, header first, columns padded to their widest cell.
fn table(peers: &[PeerView], now_ms: u64) -> Vec<String> {
    aligned(HEADER, peers.iter().map(|peer| row(peer, now_ms)).collect())
}

fn row(peer: &PeerView, now_ms: u64) -> [String; 7] {
    let id: String = peer.id.chars().take(8).collect();
    let mut name = super::tail::display_name(&peer.name);
    if peer.name_trust == rossip_proto::rpc::NameTrust::Changed {
        // Loud on purpose: this name was first seen with another key.
        name.push_str(" [NAME CHANGED KEY]");
    }
    [
        name,
        sanitize(&id).into_owned(),
        sanitize(&peer.addr).into_owned(),
        peer.state.as_str().to_owned(),
        format_ago(now_ms, peer.since),
        peer.last_seen
            .map_or_else(|| "-".to_owned(), |seen| format_ago(now_ms, seen)),
        peer.rtt_ms.map_or_else(|| "-".to_owned(), format_rtt),
    ]
}

/// Milliseconds with one decimal below 10 ms (LAN round trips are sub-millisecond).
fn format_rtt(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::rpc::PeerStateName;

    fn peer(name: &str, state: PeerStateName, rtt_ms: Option<f64>) -> PeerView {
        PeerView {
            id: "0123456789abcdef0123456789abcdef".to_owned(),
            name: name.to_owned(),
            addr: "192.0.2.7:7946".to_owned(),
            state,
            since: 1_000_000,
            last_seen: rtt_ms.map(|_| 1_190_000),
            rtt_ms,
            generation: 1,
            incarnation: 0,
            key: String::new(),
            name_trust: rossip_proto::rpc::NameTrust::Pinned,
        }
    }

    #[test]
    fn table_is_aligned_and_readable() {
        let peers = [
            peer("alice", PeerStateName::Alive, Some(0.42)),
            peer("bob-the-builder", PeerStateName::Failed, None),
        ];
        let lines = table(&peers, 1_192_000);
        assert_eq!(
            lines,
            [
                "NAME             ID        ADDR            STATE   SINCE  LAST SEEN  RTT",
                "alice            01234567  192.0.2.7:7946  alive   3m12s  2s         0.4ms",
                "bob-the-builder  01234567  192.0.2.7:7946  failed  3m12s  -          -",
            ]
        );
    }

    #[test]
    fn names_are_sanitized() {
        let lines = table(
            &[peer("x\x1b[31m", PeerStateName::Suspect, Some(12.6))],
            1_000_000,
        );
        assert!(lines[1].starts_with("x\\x1b[31m  "), "{}", lines[1]);
        assert!(
            lines[1].ends_with("suspect  0s     0s         13ms"),
            "{}",
            lines[1]
        );
    }
}

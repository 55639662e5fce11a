//! The `status` answer.

use std::sync::atomic::Ordering;
use std::time::Instant;

use rossip_proto::Mismatch;
use rossip_proto::PeerState;
use rossip_proto::rpc::{
    DatagramCounts, DiscoveryStatus, IdentityStatus, MembershipCounts, MessageCounts, PeerCounts,
    ProblemKind, ProblemView, RpcStatus, StatusResult, StoreStatus,
};

use super::problems::{Problem, Subject};

use super::Driver;

impl Driver {
    pub(super) fn status(&self, now: Instant) -> StatusResult {
        let mut peers = PeerCounts::default();
        for m in self.node.members() {
            match m.state {
                PeerState::Alive => peers.alive += 1,
                PeerState::Suspect => peers.suspect += 1,
                PeerState::Failed => peers.failed += 1,
                PeerState::Left => peers.left += 1,
            }
        }
        let s = self.node.stats();
        let mut dropped: std::collections::BTreeMap<String, u64> = s
            .dropped
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        if self.send_errors > 0 {
            dropped.insert("send_failed".to_owned(), self.send_errors);
        }
        if self.inbox.dropped() > 0 {
            dropped.insert("inbox_full".to_owned(), self.inbox.dropped());
        }
        StatusResult {
            id: self.node.id().to_string(),
            name: self.info.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster: self.info.cluster.clone(),
            addr: self.info.addr.to_string(),
            bind: self.info.bind.to_string(),
            socket: self.info.socket.clone(),
            state_dir: self.state.path().display().to_string(),
            mdns: self.info.mdns,
            state: if self.node.has_left() {
                "left"
            } else {
                "running"
            }
            .to_owned(),
            uptime_s: now
                .saturating_duration_since(self.clock.started())
                .as_secs(),
            peers,
            membership: MembershipCounts {
                generation: self.node.generation(),
                suspicions_refuted: s.suspicions_refuted,
                failures_postponed: s.failures_postponed,
                renewals: s.renewals,
                identity_conflicts: s.identity_conflicts,
                lag_ms: u64::try_from(self.node.local_lag(now).as_millis()).unwrap_or(u64::MAX),
                detector_waits_stretched: s.detector_waits_stretched,
            },
            messages: MessageCounts {
                sent: s.messages_sent,
                received: s.messages_received,
                duplicates: s.duplicates,
                in_history: u64::try_from(self.node.history_len()).unwrap_or(u64::MAX),
                history_bytes: u64::try_from(self.node.history_bytes()).unwrap_or(u64::MAX),
                repairs_sent: s.repairs_sent,
                gap_pulls: s.gap_pulls,
                retransmissions: s.retransmissions,
                acks_sent: s.acks_sent,
                unacknowledged: u64::try_from(self.node.retransmit_usage().0).unwrap_or(u64::MAX),
                retransmit_given_up: s.retransmit_given_up + s.retransmit_dropped,
                lost: s.messages_lost,
                sends_held: self.deferred.held,
                sends_refused: self.deferred.refused,
                sends_waiting: u64::try_from(self.deferred.len()).unwrap_or(u64::MAX),
                partial: u64::try_from(self.node.reassembly_usage().0).unwrap_or(u64::MAX),
                partial_evicted: s.reassembly_evicted,
                direct_pending: u64::try_from(self.node.pending_direct().count())
                    .unwrap_or(u64::MAX),
                direct_sent: s.direct_sent,
                direct_received: s.direct_received,
                direct_expired: s.direct_expired,
                direct_acks_withheld: self.direct_acks_withheld,
                direct_orphaned: self.store.direct_orphaned(),
            },
            datagrams: DatagramCounts {
                received: s.datagrams_received,
                sent: s.datagrams_sent,
                bytes_received: s.bytes_received,
                bytes_sent: s.bytes_sent,
                dropped,
            },
            subscriber_drops: self.counters.subscriber_drops.load(Ordering::Relaxed),
            rpc: RpcStatus {
                connections: self.counters.rpc_connections.load(Ordering::Relaxed),
                max_connections: self.counters.rpc_max_connections.load(Ordering::Relaxed),
                refused: self.counters.rpc_refused.load(Ordering::Relaxed),
            },
            store: {
                let figures = self.store.figures();
                StoreStatus {
                    path: figures.path.display().to_string(),
                    size_bytes: figures.size_bytes,
                    messages: figures.messages,
                    errors: self.store_errors,
                    pending: self.unstored.len() as u64,
                    dropped: self.unstored.dropped(),
                }
            },
            keys: self
                .node
                .key_ids()
                .iter()
                .map(ToString::to_string)
                .collect(),
            identity: IdentityStatus {
                key: self.node.public_key().fingerprint(),
                pinned_names: u64::try_from(self.pins.pinned()).unwrap_or(u64::MAX),
                name_conflicts: self.pins.conflicts(),
            },
            problems: {
                let keys = self.node.key_ids();
                self.problems
                    .list(now, self.own_settings(&keys))
                    .into_iter()
                    .map(|problem| self.problem_view(problem))
                    .collect()
            },
            discovery: self.discovery_status(),
            http: self
                .info
                .http
                .clone()
                .map(|view| self.counters.http.add_to(view)),
        }
    }

    /// mDNS records (counted by discovery) and the hints they became
    /// (counted by the node), in one section.
    fn discovery_status(&self) -> DiscoveryStatus {
        let seen = &self.counters.discovery;
        let hints = self.node.hint_stats();
        let mut hints_dropped: std::collections::BTreeMap<String, u64> = seen
            .dropped()
            .map(|(reason, count)| (reason.as_str().to_owned(), count))
            .collect();
        for (reason, count) in &hints.dropped {
            hints_dropped.insert(reason.as_str().to_owned(), *count);
        }
        DiscoveryStatus {
            records: seen.records.load(Ordering::Relaxed),
            hints: hints.hints,
            unverified: u64::try_from(self.node.unverified_hints()).unwrap_or(u64::MAX),
            hellos_sent: hints.hellos_sent,
            hellos_deferred: hints.hellos_deferred,
            cache_resets: seen.cache_resets.load(Ordering::Relaxed),
            hints_dropped,
        }
    }

    fn problem_view(&self, problem: Problem) -> ProblemView {
        let (kind, addr) = match problem.subject {
            Subject::SilentSeed { seed, .. } => (ProblemKind::SeedSilent, Some(seed)),
            Subject::Refused { addr, mismatch } => (
                match mismatch {
                    Mismatch::OtherCluster => ProblemKind::WrongCluster,
                    Mismatch::UnknownKey(_) => ProblemKind::UnknownKey,
                    Mismatch::Unsealed => ProblemKind::UnsealedRefused,
                    Mismatch::SealedWithoutKey => ProblemKind::SealedWithoutKey,
                    Mismatch::ClockSkew => ProblemKind::Stale,
                },
                Some(addr.to_string()),
            ),
            Subject::ManySenders => (ProblemKind::ManySenders, None),
        };
        ProblemView {
            kind,
            addr,
            detail: problem.detail,
            since: self.clock.unix_ms(problem.since),
            last_seen: self.clock.unix_ms(problem.last_seen),
            count: problem.count,
        }
    }
}

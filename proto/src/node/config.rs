//! Every timing and tunable of the protocol, in one place.
//!
//! As `foca::Config` or quinn's `TransportConfig`: the intervals, timeouts,
//! fan-outs, retry limits and per-interval budgets a [`super::Node`] runs
//! with are fields of [`ProtocolConfig`], carried by
//! [`super::NodeConfig::protocol`] and owned by the node. The defaults are
//! tuned for one LAN (sub-millisecond round trips, tens to a thousand
//! nodes); tests derive their bounds from `ProtocolConfig::default()`
//! rather than from numbers of their own, so a changed default cannot leave
//! a test checking the old one.
//!
//! What stays a `const` elsewhere is not tunable: facts of the wire format
//! both ends must agree on (datagram and field sizes, in [`crate::wire`]),
//! packing bounds derived from those sizes, and caps on what a hostile
//! peer can make a node remember.

use std::time::Duration;

/// The protocol's timings and tunables. Nodes of one cluster may run with
/// different values (nothing here is on the wire), but the defaults are
/// what the daemon uses and what the tests and simulations check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolConfig {
    // --- Failure detection (SWIM, run by foca) ---
    /// How often each node probes one member (round robin over a shuffled
    /// list). A LAN answers in well under a millisecond; a probe costs two
    /// small datagrams, so even 5 probes a second per node is cheap, and it
    /// is what bounds failure detection: a dead member is probed within
    /// about one period by someone, suspected a period later, and failed
    /// [`ProtocolConfig::suspect_to_down_after`] after that (≤ 2 s in all,
    /// see the `membership` scenario tests). Default 200 ms.
    pub probe_period: Duration,
    /// How long a direct probe may take before indirect probes are sent: a
    /// LAN round trip is well under a millisecond, so 80 ms only passes for
    /// a lost packet (or a stalled process) and leaves 120 ms of the probe
    /// period for the indirect ones. Must be shorter than
    /// [`ProtocolConfig::probe_period`]. Default 80 ms.
    pub probe_rtt: Duration,
    /// How many members are asked to probe a member that did not answer
    /// directly: one lost datagram or one bad path does not make a suspect.
    /// Default 3.
    pub indirect_probes: usize,
    /// How long a suspect member has to refute before it is declared
    /// failed. Short, because the member that suspects also tells the
    /// suspect directly, every [`ProtocolConfig::nudge_interval`], so a live
    /// one refutes within a round trip; and because the failure is
    /// postponed while the suspect is still heard from (see `suspicion`). A
    /// dead member gets no such help. Default 800 ms.
    pub suspect_to_down_after: Duration,
    /// How many outgoing packets each membership update rides on. foca's
    /// `new_lan` would derive ~6 for a few dozen nodes; then, after a burst
    /// of joins through one seed, a few pairs of nodes typically never hear
    /// of each other until a periodic announce or a probe happens to
    /// connect them (tens of seconds). With 15, 50 such joins converge in
    /// about a second and 200 in a few (see the scenario tests); the cost
    /// is only during churn, as quiet gossip is skipped. Default 15.
    pub gossip_transmissions: u8,
    /// How often membership updates are gossiped besides probes (only when
    /// there is news). Changes of state are also gossiped at once (see
    /// [`ProtocolConfig::immediate_gossip_min_interval`]). Default 200 ms.
    pub periodic_gossip_interval: Duration,
    /// How many members each periodic gossip goes to. Default 3.
    pub periodic_gossip_fanout: usize,
    /// Changes of liveness are gossiped at once, but not more often than
    /// this (a burst of joins gossips once, not once per member). Default
    /// 50 ms.
    pub immediate_gossip_min_interval: Duration,
    /// How often a node asks a random member for its member list, so
    /// members learned by different peers converge and partitions heal.
    /// Default 10 s.
    pub periodic_announce_interval: Duration,
    /// How many members each periodic announce asks. Default 1.
    pub periodic_announce_fanout: usize,
    /// How often a node announces itself to members it believes down, so a
    /// healed partition rejoins within a few seconds without outside help
    /// (the member answers "you are down to me", the announcer renews its
    /// identity, and the two sides merge). Small datagrams to addresses of
    /// dead members are the price until they are reaped. Default 1 s.
    pub periodic_announce_down_interval: Duration,
    /// How many members believed down each such announce goes to. Default 2.
    pub periodic_announce_down_fanout: usize,

    // --- Suspicion (see `suspicion`) ---
    /// How often the member that suspects another tells it so (a
    /// [`crate::wire::Body::Suspected`]), so a live suspect refutes at once
    /// instead of waiting for gossip to reach it. Default 200 ms.
    pub nudge_interval: Duration,
    /// How much longer a suspect that is still heard from gets before it is
    /// declared failed, each time. Default 400 ms.
    pub postpone_step: Duration,
    /// How many times a "down" may be postponed: a member heard from but
    /// unable to refute for this long (e.g. traffic gets through one way
    /// only) is failed after all. Default 3.
    pub max_postpones: u32,
    /// The shortest time between two answers to the nudges of one member:
    /// a refutation is gossiped anyway, so answering every nudge of a burst
    /// only adds traffic. Default 50 ms.
    pub nudge_answer_min_interval: Duration,

    // --- Local health (see `health`) ---
    /// Lags below this are scheduling noise, not a node behind its inputs:
    /// an idle node's timers fire within a millisecond or two of their
    /// deadline even on a busy machine, and its datagrams wait less. Below
    /// it nothing is stretched, so an idle cluster detects failures exactly
    /// as without local health. Default 20 ms.
    pub health_min_lag: Duration,
    /// How long a measured lag counts (one to two of these): long enough to
    /// bridge the gaps between bursts of a flood, short enough that a node
    /// that caught up detects failures at full speed again within seconds.
    /// Default 1 s.
    pub health_window: Duration,
    /// The most a node that runs behind stretches each wait of its failure
    /// detector (see `health::stretch`): it bounds how much later a slow
    /// node notices a real failure (healthy nodes notice it on time). A
    /// saturated two-core host runs up to about a second behind under a
    /// full-speed flood. Default 4 s.
    pub max_health_stretch: Duration,

    // --- Contact and leave (see `contact`) ---
    /// The shortest time between two hellos to one address: discovery may
    /// report an address many times (mDNS, seeds retried), and one hello per
    /// second is plenty to get an answer from a live node. Default 1 s.
    pub hello_min_interval: Duration,
    /// Bounds on what discovery hints (mDNS records, which anyone on the
    /// LAN can forge) make the node do: a capped set of unverified
    /// addresses, a backoff per address and one hello rate.
    pub hints: super::HintConfig,
    /// How many copies of a leave notice each member gets: a little loss
    /// tolerance, as a leaving node does not wait for answers. Default 2.
    pub leave_copies: usize,
    /// How many members a node that learned of a leave forwards it to, so
    /// nodes that lost both direct copies still show `left` rather than
    /// `failed`. Default 3.
    pub left_forward_fanout: usize,

    // --- Dissemination (see `dissemination`) ---
    /// How many members an eager push goes to when it is relayed (0:
    /// anti-entropy only). With forwarding on first receipt, 3 reaches
    /// every node of a LAN cluster with high probability; anti-entropy
    /// repairs the rest. Default 3.
    pub push_fanout: usize,
    /// Up to this many active members, a node pushes its own messages to
    /// every one of them directly, and they do not relay (one hop, one copy
    /// each); above it, to [`ProtocolConfig::push_fanout`] members who
    /// relay. Gaps are pulled either way. Default 16.
    pub direct_push_limit: usize,
    /// Most of its own messages a node signs with one signature: what it
    /// publishes between two drains (one driver turn) is signed as one
    /// batch ([`crate::message::sign_batch`]), so that a burst costs one
    /// signature and one check at every receiver instead of one per
    /// message. Each message carries a proof of `log2` of the batch's
    /// size hashes (32 bytes each), so the bound keeps messages small.
    /// 1 signs every message alone. Default 64 (proofs of at most 192 bytes).
    pub max_signing_batch: usize,
    /// How long a gap in an origin's sequence numbers may stay open before
    /// it is pulled: a copy on another path may just be late. Default 10 ms.
    pub gap_pull_delay: Duration,
    /// Acknowledgement and retransmission of direct pushes (see `acks`):
    /// in a cluster of at most [`ProtocolConfig::direct_push_limit`], a
    /// push is the only copy a member gets, so a lost one would wait for a
    /// gap pull (which needs a later message) or anti-entropy (hundreds of
    /// milliseconds). Each member acknowledges direct pushes; the origin
    /// sends again what is not acknowledged in time.
    pub push_acks: PushAckConfig,
    /// The youngest a message may be and still be evicted from history to
    /// make room: a publish that would evict a younger one is refused
    /// ([`super::PublishError::Busy`]), because members that lost a
    /// datagram may still be pulling it. This bounds a sustained publish
    /// rate at the history limit divided by this span, and makes the bound
    /// visible to the sender. Default 3 s.
    pub min_retention: Duration,
    /// Timestamps further ahead of this node's wall clock are not merged
    /// into its clock: one node with a wild clock must not drag every later
    /// message of the cluster into the future. (Its messages are still
    /// delivered, and sort by their own stamps.) Default 60 s.
    pub max_clock_ahead: Duration,

    // --- Anti-entropy (see `anti_entropy`) ---
    /// How often an idle node starts a digest exchange with one random
    /// member. Default 1 s.
    pub anti_entropy_interval: Duration,
    /// The round interval while messages are flowing (a message arrived
    /// within the last [`ProtocolConfig::anti_entropy_interval`]) in a
    /// cluster larger than [`ProtocolConfig::direct_push_limit`]: a node
    /// an epidemic push missed learns of it from the next digest's heads,
    /// so this bounds the delivery tail. (A smaller cluster acknowledges
    /// and retransmits pushes instead, see
    /// [`ProtocolConfig::push_acks`].) Default 200 ms.
    pub anti_entropy_active_interval: Duration,
    /// The round interval while catching up: when the last round brought at
    /// least [`ProtocolConfig::catch_up_threshold`] repaired messages,
    /// there is likely more, so the next round comes sooner (a backlog of
    /// thousands then takes seconds, not minutes). Default 100 ms.
    pub anti_entropy_catch_up_interval: Duration,
    /// Repaired messages since the last round that mean "catching up".
    /// Default 32.
    pub catch_up_threshold: usize,
    /// Most bytes of repairs sent in answer to one digest (about 70
    /// datagrams by default): a large backlog takes several exchanges,
    /// which come every [`ProtocolConfig::anti_entropy_catch_up_interval`]
    /// while repairs keep coming. Default 96 KiB.
    pub max_repair_bytes_per_digest: usize,
    /// Origins whose last message is older than this are not listed as
    /// heads of a digest (heads are for what is flowing now). Default 5 s.
    pub recent_heads_window: Duration,
    /// A `Gone` answer is taken only from a member this node sent a digest
    /// to within this long (it answers a question; an unsolicited one is
    /// dropped). Default 5 s.
    pub gone_answer_window: Duration,

    // --- Membership anti-entropy (see `member_sync`) ---
    /// How often a node with a stable view compares member summaries with
    /// one random member: a node that misses a member starts pulling within
    /// about a second of meeting one that knows it. Default 1 s.
    pub member_sync_interval: Duration,
    /// The round interval during a digest cycle, and while the view grows
    /// (a member came up since the last round): a node that just joined
    /// fetches a thousand identities in a few seconds. Default 200 ms.
    pub member_sync_growing_interval: Duration,

    // --- Identity pulls (see `identity_pull`) ---
    /// How long a request for an identity a SWIM packet named goes
    /// unrepeated: another packet naming it within this time does not ask
    /// again (the answer is likely on its way); after it, the next one
    /// asks its own sender. Default 200 ms.
    pub identity_pull_retry: Duration,
    /// Most identities asked for and awaited at once: enough for a cold
    /// start of thousands of nodes, where every join is news to every node.
    /// Default 4096.
    pub identity_pulls_max: usize,

    // --- Reassembly of large messages (see `fragments`) ---
    /// Most messages being reassembled at once. Default 256.
    pub max_partials: usize,
    /// Most bytes of pieces held for incomplete messages. Default 32 MiB.
    pub reassembly_max_bytes: usize,
    /// An incomplete message that received no new piece for this long is
    /// dropped (its pieces come again through anti-entropy, if it still
    /// exists). Default 60 s.
    pub partial_timeout: Duration,

    // --- Identity conflicts (see `identity_conflict`) ---
    /// How often a renewal ("declared failed while running") is logged at
    /// info level at most; the others go to debug, all are counted.
    /// Default 10 s.
    pub renewal_log_interval: Duration,
    /// How often at most a node tells an address which run of a member's id
    /// it holds (a copy of a node must learn it lost, but a flood of its
    /// datagrams must not become a flood of answers). Default 5 s.
    pub identity_notice_interval: Duration,

    // --- Keyring requests (see `keyring_ops`) ---
    /// Keyring requests answered at once; the oldest is forgotten past
    /// this. Default 16.
    pub keyring_max_outstanding: usize,
    /// How long answers to a keyring request are taken. Default 5 s.
    pub keyring_outstanding_for: Duration,

    // --- Round trips and sealing ---
    /// Longest round trip recorded as [`super::Member::rtt`]; longer echoes
    /// are stale or forged. Default 10 s.
    pub max_plausible_rtt: Duration,
    /// How far the send time stamped into a sealed datagram may be from
    /// this node's clock, for a sender run this node has no record of;
    /// older (or further ahead) is refused as stale, so a captured datagram
    /// cannot be replayed later. Also how long a sender run's replay window
    /// is remembered after its last datagram. Default 5 min.
    pub replay_freshness: Duration,

    // --- Presence ---
    /// How often a node sends its presence statement (its users in a chat)
    /// to every member again, besides at once when it changes and to each
    /// member that comes up: what repairs a lost update. Default 20 s.
    pub presence_refresh_interval: Duration,
    // --- Direct messages (see `direct`) ---
    /// How long a direct message is kept and retried until its recipient
    /// acknowledges it; then it is given up and reported expired. Default
    /// 24 h.
    pub direct_expiry: Duration,
    /// The first wait for an acknowledgement before a direct message is
    /// sent again. Default 1 s.
    pub direct_retry_initial: Duration,
    /// The longest wait between two copies (the wait doubles up to this).
    /// Default 30 s.
    pub direct_retry_max: Duration,
    /// Direct messages waiting for acknowledgement at most; more are
    /// refused. Default 1000.
    pub direct_max_pending: usize,
    /// Payload bytes of the direct messages waiting, at most. Default 4 MiB.
    pub direct_max_pending_bytes: usize,
    /// Ids of direct messages delivered here that are remembered to drop
    /// later copies. Default 4096.
    pub direct_dedup_memory: usize,
    /// How much older than [`ProtocolConfig::direct_expiry`] a direct
    /// message may be (by its timestamp, against this node's clock) and
    /// still be delivered: the senders' clocks differ. An older copy (a
    /// replay, or a copy of one delivered long ago and forgotten since) is
    /// acknowledged and not delivered. Default 1 h.
    pub direct_clock_slack: Duration,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            probe_period: Duration::from_millis(200),
            probe_rtt: Duration::from_millis(80),
            indirect_probes: 3,
            suspect_to_down_after: Duration::from_millis(800),
            gossip_transmissions: 15,
            periodic_gossip_interval: Duration::from_millis(200),
            periodic_gossip_fanout: 3,
            immediate_gossip_min_interval: Duration::from_millis(50),
            periodic_announce_interval: Duration::from_secs(10),
            periodic_announce_fanout: 1,
            periodic_announce_down_interval: Duration::from_secs(1),
            periodic_announce_down_fanout: 2,

            nudge_interval: Duration::from_millis(200),
            postpone_step: Duration::from_millis(400),
            max_postpones: 3,
            nudge_answer_min_interval: Duration::from_millis(50),

            health_min_lag: Duration::from_millis(20),
            health_window: Duration::from_secs(1),
            max_health_stretch: Duration::from_secs(4),

            hello_min_interval: Duration::from_secs(1),
            hints: super::HintConfig::default(),
            leave_copies: 2,
            left_forward_fanout: 3,

            push_fanout: 3,
            direct_push_limit: 16,
            max_signing_batch: 64,
            gap_pull_delay: Duration::from_millis(10),
            push_acks: PushAckConfig::default(),
            min_retention: Duration::from_secs(3),
            max_clock_ahead: Duration::from_secs(60),

            anti_entropy_interval: Duration::from_secs(1),
            anti_entropy_active_interval: Duration::from_millis(200),
            anti_entropy_catch_up_interval: Duration::from_millis(100),
            catch_up_threshold: 32,
            max_repair_bytes_per_digest: 96 * 1024,
            recent_heads_window: Duration::from_secs(5),
            gone_answer_window: Duration::from_secs(5),

            member_sync_interval: Duration::from_secs(1),
            member_sync_growing_interval: Duration::from_millis(200),

            identity_pull_retry: Duration::from_millis(200),
            identity_pulls_max: 4096,

            max_partials: 256,
            reassembly_max_bytes: 32 * 1024 * 1024,
            partial_timeout: Duration::from_secs(60),

            renewal_log_interval: Duration::from_secs(10),
            identity_notice_interval: Duration::from_secs(5),

            keyring_max_outstanding: 16,
            keyring_outstanding_for: Duration::from_secs(5),

            max_plausible_rtt: Duration::from_secs(10),
            replay_freshness: Duration::from_secs(5 * 60),

            presence_refresh_interval: Duration::from_secs(20),
            direct_expiry: Duration::from_secs(24 * 3600),
            direct_retry_initial: Duration::from_secs(1),
            direct_retry_max: Duration::from_secs(30),
            direct_max_pending: 1000,
            direct_max_pending_bytes: 4 * 1024 * 1024,
            direct_dedup_memory: 4096,
            direct_clock_slack: Duration::from_secs(3600),
        }
    }
}

/// Timings and bounds of push acknowledgements and retransmissions (see
/// [`ProtocolConfig::push_acks`]). A LAN round trip is 0.05–0.2 ms, so a
/// repair can complete within about a millisecond; what sets the numbers
/// is the daemon's own scheduling (its timer resolution is 1 ms) and the
/// datagram budget (an acknowledgement per message per member would double
/// the datagrams of sparse traffic; coalescing keeps a stream's cheap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushAckConfig {
    /// Whether direct pushes are acknowledged and retransmitted at all
    /// (off: a lost push waits for a gap pull or anti-entropy, as the
    /// 1,000-node epidemic mode always does). Default on.
    pub enabled: bool,
    /// The shortest retransmission timeout: a member's measured round trip
    /// can be a few microseconds in a simulation, and the answering daemon
    /// needs its turn on a busy CPU; shorter would retransmit what is only
    /// late. Default 1 ms.
    pub min_timeout: Duration,
    /// The retransmission timeout is this many times the member's round
    /// trip (when that is above the floor): room for the round trip, the
    /// member's processing, and its acknowledgement's coalescing. The round
    /// trip is smoothed over acknowledgements of first copies (before the
    /// first, the handshake's or last digest's sample). Default 3.
    pub rtt_factor: u32,
    /// The longest wait between two copies of an item: the backoff stops
    /// growing here. Default 100 ms.
    pub max_timeout: Duration,
    /// Retransmissions at the first timeout, unchanged, before the wait
    /// doubles: a loss on a LAN is one dropped datagram, not congestion,
    /// so the first retries come fast. Default 2.
    pub fast_retries: u32,
    /// Copies of an item sent in each retransmission. With independent loss
    /// `p`, one copy is lost again with probability `p` and two with `p²`:
    /// at 10% loss, a message to four members then needs a second retry in
    /// about 0.4% of cases instead of 4%, which keeps the 99th percentile
    /// at one timeout. Costs nothing without loss (nothing is resent).
    /// Default 2.
    pub copies: u32,
    /// Retransmissions of an item to one member before it is left to gap
    /// pulls and anti-entropy (the member may be gone; failure detection
    /// decides that, not this). At the 1 ms floor, about 0.13 s of tries.
    /// Default 8.
    pub max_retries: u32,
    /// A member acknowledges at most once per this interval per origin;
    /// what arrives sooner is acknowledged together when it ends. A single
    /// message is acknowledged at once; a stream of more than one message
    /// a millisecond shares acknowledgements, so it costs far less than one
    /// per message. The origin waits this much longer before retransmitting
    /// an item that followed another within the interval. Default 1 ms.
    pub ack_interval: Duration,
    /// Most (item, member) pairs waiting for acknowledgement; past it the
    /// oldest item is given up (counted in
    /// [`super::Stats::retransmit_dropped`]; anti-entropy repairs it). A
    /// 64 KiB message to 16 members is about 900 pairs. Default 4096.
    pub max_pending: usize,
    /// Most payload bytes held for retransmission (each item once, however
    /// many members wait for it). Default 4 MiB.
    pub max_pending_bytes: usize,
}

impl Default for PushAckConfig {
    fn default() -> Self {
        PushAckConfig {
            enabled: true,
            min_timeout: Duration::from_millis(1),
            rtt_factor: 3,
            max_timeout: Duration::from_millis(100),
            fast_retries: 2,
            copies: 2,
            max_retries: 8,
            ack_interval: Duration::from_millis(1),
            max_pending: 4096,
            max_pending_bytes: 4 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        let config = ProtocolConfig::default();
        assert!(config.probe_rtt < config.probe_period);
        assert!(config.anti_entropy_catch_up_interval <= config.anti_entropy_active_interval);
        assert!(config.anti_entropy_active_interval <= config.anti_entropy_interval);
        assert!(config.member_sync_growing_interval <= config.member_sync_interval);
        assert!(config.nudge_interval < config.suspect_to_down_after);
        let acks = config.push_acks;
        assert!(acks.min_timeout <= acks.max_timeout);
        assert!(acks.ack_interval < config.gap_pull_delay);
        assert!(acks.fast_retries <= acks.max_retries);
    }
}

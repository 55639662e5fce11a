//! Metrics of a simulation run, derived from what [`Sim`] records: delivery
//! ratio and delay per published message ([`DeliveryReport`]), and the
//! datagrams and bytes each node sent during a phase ([`PhaseTraffic`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::Sim;
use crate::id::MessageId;
use crate::node::Event;
use crate::wire;

/// Postcard's tag of `wire::Body::Push` (the variant index; one byte while
/// there are fewer than 128 variants).
const PUSH_TAG: u8 = 2;

/// Postcard's tag of `wire::Body::Repair`.
const REPAIR_TAG: u8 = 5;

/// Postcard's tag of `wire::Body::Swim`.
const SWIM_TAG: u8 = 1;

/// Names of `wire::Body`'s variants by postcard tag (the variant index), for
/// [`packet_kind`]; checked against the enum by a test below.
const BODY_KINDS: [&str; 21] = [
    "hello",
    "swim",
    "push",
    "leave",
    "digest",
    "repair",
    "suspected",
    "left",
    "gone",
    "member-digest",
    "member-sync",
    "member-summary",
    "keyring-query",
    "keyring-report",
    "keyring-command",
    "keyring-ack",
    "presence",
    "direct",
    "identity-request",
    "identities",
    "ack",
];

/// Postcard's tag of `wire::Body::Ack`.
const ACK_TAG: u8 = 20;

/// One successful publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message.
    pub id: MessageId,
    /// Index of the node that published it.
    pub origin: usize,
    /// Virtual time of the publish, since the start of the run.
    pub at: Duration,
}

/// What one node sent (every datagram it produced, lost ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeTraffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes (whole datagrams, header included; no IP/UDP overhead).
    pub bytes: u64,
    /// Datagrams carrying a message: eager pushes and repairs.
    pub message_datagrams: u64,
    /// Acknowledgements of direct pushes.
    pub ack_datagrams: u64,
}

impl NodeTraffic {
    /// Counts one datagram; returns whether it carries a message.
    pub(super) fn count(&mut self, payload: &[u8]) -> bool {
        self.datagrams += 1;
        self.bytes += payload.len() as u64;
        let message = is_message_datagram(payload);
        if message {
            self.message_datagrams += 1;
        }
        if is_plain_body(payload, ACK_TAG) {
            self.ack_datagrams += 1;
        }
        message
    }

    /// `self - earlier`, counter by counter.
    fn minus(&self, earlier: &NodeTraffic) -> NodeTraffic {
        NodeTraffic {
            datagrams: self.datagrams.saturating_sub(earlier.datagrams),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            message_datagrams: self
                .message_datagrams
                .saturating_sub(earlier.message_datagrams),
            ack_datagrams: self.ack_datagrams.saturating_sub(earlier.ack_datagrams),
        }
    }
}

/// What all nodes sent of one kind of datagram ([`packet_kind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTraffic {
    /// Datagrams.
    pub datagrams: u64,
    /// Bytes (whole datagrams, header included).
    pub bytes: u64,
    /// SWIM packets: member updates piggybacked (foca's gossip).
    pub updates: u64,
    /// SWIM packets: bytes of those updates (the rest is our header and
    /// foca's, whose identities are most of it).
    pub update_bytes: u64,
}

impl KindTraffic {
    fn minus(&self, earlier: &KindTraffic) -> KindTraffic {
        KindTraffic {
            datagrams: self.datagrams.saturating_sub(earlier.datagrams),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            updates: self.updates.saturating_sub(earlier.updates),
            update_bytes: self.update_bytes.saturating_sub(earlier.update_bytes),
        }
    }
}

/// Counts `payload` in `by_kind`, under its [`packet_kind`].
pub(super) fn count_kind(by_kind: &mut BTreeMap<&'static str, KindTraffic>, payload: &[u8]) {
    let (kind, updates) = packet_kind(payload);
    let entry = by_kind.entry(kind).or_default();
    entry.datagrams += 1;
    entry.bytes += payload.len() as u64;
    if let Some((count, bytes)) = updates {
        entry.updates += u64::from(count);
        entry.update_bytes += bytes as u64;
    }
}

/// The kind of an encoded plaintext datagram: the body's variant, and for a
/// SWIM packet foca's message (`swim ping`, `swim ack`, ...) with the count
/// and bytes of the member updates it carries. Read from the bytes (foca's
/// header decoded without checking signatures), as the traffic breakdown of
/// a simulation needs nothing more.
pub fn packet_kind(payload: &[u8]) -> (&'static str, Option<(u16, usize)>) {
    if payload.get(3) != Some(&0) {
        return ("sealed", None);
    }
    let Some(&tag) = payload.get(wire::HEADER_LEN) else {
        return ("short", None);
    };
    if tag != SWIM_TAG {
        return (
            BODY_KINDS
                .get(usize::from(tag))
                .copied()
                .unwrap_or("unknown"),
            None,
        );
    }
    let body = &payload[wire::HEADER_LEN..];
    let Ok((wire::Body::Swim(swim), _)) = postcard::take_from_bytes::<wire::Body>(body) else {
        return ("swim (undecodable)", None);
    };
    let Ok((header, rest)) = postcard::take_from_bytes::<foca::Header<wire::SwimIdentity>>(&swim)
    else {
        return ("swim (undecodable)", None);
    };
    let kind = match header.message {
        foca::Message::Ping(_) => "swim ping",
        foca::Message::Ack(_) => "swim ack",
        foca::Message::PingReq { .. } => "swim ping-req",
        foca::Message::IndirectPing { .. } => "swim indirect-ping",
        foca::Message::IndirectAck { .. } => "swim indirect-ack",
        foca::Message::ForwardedAck { .. } => "swim forwarded-ack",
        foca::Message::Announce => "swim announce",
        foca::Message::Feed => "swim feed",
        foca::Message::Gossip => "swim gossip",
        foca::Message::Broadcast => "swim broadcast",
        foca::Message::TurnUndead => "swim turn-undead",
    };
    // foca: a big-endian u16 count of updates, then the updates.
    let updates = match rest {
        [high, low, members @ ..] => Some((u16::from_be_bytes([*high, *low]), members.len())),
        _ => None,
    };
    (kind, updates)
}

/// The nearest-rank percentile `p` (0..=1) of sorted `times`; `None` when
/// empty.
pub fn percentile(times: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p.clamp(0.0, 1.0) * times.len() as f64).ceil() as usize;
    times.get(rank.clamp(1, times.len().max(1)) - 1).copied()
}

/// Whether an encoded datagram is a push or a repair (read from the body's
/// tag byte, so the simulation does not decode every datagram twice).
fn is_message_datagram(payload: &[u8]) -> bool {
    // Only plaintext datagrams can be read here: a sealed one's byte at
    // this offset is part of the key id (the simulation's traffic figures
    // are for clusters without a key).
    payload.get(3) == Some(&0)
        && matches!(
            payload.get(wire::HEADER_LEN),
            Some(&(PUSH_TAG | REPAIR_TAG))
        )
}

/// Whether an encoded plaintext datagram's body has postcard tag `tag`.
fn is_plain_body(payload: &[u8], tag: u8) -> bool {
    payload.get(3) == Some(&0) && payload.get(wire::HEADER_LEN) == Some(&tag)
}

/// The ids of the messages a push or repair carries (whole or in part),
/// each once.
pub(super) fn message_ids_of(payload: &[u8]) -> Vec<MessageId> {
    let Some(body) = payload.get(wire::HEADER_LEN..) else {
        return Vec::new();
    };
    let items = match postcard::take_from_bytes::<wire::Body>(body).map(|(body, _)| body) {
        Ok(wire::Body::Push(push)) => push.items,
        Ok(wire::Body::Repair(items)) => items,
        _ => return Vec::new(),
    };
    let mut ids: Vec<MessageId> = items.iter().map(wire::Payload::id).collect();
    ids.dedup();
    ids
}

/// Every node's traffic counters at one virtual time ([`Sim::traffic`]).
#[derive(Debug, Clone)]
pub struct TrafficSnapshot {
    /// Virtual time of the snapshot, since the start of the run.
    pub at: Duration,
    /// Counters since the start, by node index.
    pub per_node: Vec<NodeTraffic>,
    /// Counters since the start, all nodes together, by [`packet_kind`].
    pub by_kind: BTreeMap<&'static str, KindTraffic>,
}

impl TrafficSnapshot {
    /// What each node sent between `earlier` and this snapshot (nodes added
    /// in between count from zero).
    pub fn since(&self, earlier: &TrafficSnapshot) -> PhaseTraffic {
        let zero = NodeTraffic::default();
        PhaseTraffic {
            duration: self.at.saturating_sub(earlier.at),
            per_node: self
                .per_node
                .iter()
                .enumerate()
                .map(|(i, now)| now.minus(earlier.per_node.get(i).unwrap_or(&zero)))
                .collect(),
            by_kind: self
                .by_kind
                .iter()
                .map(|(&kind, now)| {
                    let before = earlier.by_kind.get(kind).copied().unwrap_or_default();
                    (kind, now.minus(&before))
                })
                .filter(|(_, traffic)| traffic.datagrams > 0)
                .collect(),
        }
    }
}

/// What each node sent during one phase of a run.
#[derive(Debug, Clone)]
pub struct PhaseTraffic {
    /// Length of the phase in virtual time.
    pub duration: Duration,
    /// Counters of the phase, by node index.
    pub per_node: Vec<NodeTraffic>,
    /// Counters of the phase, all nodes together, by [`packet_kind`].
    pub by_kind: BTreeMap<&'static str, KindTraffic>,
}

/// Datagrams per message of a phase: the mean over nodes and the busiest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatagramsPerMessage {
    /// Mean over the nodes considered of (datagrams sent / messages).
    pub mean: f64,
    /// The largest per-node value.
    pub busiest: f64,
    /// The node that sent the most.
    pub busiest_node: usize,
}

impl PhaseTraffic {
    /// All datagrams the `nodes` sent, per message of the phase (`messages`
    /// published): membership and anti-entropy included.
    pub fn datagrams_per_message(&self, messages: usize, nodes: &[usize]) -> DatagramsPerMessage {
        self.per_message(messages, nodes, |t| t.datagrams)
    }

    /// Pushes and repairs the `nodes` sent, per message of the phase: the
    /// dissemination cost alone.
    pub fn message_datagrams_per_message(
        &self,
        messages: usize,
        nodes: &[usize],
    ) -> DatagramsPerMessage {
        self.per_message(messages, nodes, |t| t.message_datagrams)
    }

    /// Mean bytes sent per node per second of the phase, over `nodes`.
    pub fn bytes_per_node_per_sec(&self, nodes: &[usize]) -> f64 {
        let secs = self.duration.as_secs_f64();
        if nodes.is_empty() || secs == 0.0 {
            return 0.0;
        }
        let total: u64 = nodes.iter().map(|&i| self.node(i).bytes).sum();
        total as f64 / nodes.len() as f64 / secs
    }

    /// Datagrams of one kind (`counter`) the `nodes` sent in the phase, in
    /// all.
    pub fn total(&self, nodes: &[usize], counter: impl Fn(&NodeTraffic) -> u64) -> u64 {
        nodes.iter().map(|&i| counter(&self.node(i))).sum()
    }

    /// Mean datagrams sent per node per second of the phase, over `nodes`.
    pub fn datagrams_per_node_per_sec(&self, nodes: &[usize]) -> f64 {
        let secs = self.duration.as_secs_f64();
        if nodes.is_empty() || secs == 0.0 {
            return 0.0;
        }
        let total: u64 = nodes.iter().map(|&i| self.node(i).datagrams).sum();
        total as f64 / nodes.len() as f64 / secs
    }

    fn node(&self, index: usize) -> NodeTraffic {
        self.per_node.get(index).copied().unwrap_or_default()
    }

    fn per_message(
        &self,
        messages: usize,
        nodes: &[usize],
        counter: impl Fn(&NodeTraffic) -> u64,
    ) -> DatagramsPerMessage {
        let messages = messages.max(1) as f64;
        let mut total = 0;
        let mut busiest = (0, 0);
        for &i in nodes {
            let sent = counter(&self.node(i));
            total += sent;
            if sent > busiest.0 {
                busiest = (sent, i);
            }
        }
        DatagramsPerMessage {
            mean: total as f64 / nodes.len().max(1) as f64 / messages,
            busiest: busiest.0 as f64 / messages,
            busiest_node: busiest.1,
        }
    }
}

/// Which published messages reached which live nodes, and how fast.
#[derive(Debug, Clone, Default)]
pub struct DeliveryReport {
    /// Messages considered.
    pub messages: usize,
    /// Nodes live at the time of the report.
    pub live_nodes: usize,
    /// (message, live node other than its origin) pairs.
    pub expected: usize,
    /// Pairs where the node delivered the message.
    pub delivered: usize,
    /// Pairs where it did not: (message, node index).
    pub missing: Vec<(MessageId, usize)>,
    /// Publish-to-delivery delay of every delivered pair, sorted.
    pub times: Vec<Duration>,
}

impl DeliveryReport {
    /// Delivered / expected (1 when nothing was expected).
    pub fn ratio(&self) -> f64 {
        if self.expected == 0 {
            1.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }

    /// Whether every live node delivered every message.
    pub fn is_complete(&self) -> bool {
        self.delivered == self.expected
    }

    /// The delay below which a fraction `p` (0..=1) of deliveries arrived
    /// (nearest rank); `None` without deliveries.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.times, p)
    }

    /// Median delay.
    pub fn p50(&self) -> Option<Duration> {
        self.percentile(0.50)
    }

    /// 99th-percentile delay.
    pub fn p99(&self) -> Option<Duration> {
        self.percentile(0.99)
    }

    /// Longest delay.
    pub fn max(&self) -> Option<Duration> {
        self.times.last().copied()
    }
}

impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{d:.0?}"));
        write!(
            f,
            "{} messages to {} live nodes: {}/{} delivered ({:.4}%), delay p50 {} p99 {} max {}",
            self.messages,
            self.live_nodes,
            self.delivered,
            self.expected,
            self.ratio() * 100.0,
            ms(self.p50()),
            ms(self.p99()),
            ms(self.max()),
        )?;
        if !self.missing.is_empty() {
            let shown: Vec<String> = self
                .missing
                .iter()
                .take(5)
                .map(|(id, node)| format!("{id} at n{node}"))
                .collect();
            write!(f, "; missing e.g. {}", shown.join(", "))?;
        }
        Ok(())
    }
}

/// The measurements [`Sim`] records.
impl Sim {
    /// Every successful publish so far (through [`Sim::publish`] or
    /// [`Sim::publish_in`]), in order, with its origin and virtual time.
    pub fn published(&self) -> &[Published] {
        &self.published
    }

    /// What every node sent so far: difference two snapshots with
    /// [`TrafficSnapshot::since`] to measure a phase.
    pub fn traffic(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            at: self.elapsed(),
            per_node: self.traffic.clone(),
            by_kind: self.traffic_by_kind.clone(),
        }
    }

    /// How many pushes and repairs of `messages` each node sent: the
    /// dissemination cost per message (mean per node over all nodes, and the
    /// busiest node of any one message).
    pub fn dissemination_report(&self, messages: &[Published]) -> DisseminationReport {
        dissemination_report(&self.message_sends, messages, self.nodes.len())
    }

    /// Nodes running now: neither crashed nor left (isolated nodes count).
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].crashed && !self.nodes[i].node.has_left())
            .collect()
    }

    /// Delivery of `messages` (e.g. a slice of [`Sim::published`]) to the
    /// nodes live now, other than each message's origin: which arrived, and
    /// how long after the publish (from the nodes' delivery events).
    pub fn delivery_report(&self, messages: &[Published]) -> DeliveryReport {
        delivery_report(self, messages)
    }
}

/// Pushes and repairs sent per message ([`Sim::dissemination_report`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DisseminationReport {
    /// Messages considered.
    pub messages: usize,
    /// Pushes and repairs of those messages, in all.
    pub datagrams: u64,
    /// `datagrams / messages / nodes`: what one message costs one node on
    /// average.
    pub mean_per_node: f64,
    /// The most datagrams one node sent for one message.
    pub busiest: u32,
    /// That node.
    pub busiest_node: usize,
    /// That message's index in the slice given.
    pub busiest_message: usize,
}

/// See [`Sim::dissemination_report`].
pub(super) fn dissemination_report(
    sends: &BTreeMap<MessageId, BTreeMap<usize, u32>>,
    messages: &[Published],
    nodes: usize,
) -> DisseminationReport {
    let mut report = DisseminationReport {
        messages: messages.len(),
        ..DisseminationReport::default()
    };
    for (k, published) in messages.iter().enumerate() {
        for (&node, &count) in sends.get(&published.id).into_iter().flatten() {
            report.datagrams += u64::from(count);
            if count > report.busiest {
                report.busiest = count;
                report.busiest_node = node;
                report.busiest_message = k;
            }
        }
    }
    report.mean_per_node =
        report.datagrams as f64 / messages.len().max(1) as f64 / nodes.max(1) as f64;
    report
}

/// See [`Sim::delivery_report`].
pub(super) fn delivery_report(sim: &Sim, messages: &[Published]) -> DeliveryReport {
    let wanted: BTreeMap<MessageId, &Published> = messages.iter().map(|p| (p.id, p)).collect();
    let live = sim.live_nodes();
    let mut report = DeliveryReport {
        messages: wanted.len(),
        live_nodes: live.len(),
        ..DeliveryReport::default()
    };
    for &node in &live {
        let mut arrived: BTreeMap<MessageId, Duration> = BTreeMap::new();
        for (at, event) in &sim.host(node).events {
            if let Event::Message(m) = event
                && wanted.contains_key(&m.id)
            {
                arrived.entry(m.id).or_insert(*at);
            }
        }
        for (id, published) in &wanted {
            if published.origin == node {
                continue;
            }
            report.expected += 1;
            match arrived.get(id) {
                Some(at) => {
                    report.delivered += 1;
                    report.times.push(at.saturating_sub(published.at));
                }
                None => report.missing.push((*id, node)),
            }
        }
    }
    report.times.sort_unstable();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::NodeId;
    use crate::message::{Hlc, Message};
    use crate::wire::{Body, ClusterId, Header};

    fn encoded(body: &Body) -> Vec<u8> {
        let header = Header {
            flags: 0,
            cluster: ClusterId::from_label("t"),
            sender: NodeId([1; 16]),
        };
        wire::encode(&header, body).expect("encodes")
    }

    #[test]
    fn pushes_and_repairs_count_as_message_datagrams() {
        let message = Message::signed(
            &crate::sign::NodeKey::for_testing(1),
            1,
            "a".into(),
            Hlc::default(),
            crate::message::Draft::channel("general", "hi"),
        );
        let push = encoded(&Body::Push(wire::Push {
            relay: true,
            items: vec![wire::Payload::Whole(message.clone())],
        }));
        assert!(is_message_datagram(&push));
        assert_eq!(message_ids_of(&push), vec![message.id]);
        assert!(is_message_datagram(&encoded(&Body::Repair(vec![
            wire::Payload::Whole(message)
        ]))));
        assert!(!is_message_datagram(&encoded(&Body::Swim(vec![2, 5]))));
        let ack = encoded(&Body::Ack(wire::Ack {
            seen: vec![wire::SeqRange { first: 1, last: 2 }],
            pieces: Vec::new(),
        }));
        assert!(is_plain_body(&ack, ACK_TAG));
        assert!(!is_message_datagram(&ack));
        assert!(!is_message_datagram(&encoded(&Body::Leave {
            sig: crate::sign::Signature::from_bytes(&[0; 64]),
            generation: 2
        })));
    }

    #[test]
    fn packet_kinds_name_the_body_and_foca_message() {
        let identity = wire::Identity::for_tests(1);
        assert_eq!(BODY_KINDS[usize::from(SWIM_TAG)], "swim");
        assert_eq!(
            packet_kind(&encoded(&Body::IdentityRequest(vec![identity.run()]))).0,
            "identity-request"
        );
        assert_eq!(
            packet_kind(&encoded(&Body::Identities(vec![identity.clone()]))).0,
            "identities"
        );
        assert_eq!(
            packet_kind(&encoded(&Body::Leave {
                sig: crate::sign::Signature::from_bytes(&[0; 64]),
                generation: 2
            }))
            .0,
            "leave"
        );
        let header = foca::Header {
            src: wire::SwimIdentity::Full(identity.clone()),
            src_incarnation: 0,
            dst: wire::SwimIdentity::Known(identity.run()),
            message: foca::Message::Ping(3),
        };
        let mut swim = postcard::to_allocvec(&header).expect("encodes");
        swim.extend_from_slice(&[0, 0]);
        assert_eq!(
            packet_kind(&encoded(&Body::Swim(swim))),
            ("swim ping", Some((0, 0)))
        );
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let report = DeliveryReport {
            times: (1..=100).map(Duration::from_millis).collect(),
            expected: 100,
            delivered: 100,
            ..DeliveryReport::default()
        };
        assert_eq!(report.p50(), Some(Duration::from_millis(50)));
        assert_eq!(report.p99(), Some(Duration::from_millis(99)));
        assert_eq!(report.max(), Some(Duration::from_millis(100)));
        assert!(report.is_complete());
        assert_eq!(DeliveryReport::default().p50(), None);
    }
}

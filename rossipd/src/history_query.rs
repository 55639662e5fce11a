//! Selecting messages from history for `history` and `subscribe`: filters by
//! channel and start point, then keeps the newest `n`.

use rossip_proto::message::OrderKey;
use rossip_proto::rpc::{self, ErrorObject, Since};
use rossip_proto::{Message, MessageId};

/// A parsed history request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    /// Keep the newest `n` after filtering.
    pub n: Option<usize>,
    /// Start point.
    pub since: Option<SincePoint>,
    /// Only this channel.
    pub channel: Option<String>,
}

/// Where to start, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum SincePoint {
    /// After this message.
    After(MessageId),
    /// At or after this time (ms since the Unix epoch).
    From(u64),
}

impl HistoryQuery {
    /// Validates RPC params into a query (errors are INVALID_PARAMS/INVALID_CHANNEL).
    pub fn parse(
        n: Option<usize>,
        since: Option<Since>,
        channel: Option<String>,
    ) -> Result<Self, ErrorObject> {
        let since = match since {
            None => None,
            Some(Since::Time(ms)) => Some(SincePoint::From(ms)),
            Some(Since::Id(s)) => Some(SincePoint::After(s.parse().map_err(|e| {
                ErrorObject::new(rpc::code::INVALID_PARAMS, format!("since: {e}"))
            })?)),
        };
        if let Some(ch) = &channel {
            rossip_proto::message::validate_channel(ch)
                .map_err(|e| ErrorObject::new(rpc::code::INVALID_CHANNEL, e.to_string()))?;
        }
        Ok(HistoryQuery { n, since, channel })
    }

    /// Whether a live message passes the channel filter.
    pub fn wants_channel(&self, channel: &str) -> bool {
        self.channel.as_deref().is_none_or(|c| c == channel)
    }
}

/// Applies `query` to `history` (oldest first). `lookup` finds a message by
/// id, for `since` by id; an id this node does not hold is an error, because
/// silently starting elsewhere would make a gap or duplicates.
pub fn select<'a>(
    history: impl Iterator<Item = &'a Message>,
    lookup: impl Fn(&MessageId) -> Option<OrderKey>,
    query: &HistoryQuery,
) -> Result<Vec<&'a Message>, ErrorObject> {
    let after: Option<OrderKey> = match &query.since {
        Some(SincePoint::After(id)) => Some(lookup(id).ok_or_else(|| {
            ErrorObject::new(
                rpc::code::UNKNOWN_MESSAGE_ID,
                format!("message {id} is not in this node's history (too old, or never seen here)"),
            )
        })?),
        _ => None,
    };
    let from_ms = match query.since {
        Some(SincePoint::From(ms)) => Some(ms),
        _ => None,
    };
    let mut picked: Vec<&Message> = history
        .filter(|m| query.wants_channel(&m.channel))
        .filter(|m| after.is_none_or(|k| m.order_key() > k))
        .filter(|m| from_ms.is_none_or(|ms| m.ts.ms >= ms))
        .collect();
    if let Some(n) = query.n
        && picked.len() > n
    {
        picked.drain(..picked.len() - n);
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::{Hlc, NodeId};

    fn msg(seq: u64, ms: u64, channel: &str) -> Message {
        Message {
            id: MessageId {
                origin: NodeId([1; 16]),
                seq,
            },
            origin_name: "a".into(),
            ts: Hlc { ms, logical: 0 },
            channel: channel.into(),
            text: format!("m{seq}"),
            // Never decoded here, so never verified.
            auth: rossip_proto::message::Auth {
                key: rossip_proto::sign::PublicKey([0; 32]),
                sig: rossip_proto::sign::Signature::from_bytes(&[0; 64]),
            },
        }
    }

    fn texts(v: &[&Message]) -> Vec<String> {
        v.iter().map(|m| m.text.clone()).collect()
    }

    #[test]
    fn filters_compose() {
        let h = [
            msg(1, 10, "general"),
            msg(2, 20, "ops"),
            msg(3, 30, "general"),
            msg(4, 40, "general"),
        ];
        let lookup = |id: &MessageId| h.iter().find(|m| &m.id == id).map(|m| m.order_key());
        let all = select(h.iter(), lookup, &HistoryQuery::default()).expect("all");
        assert_eq!(texts(&all), ["m1", "m2", "m3", "m4"]);
        let q = HistoryQuery {
            n: Some(2),
            ..Default::default()
        };
        assert_eq!(
            texts(&select(h.iter(), lookup, &q).expect("n")),
            ["m3", "m4"]
        );
        let q = HistoryQuery {
            channel: Some("general".into()),
            n: Some(2),
            ..Default::default()
        };
        assert_eq!(
            texts(&select(h.iter(), lookup, &q).expect("ch")),
            ["m3", "m4"]
        );
        let q = HistoryQuery {
            since: Some(SincePoint::After(h[1].id)),
            ..Default::default()
        };
        assert_eq!(
            texts(&select(h.iter(), lookup, &q).expect("after")),
            ["m3", "m4"]
        );
        let q = HistoryQuery {
            since: Some(SincePoint::From(20)),
            ..Default::default()
        };
        assert_eq!(
            texts(&select(h.iter(), lookup, &q).expect("from")),
            ["m2", "m3", "m4"]
        );
        let q = HistoryQuery {
            n: Some(0),
            ..Default::default()
        };
        assert!(select(h.iter(), lookup, &q).expect("zero").is_empty());
    }

    #[test]
    fn unknown_since_id_is_an_error() {
        let h = [msg(1, 10, "general")];
        let q = HistoryQuery {
            since: Some(SincePoint::After(MessageId {
                origin: NodeId([9; 16]),
                seq: 1,
            })),
            ..Default::default()
        };
        let err = select(h.iter(), |_| None, &q).expect_err("unknown");
        assert_eq!(err.code, rpc::code::UNKNOWN_MESSAGE_ID);
    }

    #[test]
    fn parse_checks_ids_and_channels() {
        assert!(HistoryQuery::parse(None, Some(Since::Id("nope".into())), None).is_err());
        let err = HistoryQuery::parse(None, None, Some("bad channel".into())).expect_err("channel");
        assert_eq!(err.code, rpc::code::INVALID_CHANNEL);
    }
}

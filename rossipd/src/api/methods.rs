//! One handler per JSON-RPC method: each parses its params into domain
//! types, asks the driver through its [`Handle`] and shapes the result.
//! Errors carry the codes documented in README.md (see `errors`).

use std::time::Duration;

use rossip_proto::message::{Author, DEFAULT_CHANNEL, Draft};
use rossip_proto::rpc::{
    self, ErrorObject, EventKind, HistoryParams, JoinParams, JoinResult, LeaveResult, PeersParams,
    PeersResult, SendParams, SendResult, Since, SubscribeParams, UnsubscribeParams,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::history::HistoryStream;
use super::speaker::Speaker;
use super::subscription::{Filter, SubscriptionStart};
use crate::delivery::{Cursor, Delivered};
use crate::driver::journal::{ReadFilter, ReadFrom, Viewer};
use crate::driver::{CoreError, Handle, SendTicket, SincePoint, StartQuery};
use crate::views;

/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 64;

/// How long `join` waits for the address to resolve and a node to answer.
pub const JOIN_TIMEOUT: Duration = crate::seeds::RESOLVE_TIMEOUT;

/// Params of methods that take none: an empty object (unknown fields refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

/// What a method produced: a result, or something the connection carries
/// out when the answer's turn comes (so that it happens in request order).
#[derive(Debug)]
pub enum Output {
    /// The result.
    Value(Value),
    /// A subscription to start: its response, then its events (boxed:
    /// its filters make it the largest by far).
    Subscribe(Box<SubscriptionStart>),
    /// A subscription of this connection to end.
    Unsubscribe(u64),
    /// A `history` result, written a page at a time (boxed, as
    /// `Subscribe`).
    History(Box<HistoryStream>),
}

/// Whether a result may be written in pieces (not inside a batch, whose
/// array is written whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A single request: `history` streams.
    Single,
    /// A batch element.
    InBatch,
}

/// Runs `method`.
pub async fn call(
    method: &str,
    params: Value,
    driver: &Handle,
    speaker: &Speaker,
    framing: Framing,
) -> Result<Output, ErrorObject> {
    let value = match method {
        rpc::method::SEND => {
            submit_send(parse(params)?, driver, speaker)
                .await?
                .result()
                .await?
        }
        rpc::method::HISTORY => {
            if framing == Framing::InBatch {
                // A batch's answer is one array, written whole: a history
                // window in it would sit in memory whole.
                return Err(ErrorObject::new(
                    rpc::code::INVALID_REQUEST,
                    "`history` cannot be part of a batch (its answer is written a page at a \
                     time); send it as a request of its own",
                ));
            }
            return Ok(Output::History(Box::new(
                history(parse(params)?, driver, speaker).await?,
            )));
        }
        rpc::method::SUBSCRIBE => {
            let start = subscribe(parse(params)?, driver, speaker).await?;
            return Ok(Output::Subscribe(Box::new(start)));
        }
        rpc::method::UNSUBSCRIBE => {
            let p: UnsubscribeParams = parse(params)?;
            return Ok(Output::Unsubscribe(p.subscription));
        }
        rpc::method::PEERS => to_value(peers(parse(params)?, driver).await?)?,
        rpc::method::STATUS => {
            let NoParams {} = parse(params)?;
            to_value(driver.status().await?)?
        }
        rpc::method::JOIN => join(parse(params)?, driver).await?,
        rpc::method::LEAVE => {
            let NoParams {} = parse(params)?;
            tracing::info!("leave requested over RPC");
            let notified = driver.leave().await?;
            to_value(LeaveResult { notified })?
        }
        keys if keys.starts_with("keys.") => super::keys::call(keys, params, driver).await?,
        rpc::method::CHANNELS => {
            let NoParams {} = parse(params)?;
            to_value(super::chat::channels(driver).await?)?
        }
        rpc::method::NICK => to_value(super::chat::nick(parse(params)?, driver, speaker).await?)?,
        rpc::method::WHO => {
            let NoParams {} = parse(params)?;
            to_value(super::presence::who(driver).await?)?
        }
        other => {
            return Err(ErrorObject::new(
                rpc::code::METHOD_NOT_FOUND,
                format!("method not found: {other:?}"),
            ));
        }
    };
    Ok(Output::Value(value))
}

/// A `send` handed to the driver, whose answer comes later.
#[derive(Debug)]
pub enum PendingSend {
    /// A channel message.
    Channel(SendTicket),
    /// A direct message.
    Direct(super::direct::DirectTicket),
}

impl PendingSend {
    /// The `send` result, once the driver answered.
    pub async fn result(self) -> Result<Value, ErrorObject> {
        match self {
            PendingSend::Channel(ticket) => send_result(ticket.outcome().await),
            PendingSend::Direct(ticket) => ticket.result().await,
        }
    }
}

/// Hands a `send` to the driver (waiting for room in its queue: the
/// back-pressure of a busy daemon) and returns the pending answer, so that
/// a connection can read its next request meanwhile.
pub async fn submit_send(
    p: SendParams,
    driver: &Handle,
    speaker: &Speaker,
) -> Result<PendingSend, ErrorObject> {
    let draft = Draft {
        channel: p.channel.unwrap_or_else(|| DEFAULT_CHANNEL.to_owned()),
        text: p.text,
        // The author is whoever the kernel says is on the other end; the
        // driver adds the display name that user chose.
        author: Author {
            user: speaker.user.clone(),
            nick: None,
        },
        to: None,
    };
    if let Some(to) = &p.to {
        return Ok(PendingSend::Direct(
            super::direct::submit(draft, to, driver).await?,
        ));
    }
    Ok(PendingSend::Channel(driver.send(draft).await?))
}

/// The `send` result for the driver's answer.
pub fn send_result(
    outcome: Result<std::sync::Arc<Delivered>, CoreError>,
) -> Result<Value, ErrorObject> {
    let delivered = outcome?;
    to_value(SendResult {
        id: delivered.message.id.to_string(),
        ts: delivered.message.ts.ms,
        direct: None,
    })
}

/// Parses `after`; a text that is not a cursor is -32602.
fn parse_cursor(text: &str) -> Result<Cursor, ErrorObject> {
    text.parse()
        .map_err(|e| ErrorObject::new(rpc::code::INVALID_PARAMS, format!("after: {e}")))
}

/// `since` as a start point.
fn since_point(since: Since) -> Result<SincePoint, ErrorObject> {
    match since {
        Since::Time(ms) => Ok(SincePoint::From(ms)),
        Since::Id(text) => text
            .parse()
            .map(SincePoint::After)
            .map_err(|e| ErrorObject::new(rpc::code::INVALID_PARAMS, format!("since: {e}"))),
    }
}

/// A channel filter, checked, for `speaker`: direct messages are shown
/// only to the users they concern (root sees all).
fn read_filter(channel: Option<String>, speaker: &Speaker) -> Result<ReadFilter, ErrorObject> {
    if let Some(channel) = &channel {
        rossip_proto::message::validate_channel(channel).map_err(CoreError::from)?;
    }
    let viewer = match speaker.uid {
        Some(0) => Viewer::Everyone,
        _ => Viewer::User(speaker.user.clone()),
    };
    Ok(ReadFilter {
        channel,
        viewer,
        here: None,
    })
}

/// Where a read starts, from `n`, `since` and `after`.
fn start_query(
    n: Option<usize>,
    since: Option<Since>,
    after: Option<String>,
) -> Result<StartQuery, ErrorObject> {
    match (after, since) {
        (Some(_), Some(_)) => Err(ErrorObject::new(
            rpc::code::INVALID_PARAMS,
            "`after` (a cursor, delivery order) and `since` (history order) cannot be combined",
        )),
        (Some(after), None) => Ok(StartQuery::After(parse_cursor(&after)?)),
        (None, since) => Ok(StartQuery::Ordered {
            n,
            since: since.map(since_point).transpose()?,
        }),
    }
}

/// `peers {all?}`.
pub async fn peers(p: PeersParams, driver: &Handle) -> Result<PeersResult, ErrorObject> {
    let peers = driver.peers(p.all).await?;
    Ok(PeersResult {
        peers: peers
            .iter()
            .map(|peer| views::peer_snapshot_view(peer, driver.clock()))
            .collect(),
    })
}

/// `history`: a read that the front end writes a page at a time.
pub async fn history(
    p: HistoryParams,
    driver: &Handle,
    speaker: &Speaker,
) -> Result<HistoryStream, ErrorObject> {
    let filter = read_filter(p.channel, speaker)?;
    let query = start_query(p.n, p.since, p.after)?;
    // With `after`, `n` is a page size: the first `n` after the cursor.
    let first_n = matches!(query, StartQuery::After(_))
        .then_some(p.n)
        .flatten();
    let start = driver.start(query, filter.clone()).await?;
    Ok(HistoryStream::new(start, filter, first_n))
}

/// `subscribe`: where the subscription starts, for the front end's
/// [`super::follow::Follower`].
pub async fn subscribe(
    p: SubscribeParams,
    driver: &Handle,
    speaker: &Speaker,
) -> Result<SubscriptionStart, ErrorObject> {
    let kinds = p.events.unwrap_or_else(|| vec![EventKind::Message]);
    if kinds.is_empty() {
        return Err(ErrorObject::new(
            rpc::code::INVALID_PARAMS,
            "events must name at least one kind",
        ));
    }
    let read = read_filter(p.channel.clone(), speaker)?;
    if p.after.is_some() && p.n.is_some() {
        return Err(ErrorObject::new(
            rpc::code::INVALID_PARAMS,
            "`after` replays everything delivered after the cursor; `n` cannot be combined \
             with it in `subscribe` (page with `history {after, n}`)",
        ));
    }
    let wants_replay = p.n.is_some() || p.since.is_some() || p.after.is_some();
    let query = if wants_replay {
        start_query(p.n, p.since, p.after)?
    } else {
        // Live only: where live begins.
        StartQuery::Ordered {
            n: Some(0),
            since: None,
        }
    };
    let start = driver.start(query, read.clone()).await?;
    let messages = kinds.contains(&EventKind::Message);
    // After a cursor, the subscription simply reads on from it; a replay in
    // history order comes first and covers up to the start's snapshot, after
    // which it reads on by number.
    let (replay, position) = match start.from {
        Some(ReadFrom::After(after)) => (None, after),
        from => (from.filter(|_| messages), start.snapshot),
    };
    Ok(SubscriptionStart {
        filter: Filter { kinds, read },
        replay,
        position,
        // Where the replay ends and live events begin (the snapshot), also
        // for `after`: a follower resumes after its last message, not here.
        cursor: start.cursor,
    })
}

async fn join(p: JoinParams, driver: &Handle) -> Result<Value, ErrorObject> {
    let fail = |why: String| ErrorObject::new(rpc::code::JOIN_FAILED, why);
    let addrs = crate::seeds::resolve(&p.addr)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let answer = driver.join(p.addr.clone(), addrs).await?;
    match tokio::time::timeout(JOIN_TIMEOUT, answer).await {
        Ok(Ok(joined)) => to_value(JoinResult {
            id: joined.id.to_string(),
            name: joined.name,
            addr: joined.addr.to_string(),
        }),
        Ok(Err(_)) => Err(CoreError::ShuttingDown.into()),
        Err(_) => Err(fail(format!(
            "no rossip node of this cluster answered at {} within {} s (is rossipd running there, on that port, \
             with the same --cluster?)",
            p.addr,
            JOIN_TIMEOUT.as_secs()
        ))),
    }
}

/// Params of type `T`, or -32602 naming what is wrong.
pub(crate) fn parse<T: DeserializeOwned>(params: Value) -> Result<T, ErrorObject> {
    serde_json::from_value(params)
        .map_err(|e| ErrorObject::new(rpc::code::INVALID_PARAMS, format!("invalid params: {e}")))
}

/// A result as JSON.
pub(crate) fn to_value(v: impl serde::Serialize) -> Result<Value, ErrorObject> {
    serde_json::to_value(v)
        .map_err(|e| ErrorObject::new(rpc::code::INTERNAL_ERROR, format!("cannot encode: {e}")))
}

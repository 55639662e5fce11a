//! One handler per JSON-RPC method. Each parses its params, asks the driver
//! and shapes the result; errors carry the codes documented in README.md.

use std::net::SocketAddr;
use std::time::Duration;

use rossip_proto::message::DEFAULT_CHANNEL;
use rossip_proto::rpc::{
    self, ErrorObject, EventKind, HistoryParams, HistoryResult, JoinParams, PeersParams,
    PeersResult, SendParams, SendResult, SubscribeParams, SubscribeResult, UnsubscribeParams,
    UnsubscribeResult,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::connection::ConnectionState;
use super::subscription::{Filter, Forwarder};
use crate::driver::Command;
use crate::history_query::HistoryQuery;

/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 64;

/// How long `join` waits for the address to resolve and a node to answer.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Params of methods that take none: an empty object (unknown fields refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoParams {}

/// Runs `method`.
pub async fn call(
    method: &str,
    params: Value,
    conn: &mut ConnectionState,
) -> Result<Value, ErrorObject> {
    match method {
        rpc::method::SEND => send(parse(params)?, conn).await,
        rpc::method::HISTORY => history(parse(params)?, conn).await,
        rpc::method::SUBSCRIBE => subscribe(parse(params)?, conn).await,
        rpc::method::UNSUBSCRIBE => unsubscribe(parse(params)?, conn),
        rpc::method::PEERS => peers(parse(params)?, conn).await,
        rpc::method::STATUS => {
            let NoParams {} = parse(params)?;
            let status = ask(conn, |reply| Command::Status { reply }).await?;
            to_value(status)
        }
        rpc::method::JOIN => join(parse(params)?, conn).await,
        rpc::method::LEAVE => {
            let NoParams {} = parse(params)?;
            tracing::info!("leave requested over RPC");
            let result = ask(conn, |reply| Command::Leave { reply }).await?;
            to_value(result)
        }
        keys if keys.starts_with("keys.") => super::keys::call(keys, params, conn).await,
        other => Err(ErrorObject::new(
            rpc::code::METHOD_NOT_FOUND,
            format!("method not found: {other:?}"),
        )),
    }
}

async fn send(p: SendParams, conn: &mut ConnectionState) -> Result<Value, ErrorObject> {
    let answer = submit_send(p, conn).await?;
    send_outcome(answer.await.ok())
}

/// The driver's answer to a submitted `send`.
pub type SendAnswer = oneshot::Receiver<Result<rpc::MessageView, ErrorObject>>;

/// Hands a `send` to the driver (waiting for room in its queue: the
/// back-pressure of a busy daemon) and returns the pending answer, so that
/// a connection can read its next request meanwhile.
pub async fn submit_send(p: SendParams, conn: &ConnectionState) -> Result<SendAnswer, ErrorObject> {
    let channel = p.channel.unwrap_or_else(|| DEFAULT_CHANNEL.to_owned());
    let (reply, answer) = oneshot::channel();
    conn.ctx
        .commands
        .send(Command::Send {
            channel,
            text: p.text,
            reply,
        })
        .await
        .map_err(|_| shutting_down())?;
    Ok(answer)
}

/// The `send` result for the driver's answer (`None`: the driver dropped
/// it, because the daemon is stopping).
pub fn send_outcome(
    answer: Option<Result<rpc::MessageView, ErrorObject>>,
) -> Result<Value, ErrorObject> {
    let message = answer.ok_or_else(shutting_down)??;
    to_value(SendResult {
        id: message.id,
        ts: message.ts,
    })
}

async fn history(p: HistoryParams, conn: &mut ConnectionState) -> Result<Value, ErrorObject> {
    let query = HistoryQuery::parse(p.n, p.since, p.channel)?;
    let messages = ask(conn, |reply| Command::History { query, reply }).await??;
    to_value(HistoryResult { messages })
}

async fn subscribe(p: SubscribeParams, conn: &mut ConnectionState) -> Result<Value, ErrorObject> {
    if conn.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
        return Err(ErrorObject::new(
            rpc::code::TOO_MANY_SUBSCRIPTIONS,
            format!("a connection may hold {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions"),
        ));
    }
    let kinds = p.events.unwrap_or_else(|| vec![EventKind::Message]);
    if kinds.is_empty() {
        return Err(ErrorObject::new(
            rpc::code::INVALID_PARAMS,
            "events must name at least one kind",
        ));
    }
    let wants_replay = p.n.is_some() || p.since.is_some();
    let query = HistoryQuery::parse(p.n, p.since, p.channel.clone())?;
    let replay = (wants_replay && kinds.contains(&EventKind::Message)).then_some(query);
    let (replayed, live) = ask(conn, |reply| Command::Subscribe { replay, reply }).await??;

    let id = conn.next_subscription;
    conn.next_subscription += 1;
    let cancel = conn.cancel.child_token();
    let (gate_tx, gate) = oneshot::channel();
    let forwarder = Forwarder {
        id,
        filter: Filter {
            kinds,
            channel: p.channel,
        },
        replay: replayed,
        live,
        out: conn.out.clone(),
        counters: conn.ctx.counters.clone(),
        gate,
        cancel: cancel.clone(),
        budget: conn.backlog_budget.clone(),
    };
    conn.tasks.spawn(forwarder.run());
    conn.subscriptions.insert(id, cancel);
    conn.gates.push(gate_tx);
    to_value(SubscribeResult { subscription: id })
}

fn unsubscribe(p: UnsubscribeParams, conn: &mut ConnectionState) -> Result<Value, ErrorObject> {
    let token: CancellationToken = conn.subscriptions.remove(&p.subscription).ok_or_else(|| {
        ErrorObject::new(
            rpc::code::UNKNOWN_SUBSCRIPTION,
            format!("no subscription {} on this connection", p.subscription),
        )
    })?;
    token.cancel();
    to_value(UnsubscribeResult { unsubscribed: true })
}

async fn peers(p: PeersParams, conn: &mut ConnectionState) -> Result<Value, ErrorObject> {
    let peers = ask(conn, |reply| Command::Peers { all: p.all, reply }).await?;
    to_value(PeersResult { peers })
}

async fn join(p: JoinParams, conn: &mut ConnectionState) -> Result<Value, ErrorObject> {
    let addrs = resolve(&p.addr).await?;
    let fail = |why: String| ErrorObject::new(rpc::code::JOIN_FAILED, why);
    let (reply, answer) = oneshot::channel();
    conn.ctx
        .commands
        .send(Command::Join {
            seed: p.addr.clone(),
            addrs: addrs.clone(),
            reply,
        })
        .await
        .map_err(|_| shutting_down())?;
    match tokio::time::timeout(JOIN_TIMEOUT, answer).await {
        Ok(Ok(joined)) => to_value(joined),
        Ok(Err(_)) => Err(shutting_down()),
        Err(_) => Err(fail(format!(
            "no rossip node of this cluster answered at {} within {} s (is rossipd running there, on that port, \
             with the same --cluster?)",
            p.addr,
            JOIN_TIMEOUT.as_secs()
        ))),
    }
}

/// Resolves `HOST:PORT`, or `HOST` alone meaning the default port.
pub async fn resolve(spec: &str) -> Result<Vec<SocketAddr>, ErrorObject> {
    let fail = |why: String| ErrorObject::new(rpc::code::JOIN_FAILED, why);
    let with_port = if spec.parse::<SocketAddr>().is_ok() || has_port(spec) {
        spec.to_owned()
    } else {
        format!("{spec}:{}", crate::config::DEFAULT_PORT)
    };
    let lookup = tokio::net::lookup_host(with_port.clone());
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(JOIN_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => return Err(fail(format!("cannot resolve {with_port}: {e}"))),
        Err(_) => return Err(fail(format!("resolving {with_port} timed out"))),
    };
    if addrs.is_empty() {
        return Err(fail(format!("{with_port} resolved to no address")));
    }
    Ok(addrs)
}

/// `host:123` or `[v6]:123` (a bare IPv6 address has colons but no port).
fn has_port(spec: &str) -> bool {
    match spec.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

/// Params of type `T`, or -32602 naming what is wrong.
pub(super) fn parse<T: DeserializeOwned>(params: Value) -> Result<T, ErrorObject> {
    serde_json::from_value(params)
        .map_err(|e| ErrorObject::new(rpc::code::INVALID_PARAMS, format!("invalid params: {e}")))
}

/// A result as JSON.
pub(super) fn to_value(v: impl serde::Serialize) -> Result<Value, ErrorObject> {
    serde_json::to_value(v)
        .map_err(|e| ErrorObject::new(rpc::code::INTERNAL_ERROR, format!("cannot encode: {e}")))
}

/// The error for a request the driver can no longer take.
pub(super) fn shutting_down() -> ErrorObject {
    ErrorObject::new(rpc::code::NOT_IN_CLUSTER, "rossipd is shutting down")
}

/// Sends a command to the driver and waits for its reply.
async fn ask<T>(
    conn: &ConnectionState,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ErrorObject> {
    let (reply, answer) = oneshot::channel();
    conn.ctx
        .commands
        .send(make(reply))
        .await
        .map_err(|_| shutting_down())?;
    answer.await.map_err(|_| shutting_down())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_recognised() {
        assert!(has_port("host:7465"));
        assert!(has_port("[fd00::1]:7465"));
        assert!(!has_port("host"));
        assert!(!has_port("fd00::1"));
    }
}

//! One client connection: read lines, dispatch, write responses and
//! subscription notifications through one bounded outbound queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use interprocess::local_socket::tokio::Stream;
use rossip_proto::rpc::{self, ErrorObject, Response};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::RpcContext;
use super::caller::Caller;
use super::dispatch::{self, PendingSend, Reply};
use super::framing::{Line, LineReader};
use super::subscription::BacklogBudget;

/// Lines queued for one client. Responses wait for room (back-pressure on
/// that client alone); notifications that find it full are dropped and
/// counted, then reported with a `lagged` notice.
pub const OUTBOUND_LINES: usize = 256;

/// `send` requests of one connection handed to the driver and not yet
/// answered. A client that pipelines sends gets them accepted in batches
/// (the driver takes many per turn) instead of one per round trip; past
/// this many, the connection stops reading until the oldest is answered.
pub const MAX_PIPELINED_SENDS: usize = 256;

/// State of one connection that method handlers may use.
#[derive(Debug)]
pub struct ConnectionState {
    /// Shared daemon context.
    pub ctx: Arc<RpcContext>,
    /// The outbound queue.
    pub out: mpsc::Sender<String>,
    /// Live subscriptions by id; cancelling a token stops its forwarder.
    pub subscriptions: BTreeMap<u64, CancellationToken>,
    /// Next subscription id on this connection.
    pub next_subscription: u64,
    /// Cancelled when the connection ends.
    pub cancel: CancellationToken,
    /// Tasks of this connection (subscription forwarders).
    pub tasks: TaskTracker,
    /// Forwarders waiting for their `subscribe` response to be queued first,
    /// so a client always sees the subscription id before its events.
    pub gates: Vec<oneshot::Sender<()>>,
    /// Who connected (uid, pid), for the log of calls that change things.
    pub caller: Caller,
    /// The daemon's budget for events held back for slow subscribers.
    pub backlog_budget: Arc<BacklogBudget>,
}

/// Serves one connection until the client closes it or the daemon stops.
pub async fn serve(
    stream: Stream,
    ctx: Arc<RpcContext>,
    backlog_budget: Arc<BacklogBudget>,
    daemon_cancel: CancellationToken,
) {
    // Before splitting: the credentials are the socket's, read once.
    let caller = Caller::of_stream(&stream);
    // tokio's split rather than interprocess's (deprecated there): one
    // task reads while another writes.
    let (recv, send) = tokio::io::split(stream);
    let (out, out_rx) = mpsc::channel::<String>(OUTBOUND_LINES);
    // `cancel` stops this connection's reading and subscriptions; the writer
    // has its own token, not tied to the daemon's, so that it can drain what
    // is queued after the client half-closes (e.g. `socat` sends a request,
    // shuts down its write side, then reads the answer) and after the daemon
    // began to stop (the answer to `leave` is written as the daemon exits).
    let cancel = daemon_cancel.child_token();
    let writer_cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let writer = tokio::spawn(write_lines(send, out_rx, writer_cancel.clone()));
    let mut conn = ConnectionState {
        ctx,
        out,
        subscriptions: BTreeMap::new(),
        next_subscription: 1,
        cancel: cancel.clone(),
        tasks: tasks.clone(),
        gates: Vec::new(),
        caller,
        backlog_budget,
    };
    let mut reader = LineReader::new(BufReader::new(recv), rpc::MAX_LINE_BYTES);
    // Answers are written in request order: pending sends first, always.
    let mut pending: VecDeque<PendingSend> = VecDeque::new();
    loop {
        let line = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            answer = async { (&mut pending.front_mut()?.answer).await.ok() }, if !pending.is_empty() => {
                // `front_mut` was Some; a dropped answer is "shutting down".
                let Some(done) = pending.pop_front() else { continue };
                let response = PendingSend::response(done.id, answer);
                if !queue(&conn, &cancel, &Reply::Single(response)).await {
                    break;
                }
                continue;
            }
            line = reader.next_line(), if pending.len() < MAX_PIPELINED_SENDS => line,
        };
        let reply = match line {
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("RPC client read error: {e}");
                break;
            }
            Ok(Some(Line::TooLong { len })) => Reply::Single(Response::err(
                Value::Null,
                ErrorObject::new(
                    rpc::code::INVALID_REQUEST,
                    format!(
                        "request line is {len} bytes; the limit is {} bytes",
                        rpc::MAX_LINE_BYTES
                    ),
                ),
            )),
            Ok(Some(Line::Complete(bytes))) if bytes.iter().all(u8::is_ascii_whitespace) => {
                continue;
            }
            Ok(Some(Line::Complete(bytes))) => {
                match dispatch::try_pipeline(&bytes, &mut conn).await {
                    Some(Ok(send)) => {
                        pending.push_back(send);
                        continue;
                    }
                    Some(Err(refused)) if pending.is_empty() => Reply::Single(refused),
                    other => {
                        // Anything else waits for the pending sends' answers.
                        if !drain(&mut pending, &conn, &cancel).await {
                            break;
                        }
                        match other {
                            Some(Err(refused)) => Reply::Single(refused),
                            _ => dispatch::handle_line(&bytes, &mut conn).await,
                        }
                    }
                }
            }
        };
        if !queue(&conn, &cancel, &reply).await {
            break;
        }
        for gate in conn.gates.drain(..) {
            let _ = gate.send(());
        }
    }
    cancel.cancel();
    conn.caller.log_closed();
    drop(conn);
    tasks.close();
    tasks.wait().await;
    // Every sender is gone now, so the writer ends once the queue is written;
    // a client that stopped reading gets a bounded grace period, no more:
    // WRITER_DRAIN, cut to SHUTDOWN_DRAIN once the daemon is stopping.
    let mut writer = writer;
    let shutdown_drain = async {
        daemon_cancel.cancelled().await;
        tokio::time::sleep(SHUTDOWN_DRAIN).await;
    };
    let drained = tokio::select! {
        _ = &mut writer => true,
        () = tokio::time::sleep(WRITER_DRAIN) => false,
        () = shutdown_drain => false,
    };
    if !drained {
        writer_cancel.cancel();
        let _ = writer.await;
    }
}

/// Queues `reply`'s line, if any. The answer is queued if there is room
/// even when the daemon is stopping (it may be the answer to `leave`); it
/// waits for room only while the connection lives. `false`: the connection
/// is over.
async fn queue(conn: &ConnectionState, cancel: &CancellationToken, reply: &Reply) -> bool {
    let Some(line) = reply.to_line() else {
        return true;
    };
    tokio::select! {
        biased;
        sent = conn.out.send(line) => sent.is_ok(),
        () = cancel.cancelled() => false,
    }
}

/// Waits for every pending send's answer and queues them in order.
async fn drain(
    pending: &mut VecDeque<PendingSend>,
    conn: &ConnectionState,
    cancel: &CancellationToken,
) -> bool {
    while let Some(send) = pending.pop_front() {
        let response = PendingSend::response(send.id, send.answer.await.ok());
        if !queue(conn, cancel, &Reply::Single(response)).await {
            return false;
        }
    }
    true
}

/// Lines a writer takes from its queue at once.
const WRITE_BATCH: usize = 256;

/// How long queued responses may take to drain after the client stopped sending.
const WRITER_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How long queued responses may take to drain when the daemon stops (less
/// than the daemon's own shutdown grace for all connections).
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

async fn write_lines(
    send: tokio::io::WriteHalf<Stream>,
    mut lines: mpsc::Receiver<String>,
    cancel: CancellationToken,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, send);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => break,
            n = lines.recv_many(&mut batch, WRITE_BATCH) => n,
        };
        if received == 0 {
            break;
        }
        let written = async {
            for line in batch.drain(..) {
                writer.write_all(line.as_bytes()).await?;
                writer.write_all(b"\n").await?;
            }
            // Flush when nothing else is queued, so bursts share syscalls.
            if lines.is_empty() {
                writer.flush().await?;
            }
            std::io::Result::Ok(())
        };
        let result = tokio::select! {
            () = cancel.cancelled() => break,
            r = written => r,
        };
        if let Err(e) = result {
            tracing::debug!("RPC client write error: {e}");
            break;
        }
    }
}

//! One client connection: one task, one `select!` over what it reads
//! (request lines), what it owes (answers, in request order) and what it
//! follows (its subscriptions, read from the driver a page at a time when
//! there is room to write them), and the writing itself.
//!
//! Everything it holds is bounded: at most [`MAX_PIPELINED`] requests in
//! flight, at most [`OUT_HIGH_WATER`] bytes of output before it stops
//! producing more (plus one page or one answer), one line being read
//! (`rpc::MAX_LINE_BYTES`). A client that stops reading stops its own
//! reads and subscriptions, and nothing else.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use interprocess::local_socket::tokio::Stream;
use rossip_proto::rpc::{self, ErrorObject, EventBody, Notification};
use serde_json::Value;
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;

use super::RpcContext;
use super::caller::Caller;
use super::dispatch::{self, Call, Element, Parsed, RawId};
use super::framing::{Line, LineReader};
use crate::api::follow::{EventSink, Follower};
use crate::api::history::{HistoryStream, PAGE_BYTES};
use crate::api::methods::{self, Framing, Output};
use crate::api::presence::{self, PresenceRegistration};
use crate::api::speaker::Speaker;
use crate::driver::journal::ReadPage;
use crate::driver::{CoreError, PresenceSession};

/// Requests of one connection in flight (handed to the driver and not yet
/// answered). A client that pipelines sends gets them accepted in batches
/// (the driver takes many per turn) instead of one per round trip; past
/// this many, the connection stops reading until the oldest is answered.
pub const MAX_PIPELINED: usize = 256;

/// Bytes of output held for a client before the connection stops reading
/// its requests and its subscriptions (the kernel's socket buffer holds
/// more). Past it only what is being written is held: one answer, or one
/// page of events.
pub const OUT_HIGH_WATER: usize = 64 * 1024;

/// How long a client that stopped sending (it half-closed) may go without
/// reading anything of what it is owed before the connection is closed.
/// Answers still to come are waited for (a held `send` is answered within
/// the driver's own bound).
const WRITER_DRAIN: Duration = Duration::from_secs(10);

/// How long it may take when the daemon stops (less than the daemon's own
/// shutdown grace for all connections).
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// An answer, in its request's turn.
enum Answer {
    /// A line ready to write.
    Line(String),
    /// A single request's outcome, carried out in its turn (`None` id: a
    /// notification, carried out and not answered).
    Single(Option<RawId>, Result<Output, ErrorObject>),
    /// A batch's outcomes (`None` id: a notification, left out).
    Batch(Vec<(Option<RawId>, Result<Output, ErrorObject>)>),
}

type Pending = FuturesOrdered<BoxFuture<'static, Answer>>;

/// Serves one connection until the client closes it or the daemon stops.
pub async fn serve(stream: Stream, ctx: Arc<RpcContext>, daemon_cancel: CancellationToken) {
    let caller = Caller::of_stream(&stream);
    let speaker = Speaker::of_uid(caller.uid).await;
    let (recv, send) = tokio::io::split(stream);
    let ctx_driver = ctx.driver.clone();
    let follower = Follower::new(ctx.driver.clone(), ctx.counters.clone());
    let mut connection = Connection {
        ctx,
        caller,
        speaker,
        out: String::new(),
        written: 0,
        pending: FuturesOrdered::new(),
        in_flight_other: false,
        held: None,
        history: None,
        follower,
        presence: PresenceRegistration::new(ctx_driver),
        eof: false,
    };
    connection
        .run(
            LineReader::new(BufReader::new(recv), rpc::MAX_LINE_BYTES),
            send,
            daemon_cancel,
        )
        .await;
    // The user this connection registered leaves the chat with it (unless
    // another connection of theirs is registered): `connection.presence`
    // tells the driver when it is dropped, here or by a panic's unwinding.
}

struct Connection {
    ctx: Arc<RpcContext>,
    caller: Caller,
    speaker: Speaker,
    /// Output not written yet, from `written` on.
    out: String,
    written: usize,
    /// Answers owed, in request order.
    pending: Pending,
    /// A request other than `send` is in flight: nothing more is read
    /// until it is answered (it may change what later requests see).
    in_flight_other: bool,
    /// A request (or batch) read while sends were in flight, waiting for
    /// their answers (only sends are pipelined).
    held: Option<Parsed>,
    /// A `history` answer being written.
    history: Option<(RawId, HistoryStream)>,
    /// Its subscriptions.
    follower: Follower,
    /// This connection's presence registration (see `presence`); its
    /// drop ends it.
    presence: PresenceRegistration,
    /// The client closed its side: answer what was read, then close.
    eof: bool,
}

/// Subscription events as JSON-RPC `event` notification lines.
struct NotificationLines<'a>(&'a mut String);

impl EventSink for NotificationLines<'_> {
    fn event(&mut self, subscription: u64, event: EventBody) {
        self.0
            .push_str(&dispatch::encode(&Notification::event(subscription, event)));
        self.0.push('\n');
    }
}

/// Runs one call of a connection: `web.link` here (it needs the web
/// gateway, which the rest of the API knows nothing of), anything else in
/// the API.
async fn run_call(
    ctx: &RpcContext,
    method: &str,
    params: Value,
    speaker: &Speaker,
    framing: Framing,
    session: PresenceSession,
) -> Result<Output, ErrorObject> {
    if method == rpc::method::WEB_LINK {
        let methods::NoParams {} = methods::parse(params)?;
        let link = crate::http::web_link(ctx.web.as_deref(), speaker)?;
        return methods::to_value(link).map(Output::Value);
    }
    presence::call(method, params, &ctx.driver, speaker, framing, session).await
}

impl Connection {
    async fn run(
        &mut self,
        mut reader: LineReader<BufReader<tokio::io::ReadHalf<Stream>>>,
        mut writer: tokio::io::WriteHalf<Stream>,
        daemon_cancel: CancellationToken,
    ) {
        let driver = self.ctx.driver.clone();
        // The `history` page being read, if any.
        let mut fetch: Option<BoxFuture<'static, Result<ReadPage, CoreError>>> = None;
        // When the daemon stops: what is owed is written until then.
        let mut stop_at: Option<tokio::time::Instant> = None;
        // When the client last read something of what it is owed.
        let mut progress_at = tokio::time::Instant::now();
        loop {
            if self.pending.is_empty()
                && let Some(parsed) = self.held.take()
            {
                self.start(parsed, &driver).await;
            }
            let owed = !self.pending.is_empty()
                || self.held.is_some()
                || self.history.is_some()
                || self.written < self.out.len()
                || fetch.is_some();
            if (self.eof || stop_at.is_some()) && !owed {
                break;
            }
            if fetch.is_none() && self.has_room() {
                fetch = self.next_fetch(&driver);
            }
            // A client that closed its side and stopped reading is given
            // up on after WRITER_DRAIN without progress.
            let stalled_at =
                (self.eof && self.written < self.out.len()).then(|| progress_at + WRITER_DRAIN);
            let deadline = match (stop_at, stalled_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let room = self.has_room();
            let can_read = !self.eof
                && stop_at.is_none()
                && room
                && self.held.is_none()
                && !self.in_flight_other
                && self.history.is_none()
                && self.pending.len() < MAX_PIPELINED;
            // Subscription events wait while a `history` answer is written
            // (it is one JSON text) and while the output is full.
            let follows = room && self.history.is_none() && self.follower.len() > 0;
            let until_deadline = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                written = writer.write(&self.out.as_bytes()[self.written..]), if self.written < self.out.len() => {
                    match written {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            self.wrote(n);
                            progress_at = tokio::time::Instant::now();
                        }
                    }
                }
                Some(answer) = self.pending.next(), if !self.pending.is_empty() && room && self.history.is_none() => {
                    self.take_answer(answer);
                }
                Some(done) = async {
                    match fetch.as_mut() {
                        Some(page) => Some(page.await),
                        None => None,
                    }
                }, if fetch.is_some() => {
                    fetch = None;
                    if !self.take_fetch(done) {
                        break;
                    }
                }
                line = reader.next_line(), if can_read => match line {
                    Ok(None) => self.closed_by_client(),
                    Err(e) => {
                        tracing::debug!("RPC client read error: {e}");
                        break;
                    }
                    Ok(Some(Line::TooLong { len })) => {
                        let error = ErrorObject::new(
                            rpc::code::INVALID_REQUEST,
                            format!(
                                "request line is {len} bytes; the limit is {} bytes",
                                rpc::MAX_LINE_BYTES
                            ),
                        );
                        self.owe_line(dispatch::response(&RawId::null(), &Err(error)));
                    }
                    Ok(Some(Line::Complete(bytes))) => self.start(dispatch::parse(&bytes), &driver).await,
                },
                ready = self.follower.wait(), if follows => {
                    if !self.follower.take(ready, &mut NotificationLines(&mut self.out)) {
                        break;
                    }
                }
                () = daemon_cancel.cancelled(), if stop_at.is_none() => {
                    // Answers already owed (the answer to `leave` among
                    // them) still go out, briefly.
                    self.follower.clear();
                    stop_at = Some(tokio::time::Instant::now() + SHUTDOWN_DRAIN);
                }
                () = until_deadline => break,
            }
        }
        self.caller.log_closed();
    }

    /// Whether more output may be produced.
    fn has_room(&self) -> bool {
        self.out.len() - self.written < OUT_HIGH_WATER
    }

    fn wrote(&mut self, n: usize) {
        self.written += n;
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written >= OUT_HIGH_WATER {
            self.out.drain(..self.written);
            self.written = 0;
        }
    }

    /// The client half-closed: what it asked is still answered (as long as
    /// it reads, see [`WRITER_DRAIN`]), its subscriptions end.
    fn closed_by_client(&mut self) {
        self.eof = true;
        self.follower.clear();
    }

    /// Starts what a line holds: nothing, a request or a batch. Anything
    /// but a `send` waits until the sends before it are answered.
    async fn start(&mut self, parsed: Parsed, driver: &crate::driver::Handle) {
        match parsed {
            Parsed::Blank => {}
            Parsed::Single(element) => self.dispatch(element, driver).await,
            Parsed::Batch(elements) if !self.pending.is_empty() => {
                self.held = Some(Parsed::Batch(elements));
            }
            Parsed::Batch(elements) => self.dispatch_batch(elements),
        }
    }

    fn owe_line(&mut self, line: String) {
        self.pending
            .push_back(Box::pin(std::future::ready(Answer::Line(line))));
    }

    /// Starts one request. A `send` is handed to the driver at once (in
    /// read order) and its answer owed; anything else waits for the sends
    /// before it, and stops reading until it is answered.
    async fn dispatch(&mut self, element: Element, driver: &crate::driver::Handle) {
        let call = match element {
            Element::Invalid(id, error) => {
                self.owe_line(dispatch::response(&id, &Err(error)));
                return;
            }
            Element::Ignored => return,
            Element::Call(call) => call,
        };
        self.caller.log_call(&call.method);
        if call.method == rpc::method::SEND
            && let Some(id) = call.id.clone()
        {
            match methods::parse::<rpc::SendParams>(call.params.clone()) {
                Ok(params) => {
                    let ticket = methods::submit_send(params, driver, &self.speaker).await;
                    self.pending.push_back(Box::pin(async move {
                        let outcome = match ticket {
                            Ok(ticket) => ticket.result().await,
                            Err(e) => Err(e),
                        };
                        Answer::Line(dispatch::response(&id, &outcome))
                    }));
                }
                Err(error) => self.owe_line(dispatch::response(&id, &Err(error))),
            }
            return;
        }
        if !self.pending.is_empty() {
            self.held = Some(Parsed::Single(Element::Call(call)));
            return;
        }
        self.in_flight_other = true;
        let speaker = self.speaker.clone();
        let Call { id, method, params } = call;
        self.presence.registered |= method == rpc::method::PRESENCE_SET;
        let session = self.presence.session;
        let ctx = self.ctx.clone();
        self.pending.push_back(Box::pin(async move {
            let outcome = run_call(&ctx, &method, params, &speaker, Framing::Single, session).await;
            Answer::Single(id, outcome)
        }));
    }

    /// Starts a batch: its requests run one after the other, and their
    /// answers go out as one array in its turn.
    fn dispatch_batch(&mut self, elements: Vec<Element>) {
        for element in &elements {
            if let Element::Call(call) = element {
                self.caller.log_call(&call.method);
                self.presence.registered |= call.method == rpc::method::PRESENCE_SET;
            }
        }
        self.in_flight_other = true;
        let ctx = self.ctx.clone();
        let speaker = self.speaker.clone();
        let session = self.presence.session;
        self.pending.push_back(Box::pin(async move {
            let mut outcomes = Vec::new();
            for element in elements {
                match element {
                    Element::Invalid(id, error) => outcomes.push((Some(id), Err(error))),
                    Element::Ignored => {}
                    Element::Call(Call { id, method, params }) => {
                        let outcome =
                            run_call(&ctx, &method, params, &speaker, Framing::InBatch, session)
                                .await;
                        outcomes.push((id, outcome));
                    }
                }
            }
            Answer::Batch(outcomes)
        }));
    }

    /// Carries out an answer in its turn.
    fn take_answer(&mut self, answer: Answer) {
        match answer {
            Answer::Line(line) => {
                self.out.push_str(&line);
                self.out.push('\n');
            }
            Answer::Single(None, outcome) => {
                // A notification: carried out, not answered.
                self.in_flight_other = false;
                if !matches!(outcome, Ok(Output::History(_))) {
                    let _ = self.carry_out(outcome);
                }
            }
            Answer::Single(Some(id), outcome) => {
                self.in_flight_other = false;
                if let Ok(Output::History(stream)) = outcome {
                    self.out.push_str(dispatch::response_start());
                    self.out.push_str(HistoryStream::opening());
                    self.history = Some((id, *stream));
                    self.finish_history_if_done();
                    return;
                }
                let line = dispatch::response(&id, &self.carry_out(outcome));
                self.out.push_str(&line);
                self.out.push('\n');
            }
            Answer::Batch(outcomes) => {
                self.in_flight_other = false;
                let mut parts = Vec::new();
                for (id, outcome) in outcomes {
                    let outcome = self.carry_out(outcome);
                    if let Some(id) = id {
                        parts.push(dispatch::response(&id, &outcome));
                    }
                }
                if !parts.is_empty() {
                    self.out.push('[');
                    self.out.push_str(&parts.join(","));
                    self.out.push_str("]\n");
                }
            }
        }
    }

    /// What an outcome's answer says, after doing what it asks of this
    /// connection (starting or ending a subscription).
    fn carry_out(&mut self, outcome: Result<Output, ErrorObject>) -> Result<Value, ErrorObject> {
        match outcome? {
            Output::Value(value) => Ok(value),
            Output::Subscribe(start) => methods::to_value(self.follower.add(*start)?),
            Output::Unsubscribe(subscription) => {
                methods::to_value(self.follower.remove(subscription)?)
            }
            Output::History(stream) => {
                // Only single requests stream; a batch collects.
                let _ = stream;
                Err(ErrorObject::new(
                    rpc::code::INTERNAL_ERROR,
                    "history cannot be written here",
                ))
            }
        }
    }

    /// The next page of the `history` answer being written, if any.
    fn next_fetch(
        &mut self,
        driver: &crate::driver::Handle,
    ) -> Option<BoxFuture<'static, Result<ReadPage, CoreError>>> {
        let (_, stream) = self.history.as_ref()?;
        let (from, filter, limit) = stream.next_request()?;
        let driver = driver.clone();
        Some(Box::pin(async move {
            driver.read(from, filter, limit, PAGE_BYTES).await
        }))
    }

    /// Writes a `history` page that came; `false`: the driver is gone.
    fn take_fetch(&mut self, page: Result<ReadPage, CoreError>) -> bool {
        let Ok(page) = page else { return false };
        if let Some((_, stream)) = &mut self.history {
            stream.take_page(page, &mut self.out);
        }
        self.finish_history_if_done();
        true
    }

    /// Closes the `history` answer being written once its last page is in.
    fn finish_history_if_done(&mut self) {
        if self
            .history
            .as_ref()
            .is_some_and(|(_, stream)| stream.is_done())
            && let Some((id, stream)) = self.history.take()
        {
            self.out.push_str(&stream.closing());
            self.out.push_str(&dispatch::response_end(&id));
            self.out.push('\n');
        }
    }
}

//! `rossipctl chat`: an interactive terminal chat over the local rossipd.
//!
//! - [`app`]: the state, changed only by the events of the loop below;
//! - [`draw`]: the screen, drawn from the state;
//! - [`input`]: typed lines and `/commands`;
//! - [`lines`]: window entries built (and sanitized) from what the daemon sent;
//! - [`session`]: the stream and the calls, each on a connection and thread of its own;
//! - [`api`]: the JSON-RPC shapes of the people-facing methods;
//! - [`terminal`]: the terminal guard, signals and key reading;
//! - [`pipe`]: the mode for a stdin or stdout that is not a terminal.
//!
//! One loop owns the state: every source (keys, stream, answers, signals, a one-second
//! tick) sends into one channel, and after each batch of events the screen is drawn.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::tz::TimeZone;
use ratatui::crossterm::event::Event;
use rossip_proto::message::DEFAULT_CHANNEL;

use crate::cli::ChatArgs;
use crate::client::Client;
use crate::commands::Ctx;

pub mod api;
pub mod app;
pub mod draw;
pub mod input;
pub mod lines;
pub mod pipe;
pub mod session;
pub mod terminal;

use app::{App, Settings};
use session::{Follower, Reply, Request, StreamNews, Worker};
use terminal::TerminalGuard;

/// How often the loop wakes without an event (auto-away).
const TICK: Duration = Duration::from_secs(1);

/// Exit status after Ctrl-C, as for a shell command ended by SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

/// What the chat loop reacts to.
#[derive(Debug)]
pub enum ChatEvent {
    /// A key, a paste, a resize.
    Terminal(Event),
    /// The terminal cannot be read any more.
    TerminalFailed(String),
    /// The message stream.
    Stream(StreamNews),
    /// An answer to a call.
    Reply(Reply),
    /// SIGTERM, SIGINT or SIGHUP.
    Signal(i32),
    /// A line of stdin (pipe mode).
    Line(String),
    /// End of stdin, or it could not be read (pipe mode).
    EndOfInput(Option<String>),
}

/// Runs the chat: the terminal UI, or the pipe mode when stdin or stdout is not a terminal.
pub fn run(ctx: &Ctx, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let channel = args
        .channel
        .clone()
        .unwrap_or_else(|| DEFAULT_CHANNEL.to_owned());
    // The first connections are not retried: a daemon that is not running is an error now.
    let stream = ctx.connect()?;
    // A restarted daemon is looked for where it was found.
    let socket = stream.path().to_path_buf();
    let worker_client = Client::connect(&socket)?;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return pipe::run(socket, stream, worker_client, channel);
    }
    let mut worker = Worker::new(socket.clone(), worker_client);
    let me = worker.identify()?;
    let (tx, rx) = mpsc::channel::<ChatEvent>();
    let (requests, requests_rx) = mpsc::channel::<Request>();
    spawn_named("stream", {
        let tx = tx.clone();
        let follower = Follower::new(socket, Some(args.backlog));
        move || follower.run(stream, |news| tx.send(ChatEvent::Stream(news)).is_ok())
    })?;
    spawn_named("calls", {
        let tx = tx.clone();
        move || {
            worker.run(requests_rx, |reply| {
                tx.send(ChatEvent::Reply(reply)).is_ok()
            })
        }
    })?;
    terminal::spawn_signal_watch(tx.clone(), ChatEvent::Signal)
        .context("cannot watch for signals")?;
    let settings = Settings {
        away_after: Some(args.away_after).filter(|d| !d.is_zero()),
        backlog: args.backlog,
        tz: TimeZone::system(),
    };
    let mut app = App::new(me, channel, settings, Instant::now());
    until_subscribed(&rx, |event| match event {
        ChatEvent::Stream(news) => app.on_stream(news),
        ChatEvent::Reply(reply) => app.on_reply(reply),
        _ => {}
    });
    let mut guard = TerminalGuard::enter().context("cannot set up the terminal")?;
    terminal::spawn_reader(tx, ChatEvent::Terminal, ChatEvent::TerminalFailed)
        .context("cannot read the terminal")?;
    let exit = chat_loop(&mut guard, &mut app, &rx, &requests);
    drop(guard);
    exit
}

/// Draws, waits for events, changes the state; until the person leaves.
fn chat_loop(
    guard: &mut TerminalGuard,
    app: &mut App,
    rx: &mpsc::Receiver<ChatEvent>,
    requests: &Sender<Request>,
) -> anyhow::Result<ExitCode> {
    loop {
        for request in app.take_requests() {
            requests
                .send(request)
                .context("the thread making calls to rossipd stopped")?;
        }
        if app.should_quit() {
            return Ok(ExitCode::SUCCESS);
        }
        redraw(guard, app)?;
        let first = match rx.recv_timeout(TICK) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(ExitCode::SUCCESS),
        };
        // Everything that is already there, then one drawing.
        for event in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            let now = Instant::now();
            match event {
                ChatEvent::Terminal(event) => {
                    app.on_terminal(&event, now);
                    if app.should_quit() && is_ctrl_c(&event) {
                        return Ok(ExitCode::from(EXIT_INTERRUPTED));
                    }
                }
                ChatEvent::TerminalFailed(reason) => {
                    anyhow::bail!("cannot read the terminal: {reason}")
                }
                ChatEvent::Stream(news) => app.on_stream(news),
                ChatEvent::Reply(reply) => app.on_reply(reply),
                ChatEvent::Signal(signal) => {
                    return Ok(ExitCode::from(
                        128_u8.saturating_add(u8::try_from(signal).unwrap_or(0)),
                    ));
                }
                ChatEvent::Line(_) | ChatEvent::EndOfInput(_) => {}
            }
        }
        app.on_tick(Instant::now());
        if app.take_bell() {
            guard.bell().context("cannot write to the terminal")?;
        }
    }
}

/// How long the start waits for the stream to be subscribed before it goes on anyway
/// (the stream then catches up when it can).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

/// Waits until the stream is subscribed (or failed, or [`SUBSCRIBE_WAIT`] passed), handing
/// the events before that to `handle`: a line typed or piped in after this is certain to
/// come back on the stream, however busy the machine.
pub fn until_subscribed(rx: &mpsc::Receiver<ChatEvent>, mut handle: impl FnMut(ChatEvent)) {
    let deadline = Instant::now() + SUBSCRIBE_WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = rx.recv_timeout(left) else {
            return;
        };
        let done = matches!(
            event,
            ChatEvent::Stream(StreamNews::Connected { .. } | StreamNews::Failed { .. })
        );
        handle(event);
        if done {
            return;
        }
    }
}

fn is_ctrl_c(event: &Event) -> bool {
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};
    matches!(event, Event::Key(key)
        if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))
}

/// Fits the state to the screen (page size, scroll limit) and draws it.
fn redraw(guard: &mut TerminalGuard, app: &mut App) -> anyhow::Result<()> {
    let terminal = guard.terminal();
    let size = terminal.size().context("cannot read the terminal size")?;
    let [pane, _, _] = draw::areas(size.into());
    app.pane_rows = usize::from(pane.height);
    let (_, max_scroll) = draw::visible_rows(
        app.current(),
        usize::from(pane.width),
        usize::from(pane.height),
        app.show_presence,
    );
    app.clamp_scroll(max_scroll);
    terminal
        .draw(|frame| draw::draw(frame, app))
        .context("cannot draw on the terminal")?;
    Ok(())
}

fn spawn_named(name: &str, body: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(|_| ())
        .with_context(|| format!("cannot start the {name} thread"))
}

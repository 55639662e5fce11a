//! `rossipctl chat` with stdin or stdout not a terminal: each line of stdin is sent to the
//! channel, and the channel's messages (and direct messages to this user) are printed as
//! lines, from the start on, across daemon restarts. Ends at the end of stdin.

use std::io::{self, BufRead as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use anyhow::Context as _;
use jiff::tz::TimeZone;

use super::ChatEvent;
use super::api::SendParams;
use super::lines::ChatLine;
use super::session::{CallError, Follower, StreamNews, Worker};
use crate::client::Client;
use crate::output::{Out, warn};
use crate::sanitize::sanitize;

/// Runs the pipe mode on `channel`.
pub fn run(
    socket: PathBuf,
    stream: Client,
    sender: Client,
    channel: String,
) -> anyhow::Result<ExitCode> {
    let (tx, rx) = mpsc::channel::<ChatEvent>();
    let follower = Follower::new(socket.clone(), None);
    let stream_tx = tx.clone();
    thread::Builder::new()
        .name("stream".into())
        .spawn(move || {
            follower.run(stream, |news| {
                stream_tx.send(ChatEvent::Stream(news)).is_ok()
            })
        })
        .context("cannot start the stream thread")?;
    let mut pipe = Pipe {
        channel,
        worker: Worker::new(socket, sender),
        out: Out::new(io::stdout().lock()),
        tz: TimeZone::system(),
    };
    // Stdin is read once the stream follows: every line sent comes back.
    let mut early = Ok(None);
    super::until_subscribed(&rx, |event| {
        if matches!(early, Ok(None)) {
            early = pipe.handle(event);
        }
    });
    if let Some(exit) = early? {
        return Ok(exit);
    }
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(&tx))
        .context("cannot start the stdin thread")?;
    for event in rx {
        if let Some(exit) = pipe.handle(event)? {
            return Ok(exit);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The pipe chat's state.
struct Pipe<W: io::Write> {
    channel: String,
    worker: Worker,
    out: Out<W>,
    tz: TimeZone,
}

impl<W: io::Write> Pipe<W> {
    /// Prints or sends; `Some` when the chat ends.
    fn handle(&mut self, event: ChatEvent) -> anyhow::Result<Option<ExitCode>> {
        match event {
            ChatEvent::Stream(StreamNews::Message { message, .. }) => {
                let shown = match &message.to {
                    Some(_) => true,
                    None => message.channel == self.channel,
                };
                if shown {
                    let to = message.to.as_ref().map(|to| {
                        to.user
                            .clone()
                            .unwrap_or_else(|| to.node.chars().take(8).collect())
                    });
                    self.out
                        .line(&ChatLine::message(&message, to, false, &self.tz).plain())?;
                }
            }
            ChatEvent::Stream(StreamNews::Lost { reason }) => {
                warn(format_args!("{}; reconnecting", sanitize(&reason)));
            }
            ChatEvent::Stream(StreamNews::Connected { resumed: true, .. }) => {
                warn("reconnected to rossipd");
            }
            ChatEvent::Stream(StreamNews::StartedOver { reason }) => warn(format_args!(
                "{}; going on from the last message printed",
                sanitize(&reason)
            )),
            ChatEvent::Stream(StreamNews::Lagged { dropped }) => warn(format_args!(
                "{dropped} message(s) left rossipd's history before they were printed"
            )),
            ChatEvent::Stream(StreamNews::Failed { reason }) => {
                anyhow::bail!("the message stream stopped: {reason}")
            }
            ChatEvent::Stream(_) => {}
            ChatEvent::Line(line) => {
                if line.trim().is_empty() {
                    return Ok(None);
                }
                let params = SendParams {
                    text: line,
                    channel: Some(self.channel.clone()),
                    to: None,
                };
                match self.worker.send(&params) {
                    Ok(_) => {}
                    Err(CallError::Rpc(e)) => warn(format_args!(
                        "rossipd refused a line: {} (code {})",
                        sanitize(&e.message),
                        e.code
                    )),
                    Err(CallError::Unsupported { method }) => {
                        anyhow::bail!("this rossipd has no `{method}` method")
                    }
                    Err(CallError::Unreachable(reason)) => {
                        anyhow::bail!("cannot send a line: {reason}")
                    }
                }
            }
            ChatEvent::EndOfInput(None) => return Ok(Some(ExitCode::SUCCESS)),
            ChatEvent::EndOfInput(Some(reason)) => {
                anyhow::bail!("cannot read a line of stdin: {reason}")
            }
            ChatEvent::Terminal(_)
            | ChatEvent::TerminalFailed(_)
            | ChatEvent::Reply(_)
            | ChatEvent::Signal(_) => {}
        }
        Ok(None)
    }
}

fn read_stdin(tx: &mpsc::Sender<ChatEvent>) {
    for line in io::stdin().lock().lines() {
        let event = match line {
            Ok(line) => ChatEvent::Line(line),
            Err(err) => {
                let _ = tx.send(ChatEvent::EndOfInput(Some(err.to_string())));
                return;
            }
        };
        if tx.send(event).is_err() {
            return;
        }
    }
    let _ = tx.send(ChatEvent::EndOfInput(None));
}

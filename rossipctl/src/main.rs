//! `rossipctl`: the command-line client of rossipd's local JSON-RPC socket.
//!
//! Exit codes: 0 ok; 1 rossipd answered with an error (or another failure, such as
//! unreadable stdin); 2 usage; 69 (`EX_UNAVAILABLE`) rossipd not reachable; 77
//! (`EX_NOPERM`) permission denied on the socket. A closed stdout pipe exits 0.

use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::Parser as _;

mod chat;
mod cli;
mod client;
mod commands;
mod output;
mod sanitize;
mod socket_path;
mod stdout_watch;
mod timefmt;

use crate::cli::{Cli, Command};
use crate::client::{ClientError, EXIT_FAILURE};
use crate::commands::Ctx;
use crate::output::{Out, StdoutClosed};
use crate::sanitize::sanitize;
use crate::socket_path::SocketLocation;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            if err.downcast_ref::<StdoutClosed>().is_some() {
                // `rossipctl tail -f | head -1`: the reader has what it wanted.
                return ExitCode::SUCCESS;
            }
            // The message can quote the daemon or a path: keep it to one inert line.
            let message = format!("{err:#}");
            let _ = writeln!(
                io::stderr().lock(),
                "rossipctl: error: {}",
                sanitize(&message)
            );
            ExitCode::from(exit_code(&err))
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Err(usage) = cli.validate() {
        usage.exit();
    }
    let ctx = Ctx {
        socket: SocketLocation::new(cli.socket_override()),
        json: cli.json,
    };
    if cli.command.follows() {
        // A follower may wait for the daemon for hours without writing a byte: without this,
        // `rossipctl tail -f | head -1` would outlive `head` until the next message.
        stdout_watch::exit_when_reader_gone();
    }
    let mut out = Out::new(io::stdout().lock());
    match cli.command {
        Command::Send(args) => commands::send::run(&ctx, &mut out, args)?,
        Command::Tail(args) => commands::tail::run(&ctx, &mut out, args)?,
        Command::Peers(args) => commands::peers::run(&ctx, &mut out, args)?,
        Command::Events(args) => commands::events::run(&ctx, &mut out, args)?,
        Command::Status => commands::status::run(&ctx, &mut out)?,
        Command::Who => commands::who::run(&ctx, &mut out)?,
        Command::Join(args) => commands::join::run(&ctx, &mut out, args)?,
        Command::Leave => commands::leave::run(&ctx, &mut out)?,
        Command::Completions(args) => commands::completions::run(&mut out, args)?,
        Command::Man(args) => commands::man::run(&mut out, args)?,
        Command::Keygen(args) => commands::keygen::run(&ctx, &mut out, args)?,
        Command::Keys(command) => commands::keys::run(&ctx, &mut out, command)?,
        Command::Channels => commands::channels::run(&ctx, &mut out)?,
        Command::Nick(args) => commands::nick::run(&ctx, &mut out, args)?,
        Command::Web => commands::web::run(&ctx, &mut out)?,
        Command::Chat(args) => {
            drop(out);
            return commands::chat::run(&ctx, args);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit code for a failed run: the client error's own, else 1.
fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<ClientError>())
        .map_or(EXIT_FAILURE, ClientError::exit_code)
}

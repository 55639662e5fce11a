//! `rossipctl chat`: the terminal chat (see [`crate::chat`]).

use std::process::ExitCode;

use super::Ctx;
use crate::cli::ChatArgs;

/// Runs the chat until the person leaves (or, in pipe mode, until the end of stdin).
pub fn run(ctx: &Ctx, args: ChatArgs) -> anyhow::Result<ExitCode> {
    crate::chat::run(ctx, args)
}

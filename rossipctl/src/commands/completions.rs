//! `rossipctl completions SHELL`: print a completion script.

use std::io::Write;

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};
use crate::output::Out;

/// Writes the script for `args.shell` to stdout.
pub fn run(out: &mut Out<impl Write>, args: CompletionsArgs) -> anyhow::Result<()> {
    // Generated into memory first: clap_complete panics on a write error, and a closed
    // pipe must end quietly.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "rossipctl", &mut script);
    out.bytes(&script)?;
    out.flush()
}

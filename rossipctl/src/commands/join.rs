//! `rossipctl join ADDR`: ask the daemon to contact a node by address.

use std::io::Write;

use rossip_proto::rpc::{JoinParams, JoinResult, method};

use super::Ctx;
use crate::cli::JoinArgs;
use crate::output::Out;
use crate::sanitize::sanitize;

/// Joins through `args.addr` and names the node that answered.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: JoinArgs) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let joined: JoinResult = client.call(method::JOIN, JoinParams { addr: args.addr })?;
    if ctx.json {
        return out.json(&joined);
    }
    let id8: String = joined.id.chars().take(8).collect();
    out.line(&format!(
        "joined {} ({}) at {}",
        sanitize(&joined.name),
        sanitize(&id8),
        sanitize(&joined.addr)
    ))
}

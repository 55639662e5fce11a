//! `rossipctl leave`: leave the cluster gracefully; the daemon then shuts down.

use std::io::Write;

use rossip_proto::rpc::{LeaveResult, method};
use serde_json::json;

use super::Ctx;
use crate::output::Out;

/// Tells the daemon to leave and reports how many peers it told.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let left: LeaveResult = client.call(method::LEAVE, json!({}))?;
    if ctx.json {
        return out.json(&left);
    }
    let peers = if left.notified == 1 { "peer" } else { "peers" };
    out.line(&format!(
        "left the cluster (told {} {peers}); rossipd is shutting down",
        left.notified
    ))
}

//! `rossipctl web`: where the web chat is. On a loopback gateway that is
//! its address; otherwise a login link carrying your token, which rossipd
//! mints for the user the kernel says is calling (so it is yours alone).

use std::io::Write;

use rossip_proto::rpc::{WebLinkResult, method};
use serde_json::json;

use super::Ctx;
use crate::output::Out;
use crate::sanitize::sanitize;

/// Prints the URL, with a note on stderr when it is a login link.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let link: WebLinkResult = client.call(method::WEB_LINK, json!({}))?;
    if ctx.json {
        return out.json(&link);
    }
    if link.login {
        eprintln!(
            "rossipctl: this link logs the browser in as you; do not share it \
             (open it once, the browser keeps the login)"
        );
    }
    out.line(&sanitize(&link.url))
}

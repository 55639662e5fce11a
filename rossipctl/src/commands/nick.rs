//! `rossipctl nick [NAME | --clear]`: your display name on this node, which the messages
//! you send from now on carry, shown beside your `user@node` (never instead of it).

use std::io::Write;

use rossip_proto::rpc::{NickParams, NickResult, method};

use super::Ctx;
use crate::cli::NickArgs;
use crate::output::Out;
use crate::sanitize::sanitize;

/// Sets, clears or shows the display name.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: NickArgs) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let params = NickParams {
        nick: args.nick,
        clear: args.clear,
    };
    let result: NickResult = client.call(method::NICK, params)?;
    if ctx.json {
        return out.json(&result);
    }
    out.line(&describe(&result))
}

/// `ann: display name "Ann S."`, or `ann: no display name`.
fn describe(result: &NickResult) -> String {
    let user = sanitize(&result.user);
    match &result.nick {
        Some(nick) => format!("{user}: display name \"{}\"", sanitize(nick)),
        None => format!("{user}: no display name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reads_as_a_sentence() {
        let set = NickResult {
            user: "ann".into(),
            nick: Some("Ann S.".into()),
        };
        assert_eq!(describe(&set), "ann: display name \"Ann S.\"");
        let none = NickResult {
            user: "ann".into(),
            nick: None,
        };
        assert_eq!(describe(&none), "ann: no display name");
    }
}

//! `rossipctl who`: who is in a chat, on every node, as a table or one JSON object per user.

use std::io::Write;

use rossip_proto::rpc::{PresenceView, WhoResult, method};
use serde_json::json;

use super::Ctx;
use crate::output::{Out, aligned};
use crate::sanitize::sanitize;
use crate::timefmt::{format_ago, now_ms};

/// Lists the users in a chat.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let result: WhoResult = client.call(method::WHO, json!({}))?;
    out.listing(ctx.json, &result.users, "nobody is in a chat", |users| {
        table(users, now_ms())
    })
}

const HEADER: [&str; 5] = ["USER", "NICK", "STATE", "SINCE", "STATUS"];

/// The table's lines, header first, columns padded to their widest cell.
fn table(users: &[PresenceView], now_ms: u64) -> Vec<String> {
    aligned(HEADER, users.iter().map(|user| row(user, now_ms)).collect())
}

fn row(user: &PresenceView, now_ms: u64) -> [String; 5] {
    let mut from = format!(
        "{}@{}",
        sanitize(&user.user),
        super::tail::display_name(&user.node_name)
    );
    if user.local {
        from.push_str(" (here)");
    }
    [
        from,
        user.nick
            .as_deref()
            .map_or_else(|| "-".to_owned(), |nick| sanitize(nick).into_owned()),
        user.state.as_str().to_owned(),
        format_ago(now_ms, user.since),
        user.status
            .as_deref()
            .map_or_else(String::new, |status| sanitize(status).into_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rossip_proto::rpc::PresenceStateName;

    fn user(
        name: &str,
        node: &str,
        state: PresenceStateName,
        status: Option<&str>,
    ) -> PresenceView {
        PresenceView {
            user: name.to_owned(),
            node: "0123456789abcdef0123456789abcdef".to_owned(),
            node_name: node.to_owned(),
            from: format!("{name}@{node}"),
            nick: None,
            state,
            status: status.map(str::to_owned),
            since: 1_000_000,
            local: false,
        }
    }

    #[test]
    fn table_is_aligned_and_readable() {
        let mut here = user("ann", "alpha", PresenceStateName::Available, None);
        here.local = true;
        here.nick = Some("Annie".to_owned());
        let users = [
            here,
            user("bob", "beta", PresenceStateName::Away, Some("lunch")),
        ];
        assert_eq!(
            table(&users, 1_192_000),
            [
                "USER              NICK   STATE      SINCE  STATUS",
                "ann@alpha (here)  Annie  available  3m12s",
                "bob@beta          -      away       3m12s  lunch",
            ]
        );
    }

    #[test]
    fn text_from_the_network_is_sanitized() {
        let mut evil = user(
            "x\x1b[2J",
            "n\x07",
            PresenceStateName::Away,
            Some("a\x1b]0;t\x07"),
        );
        evil.nick = Some("\u{202e}rev".to_owned());
        let lines = table(&[evil], 1_000_000);
        assert!(!lines[1].contains('\x1b'), "{:?}", lines[1]);
        assert!(!lines[1].contains('\x07'), "{:?}", lines[1]);
        assert!(!lines[1].contains('\u{202e}'), "{:?}", lines[1]);
    }
}

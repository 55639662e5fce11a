//! `rossipctl keys list | install KEY | use ID | remove ID`: the cluster keys of
//! every member, and rotating them without downtime.

use std::collections::BTreeMap;
use std::io::{self, Read as _, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use rossip_proto::rpc::{
    KeysChangeResult, KeysIdParams, KeysInstallParams, KeysListResult, StatusResult, method,
};
use serde_json::json;

use super::Ctx;
use crate::cli::{KeysCommand, KeysInstallArgs};
use crate::output::Out;
use crate::sanitize::sanitize;

/// Runs a `keys` subcommand. A change that some node did not confirm is an
/// error (exit 1), after the per-node lines.
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, command: KeysCommand) -> anyhow::Result<()> {
    let (verb, method, params) = match command {
        KeysCommand::List => return list(ctx, out),
        KeysCommand::Install(args) => (
            "installed",
            method::KEYS_INSTALL,
            json!(KeysInstallParams {
                key: read_key(&args)?
            }),
        ),
        KeysCommand::Use(arg) => (
            "now sealing with",
            method::KEYS_USE,
            json!(KeysIdParams {
                id: arg.id,
                force: arg.force
            }),
        ),
        KeysCommand::Remove(arg) => (
            "removed",
            method::KEYS_REMOVE,
            json!(KeysIdParams {
                id: arg.id,
                force: arg.force
            }),
        ),
    };
    let mut client = ctx.connect()?;
    let result: KeysChangeResult = client.call(method, params)?;
    if ctx.json {
        out.json(&result)?;
    } else {
        for line in change_lines(verb, &result) {
            out.line(&line)?;
        }
    }
    let failed = result.nodes.iter().filter(|n| !n.ok).count();
    if failed > 0 {
        bail!(
            "{failed} of {} other nodes did not confirm the change; run the same command again \
             (it is safe to repeat) and check `rossipctl keys list` before the next step",
            result.nodes.len()
        );
    }
    Ok(())
}

/// The key from the argument, stdin (`-`) or `--key-file`.
fn read_key(args: &KeysInstallArgs) -> anyhow::Result<String> {
    if let Some(path) = &args.key_file {
        return first_key_line(path);
    }
    match args.key.as_deref() {
        Some("-") => {
            let mut text = String::new();
            io::stdin()
                .lock()
                .read_to_string(&mut text)
                .context("cannot read the key from stdin")?;
            Ok(text.trim().to_owned())
        }
        Some(key) => Ok(key.to_owned()),
        None => bail!("give the key, `-` to read it from stdin, or --key-file PATH"),
    }
}

/// The first key line of a key file (blank lines and `#` comments skipped).
fn first_key_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .with_context(|| format!("the key file {} holds no key", path.display()))
}

fn list(ctx: &Ctx, out: &mut Out<impl Write>) -> anyhow::Result<()> {
    let mut client = ctx.connect()?;
    let result: KeysListResult = client.call(method::KEYS_LIST, json!({}))?;
    if ctx.json {
        return out.json(&result);
    }
    let status: StatusResult = client.call(method::STATUS, json!({}))?;
    for line in list_lines(&status.name, &result) {
        out.line(&line)?;
    }
    Ok(())
}

/// One line per key: the nodes holding it and those sealing with it (like
/// `serf keys -list`), then the nodes that did not answer.
fn list_lines(local_name: &str, result: &KeysListResult) -> Vec<String> {
    // key id → (holders, primaries), this node first, then others by name.
    let mut keys: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut nodes = vec![(
        format!("{} (this node)", sanitize(local_name)),
        &result.local.primary,
        &result.local.keys,
    )];
    nodes.extend(
        result
            .nodes
            .iter()
            .filter(|n| n.answered)
            .map(|n| (sanitize(&n.name).into_owned(), &n.primary, &n.keys)),
    );
    let answered = nodes.len();
    for (name, primary, held) in nodes {
        for key in held {
            let entry = keys.entry(key.as_str()).or_default();
            entry.0.push(name.clone());
            if key == primary {
                entry.1.push(name.clone());
            }
        }
    }
    let mut lines = vec![format!(
        "{answered} of {} nodes answered",
        result.nodes.len() + 1
    )];
    for (key, (holders, primaries)) in &keys {
        let sealing = if primaries.is_empty() {
            "none".to_owned()
        } else {
            format!("{} ({})", primaries.len(), primaries.join(", "))
        };
        lines.push(format!(
            "key {}: held by {} ({}); primary on {sealing}",
            sanitize(key),
            holders.len(),
            holders.join(", ")
        ));
    }
    let silent: Vec<String> = result
        .nodes
        .iter()
        .filter(|n| !n.answered)
        .map(|n| sanitize(&n.name).into_owned())
        .collect();
    if !silent.is_empty() {
        lines.push(format!("no answer from: {}", silent.join(", ")));
    }
    lines
}

/// What a change did here and on each other node.
fn change_lines(verb: &str, result: &KeysChangeResult) -> Vec<String> {
    let confirmed = result.nodes.iter().filter(|n| n.ok).count();
    let mut lines = vec![format!(
        "{verb} key {} on this node and {confirmed} of {} other nodes",
        sanitize(&result.key),
        result.nodes.len()
    )];
    for node in &result.nodes {
        lines.push(match (&node.ok, &node.error) {
            (true, _) => format!("  {}: ok", sanitize(&node.name)),
            (false, Some(error)) => {
                format!("  {}: failed: {}", sanitize(&node.name), sanitize(error))
            }
            (false, None) => format!("  {}: failed", sanitize(&node.name)),
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use rossip_proto::rpc::{KeyringView, NodeAck, NodeKeyring};

    use super::*;

    fn node(name: &str, primary: &str, keys: &[&str]) -> NodeKeyring {
        NodeKeyring {
            id: format!("{name}-id"),
            name: name.into(),
            answered: !keys.is_empty(),
            primary: primary.into(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn list_shows_holders_and_primaries_per_key() {
        let result = KeysListResult {
            local: KeyringView {
                primary: "bbbbbbbb".into(),
                keys: vec!["bbbbbbbb".into(), "aaaaaaaa".into()],
            },
            nodes: vec![
                node("h2", "aaaaaaaa", &["aaaaaaaa", "bbbbbbbb"]),
                node("h3", "", &[]),
            ],
            complete: false,
        };
        assert_eq!(
            list_lines("h1", &result),
            vec![
                "2 of 3 nodes answered",
                "key aaaaaaaa: held by 2 (h1 (this node), h2); primary on 1 (h2)",
                "key bbbbbbbb: held by 2 (h1 (this node), h2); primary on 1 (h1 (this node))",
                "no answer from: h3",
            ]
        );
    }

    #[test]
    fn change_lines_name_each_node() {
        let ack = |name: &str, ok: bool, error: Option<&str>| NodeAck {
            id: format!("{name}-id"),
            name: name.into(),
            answered: error != Some("no answer within 2 s"),
            ok,
            error: error.map(str::to_owned),
        };
        let result = KeysChangeResult {
            key: "aaaaaaaa".into(),
            local: KeyringView::default(),
            nodes: vec![
                ack("h2", true, None),
                ack("h3", false, Some("key aaaaaaaa is the primary key\x1b[2J")),
            ],
            complete: false,
        };
        assert_eq!(
            change_lines("removed", &result),
            vec![
                "removed key aaaaaaaa on this node and 1 of 2 other nodes",
                "  h2: ok",
                "  h3: failed: key aaaaaaaa is the primary key\\x1b[2J",
            ]
        );
    }

    #[test]
    fn key_files_give_their_first_key() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k");
        std::fs::write(&path, "# new key\n\n  abcd  \nefgh\n").expect("write");
        assert_eq!(first_key_line(&path).expect("key"), "abcd");
        std::fs::write(&path, "# nothing\n").expect("write");
        assert!(first_key_line(&path).is_err());
    }
}

//! `keys.list`, `keys.install`, `keys.use`, `keys.remove`: the cluster
//! keyring, on this node and every member. The driver applies a change
//! here and sends it (or a query) to the members; this waits up to
//! [`KEYS_WAIT`] for their answers, or until all answered.

use std::time::Duration;

use rossip_proto::NodeId;
use rossip_proto::node::KeyringEvent;
use rossip_proto::rpc::{
    self, ErrorObject, KeysChangeResult, KeysIdParams, KeysInstallParams, KeysListResult, NodeAck,
    NodeKeyring,
};
use rossip_proto::seal::{ClusterKey, KeyId};
use rossip_proto::wire::KeyOp;
use serde_json::Value;

use super::methods::{NoParams, parse, to_value};
use crate::driver::{Handle, KeysStarted};

/// How long `keys.*` waits for the members' answers.
pub const KEYS_WAIT: Duration = Duration::from_secs(2);

/// Runs the `keys.*` method `method`.
pub async fn call(method: &str, params: Value, driver: &Handle) -> Result<Value, ErrorObject> {
    match method {
        rpc::method::KEYS_LIST => {
            let NoParams {} = parse(params)?;
            let started = driver.keys_list().await?;
            to_value(list_result(started).await)
        }
        rpc::method::KEYS_INSTALL => {
            let p: KeysInstallParams = parse(params)?;
            let key = ClusterKey::from_hex(&p.key).map_err(|e| {
                ErrorObject::new(
                    rpc::code::INVALID_PARAMS,
                    format!("invalid key: {e} (make one with `rossipctl keygen`)"),
                )
            })?;
            change(driver, KeyOp::Install(*key.bytes())).await
        }
        rpc::method::KEYS_USE => {
            let p: KeysIdParams = parse(params)?;
            let id = parse_key_id(&p.id)?;
            if !p.force {
                safety_check(driver, Check::Use(id)).await?;
            }
            change(driver, KeyOp::Use(id.0)).await
        }
        rpc::method::KEYS_REMOVE => {
            let p: KeysIdParams = parse(params)?;
            let id = parse_key_id(&p.id)?;
            if !p.force {
                safety_check(driver, Check::Remove(id)).await?;
            }
            change(driver, KeyOp::Remove(id.0)).await
        }
        other => Err(ErrorObject::new(
            rpc::code::METHOD_NOT_FOUND,
            format!("method not found: {other:?}"),
        )),
    }
}

/// A key id as `keys.list` and `status` show it: 8 hex digits.
pub fn parse_key_id(text: &str) -> Result<KeyId, ErrorObject> {
    let text = text.trim();
    if text.len() == 8
        && text.chars().all(|c| c.is_ascii_hexdigit())
        && let Ok(id) = u32::from_str_radix(text, 16)
    {
        return Ok(KeyId(id));
    }
    Err(ErrorObject::new(
        rpc::code::INVALID_PARAMS,
        format!(
            "invalid key id {text:?}: a key id is 8 hex digits, as `rossipctl keys list` shows it"
        ),
    ))
}

/// A step that would cut off the members it does not suit.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Sealing with a key a member lacks: it could read no one.
    Use(KeyId),
    /// Removing the key a member seals with: no one could read it.
    Remove(KeyId),
}

/// Why a member is in the way of a [`Check`]. Its text completes "NAME …"
/// in messages and is the `reason` of the refusal's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocker {
    /// It did not answer the keyring query: it may lack the key, or seal
    /// with it.
    Silent,
    /// `keys use`: it does not hold the key.
    LacksKey,
    /// `keys remove`: it seals with the key.
    SealsWithIt,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Blocker::Silent => "did not answer",
            Blocker::LacksKey => "does not hold it",
            Blocker::SealsWithIt => "seals with it",
        })
    }
}

/// Asks every member for its keyring first, and refuses the step if it
/// would cut one off, or if a member does not answer (it may be one).
async fn safety_check(driver: &Handle, check: Check) -> Result<(), ErrorObject> {
    let started = driver.keys_list().await?;
    let list = list_result(started).await;
    let blockers = blockers(&list, check);
    if let Check::Use(id) = check
        && let Some(message) = not_held_here(&list, id, &blockers)
    {
        // --force would not help: this node's own step fails.
        return Err(refusal(message, &blockers));
    }
    if blockers.is_empty() {
        return Ok(());
    }
    let (id, advice) = match check {
        Check::Use(id) => (id, "install it on them first (`rossipctl keys install`)"),
        Check::Remove(id) => (
            id,
            "make them seal with the new key first (`rossipctl keys use`)",
        ),
    };
    let named: Vec<String> = blockers
        .iter()
        .map(|(node, reason)| format!("{} {reason}", node.name))
        .collect();
    Err(refusal(
        format!(
            "not done, it would cut members off: {} (key {id}); {advice}, or add --force if \
             they are down",
            named.join(", ")
        ),
        &blockers,
    ))
}

/// Why `keys use` cannot go ahead when this node lacks the key itself
/// (`None`: it holds it). Names the other nodes that lack it too, or says
/// that no node holds it at all.
fn not_held_here(
    list: &KeysListResult,
    id: KeyId,
    blockers: &[(&NodeKeyring, Blocker)],
) -> Option<String> {
    let id_text = id.to_string();
    if list.local.keys.contains(&id_text) {
        return None;
    }
    let install = "install it first with `rossipctl keys install`";
    let holders = list
        .nodes
        .iter()
        .filter(|n| n.keys.contains(&id_text))
        .count();
    let silent: Vec<&str> = blockers
        .iter()
        .filter(|(_, reason)| *reason == Blocker::Silent)
        .map(|(node, _)| node.name.as_str())
        .collect();
    Some(if holders == 0 && silent.is_empty() {
        format!("not done: no node holds key {id}, this one included; {install}")
    } else if holders == 0 {
        format!(
            "not done: this node does not hold key {id}, nor does any node that answered ({} did \
             not answer); {install}",
            silent.join(", ")
        )
    } else {
        let lacking: Vec<String> = blockers
            .iter()
            .map(|(node, reason)| format!("{} {reason}", node.name))
            .collect();
        let others = if lacking.is_empty() {
            String::new()
        } else {
            format!(" (nor: {})", lacking.join(", "))
        };
        format!("not done: this node does not hold key {id}{others}; {install}")
    })
}

/// The -32011 refusal of a safety check: `message`, and the members in
/// the way as data.
fn refusal(message: String, blockers: &[(&NodeKeyring, Blocker)]) -> ErrorObject {
    ErrorObject::with_data(
        rpc::code::KEYRING_REFUSED,
        message,
        serde_json::json!({
            "nodes": blockers
                .iter()
                .map(|(node, reason)| serde_json::json!({
                    "id": node.id,
                    "name": node.name,
                    "reason": reason.to_string(),
                }))
                .collect::<Vec<_>>(),
        }),
    )
}

/// The members `check` would cut off (or that did not answer), with why.
fn blockers(list: &KeysListResult, check: Check) -> Vec<(&NodeKeyring, Blocker)> {
    list.nodes
        .iter()
        .filter_map(|node| {
            if !node.answered {
                return Some((node, Blocker::Silent));
            }
            let blocked = match check {
                Check::Use(id) => {
                    (!node.keys.contains(&id.to_string())).then_some(Blocker::LacksKey)
                }
                Check::Remove(id) => {
                    (node.primary == id.to_string()).then_some(Blocker::SealsWithIt)
                }
            };
            blocked.map(|reason| (node, reason))
        })
        .collect()
}

async fn change(driver: &Handle, op: KeyOp) -> Result<Value, ErrorObject> {
    let started = driver.key_op(op).await?;
    to_value(change_result(started).await)
}

/// Collects answers from the members asked, for at most [`KEYS_WAIT`].
async fn collect(started: &mut KeysStarted) -> Vec<KeyringEvent> {
    let mut answers: Vec<KeyringEvent> = Vec::new();
    let deadline = tokio::time::Instant::now() + KEYS_WAIT;
    while answers.len() < started.targets.len() {
        match tokio::time::timeout_at(deadline, started.answers.recv()).await {
            Ok(Some(answer)) => answers.push(answer),
            // The driver stopped (shutdown) or the time is up.
            Ok(None) | Err(_) => break,
        }
    }
    answers
}

async fn list_result(mut started: KeysStarted) -> KeysListResult {
    let answers = collect(&mut started).await;
    let mut nodes: Vec<NodeKeyring> = started
        .targets
        .iter()
        .map(|(id, name)| {
            let report = answers.iter().find_map(|a| match a {
                KeyringEvent::Report {
                    from, primary, ids, ..
                } if from == id => Some((primary, ids)),
                _ => None,
            });
            NodeKeyring {
                id: id.to_string(),
                name: name.clone(),
                answered: report.is_some(),
                primary: report.map(|(p, _)| p.to_string()).unwrap_or_default(),
                keys: report
                    .map(|(_, ids)| ids.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    KeysListResult {
        local: started.local.clone(),
        complete: nodes.iter().all(|n| n.answered),
        nodes,
    }
}

async fn change_result(mut started: KeysStarted) -> KeysChangeResult {
    let answers = collect(&mut started).await;
    let ack_of = |id: &NodeId| {
        answers.iter().find_map(|a| match a {
            KeyringEvent::Ack {
                from, ok, error, ..
            } if from == id => Some((*ok, error.clone())),
            _ => None,
        })
    };
    let mut nodes: Vec<NodeAck> = started
        .targets
        .iter()
        .map(|(id, name)| {
            let ack = ack_of(id);
            NodeAck {
                id: id.to_string(),
                name: name.clone(),
                answered: ack.is_some(),
                ok: ack.as_ref().is_some_and(|(ok, _)| *ok),
                error: match ack {
                    Some((true, _)) => None,
                    Some((false, error)) => Some(error),
                    None => Some(format!("no answer within {} s", KEYS_WAIT.as_secs())),
                },
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    KeysChangeResult {
        key: started.key.clone().unwrap_or_default(),
        local: started.local.clone(),
        complete: nodes.iter().all(|n| n.ok),
        nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safety_check_names_who_would_be_cut_off() {
        let node = |name: &str, answered: bool, primary: &str, keys: &[&str]| NodeKeyring {
            id: format!("{name}-id"),
            name: name.into(),
            answered,
            primary: primary.into(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        };
        let list = KeysListResult {
            local: rpc::KeyringView::default(),
            nodes: vec![
                node("both", true, "0000000a", &["0000000a", "0000000b"]),
                node("old", true, "0000000a", &["0000000a"]),
                node("new", true, "0000000b", &["0000000b", "0000000a"]),
                node("silent", false, "", &[]),
            ],
            complete: false,
        };
        let names = |check| -> Vec<String> {
            blockers(&list, check)
                .into_iter()
                .map(|(n, why)| format!("{} {why}", n.name))
                .collect()
        };
        assert_eq!(
            names(Check::Use(KeyId(0xb))),
            ["old does not hold it", "silent did not answer"]
        );
        assert_eq!(
            names(Check::Remove(KeyId(0xa))),
            [
                "both seals with it",
                "old seals with it",
                "silent did not answer"
            ]
        );
    }

    #[test]
    fn using_a_key_this_node_lacks_says_so() {
        let node = |name: &str, answered: bool, keys: &[&str]| NodeKeyring {
            id: format!("{name}-id"),
            name: name.into(),
            answered,
            primary: keys.first().map(|k| (*k).to_owned()).unwrap_or_default(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        };
        let list = |nodes: Vec<NodeKeyring>| KeysListResult {
            local: rpc::KeyringView {
                primary: "0000000a".into(),
                keys: vec!["0000000a".into()],
            },
            complete: nodes.iter().all(|n| n.answered),
            nodes,
        };
        let message = |list: &KeysListResult, id: u32| {
            let check = Check::Use(KeyId(id));
            not_held_here(list, KeyId(id), &blockers(list, check))
        };
        let pair = list(vec![node("b", true, &["0000000a"])]);
        assert_eq!(message(&pair, 0xa), None, "held here");
        let nobody = message(&pair, 0xc).expect("held nowhere");
        assert!(
            nobody.contains("no node holds key 0000000c, this one included"),
            "{nobody}"
        );
        assert!(nobody.contains("rossipctl keys install"), "{nobody}");
        let alone = message(&list(Vec::new()), 0xc).expect("alone");
        assert!(alone.contains("no node holds key"), "{alone}");
        let others = list(vec![
            node("b", true, &["0000000a", "0000000c"]),
            node("c", true, &["0000000a"]),
        ]);
        let here = message(&others, 0xc).expect("held elsewhere only");
        assert!(
            here.contains("this node does not hold key 0000000c (nor: c does not hold it)"),
            "{here}"
        );
        let silent = list(vec![node("b", false, &[])]);
        let unknown = message(&silent, 0xc).expect("nobody that answered");
        assert!(unknown.contains("b did not answer"), "{unknown}");
    }

    #[test]
    fn key_ids_are_8_hex_digits() {
        assert_eq!(parse_key_id("0a1B2c3d").map(|k| k.0), Ok(0x0a1b_2c3d));
        for bad in ["", "123", "0a1b2c3d4", "0a1b2c3g", "+a1b2c3d"] {
            let err = parse_key_id(bad).expect_err(bad);
            assert_eq!(err.code, rpc::code::INVALID_PARAMS, "{bad}");
        }
    }
}

//! `send` with `to`: who the recipient is, the direct message's errors,
//! and its result (`direct: {status, to, node}`).
//!
//! `to` is resolved among the members this node knows (in any state: a
//! failed member gets the message when it is back), the nodes it knew
//! before (their pinned names: a node away longer than the reap time, or
//! not back since a restart, gets it when it is back) and this node itself:
//! a node name, `user@node`, or a node id (hex; a unique prefix of at
//! least [`MIN_ID_PREFIX`] digits). A name shared by several nodes is
//! ambiguous: the error lists them, with ids to choose by.

use std::sync::Arc;
use std::time::Duration;

use rossip_proto::NodeId;
use rossip_proto::message::{MAX_USER_BYTES, Recipient};
use rossip_proto::node::{DirectError, DirectOutcome};
use rossip_proto::rpc::{self, DirectSendView, ErrorObject, SendResult, code};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::delivery::Delivered;
use crate::driver::{Handle, SendTicket};

/// Shortest node id prefix `to` may use.
pub const MIN_ID_PREFIX: usize = 4;

/// How long `send` waits for the recipient's acknowledgement before it
/// answers `queued`.
pub const ACK_WAIT: Duration = Duration::from_secs(2);

/// Most candidates an error lists.
const MAX_CANDIDATES: usize = 50;

/// A node `to` may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
}

/// A direct message handed to the driver, whose answer comes once the
/// sender's copy is committed and the recipient acknowledged (or
/// [`ACK_WAIT`] passed).
#[derive(Debug)]
pub struct DirectTicket {
    ticket: SendTicket,
    outcome: oneshot::Receiver<DirectOutcome>,
    to: String,
    node: NodeId,
}

impl DirectTicket {
    /// The `send` result.
    pub async fn result(self) -> Result<Value, ErrorObject> {
        let delivered: Arc<Delivered> = self.ticket.outcome().await?;
        let status = match tokio::time::timeout(ACK_WAIT, self.outcome).await {
            Ok(Ok(outcome)) => outcome.as_str(),
            // Not yet (or the daemon stops): it is kept and retried.
            Ok(Err(_)) | Err(_) => "queued",
        };
        super::methods::to_value(SendResult {
            id: delivered.message.id.to_string(),
            ts: delivered.message.ts.ms,
            direct: Some(DirectSendView {
                status: status.to_owned(),
                to: self.to,
                node: self.node.to_string(),
            }),
        })
    }
}

/// Resolves `to`, then hands the direct message to the driver.
pub async fn submit(
    mut draft: rossip_proto::message::Draft,
    to: &str,
    driver: &Handle,
) -> Result<DirectTicket, ErrorObject> {
    let status = driver.status().await?;
    let own = status
        .id
        .parse::<NodeId>()
        .map_err(|e| ErrorObject::new(code::INTERNAL_ERROR, format!("this node's id: {e}")))?;
    let mut candidates = vec![Candidate {
        id: own,
        name: status.name,
    }];
    candidates.extend(driver.peers(true).await?.into_iter().map(|peer| Candidate {
        id: peer.member.id,
        name: peer.member.name,
    }));
    // Nodes known before (pinned names) that are no members now: away
    // longer than the reap time, or not back since this daemon started.
    let known = driver.known_nodes().await?;
    for (id, name) in known {
        if !candidates.iter().any(|c| c.id == id) {
            candidates.push(Candidate { id, name });
        }
    }
    let (node, user) = resolve(to, &candidates)?;
    let to_view = rpc::user_at_node(user.as_deref().unwrap_or(""), &node.name);
    draft.to = Some(Recipient {
        node: node.id,
        user,
    });
    let (ticket, outcome) = driver.send_direct(draft).await?;
    Ok(DirectTicket {
        ticket,
        outcome,
        to: to_view,
        node: node.id,
    })
}

/// The node (and user) `to` names among `candidates`.
pub fn resolve(
    to: &str,
    candidates: &[Candidate],
) -> Result<(Candidate, Option<String>), ErrorObject> {
    let (user, node) = match to.rsplit_once('@') {
        Some((user, node)) => (Some(user), node),
        None => (None, to),
    };
    if let Some(user) = user
        && !rossip_proto::message::is_user_name(user)
    {
        return Err(ErrorObject::new(
            code::INVALID_PARAMS,
            format!("to: {to:?} names no valid user (1 to {MAX_USER_BYTES} bytes before '@')"),
        ));
    }
    let by_name: Vec<&Candidate> = candidates.iter().filter(|c| c.name == node).collect();
    let matches = if by_name.is_empty() {
        let prefix = node.to_ascii_lowercase();
        if prefix.len() >= MIN_ID_PREFIX && prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            candidates
                .iter()
                .filter(|c| c.id.to_string().starts_with(&prefix))
                .collect()
        } else {
            Vec::new()
        }
    } else {
        by_name
    };
    match matches.as_slice() {
        [one] => Ok(((*one).clone(), user.map(str::to_owned))),
        [] => Err(ErrorObject::with_data(
            code::UNKNOWN_RECIPIENT,
            format!(
                "no known node is called {node:?} (nor has an id starting so); `rossipctl peers \
                 --all` lists them"
            ),
            json!({ "candidates": listed(candidates.iter()) }),
        )),
        several => Err(ErrorObject::with_data(
            code::AMBIGUOUS_RECIPIENT,
            format!(
                "{} nodes fit {node:?}; name one by its id (or a longer prefix of it)",
                several.len()
            ),
            json!({ "candidates": listed(several.iter().copied()) }),
        )),
    }
}

fn listed<'a>(candidates: impl Iterator<Item = &'a Candidate>) -> Vec<Value> {
    candidates
        .take(MAX_CANDIDATES)
        .map(|c| json!({"name": c.name, "id": c.id.to_string()}))
        .collect()
}

/// The JSON-RPC error for a refused direct message (`message` is its
/// text).
pub fn error_object(e: &DirectError, message: String) -> ErrorObject {
    match e {
        DirectError::UnknownRecipient(_) => ErrorObject::with_data(
            code::UNKNOWN_RECIPIENT,
            message,
            json!({ "candidates": [] }),
        ),
        DirectError::Empty => ErrorObject::new(code::EMPTY_MESSAGE, message),
        DirectError::Channel(_) => ErrorObject::new(code::INVALID_CHANNEL, message),
        DirectError::Author => ErrorObject::new(code::INVALID_PARAMS, message),
        DirectError::Left => ErrorObject::new(code::NOT_IN_CLUSTER, message),
        DirectError::TooLarge { size, max } => ErrorObject::with_data(
            code::DIRECT_REFUSED,
            message,
            json!({"reason": "too_large", "size": size, "max_bytes": max}),
        ),
        DirectError::QueueFull { .. } => ErrorObject::with_data(
            code::DIRECT_REFUSED,
            message,
            json!({"reason": "queue_full"}),
        ),
        // The RPC edge always names a recipient.
        DirectError::NoRecipient => ErrorObject::new(code::INTERNAL_ERROR, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates() -> Vec<Candidate> {
        vec![
            Candidate {
                id: NodeId([0xab; 16]),
                name: "alpha".into(),
            },
            Candidate {
                id: NodeId([0xac; 16]),
                name: "twin".into(),
            },
            Candidate {
                id: NodeId([0xcd; 16]),
                name: "twin".into(),
            },
        ]
    }

    #[test]
    fn names_users_and_id_prefixes_resolve() {
        let all = candidates();
        let (node, user) = resolve("alpha", &all).expect("by name");
        assert_eq!((node.name.as_str(), user), ("alpha", None));
        let (node, user) = resolve("bob@alpha", &all).expect("user@node");
        assert_eq!(
            (node.name.as_str(), user.as_deref()),
            ("alpha", Some("bob"))
        );
        let (node, _) = resolve("abab", &all).expect("id prefix");
        assert_eq!(node.name, "alpha");
        let (node, _) = resolve("CDCD", &all).expect("upper-case hex");
        assert_eq!(node.id, NodeId([0xcd; 16]));
    }

    #[test]
    fn unknown_and_ambiguous_list_candidates() {
        let all = candidates();
        let e = resolve("nobody", &all).expect_err("unknown");
        assert_eq!(e.code, code::UNKNOWN_RECIPIENT);
        assert_eq!(
            e.data
                .as_ref()
                .map(|d| d["candidates"].as_array().map(Vec::len)),
            Some(Some(3))
        );
        let e = resolve("twin", &all).expect_err("a shared name");
        assert_eq!(e.code, code::AMBIGUOUS_RECIPIENT);
        assert_eq!(
            e.data
                .as_ref()
                .map(|d| d["candidates"].as_array().map(Vec::len)),
            Some(Some(2))
        );
        let e = resolve("a", &all).expect_err("too short a prefix");
        assert_eq!(e.code, code::UNKNOWN_RECIPIENT);
        let e = resolve("@alpha", &all).expect_err("no user");
        assert_eq!(e.code, code::INVALID_PARAMS);
        for bad in ["bad user@alpha", "b\u{202e}ob@alpha", "tab\tbed@alpha"] {
            let e = resolve(bad, &all).expect_err("not a user name");
            assert_eq!(e.code, code::INVALID_PARAMS, "{bad:?}");
        }
    }
}

//! `presence.set` and `who`, and the views of presence the API shows.
//!
//! `presence.set` registers the calling connection's user (from its peer
//! credentials, see `caller`), so it needs to know which connection calls:
//! the connection routes every call through [`call`], which hands it its
//! [`PresenceSession`]; the connection ends the registration when it
//! closes.

use rossip_proto::presence::{Availability, MAX_STATUS_BYTES};
use rossip_proto::rpc::{
    self, ErrorObject, PresenceSetParams, PresenceSetResult, PresenceStateName, PresenceView,
    WhoResult,
};
use serde_json::Value;

use super::methods::{self, Framing, Output};
use super::speaker::Speaker;
use crate::driver::{Handle, PresenceEntry, PresenceRequest, PresenceSession, PresenceUpdate};

/// Runs `method` for the connection of `session`: `presence.set` here,
/// anything else in `methods`.
pub async fn call(
    method: &str,
    params: Value,
    driver: &Handle,
    speaker: &Speaker,
    framing: Framing,
    session: PresenceSession,
) -> Result<Output, ErrorObject> {
    if method == rpc::method::PRESENCE_SET {
        let result = set(methods::parse(params)?, driver, speaker, session).await?;
        return methods::to_value(result).map(Output::Value);
    }
    methods::call(method, params, driver, speaker, framing).await
}

/// A connection's presence registration (the local socket's, or a
/// WebSocket's): whether it registered its user with `presence.set`, and,
/// when it goes (the connection closed, or its task panicked), the driver
/// is told that its user left the chat.
#[derive(Debug)]
pub struct PresenceRegistration {
    /// The connection's session, which `set` registers under.
    pub session: PresenceSession,
    /// Whether `set` was called (so there is something to end).
    pub registered: bool,
    driver: Handle,
}

impl PresenceRegistration {
    /// A connection's registration, not registered yet.
    pub fn new(driver: Handle) -> PresenceRegistration {
        PresenceRegistration {
            session: PresenceSession::next(),
            registered: false,
            driver,
        }
    }
}

impl Drop for PresenceRegistration {
    fn drop(&mut self) {
        if self.registered {
            self.driver.presence_end_detached(self.session);
        }
    }
}

/// `presence.set`: `speaker` is in a chat on the connection of `session`
/// (until that ends).
pub async fn set(
    p: PresenceSetParams,
    driver: &Handle,
    speaker: &Speaker,
    session: PresenceSession,
) -> Result<PresenceSetResult, ErrorObject> {
    let availability = match p.state {
        None => None,
        Some(PresenceStateName::Available) => Some(Availability::Available),
        Some(PresenceStateName::Away) => Some(Availability::Away),
        Some(PresenceStateName::Offline) => {
            return Err(ErrorObject::new(
                rpc::code::INVALID_PARAMS,
                "state must be \"available\" or \"away\" (close the connection to go offline)",
            ));
        }
    };
    let status = match p.status {
        Some(Some(text)) => Some(checked_status(text)?),
        other => other,
    };
    if speaker.user.is_empty() {
        return Err(ErrorObject::new(
            rpc::code::INVALID_REQUEST,
            "this connection's user is unknown (no peer credentials): presence needs one",
        ));
    }
    let now = driver
        .presence_set(PresenceRequest {
            session,
            user: speaker.user.clone(),
            availability,
            status,
        })
        .await?;
    Ok(PresenceSetResult {
        user: now.user,
        state: state_name(now.availability),
        status: now.status,
    })
}

/// A status line as given, if acceptable: at most [`MAX_STATUS_BYTES`],
/// no control characters; an empty one clears the status.
fn checked_status(text: String) -> Result<Option<String>, ErrorObject> {
    if text.len() > MAX_STATUS_BYTES {
        return Err(ErrorObject::with_data(
            rpc::code::INVALID_PARAMS,
            format!(
                "status is {} bytes; the limit is {MAX_STATUS_BYTES}",
                text.len()
            ),
            serde_json::json!({"size": text.len(), "max_bytes": MAX_STATUS_BYTES}),
        ));
    }
    // As other nodes check it (a status they would refuse is refused here).
    if text.chars().any(rossip_proto::nick::is_unprintable) {
        return Err(ErrorObject::new(
            rpc::code::INVALID_PARAMS,
            "status must not contain control or formatting characters (newlines, escapes, \
             direction overrides)",
        ));
    }
    Ok((!text.is_empty()).then_some(text))
}

/// `who`.
pub async fn who(driver: &Handle) -> Result<WhoResult, ErrorObject> {
    let entries = driver.who().await?;
    Ok(WhoResult {
        users: entries.iter().map(|e| presence_view(e, None)).collect(),
    })
}

/// An entry as the API shows it; `offline_since` makes it `offline`.
pub fn presence_view(entry: &PresenceEntry, offline_since: Option<u64>) -> PresenceView {
    let presence = &entry.presence;
    let (state, since) = match offline_since {
        Some(since) => (PresenceStateName::Offline, since),
        None => (state_name(presence.availability), presence.since_ms),
    };
    PresenceView {
        user: presence.user.clone(),
        node: entry.node.to_string(),
        node_name: entry.node_name.clone(),
        from: rpc::user_at_node(&presence.user, &entry.node_name),
        nick: presence.nick.clone(),
        state,
        status: presence.status.clone().filter(|_| offline_since.is_none()),
        since,
        local: entry.local,
    }
}

/// A change as the `presence` event shows it.
pub fn presence_event(update: &PresenceUpdate) -> rpc::EventBody {
    rpc::EventBody::Presence {
        presence: presence_view(&update.entry, update.offline_since),
        previous: update.previous.map(state_name),
    }
}

fn state_name(availability: Availability) -> PresenceStateName {
    match availability {
        Availability::Available => PresenceStateName::Available,
        Availability::Away => PresenceStateName::Away,
    }
}

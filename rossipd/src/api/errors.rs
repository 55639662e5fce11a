//! The one place where the driver's [`CoreError`]s become JSON-RPC error
//! objects with the codes README.md documents.

use rossip_proto::PublishError;
use rossip_proto::node::KeyOpError;
use rossip_proto::rpc::{ErrorObject, code};

use crate::driver::CoreError;

/// The JSON-RPC error for `e`.
pub fn error_object(e: &CoreError) -> ErrorObject {
    let message = e.to_string();
    match e {
        CoreError::ShuttingDown => ErrorObject::new(code::NOT_IN_CLUSTER, message),
        CoreError::Publish(publish) => match publish {
            PublishError::Empty => ErrorObject::new(code::EMPTY_MESSAGE, message),
            PublishError::TooLarge { size, max } => ErrorObject::with_data(
                code::MESSAGE_TOO_LARGE,
                message,
                serde_json::json!({"size": size, "max_bytes": max}),
            ),
            PublishError::Channel(_) => ErrorObject::new(code::INVALID_CHANNEL, message),
            PublishError::Left => ErrorObject::new(code::NOT_IN_CLUSTER, message),
            PublishError::Busy { retry_after } => busy(message, *retry_after),
            PublishError::Author => ErrorObject::new(code::INVALID_PARAMS, message),
            // The RPC edge never makes a channel draft with a recipient.
            PublishError::Direct => ErrorObject::new(code::INTERNAL_ERROR, message),
        },
        CoreError::Busy { retry_after, .. } => busy(message, *retry_after),
        CoreError::Channel(_) => ErrorObject::new(code::INVALID_CHANNEL, message),
        CoreError::State(_) | CoreError::NotDurable { .. } | CoreError::KeyringNotSaved(_) => {
            ErrorObject::new(code::INTERNAL_ERROR, message)
        }
        CoreError::UnknownMessage(_) => ErrorObject::new(code::UNKNOWN_MESSAGE_ID, message),
        CoreError::ForeignCursor { .. } | CoreError::CursorAhead { .. } => {
            ErrorObject::new(code::FOREIGN_CURSOR, message)
        }
        CoreError::KeyOp(KeyOpError::NotEncrypted) => {
            ErrorObject::new(code::NO_CLUSTER_KEY, message)
        }
        CoreError::KeyOp(KeyOpError::Keyring(_)) => {
            ErrorObject::new(code::KEYRING_REFUSED, message)
        }
        CoreError::Nick(_) | CoreError::NoUser => ErrorObject::new(code::INVALID_NICK, message),
        CoreError::NickTable(crate::nicks::NickTableError::Full) => {
            ErrorObject::new(code::INVALID_NICK, message)
        }
        CoreError::NickTable(crate::nicks::NickTableError::NotSaved(_)) => {
            ErrorObject::new(code::INTERNAL_ERROR, message)
        }
        CoreError::Direct(direct) => super::direct::error_object(direct, message),
    }
}

fn busy(message: String, retry_after: std::time::Duration) -> ErrorObject {
    ErrorObject::with_data(
        code::BUSY,
        message,
        serde_json::json!({
            "retry_after_ms": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)
        }),
    )
}

impl From<CoreError> for ErrorObject {
    fn from(e: CoreError) -> ErrorObject {
        error_object(&e)
    }
}

//! The API both front ends serve, JSON-RPC on the local socket (`rpc`) and
//! HTTP/WebSocket (`http`): one typed handler per operation, taking the
//! API's param DTOs (`rossip_proto::rpc`) and returning its result DTOs or
//! an [`ErrorObject`] from the one table of error codes, so a rule (who may
//! see a direct message, how `after` and `since` combine, which nick a send
//! carries) is written once. A front end only frames requests and answers
//! and follows subscriptions through a [`follow::Follower`]; each maps
//! errors to its own wire (a JSON-RPC error object, an HTTP status).
//!
//! [`ErrorObject`]: rossip_proto::rpc::ErrorObject

pub mod chat;
pub mod direct;
pub mod errors;
pub mod follow;
pub mod history;
pub mod keys;
pub mod methods;
pub mod presence;
pub mod speaker;
pub mod subscription;

/// Serializing our own types cannot fail; a fixed error text anyway.
pub fn encode(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| r#"{"code":-32603,"message":"cannot encode the answer"}"#.to_owned())
}

//! The methods for people chatting: `channels` (what channels this node
//! holds messages of) and `nick` (the caller's display name).

use rossip_proto::rpc::{self, ChannelView, ChannelsResult, ErrorObject, NickParams, NickResult};
use serde_json::Value;

use super::caller::Speaker;
use super::methods::{NoParams, parse, to_value};
use crate::driver::{Handle, NickChange};

/// `channels {}`.
pub async fn channels(params: Value, driver: &Handle) -> Result<Value, ErrorObject> {
    let NoParams {} = parse(params)?;
    let channels = driver.channels().await?;
    to_value(ChannelsResult {
        channels: channels
            .into_iter()
            .map(|c| ChannelView {
                name: c.name,
                messages: c.messages,
                last_ts: c.last_ts,
            })
            .collect(),
    })
}

/// `nick {nick?, clear?}`, for the user the kernel says is calling: the
/// params cannot name another.
pub async fn nick(params: Value, driver: &Handle, speaker: &Speaker) -> Result<Value, ErrorObject> {
    let p: NickParams = parse(params)?;
    let change = match (p.nick, p.clear) {
        (Some(_), true) => {
            return Err(ErrorObject::new(
                rpc::code::INVALID_PARAMS,
                "`nick` and `clear` cannot be combined: set a display name or clear it",
            ));
        }
        (Some(nick), false) => NickChange::Set(nick),
        (None, true) => NickChange::Clear,
        (None, false) => NickChange::Show,
    };
    let nick = driver.nick(speaker.user.clone(), change).await?;
    to_value(NickResult {
        user: speaker.user.clone(),
        nick,
    })
}

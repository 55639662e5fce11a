//! The methods for people chatting: `channels` (what channels this node
//! holds messages of) and `nick` (the caller's display name).

use rossip_proto::rpc::{self, ChannelView, ChannelsResult, ErrorObject, NickParams, NickResult};

use super::speaker::Speaker;
use crate::driver::{Handle, NickChange};

/// `channels {}`.
pub async fn channels(driver: &Handle) -> Result<ChannelsResult, ErrorObject> {
    let channels = driver.channels().await?;
    Ok(ChannelsResult {
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
pub async fn nick(
    p: NickParams,
    driver: &Handle,
    speaker: &Speaker,
) -> Result<NickResult, ErrorObject> {
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
    Ok(NickResult {
        user: speaker.user.clone(),
        nick,
    })
}

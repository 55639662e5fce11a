//! Display names: the driver owns the table of its users' display names
//! ([`crate::nicks`]) and stamps each `send` with its author's, so that
//! the name a message carries is the one its user chose when sending it,
//! covered by the node's signature like the rest of the author.

use rossip_proto::message::Draft;
use rossip_proto::nick::normalize_nick;

use super::{CoreError, Driver};

/// What a `nick` call does to its user's display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NickChange {
    /// Only tell it.
    Show,
    /// Set it to this (not yet normalized).
    Set(String),
    /// Remove it.
    Clear,
}

impl Driver {
    /// Carries out `change` for `user`; the display name after it.
    pub(super) fn on_nick(
        &mut self,
        user: &str,
        change: NickChange,
    ) -> Result<Option<String>, CoreError> {
        if user.is_empty() {
            // Only a connection whose peer credentials could not be read
            // has no user: there is nobody to name.
            return Err(CoreError::NoUser);
        }
        match change {
            NickChange::Show => {}
            NickChange::Set(raw) => {
                let nick = normalize_nick(&raw)?;
                self.nicks.set(user, Some(nick))?;
            }
            NickChange::Clear => self.nicks.set(user, None)?,
        }
        Ok(self.nicks.get(user).map(str::to_owned))
    }

    /// `draft` with its author's display name, as this node's table has it
    /// now (a caller's own value is never used).
    pub(super) fn with_nick(&self, mut draft: Draft) -> Draft {
        draft.author.nick = if draft.author.user.is_empty() {
            None
        } else {
            self.nicks.get(&draft.author.user).map(str::to_owned)
        };
        draft
    }
}

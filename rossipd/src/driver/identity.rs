//! Another running node uses this node's id (a copy of the state directory
//! on another machine) and keeps it: this node takes a new key, saves it,
//! and carries on as a new node — same process, history, subscriptions and
//! RPC connections (see `rossip_proto::node::IdentityInUse` for the rule
//! that decides which copy yields).

use std::time::Instant;

use rossip_proto::node::IdentityInUse;

use super::Driver;
use crate::views;

impl Driver {
    /// Gives the node a new key and generation and records them. Messages
    /// this run sent under the shared id are logged by range: the other copy
    /// may have sent other messages under the same ids, and every node
    /// keeps the first one of each id it gets, so some of these may not
    /// have reached every node (and some of the other's not this one).
    pub(super) fn on_identity_in_use(&mut self, conflict: IdentityInUse) {
        let (key, saved) = match self.state.replace_node_key() {
            Ok(made) => made,
            Err(e) => {
                // No randomness: nothing to switch to. The node stays out of
                // membership (it ignores SWIM until it has a new id).
                tracing::error!(
                    id = %conflict.id,
                    theirs = %conflict.theirs,
                    "cannot make a new node key ({e:#}); this node cannot take part in the cluster \
                     while the node at {} uses its id: stop one of the two and give it a new identity \
                     (see the README)",
                    conflict.theirs
                );
                return;
            }
        };
        let path = self.state.path().join(crate::state::NODE_KEY_FILE);
        match saved {
            Ok(()) => {}
            Err(e) => tracing::error!(
                path = %path.display(),
                "cannot save the new node key ({e:#}): this run uses it, but a restart brings back \
                 the id the node at {} uses",
                conflict.theirs
            ),
        }
        let generation = match self.state.next_generation(views::unix_ms_now()) {
            Ok(generation) => generation,
            Err(e) => {
                tracing::warn!("cannot record the new generation: {e:#}");
                conflict.our_generation.saturating_add(1)
            }
        };
        let old_key = self.node.public_key();
        self.node.take_new_identity(key, generation, Instant::now());
        self.store.set_own(self.node.id());
        // mDNS must stop sending others to this address under the old id.
        self.announce();
        // Its own name, pinned to the old key, would flag this node itself.
        self.pins
            .repin_own(&self.info.name, &old_key, &self.node.public_key());
        match conflict.sent {
            Some((first, last)) => tracing::warn!(
                old = %conflict.id,
                first,
                last,
                count = last - first + 1,
                "this run sent messages {old}-{first} to {old}-{last} under the shared id: where the \
                 other node sent messages with the same ids, each node kept only the first it got, so \
                 some of these may be missing on some nodes (they are in this node's history)",
                old = conflict.id,
            ),
            None => tracing::info!("this run sent no message under the shared id"),
        }
        tracing::warn!(
            old = %conflict.id,
            new = %self.node.id(),
            ours = %conflict.ours,
            theirs = %conflict.theirs,
            key_file = %path.display(),
            "this node took a new identity: the node at {} keeps {}; this one ({}) is now {}",
            conflict.theirs,
            conflict.id,
            conflict.ours,
            self.node.id()
        );
    }
}

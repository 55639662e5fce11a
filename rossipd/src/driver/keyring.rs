//! The driver's side of key rotation (`keys.*`): apply a change here,
//! persist the keyring, send the change (or a query) to every member, and
//! route their answers to the RPC task that waits for them. Changes other
//! members make here are persisted and logged too.
//!
//! The keyring is saved in `<state dir>/keyring` after every change, in the
//! key file's format (mode 0600, written atomically); at start it
//! supersedes `--key-file` (see [`crate::keyfile::load_for_start`]).

use std::time::Instant;

use rossip_proto::NodeId;
use rossip_proto::node::{KeyChange, KeyringEvent, KeyringRequest};
use rossip_proto::rpc::KeyringView;
use rossip_proto::seal::Keyring;
use rossip_proto::wire::KeyOp;
use tokio::sync::{mpsc, oneshot};

use super::{CoreError, Driver};
use crate::hooks::{KeyFile, KeyFileContents, KeyReloadReport};
use crate::keyfile;

/// A keyring request sent to members: who was asked, and where their
/// answers arrive.
#[derive(Debug)]
pub struct KeysStarted {
    /// The id of the key a change concerns (none for a query).
    pub key: Option<String>,
    /// This node's keyring (after the change).
    pub local: KeyringView,
    /// The members asked, with their names.
    pub targets: Vec<(NodeId, String)>,
    /// Their answers ([`KeyringEvent::Report`] or [`KeyringEvent::Ack`]).
    pub answers: mpsc::Receiver<KeyringEvent>,
}

/// The answer channel of a `keys.*` command.
pub type KeysReply = oneshot::Sender<Result<KeysStarted, CoreError>>;

/// The API's view of a keyring.
pub fn keyring_view(keyring: &Keyring) -> KeyringView {
    KeyringView {
        primary: keyring.primary_id().to_string(),
        keys: keyring.ids().iter().map(ToString::to_string).collect(),
    }
}

impl Driver {
    /// `keys.list`: asks every member for its keyring.
    pub(super) fn on_keys_list(&mut self, reply: KeysReply, now: Instant) {
        let started = self
            .node
            .query_keyrings(now)
            .map_err(CoreError::KeyOp)
            .map(|request| self.route_answers(None, request));
        let _ = reply.send(started);
    }

    /// `keys.install|use|remove`: applies `op` here, saves the keyring, and
    /// sends `op` to every member. Nothing is sent if this node refuses it
    /// or cannot save it (a change lost at restart would cut it off).
    pub(super) fn on_key_op(&mut self, op: KeyOp, reply: KeysReply, now: Instant) {
        let change = match self.node.apply_key_op(&op) {
            Ok(change) => change,
            Err(e) => {
                let _ = reply.send(Err(CoreError::KeyOp(e)));
                return;
            }
        };
        tracing::info!(
            op = change.verb(),
            key = %change.id(),
            changed = change.changed(),
            "keyring changed over RPC; sending the change to every member"
        );
        if change.changed()
            && let Err(e) = self.save_keyring()
        {
            let _ = reply.send(Err(CoreError::KeyringNotSaved(format!("{e:#}"))));
            return;
        }
        self.announce();
        let started = self
            .node
            .broadcast_key_op(op, now)
            .map_err(CoreError::KeyOp)
            .map(|request| self.route_answers(Some(change), request));
        let _ = reply.send(started);
    }

    /// A keyring event from the node: an answer for a waiting RPC task, or
    /// a change another member made here.
    /// Saves the keyring if a member changed it in this flush, before the
    /// flush sends the acknowledgement: an "ok" then means "saved" (unless
    /// saving failed, which is logged as an error).
    pub(super) fn save_keyring_before_acks(&mut self, events: &[rossip_proto::Event]) {
        let changed_by = events.iter().find_map(|event| match event {
            rossip_proto::Event::Keyring(KeyringEvent::Changed { by, by_name, .. }) => {
                Some((by, by_name))
            }
            _ => None,
        });
        if let Some((by, by_name)) = changed_by
            && let Err(e) = self.save_keyring()
        {
            tracing::error!(
                // Empty when the sender was not a known member: left out.
                by = (!by_name.is_empty()).then_some(tracing::field::display(rossip_proto::log_text::LogText(by_name))),
                by_id = %by.short(),
                "cannot save the keyring after a change by a member: {e:#}; it was acknowledged, \
                 and a restart brings back the old keyring"
            );
        }
    }

    pub(super) fn on_keyring_event(&mut self, event: KeyringEvent) {
        match event {
            KeyringEvent::Changed {
                by,
                by_name,
                change,
            } => {
                tracing::info!(
                    by = (!by_name.is_empty()).then_some(tracing::field::display(rossip_proto::log_text::LogText(&by_name))),
                    by_id = %by.short(),
                    op = change.verb(),
                    key = %change.id(),
                    "keyring changed by a member"
                );
                // Saved already, before the acknowledgement left
                // (`save_keyring_before_acks`).
                self.announce();
            }
            KeyringEvent::Report { reply_to, .. } | KeyringEvent::Ack { reply_to, .. } => {
                if let Some(answers) = self.keyring_answers.get(&reply_to)
                    && answers.try_send(event).is_err()
                {
                    // The RPC task stopped waiting (timeout, closed connection).
                    self.keyring_answers.remove(&reply_to);
                }
            }
        }
    }

    /// SIGHUP: installs here the keys of the key file this node lacks, so
    /// that a key pushed to every node's key file is accepted everywhere.
    /// It never changes the sealing key nor removes one: both cut off
    /// members that are not ready, which `keys use` and `keys remove` check
    /// first; the report says when the file asks for either.
    pub(super) fn on_reload_keys(&mut self, file: KeyFileContents) -> KeyReloadReport {
        let mut report = KeyReloadReport::default();
        let Some(held) = self.node.keyring().cloned() else {
            if let Some(file) = file {
                report.not_applied.push(format!(
                    "key file {}: this daemon started without a cluster key; sealing gossip \
                     needs a restart",
                    file.path.display()
                ));
            }
            return report;
        };
        let Some(KeyFile {
            path,
            keyring: wanted,
            fresh,
        }) = file
        else {
            report.not_applied.push(
                "no key file is configured; the keyring is unchanged (`rossipctl keys` changes it)"
                    .to_owned(),
            );
            return report;
        };
        let mut installed = Vec::new();
        let mut not_again = Vec::new();
        for key in wanted.keys() {
            if held.contains(key.id()) {
                continue;
            }
            if !fresh.contains(&key.id()) {
                not_again.push(key.id().to_string());
                continue;
            }
            match self.node.apply_key_op(&KeyOp::Install(*key.bytes())) {
                Ok(change) if change.changed() => installed.push(key.id().to_string()),
                Ok(_) => {}
                Err(e) => report.not_applied.push(format!(
                    "key {} from {}: {e}",
                    key.id(),
                    path.display()
                )),
            }
        }
        if !installed.is_empty() {
            match self.save_keyring() {
                Ok(()) => report.applied.push(format!(
                    "installed key {} from {} (accepted; sealing still with {})",
                    installed.join(", "),
                    path.display(),
                    held.primary_id()
                )),
                Err(e) => report.applied.push(format!(
                    "installed key {} from {} for this run only: cannot save the keyring ({e:#})",
                    installed.join(", "),
                    path.display()
                )),
            }
            self.announce();
        }
        if !not_again.is_empty() {
            report.not_applied.push(format!(
                "key {} has been in {} all along but this node does not hold it (removed with \
                 `rossipctl keys remove`): not installed again; delete it from the key file, or \
                 `rossipctl keys install` it",
                not_again.join(", "),
                path.display()
            ));
        }
        let wanted_primary = wanted.primary_id();
        if wanted_primary != held.primary_id() && !not_again.contains(&wanted_primary.to_string()) {
            report.not_applied.push(if installed.contains(&wanted_primary.to_string()) {
                format!(
                    "{} seals with key {wanted_primary}, this node with {}: run `rossipctl keys \
                     use {wanted_primary}` once every member holds it",
                    path.display(),
                    held.primary_id()
                )
            } else {
                // Most likely a key file left behind by a rotation done with
                // `rossipctl keys`, whose saved keyring supersedes it: no
                // advice to roll back.
                format!(
                    "{} lists key {wanted_primary} first, but this node seals with {} (the \
                     keyring saved by `rossipctl keys` supersedes the key file); update the key \
                     file, or run `rossipctl keys use {wanted_primary}` if {wanted_primary} \
                     should seal again",
                    path.display(),
                    held.primary_id()
                )
            });
        }
        // The key this node seals with is never offered for removal.
        let extra: Vec<String> = held
            .ids()
            .into_iter()
            .filter(|id| !wanted.contains(*id) && *id != held.primary_id())
            .map(|id| id.to_string())
            .collect();
        if !extra.is_empty() {
            report.not_applied.push(format!(
                "key {} is held but not in {}: `rossipctl keys remove ID` removes a key from \
                 every member",
                extra.join(", "),
                path.display()
            ));
        }
        if report.applied.is_empty() && report.not_applied.is_empty() {
            report
                .applied
                .push(format!("keyring unchanged: it matches {}", path.display()));
        }
        report
    }

    /// Registers where the answers to `request` go.
    fn route_answers(&mut self, change: Option<KeyChange>, request: KeyringRequest) -> KeysStarted {
        // Forget requests whose RPC task stopped waiting.
        self.keyring_answers.retain(|_, tx| !tx.is_closed());
        let (tx, answers) = mpsc::channel(request.targets.len().max(1));
        self.keyring_answers.insert(request.stamp, tx);
        KeysStarted {
            key: change.map(|c| c.id().to_string()),
            local: self.node.keyring().map(keyring_view).unwrap_or_default(),
            targets: request.targets,
            answers,
        }
    }

    /// Writes the keyring to `<state dir>/keyring`.
    fn save_keyring(&self) -> anyhow::Result<()> {
        match self.node.keyring() {
            Some(keyring) => keyfile::save(self.state.path(), keyring),
            None => Ok(()),
        }
    }
}

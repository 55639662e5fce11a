//! Recording when messages arrive at a daemon, as a subscriber sees them.
//!
//! A [`MessageRecorder`] is a background thread with its own connection to
//! one daemon: it sends `subscribe {events: ["message"]}` and stamps every
//! `message` notification with the `Instant` it was read, so delivery
//! figures do not depend on how often the benchmark looks. It reads in its
//! own thread to keep up with the daemon; when the daemon still drops
//! events for it, the `lagged` notices are counted ([`MessageRecorder::lagged`]):
//! the records are then incomplete, which is a loss of measurement, not
//! necessarily of delivery.
//!
//! Messages are recognised by their text: the *key* is the text up to the
//! first space (the rest is padding), and the *tag* is the key up to its
//! first `/`. Arrivals are grouped by tag so a benchmark run can count its
//! own messages cheaply ([`MessageRecorder::count`]) and then take them
//! out ([`MessageRecorder::take`]), which keeps memory bounded over runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rossip_proto::rpc::EventBody;
use serde_json::json;

use crate::events::ATTACH_TIMEOUT;
use crate::rpc::{CALL_TIMEOUT, RpcClient};

/// How often the thread retries connecting while the daemon starts.
const CONNECT_RETRY: Duration = Duration::from_millis(5);

/// How long one read waits before the thread checks whether to stop.
const READ_SLICE: Duration = Duration::from_millis(100);

/// The key of a message text: up to the first space.
pub fn key_of(text: &str) -> &str {
    text.split_once(' ').map_or(text, |(key, _)| key)
}

/// The tag of a key: up to the first `/`.
pub fn tag_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(tag, _)| tag)
}

#[derive(Debug, Default)]
struct Shared {
    /// When the subscription was confirmed.
    subscribed: Option<Instant>,
    /// First arrival of each key, by tag.
    arrivals: HashMap<String, HashMap<String, Instant>>,
    /// Copies of a key that arrived again (the daemon delivered it twice).
    duplicates: u64,
    /// Events the daemon said it dropped for this subscriber.
    lagged: u64,
    /// Why the stream ended, if it did.
    ended: Option<String>,
}

/// Records the arrival of every message at one daemon; see the module docs.
/// The thread stops when the recorder is dropped or the daemon closes the
/// connection.
#[derive(Debug)]
pub struct MessageRecorder {
    node: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MessageRecorder {
    /// Starts recording the messages delivered by the daemon called `node`
    /// listening on `socket`; returns at once. Use
    /// [`MessageRecorder::wait_subscribed`] before sending.
    pub fn start(node: &str, socket: &Path) -> std::io::Result<MessageRecorder> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let socket = socket.to_path_buf();
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("msg-recorder-{node}"))
                .spawn(move || record(&socket, &shared, &stop))?
        };
        Ok(MessageRecorder {
            node: node.to_owned(),
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The daemon's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `Ok(true)` once subscribed; `Err` says why it never will be.
    pub fn subscribed(&self) -> Result<bool, String> {
        let shared = self.lock();
        match (&shared.subscribed, &shared.ended) {
            (Some(_), _) => Ok(true),
            (None, Some(why)) => Err(format!("{}: {why}", self.node)),
            (None, None) => Ok(false),
        }
    }

    /// When `key` first arrived, if it did.
    pub fn arrival(&self, key: &str) -> Option<Instant> {
        self.lock()
            .arrivals
            .get(tag_of(key))
            .and_then(|keys| keys.get(key))
            .copied()
    }

    /// How many distinct keys with `tag` arrived.
    pub fn count(&self, tag: &str) -> usize {
        self.lock().arrivals.get(tag).map_or(0, HashMap::len)
    }

    /// Removes and returns the arrivals of `tag`.
    pub fn take(&self, tag: &str) -> HashMap<String, Instant> {
        self.lock().arrivals.remove(tag).unwrap_or_default()
    }

    /// Copies that arrived a second time so far (should stay 0).
    pub fn duplicates(&self) -> u64 {
        self.lock().duplicates
    }

    /// Events the daemon reported dropped for this subscriber so far.
    pub fn lagged(&self) -> u64 {
        self.lock().lagged
    }

    /// Why the stream ended, if it did (the daemon exited or never answered).
    pub fn ended(&self) -> Option<String> {
        self.lock().ended.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic in the thread cannot leave the records half-updated.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for MessageRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn record(socket: &Path, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let lock = || shared.lock().unwrap_or_else(PoisonError::into_inner);
    let mut client = match attach(socket, stop) {
        Ok(client) => client,
        Err(why) => {
            lock().ended = Some(why);
            return;
        }
    };
    lock().subscribed = Some(Instant::now());
    while !stop.load(Ordering::Relaxed) {
        match client.try_next_event(READ_SLICE) {
            Ok(None) => {}
            Ok(Some(event)) => {
                let at = Instant::now();
                let mut shared = lock();
                match event.event {
                    EventBody::Message { message } => {
                        let key = key_of(&message.text);
                        let keys = shared.arrivals.entry(tag_of(key).to_owned()).or_default();
                        if keys.contains_key(key) {
                            shared.duplicates += 1;
                        } else {
                            keys.insert(key.to_owned(), at);
                        }
                    }
                    EventBody::Lagged { dropped, .. } => shared.lagged += dropped,
                    EventBody::Peer { .. }
                    | EventBody::Presence { .. }
                    | EventBody::DirectStatus { .. } => {}
                }
            }
            Err(e) => {
                lock().ended = Some(format!("event stream ended: {e}"));
                return;
            }
        }
    }
}

/// Connects (retrying while the socket is not there yet) and subscribes.
fn attach(socket: &Path, stop: &AtomicBool) -> Result<RpcClient, String> {
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    let mut client = loop {
        match RpcClient::connect(socket) {
            Ok(client) => break client,
            Err(e) if Instant::now() >= deadline || stop.load(Ordering::Relaxed) => {
                return Err(format!("cannot connect to {}: {e}", socket.display()));
            }
            Err(_) => std::thread::sleep(CONNECT_RETRY),
        }
    };
    match client.try_call("subscribe", json!({"events": ["message"]}), CALL_TIMEOUT) {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(error)) => Err(format!("subscribe refused: {error:?}")),
        Err(e) => Err(format!("subscribe: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_tags() {
        assert_eq!(key_of("r1000s/0.17 xxxx"), "r1000s/0.17");
        assert_eq!(tag_of("r1000s/0.17"), "r1000s");
        assert_eq!(key_of("plain"), "plain");
        assert_eq!(tag_of("plain"), "plain");
    }
}

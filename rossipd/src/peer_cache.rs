//! The addresses of the last known live members, kept in the state
//! directory (`peers`), so that a restarted node greets them the moment it
//! starts instead of waiting for mDNS. mDNS responders multicast a record at
//! most once a second, so a node restarted soon after its peers announced
//! would otherwise wait about a second to be found; and a `--no-mdns` node
//! finds its cluster again even if its `--join` seeds are down. A cached
//! address is only a hint, like an mDNS answer: whoever answers there must
//! still speak rossip, in this cluster.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::state::write_atomically;

/// File name in the state directory.
pub const FILE: &str = "peers";

/// Most addresses kept (the newest-seen first); a handful is enough to find
/// a cluster, whose members are then gossiped on.
pub const MAX_ENTRIES: usize = 64;

/// How often the list is saved when it changed.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// The cache file of `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Reads the cached addresses. A missing file is an empty list; an
/// unreadable file or a bad line is logged and skipped, never fatal: the
/// cache only saves time.
pub fn load(state_dir: &Path) -> Vec<SocketAddr> {
    let path = path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("cannot read the peer cache {}: {e}", path.display());
            return Vec::new();
        }
    };
    let mut addrs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<SocketAddr>() {
            Ok(addr) if addrs.len() < MAX_ENTRIES => addrs.push(addr),
            Ok(_) => break,
            Err(e) => tracing::warn!("{}:{}: ignoring {line:?}: {e}", path.display(), number + 1),
        }
    }
    addrs
}

/// Replaces the cache with `addrs` (at most [`MAX_ENTRIES`] are written).
pub fn save(state_dir: &Path, addrs: &[SocketAddr]) -> anyhow::Result<()> {
    let mut text = String::new();
    for addr in addrs.iter().take(MAX_ENTRIES) {
        text.push_str(&addr.to_string());
        text.push('\n');
    }
    write_atomically(&path(state_dir), text.as_bytes())
}

/// The cache as the driver keeps it: what the file holds, and the write in
/// progress (writes sync to disk, so they run in the blocking pool, one at a
/// time: two could otherwise race on the temporary file).
#[derive(Debug)]
pub struct PeerCache {
    dir: PathBuf,
    /// Every live address at the last save (the file holds the first
    /// [`MAX_ENTRIES`] of them by recency).
    saved: BTreeSet<SocketAddr>,
    writing: Option<JoinHandle<()>>,
}

impl PeerCache {
    /// Loads the cache of `state_dir`; returns it and the addresses to greet.
    pub fn open(state_dir: &Path) -> (PeerCache, Vec<SocketAddr>) {
        let addrs = load(state_dir);
        let cache = PeerCache {
            dir: state_dir.to_owned(),
            saved: addrs.iter().copied().collect(),
            writing: None,
        };
        (cache, addrs)
    }

    /// Starts saving `live` (address and when last heard from) if it
    /// differs from what was saved and no write is in progress. Never saves
    /// an empty list: alone (just started, or the network is down), the old
    /// list is still the best guess of where the cluster is.
    pub fn save_if_changed(&mut self, live: Vec<(Option<Instant>, SocketAddr)>) {
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let set: BTreeSet<SocketAddr> = live.iter().map(|(_, addr)| *addr).collect();
        if set.is_empty() || set == self.saved {
            return;
        }
        self.saved = set;
        self.writing = Some(self.spawn_write(live));
    }

    /// Saves `live` (unless empty) and waits for it, after any write in
    /// progress: the last word at exit.
    pub async fn save_now(&mut self, live: Vec<(Option<Instant>, SocketAddr)>) {
        if let Some(writing) = self.writing.take() {
            let _ = writing.await;
        }
        if live.is_empty() {
            return;
        }
        self.saved = live.iter().map(|(_, addr)| *addr).collect();
        let _ = self.spawn_write(live).await;
    }

    fn spawn_write(&self, mut live: Vec<(Option<Instant>, SocketAddr)>) -> JoinHandle<()> {
        // Most recently heard first: those are kept when there are many.
        live.sort_by(|a, b| b.cmp(a));
        let addrs: Vec<SocketAddr> = live.into_iter().map(|(_, addr)| addr).collect();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = save(&dir, &addrs) {
                tracing::warn!("cannot save the peer cache: {e:#}");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_skips_what_does_not_parse() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(load(dir.path()).is_empty(), "no file: no peers");
        let addrs: Vec<SocketAddr> = ["10.77.0.12:7465", "[fe80::1]:7465"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        save(dir.path(), &addrs).expect("save");
        assert_eq!(load(dir.path()), addrs);

        std::fs::write(
            path(dir.path()),
            "10.77.0.12:7465\nnot an address\n\n10.77.0.13:1\n",
        )
        .expect("write");
        let loaded = load(dir.path());
        assert_eq!(loaded.len(), 2, "{loaded:?}");

        let many: Vec<SocketAddr> = (0..100u16)
            .map(|port| SocketAddr::from(([10, 77, 0, 12], 1000 + port)))
            .collect();
        save(dir.path(), &many).expect("save");
        assert_eq!(load(dir.path()), many[..MAX_ENTRIES]);
    }
}

//! The addresses of the last known live members, kept in the state
//! directory (`peers`), so that a restarted node greets them the moment it
//! starts instead of waiting for mDNS. mDNS responders multicast a record at
//! most once a second, so a node restarted soon after its peers announced
//! would otherwise wait about a second to be found; and a `--no-mdns` node
//! finds its cluster again even if its `--join` seeds are down. A cached
//! address is only a hint, like an mDNS answer: whoever answers there must
//! still speak rossip, in this cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

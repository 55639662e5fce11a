//! A packet capture on a namespace's interfaces: every frame that crosses
//! any of them (the switch namespace of a [`crate::netns::Lan`] sees every
//! frame between the hosts), kept in memory for tests that assert what does
//! or does not travel in the clear.
//!
//! An `AF_PACKET` socket (`ETH_P_ALL`) created inside the namespace by a
//! helper thread (a socket stays in the namespace it was made in), read by
//! a thread of its own until the sniffer is dropped. No tcpdump needed.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most bytes kept; frames past this are counted, not kept.
pub const MAX_CAPTURED_BYTES: usize = 256 * 1024 * 1024;

/// A running capture.
#[derive(Debug)]
pub struct Sniffer {
    stop: Arc<AtomicBool>,
    captured: Arc<Mutex<Vec<u8>>>,
    frames: Arc<AtomicU64>,
    reader: Option<JoinHandle<()>>,
}

impl Sniffer {
    /// Starts capturing every frame on every interface of network
    /// namespace `ns` (as `ip netns add` names it).
    pub fn start(ns: &str) -> Result<Sniffer, String> {
        let socket = packet_socket_in(ns)?;
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(100)),
        )
        .map_err(|e| format!("SO_RCVTIMEO on the capture socket: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let frames = Arc::new(AtomicU64::new(0));
        let reader = {
            let (stop, captured, frames) = (stop.clone(), captured.clone(), frames.clone());
            std::thread::spawn(move || read_frames(&socket, &stop, &captured, &frames))
        };
        Ok(Sniffer {
            stop,
            captured,
            frames,
            reader: Some(reader),
        })
    }

    /// Frames captured so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Whether `needle` occurs in any frame captured so far.
    pub fn saw(&self, needle: &[u8]) -> bool {
        let captured = self.captured.lock().unwrap_or_else(PoisonError::into_inner);
        // Frames are stored back to back, so a needle could straddle two:
        // a false "seen", never a false "not seen".
        captured.windows(needle.len()).any(|w| w == needle)
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn read_frames(socket: &OwnedFd, stop: &AtomicBool, captured: &Mutex<Vec<u8>>, frames: &AtomicU64) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match rustix::net::recv(socket, &mut buf[..], rustix::net::RecvFlags::empty()) {
            Ok((len, _)) => {
                frames.fetch_add(1, Ordering::Relaxed);
                let mut captured = captured.lock().unwrap_or_else(PoisonError::into_inner);
                if captured.len() + len <= MAX_CAPTURED_BYTES {
                    captured.extend_from_slice(buf.get(..len).unwrap_or_default());
                }
            }
            // The receive timeout: check `stop` again.
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
}

/// An `AF_PACKET` socket for every protocol, made inside `ns`.
fn packet_socket_in(ns: &str) -> Result<OwnedFd, String> {
    let path = std::path::Path::new("/run/netns").join(ns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file =
                    File::open(&path).map_err(|e| format!("open {}: {e}", path.display()))?;
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| format!("enter network namespace {ns}: {e}"))?;
                rustix::net::socket(
                    rustix::net::AddressFamily::PACKET,
                    rustix::net::SocketType::RAW,
                    Some(rustix::net::eth::ALL),
                )
                .map_err(|e| format!("AF_PACKET socket in {ns}: {e}"))
            })
            .join()
            .map_err(|_| format!("the thread entering {ns} panicked"))?
    })
}

//! Noticing that stdout's reader went away while nothing is being written.
//!
//! A follower (`tail -f`, `events`) spends its time blocked on the daemon's socket. On a
//! quiet bus it writes nothing, so the broken pipe that ends it on the next write may never
//! come, and `rossipctl tail -f | head -1` would hang after `head` exited. poll(2) on stdout
//! with no requested events reports only errors and hang-ups: a pipe whose reader closed
//! reports POLLERR, a socket whose peer closed POLLHUP. A terminal or a regular file reports
//! neither, so there is nothing to detect there, and nothing needs detecting.
//!
//! [`on_reader_gone`] watches on its own thread, so the caller's loop stays as it is; a
//! terminal front end can pass a callback that tells its event loop to quit.

use std::io;
#[cfg(unix)]
use std::os::fd::AsFd;

/// Blocks until `fd` reports that its reader is gone (POLLERR or POLLHUP). For a terminal
/// or a regular file that never happens. An error means it cannot be watched (not open).
#[cfg(unix)]
pub fn wait_until_reader_gone(fd: impl AsFd) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, poll};
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::empty())];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
        let revents = fds[0].revents();
        if revents.contains(PollFlags::NVAL) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the file descriptor is not open",
            ));
        }
        if revents.intersects(PollFlags::ERR | PollFlags::HUP) {
            return Ok(());
        }
    }
}

/// Runs `on_gone` on a background thread once stdout's reader has gone away. Does nothing
/// when stdout cannot be watched (closed, or not a Unix file descriptor).
pub fn on_reader_gone(on_gone: impl FnOnce() + Send + 'static) {
    #[cfg(unix)]
    {
        let watcher = std::thread::Builder::new()
            .name("stdout-watch".to_owned())
            .spawn(move || {
                if wait_until_reader_gone(io::stdout()).is_ok() {
                    on_gone();
                }
            });
        // Without the thread, a follower still ends on its next write to the closed pipe.
        drop(watcher);
    }
    #[cfg(not(unix))]
    drop(on_gone);
}

/// For followers: exit 0 as soon as stdout's reader has gone, as on a failed write to it
/// (the reader had what it wanted; see `main`). Nothing is lost by not unwinding: a
/// follower holds nothing that must be flushed or removed, and the daemon sees the
/// connection close.
pub fn exit_when_reader_gone() {
    on_reader_gone(|| std::process::exit(0));
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_pipe_whose_reader_closed_is_noticed() {
        let (reader, writer) = io::pipe().expect("pipe");
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || done_tx.send(wait_until_reader_gone(&writer).is_ok()));
        drop(reader);
        let gone = done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the watcher returns once the reader is closed");
        assert!(gone);
    }

    #[test]
    fn a_socket_whose_peer_closed_is_noticed() {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        drop(theirs);
        wait_until_reader_gone(&ours).expect("hang-up reported");
    }
}

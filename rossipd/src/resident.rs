//! Gives back the file pages start-up mapped in, so that an idle daemon's
//! resident memory is what it uses while idle.
//!
//! Most of an idle rossipd's RSS was file-backed (11 of 12 MiB, measured
//! with `/proc/PID/smaps_rollup` at N=10): the kernel maps code in 64 KiB
//! chunks around each page touched ("fault-around"), and start-up runs code
//! that never runs again (argument and config parsing, the store's
//! integrity check, mDNS set-up), so nearly all of the 8 MiB of machine
//! code stayed mapped. Those pages are clean copies of the program file:
//! they stay in the page cache (shared by every process of the same
//! program), and dropping them from this process only means that code run
//! again is mapped in again, one 4 KiB page at a time ([`MADV_RANDOM`]
//! turns fault-around off for these mappings).
//!
//! Only read-only private file mappings whose pages are all unmodified
//! (`Anonymous: 0 kB` in `/proc/self/smaps`) are touched, so no byte of
//! state can be lost: the program's text and read-only data, and those of
//! the shared libraries. The relocated data (RELRO) has modified pages and
//! is left alone.
//!
//! [`MADV_RANDOM`]: libc::MADV_RANDOM

use std::io;

/// How long after start the pages are given back: by then the daemon has
/// its peers and runs its idle loop.
pub const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// One mapping that can be dropped: its address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CleanMapping {
    start: usize,
    end: usize,
}

/// Drops this process's clean read-only file pages (see the module docs);
/// returns how many bytes of mappings were given back.
pub fn release_clean_file_pages() -> io::Result<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in clean_mappings(&smaps) {
        advise(mapping)?;
        released += mapping.end - mapping.start;
    }
    Ok(released)
}

/// The mappings of `smaps` that are private, not writable, backed by a
/// file, and hold no modified (anonymous) page.
fn clean_mappings(smaps: &str) -> Vec<CleanMapping> {
    let mut found = Vec::new();
    let mut current: Option<CleanMapping> = None;
    for line in smaps.lines() {
        if let Some(mapping) = parse_header(line) {
            current = mapping;
            continue;
        }
        // The mapping's modified pages: `Anonymous:       0 kB`.
        if let Some(kb) = line.strip_prefix("Anonymous:")
            && let Some(mapping) = current.take()
            && kb.split_whitespace().next() == Some("0")
        {
            found.push(mapping);
        }
    }
    found
}

/// `Some(mapping)` for the header line of a clean-candidate mapping,
/// `Some(None)` for the header of any other mapping, `None` for a field
/// line. A header reads `start-end perms offset dev inode [path]`.
#[allow(clippy::option_option)]
fn parse_header(line: &str) -> Option<Option<CleanMapping>> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?.as_bytes();
    let _offset = fields.next()?;
    let _device = fields.next()?;
    let inode = fields.next()?;
    let candidate =
        perms.len() == 4 && perms[1] == b'-' && perms[3] == b'p' && inode != "0" && end > start;
    Some(candidate.then_some(CleanMapping { start, end }))
}

/// Turns fault-around off for `mapping` and drops its pages from this
/// process.
#[allow(unsafe_code)]
fn advise(mapping: CleanMapping) -> io::Result<()> {
    let addr = mapping.start as *mut libc::c_void;
    let len = mapping.end - mapping.start;
    for advice in [libc::MADV_RANDOM, libc::MADV_DONTNEED] {
        // SAFETY: the range is a whole mapping of this process, read from
        // /proc/self/smaps, private, not writable and without a modified
        // page: its contents are the file's, which MADV_DONTNEED maps in
        // again on the next access; MADV_RANDOM only changes how. No Rust
        // reference can see a difference.
        if unsafe { libc::madvise(addr, len, advice) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_taken() {
        let smaps = "\
5600000000-5600001000 r--p 00000000 fd:00 42 /usr/bin/rossipd
Rss:                   4 kB
Anonymous:             0 kB
5600001000-5600009000 r-xp 00001000 fd:00 42 /usr/bin/rossipd
Anonymous:             0 kB
5600009000-560000a000 r--p 00009000 fd:00 42 /usr/bin/rossipd
Anonymous:             4 kB
560000a000-560000b000 rw-p 0000a000 fd:00 42 /usr/bin/rossipd
Anonymous:             0 kB
7f00000000-7f00001000 r--p 00000000 00:00 0 
Anonymous:             0 kB
7f00002000-7f00003000 r-xs 00000000 fd:00 7 /dev/shm/x
Anonymous:             0 kB
";
        assert_eq!(
            clean_mappings(smaps),
            [
                CleanMapping {
                    start: 0x56_0000_0000,
                    end: 0x56_0000_1000
                },
                CleanMapping {
                    start: 0x56_0000_1000,
                    end: 0x56_0000_9000
                },
            ]
        );
    }

    #[test]
    fn this_process_can_release_and_keep_running() {
        let released = release_clean_file_pages().expect("madvise");
        assert!(released > 0);
        // Code and constants come back on use.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}

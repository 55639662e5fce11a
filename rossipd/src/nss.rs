//! Users and groups looked up through NSS (`getpwuid_r`, `getgrnam_r`), so
//! that entries from systemd-userdb, LDAP and the like count, not only those
//! in `/etc/passwd` and `/etc/group`.
//!
//! Hand-written over `libc` because the daemon needs two lookups, and a
//! crate for them would bring a second libc binding for little.

use std::ffi::CStr;
use std::io;

/// Largest buffer offered for one entry (a group with thousands of members
/// needs more than the first 1 KiB).
const MAX_BUFFER: usize = 1 << 20;

/// The gid of group `name` (`None`: no such group).
#[allow(unsafe_code)]
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let c_name =
        std::ffi::CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    with_growing_buffer(|buf| {
        let mut group = std::mem::MaybeUninit::<libc::group>::uninit();
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid and exclusive for the whole call:
        // `c_name` is NUL-terminated, `group` and `found` are writable locals,
        // `buf` has `buf.len()` writable bytes. getgrnam_r is the re-entrant
        // variant: it keeps no pointer past the call.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                group.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return (rc, None);
        }
        // SAFETY: on success with an entry, getgrnam_r initialised `group`
        // (and pointed `found` at it); the gid is a plain integer, and the
        // strings it points into `buf` are not read.
        (rc, Some(unsafe { group.assume_init_ref().gr_gid }))
    })
}

/// The name of the user `uid` (`None`: no such user).
#[allow(unsafe_code)]
pub fn user_name(uid: u32) -> io::Result<Option<String>> {
    with_growing_buffer(|buf| {
        let mut user = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: as in `group_id`: `user` and `found` are writable locals,
        // `buf` has `buf.len()` writable bytes, and getpwuid_r keeps no
        // pointer past the call.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                user.as_mut_ptr(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() {
            return (rc, None);
        }
        // SAFETY: on success with an entry, getpwuid_r initialised `user`,
        // whose `pw_name` points to a NUL-terminated string inside `buf`,
        // which outlives this read (the name is copied out).
        let name = unsafe { CStr::from_ptr(user.assume_init_ref().pw_name) };
        (rc, Some(name.to_string_lossy().into_owned()))
    })
}

/// Runs a re-entrant NSS lookup with a buffer that grows while the lookup
/// says it is too small (ERANGE); `lookup` returns its error number and
/// what it found.
fn with_growing_buffer<T>(
    mut lookup: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> io::Result<Option<T>> {
    let mut buf_len = 1024;
    loop {
        let mut buf: Vec<libc::c_char> = vec![0; buf_len];
        match lookup(&mut buf) {
            (0, found) => return Ok(found),
            (libc::ERANGE, _) if buf_len < MAX_BUFFER => buf_len *= 4,
            // POSIX lets these mean "no such entry" too.
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => return Ok(None),
            (errno, _) => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_uid_and_group_by_name() {
        assert_eq!(
            user_name(0).expect("look up uid 0").as_deref(),
            Some("root")
        );
        assert_eq!(group_id("root").expect("look up group root"), Some(0));
        assert_eq!(
            group_id("no-such-group-rossip-test").expect("look up a missing group"),
            None
        );
    }
}

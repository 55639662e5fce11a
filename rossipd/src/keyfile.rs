//! The cluster key file: one key per line (64 hex digits, from `rossipctl
//! keygen`), the first the one datagrams are sealed with, the others still
//! accepted (a rotation in progress). Blank lines and `#` comments are
//! ignored. The file must be readable by its owner only: a key anyone on
//! the host can read protects nothing.
//!
//! Under systemd, `LoadCredential=rossip.key:/etc/rossip/rossip.key` puts
//! it in `$CREDENTIALS_DIRECTORY`, where rossipd finds it without a flag.
//!
//! After every keyring change (`rossipctl keys …`, by this node or another
//! member) the daemon saves its keyring as `<state dir>/keyring`, in the
//! same format; at start that file, when it exists, supersedes the key
//! file (as Serf's keyring file does), so a rotation survives restarts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rossip_proto::seal::{ClusterKey, Keyring};

/// The credential name rossipd looks for in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "rossip.key";

/// The keyring file in the state directory.
pub const STATE_FILE_NAME: &str = "keyring";

/// The keyring to start with: `<state dir>/keyring` if it exists (saved by
/// the last keyring change; it supersedes the key file, which is said in
/// the log), else the key file (`configured`, else a systemd credential),
/// else none.
pub fn load_for_start(
    state_dir: &Path,
    configured: Option<&Path>,
) -> anyhow::Result<Option<Keyring>> {
    let key_file = resolve(configured);
    let saved = state_dir.join(STATE_FILE_NAME);
    if saved.exists() {
        let keyring = load(&saved)?;
        match &key_file {
            // A key file that says something else is most likely an
            // operator's revocation by the file (the per-node procedure)
            // that the saved keyring would silently undo: said loudly.
            Some(path) if load(path).map(|file| file.ids()).ok() != Some(keyring.ids()) => {
                tracing::warn!(
                    "KEY FILE IGNORED: the key file {} differs from the keyring {} saved by the last \
                     `keys` change, which supersedes it (keys {}). If you edited the key file to rotate \
                     or revoke a key, remove {} and restart",
                    path.display(),
                    saved.display(),
                    keyring
                        .ids()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    saved.display()
                );
            }
            Some(path) => tracing::info!(
                "using the keyring {} saved by the last `keys` change; it supersedes the key \
                 file {} (remove it to start from the key file again)",
                saved.display(),
                path.display()
            ),
            None => tracing::info!(
                "using the keyring {} saved by the last `keys` change (gossip stays encrypted \
                 without --key-file; remove it to run unencrypted)",
                saved.display()
            ),
        }
        return Ok(Some(keyring));
    }
    key_file.map(|path| load(&path)).transpose()
}

/// Saves `keyring` as `<state dir>/keyring` (mode 0600, written to a
/// temporary file, synced, then renamed over the old one), in the key
/// file's format: the sealing key first.
pub fn save(state_dir: &Path, keyring: &Keyring) -> anyhow::Result<()> {
    let mut text = String::from(
        "# rossip cluster keys, saved by rossipd after every `rossipctl keys` change.\n\
         # The first seals; the others are still accepted. This file supersedes --key-file.\n",
    );
    for key in keyring.keys() {
        text.push_str(&key.to_hex());
        text.push('\n');
    }
    crate::state::write_atomically(&state_dir.join(STATE_FILE_NAME), text.as_bytes())
}

/// The key file to use: the configured one, else a systemd credential.
pub fn resolve(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return Some(path.to_owned());
    }
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let path = Path::new(&dir).join(CREDENTIAL_NAME);
    path.exists().then_some(path)
}

/// Reads and checks the key file at `path`.
pub fn load(path: &Path) -> anyhow::Result<Keyring> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    if !meta.is_file() {
        bail!("the key file {} is not a regular file", path.display());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the key file {} can be read or written by group or others (mode {mode:03o}); \
             a cluster key must be private: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = ClusterKey::from_hex(line)
            .with_context(|| format!("{} line {}", path.display(), number + 1))?;
        keys.push(key);
    }
    let mut keys = keys.into_iter();
    let Some(primary) = keys.next() else {
        bail!(
            "the key file {} holds no key (make one with `rossipctl keygen -o FILE`)",
            path.display()
        );
    };
    Ok(Keyring::new(primary, keys.collect()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("rossip.key");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn reads_keys_in_order_skipping_comments() {
        let dir = tempfile::tempdir().expect("dir");
        let path = write(
            dir.path(),
            &format!("# current\n{KEY_A}\n\n# previous\n{KEY_B}\n"),
            0o600,
        );
        let ring = load(&path).expect("load");
        let a = ClusterKey::from_hex(KEY_A).expect("a").id();
        let b = ClusterKey::from_hex(KEY_B).expect("b").id();
        assert_eq!(ring.ids(), vec![a, b]);
        assert_eq!(ring.primary_id(), a);
    }

    #[test]
    fn a_saved_keyring_round_trips_and_supersedes_the_key_file() {
        let dir = tempfile::tempdir().expect("dir");
        let key_file = write(dir.path(), &format!("{KEY_A}\n"), 0o600);
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        let from_file = load_for_start(&state, Some(&key_file))
            .expect("load")
            .expect("a keyring");
        let a = ClusterKey::from_hex(KEY_A).expect("a").id();
        assert_eq!(from_file.ids(), vec![a]);
        let b = ClusterKey::from_hex(KEY_B).expect("b");
        let rotated = Keyring::new(b.clone(), vec![ClusterKey::from_hex(KEY_A).expect("a")]);
        save(&state, &rotated).expect("save");
        let saved = state.join(STATE_FILE_NAME);
        let mode = std::fs::metadata(&saved)
            .expect("saved")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        for configured in [Some(key_file.as_path()), None] {
            let ring = load_for_start(&state, configured)
                .expect("load")
                .expect("a keyring");
            assert_eq!(ring.ids(), vec![b.id(), a], "the saved keyring wins");
        }
        assert!(
            !state.join("keyring.tmp").exists(),
            "no temporary file left"
        );
    }

    #[test]
    fn refuses_shared_files_bad_keys_and_empty_files() {
        let dir = tempfile::tempdir().expect("dir");
        let shared = write(dir.path(), KEY_A, 0o644);
        let err = format!("{:#}", load(&shared).expect_err("0644"));
        assert!(
            err.contains("mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        let bad = write(dir.path(), "not a key\n", 0o600);
        let err = format!("{:#}", load(&bad).expect_err("bad"));
        assert!(
            err.contains("line 1") && err.contains("64 hexadecimal"),
            "{err}"
        );
        let empty = write(dir.path(), "# nothing\n", 0o400);
        let err = format!("{:#}", load(&empty).expect_err("empty"));
        assert!(err.contains("holds no key"), "{err}");
    }
}

//! `rossipctl keygen`: make a new cluster key, and print it or write it to a private file.
//!
//! rossipd refuses a key file that group or others may read, and `keygen > FILE` makes a
//! file with the umask's mode (usually 0644); `-o FILE` creates it with mode 0600 from the
//! start, so the key is never readable by others, not even for a moment.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rossip_proto::seal::{ClusterKey, KEY_BYTES};
use serde::Serialize;

use super::Ctx;
use crate::cli::KeygenArgs;
use crate::output::{Out, note};

/// Mode of a key file `-o` writes: what rossipd demands of `--key-file`.
const KEY_FILE_MODE: u32 = 0o600;

/// What `--json` prints: the key itself, or where it was written.
#[derive(Debug, Serialize)]
struct KeygenResult<'a> {
    /// The key, 64 hex digits (not with `-o`: it is in the file).
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    /// The key id, 8 hex digits, as `status` and `keys list` show it.
    id: &'a str,
    /// With `-o`: the file written.
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a Path>,
}

/// Makes 32 random bytes, as 64 hex digits (the format of `--key-file`), and prints them
/// or writes them to `-o FILE`; the key id goes to stderr (with `--json`, into the object).
pub fn run(ctx: &Ctx, out: &mut Out<impl Write>, args: KeygenArgs) -> anyhow::Result<()> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot get random bytes from the operating system")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = ClusterKey::new(&bytes).id().to_string();
    match &args.output {
        Some(path) => {
            write_key_file(path, &hex, args.force)?;
            if ctx.json {
                out.json(&KeygenResult {
                    key: None,
                    id: &id,
                    file: Some(path),
                })?;
            } else {
                note(format_args!(
                    "wrote a new cluster key to {} (mode 600), key id {id}; copy it to every \
                     node, readable by rossipd's user only, and start rossipd with --key-file",
                    path.display()
                ));
            }
        }
        None if ctx.json => out.json(&KeygenResult {
            key: Some(&hex),
            id: &id,
            file: None,
        })?,
        None => {
            out.line(&hex)?;
            note(format_args!(
                "key id {id}; rossipd wants the key in a file only its owner can read \
                 (`rossipctl keygen -o FILE` makes one), passed with --key-file FILE"
            ));
        }
    }
    Ok(())
}

/// Writes `key` and a newline to a new file at `path`, mode 0600. An existing `path` is
/// refused, or with `force` replaced by renaming a new file over it (so the old file's
/// mode, owner and other hard links play no part); a symbolic link is refused either way.
fn write_key_file(path: &Path, key: &str, force: bool) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => bail!(
            "{} is a symbolic link; refusing to write a key through it (remove it, or choose \
             another file)",
            path.display()
        ),
        Ok(meta) if meta.is_dir() => bail!("{} is a directory", path.display()),
        Ok(_) if !force => bail!(
            "{} exists; refusing to overwrite a key file (--force replaces it)",
            path.display()
        ),
        Ok(_) => {
            let temp = temp_path_beside(path)?;
            let written = create_private(&temp, key).and_then(|()| {
                fs::rename(&temp, path)
                    .with_context(|| format!("cannot replace {}", path.display()))
            });
            if written.is_err() {
                let _ = fs::remove_file(&temp);
            }
            written
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_private(path, key),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    }
}

/// Creates `path` (which must not exist: never follows a link) with mode 0600 and writes
/// the key to it, synced to disk.
fn create_private(path: &Path, key: &str) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(KEY_FILE_MODE);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    // The umask can only take bits away from 0600, but say so explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(KEY_FILE_MODE))
            .with_context(|| format!("cannot set mode 600 on {}", path.display()))?;
    }
    file.write_all(format!("{key}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))
}

/// A fresh name in `path`'s directory, for a file to rename over `path`.
fn temp_path_beside(path: &Path) -> anyhow::Result<PathBuf> {
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot get random bytes from the operating system")?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut temp = name.to_os_string();
    temp.push(format!(".new-{suffix}"));
    Ok(path.with_file_name(temp))
}

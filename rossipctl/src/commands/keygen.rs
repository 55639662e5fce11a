//! `rossipctl keygen`: print a new cluster key.

use std::io::Write;

use anyhow::Context as _;
use rossip_proto::seal::{ClusterKey, KEY_BYTES};

use crate::output::{Out, warn};

/// Prints 32 random bytes as 64 hex digits (the format of `--key-file`),
/// and the key's id on stderr.
pub fn run(out: &mut Out<impl Write>) -> anyhow::Result<()> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("cannot get random bytes from the operating system")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = ClusterKey::new(&bytes).id();
    out.line(&hex)?;
    warn(format_args!(
        "key id {id}; put the key in a file only its owner can read (chmod 600) on every \
         node, and start rossipd with --key-file FILE"
    ));
    Ok(())
}

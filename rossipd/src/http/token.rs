//! Web login tokens: one per user, derived from a secret kept in the
//! state directory, so nothing per user is stored and a token cannot be
//! made without reading that file.
//!
//! A token is `base64url(user) "." hex(HMAC-SHA256(secret, "rossip web v1\0" user))`:
//! the user part says whom it speaks for, the MAC that the daemon minted it.
//! The secret is [`SECRET_FILE`] in the state directory: 32 random bytes,
//! created (mode 0600) the first time the gateway starts, and refused, like
//! the cluster key file, when group or others may read or write it. Deleting
//! it (and restarting) revokes every token.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use rossip_proto::message::is_user_name;
use sha2::Sha256;

/// The secret's file name in the state directory.
pub const SECRET_FILE: &str = "http-secret";

/// Bytes of secret.
const SECRET_BYTES: usize = 32;

/// What the MAC covers before the user name: a version, so that a later
/// token format can never be mistaken for this one.
const DOMAIN: &[u8] = b"rossip web v1\0";

type HmacSha256 = Hmac<Sha256>;

/// The gateway's token secret.
#[derive(Clone)]
pub struct TokenKey {
    secret: [u8; SECRET_BYTES],
}

/// Never prints the secret.
impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    /// A key from raw secret bytes.
    #[cfg(test)]
    pub fn from_secret(secret: [u8; SECRET_BYTES]) -> TokenKey {
        TokenKey { secret }
    }

    /// Reads `<state_dir>/http-secret`, creating it (mode 0600, fresh random
    /// bytes) when it does not exist. A file others may read or write is
    /// refused rather than fixed: someone may already have read it.
    pub fn load_or_create(state_dir: &Path) -> anyhow::Result<TokenKey> {
        let path = state_dir.join(SECRET_FILE);
        if !path.exists() {
            let mut secret = [0u8; SECRET_BYTES];
            getrandom::fill(&mut secret).map_err(|e| {
                anyhow::anyhow!("cannot get random bytes for {}: {e}", path.display())
            })?;
            crate::state::write_atomically(&path, &secret)?;
            tracing::info!("created the web login secret {}", path.display());
            return Ok(TokenKey { secret });
        }
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read the web login secret {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "the web login secret {} is not a regular file",
                path.display()
            );
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "the web login secret {} can be read or written by group or others (mode \
                 {mode:03o}); whoever read it can log in as anyone: remove it (rossipd makes a \
                 new one, and every web login link must be fetched again with `rossipctl web`)",
                path.display()
            );
        }
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read the web login secret {}", path.display()))?;
        let secret: [u8; SECRET_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "the web login secret {} holds {} bytes, not {SECRET_BYTES}; remove it and \
                 rossipd makes a new one",
                path.display(),
                bytes.len()
            )
        })?;
        Ok(TokenKey { secret })
    }

    /// The token that logs `user` in.
    pub fn token_for(&self, user: &str) -> String {
        let mac = self.mac(user).finalize().into_bytes();
        let mut token = URL_SAFE_NO_PAD.encode(user);
        token.push('.');
        for byte in mac {
            token.push_str(&format!("{byte:02x}"));
        }
        token
    }

    /// The user `token` logs in, if this key minted it. The MAC is checked
    /// in constant time (hmac's `verify_slice`), so a guess learns nothing
    /// from how long the refusal took.
    pub fn verify(&self, token: &str) -> Option<String> {
        let (user, mac) = token.split_once('.')?;
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(user).ok()?).ok()?;
        if !is_user_name(&user) {
            return None;
        }
        let mac = decode_hex(mac)?;
        self.mac(&user).verify_slice(&mac).ok()?;
        Some(user)
    }

    fn mac(&self, user: &str) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(DOMAIN);
        mac.update(user.as_bytes());
        mac
    }
}

/// Lower- or upper-case hex to bytes; `None` for anything else. Hand-written:
/// two lines, for one 64-digit field.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn key(byte: u8) -> TokenKey {
        TokenKey::from_secret([byte; SECRET_BYTES])
    }

    #[test]
    fn a_token_names_its_user_and_verifies() {
        let token = key(1).token_for("ann");
        let (user, mac) = token.split_once('.').expect("a dot");
        assert_eq!(user, "YW5u", "base64url of the user, no padding");
        assert_eq!(mac.len(), 64);
        assert!(
            mac.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(key(1).verify(&token).as_deref(), Some("ann"));
    }

    /// The MAC is the documented one: HMAC-SHA256 over the domain and the
    /// user (so that another implementation can mint the same tokens).
    #[test]
    fn the_mac_is_hmac_sha256_over_the_domain_and_the_user() {
        let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(&[7; 32]).expect("key");
        mac.update(b"rossip web v1\0ann");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(key(7).token_for("ann"), format!("YW5u.{want}"));
    }

    #[test]
    fn forged_and_malformed_tokens_are_refused() {
        let ann = key(1).token_for("ann");
        assert_eq!(key(2).verify(&ann), None, "another secret");
        // Ann's MAC with Bob's name.
        let (_, mac) = ann.split_once('.').expect("a dot");
        assert_eq!(key(1).verify(&format!("Ym9i.{mac}")), None);
        let mut flipped = ann.clone();
        let last = flipped.pop().expect("a digit");
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(key(1).verify(&flipped), None);
        for bad in [
            "",
            ".",
            "YW5u",
            "YW5u.",
            "YW5u.zz",
            "!!.00",
            &ann[..ann.len() - 1],
        ] {
            assert_eq!(key(1).verify(bad), None, "{bad:?}");
        }
        // A user name rossipd would never mint (a control character).
        let odd = key(1).token_for("a\u{7}b");
        assert_eq!(key(1).verify(&odd), None);
    }

    #[test]
    fn upper_case_hex_is_accepted_too() {
        let token = key(3).token_for("bob").to_ascii_uppercase();
        // The user part is case-sensitive base64: put it back.
        let (_, mac) = token.split_once('.').expect("a dot");
        assert_eq!(
            key(3).verify(&format!("Ym9i.{mac}")).as_deref(),
            Some("bob")
        );
    }

    #[test]
    fn the_secret_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let made = TokenKey::load_or_create(dir.path()).expect("created");
        let path = dir.path().join(SECRET_FILE);
        let meta = std::fs::metadata(&path).expect("the file");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let again = TokenKey::load_or_create(dir.path()).expect("read back");
        assert_eq!(made.token_for("ann"), again.token_for("ann"));
    }

    #[test]
    fn a_secret_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        TokenKey::load_or_create(dir.path()).expect("created");
        let path = dir.path().join(SECRET_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let e = TokenKey::load_or_create(dir.path()).expect_err("refused");
        assert!(format!("{e:#}").contains("mode 640"), "{e:#}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, b"short").expect("write");
        let e = TokenKey::load_or_create(dir.path()).expect_err("refused");
        assert!(format!("{e:#}").contains("5 bytes"), "{e:#}");
    }
}

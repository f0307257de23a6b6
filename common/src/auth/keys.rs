//! A node's identity: its Ed25519 key pair ([`NodeKey`], kept in a key file
//! of mode 0600) and the public half that names it ([`PublicKey`], written
//! `ed25519:<64 hex digits>` in trust files and statuses).

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::hex::{decode_hex, hex_lower};

/// Largest key file `load` reads; a real one is 82 bytes.
const MAX_KEY_FILE: u64 = 4096;
/// How a key file starts.
const KEY_FILE_PREFIX: &str = "ed25519-secret:";
/// How a public key is written.
const PUBLIC_PREFIX: &str = "ed25519:";
pub const KEYGEN_HINT: &str = "make one with `ipdc-submit keygen`";
/// What to do about a secret file the program may not read.
pub const UNREADABLE_HINT: &str = "let the user this program runs as read it (the packaged agent runs as `ipdc`: chown root:ipdc FILE; chmod 0640 FILE)";

/// A node's secret signing key. `Debug` shows only the public key.
#[derive(Clone)]
pub struct NodeKey(SigningKey);

/// A node's public key: what trust files list and signatures name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub(super) [u8; 32]);

impl NodeKey {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<NodeKey, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| format!("the OS random generator failed, cannot make a key: {e}"))?;
        Ok(NodeKey(SigningKey::from_bytes(&seed)))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub(super) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Reads a key file written by [`NodeKey::save`]. Errors name the file and
    /// say what to do.
    pub fn load(path: &Path) -> Result<NodeKey, String> {
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| {
            let hint =
                if e.kind() == std::io::ErrorKind::PermissionDenied { UNREADABLE_HINT } else { KEYGEN_HINT };
            format!("cannot read the key file {shown}: {e}; {hint}")
        })?;
        let mut raw = Vec::with_capacity(96);
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut raw)
            .map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
        let bad = |why: &str| {
            format!(
                "{shown} is not an IPDC key file ({why}; expected `{KEY_FILE_PREFIX}` and 64 hex digits); {KEYGEN_HINT}"
            )
        };
        let text = std::str::from_utf8(raw.trim_ascii()).map_err(|_| bad("not text"))?;
        let hex = text.strip_prefix(KEY_FILE_PREFIX).ok_or_else(|| bad("no prefix"))?;
        let mut seed = [0u8; 32];
        decode_hex(hex.as_bytes(), &mut seed).ok_or_else(|| bad("not 64 hex digits"))?;
        Ok(NodeKey(SigningKey::from_bytes(&seed)))
    }

    /// Writes the key file, mode 0600 from creation on. Never overwrites a file.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("{shown} already exists; not overwriting it with a new key (remove it first to replace the key)")
            } else {
                format!("cannot create the key file {shown}: {e}")
            }
        })?;
        let text = format!("{KEY_FILE_PREFIX}{}\n", hex_lower(&self.0.to_bytes()));
        if let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.sync_all()) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(format!("cannot write the key file {shown}: {e}"));
        }
        Ok(())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.public())
    }
}

impl PublicKey {
    /// Parses `ed25519:<64 lowercase or uppercase hex digits>`.
    pub fn parse(s: &str) -> Result<PublicKey, String> {
        let bad = || format!("{s:?} is not a public key (expected {PUBLIC_PREFIX} and 64 hex digits)");
        let hex = s.strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let mut k = [0u8; 32];
        decode_hex(hex.to_ascii_lowercase().as_bytes(), &mut k).ok_or_else(bad)?;
        VerifyingKey::from_bytes(&k).map_err(|_| format!("{s:?} is not a valid Ed25519 public key"))?;
        Ok(PublicKey(k))
    }

    pub(super) fn verifying(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex_lower(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_private_and_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("node.key");
        let k = NodeKey::generate().unwrap();
        k.save(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(NodeKey::load(&path).unwrap().public(), k.public());
        let e = NodeKey::generate().unwrap().save(&path).unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(NodeKey::load(&path).unwrap().public(), k.public(), "the first key stays");
    }

    #[test]
    fn bad_key_files_and_public_keys_give_named_errors() {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in
            [("short", "ed25519-secret:abcd\n"), ("noprefix", &"ab".repeat(32)), ("bin", "\u{0}\u{1}")]
        {
            let p = d.path().join(name);
            std::fs::write(&p, text).unwrap();
            let e = NodeKey::load(&p).unwrap_err();
            assert!(e.contains(name) && e.contains("keygen"), "{e}");
        }
        let e = NodeKey::load(&d.path().join("missing")).unwrap_err();
        assert!(e.contains("missing") && e.contains("keygen"), "{e}");
        let k = NodeKey::generate().unwrap().public();
        assert_eq!(PublicKey::parse(&k.to_string()).unwrap(), k);
        assert_eq!(PublicKey::parse(&k.to_string().to_uppercase().replace("ED25519", "ed25519")).unwrap(), k);
        for bad in ["", "ed25519:", "rsa:00", &k.to_string()[..70], &format!("{k}00")] {
            assert!(PublicKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k");
        let k = NodeKey::generate().unwrap();
        k.save(&path).unwrap();
        let secret = std::fs::read_to_string(&path).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(secret.trim().trim_start_matches(KEY_FILE_PREFIX)), "{shown}");
        assert!(shown.contains(&k.public().to_string()));
    }
}

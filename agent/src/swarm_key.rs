//! Which private IPFS network the board's node is in: the fingerprint of
//! its `swarm.key` (kubo's pre-shared key), said in the status so that a
//! user sees at a glance which boards share a network. Only a hash of the
//! key leaves the board, never the key.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where kubo keeps it: `$IPFS_PATH/swarm.key`, else `~/.ipfs/swarm.key`.
pub fn default_path() -> PathBuf {
    let repo = std::env::var_os("IPFS_PATH")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ipfs")))
        .unwrap_or_else(|| PathBuf::from(".ipfs"));
    repo.join("swarm.key")
}

/// The key's fingerprint (the first 8 bytes of the SHA-256 of its 32
/// bytes, in hex), None when there is no file: the node is then in the
/// public network, unless its key is elsewhere.
pub fn fingerprint(path: &Path) -> Result<Option<String>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("swarm key {}: {e}", path.display())),
    };
    let bad = |why: &str| {
        format!(
            "swarm key {}: {why}: it should hold three lines, /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits",
            path.display()
        )
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("/key/swarm/psk/1.0.0/") {
        return Err(bad("its first line is not /key/swarm/psk/1.0.0/"));
    }
    if lines.next() != Some("/base16/") {
        return Err(bad("only the /base16/ encoding is read here"));
    }
    let hex = lines.next().unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the key is not 64 hex digits"));
    }
    let key: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")).collect();
    let digest = Sha256::digest(&key);
    Ok(Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swarm_key_gives_a_fingerprint_and_none_or_a_bad_one_says_so() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("swarm.key");
        assert_eq!(fingerprint(&path).unwrap(), None);
        let key = "/key/swarm/psk/1.0.0/\n/base16/\n".to_string() + &"ab".repeat(32) + "\n";
        std::fs::write(&path, &key).unwrap();
        let a = fingerprint(&path).unwrap().unwrap();
        assert_eq!(a.len(), 16);
        // The key's case and the file's line ends do not change it; another key does.
        std::fs::write(
            &path,
            key.to_uppercase()
                .replace("/KEY/SWARM/PSK/1.0.0/", "/key/swarm/psk/1.0.0/")
                .replace("/BASE16/", "/base16/")
                .replace('\n', "\r\n"),
        )
        .unwrap();
        assert_eq!(fingerprint(&path).unwrap().unwrap(), a);
        std::fs::write(&path, key.replace("abab", "abac")).unwrap();
        assert_ne!(fingerprint(&path).unwrap().unwrap(), a);
        std::fs::write(&path, "-e /key/swarm/psk/1.0.0/\n/base16/\n".to_string() + &"ab".repeat(32)).unwrap();
        let e = fingerprint(&path).unwrap_err();
        assert!(e.contains("first line is not /key/swarm/psk/1.0.0/"), "{e}");
        assert!(!e.contains(&"ab".repeat(32)), "the key is never shown: {e}");
    }
}

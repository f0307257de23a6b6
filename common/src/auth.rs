//! Cluster authentication: the cluster key and the signed envelope every
//! control message travels in.
//!
//! The MQTT broker authenticates *clients*, but anyone who can publish on a
//! cluster's topics (a leaked broker password, a shared broker, a bridged
//! broker) could otherwise assign tasks to agents or forge their results. So a
//! cluster may have a shared secret, the [`ClusterKey`], and then every control
//! payload ([`crate::protocol`]'s JSON) is wrapped in an HMAC-SHA256 envelope by
//! a [`Sealer`] and unwrapped by an [`Opener`], which refuses anything unsigned,
//! forged, stale or replayed. This module owns the key file, the envelope
//! format and the replay cache; callers decide what to log and when.
//!
//! # Wire format
//!
//! With a key, a payload is one ASCII header line followed by the body bytes:
//!
//! ```text
//! IPDC-SIG1 <ts_ms> <nonce> <mac>\n<body>
//! ```
//!
//! - `ts_ms`: when it was sealed, Unix milliseconds, canonical decimal (1 to 20
//!   digits, no sign, no leading zero except `0` itself, fits a `u64`);
//! - `nonce`: 64 random bits, exactly 16 lowercase hex digits;
//! - `mac`: exactly 64 lowercase hex digits of
//!   `HMAC-SHA256(key, "IPDC-SIG1 <ts_ms> <nonce>\n" + body)` — the MAC covers the
//!   exact header bytes before it and the exact body bytes.
//!
//! Every field is strict (one spelling per value), so no byte of a sealed
//! payload can change without either failing to parse or failing the MAC. The
//! header line is at most [`MAX_HEADER_LINE`] bytes; a longer first line is
//! refused without being read further.
//!
//! Without a key (an *open* cluster) a payload is the bare body: JSON starting
//! with `{`.
//!
//! # Acceptance rules ([`Opener::open`])
//!
//! With a key, in this order: a payload not starting with `IPDC-SIG` is
//! [`Rejected::NoSignature`]; a header that does not parse (including another
//! envelope version) is [`Rejected::Malformed`]; a wrong MAC is
//! [`Rejected::BadMac`] (compared in constant time); a timestamp more than the
//! window (default [`DEFAULT_WINDOW`], ±120 s) from the receiver's clock is
//! [`Rejected::Stale`]; a `(ts, nonce)` pair already accepted is
//! [`Rejected::Replayed`]. The MAC is checked before the freshness rules, so
//! only key holders can reach the replay cache.
//!
//! Without a key, a bare body is accepted as is, and a signed payload is
//! accepted too (its header stripped, its body returned) so an open agent can
//! listen to a keyed submitter. Its MAC cannot be checked and its timestamp and
//! nonce are not checked either: without the key they prove nothing, and an
//! open cluster trusts whoever can publish anyway.
//!
//! # The replay cache is bounded
//!
//! Accepted `(ts, nonce)` pairs are kept ordered by timestamp. Pairs older than
//! the window are dropped (a replay of them is `Stale` anyway), and at most
//! [`REPLAY_CACHE_CAP`] pairs are kept (about 4 MB at most): past that the
//! oldest go. The trade-off: rather than forget a pair and accept its replay,
//! the opener remembers the newest timestamp it ever dropped and refuses
//! anything at or below it ([`Rejected::BeyondReplayCache`]). So replays are
//! never accepted; the price is that when key holders send more than the cap
//! within one window, a genuine but late message older than the cache's memory
//! is refused too (QoS 1 senders don't resend on that, so it is lost and the
//! controller's task timeouts take over).

use std::collections::BTreeSet;
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::protocol::MAX_MESSAGE_BYTES;

type HmacSha256 = Hmac<Sha256>;

/// The envelope's magic and version, the header line's first field.
const MAGIC: &[u8] = b"IPDC-SIG1";
/// What marks a payload as trying to be signed (any envelope version).
const SIGNED_PREFIX: &[u8] = b"IPDC-SIG";
/// Longest header line accepted, without its `\n`. A real one is at most
/// 9 + 1 + 20 + 1 + 16 + 1 + 64 = 112 bytes.
pub const MAX_HEADER_LINE: usize = 128;
/// Default tolerance between the sender's timestamp and the receiver's clock.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// Default hard cap of the replay cache, in `(ts, nonce)` pairs.
pub const REPLAY_CACHE_CAP: usize = 100_000;

/// Largest key file `load` reads; a real one is 65 bytes.
const MAX_KEY_FILE: u64 = 4096;
const KEYGEN_HINT: &str = "make one with `ipdc-submit keygen FILE`";

// ---------------------------------------------------------------------------
// The key

/// The cluster's shared secret: 32 random bytes.
///
/// Key file format: 64 lowercase hex characters and a newline, in a file of
/// mode 0600 (see [`ClusterKey::save`]). [`ClusterKey::load`] also accepts
/// uppercase hex and any surrounding whitespace. `Debug` shows only a short
/// fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// A new random key from the operating system's generator.
    ///
    /// # Panics
    /// If the OS random generator fails (see [`ClusterKey::try_generate`]).
    pub fn generate() -> ClusterKey {
        Self::try_generate().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new random key from the operating system's generator, or why not.
    pub fn try_generate() -> Result<ClusterKey, String> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)
            .map_err(|e| format!("the OS random generator failed, cannot make a cluster key: {e}"))?;
        Ok(ClusterKey(k))
    }

    /// Reads a key file written by [`ClusterKey::save`]. Errors name the file
    /// and say how to make one; nothing is logged here.
    pub fn load(path: &Path) -> Result<ClusterKey, String> {
        let shown = path.display();
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read cluster key file {shown}: {e}; {KEYGEN_HINT}"))?;
        let mut raw = Vec::with_capacity(80);
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut raw)
            .map_err(|e| format!("cannot read cluster key file {shown}: {e}; {KEYGEN_HINT}"))?;
        let bad = |why: String| {
            format!("{shown} is not a cluster key file ({why}; expected 64 hex characters); {KEYGEN_HINT}")
        };
        if raw.len() as u64 > MAX_KEY_FILE {
            return Err(bad(format!("over {MAX_KEY_FILE} bytes")));
        }
        let text = raw.trim_ascii();
        if text.len() != 64 {
            return Err(bad(format!("{} characters", text.len())));
        }
        let mut k = [0u8; 32];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            match (hex_val(pair[0], true), hex_val(pair[1], true)) {
                (Some(h), Some(l)) => k[i] = h << 4 | l,
                _ => return Err(bad("a character that is not hex".into())),
            }
        }
        Ok(ClusterKey(k))
    }

    /// Writes the key file: 64 lowercase hex characters and a newline, mode
    /// 0600 from creation on (on Unix). Refuses to overwrite an existing file.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let shown = path.display();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("{shown} already exists; not overwriting it with a new cluster key (remove it first to replace the key)")
            } else {
                format!("cannot create cluster key file {shown}: {e}")
            }
        })?;
        let mut text = hex_lower(&self.0);
        text.push('\n');
        let written = file.write_all(text.as_bytes()).and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(format!("cannot write cluster key file {shown}: {e}"));
        }
        Ok(())
    }

    /// First 8 hex digits of SHA-256 of the key: lets operators compare keys
    /// across machines without showing them.
    pub fn fingerprint(&self) -> String {
        hex_lower(&Sha256::digest(self.0)[..4])
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; 32 bytes never fails.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts a 32-byte key")
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey(fingerprint {})", self.fingerprint())
    }
}

// ---------------------------------------------------------------------------
// Sealing

/// Wraps outgoing bodies: signed with a key, bare without.
#[derive(Debug, Clone)]
pub struct Sealer {
    key: Option<ClusterKey>,
}

impl Sealer {
    pub fn new(key: Option<ClusterKey>) -> Sealer {
        Sealer { key }
    }

    /// Whether payloads are signed.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The payload to publish for `body`: with a key, the envelope with the
    /// current time and a fresh random nonce (so sealing the same body twice
    /// gives two different payloads); without, a copy of the body.
    pub fn seal(&self, body: &[u8]) -> Vec<u8> {
        self.seal_at(body, crate::protocol::now_ms(), fresh_nonce())
    }

    fn seal_at(&self, body: &[u8], ts_ms: u64, nonce: u64) -> Vec<u8> {
        let Some(key) = &self.key else { return body.to_vec() };
        let prefix = format!("IPDC-SIG1 {ts_ms} {nonce:016x}");
        let mut mac = key.mac();
        mac.update(prefix.as_bytes());
        mac.update(b"\n");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        let mut out = Vec::with_capacity(prefix.len() + 66 + body.len());
        out.extend_from_slice(prefix.as_bytes());
        out.push(b' ');
        out.extend_from_slice(hex_lower(&tag).as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }
}

/// 64 random bits; if the OS generator ever fails, a process-unique
/// counter mixed with the clock and pid (unique, if not secret — a nonce only
/// has to be unique).
fn fresh_nonce() -> u64 {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    getrandom::u64().unwrap_or_else(|_| {
        let n = FALLBACK.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        splitmix(t ^ (u64::from(std::process::id()) << 40) ^ n.rotate_left(20))
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Opening

/// Why [`Opener::open`] refused a payload. `Display` is a phrase for a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejected {
    /// Keyed opener, payload not in an envelope.
    NoSignature,
    /// Starts like an envelope but the header does not parse.
    Malformed,
    /// The MAC does not match: another key, or altered in transit.
    BadMac,
    /// Timestamp further than the window from the receiver's clock.
    Stale,
    /// This `(ts, nonce)` was accepted before.
    Replayed,
    /// Older than what the full replay cache still remembers (see the module doc).
    BeyondReplayCache,
    /// Larger than any message the protocol accepts; not even MACed.
    TooLarge,
}

impl Rejected {
    /// Every reason, in counter order.
    pub const ALL: [Rejected; 7] = [
        Rejected::NoSignature,
        Rejected::Malformed,
        Rejected::BadMac,
        Rejected::Stale,
        Rejected::Replayed,
        Rejected::BeyondReplayCache,
        Rejected::TooLarge,
    ];
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejected::NoSignature => "no signature (this cluster requires the cluster key)",
            Rejected::Malformed => "malformed signature header",
            Rejected::BadMac => "bad signature (signed with another cluster key, or altered)",
            Rejected::Stale => {
                "timestamp outside the accepted window (clocks out of sync, or an old message)"
            }
            Rejected::Replayed => "replayed (this signed message was already received)",
            Rejected::BeyondReplayCache => {
                "too old for the replay cache (too many signed messages within the window)"
            }
            Rejected::TooLarge => "payload too large",
        })
    }
}

impl std::error::Error for Rejected {}

/// Unwraps incoming payloads and enforces the rules in the module doc. One per
/// receiving connection: it holds the replay cache and the counters.
pub struct Opener {
    key: Option<ClusterKey>,
    window_ms: u64,
    cap: usize,
    /// Accepted `(ts, nonce)` pairs, oldest timestamp first.
    seen: BTreeSet<(u64, u64)>,
    /// Newest timestamp ever dropped from `seen`; anything at or below it is refused.
    floor: Option<u64>,
    accepted: u64,
    rejected: [u64; Rejected::ALL.len()],
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("key", &self.key)
            .field("window_ms", &self.window_ms)
            .field("replay_cache_len", &self.seen.len())
            .field("accepted", &self.accepted)
            .field("rejected", &self.rejected())
            .finish()
    }
}

/// A parsed header: the bytes the MAC covers before the body, and its fields.
struct Header<'a> {
    signed_prefix: &'a [u8],
    ts_ms: u64,
    nonce: u64,
    mac: [u8; 32],
    body: &'a [u8],
}

impl Opener {
    /// An opener with the default window and replay cache cap.
    pub fn new(key: Option<ClusterKey>) -> Opener {
        Opener {
            key,
            window_ms: DEFAULT_WINDOW.as_millis() as u64,
            cap: REPLAY_CACHE_CAP,
            seen: BTreeSet::new(),
            floor: None,
            accepted: 0,
            rejected: [0; Rejected::ALL.len()],
        }
    }

    /// Sets the accepted clock difference (either way) between sender and receiver.
    pub fn with_window(mut self, window: Duration) -> Opener {
        self.window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Sets the replay cache's hard cap (at least 1).
    pub fn with_replay_capacity(mut self, cap: usize) -> Opener {
        self.cap = cap.max(1);
        self
    }

    /// Whether signatures are required.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The body of `payload`, or why it is refused; `now_ms` is the receiver's
    /// clock in Unix milliseconds. Never panics and allocates nothing per
    /// payload except, with a key, one replay cache entry per accepted message.
    pub fn open<'a>(&mut self, payload: &'a [u8], now_ms: u64) -> Result<&'a [u8], Rejected> {
        match self.check(payload, now_ms) {
            Ok(body) => {
                self.accepted += 1;
                Ok(body)
            }
            Err(why) => {
                self.rejected[why as usize] += 1;
                Err(why)
            }
        }
    }

    fn check<'a>(&mut self, payload: &'a [u8], now_ms: u64) -> Result<&'a [u8], Rejected> {
        if payload.len() > MAX_MESSAGE_BYTES + MAX_HEADER_LINE + 1 {
            return Err(Rejected::TooLarge);
        }
        let signed = payload.starts_with(SIGNED_PREFIX);
        let Some(key) = &self.key else {
            return if signed { parse_header(payload).map(|h| h.body) } else { Ok(payload) };
        };
        if !signed {
            return Err(Rejected::NoSignature);
        }
        let h = parse_header(payload)?;
        let mut mac = key.mac();
        mac.update(h.signed_prefix);
        mac.update(b"\n");
        mac.update(h.body);
        mac.verify_slice(&h.mac).map_err(|_| Rejected::BadMac)?;

        if h.ts_ms.abs_diff(now_ms) > self.window_ms {
            return Err(Rejected::Stale);
        }
        self.evict_older_than(now_ms.saturating_sub(self.window_ms));
        if self.floor.is_some_and(|f| h.ts_ms <= f) {
            return Err(Rejected::BeyondReplayCache);
        }
        if !self.seen.insert((h.ts_ms, h.nonce)) {
            return Err(Rejected::Replayed);
        }
        while self.seen.len() > self.cap {
            self.drop_oldest();
        }
        Ok(h.body)
    }

    fn evict_older_than(&mut self, cutoff_ms: u64) {
        while self.seen.first().is_some_and(|&(ts, _)| ts < cutoff_ms) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((ts, _)) = self.seen.pop_first() {
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
    }

    /// Payloads accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Payloads refused so far, for any reason.
    pub fn rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Payloads refused so far for this reason.
    pub fn rejected_for(&self, why: Rejected) -> u64 {
        self.rejected[why as usize]
    }

    /// `(ts, nonce)` pairs the replay cache holds now.
    pub fn replay_cache_len(&self) -> usize {
        self.seen.len()
    }
}

/// Splits `IPDC-SIG1 <ts> <nonce> <mac>\n<body>`, strictly; looks at no more
/// than the first `MAX_HEADER_LINE + 1` bytes for the newline.
fn parse_header(payload: &[u8]) -> Result<Header<'_>, Rejected> {
    let scan = &payload[..payload.len().min(MAX_HEADER_LINE + 1)];
    let nl = scan.iter().position(|&b| b == b'\n').ok_or(Rejected::Malformed)?;
    let (line, body) = (&payload[..nl], &payload[nl + 1..]);
    let mut fields = line.split(|&b| b == b' ');
    let (Some(magic), Some(ts), Some(nonce), Some(mac), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Rejected::Malformed);
    };
    if magic != MAGIC || nonce.len() != 16 || mac.len() != 64 {
        return Err(Rejected::Malformed);
    }
    let ts_ms = parse_ts(ts).ok_or(Rejected::Malformed)?;
    let mut n = [0u8; 8];
    decode_hex_lower(nonce, &mut n).ok_or(Rejected::Malformed)?;
    let mut m = [0u8; 32];
    decode_hex_lower(mac, &mut m).ok_or(Rejected::Malformed)?;
    Ok(Header { signed_prefix: &line[..line.len() - 65], ts_ms, nonce: u64::from_be_bytes(n), mac: m, body })
}

/// Canonical decimal `u64`: digits only, no leading zero except "0".
fn parse_ts(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

fn hex_val(b: u8, allow_upper: bool) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' if allow_upper => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex only, exactly `2 * out.len()` digits.
fn decode_hex_lower(s: &[u8], out: &mut [u8]) -> Option<()> {
    if s.len() != 2 * out.len() {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = hex_val(pair[0], false)? << 4 | hex_val(pair[1], false)?;
    }
    Some(())
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

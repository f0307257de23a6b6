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
//! [`REPLAY_CACHE_CAP`] pairs are kept (a few MB at most): past that the
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
/// What to do about a secret file the program may not read.
pub const UNREADABLE_HINT: &str = "let the user this program runs as read it (the packaged agent runs as `ipdc`: chown root:ipdc FILE; chmod 0640 FILE)";

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
        let file = std::fs::File::open(path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                UNREADABLE_HINT
            } else {
                "copy the cluster's key there (make one with `ipdc-submit keygen FILE`)"
            };
            format!("cannot read cluster key file {shown}: {e}; {hint}")
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{
        AgentStatus, EventKind, Message, PROTOCOL_VERSION, TaskCommand, TaskEvent, TaskMessage, TaskOutput,
    };

    const NOW: u64 = 1_700_000_000_000;
    const WINDOW: u64 = 120_000;

    fn key() -> ClusterKey {
        ClusterKey::generate()
    }

    fn keyed(k: &ClusterKey) -> (Sealer, Opener) {
        (Sealer::new(Some(k.clone())), Opener::new(Some(k.clone())))
    }

    /// Replaces the `i`th header field (0 magic, 1 ts, 2 nonce, 3 mac) of a sealed payload.
    fn with_field(payload: &[u8], i: usize, value: &[u8]) -> Vec<u8> {
        let nl = payload.iter().position(|&b| b == b'\n').unwrap();
        let mut fields: Vec<&[u8]> = payload[..nl].split(|&b| b == b' ').collect();
        fields[i] = value;
        let mut out = fields.join(&b' ');
        out.extend_from_slice(&payload[nl..]);
        out
    }

    fn field(payload: &[u8], i: usize) -> Vec<u8> {
        let nl = payload.iter().position(|&b| b == b'\n').unwrap();
        payload[..nl].split(|&b| b == b' ').nth(i).unwrap().to_vec()
    }

    #[test]
    fn wire_format_matches_an_independent_hmac() {
        // Expected MAC from Python's hmac module over "IPDC-SIG1 <ts> <nonce>\n" + body.
        let s = Sealer::new(Some(ClusterKey([0x11; 32])));
        let p = s.seal_at(br#"{"v":1}"#, NOW, 0x0123_4567_89ab_cdef);
        let want = "IPDC-SIG1 1700000000000 0123456789abcdef \
                    198ac2a1b8c9d1222ac4627eacb849ae49f7b7aa23a104025e13fd4f5070a3cc\n{\"v\":1}";
        assert_eq!(String::from_utf8(p.clone()).unwrap(), want);
        let mut o = Opener::new(Some(ClusterKey([0x11; 32])));
        assert_eq!(o.open(&p, NOW).unwrap(), br#"{"v":1}"#);
        assert_eq!(ClusterKey([0x11; 32]).fingerprint(), "02d449a3");
    }

    #[test]
    fn round_trip_with_a_key() {
        let k = key();
        let (s, mut o) = keyed(&k);
        let body = TaskMessage { v: PROTOCOL_VERSION, command: TaskCommand::EndJob { job: "j1".into() } };
        let p = s.seal(&body.encode());
        assert!(p.starts_with(b"IPDC-SIG1 "));
        let got = o.open(&p, crate::protocol::now_ms()).unwrap();
        assert_eq!(TaskMessage::decode(got).unwrap(), body);
        assert_eq!((o.accepted(), o.rejected()), (1, 0));
        // An empty body is a body too.
        let p = s.seal_at(b"", NOW, 7);
        assert_eq!(o.open(&p, NOW).unwrap(), b"");
    }

    #[test]
    fn any_tampering_is_a_bad_mac() {
        let k = key();
        let (s, _) = keyed(&k);
        let p = s.seal_at(br#"{"v":1,"job":"j1"}"#, NOW, 0x00ff_00ff_00ff_00ff);
        let mut body = p.clone();
        *body.last_mut().unwrap() ^= 0x01;
        let mut ts = field(&p, 1);
        *ts.last_mut().unwrap() = b'1'; // 1700000000001: still canonical
        let mut nonce = field(&p, 2);
        nonce[0] = b'1';
        let mut mac = field(&p, 3);
        mac[10] = if mac[10] == b'a' { b'b' } else { b'a' };
        let other_key =
            Sealer::new(Some(key())).seal_at(br#"{"v":1,"job":"j1"}"#, NOW, 0x00ff_00ff_00ff_00ff);
        for (what, bad) in [
            ("body", body),
            ("ts", with_field(&p, 1, &ts)),
            ("nonce", with_field(&p, 2, &nonce)),
            ("mac", with_field(&p, 3, &mac)),
            ("other key", other_key),
        ] {
            let mut o = Opener::new(Some(k.clone()));
            assert_eq!(o.open(&bad, NOW), Err(Rejected::BadMac), "{what}");
            assert_eq!(o.rejected_for(Rejected::BadMac), 1);
        }
        // The untampered one still opens.
        assert!(Opener::new(Some(k)).open(&p, NOW).is_ok());
    }

    #[test]
    fn a_keyed_opener_wants_a_signature() {
        let k = key();
        let mut o = Opener::new(Some(k));
        let bare = AgentStatus::offline("pi-1").encode();
        assert_eq!(o.open(&bare, NOW), Err(Rejected::NoSignature));
        assert_eq!(o.open(b"", NOW), Err(Rejected::NoSignature));
        assert_eq!(o.rejected_for(Rejected::NoSignature), 2);
        assert_eq!(o.rejected(), 2);
        assert!(Rejected::NoSignature.to_string().contains("requires the cluster key"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let k = key();
        let (s, mut o) = keyed(&k);
        let good = s.seal_at(b"{}", NOW, 1);
        let upper_mac = String::from_utf8(field(&good, 3)).unwrap().to_uppercase();
        let cases: Vec<Vec<u8>> = vec![
            b"IPDC-SIG1".to_vec(),
            b"IPDC-SIG1 \n{}".to_vec(),
            b"IPDC-SIG2 1 0000000000000000 0000000000000000000000000000000000000000000000000000000000000000\n{}"
                .to_vec(),
            good.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect(), // no newline
            with_field(&good, 1, b"01700000000000"),
            with_field(&good, 1, b"+1700000000000"),
            with_field(&good, 1, b"18446744073709551616"),
            with_field(&good, 2, b"000000000000001"),
            with_field(&good, 2, b"000000000000000G"),
            with_field(&good, 3, upper_mac.as_bytes()),
            with_field(&good, 3, &field(&good, 3)[1..]),
            [&b"IPDC-SIG1  "[..], &good[10..]].concat(), // double space
            [&good[..good.iter().position(|&b| b == b'\n').unwrap()], b"\r\n{}"].concat(),
            // A first line longer than MAX_HEADER_LINE, newline after it.
            [&b"IPDC-SIG1 "[..], &[b'1'; 200], b"\n{}"].concat(),
        ];
        for (i, c) in cases.iter().enumerate() {
            assert_eq!(
                o.open(c, NOW),
                Err(Rejected::Malformed),
                "case {i}: {:?}",
                String::from_utf8_lossy(c)
            );
        }
        assert_eq!(o.open(&good, NOW), Ok(&b"{}"[..]));
    }

    #[test]
    fn timestamps_outside_the_window_are_stale() {
        let k = key();
        let (s, mut o) = keyed(&k);
        for ts in [NOW - WINDOW - 1, NOW + WINDOW + 1, 0, u64::MAX] {
            assert_eq!(o.open(&s.seal_at(b"{}", ts, 5), NOW), Err(Rejected::Stale), "ts {ts}");
        }
        for ts in [NOW - WINDOW, NOW + WINDOW, NOW] {
            assert!(o.open(&s.seal_at(b"{}", ts, 5), NOW).is_ok(), "ts {ts}");
        }
        let mut narrow = Opener::new(Some(k)).with_window(Duration::from_secs(1));
        assert_eq!(narrow.open(&s.seal_at(b"{}", NOW - 1001, 5), NOW), Err(Rejected::Stale));
        assert_eq!(narrow.rejected_for(Rejected::Stale), 1);
    }

    #[test]
    fn replays_are_refused() {
        let k = key();
        let (s, mut o) = keyed(&k);
        let p = s.seal_at(b"{}", NOW, 42);
        assert!(o.open(&p, NOW).is_ok());
        assert_eq!(o.open(&p, NOW + 5), Err(Rejected::Replayed));
        assert_eq!(o.open(&p, NOW + WINDOW), Err(Rejected::Replayed));
        // Same time, another nonce: a different message.
        assert!(o.open(&s.seal_at(b"{}", NOW, 43), NOW).is_ok());
        assert_eq!((o.accepted(), o.rejected_for(Rejected::Replayed)), (2, 2));
    }

    #[test]
    fn sealing_twice_gives_two_payloads_that_both_open() {
        let k = key();
        let (s, mut o) = keyed(&k);
        let (a, b) = (s.seal(b"{}"), s.seal(b"{}"));
        assert_ne!(a, b);
        let now = crate::protocol::now_ms();
        assert_eq!(o.open(&a, now), Ok(&b"{}"[..]));
        assert_eq!(o.open(&b, now), Ok(&b"{}"[..]));
    }

    #[test]
    fn an_open_opener_takes_bare_and_signed_payloads() {
        let mut o = Opener::new(None);
        assert!(!o.is_keyed());
        let body = AgentStatus::offline("pi-1").encode();
        assert_eq!(o.open(&body, NOW), Ok(&body[..]));
        let signed = Sealer::new(Some(key())).seal(&body);
        assert_eq!(o.open(&signed, NOW), Ok(&body[..]));
        // Unchecked: a stale or replayed signed payload opens too, but not a broken header.
        let old = Sealer::new(Some(key())).seal_at(&body, 0, 1);
        assert_eq!(o.open(&old, NOW), Ok(&body[..]));
        assert_eq!(o.open(&old, NOW), Ok(&body[..]));
        assert_eq!(o.open(b"IPDC-SIG1 x\n{}", NOW), Err(Rejected::Malformed));
        // And an open sealer sends the bare body.
        assert_eq!(Sealer::new(None).seal(&body), body);
    }

    #[test]
    fn oversize_payloads_are_refused_unread() {
        let k = key();
        let big = vec![b' '; MAX_MESSAGE_BYTES + MAX_HEADER_LINE + 2];
        assert_eq!(Opener::new(Some(k)).open(&big, NOW), Err(Rejected::TooLarge));
        assert_eq!(Opener::new(None).open(&big, NOW), Err(Rejected::TooLarge));
    }

    #[test]
    fn the_replay_cache_forgets_old_entries() {
        let k = key();
        let (s, mut o) = keyed(&k);
        for n in 0..10 {
            o.open(&s.seal_at(b"{}", NOW, n), NOW).unwrap();
        }
        assert_eq!(o.replay_cache_len(), 10);
        let later = NOW + WINDOW + 1;
        o.open(&s.seal_at(b"{}", later, 0), later).unwrap();
        assert_eq!(o.replay_cache_len(), 1);
        // The forgotten ones are stale now anyway.
        assert_eq!(o.open(&s.seal_at(b"{}", NOW, 3), later), Err(Rejected::Stale));
    }

    #[test]
    fn the_replay_cache_is_capped_and_never_lets_a_replay_through() {
        let k = key();
        let (s, _) = keyed(&k);
        let mut o = Opener::new(Some(k)).with_replay_capacity(3);
        let sent: Vec<Vec<u8>> = (0..5).map(|i| s.seal_at(b"{}", NOW + i, i)).collect();
        for p in &sent {
            o.open(p, NOW).unwrap();
        }
        assert_eq!(o.replay_cache_len(), 3);
        // The two dropped ones are refused, not accepted again.
        assert_eq!(o.open(&sent[0], NOW), Err(Rejected::BeyondReplayCache));
        assert_eq!(o.open(&sent[1], NOW), Err(Rejected::BeyondReplayCache));
        assert_eq!(o.open(&sent[4], NOW), Err(Rejected::Replayed));
        // A new message older than what the cache remembers is refused; a newer one opens.
        assert_eq!(o.open(&s.seal_at(b"{}", NOW, 99), NOW), Err(Rejected::BeyondReplayCache));
        assert!(o.open(&s.seal_at(b"{}", NOW + 10, 99), NOW).is_ok());
        assert_eq!(o.replay_cache_len(), 3);
    }

    #[test]
    fn key_files_round_trip_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let k = key();
        k.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert!(text[..64].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(ClusterKey::load(&path).unwrap(), k);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let e = key().save(&path).unwrap_err();
        assert!(e.contains(&path.display().to_string()) && e.contains("already exists"), "{e}");
        assert_eq!(ClusterKey::load(&path).unwrap(), k, "the old key is intact");
        // Surrounding whitespace and uppercase are fine.
        let loose = dir.path().join("loose.key");
        std::fs::write(&loose, format!("\n  {}\t\r\n\n", text.trim().to_uppercase())).unwrap();
        assert_eq!(ClusterKey::load(&loose).unwrap(), k);
    }

    #[test]
    fn bad_key_files_give_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = "0123456789abcdef".repeat(4);
        let cases = [
            ("empty", String::new()),
            ("short", good[..62].to_string()),
            ("long", format!("{good}00")),
            ("nonhex", format!("{}zz", &good[..62])),
            ("inner-space", format!("{} {}", &good[..32], &good[32..])),
            ("huge", "0".repeat(10_000)),
        ];
        for (name, text) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            let e = ClusterKey::load(&p).unwrap_err();
            assert!(e.contains(&p.display().to_string()), "{name}: {e}");
            assert!(e.contains("ipdc-submit keygen FILE"), "{name}: {e}");
        }
        std::fs::write(dir.path().join("binary"), [0xff, 0xfe, 0x00]).unwrap();
        assert!(ClusterKey::load(&dir.path().join("binary")).is_err());
        let missing = dir.path().join("missing.key");
        let e = ClusterKey::load(&missing).unwrap_err();
        assert!(e.contains("missing.key") && e.contains("ipdc-submit keygen FILE"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = ClusterKey([0xab; 32]);
        let hex = hex_lower(&k.0);
        for shown in [
            format!("{k:?}"),
            format!("{k:#?}"),
            format!("{:?}", Sealer::new(Some(k.clone()))),
            format!("{:?}", Opener::new(Some(k.clone()))),
        ] {
            assert!(!shown.to_lowercase().contains(&hex[..8]), "{shown}");
            assert!(!shown.contains("171"), "{shown}"); // 0xab as decimal bytes
            assert!(shown.contains(&k.fingerprint()), "{shown}");
        }
    }

    #[test]
    fn every_reason_has_its_own_text_and_counter() {
        let texts: std::collections::HashSet<String> = Rejected::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(texts.len(), Rejected::ALL.len());
        for (i, r) in Rejected::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    // -----------------------------------------------------------------------
    // Fuzz-style property test.

    /// xorshift64*: deterministic, no crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn byte(&mut self) -> u8 {
            const SPECIAL: &[u8] = b" \n\r\t0123456789abcdefABCDEF{}\":,-+.\x00\xff";
            if self.below(2) == 0 { SPECIAL[self.below(SPECIAL.len())] } else { self.next() as u8 }
        }
    }

    fn sample_bodies() -> Vec<Vec<u8>> {
        let task = crate::protocol::sample_task();
        let event = |kind| TaskEvent {
            v: PROTOCOL_VERSION,
            job: "j1".into(),
            task: "r-00001".into(),
            attempt: 2,
            agent: "pi-1".into(),
            kind,
        };
        let mut status = AgentStatus::offline("pi-2");
        status.online = true;
        status.python = Some("3.12".into());
        status.native = vec!["wordcount".into()];
        vec![
            AgentStatus::offline("pi-1").encode(),
            status.encode(),
            TaskMessage { v: PROTOCOL_VERSION, command: TaskCommand::Assign { task } }.encode(),
            TaskMessage {
                v: PROTOCOL_VERSION,
                command: TaskCommand::Cancel { job: "j1".into(), task: "m-00001".into(), attempt: 1 },
            }
            .encode(),
            TaskMessage { v: PROTOCOL_VERSION, command: TaskCommand::EndJob { job: "j1".into() } }.encode(),
            event(EventKind::Accepted).encode(),
            event(EventKind::Failed {
                error: "boom".into(),
                detail: "x".repeat(300),
                lost_inputs: vec!["bafkx".into()],
                node_down: false,
            })
            .encode(),
            event(EventKind::Done {
                output: TaskOutput { cids: vec!["bafyout".into()], sizes: vec![9], ..Default::default() },
            })
            .encode(),
            Vec::new(),
            b"{}".to_vec(),
        ]
    }

    /// Splits a sealed payload into its four header fields and body.
    fn parts(p: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let nl = p.iter().position(|&b| b == b'\n').unwrap();
        (p[..nl].split(|&b| b == b' ').map(<[u8]>::to_vec).collect(), p[nl + 1..].to_vec())
    }

    fn join(fields: &[Vec<u8>], body: &[u8]) -> Vec<u8> {
        let mut out = fields.join(&b' ');
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    fn odd_field(rng: &mut Rng) -> Vec<u8> {
        const ODD: &[&str] = &[
            "",
            "0",
            "00",
            "01",
            "-1",
            "+1",
            "1.5",
            "1e12",
            "0x10",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "100000000000000000000",
            "999999999999999999999999999999999999",
            "\u{0661}\u{0662}",
            "\0",
            "ffffffffffffffff",
            "FFFFFFFFFFFFFFFF",
            "fffffffffffffff",
            "fffffffffffffffff",
            "IPDC-SIG1",
        ];
        match rng.below(4) {
            0 => ODD[rng.below(ODD.len())].as_bytes().to_vec(),
            1 => (0..1 + rng.below(40)).map(|_| b'0' + rng.below(10) as u8).collect(),
            2 => (0..rng.below(70)).map(|_| b"0123456789abcdef"[rng.below(16)]).collect(),
            _ => (0..rng.below(20)).map(|_| rng.byte()).collect(),
        }
    }

    fn mutate(rng: &mut Rng, orig: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut m = orig.to_vec();
        let pos = |rng: &mut Rng, m: &Vec<u8>| rng.below(m.len() + 1);
        // Without other envelopes `orig` is a bare body: byte-level mutations only.
        let kind = if others.is_empty() { [0, 1, 2, 3, 7][rng.below(5)] } else { rng.below(11) };
        match kind {
            0 => {
                for _ in 0..1 + rng.below(3) {
                    if !m.is_empty() {
                        let i = rng.below(m.len());
                        m[i] ^= 1 << rng.below(8);
                    }
                }
            }
            1 => m.truncate(rng.below(m.len() + 1)),
            2 => {
                let at = pos(rng, &m);
                let ins: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.byte()).collect();
                m.splice(at..at, ins);
            }
            3 => {
                let a = pos(rng, &m);
                let b = (a + 1 + rng.below(16)).min(m.len());
                m.drain(a..b);
            }
            4 => {
                // Swap one field (or the body) with the same one of another valid envelope.
                let (mut f, mut body) = parts(orig);
                let (g, other_body) = parts(&others[rng.below(others.len())]);
                match rng.below(5) {
                    4 => body = other_body,
                    i => f[i] = g[i].clone(),
                }
                m = join(&f, &body);
            }
            5 => {
                // Swap two fields of the same envelope.
                let (mut f, body) = parts(orig);
                let (i, j) = (rng.below(4), rng.below(4));
                f.swap(i, j);
                m = join(&f, &body);
            }
            6 => {
                let (mut f, body) = parts(orig);
                let i = 1 + rng.below(3);
                f[i] = odd_field(rng);
                m = join(&f, &body);
            }
            7 => {
                if !m.is_empty() {
                    let i = rng.below(m.len());
                    m[i] = rng.byte();
                }
            }
            8 => {
                // A first line longer than the header limit.
                let at = (10 + rng.below(100)).min(m.len());
                let n = 20 + rng.below(300);
                m.splice(at..at, std::iter::repeat_n(if rng.below(2) == 0 { b'0' } else { b' ' }, n));
            }
            9 => {
                // Random garbage, half of it looking like an envelope.
                m = if rng.below(2) == 0 { b"IPDC-SIG1 ".to_vec() } else { Vec::new() };
                m.extend((0..rng.below(300)).map(|_| rng.byte()));
            }
            _ => {
                let (f, body) = parts(orig);
                m = match rng.below(4) {
                    0 => [join(&f, b""), orig.to_vec()].concat(), // header twice
                    1 => f.join(&b' '),                           // header, no newline
                    2 => [f.join(&b' '), b"\r\n".to_vec(), body].concat(),
                    _ => join(&f[..3], &body), // no MAC field
                };
            }
        }
        m
    }

    fn decode_all(body: &[u8]) {
        let _ = AgentStatus::decode(body);
        let _ = TaskMessage::decode(body);
        let _ = TaskEvent::decode(body);
    }

    #[test]
    fn fuzz_nothing_mutated_verifies_and_nothing_panics() {
        const ORIGINALS: usize = 64;
        const MUTANTS: usize = 300_000;
        let mut rng = Rng(0x1d9c_0ffe_e5ee_d001);
        let k = ClusterKey([0x5a; 32]);
        let sealer = Sealer::new(Some(k.clone()));
        let mut keyed = Opener::new(Some(k));
        let mut open = Opener::new(None);
        let bodies = sample_bodies();

        let originals: Vec<Vec<u8>> = (0..ORIGINALS)
            .map(|i| {
                let ts = NOW - WINDOW + rng.below(2 * WINDOW as usize) as u64;
                sealer.seal_at(&bodies[i % bodies.len()], ts, rng.next())
            })
            .collect();
        let known: std::collections::HashSet<&[u8]> = originals.iter().map(Vec::as_slice).collect();
        for (i, p) in originals.iter().enumerate() {
            assert_eq!(keyed.open(p, NOW), Ok(&bodies[i % bodies.len()][..]));
        }

        let (mut keyed_ok, mut open_ok) = (0u64, 0u64);
        for n in 0..MUTANTS {
            let orig = &originals[rng.below(ORIGINALS)];
            let m = if n % 8 == 0 {
                // Mutate a body and seal it properly: a genuine message with garbage inside.
                let which = rng.below(bodies.len());
                let body = mutate(&mut rng, &bodies[which], &[]);
                let p = sealer.seal_at(&body, NOW, rng.next());
                let got = keyed.open(&p, NOW).expect("a freshly sealed payload opens");
                assert_eq!(got, &body[..]);
                decode_all(got);
                keyed_ok += 1;
                continue;
            } else {
                mutate(&mut rng, orig, &originals)
            };

            match keyed.open(&m, NOW) {
                Ok(_) => panic!("a mutant verified: {:?}", String::from_utf8_lossy(&m)),
                Err(Rejected::NoSignature | Rejected::Malformed | Rejected::BadMac | Rejected::TooLarge) => {}
                Err(why) => {
                    // Stale/Replayed/BeyondReplayCache come only after a good MAC.
                    assert!(known.contains(&m[..]), "mutant passed the MAC ({why}): {:?}", m);
                }
            }
            match open.open(&m, NOW) {
                Ok(body) => {
                    let range = m.as_ptr_range();
                    assert!(body.is_empty() || range.contains(&body.as_ptr()), "body outside the payload");
                    assert!(m.ends_with(body));
                    open_ok += 1;
                    if n % 4 == 1 {
                        decode_all(body);
                    }
                }
                Err(why) => assert!(matches!(why, Rejected::Malformed | Rejected::TooLarge), "{why}"),
            }
        }
        // The generator really exercised both paths.
        assert!(keyed_ok > 1000 && open_ok > 10_000, "{keyed_ok} {open_ok}");
        assert!(keyed.rejected_for(Rejected::BadMac) > 1000);
        assert!(keyed.rejected_for(Rejected::Malformed) > 1000);
        assert!(keyed.rejected_for(Rejected::NoSignature) > 100);
        assert_eq!(keyed.accepted(), ORIGINALS as u64 + keyed_ok);
    }
}

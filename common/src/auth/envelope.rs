//! The signed envelope: [`Sealer`] wraps an outgoing body for its topic,
//! [`Opener`] unwraps an incoming one and says who signed it. The format
//! and the acceptance rules are in the module doc of [`super`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ed25519_dalek::Signature;

use super::hex::{decode_hex, hex_lower, parse_decimal};
use super::keys::{NodeKey, PublicKey};
use super::trust::{Identity, TrustSource, Unknown};
use crate::protocol::MAX_MESSAGE_BYTES;

/// The envelope's magic and version, the header line's first field.
const MAGIC: &[u8] = b"IPDC-SIG2";
/// What marks a payload as trying to be signed (any envelope version).
const SIGNED_PREFIX: &[u8] = b"IPDC-SIG";
/// Longest header line accepted, without its `\n`. A real one is at most
/// 9 + 1 + 20 + 1 + 16 + 1 + 64 + 1 + 128 = 241 bytes.
pub const MAX_HEADER_LINE: usize = 256;
/// Default tolerance between the sender's timestamp and the receiver's clock.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// Default hard cap of the replay cache, in `(ts, nonce)` pairs.
pub const REPLAY_CACHE_CAP: usize = 100_000;

/// Wraps outgoing bodies: signed with this node's key, bare without.
#[derive(Debug, Clone)]
pub struct Sealer {
    key: Option<NodeKey>,
}

impl Sealer {
    pub fn new(key: Option<NodeKey>) -> Sealer {
        Sealer { key }
    }

    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// The payload to publish on `topic` for `body`: with a key, the envelope
    /// with the current time and a fresh random nonce (so sealing the same
    /// body twice gives two different payloads); without, the body.
    pub fn seal(&self, topic: &str, body: &[u8]) -> Vec<u8> {
        self.seal_at(topic, body, crate::protocol::now_ms(), fresh_nonce())
    }

    pub(super) fn seal_at(&self, topic: &str, body: &[u8], ts_ms: u64, nonce: u64) -> Vec<u8> {
        let Some(key) = &self.key else { return body.to_vec() };
        let prefix = format!("IPDC-SIG2 {ts_ms} {nonce:016x} {}", hex_lower(&key.public().0));
        let sig = key.sign(&signed_bytes(prefix.as_bytes(), topic, body));
        let mut out = Vec::with_capacity(prefix.len() + 130 + body.len());
        out.extend_from_slice(prefix.as_bytes());
        out.push(b' ');
        out.extend_from_slice(hex_lower(&sig).as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }
}

/// What a signature covers: the header before it, the topic (length first,
/// so no topic and body can be cut differently into the same bytes) and
/// the body.
fn signed_bytes(prefix: &[u8], topic: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(prefix.len() + 5 + topic.len() + body.len());
    m.extend_from_slice(prefix);
    m.push(b'\n');
    m.extend_from_slice(&(topic.len() as u32).to_be_bytes());
    m.extend_from_slice(topic.as_bytes());
    m.extend_from_slice(body);
    m
}

/// 64 random bits; if the OS generator ever fails, a process-unique
/// counter mixed with the clock and pid (a nonce only has to be unique).
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

/// Why [`Opener::open`] refused a payload. `Display` is a phrase for a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejected {
    /// Keyed opener, payload not in an envelope.
    NoSignature,
    /// Starts like an envelope but the header does not parse.
    Malformed,
    /// Signed by a key the trust file does not list.
    UnknownSigner,
    /// Signed by a key the trust file revokes.
    Revoked,
    /// The signature does not match: altered, or for another topic.
    BadSignature,
    /// Timestamp further than the window from the receiver's clock.
    Stale,
    /// This `(ts, nonce)` was accepted before.
    Replayed,
    /// Older than what the full replay cache still remembers (see the module doc).
    BeyondReplayCache,
    /// Larger than any message the protocol accepts; not even parsed.
    TooLarge,
}

impl Rejected {
    /// Every reason, in counter order.
    pub const ALL: [Rejected; 9] = [
        Rejected::NoSignature,
        Rejected::Malformed,
        Rejected::UnknownSigner,
        Rejected::Revoked,
        Rejected::BadSignature,
        Rejected::Stale,
        Rejected::Replayed,
        Rejected::BeyondReplayCache,
        Rejected::TooLarge,
    ];
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rejected::NoSignature => "no signature (this cluster requires signed messages)",
            Rejected::Malformed => "malformed signature header",
            Rejected::UnknownSigner => "signed by a key the trust file does not list",
            Rejected::Revoked => "signed by a revoked key",
            Rejected::BadSignature => "bad signature (altered, or meant for another topic)",
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

/// An opened payload: its body, and who signed it (None in an open cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<'a> {
    pub body: &'a [u8],
    pub signer: Option<Identity>,
}

/// Unwraps incoming payloads and enforces the rules in the module doc. One
/// per receiving connection: it holds the replay cache and the counters.
#[derive(Debug)]
pub struct Opener {
    trust: Option<TrustSource>,
    window_ms: u64,
    cap: usize,
    /// Accepted `(ts, nonce)` pairs, oldest timestamp first.
    seen: BTreeSet<(u64, u64)>,
    /// Newest timestamp ever dropped from `seen`; anything at or below it is refused.
    floor: Option<u64>,
    accepted: u64,
    rejected: [u64; Rejected::ALL.len()],
}

struct Header<'a> {
    signed_prefix: &'a [u8],
    ts_ms: u64,
    nonce: u64,
    signer: PublicKey,
    signature: [u8; 64],
    body: &'a [u8],
}

impl Opener {
    /// With a trust list, only messages signed by its keys are taken; without,
    /// any (an open cluster).
    pub fn new(trust: Option<TrustSource>) -> Opener {
        Opener {
            trust,
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

    pub fn is_keyed(&self) -> bool {
        self.trust.is_some()
    }

    /// The body of `payload` received on `topic` and its signer, or why it
    /// is refused; `now_ms` is the receiver's clock. Never panics.
    pub fn open<'a>(&mut self, topic: &str, payload: &'a [u8], now_ms: u64) -> Result<Opened<'a>, Rejected> {
        match self.check(topic, payload, now_ms) {
            Ok(opened) => {
                self.accepted += 1;
                Ok(opened)
            }
            Err(why) => {
                self.rejected[why as usize] += 1;
                Err(why)
            }
        }
    }

    fn check<'a>(&mut self, topic: &str, payload: &'a [u8], now_ms: u64) -> Result<Opened<'a>, Rejected> {
        if payload.len() > MAX_MESSAGE_BYTES + MAX_HEADER_LINE + 1 {
            return Err(Rejected::TooLarge);
        }
        let signed = payload.starts_with(SIGNED_PREFIX);
        let Some(trust) = &mut self.trust else {
            // An open cluster trusts whoever can publish: a signature proves nothing here.
            let body = if signed { parse_header(payload)?.body } else { payload };
            return Ok(Opened { body, signer: None });
        };
        if !signed {
            return Err(Rejected::NoSignature);
        }
        let h = parse_header(payload)?;
        // Who first (cheap), then the signature, then freshness: only key
        // holders reach the replay cache.
        let id = match trust.current(now_ms).identify(&h.signer) {
            Ok(id) => id.clone(),
            Err(Unknown::NotListed) => return Err(Rejected::UnknownSigner),
            Err(Unknown::Revoked) => return Err(Rejected::Revoked),
        };
        let key = h.signer.verifying().ok_or(Rejected::UnknownSigner)?;
        key.verify_strict(
            &signed_bytes(h.signed_prefix, topic, h.body),
            &Signature::from_bytes(&h.signature),
        )
        .map_err(|_| Rejected::BadSignature)?;
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
        Ok(Opened { body: h.body, signer: Some(id) })
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

    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Payloads refused so far, for any reason.
    pub fn rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    pub fn rejected_for(&self, why: Rejected) -> u64 {
        self.rejected[why as usize]
    }

    pub fn replay_cache_len(&self) -> usize {
        self.seen.len()
    }
}

/// Splits `IPDC-SIG2 <ts> <nonce> <signer> <signature>\n<body>`, strictly;
/// looks at no more than the first `MAX_HEADER_LINE + 1` bytes for the newline.
fn parse_header(payload: &[u8]) -> Result<Header<'_>, Rejected> {
    let scan = &payload[..payload.len().min(MAX_HEADER_LINE + 1)];
    let nl = scan.iter().position(|&b| b == b'\n').ok_or(Rejected::Malformed)?;
    let (line, body) = (&payload[..nl], &payload[nl + 1..]);
    let mut fields = line.split(|&b| b == b' ');
    let (Some(magic), Some(ts), Some(nonce), Some(signer), Some(sig), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Rejected::Malformed);
    };
    if magic != MAGIC {
        return Err(Rejected::Malformed);
    }
    let ts_ms = parse_decimal(ts).ok_or(Rejected::Malformed)?;
    let mut n = [0u8; 8];
    decode_hex(nonce, &mut n).ok_or(Rejected::Malformed)?;
    let mut k = [0u8; 32];
    decode_hex(signer, &mut k).ok_or(Rejected::Malformed)?;
    let mut s = [0u8; 64];
    decode_hex(sig, &mut s).ok_or(Rejected::Malformed)?;
    Ok(Header {
        signed_prefix: &line[..line.len() - 129],
        ts_ms,
        nonce: u64::from_be_bytes(n),
        signer: PublicKey(k),
        signature: s,
        body,
    })
}

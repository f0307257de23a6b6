//! Who may say what in a cluster: every node's own key pair, the trust file
//! that lists them, and the signed envelope every control message travels in.
//!
//! The MQTT broker authenticates *clients*, but anyone who can publish on a
//! cluster's topics (a leaked broker password, a shared broker, a bridged
//! broker, a compromised board) could otherwise assign tasks to agents or
//! forge their results. So each submitter and each agent has its own
//! Ed25519 key ([`NodeKey`]); the cluster's trust file ([`TrustList`])
//! lists the submitter keys allowed to run code and the agent keys allowed
//! to report results, each under the one name it may speak as, and revokes
//! keys. A [`Sealer`] signs each payload for the topic it is published on;
//! an [`Opener`] refuses anything unsigned, signed by a key the trust file
//! does not list (or revokes), forged, altered, meant for another topic,
//! stale or replayed, and says who signed the rest. What each role may say
//! on which topic is decided by [`crate::protocol::Wire`]. This module owns
//! the key files, the trust file, the envelope format and the replay cache;
//! callers decide what to log and when.
//!
//! # Wire format
//!
//! With a key, a payload is one ASCII header line followed by the body bytes:
//!
//! ```text
//! IPDC-SIG2 <ts_ms> <nonce> <signer> <signature>\n<body>
//! ```
//!
//! - `ts_ms`: when it was sealed, Unix milliseconds, canonical decimal (1 to
//!   20 digits, no sign, no leading zero except `0` itself, fits a `u64`);
//! - `nonce`: 64 random bits, exactly 16 lowercase hex digits;
//! - `signer`: the signer's public key, exactly 64 lowercase hex digits;
//! - `signature`: exactly 128 lowercase hex digits, the Ed25519 signature of
//!   `"IPDC-SIG2 <ts_ms> <nonce> <signer>\n"`, then the topic's length as 4
//!   bytes big-endian, the topic, and the body. The signature covers the
//!   topic, so a message cannot be replayed on another topic: an assignment
//!   for one agent is not one for another.
//!
//! Every field is strict (one spelling per value), so no byte of a sealed
//! payload can change without failing to parse or failing the signature.
//! The header line is at most [`MAX_HEADER_LINE`] bytes; a longer first
//! line is refused without being read further.
//!
//! Without keys (an *open* cluster) a payload is the bare body: JSON
//! starting with `{`.
//!
//! # Acceptance rules ([`Opener::open`])
//!
//! With a trust list, in this order: a payload over the size limit is
//! [`Rejected::TooLarge`]; one not starting with `IPDC-SIG` is
//! [`Rejected::NoSignature`]; a header that does not parse (including
//! another envelope version) is [`Rejected::Malformed`]; a signer not in the
//! trust file is [`Rejected::UnknownSigner`], a revoked one
//! [`Rejected::Revoked`]; a signature that does not verify (strict Ed25519)
//! for this topic is [`Rejected::BadSignature`]; a timestamp more than the
//! window (default [`DEFAULT_WINDOW`], ±120 s) from the receiver's clock is
//! [`Rejected::Stale`]; a `(ts, nonce)` pair already accepted is
//! [`Rejected::Replayed`]. The signature is checked before the freshness
//! rules, so only key holders can reach the replay cache.
//!
//! Without a trust list, a bare body is accepted as is, and a signed payload
//! too (its header stripped, nothing checked: without the list a signature
//! proves nothing, and an open cluster trusts whoever can publish anyway).
//!
//! # The replay cache is bounded
//!
//! Accepted `(ts, nonce)` pairs are kept ordered by timestamp. Pairs older
//! than the window are dropped (a replay of them is `Stale` anyway), and at
//! most [`REPLAY_CACHE_CAP`] pairs are kept: past that the oldest go, and
//! the opener remembers the newest timestamp it ever dropped and refuses
//! anything at or below it ([`Rejected::BeyondReplayCache`]). So replays are
//! never accepted; the price is that when key holders send more than the cap
//! within one window, a genuine but late message older than the cache's
//! memory is refused too (the controller's re-sends and queries recover).
//!
//! # What a key grants
//!
//! A submitter key: assigning tasks (running code on agents) and ending,
//! cancelling and querying its own jobs. An agent key: reporting as its
//! named agent (its status, and results of attempts assigned to it). Neither
//! grants anything else; a board's key cannot sign for another board, and a
//! result counts only when signed by the agent it was assigned to.

mod envelope;
mod hex;
mod keys;
mod trust;

pub use envelope::{DEFAULT_WINDOW, MAX_HEADER_LINE, Opened, Opener, REPLAY_CACHE_CAP, Rejected, Sealer};
pub use keys::{KEYGEN_HINT, NodeKey, PublicKey, UNREADABLE_HINT};
pub use trust::{Identity, Role, TrustList, TrustSource, Unknown};

/// What a node signs with and whom it believes: its key and the trust file.
/// None of these anywhere: an open cluster.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub key: NodeKey,
    pub trust: TrustSource,
}

impl Credentials {
    /// Checks that this node's own key is in the trust file as `role`
    /// (and, for an agent, under its `name`): otherwise every other node
    /// would refuse what it signs.
    pub fn check_own_key(&mut self, role: Role, name: Option<&str>) -> Result<(), String> {
        let key = self.key.public();
        let line = |n: &str| TrustList::line(&Identity { role, name: n.to_string() }, &key);
        let fix =
            format!("add `{}` to the trust file and copy it to every node", line(name.unwrap_or("NAME")));
        match self.trust.current(0).identify(&key) {
            Ok(id) if id.role == role && name.is_none_or(|n| n == id.name) => Ok(()),
            Ok(id) => Err(format!(
                "this node's key {key} is in the trust file as {id}, not as {role}{}; {fix}",
                name.map(|n| format!(" {n}")).unwrap_or_default()
            )),
            Err(Unknown::Revoked) => Err(format!(
                "this node's key {key} is revoked in the trust file; make a new one with `ipdc-submit keygen`"
            )),
            Err(Unknown::NotListed) => Err(format!("this node's key {key} is not in the trust file; {fix}")),
        }
    }
}

#[cfg(test)]
mod tests;

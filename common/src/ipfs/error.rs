//! How an IPFS call fails: [`IpfsError`] (which API, call and CID) and its
//! [`ErrorKind`], the classification of transport errors, and which failures
//! are worth another attempt ([`retry`]). Making the calls is the client's
//! business.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A failed IPFS call: which API, which call, which CID, and what happened.
#[derive(Debug)]
pub struct IpfsError {
    api: String,
    call: &'static str,
    cid: Option<String>,
    kind: ErrorKind,
}

/// What went wrong in an [`IpfsError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The API address is not a usable `http://host:port` URL.
    InvalidUrl(String),
    /// Nothing listens at the API address.
    ConnectionRefused,
    /// The connection could not be made (DNS, unreachable, connect timeout).
    Connect(String),
    /// The node did not answer (or stalled) within the timeout.
    Timeout(Duration),
    /// The node answered an error with its JSON `Message`.
    Api { status: u16, message: String },
    /// The node answered an error status without a JSON error body.
    Http { status: u16, body: String },
    /// The body stopped early: kubo's trailing `X-Stream-Error`, or fewer
    /// bytes than announced.
    Truncated(String),
    /// The answer could not be understood.
    Protocol(String),
    /// The connection failed while a body was in flight.
    Transport(String),
    /// Reading or writing a local file failed.
    Local(std::io::Error),
}

impl IpfsError {
    /// A `cat` that ended at `offset` although the object is `size` bytes long.
    pub fn short_read(api: &str, cid: &str, offset: u64, size: u64) -> Self {
        let ctx = Ctx { api, call: "cat", cid: Some(cid) };
        ctx.err(ErrorKind::Truncated(format!("no data at offset {offset} of a {size}-byte object")))
    }

    /// What went wrong, for callers that act on the cause.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The RPC call that failed (`cat`, `add`, `id`, ...).
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The node itself could not be reached or dropped the connection (not
    /// an answer about the request): as far as this call can tell, the node
    /// is down.
    pub fn is_node_unreachable(&self) -> bool {
        matches!(self.kind, ErrorKind::ConnectionRefused | ErrorKind::Connect(_) | ErrorKind::Transport(_))
    }

    /// Worth trying again: the node was unreachable or failed in a way that
    /// is not about the request itself (not a bad or missing CID, not a
    /// timeout, which would only be waited for again).
    fn is_retryable(&self) -> bool {
        match &self.kind {
            ErrorKind::ConnectionRefused | ErrorKind::Connect(_) => true,
            ErrorKind::Http { status, .. } => *status >= 500,
            ErrorKind::Api { status, message } => *status >= 500 && !is_permanent(message),
            _ => false,
        }
    }
}

/// Error messages that another attempt would only repeat.
fn is_permanent(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "invalid",
        "malformed",
        "not found",
        "could not find",
        "timed out",
        "deadline",
        "unknown",
        "not supported",
    ]
    .iter()
    .any(|p| m.contains(p))
}

impl fmt::Display for IpfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IPFS API {}: {}", self.api, self.call)?;
        if let Some(cid) = &self.cid {
            write!(f, " {cid}")?;
        }
        f.write_str(": ")?;
        match &self.kind {
            ErrorKind::InvalidUrl(why) => write!(f, "invalid API URL: {why}"),
            ErrorKind::ConnectionRefused => f.write_str("connection refused (is the IPFS daemon running?)"),
            ErrorKind::Connect(e) => write!(f, "cannot connect: {e}"),
            ErrorKind::Timeout(d) => write!(f, "no answer within {}s", d.as_secs_f64()),
            ErrorKind::Api { status, message } => write!(f, "{message} (HTTP {status})"),
            ErrorKind::Http { status, body } if body.is_empty() => write!(f, "HTTP {status}"),
            ErrorKind::Http { status, body } => write!(f, "HTTP {status}: {body}"),
            ErrorKind::Truncated(why) => write!(f, "answer cut short: {why}"),
            ErrorKind::Protocol(why) => write!(f, "unexpected answer: {why}"),
            ErrorKind::Transport(e) => write!(f, "connection failed: {e}"),
            ErrorKind::Local(e) => write!(f, "local file: {e}"),
        }
    }
}

impl std::error::Error for IpfsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Local(e) => Some(e),
            _ => None,
        }
    }
}

/// Which call and CID an error belongs to.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) api: &'a str,
    pub(super) call: &'static str,
    pub(super) cid: Option<&'a str>,
}

impl Ctx<'_> {
    /// The error `kind` of this call.
    pub(super) fn err(&self, kind: ErrorKind) -> IpfsError {
        IpfsError { api: self.api.to_string(), call: self.call, cid: self.cid.map(str::to_string), kind }
    }

    /// Classifies a reqwest error, finding "connection refused" in its chain.
    pub(super) fn transport(&self, e: reqwest::Error, timeout: Duration) -> IpfsError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return self.err(ErrorKind::ConnectionRefused);
            }
            source = s.source();
        }
        let detail = error_chain(&e);
        if e.is_timeout() {
            self.err(ErrorKind::Timeout(timeout))
        } else if e.is_connect() {
            self.err(ErrorKind::Connect(detail))
        } else {
            self.err(ErrorKind::Transport(detail))
        }
    }

    /// An answer that is not the JSON expected, quoting its start.
    pub(super) fn unparsable(&self, e: serde_json::Error, text: &[u8]) -> IpfsError {
        self.err(ErrorKind::Protocol(format!(
            "{e}: {}",
            String::from_utf8_lossy(&text[..text.len().min(200)])
        )))
    }
}

/// `e` and its sources in one line, each said once.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Attempts of an idempotent call (first try included).
const ATTEMPTS: u32 = 5; // waits 0.25 + 0.5 + 1 + 2 s: long enough for a node's restart
/// Pause before the second attempt; doubles after each failure.
const BACKOFF: Duration = Duration::from_millis(250);

/// Runs `attempt` up to [`ATTEMPTS`] times while it fails retryably.
pub(super) async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, IpfsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, IpfsError>>,
{
    let mut pause = BACKOFF;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && tries < ATTEMPTS => {
                log::debug!("{e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// `e` with the path it is about in its message.
pub(super) fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

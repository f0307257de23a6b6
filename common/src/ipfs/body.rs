//! Reading an answer's body: [`BodyReader`] takes it frame by frame, with an
//! idle timeout on every read, so that kubo's trailing `X-Stream-Error` and a
//! body shorter than its `X-Content-Length` are errors, never a short read;
//! [`check_status`] turns an error status into an [`IpfsError`]. What the
//! bytes mean is the caller's business.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::client::json_str;
use super::error::Ctx;
use super::{ErrorKind, IpfsError};

/// The part of an error body kept in a message.
const ERROR_BODY_MAX: usize = 4096;

/// Reads a response body frame by frame so that trailers are seen, with an
/// idle timeout on every read and a check against `X-Content-Length`.
pub(super) struct BodyReader {
    /// What errors name: the [`Ctx`] of the call, owned.
    api: String,
    call: &'static str,
    cid: Option<String>,
    body: reqwest::Body,
    idle: Duration,
    /// Bytes announced by kubo's `X-Content-Length`, if any.
    expected: Option<u64>,
    /// Bytes handed out so far.
    received: u64,
}

impl BodyReader {
    /// A reader of `resp`'s body that stops with an error after `idle`
    /// without a byte.
    pub(super) fn new(ctx: Ctx<'_>, resp: reqwest::Response, idle: Duration) -> Self {
        let expected = resp
            .headers()
            .get("X-Content-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        BodyReader {
            api: ctx.api.to_string(),
            call: ctx.call,
            cid: ctx.cid.map(str::to_string),
            body: reqwest::Body::from(resp),
            idle,
            expected,
            received: 0,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { api: &self.api, call: self.call, cid: self.cid.as_deref() }
    }

    fn err(&self, kind: ErrorKind) -> IpfsError {
        self.ctx().err(kind)
    }

    /// The next piece of the body; `None` at its complete end.
    pub(super) async fn next_chunk(&mut self) -> Result<Option<Bytes>, IpfsError> {
        loop {
            let frame = tokio::time::timeout(self.idle, self.body.frame())
                .await
                .map_err(|_| self.err(ErrorKind::Timeout(self.idle)))?;
            let frame = match frame {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(self.ctx().transport(e, self.idle)),
            };
            match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => {
                    self.received += data.len() as u64;
                    return Ok(Some(data));
                }
                Err(frame) => {
                    if let Some(msg) = frame
                        .trailers_ref()
                        .and_then(|t| t.get("X-Stream-Error"))
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
                        .filter(|m| !m.is_empty())
                    {
                        return Err(self.err(ErrorKind::Truncated(msg)));
                    }
                }
            }
        }
        match self.expected {
            Some(n) if self.received < n => {
                Err(self
                    .err(ErrorKind::Truncated(format!("{} of {n} announced bytes arrived", self.received))))
            }
            _ => Ok(None),
        }
    }
}

/// Passes a success through; turns an error status into an [`IpfsError`]
/// carrying the node's JSON `Message` when there is one.
pub(super) async fn check_status(
    ctx: Ctx<'_>,
    resp: reqwest::Response,
    idle: Duration,
) -> Result<reqwest::Response, IpfsError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let mut reader = BodyReader::new(ctx, resp, idle);
    reader.expected = None;
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_MAX {
        match reader.next_chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let status = status.as_u16();
    let kind =
        match serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| json_str(&v, "Message")) {
            Some(message) => ErrorKind::Api { status, message },
            None => {
                let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_MAX)]);
                ErrorKind::Http { status, body: text.trim().to_string() }
            }
        };
    Err(ctx.err(kind))
}

//! Adding files: the hand-built multipart upload streamed from disk or
//! memory (with its own stall watchdog), and [`Added`], read from the node's
//! newline-delimited JSON answer. Reading the answer's body is `body`'s
//! business, retrying `error`'s.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use tokio::io::AsyncReadExt;

use super::body::{BodyReader, check_status};
use super::client::{json_str, json_u64};
use super::error::{Ctx, retry, with_path};
use super::{ErrorKind, IpfsClient, IpfsError};

/// Bytes per piece when streaming an upload.
const UPLOAD_PIECE: usize = 256 * 1024;

/// The answer of `add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The root CID, CIDv1 in base32.
    pub cid: String,
    /// The node's `Size`: the cumulative size of the DAG's blocks (a little
    /// more than the file's length for files of more than one chunk).
    pub size: u64,
}

impl IpfsClient {
    /// Adds the file at `path` as CIDv1 (256 KiB chunks, raw leaves),
    /// streaming it from disk.
    ///
    /// With `nocopy`, the node is asked to keep only a reference to the file
    /// (kubo's filestore: `nocopy=true` and an `Abspath` part header with the
    /// absolute path); the file must then stay where it is, unchanged.
    pub async fn add_path(&self, path: &Path, nocopy: bool) -> Result<Added, IpfsError> {
        self.add_file(path, nocopy, true).await
    }

    /// Adds the file at `path` like [`add_path`](Self::add_path), but
    /// unpinned: a job's intermediate data (map outputs, reduce parts), which
    /// the node's garbage collection (`ipfs repo gc`, or a daemon run with
    /// `--enable-gc`) may reclaim once the job is over. Pinned, it would
    /// fill a board's disk job after job.
    pub async fn add_scratch(&self, path: &Path) -> Result<Added, IpfsError> {
        self.add_file(path, false, false).await
    }

    /// Adds the file at `path`, pinned or not, by reference with `nocopy`;
    /// the file is opened again for each attempt.
    async fn add_file(&self, path: &Path, nocopy: bool, pin: bool) -> Result<Added, IpfsError> {
        let ctx = self.ctx("add", None);
        let abs = std::path::absolute(path).map_err(|e| ctx.err(ErrorKind::Local(e)))?;
        let name =
            abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".to_string());
        let abspath = nocopy.then(|| abs.to_string_lossy().into_owned());
        retry(|| async {
            let file = tokio::fs::File::open(&abs)
                .await
                .map_err(|e| ctx.err(ErrorKind::Local(with_path(e, &abs))))?;
            self.add_once(ctx, &name, abspath.as_deref(), pin, file_stream(file)).await
        })
        .await
    }

    /// Adds `data` as one file (CIDv1, 256 KiB chunks, raw leaves).
    pub async fn add_bytes(&self, data: Vec<u8>) -> Result<Added, IpfsError> {
        let ctx = self.ctx("add", None);
        let data = Bytes::from(data);
        retry(|| {
            let data = data.clone();
            async move { self.add_once(ctx, "data", None, true, bytes_stream(data)).await }
        })
        .await
    }

    /// One `add` request: a hand-built multipart body around `content`.
    async fn add_once<S>(
        &self,
        ctx: Ctx<'_>,
        name: &str,
        abspath: Option<&str>,
        pin: bool,
        content: S,
    ) -> Result<Added, IpfsError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let mut params = vec![
            ("cid-version", "1".to_string()),
            ("raw-leaves", "true".to_string()),
            ("chunker", "size-262144".to_string()),
            ("cid-base", "base32".to_string()),
            ("progress", "false".to_string()),
            ("pin", pin.to_string()),
        ];
        if abspath.is_some() {
            params.push(("nocopy", "true".to_string()));
        }
        let boundary = format!("ipdc-{:016x}", boundary_seed());
        let mut head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n",
            escape_filename(name)
        );
        if let Some(abs) = abspath {
            head.push_str(&format!("Abspath: {abs}\r\n"));
        }
        head.push_str("\r\n");
        let tail = format!("\r\n--{boundary}--\r\n");

        // Stall detection: the time the upload last made progress.
        let last = Arc::new(Mutex::new(Instant::now()));
        let tick = last.clone();
        let body = stream::iter([Ok(Bytes::from(head))])
            .chain(content)
            .chain(stream::iter([Ok(Bytes::from(tail))]))
            .inspect(move |_| *tick.lock().expect("tick") = Instant::now());

        let idle = self.timeouts.idle;
        let request = async {
            let resp = self
                .http
                .post(self.url("add", &params))
                .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .map_err(|e| ctx.transport(e, idle))?;
            let resp = check_status(ctx, resp, idle).await?;
            let mut reader = BodyReader::new(ctx, resp, idle);
            let mut text = Vec::new();
            while let Some(chunk) = reader.next_chunk().await? {
                text.extend_from_slice(&chunk);
            }
            parse_add_answer(ctx, &text)
        };
        let watchdog = async {
            loop {
                let since = last.lock().expect("tick").elapsed();
                if since >= idle {
                    return ctx.err(ErrorKind::Timeout(idle));
                }
                tokio::time::sleep(idle - since).await;
            }
        };
        tokio::select! {
            r = request => r,
            e = watchdog => Err(e),
        }
    }
}

impl IpfsClient {
    /// Stores one dag-pb node (a directory the caller encoded) with
    /// `block/put`; `pin`: pinned recursively, so that the node fetches and
    /// keeps every block under it. Returns the node's answer, the CID as
    /// the node writes it (CIDv0 or CIDv1: the caller checks it is its own).
    pub async fn put_dag_pb(&self, node: Vec<u8>, pin: bool) -> Result<String, IpfsError> {
        let ctx = self.ctx("block/put", None);
        let params = [
            ("cid-codec", "dag-pb".to_string()),
            ("mhtype", "sha2-256".to_string()),
            ("pin", pin.to_string()),
        ];
        let boundary = format!("ipdc-{:016x}", boundary_seed());
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"node\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&node);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = Bytes::from(body);
        // Pinning fetches what the node lacks: give it the idle timeout of a transfer.
        let limit = self.timeouts.idle.max(self.timeouts.request);
        retry(|| async {
            let once = async {
                let resp = self
                    .http
                    .post(self.url("block/put", &params))
                    .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| ctx.transport(e, limit))?;
                let resp = check_status(ctx, resp, limit).await?;
                let text = resp.bytes().await.map_err(|e| ctx.transport(e, limit))?;
                let v: serde_json::Value =
                    serde_json::from_slice(&text).map_err(|e| ctx.unparsable(e, &text))?;
                json_str(&v, "Key").ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no Key in {v}"))))
            };
            tokio::time::timeout(limit, once)
                .await
                .unwrap_or_else(|_| Err(ctx.err(ErrorKind::Timeout(limit))))
        })
        .await
    }
}

/// Picks the root out of `add`'s newline-delimited JSON: the last object
/// with a `Hash`. An error object in the stream is an error.
fn parse_add_answer(ctx: Ctx<'_>, text: &[u8]) -> Result<Added, IpfsError> {
    let mut added = None;
    for line in text.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| ctx.unparsable(e, line))?;
        if let Some(hash) = json_str(&v, "Hash") {
            let size = json_u64(&v, "Size")
                .ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no usable Size in {v}"))))?;
            added = Some(Added { cid: hash, size });
        } else if v.get("Type").and_then(|t| t.as_str()) == Some("error") {
            let message = json_str(&v, "Message").unwrap_or_else(|| v.to_string());
            return Err(ctx.err(ErrorKind::Api { status: 200, message }));
        }
    }
    added.ok_or_else(|| ctx.err(ErrorKind::Protocol("no Hash in the answer".to_string())))
}

/// A file's bytes as a stream of pieces, read as the upload goes.
fn file_stream(file: tokio::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; UPLOAD_PIECE];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Some((Err(e), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((Ok(Bytes::from(buf)), Some(file)))
    })
}

/// In-memory bytes as a stream of pieces (so upload progress is visible).
fn bytes_stream(data: Bytes) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let pieces = data.len().div_ceil(UPLOAD_PIECE);
    stream::iter((0..pieces).map(move |i| {
        let end = ((i + 1) * UPLOAD_PIECE).min(data.len());
        Ok(data.slice(i * UPLOAD_PIECE..end))
    }))
}

/// A multipart filename, as Go's `url.PathEscape` would send it (kubo
/// unescapes it).
fn escape_filename(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Varies the multipart boundary between requests: the parser on the other
/// side ends the part at the first occurrence of the boundary, so it must
/// not occur in the file; 64 random bits make that improbable.
fn boundary_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_answers_of_kubo_and_js_ipfs_are_both_understood() {
        let ctx = Ctx { api: "http://x:1", call: "add", cid: None };
        let kubo = b"{\"Name\":\"f\",\"Hash\":\"bafk1\",\"Size\":\"6\"}\n";
        let got = parse_add_answer(ctx, kubo).unwrap();
        assert_eq!((got.cid.as_str(), got.size), ("bafk1", 6));
        let js = b"{\"Name\":\"a/b\",\"Hash\":\"bafk2\",\"Size\":3}\r\n{\"Name\":\"a\",\"Hash\":\"bafy3\",\"Size\":70}";
        let got = parse_add_answer(ctx, js).unwrap();
        assert_eq!((got.cid.as_str(), got.size), ("bafy3", 70));
        let err = b"{\"Name\":\"\",\"Hash\":\"bafk1\",\"Size\":\"1\"}\n{\"Message\":\"disk full\",\"Type\":\"error\"}\n";
        let err = parse_add_answer(ctx, err).unwrap_err().to_string();
        assert!(err.contains("add: disk full"), "{err}");
        assert!(parse_add_answer(ctx, b"").is_err());
    }
}

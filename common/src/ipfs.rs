//! The client of the IPFS HTTP RPC API (kubo's `/api/v0/...`), used by the
//! agent and the submitter to add and read data. It also speaks to js-ipfs
//! and to the submitter's embedded store, which answer the same calls.
//!
//! What it owns: building every request (always POST, which kubo requires),
//! streaming bodies both ways (a file is never read whole into memory),
//! timeouts on every call, retries of idempotent calls, and turning every
//! failure into an [`IpfsError`] that names the API, the call and the CID.
//!
//! Differences between implementations it absorbs:
//! `add` answers newline-delimited JSON whose `Size` is a string (kubo) or a
//! number (js-ipfs); CIDv1 is requested in base32 (`cid-base=base32`) so it
//! prints `bafy...`/`bafk...` everywhere; `cat` gets a server-side
//! `timeout=` because js-ipfs waits forever for a missing CID otherwise;
//! errors are JSON `{"Message", "Code", "Type"}` with status 500 (kubo) or
//! 400 (js-ipfs); a body cut short is reported by kubo in a trailing
//! `X-Stream-Error` header, which is an error here, never a short read.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http_body_util::BodyExt;
use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Timeouts of an [`IpfsClient`]. Every call is bounded by one of them.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Establishing the TCP connection.
    pub connect: Duration,
    /// Whole small calls (`id`, `version`).
    pub request: Duration,
    /// Longest silence while streaming: waiting for `cat`'s answer or next
    /// bytes, or for `add` to take more of the upload or to answer.
    pub idle: Duration,
    /// Sent to the node as `cat`'s `timeout=`: how long it may search for a
    /// missing CID (and keep a `cat` open) before giving up by itself.
    pub cat_server: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            idle: Duration::from_secs(60),
            cat_server: Duration::from_secs(600),
        }
    }
}

/// Attempts of an idempotent call (first try included).
const ATTEMPTS: u32 = 5; // waits 0.25 + 0.5 + 1 + 2 s: long enough for a node's restart
/// Pause before the second attempt; doubles after each failure.
const BACKOFF: Duration = Duration::from_millis(250);
/// Bytes per piece when streaming an upload.
const UPLOAD_PIECE: usize = 256 * 1024;
/// The part of an error body kept in a message.
const ERROR_BODY_MAX: usize = 4096;

/// The files of an IPFS node running in this same process (the submitter's
/// embedded store, under `--local`). A map task whose input the node holds
/// as a whole file reads its split from that file with positioned reads,
/// as the node itself would to answer `cat`, skipping the HTTP copies.
pub trait LocalFiles: Send + Sync + fmt::Debug {
    /// The file holding exactly the bytes of `cid`, opened after checking it
    /// is unchanged since it was added, and the object's length. `None` when
    /// the node does not hold `cid` as a file (then `cat` it).
    fn open(&self, cid: &str) -> Option<std::io::Result<(std::fs::File, u64)>>;
}

/// A handle on one IPFS node's RPC API. Cheap to clone (one shared pool).
#[derive(Clone)]
pub struct IpfsClient {
    /// Normalised base URL, e.g. `http://127.0.0.1:5001` (no trailing slash).
    api: String,
    http: reqwest::Client,
    timeouts: Timeouts,
}

impl fmt::Debug for IpfsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpfsClient").field("api", &self.api).finish()
    }
}

/// The answer of `add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The root CID, CIDv1 in base32.
    pub cid: String,
    /// The node's `Size`: the cumulative size of the DAG's blocks (a little
    /// more than the file's length for files of more than one chunk).
    pub size: u64,
}

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
        IpfsError {
            api: api.to_string(),
            call: "cat",
            cid: Some(cid.to_string()),
            kind: ErrorKind::Truncated(format!("no data at offset {offset} of a {size}-byte object")),
        }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

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
struct Ctx<'a> {
    api: &'a str,
    call: &'static str,
    cid: Option<&'a str>,
}

impl Ctx<'_> {
    fn err(&self, kind: ErrorKind) -> IpfsError {
        IpfsError { api: self.api.to_string(), call: self.call, cid: self.cid.map(str::to_string), kind }
    }

    /// Classifies a reqwest error, finding "connection refused" in its chain.
    fn transport(&self, e: reqwest::Error, timeout: Duration) -> IpfsError {
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
}

fn error_chain(e: &dyn std::error::Error) -> String {
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

impl IpfsClient {
    /// A client for the API at `api_url` with default [`Timeouts`].
    ///
    /// Accepts `http://host:port`, `host:port`, or kubo's multiaddr form
    /// `/ip4/127.0.0.1/tcp/5001` (also `/ip6/..`, `/dns/..`, `/dns4/..`).
    pub fn new(api_url: &str) -> Result<Self, IpfsError> {
        Self::with_timeouts(api_url, Timeouts::default())
    }

    pub fn with_timeouts(api_url: &str, timeouts: Timeouts) -> Result<Self, IpfsError> {
        let invalid = |why: String| IpfsError {
            api: api_url.to_string(),
            call: "connect",
            cid: None,
            kind: ErrorKind::InvalidUrl(why),
        };
        let api = normalise_api_url(api_url).map_err(invalid)?;
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| invalid(error_chain(&e)))?;
        Ok(IpfsClient { api, http, timeouts })
    }

    /// The API's base URL, e.g. `http://127.0.0.1:5001`.
    pub fn api(&self) -> &str {
        &self.api
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn ctx<'a>(&'a self, call: &'static str, cid: Option<&'a str>) -> Ctx<'a> {
        Ctx { api: &self.api, call, cid }
    }

    fn url(&self, call: &str, params: &[(&str, String)]) -> Url {
        let mut url = Url::parse(&format!("{}/api/v0/{call}", self.api)).expect("validated base");
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// The node's peer ID.
    pub async fn id(&self) -> Result<String, IpfsError> {
        let ctx = self.ctx("id", None);
        let v = self.small_json_call(ctx, self.url("id", &[])).await?;
        json_str(&v, "ID").ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no ID in {v}"))))
    }

    /// The node's version string (`Version`).
    pub async fn version(&self) -> Result<String, IpfsError> {
        let ctx = self.ctx("version", None);
        let v = self.small_json_call(ctx, self.url("version", &[])).await?;
        json_str(&v, "Version").ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no Version in {v}"))))
    }

    /// The length in bytes of the file `cid` (`files/stat`), for inputs added
    /// by a user with `ipfs add` (any CID version).
    pub async fn file_size(&self, cid: &str) -> Result<u64, IpfsError> {
        let ctx = self.ctx("files/stat", Some(cid));
        let url = self.url("files/stat", &[("arg", format!("/ipfs/{cid}"))]);
        let v = self.small_json_call(ctx, url).await?;
        if let Some(t) = json_str(&v, "Type")
            && t != "file"
        {
            return Err(ctx.err(ErrorKind::Protocol(format!("{cid} is a {t}, not a file"))));
        }
        // kubo answers a number; be lenient with a string too.
        let size = match v.get("Size") {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        size.ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no Size in {v}"))))
    }

    /// A call without a body whose answer is one small JSON object; retried.
    async fn small_json_call(&self, ctx: Ctx<'_>, url: Url) -> Result<serde_json::Value, IpfsError> {
        let limit = self.timeouts.request;
        retry(|| async {
            let once = async {
                let resp = self.http.post(url.clone()).send().await.map_err(|e| ctx.transport(e, limit))?;
                let resp = check_status(ctx, resp, limit).await?;
                let body = resp.bytes().await.map_err(|e| ctx.transport(e, limit))?;
                serde_json::from_slice(&body).map_err(|e| {
                    ctx.err(ErrorKind::Protocol(format!(
                        "{e}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )))
                })
            };
            tokio::time::timeout(limit, once)
                .await
                .unwrap_or_else(|_| Err(ctx.err(ErrorKind::Timeout(limit))))
        })
        .await
    }

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

    /// Streams `length` bytes (all to the end if `None`) of `cid` from
    /// `offset`. Retried until the first byte (or the end) has arrived.
    /// Past the end, or with `length` 0 (not even sent), the stream is empty.
    pub async fn cat_range(
        &self,
        cid: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<CatStream, IpfsError> {
        let ctx = self.ctx("cat", Some(cid));
        if length == Some(0) {
            // Kubo answers nothing, js-ipfs refuses `length=0`: ask neither.
            return Ok(CatStream { api: self.api.clone(), cid: cid.to_string(), reader: None, first: None });
        }
        let mut params = vec![
            ("arg", cid.to_string()),
            ("offset", offset.to_string()),
            ("timeout", format!("{}s", self.timeouts.cat_server.as_secs().max(1))),
        ];
        if let Some(n) = length {
            params.push(("length", n.to_string()));
        }
        let url = self.url("cat", &params);
        let idle = self.timeouts.idle;
        let mut stream = retry(|| async {
            let resp = tokio::time::timeout(idle, self.http.post(url.clone()).send())
                .await
                .map_err(|_| ctx.err(ErrorKind::Timeout(idle)))?
                .map_err(|e| ctx.transport(e, idle))?;
            let resp = match check_status(ctx, resp, idle).await {
                Ok(resp) => resp,
                // js-ipfs refuses an offset at or past the end; kubo answers
                // an empty body, which is what callers get from both.
                Err(e) if is_offset_past_end(&e) => {
                    return Ok(CatStream {
                        api: self.api.clone(),
                        cid: cid.to_string(),
                        reader: None,
                        first: None,
                    });
                }
                Err(e) => return Err(e),
            };
            let mut reader = BodyReader::new(ctx, resp, idle);
            let first = reader.next_chunk().await?;
            Ok(CatStream { api: self.api.clone(), cid: cid.to_string(), reader: Some(reader), first })
        })
        .await?;
        if stream.first.is_none() {
            stream.reader = None;
        }
        Ok(stream)
    }

    /// Writes the whole object `cid` to `path` (through a temporary name in
    /// the same directory, synced to disk and renamed when complete); returns
    /// the bytes written.
    pub async fn cat_to_file(&self, cid: &str, path: &Path) -> Result<u64, IpfsError> {
        self.cat_to_path(cid, path, true).await
    }

    /// [`cat_to_file`](Self::cat_to_file) for a scratch file (a task's input,
    /// removed with its work folder): not synced to disk, which costs
    /// milliseconds per file and protects nothing here.
    pub async fn cat_to_scratch_file(&self, cid: &str, path: &Path) -> Result<u64, IpfsError> {
        self.cat_to_path(cid, path, false).await
    }

    async fn cat_to_path(&self, cid: &str, path: &Path, sync: bool) -> Result<u64, IpfsError> {
        let ctx = self.ctx("cat", Some(cid));
        let local = |e: std::io::Error, p: &Path| ctx.err(ErrorKind::Local(with_path(e, p)));
        let mut stream = self.cat_range(cid, 0, None).await?;
        let file_name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "cat".to_string());
        let tmp = path.with_file_name(format!(".{file_name}.part-{}", std::process::id()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| local(e, &tmp))?;
            let mut written = 0u64;
            while let Some(chunk) = stream.next_chunk().await? {
                file.write_all(&chunk).await.map_err(|e| local(e, &tmp))?;
                written += chunk.len() as u64;
            }
            if sync {
                file.sync_all().await.map_err(|e| local(e, &tmp))?;
            } else {
                file.flush().await.map_err(|e| local(e, &tmp))?;
            }
            drop(file);
            tokio::fs::rename(&tmp, path).await.map_err(|e| local(e, path))?;
            Ok(written)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

/// The bytes of a `cat`, in the order they arrive.
pub struct CatStream {
    api: String,
    cid: String,
    /// `None` once the body has ended.
    reader: Option<BodyReader>,
    /// The first chunk, read by `cat_range` to know the call succeeded.
    first: Option<Bytes>,
}

impl fmt::Debug for CatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatStream").field("api", &self.api).field("cid", &self.cid).finish()
    }
}

impl CatStream {
    /// The next piece of data; `None` at the (complete) end. A stall longer
    /// than the idle timeout or a body cut short is an error.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, IpfsError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(None);
        };
        let next = reader.next_chunk().await;
        if !matches!(next, Ok(Some(_))) {
            self.reader = None;
        }
        next
    }

    /// Reads everything that is left into memory (for small objects).
    pub async fn collect(mut self) -> Result<Vec<u8>, IpfsError> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// Reads a response body frame by frame so that trailers are seen, with an
/// idle timeout on every read and a check against `X-Content-Length`.
struct BodyReader {
    api: String,
    call: &'static str,
    cid: Option<String>,
    body: reqwest::Body,
    idle: Duration,
    /// Bytes announced by kubo's `X-Content-Length`, if any.
    expected: Option<u64>,
    received: u64,
}

impl BodyReader {
    fn new(ctx: Ctx<'_>, resp: reqwest::Response, idle: Duration) -> Self {
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

    fn err(&self, kind: ErrorKind) -> IpfsError {
        IpfsError { api: self.api.clone(), call: self.call, cid: self.cid.clone(), kind }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, IpfsError> {
        loop {
            let frame = tokio::time::timeout(self.idle, self.body.frame())
                .await
                .map_err(|_| self.err(ErrorKind::Timeout(self.idle)))?;
            let frame = match frame {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    let ctx = Ctx { api: &self.api, call: self.call, cid: self.cid.as_deref() };
                    return Err(ctx.transport(e, self.idle));
                }
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
async fn check_status(
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

/// js-ipfs's answer to a `cat` whose offset is at or past the end.
fn is_offset_past_end(e: &IpfsError) -> bool {
    matches!(&e.kind, ErrorKind::Api { message, .. }
        if message.contains("Offset must be less than the file size"))
}

/// Picks the root out of `add`'s newline-delimited JSON: the last object
/// with a `Hash`. An error object in the stream is an error.
fn parse_add_answer(ctx: Ctx<'_>, text: &[u8]) -> Result<Added, IpfsError> {
    let mut added = None;
    for line in text.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
            ctx.err(ErrorKind::Protocol(format!(
                "{e}: {}",
                String::from_utf8_lossy(&line[..line.len().min(200)])
            )))
        })?;
        if let Some(hash) = json_str(&v, "Hash") {
            let size = match v.get("Size") {
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                _ => None,
            }
            .ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no usable Size in {v}"))))?;
            added = Some(Added { cid: hash, size });
        } else if v.get("Type").and_then(|t| t.as_str()) == Some("error") {
            let message = json_str(&v, "Message").unwrap_or_else(|| v.to_string());
            return Err(ctx.err(ErrorKind::Api { status: 200, message }));
        }
    }
    added.ok_or_else(|| ctx.err(ErrorKind::Protocol("no Hash in the answer".to_string())))
}

fn json_str(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|s| s.as_str()).map(str::to_string)
}

/// Runs `attempt` up to [`ATTEMPTS`] times while it fails retryably.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, IpfsError>
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

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
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

/// `http://host:port` from the accepted spellings; no trailing slash.
fn normalise_api_url(input: &str) -> Result<String, String> {
    let s = input.trim();
    let s = if s.starts_with('/') {
        multiaddr_to_url(s)?
    } else if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let url = Url::parse(&s).map_err(|e| format!("{input:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("{input:?}: only http:// is supported"));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{input:?}: no host"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{input:?}: unexpected query or fragment"));
    }
    let port = url.port_or_known_default().ok_or_else(|| format!("{input:?}: no port"))?;
    let path = url.path().trim_end_matches('/');
    Ok(format!("http://{host}:{port}{path}"))
}

fn multiaddr_to_url(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "dns" | "dns4" | "dns6", host, "tcp", port, rest @ ..]
            if rest.iter().all(|p| *p == "http" || p.is_empty()) =>
        {
            Ok(format!("http://{host}:{port}"))
        }
        ["", "ip6", host, "tcp", port, rest @ ..] if rest.iter().all(|p| *p == "http" || p.is_empty()) => {
            Ok(format!("http://[{host}]:{port}"))
        }
        _ => Err(format!("{s:?}: unsupported multiaddr")),
    }
}

#[cfg(test)]
mod tests {
    //! The client against scripted peers speaking raw HTTP, for what a real
    //! node does not do on demand (trailers, stalls, transient failures).
    //! The happy paths run against the submitter's store (its tests).

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const HELLO: &str = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";

    /// Serves `answers` (raw HTTP responses) in order, one per connection,
    /// then repeats the last; an empty answer means "never answer". Returns
    /// the API URL and the count of requests seen.
    async fn scripted(answers: Vec<String>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let n = count.fetch_add(1, Ordering::SeqCst);
                let answer = answers[n.min(answers.len() - 1)].clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if answer.is_empty() {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let _ = sock.write_all(answer.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (url, seen)
    }

    fn response(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn quick() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(2),
            idle: Duration::from_millis(500),
            cat_server: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_connection_refused_naming_api_call_and_cid() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let api = format!("http://127.0.0.1:{port}");
        let client = IpfsClient::new(&api).unwrap();
        let err = client.cat_range(HELLO, 0, None).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::ConnectionRefused), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("IPFS API {api}: cat {HELLO}: connection refused (is the IPFS daemon running?)")
        );
        let err = client.id().await.unwrap_err().to_string();
        assert!(err.starts_with(&format!("IPFS API {api}: id: connection refused")), "{err}");
        let err = client.add_bytes(b"x".to_vec()).await.unwrap_err().to_string();
        assert!(err.contains(": add: connection refused"), "{err}");
    }

    #[tokio::test]
    async fn a_trailing_x_stream_error_is_an_error_not_a_short_file() {
        let answer = "HTTP/1.1 200 OK\r\nConnection: close\r\nTrailer: X-Stream-Error\r\n\
                      Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\
                      X-Stream-Error: ipld: could not find bafkwhatever\r\n\r\n";
        let (url, _) = scripted(vec![answer.to_string()]).await;
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        let mut stream = client.cat_range(HELLO, 0, None).await.unwrap();
        assert_eq!(stream.next_chunk().await.unwrap().unwrap(), "hello");
        let err = stream.next_chunk().await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Truncated(_)), "{err:?}");
        assert!(err.to_string().contains("could not find bafkwhatever"), "{err}");
    }

    #[tokio::test]
    async fn fewer_bytes_than_x_content_length_announces_is_an_error() {
        let answer = response("200 OK", "X-Content-Length: 10\r\n", "hello");
        let (url, _) = scripted(vec![answer]).await;
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let err = client.cat_to_file(HELLO, &dest.path().join("out")).await;
        let err = err.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Truncated(_)), "{err:?}");
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0, "temp left");
    }

    #[tokio::test]
    async fn js_ipfs_400_error_surfaces_its_message_without_retrying() {
        let body = r#"{"Message":"invalid CID: not-a-cid","Code":0,"Type":"error"}"#;
        let (url, seen) = scripted(vec![response("400 Bad Request", "", body)]).await;
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        let err = client.cat_range("not-a-cid", 0, None).await.unwrap_err();
        assert!(err.to_string().ends_with("cat not-a-cid: invalid CID: not-a-cid (HTTP 400)"), "{err}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn js_ipfs_refusing_an_offset_past_the_end_reads_as_empty_like_kubo() {
        let body = r#"{"Message":"Failed to cat file: Offset must be less than the file size","Code":0,"Type":"error"}"#;
        let answer = response("500 Internal Server Error", "", body);
        let (url, seen) = scripted(vec![answer]).await;
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        let stream = client.cat_range(HELLO, 6, None).await.unwrap();
        assert!(stream.collect().await.unwrap().is_empty());
        let stream = client.cat_range(HELLO, 0, Some(0)).await.unwrap();
        assert!(stream.collect().await.unwrap().is_empty());
        assert_eq!(seen.load(Ordering::SeqCst), 1, "length 0 is not asked");
    }

    #[tokio::test]
    async fn a_transient_500_is_retried_and_a_missing_block_is_not() {
        let version = response("200 OK", "", r#"{"Version":"0.30.0","Commit":""}"#);
        let busy = response("503 Service Unavailable", "", "busy");
        let (url, seen) = scripted(vec![busy.clone(), busy, version]).await;
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        assert_eq!(client.version().await.unwrap(), "0.30.0");
        assert_eq!(seen.load(Ordering::SeqCst), 3);

        let missing = r#"{"Message":"block was not found locally (offline): ipld: could not find x","Code":0,"Type":"error"}"#;
        let (url, seen) = scripted(vec![response("500 Internal Server Error", "", missing)]).await;
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        let err = client.cat_range(HELLO, 0, None).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Api { status: 500, .. }), "{err:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_node_that_never_answers_times_out() {
        let (url, _) = scripted(vec![String::new()]).await;
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        let started = Instant::now();
        let err = client.cat_range(HELLO, 0, None).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = client.add_bytes(vec![1; 10]).await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
        let err = client.id().await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err:?}");
    }

    #[tokio::test]
    async fn cat_sends_post_with_offset_length_and_a_server_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            let answer = response("200 OK", "", "");
            sock.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let client = IpfsClient::with_timeouts(&url, quick()).unwrap();
        let stream = client.cat_range(HELLO, 7, Some(9)).await.unwrap();
        assert!(stream.collect().await.unwrap().is_empty());
        let request = server.await.unwrap();
        let line = request.lines().next().unwrap();
        assert_eq!(line, format!("POST /api/v0/cat?arg={HELLO}&offset=7&timeout=1s&length=9 HTTP/1.1"));
    }

    /// Against a real node when `IPDC_TEST_IPFS_API` names one (e.g. the
    /// js-ipfs that `tests/ipfs-peer/peer.sh start` runs, or kubo); skipped
    /// otherwise.
    #[tokio::test]
    async fn a_real_node_gives_kubos_cids_and_slices_when_one_is_configured() {
        let Ok(api) = std::env::var("IPDC_TEST_IPFS_API") else {
            eprintln!("IPDC_TEST_IPFS_API not set: skipped");
            return;
        };
        let client = IpfsClient::with_timeouts(&api, quick()).unwrap();
        assert!(!client.version().await.unwrap().is_empty());
        assert!(!client.id().await.unwrap().is_empty());
        assert_eq!(client.add_bytes(b"hello\n".to_vec()).await.unwrap().cid, HELLO);
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mod251");
        std::fs::write(&path, &data).unwrap();
        let added = client.add_path(&path, false).await.unwrap();
        assert_eq!(added.cid, "bafybeicptzmh5x5nlaqtfkrh2k6lrcqygm7mdep7frcti2af2u7r5xdzw4");
        for (offset, length) in [
            (262_143u64, Some(3u64)),
            (2_999_990, None),
            (5_000_000, Some(1)),
            (3_000_000, None),
            (10, Some(0)),
        ] {
            let got = client.cat_range(&added.cid, offset, length).await.unwrap();
            let got = got.collect().await.unwrap();
            let start = (offset as usize).min(data.len());
            let end = length.map_or(data.len(), |n| (start + n as usize).min(data.len()));
            assert_eq!(got, &data[start..end], "offset {offset}");
        }
        // Valid but absent (the CID of "hello\n" with one byte changed).
        let absent = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6aa";
        let err = client.cat_range(absent, 0, None).await.unwrap_err();
        assert!(err.to_string().contains(&format!("cat {absent}: ")), "{err}");
        let err = client.cat_range("not-a-cid", 0, None).await.unwrap_err();
        assert!(err.to_string().contains("cat not-a-cid: "), "{err}");
    }

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

    #[test]
    fn api_urls_are_validated_and_normalised() {
        let ok = [
            ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
            ("http://127.0.0.1:5001/", "http://127.0.0.1:5001"),
            ("localhost:5001", "http://localhost:5001"),
            ("/ip4/10.0.0.2/tcp/5001", "http://10.0.0.2:5001"),
            ("/ip6/::1/tcp/5001/http", "http://[::1]:5001"),
            ("/dns4/ipfs.local/tcp/5001", "http://ipfs.local:5001"),
        ];
        for (input, want) in ok {
            assert_eq!(IpfsClient::new(input).unwrap().api(), want, "{input}");
        }
        for bad in ["", "ftp://h:1", "https://h:5001", "/ip4/1.2.3.4/udp/1", "http://:5001"] {
            let err = IpfsClient::new(bad).unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::InvalidUrl(_)), "{bad}: {err}");
        }
    }
}

//! [`IpfsClient`]: a handle on one node's RPC API, its [`Timeouts`], the
//! URLs of its calls and the small calls answered with one JSON object
//! (`id`, `version`, `files/stat`). Uploads are in `add`, downloads in
//! `cat`, reading bodies in `body`, errors in `error`.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

use super::address::normalise_api_url;
use super::body::check_status;
use super::error::{Ctx, error_chain, retry};
use super::{ErrorKind, IpfsError};

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

/// A handle on one IPFS node's RPC API. Cheap to clone (one shared pool).
#[derive(Clone)]
pub struct IpfsClient {
    /// Normalised base URL, e.g. `http://127.0.0.1:5001` (no trailing slash).
    pub(super) api: String,
    pub(super) http: reqwest::Client,
    pub(super) timeouts: Timeouts,
}

impl fmt::Debug for IpfsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpfsClient").field("api", &self.api).finish()
    }
}

impl IpfsClient {
    /// A client for the API at `api_url` with default [`Timeouts`].
    ///
    /// Accepts `http://host:port`, `host:port`, or kubo's multiaddr form
    /// `/ip4/127.0.0.1/tcp/5001` (also `/ip6/..`, `/dns/..`, `/dns4/..`).
    pub fn new(api_url: &str) -> Result<Self, IpfsError> {
        Self::with_timeouts(api_url, Timeouts::default())
    }

    /// A client like [`new`](Self::new)'s with these `timeouts`.
    pub fn with_timeouts(api_url: &str, timeouts: Timeouts) -> Result<Self, IpfsError> {
        let ctx = Ctx { api: api_url, call: "connect", cid: None };
        let invalid = |why: String| ctx.err(ErrorKind::InvalidUrl(why));
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

    /// The timeouts every call of this client is bounded by.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// What an error of `call` (about `cid`) will name.
    pub(super) fn ctx<'a>(&'a self, call: &'static str, cid: Option<&'a str>) -> Ctx<'a> {
        Ctx { api: &self.api, call, cid }
    }

    /// The URL of `call` with its query `params`.
    pub(super) fn url(&self, call: &str, params: &[(&str, String)]) -> Url {
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
        self.string_field("id", "ID").await
    }

    /// How many peers the node is connected to (`swarm/peers`).
    pub async fn swarm_peers(&self) -> Result<u32, IpfsError> {
        let ctx = self.ctx("swarm/peers", None);
        let v = self.small_json_call(ctx, self.url("swarm/peers", &[])).await?;
        Ok(v.get("Peers").and_then(|p| p.as_array()).map_or(0, |p| p.len() as u32))
    }

    /// The node's version string (`Version`).
    pub async fn version(&self) -> Result<String, IpfsError> {
        self.string_field("version", "Version").await
    }

    /// The string `key` of the answer to `call`, a call without arguments.
    async fn string_field(&self, call: &'static str, key: &str) -> Result<String, IpfsError> {
        let ctx = self.ctx(call, None);
        let v = self.small_json_call(ctx, self.url(call, &[])).await?;
        json_str(&v, key).ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no {key} in {v}"))))
    }

    /// The length in bytes of the file `cid` (`files/stat`), for inputs added
    /// by a user with `ipfs add` (any CID version).
    pub async fn file_size(&self, cid: &str) -> Result<u64, IpfsError> {
        match self.stat(cid).await? {
            Object::File(size) => Ok(size),
            Object::Directory => Err(self
                .ctx("files/stat", Some(cid))
                .err(ErrorKind::Protocol(format!("{cid} is a directory, not a file")))),
        }
    }

    /// Whether `cid` is a UnixFS file (and its length) or a directory.
    pub async fn stat(&self, cid: &str) -> Result<Object, IpfsError> {
        let ctx = self.ctx("files/stat", Some(cid));
        let url = self.url("files/stat", &[("arg", format!("/ipfs/{cid}"))]);
        let v = self.small_json_call(ctx, url).await?;
        match json_str(&v, "Type").as_deref() {
            Some("directory") => return Ok(Object::Directory),
            Some("file") | None => {}
            Some(t) => return Err(ctx.err(ErrorKind::Protocol(format!("{cid} is a {t}, not a file")))),
        }
        // kubo answers a number; be lenient with a string too.
        json_u64(&v, "Size")
            .map(Object::File)
            .ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no Size in {v}"))))
    }

    /// The bytes of every block of `cid`'s DAG (`files/stat`'s
    /// `CumulativeSize`): what a directory's link to it says (`Tsize`).
    pub async fn dag_size(&self, cid: &str) -> Result<u64, IpfsError> {
        let ctx = self.ctx("files/stat", Some(cid));
        let url = self.url("files/stat", &[("arg", format!("/ipfs/{cid}"))]);
        let v = self.small_json_call(ctx, url).await?;
        json_u64(&v, "CumulativeSize")
            .ok_or_else(|| ctx.err(ErrorKind::Protocol(format!("no CumulativeSize in {v}"))))
    }

    /// The entries of the UnixFS directory `cid` (`ls`), in its order.
    pub async fn ls(&self, cid: &str) -> Result<Vec<DirEntry>, IpfsError> {
        let ctx = self.ctx("ls", Some(cid));
        let url = self.url("ls", &[("arg", cid.to_string())]);
        let v = self.small_json_call(ctx, url).await?;
        let bad = || ctx.err(ErrorKind::Protocol(format!("unexpected ls answer {v}")));
        let objects = v.get("Objects").and_then(|o| o.as_array()).ok_or_else(bad)?;
        let links =
            objects.first().and_then(|o| o.get("Links")).and_then(|l| l.as_array()).ok_or_else(bad)?;
        links
            .iter()
            .map(|l| {
                let is_dir = match l.get("Type") {
                    Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
                    Some(serde_json::Value::String(s)) => s == "dir" || s == "directory",
                    _ => false,
                };
                Ok(DirEntry {
                    name: json_str(l, "Name").ok_or_else(bad)?,
                    cid: json_str(l, "Hash").ok_or_else(bad)?,
                    is_dir,
                })
            })
            .collect()
    }

    /// A call without a body whose answer is one small JSON object; retried.
    async fn small_json_call(&self, ctx: Ctx<'_>, url: Url) -> Result<serde_json::Value, IpfsError> {
        let limit = self.timeouts.request;
        retry(|| async {
            let once = async {
                let resp = self.http.post(url.clone()).send().await.map_err(|e| ctx.transport(e, limit))?;
                let resp = check_status(ctx, resp, limit).await?;
                let body = resp.bytes().await.map_err(|e| ctx.transport(e, limit))?;
                serde_json::from_slice(&body).map_err(|e| ctx.unparsable(e, &body))
            };
            tokio::time::timeout(limit, once)
                .await
                .unwrap_or_else(|_| Err(ctx.err(ErrorKind::Timeout(limit))))
        })
        .await
    }
}

/// The string `key` of a JSON object.
/// What a CID holds, as far as a job's input goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A file of this many bytes.
    File(u64),
    Directory,
}

/// One entry of a UnixFS directory. `name` comes from the node: check it
/// before it names anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub cid: String,
    pub is_dir: bool,
}

pub(super) fn json_str(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|s| s.as_str()).map(str::to_string)
}

/// The count `key` of a JSON object, as a number or as a string of digits:
/// kubo writes some counts as strings (`add`'s `Size`), js-ipfs as numbers.
pub(super) fn json_u64(v: &serde_json::Value, key: &str) -> Option<u64> {
    match v.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

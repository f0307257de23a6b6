//! The HTTP side of the store: the subset of kubo's RPC API that IPDC uses
//! (`add`, `cat`, `files/stat`, `id`, `version`, `repo/gc`), with kubo's
//! answers and errors.
//!
//! Every route is POST (kubo answers 405 to GET). Errors are kubo's JSON
//! `{"Message", "Code": 0, "Type": "error"}` with status 500, also for a
//! malformed or unknown CID; a missing argument is a 400. Bodies stream both
//! ways: an upload goes to disk as it arrives, a `cat` is read from disk as
//! it is sent. The data side is `repo.rs`.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures_util::stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::cid::{Cid, DAG_PB};
use super::dir::Tree;
use super::importer::{CHUNK_SIZE, Layout, dag_size_of};
use super::repo::Repo;

/// The version string `/api/v0/version` reports.
pub const VERSION: &str = "ipdc-store-0.1";

pub struct AppState {
    pub repo: Repo,
    pub peer_id: String,
    /// The folder (resolved) under which `add` with `nocopy` may reference
    /// files; None: never.
    pub nocopy_root: Option<PathBuf>,
}

/// The answer to a `nocopy` add when the store has no nocopy root.
pub const NOCOPY_OFF: &str = "nocopy is off on this store: start it with --nocopy-root DIR to let clients add the files under DIR by reference";

/// The one answer to every other refused `nocopy` add, whatever its
/// `Abspath` names (nothing, a folder, a file outside the root, a file
/// with other bytes), so that it tells nothing about the store's files.
pub const NOCOPY_REFUSED: &str = "nocopy refused: Abspath must name a regular file under this store's --nocopy-root holding exactly the bytes sent";

/// The file a `nocopy` part may reference: `abspath` absolute, plain (no
/// `.` or `..`) and under `root` both as written and once resolved (a link
/// inside the root may not lead out of it). Nothing outside `root` is
/// looked at.
fn nocopy_path(root: &Path, abspath: Option<&str>) -> Option<PathBuf> {
    let path = Path::new(abspath?);
    let plain = path.is_absolute()
        && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !plain || !path.starts_with(root) || path == root {
        return None;
    }
    let real = std::fs::canonicalize(path).ok()?;
    real.starts_with(root).then_some(real)
}

type Params = Query<HashMap<String, String>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v0/add", post(add).layer(DefaultBodyLimit::disable()))
        .route("/api/v0/cat", post(cat))
        .route("/api/v0/files/stat", post(files_stat))
        .route("/api/v0/ls", post(ls))
        .route("/api/v0/block/put", post(block_put))
        .route("/api/v0/id", post(id))
        .route("/api/v0/version", post(version))
        .route("/api/v0/repo/gc", post(repo_gc))
        .with_state(state)
}

/// kubo's error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"Message": message.into(), "Code": 0, "Type": "error"});
    (status, json_headers(), format!("{body}\n")).into_response()
}

fn json_headers() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))]
}

async fn id(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({
        "ID": state.peer_id,
        "PublicKey": "",
        "Addresses": [],
        "AgentVersion": format!("{VERSION}/"),
        "Protocols": [],
    });
    (json_headers(), format!("{body}\n")).into_response()
}

async fn version() -> Response {
    let body = serde_json::json!({
        "Version": VERSION,
        "Commit": "",
        "Repo": "0",
        "System": format!("{}/{}", std::env::consts::ARCH, std::env::consts::OS),
        "Golang": "",
    });
    (json_headers(), format!("{body}\n")).into_response()
}

/// `add` options that change only how the answer is sent, not what is stored.
const OUTPUT_OPTIONS: [&str; 6] = ["quiet", "quieter", "silent", "progress", "stream-channels", "encoding"];

/// The layout an `add` asks for: kubo's two defaults, CIDv0 (no options)
/// and `cid-version=1` (raw leaves), 256 KiB chunks, sha2-256, balanced.
/// Every other value of an option that changes the DAG, and every option
/// this store does not know, is refused by name: never ignored, so a
/// client never gets a CID other than kubo's for the same request.
fn add_layout(q: &HashMap<String, String>) -> Result<Layout, String> {
    let flag = |k: &str| q.get(k).map(|v| v.is_empty() || v == "true");
    let layout = match q.get("cid-version").map(String::as_str) {
        None | Some("0") => Layout::V0,
        Some("1") => Layout::V1,
        Some(v) => return Err(format!("cid-version={v}: this store adds with cid-version 0 or 1")),
    };
    let raw_default = layout == Layout::V1;
    if let Some(raw) = flag("raw-leaves")
        && raw != raw_default
    {
        return Err(format!(
            "raw-leaves={raw} with cid-version={}: this store builds only kubo's default for that version (raw-leaves={raw_default})",
            if layout == Layout::V1 { 1 } else { 0 }
        ));
    }
    for (k, v) in [("chunker", "size-262144"), ("hash", "sha2-256")] {
        if let Some(got) = q.get(k)
            && got != v
        {
            return Err(format!("{k}={got}: this store only supports {k}={v}"));
        }
    }
    if let Some(base) = q.get("cid-base")
        && !(base == "base32" && layout == Layout::V1 || base == "base58btc" && layout == Layout::V0)
    {
        return Err(format!("cid-base={base}: this store prints CIDv1 in base32 and CIDv0 in base58btc"));
    }
    for k in ["trickle", "only-hash", "inline", "fscache", "preserve-mode", "preserve-mtime"] {
        if flag(k) == Some(true) {
            return Err(format!(
                "{k}=true is not supported by this store (it builds kubo's balanced layout and stores what it adds); add without {k}"
            ));
        }
    }
    let known =
        ["cid-version", "raw-leaves", "chunker", "hash", "cid-base", "pin", "wrap-with-directory", "nocopy"];
    let flags = ["trickle", "only-hash", "inline", "fscache", "preserve-mode", "preserve-mtime"];
    if let Some(k) = q.keys().find(|k| {
        !known.contains(&k.as_str()) && !flags.contains(&k.as_str()) && !OUTPUT_OPTIONS.contains(&k.as_str())
    }) {
        return Err(format!("the add option {k} is not supported by this store; add without it"));
    }
    Ok(layout)
}

async fn add(State(state): State<Arc<AppState>>, Query(q): Params, mut form: Multipart) -> Response {
    let layout = match add_layout(&q) {
        Ok(layout) => layout,
        Err(message) => return error(StatusCode::INTERNAL_SERVER_ERROR, message),
    };
    let nocopy = q.get("nocopy").is_some_and(|v| v == "true" || v.is_empty());
    // Why a nocopy add is refused, for the hub's log: the answer is always
    // the same one. It is sent once the whole upload has been read: sent
    // earlier, a client still sending got a broken pipe instead.
    let mut refused: Option<String> = None;
    let pin = q.get("pin").is_none_or(|v| v != "false");
    let wrap = q.get("wrap-with-directory").is_some_and(|v| v == "true" || v.is_empty());
    // The folders of the add: files named `a/b.txt` and folder parts.
    let mut tree = Tree::default();
    let mut lines = String::new();
    loop {
        let mut field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the upload: {e}")),
        };
        if field.content_type() == Some("application/x-directory") {
            let name = field.file_name().or(field.name()).map(percent_decode).unwrap_or_default();
            if let Err(e) = tree.insert(&name, None) {
                return error(StatusCode::BAD_REQUEST, e);
            }
            while let Ok(Some(_)) = field.chunk().await {}
            continue;
        }
        let reference = match (nocopy, &state.nocopy_root, &refused) {
            (false, ..) => None,
            (true, Some(root), None) => {
                let abspath = field.headers().get("Abspath").and_then(|v| v.to_str().ok());
                let path = nocopy_path(root, abspath);
                if path.is_none() {
                    refused =
                        Some(format!("Abspath {abspath:?} is not a plain path under {}", root.display()));
                }
                path
            }
            _ => None,
        };
        let upload = match &refused {
            Some(_) => None,
            None if nocopy && state.nocopy_root.is_none() => None,
            None => match state.repo.upload(reference, layout).await {
                Ok(u) => Some(u),
                Err(e) if nocopy => {
                    refused = Some(e.to_string());
                    None
                }
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
        };
        let Some(mut upload) = upload else {
            while let Ok(Some(_)) = field.chunk().await {} // read and dropped
            continue;
        };
        let name = field.file_name().or(field.name()).map(percent_decode).unwrap_or_default();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if let Err(e) = upload.write(&chunk).await {
                        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return error(StatusCode::BAD_REQUEST, format!("reading the upload: {e}"));
                }
            }
        }
        let imported = match upload.finish(pin).await {
            Ok(i) => i,
            Err(e) if nocopy => {
                refused = Some(e.to_string());
                continue;
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let hash = layout.text(&imported.cid);
        if !name.is_empty()
            && (wrap || name.contains('/'))
            && let Err(e) = tree.insert(&name, Some((imported.cid.clone(), imported.dag_size)))
        {
            return error(StatusCode::BAD_REQUEST, e);
        }
        let line = serde_json::json!({
            "Name": if name.is_empty() { hash.clone() } else { name },
            "Hash": hash,
            "Size": imported.dag_size.to_string(),
        });
        lines.push_str(&format!("{line}\n"));
    }
    if wrap || tree.has_folders() {
        // Folders after their files, deepest first, the wrapping one last (as kubo prints them).
        for b in tree.build(wrap, layout) {
            if let Err(e) = state.repo.put_dir(&b.cid, &b.node, b.links, b.tsize).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            let line =
                serde_json::json!({"Name": b.path, "Hash": layout.text(&b.cid), "Size": b.tsize.to_string()});
            lines.push_str(&format!("{line}\n"));
        }
    }
    if nocopy && state.nocopy_root.is_none() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, NOCOPY_OFF);
    }
    if let Some(why) = refused {
        log::warn!("refused a nocopy add: {why}");
        return error(StatusCode::INTERNAL_SERVER_ERROR, NOCOPY_REFUSED);
    }
    if lines.is_empty() {
        return error(StatusCode::BAD_REQUEST, "file argument 'path' is required");
    }
    (json_headers(), lines).into_response()
}

/// `block/put` of a directory node (the only blocks this store keeps
/// alone: files come whole through `add`). Every entry must be held here
/// already, so that the directory can be read; with `pin=true` it is
/// pinned with everything under it. Answers kubo's `{"Key","Size"}`.
async fn block_put(State(state): State<Arc<AppState>>, Query(q): Params, mut form: Multipart) -> Response {
    let only =
        "this store keeps only UnixFS directory nodes with block/put (cid-codec=dag-pb, mhtype=sha2-256)";
    if q.get("cid-codec").map(String::as_str) != Some("dag-pb")
        || q.get("mhtype").is_some_and(|m| m != "sha2-256")
        || q.contains_key("format")
    {
        return error(StatusCode::BAD_REQUEST, only);
    }
    let pin = q.get("pin").is_some_and(|v| v == "true" || v.is_empty());
    let node = match form.next_field().await {
        Ok(Some(field)) => match field.bytes().await {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the upload: {e}")),
        },
        Ok(None) => return error(StatusCode::BAD_REQUEST, "file argument 'data' is required"),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("reading the upload: {e}")),
    };
    if node.len() > MAX_DIR_NODE {
        return error(StatusCode::BAD_REQUEST, format!("produced block is over {MAX_DIR_NODE} bytes"));
    }
    let Some(links) = super::dir::decode(&node) else {
        return error(StatusCode::BAD_REQUEST, only);
    };
    if let Some(missing) =
        links.iter().find(|l| state.repo.get(&l.cid).is_none() && state.repo.dir(&l.cid).is_none())
    {
        let message = format!(
            "the directory links to {} ({}), which this store does not hold",
            missing.cid, missing.name
        );
        return error(StatusCode::BAD_REQUEST, message);
    }
    let cid = Cid::v1_sha256(DAG_PB, &Sha256::digest(&node));
    let tsize = node.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>();
    if let Err(e) = state.repo.put_dir(&cid, &node, links, tsize).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    if pin && let Err(e) = state.repo.pin_tree(&cid) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("pinning {cid}: {e}"));
    }
    let body = serde_json::json!({"Key": cid.to_string(), "Size": node.len()});
    (json_headers(), format!("{body}\n")).into_response()
}

/// The largest directory node `block/put` takes (kubo's block limit).
const MAX_DIR_NODE: usize = 1 << 20;

/// `repo/gc`: removes every copy added only unpinned; answers kubo's
/// lines, `{"Key":{"/":CID}}` per removed object.
async fn repo_gc(State(state): State<Arc<AppState>>) -> Response {
    let removed = tokio::task::spawn_blocking(move || state.repo.collect(std::time::Duration::ZERO)).await;
    match removed {
        Ok(Ok(cids)) => {
            let lines: String =
                cids.iter().map(|c| format!("{}\n", serde_json::json!({"Key": {"/": c}}))).collect();
            (json_headers(), lines).into_response()
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("repo/gc: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("repo/gc: {e}")),
    }
}

/// The CID a call names in `arg` (`CID` or `/ipfs/CID`), or kubo's answer
/// when it names none (`what`: the argument's name in kubo's message).
fn cid_arg(q: &HashMap<String, String>, what: &str) -> Result<Cid, (StatusCode, String)> {
    let Some(arg) = q.get("arg") else {
        return Err((StatusCode::BAD_REQUEST, format!("argument \"{what}\" is required")));
    };
    let text = arg.strip_prefix("/ipfs/").unwrap_or(arg);
    Cid::parse(text).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("invalid path {arg:?}: {e}")))
}

/// `files/stat` of a stored file, as kubo answers it for `/ipfs/<cid>`.
async fn files_stat(State(state): State<Arc<AppState>>, Query(q): Params) -> Response {
    let cid = match cid_arg(&q, "path") {
        Ok(cid) => cid,
        Err((status, message)) => return error(status, message),
    };
    if let Some((links, tsize)) = state.repo.dir(&cid) {
        let body = serde_json::json!({
            "Hash": cid.to_string(),
            "Size": 0,
            "CumulativeSize": tsize,
            "Blocks": links.len(),
            "Type": "directory",
        });
        return (json_headers(), body.to_string()).into_response();
    }
    let Some(entry) = state.repo.get(&cid) else {
        let message = format!("block was not found locally (offline): ipld: could not find {cid}");
        return error(StatusCode::INTERNAL_SERVER_ERROR, message);
    };
    let body = serde_json::json!({
        "Hash": entry.layout.text(&cid),
        "Size": entry.size,
        "CumulativeSize": dag_size_of(entry.size, entry.layout),
        "Blocks": entry.size.div_ceil(262_144),
        "Type": "file",
    });
    (json_headers(), body.to_string()).into_response()
}

/// `ls` of a directory (its entries, `Type` 1 a folder, 2 a file) or of a
/// file (no entries), as kubo answers it.
async fn ls(State(state): State<Arc<AppState>>, Query(q): Params) -> Response {
    let cid = match cid_arg(&q, "ipfs-path") {
        Ok(cid) => cid,
        Err((status, message)) => return error(status, message),
    };
    let links: Vec<serde_json::Value> = match state.repo.dir(&cid) {
        Some((links, _)) => links
            .iter()
            .map(|l| {
                let size = if l.is_dir { 0 } else { state.repo.get(&l.cid).map_or(l.tsize, |e| e.size) };
                serde_json::json!({
                    "Name": l.name,
                    "Hash": l.cid.to_string(),
                    "Size": size,
                    "Type": if l.is_dir { 1 } else { 2 },
                    "Target": "",
                })
            })
            .collect(),
        None if state.repo.get(&cid).is_some() => Vec::new(),
        None => {
            let message = format!("block was not found locally (offline): ipld: could not find {cid}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };
    let body = serde_json::json!({"Objects": [{"Hash": cid.to_string(), "Links": links}]});
    (json_headers(), format!("{body}\n")).into_response()
}

async fn cat(State(state): State<Arc<AppState>>, Query(q): Params) -> Response {
    let cid = match cid_arg(&q, "ipfs-path") {
        Ok(cid) => cid,
        Err((status, message)) => return error(status, message),
    };
    let number = |key: &str| -> Result<Option<u64>, String> {
        match q.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("invalid {key} {v:?}: must be a non-negative integer")),
        }
    };
    let (offset, length) = match (number("offset"), number("length")) {
        (Ok(o), Ok(l)) => (o.unwrap_or(0), l),
        (Err(m), _) | (_, Err(m)) => return error(StatusCode::INTERNAL_SERVER_ERROR, m),
    };
    if state.repo.dir(&cid).is_some() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "this dag node is a directory");
    }
    let Some(entry) = state.repo.get(&cid) else {
        let message = format!("block was not found locally (offline): ipld: could not find {cid}");
        return error(StatusCode::INTERNAL_SERVER_ERROR, message);
    };
    let start = offset.min(entry.size);
    let end = length.map_or(entry.size, |n| start.saturating_add(n).min(entry.size));
    let cid_text = cid.to_string();
    let opened = {
        let entry = entry.clone();
        tokio::task::spawn_blocking(move || entry.open_unchanged(&cid)).await
    };
    let mut file = match opened {
        Ok(Ok(f)) => tokio::fs::File::from_std(f),
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("opening {cid_text}: {e}")),
    };
    if start < end
        && let Err(e) = file.seek(SeekFrom::Start(start)).await
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let remaining = end - start;
    let body = stream::unfold((file, remaining), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK_SIZE as u64);
        let mut buf = vec![0u8; n as usize];
        match file.read_exact(&mut buf).await {
            Ok(_) => Some((Ok(Bytes::from(buf)), (file, left - n))),
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain")
        .header("X-Content-Length", remaining.to_string())
        .body(Body::from_stream(body))
        .expect("valid response")
}

/// Undoes the `%XX` escapes a kubo client puts in multipart filenames.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

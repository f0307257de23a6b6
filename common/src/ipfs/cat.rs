//! Reading objects: [`IpfsClient::cat_range`] and its [`CatStream`], and
//! whole objects written to files through a temporary name. Reading the
//! body itself is `body`'s business, retrying `error`'s.

use std::fmt;
use std::path::Path;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::body::{BodyReader, check_status};
use super::error::{retry, with_path};
use super::{ErrorKind, IpfsClient, IpfsError};

impl IpfsClient {
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
            return Ok(CatStream::empty(&self.api, cid));
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
                Err(e) if is_offset_past_end(&e) => return Ok(CatStream::empty(&self.api, cid)),
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
        self.cat_to_path(cid, path, true, None).await
    }

    /// [`cat_to_file`](Self::cat_to_file) for a scratch file (a task's input,
    /// removed with its work folder): not synced to disk, which costs
    /// milliseconds per file and protects nothing here.
    pub async fn cat_to_scratch_file(&self, cid: &str, path: &Path) -> Result<u64, IpfsError> {
        self.cat_to_path(cid, path, false, None).await
    }

    /// [`cat_to_scratch_file`](Self::cat_to_scratch_file) of an object a
    /// message says is `size` bytes: at most `size + 1` bytes are written,
    /// so an object larger than it said (compare the count returned) never
    /// fills the disk.
    pub async fn cat_sized_to_scratch_file(
        &self,
        cid: &str,
        path: &Path,
        size: u64,
    ) -> Result<u64, IpfsError> {
        self.cat_to_path(cid, path, false, Some(size.saturating_add(1))).await
    }

    /// Writes `cid` to `path` through a temporary name beside it, synced to
    /// disk first when `sync`; the temporary file goes if anything fails.
    async fn cat_to_path(
        &self,
        cid: &str,
        path: &Path,
        sync: bool,
        most: Option<u64>,
    ) -> Result<u64, IpfsError> {
        let ctx = self.ctx("cat", Some(cid));
        let local = |e: std::io::Error, p: &Path| ctx.err(ErrorKind::Local(with_path(e, p)));
        let mut stream = self.cat_range(cid, 0, most).await?;
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
    /// A stream with no bytes: nothing was asked, or nothing is there.
    fn empty(api: &str, cid: &str) -> Self {
        CatStream { api: api.to_string(), cid: cid.to_string(), reader: None, first: None }
    }

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

/// js-ipfs's answer to a `cat` whose offset is at or past the end.
fn is_offset_past_end(e: &IpfsError) -> bool {
    matches!(e.kind(), ErrorKind::Api { message, .. }
        if message.contains("Offset must be less than the file size"))
}

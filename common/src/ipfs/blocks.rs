//! Block-level calls for data locality: `block/get` of a DAG node (the
//! submitter walks an input's DAG to learn its leaves) and `refs/local`
//! (an agent says which of a job's input blocks its node holds, without
//! fetching any).

use std::collections::HashMap;

use super::body::{BodyReader, check_status};
use super::error::retry;
use super::{ErrorKind, IpfsClient, IpfsError};

/// The largest block `block_get` takes (kubo's block limit is 1 MiB;
/// js-ipfs allows a little more).
const MAX_BLOCK: usize = 2 << 20;

impl IpfsClient {
    /// The bytes of block `cid` (fetched over the swarm if the node lacks it).
    pub async fn block_get(&self, cid: &str) -> Result<Vec<u8>, IpfsError> {
        let ctx = self.ctx("block/get", Some(cid));
        let limit = self.timeouts.request;
        let params = [("arg", cid.to_string()), ("timeout", format!("{}s", limit.as_secs().max(1)))];
        let url = self.url("block/get", &params);
        retry(|| async {
            let once = async {
                let resp = self.http.post(url.clone()).send().await.map_err(|e| ctx.transport(e, limit))?;
                let resp = check_status(ctx, resp, limit).await?;
                let mut reader = BodyReader::new(ctx, resp, limit);
                let mut block = Vec::new();
                while let Some(chunk) = reader.next_chunk().await? {
                    block.extend_from_slice(&chunk);
                    if block.len() > MAX_BLOCK {
                        return Err(ctx.err(ErrorKind::Protocol(format!("block over {MAX_BLOCK} bytes"))));
                    }
                }
                Ok(block)
            };
            tokio::time::timeout(limit, once)
                .await
                .unwrap_or_else(|_| Err(ctx.err(ErrorKind::Timeout(limit))))
        })
        .await
    }

    /// Which of `keys` (blocks as `refs/local` names them: raw CIDv1 in
    /// base32, the blockstore being keyed by multihash) the node holds:
    /// their indices into `keys`. The node's list is streamed and only the
    /// keys asked about are kept, so a large repository costs time, not memory.
    pub async fn held_blocks(&self, keys: &[String]) -> Result<Vec<usize>, IpfsError> {
        let ctx = self.ctx("refs/local", None);
        let idle = self.timeouts.idle;
        let wanted: HashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let resp = tokio::time::timeout(idle, self.http.post(self.url("refs/local", &[])).send())
            .await
            .map_err(|_| ctx.err(ErrorKind::Timeout(idle)))?
            .map_err(|e| ctx.transport(e, idle))?;
        let resp = check_status(ctx, resp, idle).await?;
        let mut reader = BodyReader::new(ctx, resp, idle);
        let mut held = Vec::new();
        let mut line = Vec::new();
        let mut take = |line: &[u8]| {
            if let Some(i) = ref_of(line).and_then(|r| wanted.get(r)) {
                held.push(*i);
            }
        };
        while let Some(chunk) = reader.next_chunk().await? {
            for part in chunk.split_inclusive(|&b| b == b'\n') {
                line.extend_from_slice(part);
                if line.ends_with(b"\n") {
                    take(&line);
                    line.clear();
                } else if line.len() > 4096 {
                    line.clear(); // no block key is this long
                }
            }
        }
        take(&line);
        held.sort_unstable();
        held.dedup();
        Ok(held)
    }
}

/// The `Ref` of one `refs/local` line, `{"Ref":"bafk...","Err":""}`.
fn ref_of(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let at = text.find("\"Ref\"")? + 5;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::ref_of;

    #[test]
    fn refs_local_lines_of_kubo_and_js_ipfs_give_their_key() {
        assert_eq!(ref_of(br#"{"Ref":"bafkreiabc","Err":""}"#), Some("bafkreiabc"));
        assert_eq!(ref_of(b"{\"Ref\": \"bafkreixyz\"}\n"), Some("bafkreixyz"));
        assert_eq!(ref_of(br#"{"Err":"x"}"#), None);
    }
}

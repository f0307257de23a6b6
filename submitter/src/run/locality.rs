//! Data locality: map tasks go first to the agents whose IPFS nodes already
//! hold their split's blocks (the input was added on a board, or an earlier
//! job fetched it there). The submitter walks each input's DAG through its
//! own node (`block/get` of the internal nodes only: leaves are known from
//! their parents' links), asks each picked agent which of the leaves its
//! node holds (`Locate`, answered from `refs/local`: nothing is fetched),
//! and gives the controller, per agent, the bytes of each split its node
//! holds. Inputs of more than [`MAX_LOCATE_BLOCKS`] leaves are sampled:
//! every k-th leaf stands for the k after it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipdc_common::ipfs::IpfsClient;
use ipdc_common::protocol::{AgentStatus, MAX_LOCATE_BLOCKS, TaskCommand};
use log::debug;

use super::session::Session;
use crate::controller::{LocalBytes, MapSplit};
use crate::store::cid::{Cid, RAW, read_varint};
use crate::store::dir::field;

/// Internal nodes fetched per job at most (one per 174 leaves: 45 GiB).
const MAX_NODES: usize = 1024;
/// How long the agents get to answer.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// One leaf block of an input: its key as `refs/local` names it and the
/// file bytes it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leaf {
    key: String,
    start: u64,
    len: u64,
}

/// A leaf asked about, standing for the file bytes `start..end` of `input`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Probe {
    key: String,
    input: String,
    start: u64,
    end: u64,
}

/// The key `refs/local` lists a block under: the raw CIDv1 of its
/// multihash (blockstores are keyed by multihash).
fn block_key(cid: &Cid) -> Option<String> {
    let b = cid.as_bytes();
    let (_, n1) = read_varint(b)?;
    let (_, n2) = read_varint(&b[n1..])?;
    let (code, n3) = read_varint(&b[n1 + n2..])?;
    let (len, n4) = read_varint(&b[n1 + n2 + n3..])?;
    let digest = &b[n1 + n2 + n3 + n4..];
    (code == 0x12 && len == 32 && digest.len() == 32).then(|| Cid::v1_sha256(RAW, digest).to_string())
}

/// A dag-pb UnixFS file node's children: (CID, Tsize, file bytes under it).
fn file_children(node: &[u8]) -> Option<Vec<(Cid, u64, u64)>> {
    let mut links = Vec::new();
    let mut sizes = Vec::new();
    let mut rest = node;
    while !rest.is_empty() {
        let (tag, body, after) = field(rest)?;
        match tag {
            0x12 => {
                let (mut cid, mut tsize) = (None, 0);
                let mut l = body;
                while !l.is_empty() {
                    let (t, b, after) = field(l)?;
                    match t {
                        0x0a => cid = Cid::from_bytes(b).ok(),
                        0x18 => tsize = read_varint(b)?.0,
                        _ => {}
                    }
                    l = after;
                }
                links.push((cid?, tsize));
            }
            0x0a => {
                let mut d = body;
                while !d.is_empty() {
                    let (t, b, after) = field(d)?;
                    match t {
                        0x20 => sizes.push(read_varint(b)?.0),
                        0x22 => {
                            let mut packed = b;
                            while !packed.is_empty() {
                                let (v, n) = read_varint(packed)?;
                                sizes.push(v);
                                packed = &packed[n..];
                            }
                        }
                        _ => {}
                    }
                    d = after;
                }
            }
            _ => {}
        }
        rest = after;
    }
    (links.len() == sizes.len()).then(|| links.into_iter().zip(sizes).map(|((c, t), s)| (c, t, s)).collect())
}

/// Whether a child linked with `tsize` over `bytes` file bytes is a leaf:
/// a raw block, or a CIDv0 leaf (its chunk plus a few bytes of wrapping;
/// an internal node costs at least a link's 34-byte hash more).
fn is_leaf(cid: &Cid, tsize: u64, bytes: u64) -> bool {
    cid.as_bytes().get(1) == Some(&(RAW as u8)) || tsize.saturating_sub(bytes) <= 24
}

/// The leaves of the file `cid` of `size` bytes, in file order.
async fn leaves(ipfs: &IpfsClient, cid: &str, size: u64, budget: &mut usize) -> Result<Vec<Leaf>, String> {
    let root = Cid::parse(cid).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // Depth first, children in order: (node, its first byte).
    let mut stack = vec![(root, 0u64, size, u64::MAX)];
    while let Some((node, start, bytes, tsize)) = stack.pop() {
        let key = block_key(&node).ok_or("not a sha2-256 CID")?;
        if node.as_bytes().get(1) == Some(&(RAW as u8)) || (tsize != u64::MAX && is_leaf(&node, tsize, bytes))
        {
            out.push(Leaf { key, start, len: bytes });
            continue;
        }
        if *budget == 0 {
            return Err(format!("more than {MAX_NODES} DAG nodes"));
        }
        *budget -= 1;
        let block = ipfs.block_get(&node.to_string()).await.map_err(|e| e.to_string())?;
        let children = file_children(&block).ok_or("not a UnixFS file node")?;
        if children.is_empty() {
            out.push(Leaf { key, start, len: bytes });
            continue;
        }
        let mut at = start;
        let mut next = Vec::new();
        for (child, tsize, len) in children {
            next.push((child, at, len, tsize));
            at += len;
        }
        stack.extend(next.into_iter().rev());
    }
    Ok(out)
}

/// The leaves to ask about: all of them, or every k-th standing for k.
fn probes(inputs: &BTreeMap<String, Vec<Leaf>>) -> Vec<Probe> {
    let total: usize = inputs.values().map(Vec::len).sum();
    let stride = total.div_ceil(MAX_LOCATE_BLOCKS).max(1);
    let mut out = Vec::new();
    for (input, leaves) in inputs {
        for run in leaves.chunks(stride) {
            let last = run.last().expect("chunks are not empty");
            out.push(Probe {
                key: run[0].key.clone(),
                input: input.clone(),
                start: run[0].start,
                end: last.start + last.len,
            });
        }
    }
    out
}

/// The file ranges a split reads: its byte range, or a per-file split's whole files.
fn ranges(split: &MapSplit) -> Vec<(String, u64, u64)> {
    if split.files.is_empty() {
        vec![(split.input_cid.clone(), split.start, split.end)]
    } else {
        split.files.iter().map(|f| (f.cid.clone(), 0, f.size)).collect()
    }
}

/// Bytes of `split` within the probes `held` (indices into `probes`).
fn held_bytes(split: &MapSplit, probes: &[Probe], held: impl Fn(usize) -> bool) -> u64 {
    let mut total = 0;
    for (input, start, end) in ranges(split) {
        for (i, p) in probes.iter().enumerate().filter(|(_, p)| p.input == input) {
            if held(i) {
                total += end.min(p.end).saturating_sub(start.max(p.start));
            }
        }
    }
    total
}

/// Asks the picked agents where the splits' blocks are; None when it
/// cannot be known (the node has no `block/get`, as a hub's store; the
/// DAG is too large; no agent's node can say).
pub async fn locate(
    session: &mut Session,
    ipfs: &IpfsClient,
    job: &str,
    splits: &[MapSplit],
    picked: &[AgentStatus],
) -> Option<LocalBytes> {
    let mut inputs = BTreeMap::new();
    let mut budget = MAX_NODES;
    for split in splits {
        for (cid, _, _) in ranges(split) {
            if inputs.contains_key(&cid) {
                continue;
            }
            let size = if split.files.is_empty() {
                split.input_size
            } else {
                split.files.iter().find(|f| f.cid == cid).map_or(0, |f| f.size)
            };
            match session.pump_until(leaves(ipfs, &cid, size, &mut budget)).await {
                Ok(l) => {
                    inputs.insert(cid, l);
                }
                Err(e) => {
                    debug!("no data locality: the DAG of {cid}: {e}");
                    return None;
                }
            }
        }
    }
    let probes = probes(&inputs);
    let keys: Vec<String> = probes.iter().map(|p| p.key.clone()).collect();
    for s in picked {
        session.command(&s.agent, TaskCommand::Locate { job: job.to_string(), blocks: keys.clone() });
    }
    let answered = |session: &Session| {
        picked.iter().all(|s| {
            session
                .directory
                .get(&s.agent)
                .and_then(|s| s.located.as_ref())
                .is_some_and(|l| l.job == job && l.asked as usize == keys.len())
        })
    };
    let start = Instant::now();
    while !answered(session) && start.elapsed() < ANSWER_WAIT {
        let _ = tokio::time::timeout(Duration::from_millis(20), session.poll_once()).await;
    }
    let mut local = LocalBytes::new();
    for s in picked {
        let Some(l) = session.directory.get(&s.agent).and_then(|s| s.located.clone()) else { continue };
        if l.job != job || l.asked as usize != keys.len() || l.held.is_empty() {
            continue;
        }
        let bytes = splits.iter().map(|split| held_bytes(split, &probes, |i| l.holds(i))).collect();
        local.insert(s.agent.clone(), bytes);
    }
    (!local.is_empty()).then_some(local)
}

/// The line telling the user where the input already is, if anywhere.
pub fn describe(local: &LocalBytes, splits: &[MapSplit]) -> Option<String> {
    let split_bytes = |s: &MapSplit| ranges(s).iter().map(|(_, a, b)| b - a).sum::<u64>();
    let total: u64 = splits.iter().map(split_bytes).sum();
    let held: u64 = (0..splits.len()).map(|i| local.values().map(|v| v[i]).max().unwrap_or(0)).sum();
    if held == 0 {
        return None;
    }
    let by_agent: Vec<String> = local
        .iter()
        .map(|(a, v)| (a, v.iter().sum::<u64>()))
        .filter(|(_, b)| *b > 0)
        .map(|(a, b)| format!("{a} {}", super::human_bytes(b)))
        .collect();
    Some(format!(
        "data locality: {} of the {} input is on the agents' nodes already ({}); its maps go there first",
        super::human_bytes(held),
        super::human_bytes(total),
        by_agent.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keys_are_the_raw_cidv1_of_the_multihash_as_refs_local_lists_them() {
        let v0 = Cid::parse("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN").unwrap();
        let key = block_key(&v0).unwrap();
        assert!(key.starts_with("bafkrei"), "{key}");
        let raw = Cid::parse("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am").unwrap();
        assert_eq!(block_key(&raw).unwrap(), raw.to_string());
    }

    fn split(start: u64, end: u64) -> MapSplit {
        MapSplit { input_cid: "in".into(), input_size: 1000, start, end, ..Default::default() }
    }

    #[test]
    fn a_split_counts_the_bytes_of_the_held_leaves_within_its_range() {
        let leaves: Vec<Leaf> =
            (0..4).map(|i| Leaf { key: format!("k{i}"), start: i * 100, len: 100 }).collect();
        let probes = probes(&BTreeMap::from([("in".to_string(), leaves)]));
        assert_eq!(probes.len(), 4);
        let held = |i: usize| i == 1 || i == 2;
        assert_eq!(held_bytes(&split(0, 400), &probes, held), 200);
        assert_eq!(held_bytes(&split(150, 250), &probes, held), 100);
        assert_eq!(held_bytes(&split(0, 100), &probes, held), 0);
    }

    #[test]
    fn many_leaves_are_sampled_each_standing_for_the_run_after_it() {
        let n = MAX_LOCATE_BLOCKS as u64 * 2 + 1;
        let leaves: Vec<Leaf> =
            (0..n).map(|i| Leaf { key: format!("k{i}"), start: i * 10, len: 10 }).collect();
        let probes = probes(&BTreeMap::from([("in".to_string(), leaves)]));
        assert!(probes.len() <= MAX_LOCATE_BLOCKS, "{}", probes.len());
        assert_eq!(probes[0].end, probes[1].start, "the runs cover the file");
        assert_eq!(probes.last().unwrap().end, n * 10);
    }

    #[test]
    fn file_nodes_of_either_layout_give_their_children_and_which_are_leaves() {
        use crate::store::cid::DAG_PB;
        use crate::store::importer::{Layout, file_node};
        let chunk = 262_144;
        let raw = |i: u8| Cid::v1_sha256(RAW, &[i; 32]);
        let pb = |i: u8| Cid::v1_sha256(DAG_PB, &[i; 32]);
        let v1 = file_node(&[(raw(1), chunk, chunk), (raw(2), 5, 5)], Layout::V1);
        let children = file_children(&v1).unwrap();
        assert_eq!(children.iter().map(|c| c.2).collect::<Vec<_>>(), [chunk, 5]);
        assert_eq!(children[0].0, raw(1));
        assert!(children.iter().all(|(c, t, b)| is_leaf(c, *t, *b)));
        // CIDv0: links hold bare multihashes; leaves are dag-pb with a few
        // bytes of wrapping, internal nodes far more.
        let v0 = file_node(&[(pb(3), chunk + 14, chunk), (pb(4), 11_000_000, 10_000_000)], Layout::V0);
        let children = file_children(&v0).unwrap();
        assert_eq!(children[0].0, pb(3));
        assert!(is_leaf(&children[0].0, children[0].1, children[0].2));
        assert!(!is_leaf(&children[1].0, children[1].1, children[1].2));
    }
}

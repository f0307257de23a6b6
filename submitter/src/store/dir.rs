//! UnixFS directories, as kubo builds them for `add -r` and
//! `wrap-with-directory`: a dag-pb node per folder whose links (sorted by
//! name) name its files and subfolders, its Data the UnixFS type
//! Directory. Large folders are one node too (kubo shards only past 256 KiB
//! of links, which no job folder of this store's size reaches).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::cid::{Cid, DAG_PB, read_varint};
use super::importer::{Layout, push_data, push_link};

/// One entry of a directory node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirLink {
    pub name: String,
    pub cid: Cid,
    /// The entry's whole DAG size (what `add` printed as its `Size`).
    pub tsize: u64,
    pub is_dir: bool,
}

/// UnixFS Data of a directory: Type = Directory (1).
const DIRECTORY_DATA: [u8; 2] = [0x08, 0x01];

/// The node of a folder holding `links` (as `layout` writes links): its
/// bytes, CID and DAG size.
pub fn encode(links: &mut [DirLink], layout: Layout) -> (Vec<u8>, Cid, u64) {
    links.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut node = Vec::new();
    for l in links.iter() {
        push_link(&mut node, layout.link_bytes(&l.cid), &l.name, l.tsize);
    }
    push_data(&mut node, &DIRECTORY_DATA);
    let cid = Cid::v1_sha256(DAG_PB, &Sha256::digest(&node));
    let tsize = node.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>();
    (node, cid, tsize)
}

/// The links of a directory node this store wrote (`None`: not one).
/// Whether a link is a folder is not in the node: `is_dir` is filled in by
/// the caller, which knows its directories.
pub fn decode(node: &[u8]) -> Option<Vec<DirLink>> {
    let mut links = Vec::new();
    let mut rest = node;
    let mut saw_data = false;
    while !rest.is_empty() {
        let (tag, body, after) = field(rest)?;
        match tag {
            0x12 => {
                let (mut cid, mut name, mut tsize) = (None, None, 0);
                let mut l = body;
                while !l.is_empty() {
                    let (t, b, after) = field(l)?;
                    match t {
                        0x0a => cid = Some(Cid::from_bytes(b).ok()?),
                        0x12 => name = Some(String::from_utf8(b.to_vec()).ok()?),
                        0x18 => tsize = read_varint(b).map(|(v, _)| v)?,
                        _ => return None,
                    }
                    l = after;
                }
                links.push(DirLink { name: name?, cid: cid?, tsize, is_dir: false });
            }
            0x0a => saw_data = body == DIRECTORY_DATA,
            _ => return None,
        }
        rest = after;
    }
    saw_data.then_some(links)
}

/// One protobuf field: its tag byte, its body (a varint's bytes for tag
/// 0x18, else the length-delimited bytes) and what follows.
pub(crate) fn field(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    if tag & 0x07 == 0 {
        let (_, n) = read_varint(rest)?;
        return Some((tag, &rest[..n], &rest[n..]));
    }
    let (len, n) = read_varint(rest)?;
    let end = n.checked_add(usize::try_from(len).ok()?)?;
    (end <= rest.len()).then(|| (tag, &rest[n..end], &rest[end..]))
}

/// A folder being built from the paths of an add.
#[derive(Default)]
pub struct Tree {
    files: BTreeMap<String, (Cid, u64)>,
    dirs: BTreeMap<String, Tree>,
}

/// One built folder: its path in the add (`""` for the wrapping root),
/// node, CID and DAG size.
pub struct Built {
    pub path: String,
    pub node: Vec<u8>,
    pub cid: Cid,
    pub tsize: u64,
    pub links: Vec<DirLink>,
}

impl Tree {
    /// Adds the file at `path` (`a/b/c.txt`); `None` for a folder of its own.
    /// Refuses a path with an empty, `.` or `..` part.
    pub fn insert(&mut self, path: &str, file: Option<(Cid, u64)>) -> Result<(), String> {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
            return Err(format!("path {path:?} has an empty, '.' or '..' part"));
        }
        let (last, folders) = parts.split_last().expect("split gives one part at least");
        let mut at = self;
        for f in folders {
            at = at.dirs.entry(f.to_string()).or_default();
        }
        match file {
            Some(f) => {
                at.files.insert(last.to_string(), f);
            }
            None => {
                at.dirs.entry(last.to_string()).or_default();
            }
        }
        Ok(())
    }

    /// Whether any file or folder was inserted below the top.
    pub fn has_folders(&self) -> bool {
        !self.dirs.is_empty()
    }

    /// Builds every folder, deepest first, as kubo prints them; with `wrap`,
    /// the top itself last (path `""`), else only the folders below it.
    pub fn build(self, wrap: bool, layout: Layout) -> Vec<Built> {
        let mut out = Vec::new();
        let top = self.build_at(String::new(), layout, &mut out);
        if !wrap {
            out.retain(|b| !b.path.is_empty());
        }
        let _ = top;
        out
    }

    fn build_at(self, path: String, layout: Layout, out: &mut Vec<Built>) -> (Cid, u64) {
        let mut links = Vec::new();
        for (name, sub) in self.dirs {
            let sub_path = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
            let (cid, tsize) = sub.build_at(sub_path, layout, out);
            links.push(DirLink { name, cid, tsize, is_dir: true });
        }
        for (name, (cid, tsize)) in self.files {
            links.push(DirLink { name, cid, tsize, is_dir: false });
        }
        let (node, cid, tsize) = encode(&mut links, layout);
        out.push(Built { path, node, cid: cid.clone(), tsize, links });
        (cid, tsize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_folder_is_kubos_empty_directory() {
        // `ipfs object new unixfs-dir` (CIDv0 QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn).
        let (node, cid, _) = encode(&mut [], Layout::V1);
        assert_eq!(node, [0x0a, 0x02, 0x08, 0x01]);
        assert_eq!(cid.to_string(), "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354");
    }

    #[test]
    fn nodes_decode_to_their_links_and_paths_build_nested_folders() {
        let leaf = super::super::importer::cid_of(b"hello\n");
        let mut tree = Tree::default();
        tree.insert("docs/a.txt", Some((leaf.cid.clone(), leaf.dag_size))).unwrap();
        tree.insert("docs/more/b.txt", Some((leaf.cid.clone(), leaf.dag_size))).unwrap();
        tree.insert("empty", None).unwrap();
        assert!(tree.insert("docs/../x", None).is_err());
        let built = tree.build(true, Layout::V1);
        let paths: Vec<&str> = built.iter().map(|b| b.path.as_str()).collect();
        assert_eq!(paths, ["docs/more", "docs", "empty", ""]);
        for b in &built {
            let names: Vec<String> = decode(&b.node).unwrap().into_iter().map(|l| l.name).collect();
            assert_eq!(names, b.links.iter().map(|l| l.name.clone()).collect::<Vec<_>>());
        }
        assert!(decode(b"\x0a\x02\x08\x02").is_none(), "a file node is not a directory");
    }
}

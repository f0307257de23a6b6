//! The streaming UnixFS importer: computes the CID that `ipfs add` gives a
//! file, from its bytes fed in pieces of any size, in either of kubo's two
//! default layouts ([`Layout`]).
//!
//! Both: 262144-byte chunks, sha2-256, a balanced DAG with at most 174
//! links per node; internal nodes are dag-pb (Links before Data, each link
//! with an empty Name and its Tsize) holding UnixFS `Type=File`, `filesize`
//! and one `blocksize` per child. A one-chunk file (the empty file too) is
//! its leaf. CIDv1 leaves are raw blocks; CIDv0 leaves are dag-pb nodes
//! holding the chunk as UnixFS `Data`, and links hold bare multihashes.
//!
//! Memory: one chunk buffer plus, per tree level, at most 174 pending links.
//! Only hashes are computed here; storing the bytes is the caller's job.

use sha2::{Digest, Sha256};

use super::cid::{Cid, DAG_PB, RAW, put_varint};

/// Which of kubo's default layouts: `add --cid-version=1` (raw leaves) or
/// `add` with no options (CIDv0, dag-pb leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    V1,
    V0,
}

impl Layout {
    /// A CID as this layout prints it (`Qm...` for a CIDv0 DAG's dag-pb nodes).
    pub fn text(self, cid: &Cid) -> String {
        match (self, cid.to_v0_string()) {
            (Layout::V0, Some(v0)) => v0,
            _ => cid.to_string(),
        }
    }

    /// A CID as this layout's dag-pb links hold it.
    pub fn link_bytes(self, cid: &Cid) -> &[u8] {
        match self {
            Layout::V0 => cid.v0_bytes().unwrap_or(cid.as_bytes()),
            Layout::V1 => cid.as_bytes(),
        }
    }

    /// The sha2-256 digest of a leaf holding `chunk`.
    pub fn leaf_digest(self, chunk: &[u8]) -> [u8; 32] {
        match self {
            Layout::V1 => Sha256::digest(chunk).into(),
            Layout::V0 => {
                let (head, tail) = pb_leaf_wrapping(chunk.len() as u64);
                let mut h = Sha256::new();
                h.update(&head);
                h.update(chunk);
                h.update(&tail);
                h.finalize().into()
            }
        }
    }

    /// The CID of a leaf of `len` bytes whose digest is `digest`, and the
    /// leaf block's size.
    fn leaf(self, digest: &[u8], len: u64) -> (Cid, u64) {
        match self {
            Layout::V1 => (Cid::v1_sha256(RAW, digest), len),
            Layout::V0 => {
                let (head, tail) = pb_leaf_wrapping(len);
                (Cid::v1_sha256(DAG_PB, digest), head.len() as u64 + len + tail.len() as u64)
            }
        }
    }
}

/// The bytes before and after a chunk of `len` bytes in a CIDv0 leaf:
/// PBNode { Data: UnixFS { Type: File, Data: chunk, filesize: len } }
/// (no UnixFS Data field for the empty file, as kubo writes it).
fn pb_leaf_wrapping(len: u64) -> (Vec<u8>, Vec<u8>) {
    let mut tail = vec![0x18];
    put_varint(&mut tail, len);
    let mut unixfs_head = vec![0x08, 0x02];
    if len > 0 {
        unixfs_head.push(0x12);
        put_varint(&mut unixfs_head, len);
    }
    let unixfs_len = unixfs_head.len() as u64 + len + tail.len() as u64;
    let mut head = vec![0x0a];
    put_varint(&mut head, unixfs_len);
    head.extend_from_slice(&unixfs_head);
    (head, tail)
}

/// Bytes per leaf (kubo's default chunker `size-262144`).
pub const CHUNK_SIZE: usize = 262_144;
/// Links per internal node (kubo's balanced layout).
pub const MAX_LINKS: usize = 174;

/// What the importer found: the root CID, the DAG's cumulative size (kubo's
/// `Size` in the `add` answer) and the file's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// In its normal (CIDv1) form; `layout.text(&cid)` prints it as `add` does.
    pub cid: Cid,
    pub layout: Layout,
    /// Bytes of all blocks of the DAG (the root's Tsize).
    pub dag_size: u64,
    /// Bytes of the file.
    pub file_size: u64,
}

/// A child of an internal node.
struct Link {
    cid: Cid,
    /// Cumulative size of the child's DAG (dag-pb `Tsize`).
    tsize: u64,
    /// File bytes under the child (UnixFS `blocksize`).
    file_size: u64,
}

/// Feeds bytes with [`Importer::update`], then [`Importer::finish`].
pub struct Importer {
    /// The chunk being filled; emitted as a leaf when it is full.
    chunk: Vec<u8>,
    /// `levels[0]` holds leaves, `levels[k]` nodes of height k not yet
    /// linked from a parent. Invariant: every level holds at most
    /// `MAX_LINKS` links; a full level is turned into a parent only when
    /// one more link arrives (so the last node of a level stays open until
    /// the end).
    levels: Vec<Vec<Link>>,
    total: u64,
    layout: Layout,
}

impl Default for Importer {
    fn default() -> Self {
        Self::new()
    }
}

impl Importer {
    pub fn new() -> Self {
        Importer::with_layout(Layout::V1)
    }

    pub fn with_layout(layout: Layout) -> Self {
        Importer { chunk: Vec::with_capacity(CHUNK_SIZE), levels: vec![Vec::new()], total: 0, layout }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        while !data.is_empty() {
            let take = (CHUNK_SIZE - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == CHUNK_SIZE {
                self.emit_leaf();
            }
        }
    }

    /// Adds a whole leaf of `len` bytes whose digest ([`Layout::leaf_digest`])
    /// was computed elsewhere (leaves are independent, so they can be hashed in parallel
    /// and fed here in file order). Only between whole chunks: every leaf but
    /// the file's last must be [`CHUNK_SIZE`] bytes, as [`Importer::update`]
    /// would have cut it.
    pub fn push_leaf(&mut self, digest: &[u8], len: usize) {
        assert!(self.chunk.is_empty(), "push_leaf after a partial update");
        assert!(len <= CHUNK_SIZE, "a leaf holds at most one chunk");
        self.total += len as u64;
        let n = len as u64;
        let (cid, tsize) = self.layout.leaf(digest, n);
        self.push(0, Link { cid, tsize, file_size: n });
    }

    fn emit_leaf(&mut self) {
        let digest = self.layout.leaf_digest(&self.chunk);
        let n = self.chunk.len() as u64;
        self.chunk.clear();
        let (cid, tsize) = self.layout.leaf(&digest, n);
        self.push(0, Link { cid, tsize, file_size: n });
    }

    /// Adds a link at `level`, first closing that level into a parent if it
    /// is full.
    fn push(&mut self, level: usize, link: Link) {
        if self.levels[level].len() == MAX_LINKS {
            let full = std::mem::take(&mut self.levels[level]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.push(level + 1, build_node(&full, self.layout));
        }
        self.levels[level].push(link);
    }

    pub fn finish(mut self) -> Imported {
        let no_leaf_yet = self.levels[0].is_empty() && self.levels.len() == 1;
        if !self.chunk.is_empty() || no_leaf_yet {
            self.emit_leaf();
        }
        // Close every open level into its parent, bottom up.
        let top = self.levels.len() - 1;
        for level in 0..top {
            let open = std::mem::take(&mut self.levels[level]);
            if !open.is_empty() {
                self.levels[level + 1].push(build_node(&open, self.layout));
            }
        }
        let mut roots = std::mem::take(&mut self.levels[top]);
        let root = if roots.len() == 1 {
            // A lone leaf is the file itself; a lone node is already the root.
            roots.pop().expect("one root")
        } else {
            build_node(&roots, self.layout)
        };
        Imported { cid: root.cid, layout: self.layout, dag_size: root.tsize, file_size: self.total }
    }
}

/// The DAG size (the root's Tsize) of any file of `len` bytes: the layout
/// depends on the length alone, and every CID in it has the same length.
pub fn dag_size_of(len: u64, layout: Layout) -> u64 {
    let mut importer = Importer::with_layout(layout);
    let (full, rest) = (len / CHUNK_SIZE as u64, (len % CHUNK_SIZE as u64) as usize);
    for _ in 0..full {
        importer.push_leaf(&[0; 32], CHUNK_SIZE);
    }
    if rest > 0 || full == 0 {
        importer.push_leaf(&[0; 32], rest);
    }
    importer.finish().dag_size
}

/// Encodes a dag-pb node over `links` and returns the link to it.
fn build_node(links: &[Link], layout: Layout) -> Link {
    let children: Vec<(Cid, u64, u64)> =
        links.iter().map(|l| (l.cid.clone(), l.tsize, l.file_size)).collect();
    let node = file_node(&children, layout);
    Link {
        cid: Cid::v1_sha256(DAG_PB, &Sha256::digest(&node)),
        tsize: node.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>(),
        file_size: links.iter().map(|l| l.file_size).sum(),
    }
}

/// The bytes of a UnixFS file node over `children` (CID, Tsize, file bytes).
pub(crate) fn file_node(children: &[(Cid, u64, u64)], layout: Layout) -> Vec<u8> {
    // UnixFS Data: Type=File (1), filesize (3), blocksizes (4, unpacked).
    let file_size: u64 = children.iter().map(|c| c.2).sum();
    let mut unixfs = Vec::with_capacity(8 + children.len() * 4);
    unixfs.extend_from_slice(&[0x08, 0x02, 0x18]);
    put_varint(&mut unixfs, file_size);
    for c in children {
        unixfs.push(0x20);
        put_varint(&mut unixfs, c.2);
    }
    // PBNode: Links (2) first, then Data (1). PBLink: Hash (1), Name (2), Tsize (3).
    let mut node = Vec::with_capacity(children.len() * 48 + unixfs.len() + 4);
    for (cid, tsize, _) in children {
        push_link(&mut node, layout.link_bytes(cid), "", *tsize);
    }
    push_data(&mut node, &unixfs);
    node
}

/// Appends a PBNode link (PBLink: Hash (1), Name (2), Tsize (3)) to `node`;
/// a node's links come before its Data.
pub(super) fn push_link(node: &mut Vec<u8>, cid: &[u8], name: &str, tsize: u64) {
    let mut pblink = Vec::with_capacity(48 + name.len());
    pblink.push(0x0a);
    put_varint(&mut pblink, cid.len() as u64);
    pblink.extend_from_slice(cid);
    pblink.push(0x12);
    put_varint(&mut pblink, name.len() as u64);
    pblink.extend_from_slice(name.as_bytes());
    pblink.push(0x18);
    put_varint(&mut pblink, tsize);
    node.push(0x12);
    put_varint(node, pblink.len() as u64);
    node.extend_from_slice(&pblink);
}

/// Appends a PBNode's Data (1) to `node`, after its links.
pub(super) fn push_data(node: &mut Vec<u8>, data: &[u8]) {
    node.push(0x0a);
    put_varint(node, data.len() as u64);
    node.extend_from_slice(data);
}

/// The CID of `data` as a whole (for tests and small values).
pub fn cid_of(data: &[u8]) -> Imported {
    cid_in(data, Layout::V1)
}

/// The CID of `data` as a whole in `layout`.
pub fn cid_in(data: &[u8], layout: Layout) -> Imported {
    let mut imp = Importer::with_layout(layout);
    imp.update(data);
    imp.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ground truth: the CIDs that real IPFS implementations (kubo and
    /// js-ipfs) give for these inputs with `ipfs add --cid-version=1`.
    const EMPTY: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const A1000: &str = "bafkreicb5xwoilld5dm36uk2totjglq4edf4t5nf2e2giww3lwy3s436um";
    const HELLO: &str = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
    const MOD251_3M: &str = "bafybeicptzmh5x5nlaqtfkrh2k6lrcqygm7mdep7frcti2af2u7r5xdzw4";
    const MOD251_50M: &str = "bafybeibj2bygcvu5axz7czp7mjl6ibmtt5d6y7ucxteyzhflcz4svt3yyq";

    /// Feeds `len` bytes of `i % 251` in pieces whose sizes cycle through
    /// `pieces`, never materialising the whole input.
    fn import_mod251(len: u64, pieces: &[usize]) -> Imported {
        let mut imp = Importer::new();
        let mut buf = Vec::new();
        let (mut at, mut k) = (0u64, 0usize);
        while at < len {
            let n = (pieces[k % pieces.len()] as u64).min(len - at) as usize;
            k += 1;
            buf.clear();
            buf.extend((at..at + n as u64).map(|i| (i % 251) as u8));
            imp.update(&buf);
            at += n as u64;
        }
        let out = imp.finish();
        assert_eq!(out.file_size, len);
        out
    }

    #[test]
    fn small_files_are_their_raw_leaf() {
        assert_eq!(cid_of(b"").cid.to_string(), EMPTY);
        assert_eq!(cid_of(&[b'a'; 1000]).cid.to_string(), A1000);
        let hello = cid_of(b"hello\n");
        assert_eq!(hello.cid.to_string(), HELLO);
        assert_eq!((hello.dag_size, hello.file_size), (6, 6));
    }

    #[test]
    fn small_files_fed_byte_by_byte_give_the_same_cid() {
        let mut imp = Importer::new();
        for b in [b'a'; 1000] {
            imp.update(&[b]);
            imp.update(&[]);
        }
        assert_eq!(imp.finish().cid.to_string(), A1000);
        let mut imp = Importer::new();
        imp.update(&[]);
        assert_eq!(imp.finish().cid.to_string(), EMPTY);
    }

    #[test]
    fn three_megabytes_give_kubos_one_level_dag() {
        let whole = import_mod251(3_000_000, &[1 << 20]);
        assert_eq!(whole.cid.to_string(), MOD251_3M);
        assert!(whole.dag_size > 3_000_000);
        let odd = import_mod251(3_000_000, &[1, 7919, 262_143, 262_145, 100_003]);
        assert_eq!(odd, whole);
    }

    #[test]
    fn fifty_megabytes_give_kubos_two_level_dag() {
        let out = import_mod251(50_000_000, &[999_983, 262_144, 13]);
        assert_eq!(out.cid.to_string(), MOD251_50M);
    }

    /// The same bytes fed as precomputed leaf digests.
    fn import_mod251_by_leaves(len: u64) -> Imported {
        let mut imp = Importer::new();
        let mut at = 0;
        while at < len {
            let n = (CHUNK_SIZE as u64).min(len - at);
            let leaf: Vec<u8> = (at..at + n).map(|i| (i % 251) as u8).collect();
            imp.push_leaf(&Sha256::digest(&leaf), n as usize);
            at += n;
        }
        imp.finish()
    }

    #[test]
    fn leaves_hashed_elsewhere_give_the_same_cids() {
        assert_eq!(import_mod251_by_leaves(0).cid.to_string(), EMPTY);
        assert_eq!(import_mod251_by_leaves(3_000_000).cid.to_string(), MOD251_3M);
        assert_eq!(import_mod251_by_leaves(50_000_000).cid.to_string(), MOD251_50M);
        for len in [1, CHUNK_SIZE as u64, CHUNK_SIZE as u64 + 1, 174 * CHUNK_SIZE as u64 + 7] {
            assert_eq!(import_mod251_by_leaves(len), import_mod251(len, &[4096]), "{len}");
        }
    }

    /// Feeds `len` bytes of `i % 251` in `layout` as leaf digests.
    fn v0_by_leaves(len: u64) -> Imported {
        let mut imp = Importer::with_layout(Layout::V0);
        let mut at = 0;
        while at < len || (at == 0 && len == 0) {
            let n = (CHUNK_SIZE as u64).min(len - at);
            let leaf: Vec<u8> = (at..at + n).map(|i| (i % 251) as u8).collect();
            imp.push_leaf(&Layout::V0.leaf_digest(&leaf), n as usize);
            at += n;
            if len == 0 {
                break;
            }
        }
        imp.finish()
    }

    /// Ground truth: what `ipfs add` with no options (CIDv0, dag-pb leaves)
    /// gives, from js-ipfs 0.66 and kubo (hello).
    #[test]
    fn v0_layout_gives_the_cids_of_a_plain_ipfs_add() {
        let text = |i: &Imported| Layout::V0.text(&i.cid);
        assert_eq!(text(&cid_in(b"", Layout::V0)), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        let hello = cid_in(b"hello\n", Layout::V0);
        assert_eq!(text(&hello), "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN");
        assert_eq!((hello.dag_size, hello.file_size), (14, 6));
        let mod251 = |len: u64| (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
        let three = cid_in(&mod251(3_000_000), Layout::V0);
        assert_eq!(text(&three), "QmTdtwzKMjtWmGptPoCaK83huuRM7EWJXfHLnZi5nbF1A4");
        assert_eq!(three.dag_size, 3_000_753);
        assert_eq!(three.dag_size, dag_size_of(3_000_000, Layout::V0));
        assert_eq!(text(&v0_by_leaves(3_000_000)), "QmTdtwzKMjtWmGptPoCaK83huuRM7EWJXfHLnZi5nbF1A4");
        let fifty = v0_by_leaves(50_000_000);
        assert_eq!(text(&fifty), "QmV9QApct7BU8eP25omZT7dh2xBwQszrePo8uqtm2XfejT");
        assert_eq!(fifty.dag_size, 50_011_970);
        assert_eq!(text(&v0_by_leaves(0)), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        // A CIDv1 of the same bytes is another object.
        assert_ne!(cid_of(b"hello\n").cid, hello.cid);
    }

    #[test]
    fn exactly_one_chunk_is_a_raw_leaf_and_one_more_byte_is_a_node() {
        let one = import_mod251(CHUNK_SIZE as u64, &[CHUNK_SIZE]);
        assert!(one.cid.to_string().starts_with("bafk"));
        assert_eq!(one.dag_size, CHUNK_SIZE as u64);
        let two = import_mod251(CHUNK_SIZE as u64 + 1, &[4096]);
        assert!(two.cid.to_string().starts_with("bafy"));
    }
}

//! The k-way merge: many streams of records, each sorted by key bytes, read
//! as one sorted stream. Ties (equal keys) come out in source order, so the
//! merge is stable. Used by reducers over the map outputs of a partition,
//! and by the map-side sorter to merge its spill runs.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;

use crate::exec::RecordSource;
use crate::record::RecordReader;

/// A sorted stream with a current record, as the merge needs it: the keys
/// of all sources are compared while they stay in place.
pub trait MergeCursor {
    /// Moves to the next record; `false` at the end of the stream.
    fn advance(&mut self) -> io::Result<bool>;
    /// Key of the current record (valid after `advance` returned `true`).
    fn key(&self) -> &[u8];
    /// Value of the current record.
    fn value(&self) -> &[u8];
}

/// A [`MergeCursor`] over a stream in the record framing of
/// [`crate::record`]. Its key and value buffers are reused from record to
/// record.
pub struct ReaderCursor<R> {
    reader: RecordReader<R>,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<R: BufRead> ReaderCursor<R> {
    pub fn new(inner: R) -> Self {
        ReaderCursor { reader: RecordReader::new(inner), key: Vec::new(), value: Vec::new() }
    }
}

impl<R: BufRead> MergeCursor for ReaderCursor<R> {
    fn advance(&mut self) -> io::Result<bool> {
        match self.reader.next_record()? {
            None => Ok(false),
            Some((k, v)) => {
                self.key.clear();
                self.key.extend_from_slice(k);
                self.value.clear();
                self.value.extend_from_slice(v);
                Ok(true)
            }
        }
    }

    fn key(&self) -> &[u8] {
        &self.key
    }

    fn value(&self) -> &[u8] {
        &self.value
    }
}

/// Buffer size of each file [`KWayMerge::open`] reads.
pub const MERGE_READ_BUF: usize = 64 << 10;

/// Merges sorted sources into one stream sorted by key bytes; equal keys
/// come out in source order (stable). A binary min-heap of source indices
/// ordered by (current key, index); no allocation per record.
pub struct KWayMerge<C = ReaderCursor<BufReader<File>>> {
    cursors: Vec<C>,
    /// Indices of the sources that have a current record, as a min-heap.
    heap: Vec<usize>,
    /// The source whose record was returned last: advanced on the next call.
    pending: bool,
}

impl KWayMerge<ReaderCursor<BufReader<File>>> {
    /// Opens files of sorted records (the framing of [`crate::record`]).
    pub fn open(paths: &[PathBuf]) -> io::Result<Self> {
        let files = paths.iter().map(File::open).collect::<io::Result<Vec<_>>>()?;
        Self::from_files(files)
    }

    /// Merges the sorted runs in `files`, each read from its current offset.
    pub fn from_files(files: Vec<File>) -> io::Result<Self> {
        Self::from_readers(files.into_iter().map(|f| BufReader::with_capacity(MERGE_READ_BUF, f)).collect())
    }
}

impl<R: BufRead> KWayMerge<ReaderCursor<R>> {
    /// Merges streams of sorted records (the framing of [`crate::record`]).
    pub fn from_readers(readers: Vec<R>) -> io::Result<Self> {
        Self::from_cursors(readers.into_iter().map(ReaderCursor::new).collect())
    }
}

impl<C: MergeCursor> KWayMerge<C> {
    /// Merges sorted cursors (not yet advanced). Ties go to the lower index.
    pub fn from_cursors(mut cursors: Vec<C>) -> io::Result<Self> {
        let mut heap = Vec::with_capacity(cursors.len());
        for (i, c) in cursors.iter_mut().enumerate() {
            if c.advance()? {
                heap.push(i);
            }
        }
        let mut m = KWayMerge { cursors, heap, pending: false };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    /// Number of sources.
    pub fn sources(&self) -> usize {
        self.cursors.len()
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (ca, cb) = (&self.cursors[a], &self.cursors[b]);
        match ca.key().cmp(cb.key()) {
            std::cmp::Ordering::Equal => a < b,
            o => o.is_lt(),
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                return;
            }
            let r = l + 1;
            let c = if r < n && self.less(self.heap[r], self.heap[l]) { r } else { l };
            if !self.less(self.heap[c], self.heap[i]) {
                return;
            }
            self.heap.swap(i, c);
            i = c;
        }
    }

    /// Advances the source of the record returned last, restoring the heap.
    fn settle(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.pending) {
            let top = self.heap[0];
            if !self.cursors[top].advance()? {
                let last = self.heap.pop().expect("heap holds the pending source");
                if self.heap.is_empty() {
                    return Ok(());
                }
                self.heap[0] = last;
            }
            self.sift_down(0);
        }
        Ok(())
    }
}

impl<C: MergeCursor> RecordSource for KWayMerge<C> {
    fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>> {
        self.settle()?;
        match self.heap.first() {
            None => Ok(None),
            Some(&i) => {
                self.pending = true;
                let c = &self.cursors[i];
                Ok(Some((c.key(), c.value())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::write_record;

    fn framed(recs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, v) in recs {
            write_record(&mut b, k, v).unwrap();
        }
        b
    }

    fn drain(src: &mut dyn RecordSource) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((k, v)) = src.next_record().unwrap() {
            out.push((k.to_vec(), v.to_vec()));
        }
        out
    }

    #[test]
    fn merges_in_key_order_and_breaks_ties_by_source() {
        let a = framed(&[(b"sa", b"j0"), (b"sb", b"j0"), (b"sb", b"j1"), (b"sd", b"j0")]);
        let b = framed(&[(b"sb", b"j2"), (b"sc", b"j0")]);
        let c = framed(&[]);
        let d = framed(&[(b"sa", b"j3"), (b"sz", b"j0")]);
        let mut m = KWayMerge::from_readers(vec![&a[..], &b[..], &c[..], &d[..]]).unwrap();
        assert_eq!(m.sources(), 4);
        let got = drain(&mut m);
        let want: Vec<(Vec<u8>, Vec<u8>)> = [
            ("sa", "j0"),
            ("sa", "j3"),
            ("sb", "j0"),
            ("sb", "j1"),
            ("sb", "j2"),
            ("sc", "j0"),
            ("sd", "j0"),
            ("sz", "j0"),
        ]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(got, want);
        // Stays at the end.
        assert!(m.next_record().unwrap().is_none());
    }

    #[test]
    fn no_sources_and_empty_sources() {
        let mut m = KWayMerge::from_readers(Vec::<&[u8]>::new()).unwrap();
        assert!(m.next_record().unwrap().is_none());
        let mut m = KWayMerge::from_readers(vec![&b""[..], &b""[..]]).unwrap();
        assert!(m.next_record().unwrap().is_none());
    }

    #[test]
    fn truncated_source_is_an_error() {
        let mut a = framed(&[(b"sa", b"j0"), (b"sb", b"j0")]);
        a.pop();
        let mut m = KWayMerge::from_readers(vec![&a[..]]).unwrap();
        assert!(m.next_record().unwrap().is_some());
        assert!(m.next_record().is_err());
    }

    #[test]
    fn opens_files_and_matches_a_stable_sort() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut all = Vec::new();
        let mut paths = Vec::new();
        for f in 0..9u64 {
            let mut recs: Vec<(Vec<u8>, Vec<u8>)> = (0..(next() % 200))
                .map(|i| {
                    let k = format!("s{}", next() % 50).into_bytes();
                    (k, format!("j[{f},{i}]").into_bytes())
                })
                .collect();
            recs.sort_by(|a, b| a.0.cmp(&b.0));
            let p = dir.path().join(format!("f{f}"));
            let mut b = Vec::new();
            for (k, v) in &recs {
                write_record(&mut b, k, v).unwrap();
            }
            std::fs::write(&p, b).unwrap();
            paths.push(p);
            all.extend(recs);
        }
        // Stable sort of the concatenation = merge with ties by file index.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut m = KWayMerge::open(&paths).unwrap();
        assert_eq!(drain(&mut m), all);
    }
}

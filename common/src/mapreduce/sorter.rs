//! The map-side output buffer: [`MapOutput`] takes the records a map task
//! emits, partitions them with [`partition_of`], sorts them by
//! (partition, key bytes) in a memory budget, spills sorted runs to disk
//! when the budget is exceeded, and finally writes one sorted file per
//! partition (merging the runs when there were spills).
//!
//! Memory: records are appended to one arena (`Vec<u8>`) with a compact
//! fixed-size index entry each — no allocation per record. Both grow at
//! most to about the budget (a record larger than the whole budget is
//! buffered alone, then spilled). The final merge adds one read buffer per
//! open run (at most [`DEFAULT_FAN_IN`] runs, merged in passes if more).
//!
//! Sorting is stable: records with equal keys keep their emission order,
//! in memory (ties broken by arena offset), across runs (runs are merged in
//! spill order, ties going to the earlier run) and through merge passes
//! (only consecutive runs are merged together).

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::merge::{KWayMerge, MergeCursor, ReaderCursor};
use super::partition::partition_of;
use crate::exec::{RecordSink, RecordSource};
use crate::record::{MAX_DATUM_LEN, framed_len, write_record};

/// Most runs merged at once (open files and read buffers); more runs are
/// merged in passes first.
pub const DEFAULT_FAN_IN: usize = 64;

/// Largest read/write buffer the merge uses per file.
const MAX_IO_BUF: usize = 64 << 10;
const MIN_IO_BUF: usize = 4 << 10;

/// One sorted partition file written by [`MapOutput::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFile {
    pub partition: u32,
    pub path: PathBuf,
    /// Records in the file.
    pub records: u64,
    /// Size of the file in bytes (framed records).
    pub bytes: u64,
}

/// Index entry of one buffered record; its key and value are consecutive in
/// the arena at `off`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    off: u64,
    /// The first 8 key bytes, big-endian, zero-padded: compares like the key
    /// (when different), so most comparisons stay out of the arena.
    prefix: u64,
    klen: u32,
    vlen: u32,
    part: u32,
}

const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

impl Entry {
    fn key<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        let s = self.off as usize;
        &arena[s..s + self.klen as usize]
    }

    fn value<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        let s = self.off as usize + self.klen as usize;
        &arena[s..s + self.vlen as usize]
    }
}

fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// Where one partition of a run file lies: segments follow each other in
/// partition order, so only their sizes are kept.
#[derive(Debug, Clone, Copy, Default)]
struct Seg {
    bytes: u64,
    records: u64,
}

/// A sorted run on disk: all partitions, in order, each sorted by key.
#[derive(Debug)]
struct Run {
    path: PathBuf,
    segs: Vec<Seg>,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// The map-side output buffer (see the module docs).
pub struct MapOutput {
    reducers: u32,
    budget: usize,
    dir: PathBuf,
    /// Unique file name prefix of this buffer's files in `dir`.
    name: String,
    arena: Vec<u8>,
    index: Vec<Entry>,
    runs: Vec<Run>,
    spills: usize,
    files_made: u64,
    fan_in: usize,
    records: u64,
}

impl MapOutput {
    /// A buffer for `reducers` partitions holding about `budget_bytes` in
    /// memory, spilling into `spill_dir` (which must exist; the partition
    /// files are written there too).
    pub fn new(reducers: u32, budget_bytes: usize, spill_dir: &Path) -> io::Result<Self> {
        if !spill_dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("spill directory {} does not exist", spill_dir.display()),
            ));
        }
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        Ok(MapOutput {
            reducers: reducers.max(1),
            budget: budget_bytes,
            dir: spill_dir.to_path_buf(),
            name: format!("map-{}-{n}", std::process::id()),
            arena: Vec::new(),
            index: Vec::new(),
            runs: Vec::new(),
            spills: 0,
            files_made: 0,
            fan_in: DEFAULT_FAN_IN,
            records: 0,
        })
    }

    /// Sets the most runs merged at once (at least 2; default
    /// [`DEFAULT_FAN_IN`]).
    pub fn with_fan_in(mut self, fan_in: usize) -> Self {
        self.fan_in = fan_in.max(2);
        self
    }

    /// Sorted runs spilled to disk so far. Final once all records are
    /// emitted: [`finish`](Self::finish) merges but does not spill.
    pub fn spills(&self) -> usize {
        self.spills
    }

    /// Records emitted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes buffered in memory now (arena + index), the figure compared
    /// with the budget.
    pub fn buffered_bytes(&self) -> usize {
        self.arena.len() + self.index.len() * ENTRY_BYTES
    }

    fn io_buf(&self) -> usize {
        (self.budget / (2 * (self.fan_in + 1))).clamp(MIN_IO_BUF, MAX_IO_BUF)
    }

    fn new_path(&mut self, what: &str) -> PathBuf {
        self.files_made += 1;
        self.dir.join(format!("{}-{what}-{}", self.name, self.files_made))
    }

    /// Sorts the index by (partition, key, emission order).
    fn sort_index(&mut self) {
        let arena = &self.arena[..];
        self.index.sort_unstable_by(|a, b| {
            a.part
                .cmp(&b.part)
                .then(a.prefix.cmp(&b.prefix))
                .then_with(|| a.key(arena).cmp(b.key(arena)))
                .then(a.off.cmp(&b.off))
        });
    }

    /// Start of each partition's entries in the sorted index, plus the end.
    fn bounds(&self) -> Vec<usize> {
        let mut b = Vec::with_capacity(self.reducers as usize + 1);
        let mut i = 0;
        for p in 0..self.reducers {
            b.push(i);
            i += self.index[i..].partition_point(|e| e.part == p);
        }
        b.push(i);
        b
    }

    /// Sorts the buffer and writes it as one run file, then clears it.
    fn spill(&mut self) -> io::Result<()> {
        self.sort_index();
        let path = self.new_path("run");
        let res = (|| {
            let mut w = BufWriter::with_capacity(MAX_IO_BUF, File::create(&path)?);
            let mut segs = vec![Seg::default(); self.reducers as usize];
            for e in &self.index {
                let (k, v) = (e.key(&self.arena), e.value(&self.arena));
                write_record(&mut w, k, v)?;
                let s = &mut segs[e.part as usize];
                s.bytes += framed_len(k, v) as u64;
                s.records += 1;
            }
            w.into_inner().map_err(|e| e.into_error())?;
            Ok(segs)
        })();
        match res {
            Ok(segs) => {
                self.runs.push(Run { path, segs });
                self.spills += 1;
                self.arena.clear();
                self.index.clear();
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Writes the sorted partition files and removes the run files.
    pub fn finish(mut self) -> io::Result<Vec<PartitionFile>> {
        self.sort_index();
        let mut made = Vec::new();
        let res = self.write_partitions(&mut made);
        if res.is_err() {
            for p in made {
                let _ = fs::remove_file(p);
            }
        }
        // Run files go when `self` drops.
        res
    }

    fn write_partitions(&mut self, made: &mut Vec<PathBuf>) -> io::Result<Vec<PartitionFile>> {
        let tail = !self.index.is_empty();
        // Fewer runs than the fan-in, counting the in-memory tail as one.
        while self.runs.len() + tail as usize > self.fan_in {
            let excess = self.runs.len() + tail as usize - self.fan_in;
            if excess < self.fan_in {
                // One last merge of just enough leading runs.
                self.merge_leading(excess + 1)?;
            } else {
                let mut done = 0;
                while self.runs.len() - done > 1 {
                    let k = self.fan_in.min(self.runs.len() - done);
                    self.merge_runs_at(done, k)?;
                    done += 1;
                }
            }
        }

        let bounds = self.bounds();
        let buf = self.io_buf();
        let mut readers = open_runs(&self.runs, buf)?;
        let mut out = Vec::with_capacity(self.reducers as usize);
        for p in 0..self.reducers {
            let path = self.dir.join(format!("{}-part-{p:05}", self.name));
            made.push(path.clone());
            let mut w = BufWriter::with_capacity(buf, File::create(&path)?);
            let mem = &self.index[bounds[p as usize]..bounds[p as usize + 1]];
            let (records, bytes) = if self.runs.is_empty() {
                let mut seg = Seg::default();
                for e in mem {
                    let (k, v) = (e.key(&self.arena), e.value(&self.arena));
                    write_record(&mut w, k, v)?;
                    seg.bytes += framed_len(k, v) as u64;
                    seg.records += 1;
                }
                (seg.records, seg.bytes)
            } else {
                let mut cursors = run_cursors(&mut readers, &self.runs, p);
                if !mem.is_empty() {
                    cursors.push(Src::Mem(MemCursor { arena: &self.arena, entries: mem, at: 0 }));
                }
                let seg = drain_into(&mut KWayMerge::from_cursors(cursors)?, &mut w)?;
                (seg.records, seg.bytes)
            };
            w.into_inner().map_err(|e| e.into_error())?;
            out.push(PartitionFile { partition: p, path, records, bytes });
        }
        drop(readers);
        self.remove_runs();
        Ok(out)
    }

    /// Merges the first `k` runs into one.
    fn merge_leading(&mut self, k: usize) -> io::Result<()> {
        self.merge_runs_at(0, k)
    }

    /// Merges runs `at..at + k` (consecutive, so the merge stays stable)
    /// into one run put in their place.
    fn merge_runs_at(&mut self, at: usize, k: usize) -> io::Result<()> {
        if k < 2 {
            return Ok(());
        }
        let path = self.new_path("run");
        let buf = self.io_buf();
        let group = &self.runs[at..at + k];
        let res = (|| {
            let mut readers = open_runs(group, buf)?;
            let mut w = BufWriter::with_capacity(buf, File::create(&path)?);
            let mut segs = Vec::with_capacity(self.reducers as usize);
            for p in 0..self.reducers {
                let cursors = run_cursors(&mut readers, group, p);
                segs.push(drain_into(&mut KWayMerge::from_cursors(cursors)?, &mut w)?);
            }
            w.into_inner().map_err(|e| e.into_error())?;
            Ok(segs)
        })();
        let segs = match res {
            Ok(s) => s,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
        };
        let old: Vec<Run> = self.runs.splice(at..at + k, [Run { path, segs }]).collect();
        for r in old {
            let _ = fs::remove_file(r.path);
        }
        Ok(())
    }

    fn remove_runs(&mut self) {
        for r in self.runs.drain(..) {
            let _ = fs::remove_file(r.path);
        }
    }
}

impl Drop for MapOutput {
    fn drop(&mut self) {
        self.remove_runs();
    }
}

/// Grows `v` to hold `additional` more, doubling but not past `cap`
/// elements (unless one push needs more).
fn reserve_capped<T>(v: &mut Vec<T>, additional: usize, cap: usize) {
    let need = v.len() + additional;
    if need > v.capacity() {
        let target = (v.capacity() * 2).max(64).min(cap).max(need);
        v.reserve_exact(target - v.len());
    }
}

impl RecordSink for MapOutput {
    /// Grows the buffers for what is coming, within the memory budget.
    fn reserve(&mut self, records: usize, bytes: usize) {
        let free = self.budget.saturating_sub(self.buffered_bytes());
        let records = records.min(free / ENTRY_BYTES);
        let bytes = bytes.min(free.saturating_sub(records * ENTRY_BYTES));
        self.arena.reserve(bytes);
        self.index.reserve(records);
    }

    fn emit(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        for d in [key, value] {
            if d.is_empty() || d.len() > MAX_DATUM_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "record datum of {} bytes: must have a tag byte and at most {MAX_DATUM_LEN} bytes",
                        d.len()
                    ),
                ));
            }
        }
        let part = partition_of(key, self.reducers);
        let off = self.arena.len() as u64;
        reserve_capped(&mut self.arena, key.len() + value.len(), self.budget);
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        reserve_capped(&mut self.index, 1, self.budget / ENTRY_BYTES + 1);
        self.index.push(Entry {
            off,
            prefix: key_prefix(key),
            klen: key.len() as u32,
            vlen: value.len() as u32,
            part,
        });
        self.records += 1;
        if self.buffered_bytes() > self.budget {
            self.spill()?;
        }
        Ok(())
    }
}

fn open_runs(runs: &[Run], buf: usize) -> io::Result<Vec<BufReader<File>>> {
    runs.iter().map(|r| Ok(BufReader::with_capacity(buf, File::open(&r.path)?))).collect()
}

/// Cursors over partition `p` of each run; `readers[i]` reads `runs[i]`
/// sequentially, partition after partition.
fn run_cursors<'a>(readers: &'a mut [BufReader<File>], runs: &[Run], p: u32) -> Vec<Src<'a>> {
    readers
        .iter_mut()
        .zip(runs)
        .map(|(r, run)| Src::Run(ReaderCursor::new(Read::take(r, run.segs[p as usize].bytes))))
        .collect()
}

fn drain_into<W: Write>(m: &mut dyn RecordSource, w: &mut W) -> io::Result<Seg> {
    let mut seg = Seg::default();
    while let Some((k, v)) = m.next_record()? {
        write_record(w, k, v)?;
        seg.bytes += framed_len(k, v) as u64;
        seg.records += 1;
    }
    Ok(seg)
}

/// A merge source: a partition of a run file, or the sorted in-memory tail.
enum Src<'a> {
    Run(ReaderCursor<io::Take<&'a mut BufReader<File>>>),
    Mem(MemCursor<'a>),
}

struct MemCursor<'a> {
    arena: &'a [u8],
    entries: &'a [Entry],
    /// One past the current entry.
    at: usize,
}

impl MergeCursor for Src<'_> {
    fn advance(&mut self) -> io::Result<bool> {
        match self {
            Src::Run(c) => c.advance(),
            Src::Mem(m) => {
                if m.at < m.entries.len() {
                    m.at += 1;
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Src::Run(c) => c.key(),
            Src::Mem(m) => m.entries[m.at - 1].key(m.arena),
        }
    }

    fn value(&self) -> &[u8] {
        match self {
            Src::Run(c) => c.value(),
            Src::Mem(m) => m.entries[m.at - 1].value(m.arena),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordReader, int_datum, str_datum};

    type Recs = Vec<(Vec<u8>, Vec<u8>)>;

    fn read_file(path: &Path) -> Recs {
        let mut r = RecordReader::new(BufReader::new(File::open(path).unwrap()));
        let mut out = Vec::new();
        while let Some((k, v)) = r.next_record().unwrap() {
            out.push((k.to_vec(), v.to_vec()));
        }
        out
    }

    /// Runs `recs` through a MapOutput; returns the files' contents and the spill count.
    fn sort_through(recs: &Recs, reducers: u32, budget: usize, fan_in: usize) -> (Vec<Recs>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MapOutput::new(reducers, budget, dir.path()).unwrap().with_fan_in(fan_in);
        for (k, v) in recs {
            m.emit(k, v).unwrap();
            assert!(m.buffered_bytes() <= budget.max(framed_len(k, v) + ENTRY_BYTES));
        }
        assert_eq!(m.records(), recs.len() as u64);
        let spills = m.spills();
        let files = m.finish().unwrap();
        assert_eq!(files.len(), reducers as usize);
        let mut out = Vec::new();
        for (i, f) in files.iter().enumerate() {
            assert_eq!(f.partition, i as u32);
            let got = read_file(&f.path);
            assert_eq!(f.records, got.len() as u64);
            assert_eq!(f.bytes, fs::metadata(&f.path).unwrap().len());
            out.push(got);
        }
        // Only the partition files are left.
        let mut left: Vec<PathBuf> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        left.sort();
        let mut want: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        want.sort();
        assert_eq!(left, want);
        (out, spills)
    }

    /// The reference: a stable sort per partition.
    fn expected(recs: &Recs, reducers: u32) -> Vec<Recs> {
        let mut parts = vec![Vec::new(); reducers as usize];
        for (k, v) in recs {
            parts[partition_of(k, reducers) as usize].push((k.clone(), v.clone()));
        }
        for p in &mut parts {
            p.sort_by(|a, b| a.0.cmp(&b.0));
        }
        parts
    }

    fn words(n: usize, distinct: u64, seed: u64) -> Recs {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Keys sharing long prefixes and differing past 8 bytes, short ones, a 0 byte.
                let k = match x % 4 {
                    0 => str_datum(format!("longprefix{}", x % distinct).as_bytes()),
                    1 => str_datum(format!("{}", x % distinct).as_bytes()),
                    2 => int_datum((x % distinct) as i64),
                    _ => str_datum(&[b'a', 0, (x % distinct) as u8]),
                };
                (k, int_datum(i as i64))
            })
            .collect()
    }

    #[test]
    fn in_memory_only() {
        let recs = words(2000, 300, 7);
        let (got, spills) = sort_through(&recs, 5, 1 << 30, DEFAULT_FAN_IN);
        assert_eq!(spills, 0);
        assert_eq!(got, expected(&recs, 5));
    }

    #[test]
    fn many_spills_within_the_fan_in() {
        let recs = words(3000, 500, 11);
        let (got, spills) = sort_through(&recs, 4, 8 << 10, DEFAULT_FAN_IN);
        assert!(spills > 3 && spills < DEFAULT_FAN_IN, "{spills}");
        assert_eq!(got, expected(&recs, 4));
    }

    #[test]
    fn more_runs_than_the_fan_in_merge_in_passes() {
        let recs = words(5000, 200, 13);
        // Tiny budget: hundreds of runs, fan-in 4 => several full passes.
        let (got, spills) = sort_through(&recs, 3, 1 << 10, 4);
        assert!(spills > 100, "{spills}");
        assert_eq!(got, expected(&recs, 3));
        // Just over the fan-in (the partial last pass), with and without a tail.
        for n in [300, 301, 317] {
            let recs = words(n, 50, n as u64);
            for fan_in in [2, 3, 5, 64] {
                let (got, _) = sort_through(&recs, 2, 512, fan_in);
                assert_eq!(got, expected(&recs, 2), "n {n} fan-in {fan_in}");
            }
        }
    }

    #[test]
    fn default_fan_in_exceeded() {
        let recs = words(4000, 100, 17);
        let (got, spills) = sort_through(&recs, 2, 1 << 10, DEFAULT_FAN_IN);
        assert!(spills > DEFAULT_FAN_IN, "{spills}");
        assert_eq!(got, expected(&recs, 2));
    }

    #[test]
    fn partitions_hold_exactly_their_keys() {
        let recs = words(3000, 1000, 19);
        let (got, _) = sort_through(&recs, 7, 4 << 10, 8);
        for (p, part) in got.iter().enumerate() {
            assert!(part.iter().all(|(k, _)| partition_of(k, 7) == p as u32));
        }
        assert_eq!(got.iter().map(|p| p.len()).sum::<usize>(), recs.len());
    }

    #[test]
    fn empty_input_gives_empty_files() {
        let (got, spills) = sort_through(&Vec::new(), 3, 1024, DEFAULT_FAN_IN);
        assert_eq!(spills, 0);
        assert_eq!(got, vec![Vec::new(); 3]);
        // One reducer.
        let recs = words(10, 5, 3);
        let (got, _) = sort_through(&recs, 1, 100, DEFAULT_FAN_IN);
        assert_eq!(got, expected(&recs, 1));
    }

    #[test]
    fn record_bigger_than_the_budget() {
        let big = {
            let mut v = vec![b's'];
            v.extend(std::iter::repeat_n(b'x', 100_000));
            v
        };
        let mut recs = words(50, 10, 23);
        recs.insert(20, (str_datum(b"huge"), big.clone()));
        recs.push((big.clone(), int_datum(1)));
        let (got, spills) = sort_through(&recs, 2, 1000, DEFAULT_FAN_IN);
        assert!(spills >= 2);
        assert_eq!(got, expected(&recs, 2));
        // Alone, never spilled.
        let recs = vec![(big.clone(), big)];
        let (got, _) = sort_through(&recs, 1, 10, DEFAULT_FAN_IN);
        assert_eq!(got, expected(&recs, 1));
    }

    #[test]
    fn invalid_datums_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MapOutput::new(2, 1024, dir.path()).unwrap();
        assert_eq!(m.emit(b"", b"j1").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(m.emit(b"sa", b"").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let huge = vec![b's'; MAX_DATUM_LEN + 1];
        assert_eq!(m.emit(&huge, b"j1").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(m.records(), 0);
        assert!(MapOutput::new(2, 1024, &dir.path().join("missing")).is_err());
    }

    #[test]
    fn dropping_without_finish_removes_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = MapOutput::new(2, 256, dir.path()).unwrap();
        for (k, v) in words(200, 20, 29) {
            m.emit(&k, &v).unwrap();
        }
        assert!(m.spills() > 0);
        assert!(fs::read_dir(dir.path()).unwrap().count() > 0);
        drop(m);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn two_outputs_share_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = MapOutput::new(2, 256, dir.path()).unwrap();
        let mut b = MapOutput::new(2, 256, dir.path()).unwrap();
        let (ra, rb) = (words(100, 10, 31), words(100, 10, 37));
        for ((ka, va), (kb, vb)) in ra.iter().zip(&rb) {
            a.emit(ka, va).unwrap();
            b.emit(kb, vb).unwrap();
        }
        let fa = a.finish().unwrap();
        let fb = b.finish().unwrap();
        let read = |fs: &[PartitionFile]| fs.iter().map(|f| read_file(&f.path)).collect::<Vec<_>>();
        assert_eq!(read(&fa), expected(&ra, 2));
        assert_eq!(read(&fb), expected(&rb, 2));
    }
}

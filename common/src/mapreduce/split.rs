//! Input splits: how a job's input file is cut into byte ranges, and which
//! lines each range owns (Hadoop's rule).
//!
//! A split `[start, end)` owns every line that *starts* inside it. A line
//! ends at `\n` (inclusive); `\r` is just a byte of the line. So a split
//! skips its first partial line (unless `start == 0`) and reads past `end`
//! to finish its last owned line. Every line is therefore owned by exactly
//! one split, whatever the layout — including a line longer than a whole
//! split, which is owned by the split where it starts (possibly reading
//! many splits' worth of bytes past its `end`), while the splits it covers
//! own nothing.
//!
//! [`LineOwner`] is the zero-copy state machine the agent drives while
//! streaming a split's bytes from IPFS.

use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// One input split: the byte range `[start, end)` of the input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Split {
    /// Position of the split in the plan, from 0.
    pub index: u32,
    pub start: u64,
    pub end: u64,
}

impl Split {
    /// Length of the byte range (not of the owned data, which can differ).
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Smallest split size [`plan_splits`] chooses (unless the input is smaller).
pub const MIN_SPLIT: u64 = 1 << 20;
/// Largest split size [`plan_splits`] chooses (Hadoop's block size).
pub const MAX_SPLIT: u64 = 128 << 20;
/// How many splits per slot (a task an agent runs at a time: one per core
/// by default) [`plan_splits`] aims for on a large input: more than one, so
/// that a fast agent can take a slow one's second split, but no more,
/// because every map task pays a fixed cost whatever its size (its
/// combiner's table of the split's distinct keys built from empty, sorted
/// and written, the interpreter's start, and one more sorted run for every
/// reducer to merge). With 4 splits per agent that cost was 10-25% of a
/// 32 MiB task's time in the WordCount benchmark (`bench/PROFILE.md`).
pub const SPLITS_PER_SLOT: u64 = 2;
/// The smallest split worth a second split per slot: below it the fixed
/// cost of the extra task outweighs the slack (at 64 MiB on 2 slots, one
/// split per slot made the Python job 8-9% faster), and a straggler is
/// still covered by a backup attempt.
pub const SLACK_MIN_SPLIT: u64 = 32 << 20;

/// Cuts an input of `input_len` bytes into splits for agents with `slots`
/// slots in all, aiming at no more than `max_splits` splits.
///
/// The rule: the target split size is `ceil(input_len / min(2 * slots,
/// max_splits))` (about 2 splits per slot) when that is at least 32 MiB,
/// else `ceil(input_len / min(slots, max_splits))` (one per slot), clamped
/// to `[1 MiB, 128 MiB]` (so an input over `max_splits * 128 MiB` gets more
/// than `max_splits` splits). The number of
/// splits is `n = ceil(input_len / size)`, and split `i` is
/// `[input_len * i / n, input_len * (i + 1) / n)`, so all splits have
/// nearly equal sizes, none larger than `size`. An empty input gives no
/// splits; an input of at most 1 MiB gives one split. `slots == 0` is
/// treated as 1.
pub fn plan_splits(input_len: u64, slots: usize, max_splits: usize) -> Vec<Split> {
    if input_len == 0 {
        return Vec::new();
    }
    cut(input_len, split_size(input_len, slots, max_splits), 0)
}

/// The target split size of [`plan_splits`] for an input of `input_len` bytes.
fn split_size(input_len: u64, slots: usize, max_splits: usize) -> u64 {
    let (slots, max) = (slots.max(1) as u64, max_splits.max(1) as u64);
    let with_slack = input_len.div_ceil(SPLITS_PER_SLOT.saturating_mul(slots).min(max));
    let size = if with_slack >= SLACK_MIN_SPLIT { with_slack } else { input_len.div_ceil(slots.min(max)) };
    size.clamp(MIN_SPLIT, MAX_SPLIT)
}

/// `len` bytes in `ceil(len / size)` splits of nearly equal sizes, numbered from `first`.
fn cut(len: u64, size: u64, first: u32) -> Vec<Split> {
    let n = len.div_ceil(size.max(1));
    let at = |i: u64| ((len as u128 * i as u128) / n as u128) as u64;
    (0..n).map(|i| Split { index: first + i as u32, start: at(i), end: at(i + 1) }).collect()
}

/// The splits of several input files: the split size [`plan_splits`] would
/// choose for their total, each file cut on its own (a split never crosses
/// files), so every non-empty file has at least one; a file marked `whole`
/// (compressed: it cannot be read from the middle) is one split. Returns
/// (file index, split) pairs, numbered in file order.
pub fn plan_file_splits(
    file_lens: &[u64],
    whole: &[bool],
    slots: usize,
    max_splits: usize,
) -> Vec<(usize, Split)> {
    let total: u64 = file_lens.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let size = split_size(total, slots, max_splits);
    let mut out = Vec::new();
    for (f, &len) in file_lens.iter().enumerate() {
        let size = if whole.get(f).copied().unwrap_or(false) { len.max(1) } else { size };
        for s in cut(len, size, out.len() as u32) {
            out.push((f, s));
        }
    }
    out
}

/// The map tasks of a per-file job (`input_format = "files"`): runs of
/// consecutive files, each file read whole by one task. Aims at as many
/// tasks as [`plan_splits`] would cut the files' total into, but at least
/// one per slot while there are files enough (a split's 1 MiB floor would
/// otherwise put a folder of small images in one task), and no task holds
/// more than `max_files` files. A file weighs its size plus one byte, so
/// empty files are spread too. Returns the index ranges of the groups.
pub fn plan_file_groups(
    file_lens: &[u64],
    slots: usize,
    max_tasks: usize,
    max_files: usize,
) -> Vec<Range<usize>> {
    let files = file_lens.len();
    if files == 0 {
        return Vec::new();
    }
    let weight = |len: u64| len.saturating_add(1);
    let total: u64 = file_lens.iter().map(|&l| weight(l)).fold(0, u64::saturating_add);
    let by_size = total.div_ceil(split_size(total, slots, max_tasks)) as usize;
    let tasks = by_size.max(slots.max(1).min(max_tasks.max(1))).min(files) as u128;
    // Each file goes to the task its middle byte falls in.
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut before: u128 = 0;
    let mut current = (0u128, 0usize);
    for (i, &len) in file_lens.iter().enumerate() {
        let w = weight(len) as u128;
        let task = ((before + w / 2) * tasks / total as u128).min(tasks - 1);
        before += w;
        if task != current.0 || i - current.1 >= max_files.max(1) {
            if i > current.1 {
                groups.push(current.1..i);
            }
            current = (task, i);
        }
    }
    groups.push(current.1..files);
    groups
}

/// What one [`LineOwner::push`] found in a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The part of the chunk that is owned data (possibly empty).
    pub owned: Range<usize>,
    /// The split is complete: no more bytes are needed.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Looking for the `\n` that ends the line in progress at `start`.
    Skip,
    /// Every byte before `end` is owned.
    Own,
    /// Past `end`: owning the rest of the last line, up to its `\n`.
    Tail,
    Done,
}

/// Decides which bytes of a split's stream it owns, without copying them.
///
/// Feed it consecutive chunks of the input starting at
/// [`fetch_offset`](Self::fetch_offset) until a [`Push`] says `done` or the
/// input ends. If the input ends first, the last line simply had no
/// trailing newline: everything owned so far is the split's data.
#[derive(Debug, Clone)]
pub struct LineOwner {
    end: u64,
    /// Absolute offset of the next byte to be pushed.
    pos: u64,
    phase: Phase,
    fetch_offset: u64,
}

impl LineOwner {
    pub fn new(start: u64, end: u64) -> Self {
        let (fetch_offset, phase) = if start >= end {
            (start, Phase::Done)
        } else if start == 0 {
            (0, Phase::Own)
        } else {
            (start - 1, Phase::Skip)
        };
        LineOwner { end, pos: fetch_offset, phase, fetch_offset }
    }

    /// Offset to start fetching from: `start - 1` when `start > 0` (so it can
    /// tell whether a line starts exactly at `start`), else 0.
    pub fn fetch_offset(&self) -> u64 {
        self.fetch_offset
    }

    /// Absolute input offset just past the bytes consumed so far: where to
    /// fetch next while not done. Once done, the offset just past the last
    /// byte that was needed (the rest of the last chunk is ignored).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// How many bytes past `end` have been consumed so far.
    pub fn past_end(&self) -> u64 {
        self.pos.saturating_sub(self.end)
    }

    /// Nothing more is needed.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Feeds the next chunk of the stream (consecutive bytes beginning at
    /// [`position`](Self::position)). Returns which part of this chunk is
    /// owned data and whether the split is complete. Once done, every further
    /// chunk is ignored (an empty range, `done`).
    pub fn push(&mut self, chunk: &[u8]) -> Push {
        let mut i = 0usize;
        let mut owned_start = None;
        loop {
            match self.phase {
                Phase::Done => break,
                Phase::Skip => match memchr(b'\n', &chunk[i..]) {
                    None => {
                        i = chunk.len();
                        break;
                    }
                    Some(k) => {
                        i += k + 1;
                        // A line starts at the byte after this `\n`.
                        let line_start = self.pos + i as u64;
                        self.phase = if line_start >= self.end { Phase::Done } else { Phase::Own };
                        // `pos` is kept as the offset of chunk[0] until the end.
                    }
                },
                Phase::Own => {
                    owned_start.get_or_insert(i);
                    let left = self.end - (self.pos + i as u64);
                    let avail = (chunk.len() - i) as u64;
                    if avail < left {
                        i = chunk.len();
                        break;
                    }
                    i += left as usize;
                    // Reached `end`; the byte before is chunk[i - 1] (i > 0:
                    // Own always follows at least one consumed byte unless it
                    // starts at 0 with end > 0, and left > 0 then).
                    self.phase = if i > 0 && chunk[i - 1] == b'\n' { Phase::Done } else { Phase::Tail };
                }
                Phase::Tail => {
                    owned_start.get_or_insert(i);
                    match memchr(b'\n', &chunk[i..]) {
                        None => {
                            i = chunk.len();
                            break;
                        }
                        Some(k) => {
                            i += k + 1;
                            self.phase = Phase::Done;
                        }
                    }
                }
            }
        }
        self.pos += i as u64;
        let s = owned_start.unwrap_or(i);
        Push { owned: s..i, done: self.phase == Phase::Done }
    }
}

/// Bytes read at a time past a split's end while finishing its last line.
const TAIL_READ: usize = 64 << 10;

/// Reads the lines a split owns straight from a file holding the whole
/// input (an IPFS node's filestore copy in this same process), with
/// positioned reads: no stream, no copy besides the read itself.
pub struct SplitFileReader {
    file: std::fs::File,
    /// The input's length as it was added; a shorter file is an error.
    size: u64,
    owner: LineOwner,
    /// Absolute offset of the next read.
    offset: u64,
    /// Bytes read from the file so far (owned or not).
    read: u64,
}

impl SplitFileReader {
    /// `file` holds the whole input of `size` bytes; the split is
    /// `[start, end)`.
    pub fn new(file: std::fs::File, size: u64, start: u64, end: u64) -> Self {
        let owner = LineOwner::new(start, end);
        let offset = owner.fetch_offset();
        SplitFileReader { file, size, owner, offset, read: 0 }
    }

    /// Bytes read from the file so far, including those around the owned
    /// lines (as `bytes_read` counts a fetch).
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl Read for SplitFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while !buf.is_empty() && !self.owner.is_done() && self.offset < self.size {
            // Up to the split's end, then the rest of its last line a
            // little at a time (as the HTTP path fetches it).
            let limit =
                if self.offset < self.owner.end { self.owner.end - self.offset } else { TAIL_READ as u64 };
            let want = (buf.len() as u64).min(self.size - self.offset).min(limit) as usize;
            let n = self.file.read_at(&mut buf[..want], self.offset)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the input file ends at byte {} but was {} bytes when it was added",
                        self.offset, self.size
                    ),
                ));
            }
            self.offset += n as u64;
            self.read += n as u64;
            let owned = self.owner.push(&buf[..n]).owned;
            if !owned.is_empty() {
                buf.copy_within(owned.clone(), 0);
                return Ok(owned.len());
            }
        }
        Ok(0)
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_groups_cover_every_file_once_in_order_and_spread_over_the_slots() {
        const MIB: u64 = 1 << 20;
        let check = |lens: &[u64], slots: usize, max_files: usize| {
            let groups = plan_file_groups(lens, slots, 10_000, max_files);
            let flat: Vec<usize> = groups.iter().flat_map(|g| g.clone()).collect();
            assert_eq!(flat, (0..lens.len()).collect::<Vec<_>>(), "{lens:?} on {slots} slots");
            assert!(groups.iter().all(|g| !g.is_empty() && g.len() <= max_files), "{groups:?}");
            groups
        };
        assert!(plan_file_groups(&[], 4, 100, 10).is_empty());
        // Small files: one task per slot, not one task for the lot.
        assert_eq!(check(&[1000; 40], 4, 1000).len(), 4);
        assert_eq!(check(&[0; 6], 4, 1000).len(), 4);
        // Fewer files than slots: one task each.
        assert_eq!(check(&[10, 0, 7], 8, 1000).len(), 3);
        // Large files are as many tasks as their bytes need, a file never cut.
        let two_big = check(&[200 * MIB, 1, 1, 200 * MIB], 1, 1000);
        assert!(two_big.len() >= 3 && two_big[0] == (0..1) && two_big.last() == Some(&(3..4)), "{two_big:?}");
        let big_and_small = check(&[300 * MIB, 10, 10, 10], 2, 1000);
        assert_eq!(big_and_small[0], 0..1, "{big_and_small:?}");
        // The per-task file limit splits a run of many tiny files.
        let many = check(&vec![1; 2500], 1, 1000);
        assert_eq!(many.len(), 3, "{many:?}");
    }

    #[test]
    fn file_splits_never_cross_files_and_number_in_order() {
        const MIB: u64 = 1 << 20;
        // One file: the same as plan_splits.
        let one: Vec<Split> =
            plan_file_splits(&[400 * MIB], &[false], 5, 100).into_iter().map(|(_, s)| s).collect();
        assert_eq!(one, plan_splits(400 * MIB, 5, 100));
        // A big file and small ones: each small one is a split of its own.
        let got = plan_file_splits(&[100 * MIB, 10, 0, 3 * MIB], &[false; 4], 2, 100);
        let files: Vec<usize> = got.iter().map(|(f, _)| *f).collect();
        assert_eq!(files, [0, 0, 1, 3]); // 103 MiB on 2 slots: splits of about 52 MiB
        assert!(got.iter().enumerate().all(|(i, (_, s))| s.index == i as u32));
        for f in [0, 1, 3] {
            let mine: Vec<&Split> = got.iter().filter(|(g, _)| *g == f).map(|(_, s)| s).collect();
            assert_eq!(mine.first().unwrap().start, 0);
            assert_eq!(mine.last().unwrap().end, [100 * MIB, 10, 0, 3 * MIB][f]);
            assert!(mine.windows(2).all(|w| w[0].end == w[1].start));
        }
        assert!(plan_file_splits(&[0, 0], &[false, false], 2, 10).is_empty());
        // A compressed file is one split, however large.
        let got = plan_file_splits(&[100 * MIB, 100 * MIB], &[true, false], 2, 100);
        assert_eq!(got.iter().filter(|(f, _)| *f == 0).count(), 1);
        assert_eq!(got.iter().filter(|(f, _)| *f == 1).count(), 2);
    }

    /// Drives a split over `input` with chunks of the sizes `sizes` yields
    /// (cycled), returning the owned bytes.
    fn run(input: &[u8], start: u64, end: u64, mut sizes: impl FnMut() -> usize) -> Vec<u8> {
        let mut lo = LineOwner::new(start, end);
        let mut out = Vec::new();
        let mut pos = lo.fetch_offset() as usize;
        while !lo.is_done() && pos < input.len() {
            let n = sizes().max(1).min(input.len() - pos);
            let chunk = &input[pos..pos + n];
            let p = lo.push(chunk);
            out.extend_from_slice(&chunk[p.owned.clone()]);
            pos += n;
            assert_eq!(p.done, lo.is_done());
            if p.done {
                // Consumed up to the end of the owned data (or the skipped line).
                assert!(lo.position() as usize <= pos);
                assert!(p.owned.is_empty() || p.owned.end as u64 == lo.position() - (pos - n) as u64);
            } else {
                assert_eq!(lo.position() as usize, pos);
            }
        }
        out
    }

    fn whole(input: &[u8], start: u64, end: u64) -> Vec<u8> {
        run(input, start, end, || usize::MAX)
    }

    /// Reference: the lines starting in [start, end), concatenated.
    fn reference(input: &[u8], start: u64, end: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut line_start = 0usize;
        for (i, &b) in input.iter().enumerate() {
            if b == b'\n' || i + 1 == input.len() {
                if (start as usize..end as usize).contains(&line_start) {
                    out.extend_from_slice(&input[line_start..=i]);
                }
                line_start = i + 1;
            }
        }
        out
    }

    #[test]
    fn plan_rules() {
        assert!(plan_splits(0, 4, usize::MAX).is_empty());
        assert_eq!(plan_splits(10, 4, usize::MAX), vec![Split { index: 0, start: 0, end: 10 }]);
        assert_eq!(plan_splits(MIN_SPLIT, 100, usize::MAX).len(), 1);
        assert_eq!(plan_splits(MIN_SPLIT + 1, 100, usize::MAX).len(), 2);
        // 2 splits per slot when each still gets SLACK_MIN_SPLIT ...
        assert_eq!(plan_splits(640 << 20, 10, usize::MAX).len(), 20);
        assert_eq!(plan_splits(256 << 20, 2, usize::MAX).len(), 4);
        // ... else one per slot: 64 MiB on 2 slots, 400 MiB on 10.
        assert_eq!(plan_splits(64 << 20, 2, usize::MAX).len(), 2);
        assert_eq!(plan_splits(400 << 20, 10, usize::MAX).len(), 10);
        assert_eq!(plan_splits(3 << 20, 2, usize::MAX).len(), 2);
        // At most max_splits aimed for: two per slot past it, one per slot
        // within it, none past it unless the 128 MiB cap needs more.
        assert_eq!(plan_splits(640 << 20, 10, 15).len(), 15);
        assert_eq!(plan_splits(64 << 20, 3, 2).len(), 2);
        assert_eq!(plan_splits(10 << 30, 2, 3).len(), 80);
        // Clamped to 128 MiB.
        let s = plan_splits(10 << 30, 1, usize::MAX);
        assert_eq!(s.len(), 80);
        assert!(s.iter().all(|x| x.len() <= MAX_SPLIT));
        // Contiguous and covering, indexes in order; slots == 0 is fine.
        for (len, k) in [(1u64, 0usize), (3 << 20, 1), ((5 << 20) + 7, 3), (1 << 33, 7)] {
            let s = plan_splits(len, k, usize::MAX);
            assert_eq!(s[0].start, 0);
            assert_eq!(s.last().unwrap().end, len);
            for (i, w) in s.windows(2).enumerate() {
                assert_eq!(w[0].end, w[1].start);
                assert_eq!(w[0].index as usize, i);
            }
            assert!(s.iter().all(|x| !x.is_empty() && x.len() <= MAX_SPLIT));
        }
    }

    #[test]
    fn split_round_trips_through_serde() {
        let s = Split { index: 3, start: 5, end: 9 };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Split>(&j).unwrap(), s);
    }

    #[test]
    fn line_starting_exactly_at_the_edge() {
        let t = b"abc\ndef\nghi\n";
        // Split 2 starts at 4 = start of "def".
        assert_eq!(whole(t, 0, 4), b"abc\n");
        assert_eq!(whole(t, 4, 8), b"def\n");
        assert_eq!(whole(t, 8, 12), b"ghi\n");
        // The state machine fetches from start - 1 to see the `\n` there.
        assert_eq!(LineOwner::new(4, 8).fetch_offset(), 3);
        assert_eq!(LineOwner::new(0, 8).fetch_offset(), 0);
    }

    #[test]
    fn newline_exactly_at_end_minus_one_is_done_without_more_bytes() {
        let t = b"abc\ndef\n";
        let mut lo = LineOwner::new(0, 4);
        let p = lo.push(&t[..4]);
        assert_eq!(p, Push { owned: 0..4, done: true });
        assert_eq!(lo.past_end(), 0);
        // Split [4, 8): fetch 3..8 = "\ndef\n", all owned but the first byte.
        let mut lo = LineOwner::new(4, 8);
        let p = lo.push(&t[3..8]);
        assert_eq!(p, Push { owned: 1..5, done: true });
    }

    #[test]
    fn line_not_ending_at_end_reads_past_it() {
        let t = b"abcdef\ngh\n";
        let mut lo = LineOwner::new(0, 3);
        let p = lo.push(&t[..3]);
        assert_eq!(p, Push { owned: 0..3, done: false });
        let p = lo.push(&t[3..5]);
        assert_eq!(p, Push { owned: 0..2, done: false });
        assert_eq!(lo.past_end(), 2);
        let p = lo.push(&t[5..]);
        assert_eq!(p, Push { owned: 0..2, done: true });
        assert_eq!(lo.position(), 7);
        assert_eq!(lo.past_end(), 4);
        // Further chunks are ignored.
        assert_eq!(lo.push(b"zz"), Push { owned: 0..0, done: true });
        // The next split [3, 7) owns nothing (the line started at 0), then
        // "gh\n" belongs to the split containing offset 7.
        assert_eq!(whole(t, 3, 7), b"");
        assert_eq!(whole(t, 7, 10), b"gh\n");
    }

    #[test]
    fn line_longer_than_a_whole_split() {
        let mut t = b"x\n".to_vec();
        t.extend(std::iter::repeat_n(b'L', 50));
        t.extend_from_slice(b"\ny\n");
        // Splits of 5: [0,5) owns "x\n" and the long line (starts at 2).
        let long_end = 2 + 50 + 1;
        assert_eq!(whole(&t, 0, 5), &t[..long_end]);
        for s in (5..50).step_by(5) {
            assert_eq!(whole(&t, s, s + 5), b"", "split at {s}");
        }
        assert_eq!(whole(&t, 50, 55), b"y\n");
        // Reading far past end in small pieces.
        assert_eq!(run(&t, 0, 5, || 3), &t[..long_end]);
        // The empty splits stop as soon as they see the `\n` ending the long line.
        let mut lo = LineOwner::new(10, 15);
        let p = lo.push(&t[9..15]);
        assert_eq!(p, Push { owned: 6..6, done: false });
        let p = lo.push(&t[15..]);
        assert!(p.done && p.owned.is_empty());
    }

    #[test]
    fn no_trailing_newline() {
        let t = b"ab\ncd";
        assert_eq!(whole(t, 0, 2), b"ab\n");
        assert_eq!(whole(t, 2, 5), b"cd");
        assert_eq!(whole(t, 0, 5), t);
        assert_eq!(whole(t, 3, 4), b"cd");
        assert_eq!(whole(t, 4, 5), b"");
        // EOF before done: the owner is not done, the data is what was owned.
        let mut lo = LineOwner::new(3, 4);
        let p = lo.push(&t[2..]);
        assert_eq!(p, Push { owned: 1..3, done: false });
    }

    #[test]
    fn crlf_stays_with_its_line() {
        let t = b"ab\r\ncd\r\nef\r\n";
        assert_eq!(whole(t, 0, 3), b"ab\r\n");
        assert_eq!(whole(t, 3, 4), b"");
        assert_eq!(whole(t, 4, 8), b"cd\r\n");
        assert_eq!(whole(t, 5, 8), b"");
        assert_eq!(whole(t, 5, 9), b"ef\r\n");
        assert_eq!(whole(t, 2, 3), b"");
    }

    #[test]
    fn empty_lines() {
        let t = b"\n\n\na\n\n";
        for i in 0..t.len() as u64 {
            assert_eq!(whole(t, i, i + 1), reference(t, i, i + 1), "split at {i}");
        }
        assert_eq!(whole(t, 0, 1), b"\n");
        assert_eq!(whole(t, 1, 2), b"\n");
        assert_eq!(whole(t, 3, 4), b"a\n");
        assert_eq!(whole(t, 4, 5), b"");
    }

    #[test]
    fn empty_input_and_empty_ranges() {
        assert_eq!(whole(b"", 0, 0), b"");
        let mut lo = LineOwner::new(0, 0);
        assert!(lo.is_done());
        assert_eq!(lo.push(b"abc"), Push { owned: 0..0, done: true });
        let mut lo = LineOwner::new(5, 5);
        assert!(lo.is_done());
        assert_eq!(lo.push(b"abc").owned, 0..0);
    }

    #[test]
    fn one_byte_splits() {
        let t = b"a\nbc\n\nd";
        let mut all = Vec::new();
        for i in 0..t.len() as u64 {
            let got = whole(t, i, i + 1);
            assert_eq!(got, reference(t, i, i + 1), "split at {i}");
            all.extend(got);
        }
        assert_eq!(all, t);
    }

    /// A tiny deterministic PRNG (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn exhaustive_layouts_own_every_line_exactly_once() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let alphabet = b"ab\n\n\r";
        for _ in 0..300 {
            let len = rng.below(40);
            let text: Vec<u8> = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            for size in 1..=len.max(1) {
                let mut all = Vec::new();
                let mut start = 0usize;
                while start < len {
                    let end = (start + size).min(len);
                    let mode = rng.below(3);
                    let got = match mode {
                        // The agent's pattern: the range first, then growing pieces.
                        0 => {
                            let first =
                                end - LineOwner::new(start as u64, end as u64).fetch_offset() as usize;
                            let mut k = 0u32;
                            run(&text, start as u64, end as u64, || {
                                k += 1;
                                if k == 1 { first } else { 1 << k.min(20) }
                            })
                        }
                        1 => run(&text, start as u64, end as u64, || 1),
                        _ => {
                            let mut r = Rng(rng.next() | 1);
                            run(&text, start as u64, end as u64, || 1 + r.below(7))
                        }
                    };
                    assert_eq!(
                        got,
                        reference(&text, start as u64, end as u64),
                        "text {:?} split [{start}, {end}) mode {mode}",
                        String::from_utf8_lossy(&text)
                    );
                    all.extend(got);
                    start = end;
                }
                assert_eq!(all, text, "size {size}");
            }
        }
    }

    /// Reads a split through [`SplitFileReader`] with reads of `read_size`.
    fn read_file_split(file: &std::fs::File, size: u64, start: u64, end: u64, read_size: usize) -> Vec<u8> {
        let mut r = SplitFileReader::new(file.try_clone().unwrap(), size, start, end);
        let (mut out, mut buf) = (Vec::new(), vec![0u8; read_size]);
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn file_reader_owns_the_same_lines_as_the_stream() {
        let mut rng = Rng(0x0dd_ba11);
        let alphabet = b"abc\n\n\r";
        let dir = tempfile::tempdir().unwrap();
        for round in 0..60 {
            let len = rng.below(300);
            let text: Vec<u8> = (0..len).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let path = dir.path().join(format!("in-{round}"));
            std::fs::write(&path, &text).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            for size in [1usize, 2, 7, 64, 1000] {
                let read_size = 1 + rng.below(20);
                let mut all = Vec::new();
                let mut start = 0usize;
                while start < len {
                    let end = (start + size).min(len);
                    let got = read_file_split(&file, len as u64, start as u64, end as u64, read_size);
                    assert_eq!(got, reference(&text, start as u64, end as u64), "split [{start}, {end})");
                    all.extend(got);
                    start = end;
                }
                assert_eq!(all, text, "size {size}, reads of {read_size}");
            }
        }
    }

    #[test]
    fn file_reader_counts_what_it_read_and_stops_at_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let mut text = b"aaaa\nbb".to_vec();
        text.extend(std::iter::repeat_n(b'c', 200 << 10));
        text.extend_from_slice(b"\nnext line\n");
        std::fs::write(&path, &text).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // Split [0, 6) owns "aaaa\n" and the long line starting at 5.
        let mut r = SplitFileReader::new(file, text.len() as u64, 0, 6);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let long_end = text.len() - b"next line\n".len();
        assert_eq!(out, &text[..long_end]);
        // It read at most one tail read past the line's end.
        assert!(r.bytes_read() >= long_end as u64 && r.bytes_read() <= (long_end + TAIL_READ) as u64);
        // A split ending just after a newline reads nothing past its end,
        // however large the caller's buffer.
        let file = std::fs::File::open(&path).unwrap();
        let mut r = SplitFileReader::new(file, text.len() as u64, 0, 5);
        let mut buf = vec![0u8; 1 << 20];
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"aaaa\n");
        assert_eq!(r.read(&mut buf).unwrap(), 0);
        assert_eq!(r.bytes_read(), 5);
    }

    #[test]
    fn file_reader_refuses_a_file_shorter_than_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        std::fs::write(&path, b"one\ntwo\nthree\n").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // Added as 100 bytes, now 14: the split's bytes are gone.
        let mut r = SplitFileReader::new(file, 100, 0, 100);
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("ends at byte 14 but was 100 bytes"), "{e}");
    }
}

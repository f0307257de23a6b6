//! The native WordCount executor: a map with a built-in combiner and a
//! summing reduce, byte-for-byte identical to the Python example
//! (`Counter(w for line in f for w in line.split())` over the text decoded as
//! UTF-8 with `surrogateescape`).
//!
//! # Why a byte scan matches Python's `str.split()`
//!
//! Python splits at the characters for which `str.isspace()` is true:
//! `\t \n \v \f \r`, `\x1c`–`\x1f`, space, U+0085, U+00A0, U+1680,
//! U+2000–U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. Decoding with
//! `surrogateescape` turns every byte that is not part of a valid UTF-8
//! sequence into a lone surrogate (U+DC80–U+DCFF), which is never whitespace,
//! and re-encoding gives the original bytes back. CPython's decoder reports
//! an invalid sequence as the lead byte plus the continuation bytes that were
//! valid so far, so an error never swallows a byte that is not a continuation
//! byte (`0x80`–`0xBF`). The UTF-8 form of every whitespace character starts
//! with a byte that is ASCII or a lead byte (`C2`, `E1`, `E2`, `E3`), so the
//! decoder always starts a character there, and decodes exactly that
//! whitespace character when the following bytes are the expected
//! continuation bytes. Hence: a byte position starts a whitespace character
//! in Python's view if and only if the bytes there are one of the exact
//! sequences below, and every word is a plain slice of the input bytes. The
//! tests check this against a real `python3` on thousands of tricky inputs.

use std::io::{self, Read};

use crate::exec::{ExecStats, RecordSink, RecordSource};
use crate::record::{MAX_DATUM_LEN, TAG_JSON, TAG_STR};

/// Byte classes: a word byte, or the first byte of a (possible) whitespace
/// character.
const WORD: u8 = 0;
/// ASCII whitespace: `\t \n \v \f \r`, `\x1c`–`\x1f`, space.
const SPACE1: u8 = 1;
/// `C2`: U+0085 (`C2 85`), U+00A0 (`C2 A0`).
const LEAD_C2: u8 = 2;
/// `E1`: U+1680 (`E1 9A 80`).
const LEAD_E1: u8 = 3;
/// `E2`: U+2000–U+200A (`E2 80 80`–`E2 80 8A`), U+2028 (`E2 80 A8`),
/// U+2029 (`E2 80 A9`), U+202F (`E2 80 AF`), U+205F (`E2 81 9F`).
const LEAD_E2: u8 = 4;
/// `E3`: U+3000 (`E3 80 80`).
const LEAD_E3: u8 = 5;

static CLASS: [u8; 256] = {
    let mut t = [WORD; 256];
    t[b'\t' as usize] = SPACE1;
    t[b'\n' as usize] = SPACE1;
    t[0x0b] = SPACE1;
    t[0x0c] = SPACE1;
    t[b'\r' as usize] = SPACE1;
    t[0x1c] = SPACE1;
    t[0x1d] = SPACE1;
    t[0x1e] = SPACE1;
    t[0x1f] = SPACE1;
    t[b' ' as usize] = SPACE1;
    t[0xc2] = LEAD_C2;
    t[0xe1] = LEAD_E1;
    t[0xe2] = LEAD_E2;
    t[0xe3] = LEAD_E3;
    t
};

/// Length of the whitespace character starting at `b[i]` (whose class is
/// `class`, not `WORD`), or 0 when the bytes there are not whitespace
/// (including a sequence cut short by the end of `b`).
#[inline]
fn space_len(b: &[u8], i: usize, class: u8) -> usize {
    match class {
        SPACE1 => 1,
        LEAD_C2 => match b.get(i + 1) {
            Some(0x85 | 0xa0) => 2,
            _ => 0,
        },
        LEAD_E1 => match (b.get(i + 1), b.get(i + 2)) {
            (Some(0x9a), Some(0x80)) => 3,
            _ => 0,
        },
        LEAD_E2 => match (b.get(i + 1), b.get(i + 2)) {
            (Some(0x80), Some(0x80..=0x8a | 0xa8 | 0xa9 | 0xaf)) => 3,
            (Some(0x81), Some(0x9f)) => 3,
            _ => 0,
        },
        LEAD_E3 => match (b.get(i + 1), b.get(i + 2)) {
            (Some(0x80), Some(0x80)) => 3,
            _ => 0,
        },
        _ => 0,
    }
}

/// Calls `f` for every complete word of `b` and returns where the trailing
/// word starts (`b.len()` when `b` ends in whitespace). The trailing word is
/// not reported: it may continue in the next chunk. A whitespace sequence cut
/// by the end of `b` counts as word bytes, so it stays in the trailing word
/// and is recognised once the rest arrives.
fn scan_words(b: &[u8], f: &mut impl FnMut(&[u8])) -> usize {
    let n = b.len();
    let mut i = 0;
    // `start` is the first byte of the current word, or `None` in whitespace.
    let mut start: Option<usize> = None;
    while i < n {
        let c = b[i];
        let class = CLASS[c as usize];
        if class == WORD {
            if start.is_none() {
                start = Some(i);
            }
            i += 1;
            // ASCII fast path: run through plain word bytes.
            while i < n && CLASS[b[i] as usize] == WORD {
                i += 1;
            }
            continue;
        }
        let len = space_len(b, i, class);
        if len == 0 {
            if start.is_none() {
                start = Some(i);
            }
            i += 1;
            continue;
        }
        if let Some(s) = start.take() {
            f(&b[s..i]);
        }
        i += len;
    }
    start.unwrap_or(n)
}

/// Calls `f` for every word of `bytes`, exactly as Python's `str.split()`
/// would split the text decoded as UTF-8 with `surrogateescape` (each word
/// given as its original bytes).
pub fn for_each_word(bytes: &[u8], mut f: impl FnMut(&[u8])) {
    let rest = scan_words(bytes, &mut f);
    if rest < bytes.len() {
        f(&bytes[rest..]);
    }
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// An Fx-style hash (as in rustc) of a word: fast, not collision resistant,
/// which is fine for counting the words of one task.
#[inline]
fn fx_hash(mut bytes: &[u8]) -> u64 {
    let mut h = 0u64;
    let mut add = |w: u64| h = (h.rotate_left(5) ^ w).wrapping_mul(FX_SEED);
    while bytes.len() >= 8 {
        add(u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")));
        bytes = &bytes[8..];
    }
    if bytes.len() >= 4 {
        add(u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as u64);
        bytes = &bytes[4..];
    }
    for &b in bytes {
        add(b as u64);
    }
    h
}

/// Bytes read from the input at a time.
const CHUNK: usize = 1 << 20;

/// One distinct word in [`Counts`]: its full hash, where its bytes are in
/// the arena, and its count. `len == 0` marks a free slot (words are never
/// empty).
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    off: u32,
    len: u32,
    count: u64,
}

/// Slots of a new table (a power of two).
const FIRST_SLOTS: usize = 1 << 12;

/// Word counts of one map task: an open-addressing table (linear probing,
/// at most 3/4 full) whose slots point into one arena holding each distinct
/// word once. Compared with a `HashMap<Vec<u8>, u64>` (what it replaced):
/// no allocation per word, a full stored hash so bytes are compared only on
/// a real match, and the words in one block of memory, the frequent ones
/// (met early) close together, so the comparison rarely misses the cache.
struct Counts {
    slots: Vec<Slot>,
    /// Slots in use.
    used: usize,
    /// Every distinct word's bytes, in the order first met. Offsets are
    /// `u32`: [`has_room`](Self::has_room) keeps the arena under 4 GiB.
    arena: Vec<u8>,
}

impl Counts {
    fn new() -> Self {
        Counts { slots: vec![Slot::default(); FIRST_SLOTS], used: 0, arena: Vec::new() }
    }

    /// Whether words from `bytes` more input bytes fit the arena's offsets.
    fn has_room(&self, bytes: usize) -> bool {
        self.arena.len() + bytes < u32::MAX as usize
    }

    #[inline]
    fn add(&mut self, word: &[u8]) {
        let hash = fx_hash(word);
        let mask = self.slots.len() - 1;
        // The multiply leaves the best-mixed bits at the top.
        let mut i = (hash >> 32) as usize & mask;
        loop {
            let slot = &mut self.slots[i];
            if slot.len == 0 {
                break;
            }
            if slot.hash == hash {
                let at = slot.off as usize;
                if self.arena.get(at..at + slot.len as usize) == Some(word) {
                    slot.count += 1;
                    return;
                }
            }
            i = (i + 1) & mask;
        }
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(word);
        self.slots[i] = Slot { hash, off, len: word.len() as u32, count: 1 };
        self.used += 1;
        if self.used * 4 > self.slots.len() * 3 {
            self.grow();
        }
    }

    /// Doubles the table (the stored hashes place every word again).
    fn grow(&mut self) {
        let bigger = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.len != 0) {
            let mut i = (slot.hash >> 32) as usize & mask;
            while self.slots[i].len != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    fn memory(&self) -> usize {
        self.arena.capacity() + self.slots.len() * std::mem::size_of::<Slot>()
    }

    /// Emits every count as `("s"+word, "j"+count)` and starts over with a
    /// new, small table: the memory goes back, so after a flush for the
    /// budget [`memory`](Self::memory) is small again.
    fn flush(&mut self, sink: &mut dyn RecordSink, stats: &mut ExecStats) -> io::Result<()> {
        // Tags, and counts of a few digits.
        sink.reserve(self.used, self.arena.len() + self.used * 4);
        let mut key = Vec::new();
        let mut value = Vec::with_capacity(24);
        for slot in self.slots.iter().filter(|s| s.len != 0) {
            let at = slot.off as usize;
            if slot.len as usize >= MAX_DATUM_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "WordCount map: a word of {} bytes is larger than the limit of {} MiB for one key; \
                         is the input a text file with spaces or newlines between its words?",
                        slot.len,
                        MAX_DATUM_LEN >> 20
                    ),
                ));
            }
            key.clear();
            key.push(TAG_STR);
            key.extend_from_slice(&self.arena[at..at + slot.len as usize]);
            value.clear();
            value.push(TAG_JSON);
            push_decimal(&mut value, slot.count);
            sink.emit(&key, &value)?;
            stats.combine_output_records += 1;
            stats.output_records += 1;
        }
        *self = Counts::new();
        Ok(())
    }
}

/// The WordCount map with its combiner: reads the split's lines from
/// `input`, counts words, and emits `("s"+word, "j"+count)` records at the
/// end, or earlier (all counts, then starting over) whenever the counts'
/// memory estimate exceeds `budget_bytes`.
pub fn map(mut input: impl Read, sink: &mut dyn RecordSink, budget_bytes: usize) -> io::Result<ExecStats> {
    let mut stats = ExecStats::default();
    let mut counts = Counts::new();
    // `buf[..carried]` holds the start of a word that may continue, carried
    // over from the previous read; reads go after it.
    let mut buf: Vec<u8> = vec![0; CHUNK];
    let mut carried = 0;
    let mut last_byte = b'\n';
    loop {
        if buf.len() < carried + CHUNK / 2 {
            // A very long word: make room instead of cutting it.
            buf.resize(carried + CHUNK, 0);
        }
        let n = match input.read(&mut buf[carried..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        let filled = carried + n;
        let fresh = &buf[carried..filled];
        stats.input_records += count_newlines(fresh);
        last_byte = fresh[n - 1];
        if !counts.has_room(filled) {
            counts.flush(sink, &mut stats)?;
            if !counts.has_room(filled) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("WordCount map: a word of {filled} bytes or more; words must be under 4 GiB"),
                ));
            }
        }
        let mut words = 0u64;
        let rest = scan_words(&buf[..filled], &mut |w| {
            words += 1;
            counts.add(w);
        });
        stats.map_output_records += words;
        buf.copy_within(rest..filled, 0);
        carried = filled - rest;
        if counts.memory() > budget_bytes {
            counts.flush(sink, &mut stats)?;
        }
    }
    if carried > 0 {
        counts.add(&buf[..carried]);
        stats.map_output_records += 1;
    }
    if last_byte != b'\n' {
        stats.input_records += 1;
    }
    counts.flush(sink, &mut stats)?;
    Ok(stats)
}

/// Appends `n` in decimal (as `n.to_string()` would, without allocating).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The number of `\n` bytes in `b` (the map's input line count), eight
/// bytes at a time: about 4x faster than a byte-by-byte count, which cost
/// as much as 5% of a native map task.
fn count_newlines(b: &[u8]) -> u64 {
    const NL: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut n = 0u64;
    let mut blocks = b.chunks_exact(32);
    for block in &mut blocks {
        // One count per byte lane (at most 4 per lane here).
        let mut lanes = 0u64;
        for w in block.chunks_exact(8) {
            let x = u64::from_le_bytes(w.try_into().expect("8 bytes")) ^ NL;
            // The high bit of a lane is set iff that byte of x is zero, i.e.
            // the input byte is '\n' (no carry crosses lanes: each lane's
            // sum is at most 0x7f + 0x7f).
            let zero = !(((x & LOW7) + LOW7) | x | LOW7);
            lanes += zero >> 7;
        }
        // Sum of the eight lanes (at most 32: no overflow) in the top byte.
        n += lanes.wrapping_mul(0x0101_0101_0101_0101) >> 56;
    }
    n + blocks.remainder().iter().filter(|&&c| c == b'\n').count() as u64
}

/// Parses a count datum: `j` + a JSON integer.
fn parse_count(key: &[u8], value: &[u8]) -> io::Result<i64> {
    let bad = |why: &str| {
        let shown = String::from_utf8_lossy(value);
        let shown: String = shown.chars().take(80).collect();
        let key: String = String::from_utf8_lossy(key).chars().take(80).collect();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("WordCount reduce: value {shown:?} of key {key:?} {why}"),
        )
    };
    let Some((&TAG_JSON, text)) = value.split_first() else {
        return Err(bad("is not a JSON integer"));
    };
    let (neg, digits) = match text.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || (digits.len() > 1 && digits[0] == b'0')
    {
        return Err(bad("is not a JSON integer"));
    }
    let mut n: i64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_sub((d - b'0') as i64))
            .ok_or_else(|| bad("does not fit in a 64-bit integer"))?;
    }
    if neg { Ok(n) } else { n.checked_neg().ok_or_else(|| bad("does not fit in a 64-bit integer")) }
}

/// The WordCount reduce: reads records sorted by key, sums the integer
/// values of each run of equal keys and emits `(key, "j"+sum)`.
pub fn reduce(source: &mut dyn RecordSource, sink: &mut dyn RecordSink) -> io::Result<ExecStats> {
    let mut stats = ExecStats::default();
    let mut key: Vec<u8> = Vec::new();
    let mut sum: i64 = 0;
    let mut have = false;
    let mut out = Vec::with_capacity(24);
    let mut emit = |key: &[u8], sum: i64, stats: &mut ExecStats| {
        out.clear();
        out.push(TAG_JSON);
        out.extend_from_slice(sum.to_string().as_bytes());
        stats.output_records += 1;
        sink.emit(key, &out)
    };
    while let Some((k, v)) = source.next_record()? {
        stats.input_records += 1;
        let n = parse_count(k, v)?;
        if have && k == key.as_slice() {
            sum = sum.checked_add(n).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "WordCount reduce: a sum overflows 64 bits")
            })?;
            continue;
        }
        if have {
            emit(&key, sum, &mut stats)?;
        }
        key.clear();
        key.extend_from_slice(k);
        sum = n;
        have = true;
        stats.reduce_input_groups += 1;
    }
    if have {
        emit(&key, sum, &mut stats)?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordReader, write_record};
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::process::Command;

    #[test]
    fn decimals_are_written_like_to_string() {
        for n in [0, 1, 9, 10, 99, 100, 12345, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut out = b"j".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("j{n}").into_bytes());
        }
    }

    #[test]
    fn newlines_are_counted_exactly_at_any_length_and_alignment() {
        // Bytes next to '\n' in value and bit pattern, and runs of newlines.
        let alphabet = [b'\n', b'\n' ^ 0x80, 0x0b, 0x09, 0x00, 0xff, 0x7f, 0x8a, b'a', 0x0e, 0x02];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut bytes = Vec::new();
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        bytes.extend(std::iter::repeat_n(b'\n', 300));
        for start in 0..40 {
            for end in (start..bytes.len()).step_by(97).chain([bytes.len()]) {
                let b = &bytes[start..end];
                let want = b.iter().filter(|&&c| c == b'\n').count() as u64;
                assert_eq!(count_newlines(b), want, "{start}..{end}");
            }
        }
        assert_eq!(count_newlines(&[b'\n'; 1000]), 1000);
        assert_eq!(count_newlines(b""), 0);
    }

    fn native_counts(b: &[u8]) -> BTreeMap<Vec<u8>, u64> {
        let mut m = BTreeMap::new();
        for_each_word(b, |w| *m.entry(w.to_vec()).or_insert(0) += 1);
        m
    }

    const PY_COUNT: &str = r#"
import collections, json, sys
out = []
for path in sys.argv[1:]:
    c = collections.Counter(w for line in open(path, encoding="utf-8", errors="surrogateescape") for w in line.split())
    out.append({w.encode("utf-8", "surrogateescape").hex(): n for w, n in c.items()})
json.dump(out, sys.stdout)
"#;

    /// Word counts of each input according to real Python, in one process.
    fn python_counts(inputs: &[Vec<u8>]) -> Vec<BTreeMap<Vec<u8>, u64>> {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, data) in inputs.iter().enumerate() {
            let p = dir.path().join(format!("in{i}"));
            std::fs::write(&p, data).unwrap();
            paths.push(p);
        }
        let out = Command::new("python3").arg("-c").arg(PY_COUNT).args(&paths).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Vec<BTreeMap<String, u64>> = serde_json::from_slice(&out.stdout).unwrap();
        v.into_iter().map(|m| m.into_iter().map(|(k, n)| (hex_decode(&k), n)).collect()).collect()
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn python_whitespace() -> Vec<char> {
        let out = Command::new("python3")
            .arg("-c")
            .arg("print(' '.join(str(c) for c in range(0x110000) if chr(c).isspace()))")
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|n| char::from_u32(n.parse().unwrap()).unwrap())
            .collect()
    }

    /// A tiny deterministic generator (xorshift) for the random cases.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn fixed_cases() -> Vec<Vec<u8>> {
        let mut cases: Vec<Vec<u8>> = vec![
            b"the quick brown fox jumps over the lazy dog\nthe end\n".to_vec(),
            b"".to_vec(),
            b"   \n\n  ".to_vec(),
            b"no newline at end".to_vec(),
            b"a\x1cb\x1dc\x1ed\x1fe\x0bf\x0cg\rh\ti".to_vec(),
            b"crlf line\r\nnext line\r\n\r\nlast\r".to_vec(),
            b"nul\x00byte \x00 x\x00\x00y".to_vec(),
            b"cont \x80\x80 bytes\x80x \xbf".to_vec(),
            b"trunc \xe2\x80 space \xe2\x80\x20x \xe2 y \xe1\x9a z\xe3\x80".to_vec(),
            b"overlong \xc0\xa0 x\xc0\x80y \xe0\x80\xa0z \xc1\xbf".to_vec(),
            b"surrogate \xed\xa0\x80 x\xed\xbf\xbfy".to_vec(),
            b"dup lead \xe2\xe2\x80\x80 a\xe2\x80\xe2\x80\x80b \xc2\xc2\x85c".to_vec(),
            b"nbsp\xc2\xa0word nel\xc2\x85word \xc2\xa1notspace".to_vec(),
            b"\xe2\x80\x8bzero-width-space\xe2\x80\x8b is not whitespace".to_vec(),
            b"ideo\xe3\x80\x80graphic ogham\xe1\x9a\x80mark mmsp\xe2\x81\x9fx nnbsp\xe2\x80\xafy".to_vec(),
            b"caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xf4\x90\x80\x80 \xf8\x88\x80\x80\x80".to_vec(),
            b"\xff\xfe\xfd \xc3 \xc3\xc3\xa9".to_vec(),
        ];
        let mut all_ws = Vec::new();
        for (i, c) in python_whitespace().into_iter().enumerate() {
            all_ws.extend_from_slice(format!("w{i}").as_bytes());
            let mut b = [0u8; 4];
            all_ws.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        all_ws.extend_from_slice(b"end");
        cases.push(all_ws);
        cases
    }

    fn random_cases(count: usize, seed: u64) -> Vec<Vec<u8>> {
        let tricky: Vec<&[u8]> = vec![
            b" ",
            b"\n",
            b"\r\n",
            b"\x1c",
            b"\x1f",
            b"\x0b",
            b"\x00",
            b"\xc2",
            b"\x85",
            b"\xa0",
            b"\xc2\x85",
            b"\xc2\xa0",
            b"\xe1",
            b"\x9a",
            b"\x80",
            b"\xe1\x9a\x80",
            b"\xe2",
            b"\xe2\x80",
            b"\xe2\x80\x80",
            b"\xe2\x80\x8a",
            b"\xe2\x80\x8b",
            b"\xe2\x80\xa8",
            b"\xe2\x80\xaf",
            b"\xe2\x81\x9f",
            b"\xe3",
            b"\xe3\x80\x80",
            b"\xed\xa0\x80",
            b"\xc0\xa0",
            b"\xf0\x9f\x98\x80",
            b"\xf0",
            b"\xff",
            b"\xc3\xa9",
            b"a",
            b"b",
            b"ab",
        ];
        let mut rng = Rng(seed);
        (0..count)
            .map(|_| {
                let len = rng.below(40);
                let mut v = Vec::new();
                for _ in 0..len {
                    match rng.below(10) {
                        0 => v.push(rng.next() as u8),
                        1 => v.push(0x80 | (rng.next() as u8 & 0x3f)),
                        _ => v.extend_from_slice(tricky[rng.below(tricky.len())]),
                    }
                }
                v
            })
            .collect()
    }

    #[test]
    fn whitespace_table_matches_python() {
        let ws = python_whitespace();
        assert_eq!(ws.len(), 29);
        for c in ws {
            let mut b = [0u8; 4];
            let s = c.encode_utf8(&mut b).as_bytes();
            let class = CLASS[s[0] as usize];
            assert_ne!(class, WORD, "{c:?}");
            assert_eq!(space_len(s, 0, class), s.len(), "{c:?}");
        }
    }

    #[test]
    fn words_match_python_on_fixed_and_random_inputs() {
        let mut cases = fixed_cases();
        cases.extend(random_cases(4000, 0x9e37_79b9_7f4a_7c15));
        let expected = python_counts(&cases);
        for (case, want) in cases.iter().zip(&expected) {
            assert_eq!(&native_counts(case), want, "input {case:x?}");
        }
    }

    /// Counts through `map` (with a small read size) and `reduce`.
    struct Sorted(std::vec::IntoIter<(Vec<u8>, Vec<u8>)>, Option<(Vec<u8>, Vec<u8>)>);
    impl RecordSource for Sorted {
        fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>> {
            self.1 = self.0.next();
            Ok(self.1.as_ref().map(|(k, v)| (&k[..], &v[..])))
        }
    }

    /// A reader returning at most `n` bytes per read, to cut words and
    /// whitespace sequences at every possible place.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn counts_of(records: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<Vec<u8>, u64> {
        let mut m = BTreeMap::new();
        for (k, v) in records {
            assert_eq!(k[0], TAG_STR);
            assert_eq!(v[0], TAG_JSON);
            let n: u64 = std::str::from_utf8(&v[1..]).unwrap().parse().unwrap();
            *m.entry(k[1..].to_vec()).or_insert(0) += n;
        }
        m
    }

    #[test]
    fn map_handles_words_cut_across_reads_and_early_flushes() {
        let mut text = Vec::new();
        for case in fixed_cases().iter().chain(random_cases(200, 7).iter()) {
            text.extend_from_slice(case);
            text.push(b'\n');
        }
        let want = native_counts(&text);
        let words: u64 = want.values().sum();
        let lines = text.iter().filter(|&&b| b == b'\n').count() as u64;
        for step in [1, 2, 3, 5, 64, 1 << 20] {
            for budget in [0, 1 << 30] {
                let mut out = Vec::new();
                let stats = map(Trickle(&text, step), &mut out, budget).unwrap();
                assert_eq!(counts_of(&out), want, "step {step}");
                assert_eq!(stats.input_records, lines);
                assert_eq!(stats.map_output_records, words);
                assert_eq!(stats.output_records, out.len() as u64);
                assert_eq!(stats.combine_output_records, out.len() as u64);
                if budget == 1 << 30 {
                    assert_eq!(out.len(), want.len());
                }
            }
        }
    }

    #[test]
    fn a_flush_for_the_budget_gives_the_memory_back() {
        // 3,000 distinct words push the table over a 100 KB budget once;
        // 5 MiB of three words follow. After that one flush the table is
        // small again, so "a" leaves the map in 2 records (the flush, the
        // end), not one per 1 MiB read.
        let mut text: Vec<u8> = (0..3000).flat_map(|i| format!("w{i}\n").into_bytes()).collect();
        text.extend(b"a b c\n".repeat((5 << 20) / 6));
        let mut out = Vec::new();
        let stats = map(&text[..], &mut out, 100_000).unwrap();
        assert_eq!(counts_of(&out), native_counts(&text));
        let a_records = out.iter().filter(|(k, _)| k == b"sa").count();
        assert_eq!(a_records, 2, "{} records in all", out.len());
        assert_eq!(stats.output_records, 3000 + 2 * 3);
    }

    #[test]
    fn a_word_over_the_key_limit_is_a_clear_error() {
        let mut text = vec![b'x'; MAX_DATUM_LEN - 1];
        text.extend_from_slice(b" ok\n");
        let mut out = Vec::new();
        map(&text[..], &mut out, 64 << 20).unwrap();
        assert_eq!(out.len(), 2, "a word of the limit less its tag byte is a key");
        text.insert(0, b'x');
        let e = map(&text[..], &mut Vec::new(), 64 << 20).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("WordCount map: a word of {MAX_DATUM_LEN} bytes is larger")),
            "{e}"
        );
    }

    #[test]
    fn map_counts_lines_like_python() {
        for (text, lines) in [(&b""[..], 0), (b"a", 1), (b"a\n", 1), (b"a\nb", 2), (b"\n\n", 2)] {
            let stats = map(text, &mut Vec::new(), 1 << 20).unwrap();
            assert_eq!(stats.input_records, lines, "{text:?}");
        }
    }

    #[test]
    fn map_then_reduce_round_trip() {
        let text = b"b a c a\r\nb a \xff\xc2\xa0\xff\n";
        let mut all = Vec::new();
        // Three map tasks over the same text, framed and read back as a
        // reducer would see them.
        let mut framed = Vec::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            map(&text[..], &mut out, 1 << 20).unwrap();
            all.extend(out);
        }
        all.sort();
        for (k, v) in &all {
            write_record(&mut framed, k, v).unwrap();
        }
        let mut source = RecordReader::new(&framed[..]);
        let mut out = Vec::new();
        let stats = reduce(&mut source, &mut out).unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"sa".to_vec(), b"j9".to_vec()),
            (b"sb".to_vec(), b"j6".to_vec()),
            (b"sc".to_vec(), b"j3".to_vec()),
            (b"s\xff".to_vec(), b"j6".to_vec()),
        ];
        assert_eq!(out, want);
        assert_eq!(stats.input_records, 12);
        assert_eq!(stats.reduce_input_groups, 4);
        assert_eq!(stats.output_records, 4);

        let mut s = Sorted(Vec::new().into_iter(), None);
        assert_eq!(reduce(&mut s, &mut Vec::new()).unwrap(), ExecStats::default());
    }

    #[test]
    fn reduce_refuses_values_that_are_not_integers() {
        for bad in [&b"j1.5"[..], b"s1", b"j", b"j01", b"j1e3", b"j99999999999999999999", b"j[1]"] {
            let recs = vec![(b"sk".to_vec(), bad.to_vec())];
            let mut s = Sorted(recs.into_iter(), None);
            let e = reduce(&mut s, &mut Vec::new()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("WordCount reduce"), "{e}");
        }
        let recs = vec![(b"sk".to_vec(), b"j-3".to_vec()), (b"sk".to_vec(), b"j0".to_vec())];
        let mut out = Vec::new();
        reduce(&mut Sorted(recs.into_iter(), None), &mut out).unwrap();
        assert_eq!(out, vec![(b"sk".to_vec(), b"j-3".to_vec())]);
    }

    /// Native map speed (meaningful with `--release`):
    /// `cargo test --release -p ipdc-common wordcount::tests::native_map_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn native_map_speed() {
        let path = std::env::var("IPDC_CORPUS").unwrap_or_else(|_| "/tmp/ipdc_corpus_16M.txt".into());
        if !std::path::Path::new(&path).exists() {
            let out = Command::new("python3")
                .args([concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/corpus.py"), "16M", "--seed", "1"])
                .output()
                .unwrap();
            std::fs::File::create(&path).unwrap().write_all(&out.stdout).unwrap();
        }
        let data = std::fs::read(&path).unwrap();
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        let stats = map(&data[..], &mut out, 256 << 20).unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "native map: {} bytes, {} words, {} keys in {:.3}s = {:.1} MB/s",
            data.len(),
            stats.map_output_records,
            out.len(),
            secs,
            data.len() as f64 / secs / 1e6
        );
    }
}

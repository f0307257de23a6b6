//! The benchmark's "machine limit" for WordCount: one pass over the file
//! with 2 threads (each owns half the file, cut at a newline), a hash map of
//! counts per thread, a merge, a sort and a write of `word<TAB>count` lines.
//! Exactly Python's `str.split()` over the text decoded as UTF-8 with
//! `surrogateescape`: the input is treated as bytes and split at the bytes
//! 09-0D, 1C-1F, 20 and the UTF-8 sequences of U+0085, U+00A0, U+1680,
//! U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
//!
//!     native_wc INPUT OUT_FILE [THREADS]

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

/// Fx hash of a word (as in rustc).
#[inline]
fn fx(mut b: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = 0u64;
    while b.len() >= 8 {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(b[..8].try_into().unwrap())).wrapping_mul(K);
        b = &b[8..];
    }
    if b.len() >= 4 {
        h = (h.rotate_left(5) ^ u32::from_le_bytes(b[..4].try_into().unwrap()) as u64).wrapping_mul(K);
        b = &b[4..];
    }
    for &x in b {
        h = (h.rotate_left(5) ^ x as u64).wrapping_mul(K);
    }
    h
}

/// Counts: open addressing (linear probing, <= 3/4 full) over slots
/// pointing into one arena of distinct words. Faster than a
/// `HashMap<Vec<u8>, u64>` (no allocation per word, the frequent words
/// close together), so the pass stays the machine's limit for IPDC, whose
/// native map counts the same way.
#[derive(Clone, Copy, Default)]
struct Slot {
    hash: u64,
    off: usize,
    len: usize,
    count: u64,
}

struct Map {
    slots: Vec<Slot>,
    used: usize,
    arena: Vec<u8>,
}

impl Map {
    fn new() -> Self {
        Map { slots: vec![Slot::default(); 1 << 12], used: 0, arena: Vec::new() }
    }

    #[inline]
    fn add(&mut self, w: &[u8], n: u64) {
        let hash = fx(w);
        let mask = self.slots.len() - 1;
        let mut i = (hash >> 32) as usize & mask;
        loop {
            let s = &mut self.slots[i];
            if s.len == 0 {
                break;
            }
            if s.hash == hash && &self.arena[s.off..s.off + s.len] == w {
                s.count += n;
                return;
            }
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { hash, off: self.arena.len(), len: w.len(), count: n };
        self.arena.extend_from_slice(w);
        self.used += 1;
        if self.used * 4 > self.slots.len() * 3 {
            let bigger = vec![Slot::default(); self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, bigger);
            let mask = self.slots.len() - 1;
            for s in old.into_iter().filter(|s| s.len != 0) {
                let mut i = (s.hash >> 32) as usize & mask;
                while self.slots[i].len != 0 {
                    i = (i + 1) & mask;
                }
                self.slots[i] = s;
            }
        }
    }

    fn words(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.slots.iter().filter(|s| s.len != 0).map(|s| (&self.arena[s.off..s.off + s.len], s.count))
    }
}

/// 0: word byte; 1: ASCII whitespace; 2..: lead byte of a possible
/// multi-byte whitespace character.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0x09;
    while i <= 0x0d {
        t[i] = 1;
        i += 1;
    }
    let mut i = 0x1c;
    while i <= 0x20 {
        t[i] = 1;
        i += 1;
    }
    t[0xc2] = 2;
    t[0xe1] = 3;
    t[0xe2] = 4;
    t[0xe3] = 5;
    t
};

/// Length of the whitespace starting at `b[i]`, 0 if none (or cut short).
#[inline]
fn space_len(b: &[u8], i: usize, class: u8) -> usize {
    let g = |k: usize| b.get(i + k).copied();
    match class {
        1 => 1,
        2 => matches!(g(1), Some(0x85 | 0xa0)) as usize * 2,
        3 => matches!((g(1), g(2)), (Some(0x9a), Some(0x80))) as usize * 3,
        4 => match (g(1), g(2)) {
            (Some(0x80), Some(0x80..=0x8a | 0xa8 | 0xa9 | 0xaf)) | (Some(0x81), Some(0x9f)) => 3,
            _ => 0,
        },
        5 => matches!((g(1), g(2)), (Some(0x80), Some(0x80))) as usize * 3,
        _ => 0,
    }
}

/// Counts the complete words of `b`; returns where the unfinished trailing
/// word starts.
fn scan(b: &[u8], m: &mut Map) -> usize {
    let n = b.len();
    let mut i = 0;
    let mut start = usize::MAX;
    while i < n {
        let c = CLASS[b[i] as usize];
        if c == 0 {
            if start == usize::MAX {
                start = i;
            }
            i += 1;
            while i < n && CLASS[b[i] as usize] == 0 {
                i += 1;
            }
            continue;
        }
        let len = space_len(b, i, c);
        if len == 0 {
            if start == usize::MAX {
                start = i;
            }
            i += 1;
            continue;
        }
        if start != usize::MAX {
            add(m, &b[start..i]);
            start = usize::MAX;
        }
        i += len;
    }
    if start == usize::MAX { n } else { start }
}

#[inline]
fn add(m: &mut Map, w: &[u8]) {
    m.add(w, 1);
}

/// Counts the words of `path[from..to]`.
fn count_range(path: &str, from: u64, to: u64) -> Map {
    const CHUNK: usize = 1 << 20;
    let mut f = File::open(path).expect("open input");
    f.seek(SeekFrom::Start(from)).expect("seek");
    let mut left = (to - from) as usize;
    let mut m = Map::new();
    let mut buf = vec![0u8; CHUNK];
    let mut carried = 0;
    while left > 0 {
        if buf.len() < carried + CHUNK / 2 {
            buf.resize(carried + CHUNK, 0);
        }
        let want = (buf.len() - carried).min(left);
        let n = f.read(&mut buf[carried..carried + want]).expect("read");
        if n == 0 {
            break;
        }
        left -= n;
        let filled = carried + n;
        let rest = scan(&buf[..filled], &mut m);
        buf.copy_within(rest..filled, 0);
        carried = filled - rest;
    }
    if carried > 0 {
        add(&mut m, &buf[..carried]);
    }
    m
}

/// Offset of the first byte after the first `\n` at or after `at`.
fn after_newline(path: &str, at: u64, len: u64) -> u64 {
    let mut f = File::open(path).expect("open input");
    f.seek(SeekFrom::Start(at)).expect("seek");
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = at;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return len;
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return pos + i as u64 + 1;
        }
        pos += n as u64;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: native_wc INPUT OUT_FILE [THREADS]");
        std::process::exit(2);
    }
    let (input, output) = (args[1].clone(), &args[2]);
    let threads: u64 = args.get(3).map(|t| t.parse().expect("THREADS")).unwrap_or(2).max(1);
    let len = std::fs::metadata(&input).expect("stat input").len();
    // Cut points just after a newline, so no word spans two ranges.
    let mut cuts = vec![0u64];
    for t in 1..threads {
        let c = after_newline(&input, len * t / threads, len).max(*cuts.last().unwrap());
        cuts.push(c);
    }
    cuts.push(len);
    let maps: Vec<Map> = std::thread::scope(|s| {
        let hs: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (a, b, p) = (w[0], w[1], &input);
                s.spawn(move || count_range(p, a, b))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut maps = maps.into_iter();
    let mut total = maps.next().unwrap_or_else(Map::new);
    for m in maps {
        for (w, c) in m.words() {
            total.add(w, c);
        }
    }
    let mut words: Vec<(&[u8], u64)> = total.words().collect();
    words.sort_unstable();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(output).expect("create output"));
    for (w, c) in words {
        out.write_all(w).unwrap();
        writeln!(out, "\t{c}").unwrap();
    }
    out.flush().unwrap();
}

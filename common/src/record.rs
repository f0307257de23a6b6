//! The record format: how keys and values travel between executors, spill
//! files and the partition files stored in IPFS.
//!
//! A *datum* (a key or a value) is a tag byte followed by its payload:
//! - `s` + the bytes of a string. Python strings cross as UTF-8 with
//!   `surrogateescape`, so bytes that are not valid UTF-8 survive unchanged.
//! - `j` + the JSON text of any other value (numbers, lists, objects, ...).
//! - Map and combine output keys that are not strings use the runner's
//!   order-preserving tags (`a`, `b`, `d`, `u`, `v`; see "sortable keys" in
//!   `runner.py`), which Rust never parses: it only compares their bytes.
//!
//! A *record* is `u32 LE key length, key datum, u32 LE value length, value datum`.
//! Records are sorted and grouped by the bytes of the key datum, tag included,
//! which orders keys as Python would (numbers by value, strings by code point).
//!
//! This module is part of the wire contract: the Python runner (`runner.py`)
//! writes and reads exactly this framing.

use std::io::{self, BufRead, Write};

/// Tag of a string datum: the payload is the string's bytes.
pub const TAG_STR: u8 = b's';
/// Tag of any other datum: the payload is JSON text.
pub const TAG_JSON: u8 = b'j';
/// The key datum of a map-only job's single value: no key at all (its
/// part line is the value alone).
pub const NO_KEY: &[u8] = b"n";

/// Largest datum (key or value) accepted anywhere, in bytes. Larger ones are
/// refused with an error instead of being allocated.
pub const MAX_DATUM_LEN: usize = 16 << 20;

/// Writes one record (two datums, each already tagged).
pub fn write_record<W: Write>(w: &mut W, key: &[u8], value: &[u8]) -> io::Result<()> {
    w.write_all(&(key.len() as u32).to_le_bytes())?;
    w.write_all(key)?;
    w.write_all(&(value.len() as u32).to_le_bytes())?;
    w.write_all(value)
}

/// Bytes one record occupies when framed.
pub fn framed_len(key: &[u8], value: &[u8]) -> usize {
    8 + key.len() + value.len()
}

/// Reads records one after another, reusing its buffers (no allocation per
/// record once the buffers have grown to the largest datum).
pub struct RecordReader<R> {
    inner: R,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(inner: R) -> Self {
        RecordReader { inner, key: Vec::new(), value: Vec::new() }
    }

    /// The next record as `(key, value)`, or `None` at a clean end of input.
    /// A stream that ends inside a record is an `UnexpectedEof` error.
    pub fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>> {
        let mut len = [0u8; 4];
        // A clean end is only allowed before the first byte of a record.
        if self.inner.fill_buf()?.is_empty() {
            return Ok(None);
        }
        self.inner.read_exact(&mut len)?;
        read_datum(&mut self.inner, u32::from_le_bytes(len), &mut self.key)?;
        self.inner.read_exact(&mut len)?;
        read_datum(&mut self.inner, u32::from_le_bytes(len), &mut self.value)?;
        Ok(Some((&self.key, &self.value)))
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

fn read_datum<R: BufRead>(r: &mut R, len: u32, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = len as usize;
    if len > MAX_DATUM_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("record datum of {len} bytes exceeds the limit of {MAX_DATUM_LEN} bytes"),
        ));
    }
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "record datum without a tag byte"));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)
}

/// Writes a datum as the output text of a part file: a string as its bytes,
/// anything else as its JSON text.
pub fn write_text_datum<W: Write>(w: &mut W, datum: &[u8]) -> io::Result<()> {
    match datum.split_first() {
        Some((_, payload)) => w.write_all(payload),
        None => Ok(()),
    }
}

/// Writes a datum as JSON text (a typed line of a multi-step job's part):
/// a string JSON-escaped, with each byte that is not UTF-8 as `\udcXX`, the
/// surrogate Python's `surrogateescape` decodes it to, so that `json.loads`
/// gives back the very `str` the user code had; anything else as it is.
pub fn write_json_datum<W: Write>(w: &mut W, datum: &[u8]) -> io::Result<()> {
    let Some((&tag, payload)) = datum.split_first() else { return Ok(()) };
    if tag != TAG_STR {
        return w.write_all(payload);
    }
    w.write_all(b"\"")?;
    for chunk in payload.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => w.write_all(b"\\\"")?,
                '\\' => w.write_all(b"\\\\")?,
                '\n' => w.write_all(b"\\n")?,
                '\t' => w.write_all(b"\\t")?,
                '\r' => w.write_all(b"\\r")?,
                c if (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
                c => {
                    let mut buf = [0; 4];
                    w.write_all(c.encode_utf8(&mut buf).as_bytes())?
                }
            }
        }
        for b in chunk.invalid() {
            write!(w, "\\udc{b:02x}")?;
        }
    }
    w.write_all(b"\"")
}

/// A string datum for `s`.
pub fn str_datum(s: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(s.len() + 1);
    d.push(TAG_STR);
    d.extend_from_slice(s);
    d
}

/// An integer datum (JSON number).
pub fn int_datum(n: i64) -> Vec<u8> {
    let mut d = Vec::with_capacity(21);
    d.push(TAG_JSON);
    d.extend_from_slice(n.to_string().as_bytes());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_datum_as_json_is_what_python_reads_back() {
        let json = |d: &[u8]| {
            let mut out = Vec::new();
            write_json_datum(&mut out, d).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(json(&str_datum(b"caf\xc3\xa9 \"q\"\t\\\n\x01")), r#""café \"q\"\t\\\n\u0001""#);
        assert_eq!(json(&str_datum(b"a\xffb")), r#""a\udcffb""#);
        assert_eq!(json(&int_datum(-3)), "-3");
    }

    #[test]
    fn records_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_record(&mut buf, &str_datum(b"caf\xc3\xa9"), &int_datum(3)).unwrap();
        write_record(&mut buf, &str_datum(b"\xff\xfe"), &int_datum(-1)).unwrap();
        let mut r = RecordReader::new(&buf[..]);
        assert_eq!(r.next_record().unwrap(), Some((&b"scaf\xc3\xa9"[..], &b"j3"[..])));
        assert_eq!(r.next_record().unwrap(), Some((&b"s\xff\xfe"[..], &b"j-1"[..])));
        assert_eq!(r.next_record().unwrap(), None);
    }

    #[test]
    fn truncated_record_is_an_error() {
        let mut buf = Vec::new();
        write_record(&mut buf, b"sabc", b"j1").unwrap();
        buf.pop();
        let mut r = RecordReader::new(&buf[..]);
        assert_eq!(r.next_record().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn oversized_datum_is_refused_without_allocating() {
        let buf = (u32::MAX).to_le_bytes();
        let mut r = RecordReader::new(&buf[..]);
        assert_eq!(r.next_record().unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn text_output_strips_the_tag() {
        let mut out = Vec::new();
        write_text_datum(&mut out, b"shello").unwrap();
        out.push(b'\t');
        write_text_datum(&mut out, b"j[1,2]").unwrap();
        assert_eq!(out, b"hello\t[1,2]");
    }
}

//! The runner script and the protocol spoken with it over its pipes: what
//! goes to its stdin, how its stdout is cut into records, and what its
//! stderr tail and exit status say about how it ended. Starting, feeding
//! and stopping the process is left to the executor and the sandbox.
//!
//! Command line (no shell): `PYTHON -I -B /proc/self/fd/N map MAP_PY
//! [--combine REDUCE_PY]` or `... reduce REDUCE_PY` (the runner sealed in
//! memory, see the script module), with the task's own temporary folder as
//! the working directory. stdin carries the split's raw
//! lines (map) or blocks of records sorted by key (reduce: `u32 n`, then the
//! `2n` `u32` lengths of key, value, key, value..., then those datums; all
//! little-endian); stdout carries framed
//! records (see [`crate::record`]); stderr carries anything the user prints,
//! then one protocol line: `IPDC-STATS {json counters}` on success (exit
//! status 0), or `IPDC-ERROR: summary` after a traceback on failure (exit
//! status 2: the user's file cannot be loaded; 3: the user's code failed or
//! produced something that cannot be stored; 4: runner or protocol problem;
//! 5: the user's code raised `MemoryError`).

use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::error::last_chars;
use super::{ExecError, Stage};
use crate::exec::{ExecStats, RecordSink, RecordSource};
use crate::record::MAX_DATUM_LEN;

/// The runner script, sealed in memory once per process (see the script module).
pub const RUNNER_PY: &str = include_str!("../runner.py");

/// The runner's file name (its memfd's name; a file of that name where
/// memfd is not available). Reserved: no user file may be called so.
pub const RUNNER_FILE_NAME: &str = "ipdc_runner.py";

/// How much of the runner's stderr is kept (its end).
pub const STDERR_TAIL: usize = 64 << 10;

/// Bytes written to the runner's stdin at a time.
pub(super) const FEED_CHUNK: usize = 256 << 10;

/// Records per block of reduce input: the runner works a block at a time,
/// and a small block stays in the CPU cache while it does.
const REDUCE_BLOCK_RECORDS: u32 = 2048;

/// Exit status of the runner when the user's file cannot be loaded.
const EXIT_LOAD: i32 = 2;

/// Exit status of the runner when the user's code failed or produced
/// something that cannot be stored.
const EXIT_USER: i32 = 3;

/// Exit status of the runner when the user's code raised `MemoryError`.
const EXIT_MEMORY: i32 = 5;

/// Starts the runner's last stderr line on failure.
const ERROR_PREFIX: &str = "IPDC-ERROR: ";

/// Starts the runner's last stderr line on success.
const STATS_PREFIX: &str = "IPDC-STATS ";

/// `r.read(buf)`, tried again when a signal interrupts it.
pub(super) fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Fills `buf` with the next bytes of a map's input (up to [`FEED_CHUNK`]);
/// leaves it empty at the end. The runner cuts them into lines itself.
pub(super) fn next_map_chunk(input: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(FEED_CHUNK, 0);
    let n = read_some(input, buf)?;
    buf.truncate(n);
    Ok(())
}

/// Encodes sorted records into the blocks of a reduce's stdin. Keeps its
/// buffers from one block to the next.
#[derive(Default)]
pub(super) struct ReduceBlocks {
    lens: Vec<u8>,
    data: Vec<u8>,
}

impl ReduceBlocks {
    /// Fills `buf` with the next block of records from `source` (at most
    /// [`REDUCE_BLOCK_RECORDS`], and about [`FEED_CHUNK`] bytes of datums);
    /// leaves it empty at the end.
    pub(super) fn next_block(&mut self, source: &mut dyn RecordSource, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        self.lens.clear();
        self.data.clear();
        let mut n = 0u32;
        while n < REDUCE_BLOCK_RECORDS && self.data.len() < FEED_CHUNK {
            match source.next_record()? {
                Some((k, v)) => {
                    self.lens.extend_from_slice(&(k.len() as u32).to_le_bytes());
                    self.lens.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    self.data.extend_from_slice(k);
                    self.data.extend_from_slice(v);
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            buf.extend_from_slice(&n.to_le_bytes());
            buf.extend_from_slice(&self.lens);
            buf.extend_from_slice(&self.data);
        }
        Ok(())
    }
}

/// Reads `r` to its end, keeping the last [`STDERR_TAIL`] bytes.
pub(super) fn read_tail(mut r: impl Read) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match read_some(&mut r, &mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > 2 * STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL {
        tail.drain(..tail.len() - STDERR_TAIL);
    }
    tail
}

/// The last line of `tail` starting with `prefix`, without it, and the text
/// before that line.
fn last_line_with<'a>(tail: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let start =
        if tail.starts_with(prefix) { Some(0) } else { tail.rfind(&format!("\n{prefix}")).map(|i| i + 1) }?;
    let line = &tail[start + prefix.len()..];
    let line = line.split('\n').next().unwrap_or("");
    Some((line.trim_end(), &tail[..start]))
}

/// The runner's last `IPDC-ERROR:` summary, and the text before it.
fn error_line(tail: &str) -> Option<(&str, &str)> {
    last_line_with(tail, ERROR_PREFIX)
}

/// The memory-limit error for a runner that ended with `status`, if that
/// is how it ended: it reported `MemoryError` (exit status 5), or it was
/// killed by SIGKILL (not ours) or SIGSEGV.
pub(super) fn memory_error(
    stage: Stage,
    limit_bytes: u64,
    status: ExitStatus,
    killed_by_us: bool,
    tail: &str,
) -> Option<ExecError> {
    let cause = if status.code() == Some(EXIT_MEMORY) {
        "MemoryError".to_string()
    } else {
        match status.signal() {
            Some(libc::SIGKILL) if !killed_by_us => "killed by SIGKILL".to_string(),
            Some(libc::SIGSEGV) => "killed by SIGSEGV".to_string(),
            _ => return None,
        }
    };
    let detail = match error_line(tail) {
        Some((summary, before)) if status.code() == Some(EXIT_MEMORY) => {
            format!("{}\n{summary}", before.trim())
        }
        _ => last_chars(tail.trim(), 4000).to_string(),
    };
    Some(ExecError::OutOfMemory { stage, limit_bytes, cause, detail })
}

/// The user error the runner reported, if it exited with status 2, 3 or 5
/// (`MemoryError` without a memory limit of ours) and an `IPDC-ERROR:` line.
pub(super) fn user_error(status: ExitStatus, tail: &str) -> Option<ExecError> {
    if !matches!(status.code(), Some(EXIT_LOAD | EXIT_USER | EXIT_MEMORY)) {
        return None;
    }
    let (summary, before) = error_line(tail)?;
    Some(ExecError::User { summary: summary.to_string(), traceback: before.trim().to_string() })
}

/// The runner failed without a user error: its status, with its own
/// `IPDC-ERROR:` summary if it gave one.
pub(super) fn runner_error(status: ExitStatus, tail: &str) -> ExecError {
    let status = match error_line(tail) {
        Some((summary, _)) => format!("{status}: {summary}"),
        None => status.to_string(),
    };
    ExecError::Runner { status, stderr_tail: tail.to_string() }
}

/// The counters of the runner's final `IPDC-STATS` line.
pub(super) fn parse_stats(tail: &str) -> Result<ExecStats, ExecError> {
    let (json, _) = last_line_with(tail, STATS_PREFIX)
        .ok_or_else(|| ExecError::Protocol(
            "it exited with success before it finished (no IPDC-STATS line): does the job's code call os._exit()?".into(),
        ))?;
    serde_json::from_str(json).map_err(|e| ExecError::Protocol(format!("bad IPDC-STATS line {json:?}: {e}")))
}

/// What the user's code printed: the stderr tail without the runner's
/// closing IPDC-STATS line (and the blank line the runner puts before it).
pub(super) fn user_output(tail: &str) -> String {
    let end = tail.rfind(STATS_PREFIX).unwrap_or(tail.len());
    let text = &tail[..end];
    text.strip_suffix('\n').unwrap_or(text).to_string()
}

/// Cuts the runner's stdout (arriving in arbitrary chunks) into records.
#[derive(Default)]
pub(super) struct Frames {
    /// The start of a record whose end has not arrived yet.
    buf: Vec<u8>,
    /// Records handed to the sink so far.
    pub(super) records: u64,
}

impl Frames {
    /// Hands `sink` every record that `chunk` completes and keeps the
    /// incomplete rest for the next chunk.
    pub(super) fn push(&mut self, chunk: &[u8], sink: &mut dyn RecordSink) -> Result<(), ExecError> {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            let Some(klen) = datum_len(rest)? else { break };
            let Some(vlen) = datum_len(&rest[(4 + klen).min(rest.len())..])? else {
                break;
            };
            if rest.len() < 4 + klen {
                break;
            }
            let end = 8 + klen + vlen;
            if rest.len() < end {
                break;
            }
            sink.emit(&rest[4..4 + klen], &rest[8 + klen..end])?;
            self.records += 1;
            pos += end;
        }
        self.buf.drain(..pos);
        Ok(())
    }

    /// At the end of the output: an error if it stopped inside a record.
    pub(super) fn finish(&self) -> Result<(), ExecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ExecError::Protocol(format!(
                "its output ends inside a record ({} bytes left)",
                self.buf.len()
            )))
        }
    }
}

/// The length prefix at the start of `b`, if all 4 bytes are there.
fn datum_len(b: &[u8]) -> Result<Option<usize>, ExecError> {
    let Some(len) = b.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
    if len > MAX_DATUM_LEN {
        // The user's doing (one huge key or value), not the runner's.
        return Err(ExecError::User {
            summary: format!(
                "a key or value of {len} bytes is larger than the limit of {} MiB for one key or value; \
                 yield smaller ones (e.g. split it over several records)",
                MAX_DATUM_LEN >> 20
            ),
            traceback: String::new(),
        });
    }
    if len == 0 {
        return Err(ExecError::Protocol("its output has an empty datum".into()));
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordReader, write_record};

    #[test]
    fn frames_are_cut_at_any_chunk_boundary() {
        let mut framed = Vec::new();
        for i in 0..50 {
            write_record(&mut framed, format!("skey{i}").as_bytes(), b"j[1,2,3]").unwrap();
        }
        let want: Vec<_> = {
            let mut r = RecordReader::new(&framed[..]);
            let mut v = Vec::new();
            while let Some((k, val)) = r.next_record().unwrap() {
                v.push((k.to_vec(), val.to_vec()));
            }
            v
        };
        for step in [1, 3, 7, 100, framed.len()] {
            let mut f = Frames::default();
            let mut out = Vec::new();
            for chunk in framed.chunks(step) {
                f.push(chunk, &mut out).unwrap();
            }
            f.finish().unwrap();
            assert_eq!(out, want);
        }
        let mut f = Frames::default();
        f.push(&framed[..framed.len() - 1], &mut Vec::new()).unwrap();
        assert!(matches!(f.finish(), Err(ExecError::Protocol(_))));
    }
}

//! What the Python executor's integration tests (`python_executor.rs`,
//! `python_sandbox.rs`) share: a job folder with user files, WordCount in
//! Python, awkward input text, and record sources, sinks and inputs.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;

use ipdc_common::exec::{RecordSink, RecordSource};
use ipdc_common::python::{ExecError, PythonExecutor};

/// A job's folder of user files, and an executor whose task folder is in it.
pub struct Job {
    pub dir: tempfile::TempDir,
    pub exec: PythonExecutor,
}

/// A temp folder with the given user files and an executor for it.
pub fn job(files: &[(&str, &str)]) -> Job {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let work = dir.path().join("task");
    std::fs::create_dir(&work).unwrap();
    Job { exec: PythonExecutor::new("python3", work), dir }
}

impl Job {
    /// A user file of the job.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub const WC_MAP: &str = "def map(line):\n    for w in line.split():\n        yield w, 1\n";
pub const WC_REDUCE: &str = "def reduce(key, values):\n    yield key, sum(values)\n";

/// Text that trips up line and word splitting: CRLF, Unicode spaces,
/// invalid UTF-8, control characters, no final newline.
pub fn tricky_text() -> Vec<u8> {
    let mut t = Vec::new();
    for i in 0..300 {
        t.extend_from_slice(format!("line {i} the quick brown fox\r\n").as_bytes());
        t.extend_from_slice(b"nbsp\xc2\xa0word nel\xc2\x85w ideo\xe3\x80\x80x zwsp\xe2\x80\x8bnot\n");
        t.extend_from_slice(
            b"bad \xff\xfe utf8 \xe2\x80 trunc \xc0\xa0 over \xed\xa0\x80 sur \x1cfs\x1fus\n",
        );
        t.extend_from_slice(
            b"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \x00nul\x0bvt\x0cff\rcr\n",
        );
    }
    t.extend_from_slice(b"last line without newline \xe2\x80\xa8 end");
    t
}

/// The counts of WordCount records (`s` word, `j` count), summed per word.
pub fn counts(records: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<Vec<u8>, u64> {
    let mut m = BTreeMap::new();
    for (k, v) in records {
        assert_eq!(k[0], b's');
        assert_eq!(v[0], b'j');
        let n: u64 = std::str::from_utf8(&v[1..]).unwrap().parse().unwrap();
        *m.entry(k.clone()).or_insert(0) += n;
    }
    m
}

/// The summary and traceback of a user error; panics on any other error.
pub fn user_error(e: ExecError) -> (String, String) {
    match e {
        ExecError::User { summary, traceback } => (summary, traceback),
        other => panic!("expected a user error, got {other:?}"),
    }
}

/// A reduce input: these records, already sorted, and how many were read.
pub struct Sorted(pub Vec<(Vec<u8>, Vec<u8>)>, pub usize);
impl RecordSource for Sorted {
    fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>> {
        self.1 += 1;
        Ok(self.0.get(self.1 - 1).map(|(k, v)| (&k[..], &v[..])))
    }
}

/// An endless-ish input: 1 GiB of lines, generated on the fly.
pub struct Lots(pub u64);
impl Read for Lots {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = if i % 16 == 15 { b'\n' } else { b'w' };
        }
        self.0 -= n as u64;
        Ok(n)
    }
}

/// A sink that takes 1000 records, then fails like a full disk.
pub struct FailingSink(pub u32);
impl RecordSink for FailingSink {
    fn emit(&mut self, _: &[u8], _: &[u8]) -> io::Result<()> {
        self.0 += 1;
        if self.0 > 1000 { Err(io::Error::other("disk full")) } else { Ok(()) }
    }
}

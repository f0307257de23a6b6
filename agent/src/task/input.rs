//! What a map task reads: a byte range of one input file (streamed from
//! IPFS, or read from a local file of an in-process node) or a per-file
//! task's whole files, framed for the runner.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ipdc_common::ipfs::IpfsClient;
use ipdc_common::mapreduce::split::{LineOwner, SplitFileReader};
use ipdc_common::protocol::{Compression, InputFile, MAX_FILES_PER_TASK};
use ipdc_common::python::Limits;
use tokio::sync::mpsc;

use super::unzstd::ZstdReader;
use super::{TaskContext, TaskError};

/// The part of the input a map task reads.
pub(super) enum MapInput<'a> {
    /// The lines of a byte range of one file.
    Range {
        cid: &'a str,
        size: u64,
        start: u64,
        end: u64,
        /// The input file's name as the job gives it (empty: unnamed).
        name: &'a str,
        /// Compressed: one split of the whole file, read decompressed.
        compression: Option<Compression>,
    },
    /// Whole files, for `map(name, data)`.
    Files(&'a [InputFile]),
}

/// The error for `what` `name` (`cid`) that the job says is `size` bytes
/// but IPFS gave `got` of (at most `size + 1` are fetched).
pub(super) fn wrong_size(what: &str, name: &str, cid: &str, size: u64, got: u64) -> TaskError {
    let held = if got > size { "IPFS holds more".to_string() } else { format!("IPFS holds {got}") };
    TaskError::new(format!("{what} {name} ({cid}) is not the {size} bytes the job says: {held}"))
}

/// A few of `files`' names, for an error message.
pub(super) fn files_named(files: &[InputFile]) -> String {
    let shown: Vec<&str> = files.iter().take(3).map(|f| f.name.as_str()).collect();
    match files.len() {
        n if n > 3 => format!("files {} and {} more", shown.join(", "), n - 3),
        1 => format!("file {}", shown[0]),
        _ => format!("files {}", shown.join(", ")),
    }
}

/// Fetches a per-file task's files into the attempt's `input/` folder
/// (under their index: the names are the job's, never paths here) and
/// opens them as the runner's framed input. A file that would not fit in
/// the user code's memory limit is refused, named.
pub(super) async fn open_files(
    ctx: &TaskContext,
    dir: &Path,
    files: &[InputFile],
    limits: &Limits,
) -> Result<SplitInput, TaskError> {
    if files.len() > MAX_FILES_PER_TASK {
        return Err(TaskError::new(format!(
            "refused the task: it lists {} files, more than {MAX_FILES_PER_TASK}",
            files.len()
        )));
    }
    // The runner holds one file's bytes at a time, beside Python and the job's code.
    let most = limits.memory_bytes.map_or(u64::MAX, |m| m / 2);
    if let Some(big) = files.iter().find(|f| f.size > most) {
        return Err(TaskError::new(format!(
            "input file {} is {} bytes, more than half the memory user code may use here ({} MiB): \
             raise task_memory_mb or split the file",
            big.name,
            big.size,
            most >> 19
        )));
    }
    let folder = dir.join("input");
    tokio::fs::create_dir_all(&folder).await?;
    let mut local = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let path = folder.join(i.to_string());
        let got = ctx.ipfs.cat_sized_to_scratch_file(&f.cid, &path, f.size).await.map_err(|e| {
            let mut e = TaskError::from(e);
            e.error = format!("input file {}: {}", f.name, e.error);
            e
        })?;
        if got != f.size {
            return Err(wrong_size("input file", &f.name, &f.cid, f.size, got));
        }
        local.push((f.name.clone(), path));
    }
    Ok(SplitInput { reader: SplitReader::Files(FramedFiles::new(local)), fetch: None })
}

/// Whole local files as the runner reads them: each one as `u32 LE name
/// length, name, u64 LE data length, data`, one after another.
pub(super) struct FramedFiles {
    files: std::vec::IntoIter<(String, PathBuf)>,
    /// The current file's header (its unread part) and data.
    head: io::Cursor<Vec<u8>>,
    data: Option<std::fs::File>,
    bytes_read: u64,
}

impl FramedFiles {
    fn new(files: Vec<(String, PathBuf)>) -> Self {
        FramedFiles { files: files.into_iter(), head: io::Cursor::new(Vec::new()), data: None, bytes_read: 0 }
    }
}

impl Read for FramedFiles {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.head.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if let Some(data) = self.data.as_mut() {
                let n = data.read(buf)?;
                if n > 0 {
                    self.bytes_read += n as u64;
                    return Ok(n);
                }
                self.data = None;
            }
            let Some((name, path)) = self.files.next() else { return Ok(0) };
            let file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            let mut head = Vec::with_capacity(12 + name.len());
            head.extend_from_slice(&(name.len() as u32).to_le_bytes());
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(&len.to_le_bytes());
            self.head = io::Cursor::new(head);
            self.data = Some(file);
        }
    }
}

/// Where a map task reads its split from.
pub(super) struct SplitInput {
    pub(super) reader: SplitReader,
    /// The task streaming the split from IPFS (for [`SplitReader::Fetched`]).
    pub(super) fetch: Option<tokio::task::JoinHandle<Result<u64, ipdc_common::ipfs::IpfsError>>>,
}

/// The split's owned lines, as the executor reads them.
pub(super) enum SplitReader {
    /// Straight from the file of an IPFS node in this process.
    File(SplitFileReader),
    /// Streamed with `cat` from the IPFS node's API.
    Fetched(ChannelReader),
    /// Whole files fetched into the attempt's folder, framed.
    Files(FramedFiles),
    /// A `.zst` file's bytes (read by one of the above), decompressed.
    Zstd(Box<ZstdReader<SplitReader>>),
}

impl SplitReader {
    /// Bytes read from the file (a fetch counts its own).
    pub(super) fn bytes_read(&self) -> u64 {
        match self {
            SplitReader::File(r) => r.bytes_read(),
            SplitReader::Files(r) => r.bytes_read,
            SplitReader::Fetched(_) => 0,
            SplitReader::Zstd(r) => r.get_ref().bytes_read(),
        }
    }
}

impl Read for SplitReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SplitReader::File(r) => r.read(buf),
            SplitReader::Fetched(r) => r.read(buf),
            SplitReader::Files(r) => r.read(buf),
            SplitReader::Zstd(r) => r.read(buf),
        }
    }
}

impl SplitInput {
    /// The same input read decompressed (a `.zst` file named `name`).
    pub(super) fn zstd(self, name: &str) -> SplitInput {
        SplitInput {
            reader: SplitReader::Zstd(Box::new(ZstdReader::new(self.reader, name))),
            fetch: self.fetch,
        }
    }
}

/// Opens the split from the node's file when the node runs in this process
/// and holds the input as a file; else starts streaming it with `cat`.
pub(super) fn open_split(
    ctx: &TaskContext,
    cid: &str,
    size: u64,
    start: u64,
    end: u64,
) -> Result<SplitInput, TaskError> {
    if let Some(opened) = ctx.local_files.as_ref().and_then(|files| files.open(cid)) {
        let (file, held) = opened?;
        if held != size {
            return Err(TaskError::new(format!(
                "the IPFS node holds {cid} as {held} bytes, the job says {size}"
            )));
        }
        let reader = SplitReader::File(SplitFileReader::new(file, size, start, end));
        return Ok(SplitInput { reader, fetch: None });
    }
    let (tx, rx) = mpsc::channel(16);
    let fetch = tokio::spawn(fetch_split(ctx.ipfs.clone(), cid.to_string(), size, start, end, tx));
    Ok(SplitInput { reader: SplitReader::Fetched(ChannelReader::new(rx)), fetch: Some(fetch) })
}

/// The first read past a split's end, to finish its last line.
const TAIL_FIRST: u64 = 64 << 10;
/// The largest such read (a line longer than this takes several).
const TAIL_MAX: u64 = 4 << 20;

/// Streams the lines a split owns from IPFS into `tx`, reading past the
/// split's end to finish its last line. Returns the bytes fetched.
async fn fetch_split(
    ipfs: IpfsClient,
    cid: String,
    size: u64,
    start: u64,
    end: u64,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> Result<u64, ipdc_common::ipfs::IpfsError> {
    let mut owner = LineOwner::new(start, end);
    let mut offset = owner.fetch_offset();
    // The split's own range first; then, to finish its last line, reads
    // from TAIL_FIRST up, doubling: a node fetches every block of a range
    // asked for, even when the reader stops after a few bytes.
    let mut want = end.saturating_sub(offset).max(1);
    let mut tail = 0;
    let mut fetched = 0u64;
    let result = async {
        while offset < size {
            let mut stream = ipfs.cat_range(&cid, offset, Some(want)).await?;
            let before = offset;
            while let Some(chunk) = stream.next_chunk().await? {
                offset += chunk.len() as u64;
                fetched += chunk.len() as u64;
                let push = owner.push(&chunk);
                if !push.owned.is_empty() && tx.send(Ok(chunk.slice(push.owned))).await.is_err() {
                    return Ok(()); // the executor stopped reading: its error wins
                }
                if push.done {
                    return Ok(());
                }
            }
            if offset == before {
                return Err(ipdc_common::ipfs::IpfsError::short_read(ipfs.api(), &cid, offset, size));
            }
            tail = if tail == 0 { TAIL_FIRST } else { (tail * 2).min(TAIL_MAX) };
            want = tail;
        }
        Ok(())
    }
    .await;
    if let Err(e) = &result {
        let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
    }
    result.map(|_| fetched)
}

/// A blocking `Read` over chunks arriving on a channel from the async side.
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader { rx, current: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An IPFS API answering `cat` with `offset` and `length` from `data`,
    /// recording each range asked for.
    async fn recording_node(data: Vec<u8>) -> (String, Arc<Mutex<Vec<(u64, u64)>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let data = Arc::new(data);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (data, log) = (data.clone(), log.clone());
                tokio::spawn(async move {
                    let (mut head, mut buf) = (Vec::new(), [0u8; 4096]);
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                    let param = |name: &str| {
                        line.split(['?', '&', ' '])
                            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))?
                            .parse::<u64>()
                            .ok()
                    };
                    let offset = param("offset").unwrap_or(0).min(data.len() as u64);
                    let asked = param("length").unwrap_or(u64::MAX);
                    log.lock().unwrap().push((offset, asked));
                    let length = asked.min(data.len() as u64 - offset);
                    let body = &data[offset as usize..(offset + length) as usize];
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (url, asked)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_split_asks_for_its_range_then_finishes_its_last_line_in_reads_growing_from_64_kib() {
        // A split [1000, END) of 1 MiB whose last line runs 300 KiB past its end.
        const END: u64 = 1000 + (1 << 20);
        let mut data = vec![b'a'; 999];
        data.push(b'\n');
        data.extend(std::iter::repeat_n(b'b', (END - 1000) as usize + (300 << 10)));
        data.push(b'\n');
        data.extend_from_slice(b"next line\n");
        let size = data.len() as u64;
        let (api, asked) = recording_node(data).await;
        let (tx, mut rx) = mpsc::channel(16);
        let fetch =
            tokio::spawn(fetch_split(IpfsClient::new(&api).unwrap(), "bafy".into(), size, 1000, END, tx));
        let mut got = Vec::new();
        while let Some(chunk) = rx.recv().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        let fetched = fetch.await.unwrap().unwrap();
        assert_eq!(got.len() as u64, END - 1000 + (300 << 10) + 1, "the split's one line, whole");
        // From one byte before the split (is a line starting there?) to its
        // end, then 64, 128, 256 KiB: not a read as large as the split.
        let want = [
            (999, END - 999),
            (END, 64 << 10),
            (END + (64 << 10), 128 << 10),
            (END + (192 << 10), 256 << 10),
        ];
        assert_eq!(*asked.lock().unwrap(), want);
        assert_eq!(fetched, size - 999, "what it asked for, to the end of the data");
    }
}

//! The client of the IPFS HTTP RPC API (kubo's `/api/v0/...`), used by the
//! agent and the submitter to add and read data. It also speaks to js-ipfs
//! and to the submitter's embedded store, which answer the same calls.
//!
//! What it owns: building every request (always POST, which kubo requires),
//! streaming bodies both ways (a file is never read whole into memory),
//! timeouts on every call, retries of idempotent calls, and turning every
//! failure into an [`IpfsError`] that names the API, the call and the CID.
//!
//! Differences between implementations it absorbs:
//! `add` answers newline-delimited JSON whose `Size` is a string (kubo) or a
//! number (js-ipfs); CIDv1 is requested in base32 (`cid-base=base32`) so it
//! prints `bafy...`/`bafk...` everywhere; `cat` gets a server-side
//! `timeout=` because js-ipfs waits forever for a missing CID otherwise;
//! errors are JSON `{"Message", "Code", "Type"}` with status 500 (kubo) or
//! 400 (js-ipfs); a body cut short is reported by kubo in a trailing
//! `X-Stream-Error` header, which is an error here, never a short read.
//!
//! The parts: `client` ([`IpfsClient`], its [`Timeouts`], the small JSON
//! calls), `add` (the multipart upload and its answer), `cat` ([`CatStream`]
//! and the downloads to files), `body` (reading an answer's body with its
//! trailers and idle timeout), `error` ([`IpfsError`], [`ErrorKind`] and the
//! retry rules), `address` (the accepted spellings of the API address).

use std::fmt;

mod add;
mod address;
mod blocks;
mod body;
mod cat;
mod client;
mod error;

pub use add::Added;
pub use cat::CatStream;
pub use client::{DirEntry, IpfsClient, Object, Timeouts};
pub use error::{ErrorKind, IpfsError};

/// The files of an IPFS node running in this same process (the submitter's
/// embedded store, under `--local`). A map task whose input the node holds
/// as a whole file reads its split from that file with positioned reads,
/// as the node itself would to answer `cat`, skipping the HTTP copies.
pub trait LocalFiles: Send + Sync + fmt::Debug {
    /// The file holding exactly the bytes of `cid`, opened after checking it
    /// is unchanged since it was added, and the object's length. `None` when
    /// the node does not hold `cid` as a file (then `cat` it).
    fn open(&self, cid: &str) -> Option<std::io::Result<(std::fs::File, u64)>>;
}

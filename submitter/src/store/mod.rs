//! The embedded IPFS content store (being written).
#![allow(dead_code)]

mod cid;
mod importer;

//! `ipdc-common`: everything both programs share.
//!
//! - [`protocol`]: the wire contract — every MQTT message and topic.
//! - [`record`]: the key/value record format of executors, spills and partitions.
//! - [`exec`]: the sink/source traits and counters every executor uses.
//! - [`mapreduce`]: splits, partitioner, sort/spill, k-way merge.
//! - [`wordcount`]: the native WordCount executor.
//! - [`python`]: the Python executor (a subprocess running `runner.py`).
//! - [`ipfs`]: the kubo RPC API client.
//! - [`mqtt`]: broker addresses and client options.

pub mod auth;
pub mod exec;
pub mod ipfs;
pub mod mapreduce;
pub mod mqtt;
pub mod protocol;
pub mod python;
pub mod record;
pub mod wordcount;

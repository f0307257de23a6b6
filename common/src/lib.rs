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
//! - [`settings`]: the cluster settings both programs read (flags, environment, config file).
//! - [`signal`]: Ctrl-C and SIGTERM.
//! - [`auth`]: the cluster key and the signed envelope.

pub mod auth;
pub mod exec;
pub mod ipfs;
pub mod mapreduce;
pub mod mqtt;
pub mod protocol;
pub mod python;
pub mod record;
pub mod settings;
pub mod signal;
pub mod wordcount;

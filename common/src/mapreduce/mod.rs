//! The MapReduce core, independent of transport and executor:
//!
//! - [`split`]: input splits as byte ranges and the line-ownership rule.
//! - [`partition`]: the stable key → reducer partitioner (wire contract).
//! - [`sorter`]: the map-side output buffer: partition, sort, spill, merge.
//! - [`merge`]: the k-way merge of sorted record files (reduce side).

pub mod merge;
pub mod partition;
pub mod sorter;
pub mod split;

pub use merge::KWayMerge;
pub use partition::partition_of;
pub use sorter::{MapOutput, PartitionFile};
pub use split::{LineOwner, Push, Split, plan_splits};

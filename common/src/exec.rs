//! What every executor (native WordCount, Python) plugs into: a sink that
//! takes the records it produces, a source of sorted records for reducers,
//! and the counters it reports.

use std::io;

/// Takes records one at a time. The map side's sink partitions, sorts and
/// spills; the reduce side's sink writes the part file.
pub trait RecordSink {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> io::Result<()>;

    /// A hint: about `records` records holding `bytes` key and value bytes
    /// in all are about to be emitted, so buffers can grow once instead of
    /// step by step. Changes nothing else.
    fn reserve(&mut self, records: usize, bytes: usize) {
        let _ = (records, bytes);
    }
}

/// Gives records sorted by key bytes (the k-way merge of map outputs).
pub trait RecordSource {
    fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>>;
}

impl<R: io::BufRead> RecordSource for crate::record::RecordReader<R> {
    fn next_record(&mut self) -> io::Result<Option<(&[u8], &[u8])>> {
        crate::record::RecordReader::next_record(self)
    }
}

/// Collects records in memory (tests and small jobs).
impl RecordSink for Vec<(Vec<u8>, Vec<u8>)> {
    fn emit(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.push((key.to_vec(), value.to_vec()));
        Ok(())
    }
}

/// Counters an executor reports for one task. Summed over tasks into the
/// job's `summary.json`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecStats {
    /// Map: lines read. Reduce: records read.
    pub input_records: u64,
    /// Map: records the user's map produced (before any combiner).
    pub map_output_records: u64,
    /// Map: records left after the combiner (0 when there is no combiner).
    pub combine_output_records: u64,
    /// Reduce: distinct keys seen.
    pub reduce_input_groups: u64,
    /// Records written out by this task (to partitions or to the part file).
    pub output_records: u64,
    /// The user's own counters (`ipdc.counter(name, n)`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub user_counters: std::collections::BTreeMap<String, i64>,
    /// What the user's code printed (the end of it), kept by the agent as
    /// the task's log; not part of the counters on the wire.
    #[serde(skip)]
    pub log: String,
}

impl ExecStats {
    pub fn add(&mut self, o: &ExecStats) {
        self.input_records += o.input_records;
        self.map_output_records += o.map_output_records;
        self.combine_output_records += o.combine_output_records;
        self.reduce_input_groups += o.reduce_input_groups;
        self.output_records += o.output_records;
        for (name, n) in &o.user_counters {
            let c = self.user_counters.entry(name.clone()).or_insert(0);
            *c = c.saturating_add(*n);
        }
    }
}

//! `summary.json`: what a finished job did, as a typed struct (its fields
//! are the file's keys; `docs/reference.md` describes each).

use std::collections::{BTreeMap, BTreeSet};

use ipdc_common::exec::ExecStats;
use ipdc_common::protocol::AgentStatus;
use serde::Serialize;

use crate::controller::{AttemptRecord, Disagreement, TaskRecord};
use crate::job::{JobSpec, Verify};

#[derive(Debug, Serialize)]
pub struct Summary {
    pub job: String,
    /// The input as given (files, folders, globs), or None when the job
    /// ran on CIDs (`--input-cid`).
    pub input: Option<String>,
    /// The input's CID when it is one file.
    pub input_cid: Option<String>,
    pub input_bytes: u64,
    /// Every input file: its name (`ipdc.input_file()`), CID and size.
    pub inputs: Vec<InputEntry>,
    pub reducers: u32,
    pub combiner: bool,
    /// The executor every task ran (`python`, `native:wordcount`), or
    /// `mixed: ...` listing them when agents without Python ran the native
    /// fallback.
    pub executor: String,
    pub map_tasks: usize,
    pub speculative_attempts: u32,
    pub speculative_wins: usize,
    pub reduce_tasks: usize,
    /// Tasks not run: their outputs came from the task cache.
    pub cached_tasks: usize,
    /// The `verify` setting: agents per task, or the share spot-checked.
    pub verify: Verify,
    /// Tasks whose result more than one agent returned.
    pub verified_tasks: usize,
    /// Tasks whose agents returned different results: who said what, and what won.
    pub disagreements: Vec<Disagreement>,
    pub counters: Counters,
    pub agents: Vec<AgentSummary>,
    pub tasks: Vec<TaskRecord>,
    /// Every attempt started, with its agent, start and end (Unix ms) and
    /// how it ended: the job's timeline (`summary.html`).
    pub attempts: Vec<AttemptRecord>,
    pub times_ms: Times,
    /// What looks wrong in a job that still succeeded (e.g. no output at
    /// all), one line each; also printed at the end of the job.
    pub warnings: Vec<String>,
    /// The user's counters (`ipdc.counter`), summed over the winning
    /// attempt of every task, map, combine and reduce together.
    pub user_counters: BTreeMap<String, i64>,
    /// The result's parts as one UnixFS directory in IPFS, pinned on the
    /// submitter's node (None: it could not be made; see `warnings`).
    pub output_cid: Option<String>,
    /// Each part: its name in the output folder, CID and length.
    pub parts: Vec<super::publish::PartEntry>,
    /// The parts were left in IPFS, not fetched (`--no-fetch`).
    pub fetched: bool,
    /// A multi-step job's steps before this, the last: each one's summary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct InputEntry {
    pub name: String,
    pub cid: String,
    pub bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Counters {
    pub map_input_records: u64,
    pub map_output_records: u64,
    pub combine_output_records: u64,
    pub map_output_written_records: u64,
    pub shuffle_bytes: u64,
    pub reduce_input_records: u64,
    pub reduce_input_groups: u64,
    pub reduce_output_records: u64,
}

#[derive(Debug, Serialize)]
pub struct AgentSummary {
    pub agent: String,
    pub map_tasks: u32,
    pub reduce_tasks: u32,
    pub bytes_read: u64,
    pub arch: Option<String>,
}

/// Wall time of each phase, milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Times {
    pub upload: u64,
    pub map: u64,
    pub reduce: u64,
    pub total: u64,
}

/// What the summary says of the job's input.
pub struct InputFacts<'a> {
    pub inputs: &'a [super::upload::InputObject],
}

impl Summary {
    /// Records in the job's parts (a map-only job's are its maps').
    pub fn output_records(&self, spec: &JobSpec) -> u64 {
        if spec.reducers == 0 {
            self.counters.map_output_written_records
        } else {
            self.counters.reduce_output_records
        }
    }

    pub fn new(
        job: &str,
        input: InputFacts<'_>,
        spec: &JobSpec,
        picked: &[AgentStatus],
        tasks: Vec<TaskRecord>,
        speculated: u32,
        disagreements: Vec<Disagreement>,
    ) -> Summary {
        let (mut map, mut reduce) = (ExecStats::default(), ExecStats::default());
        let mut shuffle_bytes = 0;
        let mut per_agent: BTreeMap<&str, (u32, u32, u64)> =
            picked.iter().map(|s| (s.agent.as_str(), (0, 0, 0))).collect();
        for r in &tasks {
            // A cached task ran in an earlier job: its agent did nothing in this one.
            let mut none = (0, 0, 0);
            let e = if r.cached { &mut none } else { per_agent.entry(r.agent.as_str()).or_default() };
            if r.task.starts_with('m') {
                map.add(&r.stats);
                shuffle_bytes += r.output_bytes;
                e.0 += 1;
                e.2 += r.bytes_read;
            } else {
                reduce.add(&r.stats);
                e.1 += 1;
            }
        }
        let agents = per_agent
            .into_iter()
            .map(|(a, (m, r, b))| AgentSummary {
                agent: a.to_string(),
                map_tasks: m,
                reduce_tasks: r,
                bytes_read: b,
                arch: picked.iter().find(|s| s.agent == a).map(|s| s.arch.clone()),
            })
            .collect();
        let warnings = warnings(&map, &reduce);
        let mut all = map.clone();
        all.add(&reduce);
        Summary {
            job: job.to_string(),
            input: spec
                .input_cids
                .is_empty()
                .then(|| spec.input.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")),
            input_cid: match input.inputs {
                [one] => Some(one.cid.clone()),
                _ => None,
            },
            input_bytes: input.inputs.iter().map(|i| i.size).sum(),
            inputs: input
                .inputs
                .iter()
                .map(|i| InputEntry { name: i.name.clone(), cid: i.cid.clone(), bytes: i.size })
                .collect(),
            reducers: spec.reducers,
            combiner: spec.combiner,
            executor: executors_used(&tasks),
            map_tasks: tasks.iter().filter(|r| r.task.starts_with('m')).count(),
            speculative_attempts: speculated,
            speculative_wins: tasks.iter().filter(|r| r.speculative).count(),
            reduce_tasks: tasks.iter().filter(|r| r.task.starts_with('r')).count(),
            cached_tasks: tasks.iter().filter(|r| r.cached).count(),
            verify: spec.verify,
            verified_tasks: tasks.iter().filter(|r| r.agreed_by.len() > 1).count(),
            disagreements,
            counters: Counters {
                map_input_records: map.input_records,
                map_output_records: map.map_output_records,
                combine_output_records: map.combine_output_records,
                map_output_written_records: map.output_records,
                shuffle_bytes,
                reduce_input_records: reduce.input_records,
                reduce_input_groups: reduce.reduce_input_groups,
                reduce_output_records: reduce.output_records,
            },
            agents,
            tasks,
            attempts: Vec::new(),
            times_ms: Times::default(),
            warnings,
            user_counters: all.user_counters,
            output_cid: None,
            parts: Vec::new(),
            fetched: true,
            steps: Vec::new(),
        }
    }
}

impl Summary {
    /// What the job's last lines say of verification: how many tasks were
    /// verified, and each agent that was outvoted (nothing when `verify` is 1).
    pub fn verification_lines(&self) -> Vec<String> {
        if !self.verify.checks() {
            return Vec::new();
        }
        let total = self.map_tasks + self.reduce_tasks;
        let how = match self.verify {
            Verify::Agents(n) => format!("each confirmed by {n} agents"),
            Verify::SpotCheck(_) => "spot-checked, each confirmed by 2 agents".to_string(),
        };
        let mut lines = vec![format!(
            "verified {} of {total} task(s), {how} (verify = {})",
            self.verified_tasks, self.verify
        )];
        let mut outvoted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for d in &self.disagreements {
            for a in &d.outvoted {
                outvoted.entry(a.as_str()).or_default().push(d.task.as_str());
            }
        }
        if outvoted.is_empty() {
            lines.push("no agent returned a result the others disagreed with".to_string());
        }
        for (agent, tasks) in outvoted {
            lines.push(format!(
                "agent {agent} returned results the other agents disagreed with (task(s) {}); it got no more tasks of this job: check it",
                tasks.join(", ")
            ));
        }
        lines
    }
}

/// A job that read records but wrote nothing is most often user code that
/// forgot to return or yield its pairs: said once, at the first stage that
/// dropped everything (the later ones then had nothing to work on).
fn warnings(map: &ExecStats, reduce: &ExecStats) -> Vec<String> {
    const HINT: &str = "does it return or yield its pairs?";
    let mut out = Vec::new();
    if map.input_records > 0 && map.map_output_records == 0 {
        out.push(format!("map produced no output for any of its {} input lines: {HINT}", map.input_records));
    } else if map.map_output_records > 0 && map.output_records == 0 {
        // Without a combiner the maps write what they produce.
        out.push(format!(
            "the combiner produced no output for any of the {} pairs the maps produced: {HINT}",
            map.map_output_records
        ));
    } else if reduce.reduce_input_groups > 0 && reduce.output_records == 0 {
        out.push(format!(
            "reduce produced no output for any of its {} keys: {HINT}",
            reduce.reduce_input_groups
        ));
    }
    out
}

fn executors_used(records: &[TaskRecord]) -> String {
    let used: BTreeSet<String> = records.iter().map(|r| r.executor.to_string()).collect();
    match used.len() {
        1 => used.into_iter().next().unwrap_or_default(),
        _ => format!("mixed: {}", used.into_iter().collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(input: u64, produced: u64, groups: u64, written: u64) -> ExecStats {
        ExecStats {
            input_records: input,
            map_output_records: produced,
            reduce_input_groups: groups,
            output_records: written,
            ..Default::default()
        }
    }

    #[test]
    fn a_stage_that_drops_everything_is_named_once() {
        let fine = (stats(10, 40, 0, 40), stats(40, 0, 13, 13));
        assert!(warnings(&fine.0, &fine.1).is_empty());
        assert_eq!(
            warnings(&stats(10, 0, 0, 0), &stats(0, 0, 0, 0)),
            ["map produced no output for any of its 10 input lines: does it return or yield its pairs?"]
        );
        assert_eq!(
            warnings(&stats(10, 40, 0, 0), &stats(0, 0, 0, 0)),
            [
                "the combiner produced no output for any of the 40 pairs the maps produced: does it return or yield its pairs?"
            ]
        );
        assert_eq!(
            warnings(&stats(10, 40, 0, 40), &stats(40, 0, 133, 0)),
            ["reduce produced no output for any of its 133 keys: does it return or yield its pairs?"]
        );
        // An empty input (no lines) is no news.
        assert!(warnings(&ExecStats::default(), &ExecStats::default()).is_empty());
    }
}

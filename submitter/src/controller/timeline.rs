//! Every attempt as it ran, for the job's timeline (`summary.json`'s
//! `attempts`, `summary.html`): when it started and ended, on which agent,
//! and how it ended. An attempt starts in `launch`; it has ended once its
//! task no longer lists it as running, which [`Timeline::sync`] notices
//! after every event and tick, so no code that ends an attempt has to
//! remember to say so.

use serde::Serialize;

use super::task::{Stage, TaskRef, Tasks};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    /// Its result came back (without verification: it won).
    Done,
    Failed,
    /// Cancelled (another attempt won), given up with a lost or silent
    /// agent, or moved to another agent unacknowledged.
    Stopped,
}

/// One attempt, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub task: String,
    pub attempt: u32,
    pub agent: String,
    /// A backup of a straggler.
    pub speculative: bool,
    /// Unix ms.
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub outcome: Outcome,
    /// A map's split: its byte range of the input (a per-file map's: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
pub(super) struct Timeline {
    bars: Vec<(TaskRef, AttemptRecord)>,
    /// Attempts whose failure was reported (task, attempt).
    failed: Vec<(TaskRef, u32)>,
}

impl Timeline {
    pub(super) fn started(&mut self, r: TaskRef, record: AttemptRecord) {
        self.bars.push((r, record));
    }

    pub(super) fn failed(&mut self, r: TaskRef, attempt: u32) {
        self.failed.push((r, attempt));
    }

    /// Ends the attempts their tasks no longer run; a result that came
    /// late from an attempt given up on makes it done after all.
    pub(super) fn sync(&mut self, tasks: &Tasks, now_ms: u64) {
        for (r, bar) in &mut self.bars {
            if !matches!(bar.outcome, Outcome::Running | Outcome::Stopped) {
                continue;
            }
            let entry = tasks.get(*r);
            let voted =
                entry.votes.iter().any(|v| v.result.agent == bar.agent && v.result.attempt == bar.attempt)
                    || entry.done.as_ref().is_some_and(|d| d.agent == bar.agent && d.attempt == bar.attempt);
            if voted {
                bar.outcome = Outcome::Done;
                bar.end_ms = Some(bar.end_ms.unwrap_or(now_ms));
                continue;
            }
            if bar.outcome == Outcome::Stopped {
                continue;
            }
            let running = entry.running.iter().any(|a| a.attempt == bar.attempt && a.agent == bar.agent);
            if !running {
                let failed = self.failed.contains(&(*r, bar.attempt));
                bar.outcome = if failed { Outcome::Failed } else { Outcome::Stopped };
                bar.end_ms = Some(now_ms);
            }
        }
    }

    /// Maps first, each in the order attempts started.
    pub(super) fn records(&self) -> Vec<AttemptRecord> {
        let mut out: Vec<&(TaskRef, AttemptRecord)> = self.bars.iter().collect();
        out.sort_by_key(|(r, b)| (r.stage == Stage::Reduce, b.start_ms));
        out.into_iter().map(|(_, b)| b.clone()).collect()
    }
}

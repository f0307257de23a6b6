//! Results from the task cache (`crate::task_cache`): before the job
//! starts, the driver asks which tasks a cached output could settle, finds
//! the ones the store still holds, and hands them in; when the job ends,
//! the results its attempts settled go back into the cache.

use ipdc_common::protocol::{CodeSpec, TaskKind, TaskOutput};

use super::task::{Done, Stage, TaskRef, Vote, inputs_key};
use super::{Controller, Phase};

/// A task this job settled by running it: what the cache records.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    /// What it worked on (a reduce: with the inputs it reduced).
    pub kind: TaskKind,
    pub output: TaskOutput,
    pub agreed_by: Vec<String>,
}

impl Controller {
    pub fn code(&self) -> &CodeSpec {
        &self.plan.code
    }

    pub fn reducers(&self) -> u32 {
        self.plan.reducers
    }

    /// The tasks a cached output could settle now: the maps without a
    /// result; once every map has one, the reduces, with those maps'
    /// outputs as their inputs. Only before the job starts.
    pub fn cacheable(&self) -> Vec<(String, TaskKind)> {
        if self.phase != Phase::Map || self.tasks.all().any(|t| t.attempts_made > 0) {
            return Vec::new();
        }
        let open = self.tasks.maps.iter().filter(|t| t.done.is_none());
        let maps: Vec<(String, TaskKind)> = open.map(|t| (t.id.clone(), t.kind.clone())).collect();
        if !maps.is_empty() {
            return maps;
        }
        let reduces = self.tasks.reduces.iter().enumerate().filter(|(_, t)| t.done.is_none());
        reduces.map(|(p, t)| (t.id.clone(), self.reduce_kind(p as u32))).collect()
    }

    /// Settles `task` with a cached output that `agreed_by` agreed on, when
    /// it is one [`cacheable`](Self::cacheable) named and the output has
    /// the agreeing results the task needs (a cached unverified output does
    /// not settle a verified task). Returns whether it did.
    pub fn reuse(&mut self, task: &str, output: TaskOutput, agreed_by: Vec<String>) -> bool {
        let Some(r) = self.tasks.find(task) else { return false };
        let kind = match r.stage {
            Stage::Map => self.tasks.get(r).kind.clone(),
            Stage::Reduce => self.reduce_kind(r.idx as u32),
        };
        let wanted = self.cacheable().iter().any(|(id, _)| id == task);
        let entry = self.tasks.get_mut(r);
        let outputs = if r.stage == Stage::Map { self.plan.reducers.max(1) as usize } else { 1 };
        if !wanted || (agreed_by.len() as u32) < entry.need || output.cids.len() != outputs {
            return false;
        }
        let done = Done {
            agent: agreed_by[0].clone(),
            attempt: 0,
            speculative: false,
            elapsed_ms: output.elapsed_ms,
            inputs: inputs_key(&kind),
            output,
            agreed_by: agreed_by.clone(),
            cached: true,
        };
        // Its agents' votes, as if they had returned it now: one of them
        // outvoted in this job takes it with it (`verify.rs`).
        for agent in agreed_by {
            entry.votes.push(Vote { result: Done { agent, ..done.clone() }, counts: true });
        }
        entry.done = Some(done);
        true
    }

    /// Tasks settled from the cache.
    pub fn cached_tasks(&self) -> usize {
        self.tasks.all().filter(|t| t.done.as_ref().is_some_and(|d| d.cached)).count()
    }

    /// The results this job's attempts settled, for the cache; none of an
    /// agent outvoted in this job (its other results were never checked),
    /// and no reduce whose result came from other inputs than the maps'
    /// current outputs.
    pub fn settled(&self) -> Vec<Settled> {
        let trusted = |d: &Done| {
            !d.cached && d.agreed_by.iter().all(|a| self.agents.get(a).is_some_and(|s| !s.outvoted))
        };
        let mut out = Vec::new();
        for (stage, idx) in self.tasks.refs() {
            let t = self.tasks.get(TaskRef { stage, idx });
            let Some(d) = t.done.as_ref().filter(|d| trusted(d)) else { continue };
            let kind = match stage {
                Stage::Map => t.kind.clone(),
                Stage::Reduce if self.tasks.maps.iter().all(|m| m.done.is_some()) => {
                    self.reduce_kind(idx as u32)
                }
                Stage::Reduce => continue,
            };
            if inputs_key(&kind) != d.inputs {
                continue;
            }
            out.push(Settled { kind, output: d.output.clone(), agreed_by: d.agreed_by.clone() });
        }
        out
    }
}

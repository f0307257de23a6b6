//! The job's agents: their slots, and whether each can work. This is where
//! the liveness rule lives ([`Controller::on_agent_status`]): an agent whose
//! status says offline, is stale, says its IPFS node does not answer, or
//! says its work dir is below its free-space floor is lost, and a lost one with a fresh online status is back. A lost agent's
//! running attempts are given out again without counting failures; when
//! none can work (with verification: fewer than a task needs) the job
//! waits for them to come back.

use ipdc_common::protocol::AgentStatus;

use super::task::Attempt;
use super::{AGENTS_BACK_MS, Action, Actions, Controller};

#[derive(Debug, Clone)]
pub(super) struct AgentSlots {
    pub(super) slots: u32,
    pub(super) running: u32,
    /// Cannot work now (offline, its statuses stopped, its IPFS node is
    /// down, or it is low on disk); it may come back.
    pub(super) lost: bool,
    /// Online but never acknowledged its assignments: no more of this job.
    pub(super) silent: bool,
    /// Returned a result other agents outvoted (`verify.rs`): no more of this job.
    pub(super) outvoted: bool,
    pub(super) failures: u32,
    /// Its free memory as its latest status said (None: no status yet), so
    /// that a backup attempt goes only where it fits.
    pub(super) mem_available_mb: Option<u64>,
    /// Its IPFS node's peer ID, as its statuses last said (None: not said).
    pub(super) node: Option<String>,
}

impl AgentSlots {
    pub(super) fn usable(&self) -> bool {
        !self.lost && self.eligible()
    }

    /// May get tasks of this job again, now or once it is back.
    pub(super) fn eligible(&self) -> bool {
        !self.silent && !self.outvoted
    }
}

/// Why an agent with this status cannot work now, in words for the user
/// ("agent X went offline"), or None when it can.
fn unusable_because(s: &AgentStatus, now_ms: u64) -> Option<String> {
    if !s.online {
        Some("went offline".to_string())
    } else if s.is_stale(now_ms) {
        Some("stopped sending its status".to_string())
    } else if !s.ipfs.is_ok() {
        // As good as gone until its node answers again (its status says so).
        Some(format!("cannot use its IPFS node ({})", s.ipfs))
    } else {
        // Likewise, until it has space again: its attempts might fill the disk.
        s.low_on_disk().map(|why| format!("is low on disk ({why})"))
    }
}

impl Controller {
    /// The latest status of `agent` (None: never heard of), for each of the
    /// job's agents at every tick: the liveness rule. An agent whose status
    /// says offline, is stale (`AgentStatus::is_stale`), says its IPFS node
    /// does not answer or says it is below its free-disk floor
    /// (`AgentStatus::low_on_disk`) is lost; a lost one whose status is
    /// online, fresh, with a working IPFS node and enough disk is back. No status (never heard of), or the
    /// status of an agent that is not the job's, changes nothing.
    pub fn on_agent_status(&mut self, agent: &str, status: Option<&AgentStatus>, now_ms: u64) -> Actions {
        let Some(status) = status else { return Vec::new() };
        if let Some(a) = self.agents.get_mut(agent) {
            a.mem_available_mb = Some(status.mem_available_mb);
            if status.ipfs_peer_id.is_some() {
                a.node = status.ipfs_peer_id.clone();
            }
        }
        match unusable_because(status, now_ms) {
            Some(why) => {
                let was_usable = self.agents.get(agent).is_some_and(AgentSlots::usable);
                let mut actions = self.on_agent_lost(agent, &why, now_ms);
                // Gone, or its node down (not merely low on disk): so is what its node held.
                let node_gone = !status.online || status.is_stale(now_ms) || !status.ipfs.is_ok();
                if was_usable && node_gone {
                    self.lose_outputs_of(agent, &why, now_ms, &mut actions);
                }
                actions
            }
            // Online again with fresh heartbeats (e.g. after a broker restart).
            None if self.is_lost(agent) => self.on_agent_back(agent, now_ms),
            None => Vec::new(),
        }
    }

    /// An agent went offline (or cannot work: `why` says what happened, for
    /// the user): its running attempts are dropped (not counted as failures)
    /// and their tasks go to the others.
    pub(super) fn on_agent_lost(&mut self, agent: &str, why: &str, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.over() {
            return actions;
        }
        let Some(slots) = self.agents.get_mut(agent) else { return actions };
        if !slots.usable() {
            return actions;
        }
        slots.lost = true;
        let dropped = self.drop_attempts_of(agent);
        if !dropped.is_empty() {
            let (noun, failure) =
                if dropped.len() == 1 { ("task", "a failure") } else { ("tasks", "failures") };
            actions.push(Action::Warn {
                message: format!(
                    "agent {agent} {why}; its running {noun} {} will run again (not counted as {failure})",
                    dropped.join(", ")
                ),
            });
        }
        self.wait_if_too_few_usable(now_ms, &mut actions);
        self.schedule(now_ms, &mut actions);
        actions
    }

    /// The map outputs (and the parts not fetched yet) only `agent`'s own
    /// node held are lost with it, at once: the tasks that made them run
    /// again now, while reduces still need them, rather than after a
    /// reducer's fetch of them times out.
    /// Not when another of the job's usable agents shares its node (a
    /// hub's store), nor for an output other agents agreed on (verified:
    /// they hold it too), nor for one from the task cache.
    pub(super) fn lose_outputs_of(&mut self, agent: &str, why: &str, now_ms: u64, actions: &mut Actions) {
        let Some(node) = self.agents.get(agent).and_then(|a| a.node.clone()) else { return };
        let shared =
            self.agents.iter().any(|(n, a)| n != agent && a.usable() && a.node.as_deref() == Some(&node));
        if shared || self.over() {
            return;
        }
        let parts = self.lose_unfetched_parts_of(agent);
        if !parts.is_empty() {
            let message = match &parts[..] {
                [one] => format!(
                    "agent {agent} {why}: its part {one} was not fetched yet and is lost with its node; it runs again (not counted as a failure)"
                ),
                many => format!(
                    "agent {agent} {why}: its parts {} were not fetched yet and are lost with its node; they run again (not counted as failures)",
                    many.join(", ")
                ),
            };
            actions.push(Action::Warn { message });
        }
        if self.tasks.reduces.iter().all(|r| r.done.is_some()) {
            self.update_phase(actions);
            self.schedule(now_ms, actions);
            return;
        }
        let mut ids = Vec::new();
        let mut cids = Vec::new();
        for m in &self.tasks.maps {
            if let Some(d) = m.done.as_ref().filter(|d| !d.cached && d.agreed_by.iter().all(|h| h == agent)) {
                ids.push(m.id.clone());
                cids.extend(d.output.cids.iter().cloned());
            }
        }
        if ids.is_empty() {
            return;
        }
        self.tasks.rerun_maps_of(&cids);
        let (noun, verb) = if ids.len() == 1 { ("map", "runs") } else { ("maps", "run") };
        actions.push(Action::Warn {
            message: format!(
                "agent {agent} {why}: the outputs of its {noun} {} were only on its node and are lost; \
                 {} again (not counted as failures)",
                ids.join(", "),
                if ids.len() == 1 { format!("it {verb}") } else { format!("they {verb}") }
            ),
        });
        self.update_phase(actions);
        self.schedule(now_ms, actions);
    }

    /// Forgets the running attempts of `agent` (their tasks go elsewhere);
    /// returns the names of the tasks that now have no running attempt.
    pub(super) fn drop_attempts_of(&mut self, agent: &str) -> Vec<String> {
        if let Some(slots) = self.agents.get_mut(agent) {
            slots.running = 0;
        }
        let mut names = Vec::new();
        for t in self.tasks.all_mut() {
            let (gone, kept): (Vec<Attempt>, Vec<Attempt>) =
                t.running.drain(..).partition(|a| a.agent == agent);
            t.running = kept;
            // Named when it will run again: not when done, or when another
            // attempt (a backup) still runs in its place.
            if !gone.is_empty() && t.pending() {
                names.push(t.id.clone());
            }
            t.dropped.extend(gone);
        }
        names
    }

    /// With too few usable agents left (none; with verification, fewer than
    /// a task needs results from), starts waiting for offline ones to come back.
    pub(super) fn wait_if_too_few_usable(&mut self, now_ms: u64, actions: &mut Actions) {
        let (usable, needed) = (self.usable_agents(), self.agents_needed());
        if usable >= needed || self.short_since.is_some() || self.over() {
            return;
        }
        self.short_since = Some(now_ms);
        let back = AGENTS_BACK_MS / 1000;
        let message = if usable == 0 {
            format!(
                "no agent of this job can work now (offline, its IPFS node does not answer, or low on disk); waiting up to {back} s for one to come back"
            )
        } else {
            format!(
                "only {usable} agent(s) of this job can work now and {} needs {needed} for each task; waiting up to {back} s for more to come back",
                self.plan.verify.setting()
            )
        };
        actions.push(Action::Warn { message });
    }

    /// Different agents the unfinished tasks need (1 without verification).
    pub(super) fn agents_needed(&self) -> usize {
        self.tasks.all().filter(|t| t.done.is_none()).map(|t| t.need).max().unwrap_or(1) as usize
    }

    /// Whether `agent` is one of the job's agents and is lost.
    pub(super) fn is_lost(&self, agent: &str) -> bool {
        self.agents.get(agent).is_some_and(|a| a.lost)
    }

    /// An agent that went offline is back (its broker restarted, or it did):
    /// it takes tasks again. Its old attempts were already given out again.
    pub(super) fn on_agent_back(&mut self, agent: &str, now_ms: u64) -> Actions {
        let mut actions = Vec::new();
        if self.over() {
            return actions;
        }
        let Some(slots) = self.agents.get_mut(agent) else { return actions };
        if !slots.lost || !slots.eligible() {
            return actions;
        }
        slots.lost = false;
        slots.running = 0;
        if self.short_since.is_some() && self.usable_agents() >= self.agents_needed() {
            self.short_since = None;
            actions.push(Action::Warn { message: format!("agent {agent} is back; the job goes on") });
        }
        self.schedule(now_ms, &mut actions);
        actions
    }

    pub(super) fn release(&mut self, agent: &str) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.running = a.running.saturating_sub(1);
        }
    }

    pub(super) fn usable_agents(&self) -> usize {
        self.agents.values().filter(|a| a.usable()).count()
    }
}

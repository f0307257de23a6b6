//! The agent as a pure state machine: it takes what arrived (a checked
//! message, an attempt's result, its IPFS node's health) and returns what
//! to do ([`Effect`]s); the event loop (`service.rs`) does the I/O. No
//! clock, no network, no processes here, so unit tests drive every case.
//!
//! Invariants:
//! - an attempt runs at most once here, however often its assignment
//!   arrives (QoS 1 duplicates, controller re-sends), and every copy of it
//!   is acknowledged (the first acknowledgement may be the one lost);
//! - at most `slots` attempts run at once; the rest wait, jobs in turn;
//! - a cancelled or ended attempt's late result is never reported;
//! - only names that passed [`validate_name`] / [`validate_task_id`] reach
//!   an effect, so the loop may build paths from them;
//! - a command is obeyed only when it is for this run of the agent (its
//!   session) and, in a keyed cluster, comes from the submitter that gave
//!   the job its first task here; so is a job's `gone` status, unless it is
//!   a Last Will of an earlier connection of that submitter, replayed.

use std::collections::HashMap;

use ipdc_common::protocol::{
    ControllerState, ControllerStatus, EventKind, Incoming, IpfsHealth, PROTOCOL_VERSION, Task, TaskCommand,
    TaskEvent, TaskOutput, validate_name, validate_task_id,
};
use log::{debug, info, warn};

use crate::attempts::{AttemptKey, Attempts, Cancelled};
use crate::task::TaskError;

/// What happened, as the state sees it.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per event, moved once; boxing buys nothing
pub enum Input {
    /// A message that passed the wire's checks, on this agent's topics.
    Message(Incoming),
    /// An attempt's task ended (also one that was cancelled meanwhile).
    Finished { key: AttemptKey, result: Result<TaskOutput, TaskError> },
    /// The latest check of this agent's IPFS node.
    IpfsHealth(IpfsHealth),
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Run this attempt.
    Start(Task),
    /// Kill this attempt's user code (it stays awaited until it has stopped).
    Cancel(AttemptKey),
    /// Send this report on the job's event topic.
    Send(TaskEvent),
    /// Publish a fresh status: the busy slots or the IPFS health changed.
    PublishStatus,
    /// Remove what is left of this job in the work dir (a valid job name).
    RemoveJobDir(String),
    /// Find out whether these Python modules import here, and say so in the status.
    CheckModules(Vec<String>),
    /// Ask the node which of these input blocks of the job it holds, and
    /// say so in the status.
    Locate { job: String, blocks: Vec<String> },
    /// Clear the job's retained `gone` status: it has been acted on, and
    /// left there every agent would read it again at each start.
    ClearController(String),
}

/// Who runs a job, as far as this agent knows: the submitter that signed
/// its first assignment here, and the epoch of the latest connection on
/// which it said the job is running.
#[derive(Debug, Clone, Default)]
struct JobOwner {
    submitter: Option<String>,
    running_epoch: u64,
}

pub struct AgentState {
    name: String,
    /// This run of the agent: commands for another one are not obeyed.
    session: String,
    slots: u32,
    /// The IPFS API's address, for log lines.
    ipfs_api: String,
    attempts: Attempts,
    ipfs: IpfsHealth,
    /// The jobs this agent has attempts of (queued, running or reported).
    owners: HashMap<String, JobOwner>,
}

impl AgentState {
    pub fn new(name: &str, session: &str, ipfs_api: &str, slots: u32) -> Self {
        AgentState {
            name: name.to_string(),
            session: session.to_string(),
            slots: slots.max(1),
            ipfs_api: ipfs_api.to_string(),
            attempts: Attempts::default(),
            ipfs: IpfsHealth::not_checked(),
            owners: HashMap::new(),
        }
    }

    /// Slots in use.
    pub fn busy(&self) -> u32 {
        self.attempts.running() as u32
    }

    pub fn ipfs(&self) -> &IpfsHealth {
        &self.ipfs
    }

    /// Whether the agent holds `job`: it has attempts of it (queued, running
    /// or reported) until the job ends.
    pub fn holds_job(&self, job: &str) -> bool {
        self.owners.contains_key(job) || self.attempts.holds(job)
    }

    /// Whether it holds any job.
    pub fn holds_any_job(&self) -> bool {
        !self.owners.is_empty()
    }

    /// The running attempts, to cancel when the agent stops.
    pub fn running(&self) -> Vec<AttemptKey> {
        self.attempts.all_running()
    }

    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let busy = self.busy();
        let mut fx = Vec::new();
        match input {
            Input::Message(Incoming::Command { agent, message, from }) if agent == self.name => {
                if message.to != self.session {
                    warn!(
                        "refused a command for session {:?} (this run of the agent is {:?}): sent to an earlier run, or replayed",
                        message.to, self.session
                    );
                } else {
                    self.on_command(message.command, from, &mut fx)
                }
            }
            Input::Message(Incoming::Controller { status, from }) => {
                self.on_controller(status, from, &mut fx)
            }
            Input::Message(other) => debug!("nothing to do for {other:?}"),
            Input::Finished { key, result } => self.on_finished(key, result, &mut fx),
            Input::IpfsHealth(now) => {
                if now != self.ipfs {
                    let api = &self.ipfs_api;
                    match &now {
                        IpfsHealth::Ok => info!("IPFS API {api} answers"),
                        other => warn!("IPFS API {api}: {other}; this agent takes no tasks until it answers"),
                    }
                    self.ipfs = now;
                    fx.push(Effect::PublishStatus);
                }
            }
        }
        self.start_queued(&mut fx);
        if self.busy() != busy && !fx.contains(&Effect::PublishStatus) {
            fx.push(Effect::PublishStatus);
        }
        fx
    }

    fn event(&self, key: &AttemptKey, kind: EventKind) -> Effect {
        Effect::Send(TaskEvent {
            v: PROTOCOL_VERSION,
            job: key.job.clone(),
            task: key.task.clone(),
            attempt: key.attempt,
            agent: self.name.clone(),
            kind,
        })
    }

    /// Whether `from` may speak for `job`: in a keyed cluster, only the
    /// submitter that gave this agent the job's first task may (None: an
    /// open cluster, where anyone may).
    fn is_owner(&self, job: &str, from: &Option<String>) -> bool {
        match (self.owners.get(job).and_then(|o| o.submitter.as_ref()), from) {
            (Some(owner), Some(from)) => owner == from,
            _ => true,
        }
    }

    fn on_command(&mut self, command: TaskCommand, from: Option<String>, fx: &mut Vec<Effect>) {
        let job = match &command {
            TaskCommand::Assign { task } => &task.job,
            TaskCommand::Cancel { job, .. }
            | TaskCommand::EndJob { job }
            | TaskCommand::Query { job }
            | TaskCommand::CheckModules { job, .. }
            | TaskCommand::Locate { job, .. } => job,
        };
        if let Err(e) = validate_name("job id", job) {
            warn!("refused a task message: {e}");
            return;
        }
        if !self.is_owner(job, &from) {
            warn!(
                "refused a command for job {job} from submitter {}: the job is {}'s",
                from.as_deref().unwrap_or_default(),
                self.owners[job.as_str()].submitter.as_deref().unwrap_or_default()
            );
            return;
        }
        match command {
            TaskCommand::Assign { task } => {
                if let Err(e) = validate_task_id(&task.task) {
                    warn!("refused a task of job {}: {e}", task.job);
                    return;
                }
                self.owners
                    .entry(task.job.clone())
                    .or_insert_with(|| JobOwner { submitter: from, running_epoch: 0 });
                let key = AttemptKey::of(&task);
                if self.attempts.push(task) {
                    debug!("accepted {key}");
                }
                fx.push(self.event(&key, EventKind::Accepted));
            }
            TaskCommand::Cancel { job, task, attempt } => {
                let key = AttemptKey { job, task, attempt };
                if self.attempts.cancel(&key) == Some(Cancelled::WasRunning) {
                    info!("cancelled {key}");
                    fx.push(Effect::Cancel(key));
                }
            }
            TaskCommand::EndJob { job } => self.end_job(&job, fx),
            TaskCommand::CheckModules { modules, .. } => fx.push(Effect::CheckModules(modules)),
            TaskCommand::Locate { job, blocks } => {
                if blocks.len() > ipdc_common::protocol::MAX_LOCATE_BLOCKS
                    || !blocks.iter().all(|b| ipdc_common::protocol::is_block_key(b))
                {
                    warn!(
                        "refused a locate request of job {job}: more than {} blocks, or a key that is not a CID",
                        ipdc_common::protocol::MAX_LOCATE_BLOCKS
                    );
                    return;
                }
                fx.push(Effect::Locate { job, blocks });
            }
            TaskCommand::Query { job } => {
                for (key, report) in self.attempts.of_job(&job) {
                    let kind = report.cloned().unwrap_or(EventKind::Accepted);
                    fx.push(self.event(&key, kind));
                }
            }
        }
    }

    /// A job's controller status: a job whose controller is gone is dropped
    /// (unless the word is a Last Will of an earlier connection of the job's
    /// submitter, replayed: the job was said to be running since).
    fn on_controller(&mut self, s: ControllerStatus, from: Option<String>, fx: &mut Vec<Effect>) {
        if validate_name("job id", &s.job).is_err() || !self.is_owner(&s.job, &from) {
            return;
        }
        let epoch = self.owners.get(&s.job).map_or(0, |o| o.running_epoch);
        match s.state {
            ControllerState::Running => {
                if let Some(o) = self.owners.get_mut(&s.job) {
                    o.running_epoch = o.running_epoch.max(s.epoch);
                }
            }
            ControllerState::Gone if s.epoch < epoch => {
                warn!("ignored a gone status of job {} from before its submitter's latest connection", s.job)
            }
            ControllerState::Gone => {
                if self.attempts.holds(&s.job) {
                    warn!("the controller of job {} is gone: dropping its tasks", s.job);
                }
                self.end_job(&s.job, fx);
                fx.push(Effect::ClearController(s.job));
            }
        }
    }

    /// Drops everything of a job: queued and running attempts, kept reports
    /// and its folder.
    fn end_job(&mut self, job: &str, fx: &mut Vec<Effect>) {
        if validate_name("job id", job).is_err() {
            return;
        }
        self.owners.remove(job);
        fx.extend(self.attempts.end_job(job).into_iter().map(Effect::Cancel));
        fx.push(Effect::RemoveJobDir(job.to_string()));
    }

    fn on_finished(&mut self, key: AttemptKey, result: Result<TaskOutput, TaskError>, fx: &mut Vec<Effect>) {
        let kind = match result {
            Ok(output) => EventKind::Done { output },
            Err(e) => {
                if e.node_down && self.ipfs.is_ok() {
                    // Said in the status first, so that controllers stop
                    // assigning here at once; the next health check says
                    // when the node answers again.
                    warn!("{key}: the IPFS node did not answer; this agent takes no tasks until it answers");
                    self.ipfs = IpfsHealth::Unreachable(e.error.clone());
                    fx.push(Effect::PublishStatus);
                }
                EventKind::Failed {
                    error: e.error,
                    detail: e.detail,
                    lost_inputs: e.lost_inputs,
                    node_down: e.node_down,
                }
            }
        };
        if !self.attempts.finish(&key, kind.clone()) {
            return; // cancelled meanwhile: nobody wants its result
        }
        match &kind {
            EventKind::Done { output } => info!("finished {key} in {} ms", output.elapsed_ms),
            // Info, not warn: the submitter tells its user (once per
            // distinct error), and under `--local` this log is theirs too.
            EventKind::Failed { error, .. } => info!("{key} failed: {error}"),
            EventKind::Accepted | EventKind::Progress { .. } => {}
        }
        fx.push(self.event(&key, kind));
    }

    fn start_queued(&mut self, fx: &mut Vec<Effect>) {
        while self.busy() < self.slots {
            let Some(task) = self.attempts.start_next() else { break };
            info!("running {}", AttemptKey::of(&task));
            fx.push(Effect::Start(task));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipdc_common::protocol::{CodeSpec, TaskKind, TaskMessage};

    const JOB: &str = "wc-mwwtc2sy-d46ad903c424";
    const SESSION: &str = "5e55105e55105e55";

    fn task(id: &str, attempt: u32) -> Task {
        Task {
            job: JOB.into(),
            task: id.into(),
            attempt,
            reducers: 1,
            code: CodeSpec {
                map_cid: "bafkmap".into(),
                reduce_cid: "bafkred".into(),
                combiner: false,
                force_native: None,
                native_fallback: None,
                limits: Default::default(),
                files: Default::default(),
                ..Default::default()
            },
            memory_mb: 1,
            kind: TaskKind::Map {
                input_cid: "bafyin".into(),
                input_size: 10,
                split: 0,
                start: 0,
                end: 10,
                name: String::new(),
                compression: None,
            },
        }
    }

    fn command(state: &mut AgentState, command: TaskCommand) -> Vec<Effect> {
        command_from(state, command, None)
    }

    fn command_from(state: &mut AgentState, command: TaskCommand, from: Option<&str>) -> Vec<Effect> {
        let message = TaskMessage::new(SESSION, command);
        let from = from.map(str::to_string);
        state.handle(Input::Message(Incoming::Command { agent: "pi-1".into(), message, from }))
    }

    fn controller(job: &str, state: ControllerState, epoch: u64, from: Option<&str>) -> Input {
        let status = ControllerStatus::new(job, state, epoch);
        Input::Message(Incoming::Controller { status, from: from.map(str::to_string) })
    }

    fn assign(state: &mut AgentState, t: &Task) -> Vec<Effect> {
        command(state, TaskCommand::Assign { task: t.clone() })
    }

    fn key(t: &Task) -> AttemptKey {
        AttemptKey::of(t)
    }

    fn starts(fx: &[Effect]) -> Vec<String> {
        fx.iter().filter_map(|e| if let Effect::Start(t) = e { Some(t.task.clone()) } else { None }).collect()
    }

    fn sent(fx: &[Effect]) -> Vec<(String, EventKind)> {
        fx.iter()
            .filter_map(|e| {
                if let Effect::Send(ev) = e { Some((ev.task.clone(), ev.kind.clone())) } else { None }
            })
            .collect()
    }

    fn done(t: &Task) -> Input {
        Input::Finished {
            key: key(t),
            result: Ok(TaskOutput { cids: vec!["bafkout".into()], ..Default::default() }),
        }
    }

    fn failed(t: &Task, node_down: bool) -> Input {
        let e = TaskError { error: "boom".into(), detail: String::new(), lost_inputs: vec![], node_down };
        Input::Finished { key: key(t), result: Err(e) }
    }

    #[test]
    fn a_locate_is_answered_only_for_keys_that_are_cids_and_not_too_many() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 2);
        let locate = |blocks: Vec<String>| TaskCommand::Locate { job: JOB.into(), blocks };
        let good = vec!["bafkreiabc".to_string(), "bafkreixyz".to_string()];
        assert_eq!(command(&mut s, locate(good.clone())), [Effect::Locate { job: JOB.into(), blocks: good }]);
        for bad in ["../etc/passwd", "bafk&arg=x", "QmUpper", "", &"b".repeat(101)] {
            let fx = command(&mut s, locate(vec!["bafkreiabc".into(), bad.to_string()]));
            assert!(fx.is_empty(), "{bad:?} was taken: {fx:?}");
        }
        let many = vec!["bafkreiabc".to_string(); ipdc_common::protocol::MAX_LOCATE_BLOCKS + 1];
        assert!(command(&mut s, locate(many)).is_empty());
    }

    #[test]
    fn an_assignment_is_acknowledged_and_started_once_however_often_it_arrives() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 2);
        let t = task("m-00000", 1);
        let fx = assign(&mut s, &t);
        assert_eq!(starts(&fx), ["m-00000"]);
        assert_eq!(sent(&fx), [("m-00000".into(), EventKind::Accepted)]);
        assert!(fx.contains(&Effect::PublishStatus), "the busy slots changed");
        // A duplicate while it runs, and a replay after it finished: acknowledged, not run again.
        let fx = assign(&mut s, &t);
        assert_eq!((starts(&fx).len(), sent(&fx).len()), (0, 1));
        s.handle(done(&t));
        let fx = assign(&mut s, &t);
        assert_eq!(starts(&fx), Vec::<String>::new());
        assert_eq!(sent(&fx), [("m-00000".into(), EventKind::Accepted)]);
        // A new attempt of the same task is new work.
        assert_eq!(starts(&assign(&mut s, &task("m-00000", 2))), ["m-00000"]);
    }

    #[test]
    fn attempts_past_the_slots_wait_and_start_as_slots_free() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let (a, b) = (task("m-00000", 1), task("m-00001", 1));
        assert_eq!(starts(&assign(&mut s, &a)), ["m-00000"]);
        let fx = assign(&mut s, &b);
        assert_eq!((starts(&fx).len(), sent(&fx).len()), (0, 1), "queued and acknowledged");
        let fx = s.handle(done(&a));
        assert_eq!(starts(&fx), ["m-00001"]);
        assert!(matches!(sent(&fx)[0].1, EventKind::Done { .. }));
        assert_eq!(s.busy(), 1);
    }

    #[test]
    fn a_query_re_sends_where_every_attempt_of_the_job_stands() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let (a, b) = (task("m-00000", 1), task("m-00001", 1));
        assign(&mut s, &a);
        assign(&mut s, &b);
        s.handle(failed(&a, false));
        let fx = command(&mut s, TaskCommand::Query { job: JOB.into() });
        let got = sent(&fx);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], (t, EventKind::Failed { error, .. }) if t == "m-00000" && error == "boom"));
        assert_eq!(got[1], ("m-00001".into(), EventKind::Accepted), "running now");
        assert!(sent(&command(&mut s, TaskCommand::Query { job: "other-job".into() })).is_empty());
    }

    #[test]
    fn a_cancel_during_a_run_kills_it_and_its_late_result_is_never_sent() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let (a, b) = (task("m-00000", 1), task("m-00001", 1));
        assign(&mut s, &a);
        assign(&mut s, &b);
        let fx = command(&mut s, TaskCommand::Cancel { job: JOB.into(), task: "m-00000".into(), attempt: 1 });
        assert!(fx.contains(&Effect::Cancel(key(&a))));
        assert_eq!(starts(&fx), ["m-00001"], "its slot goes to the next attempt");
        assert!(sent(&s.handle(done(&a))).is_empty());
        // A queued attempt is just dropped, and a late copy of it is not queued again.
        let c = task("m-00002", 1);
        assign(&mut s, &c);
        let fx = command(&mut s, TaskCommand::Cancel { job: JOB.into(), task: "m-00002".into(), attempt: 1 });
        assert!(!fx.iter().any(|e| matches!(e, Effect::Cancel(_))));
        s.handle(done(&b));
        assert!(starts(&assign(&mut s, &c)).is_empty());
    }

    #[test]
    fn the_end_of_a_job_drops_its_attempts_reports_and_folder() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let (a, b) = (task("m-00000", 1), task("m-00001", 1));
        assign(&mut s, &a);
        assign(&mut s, &b);
        let fx = command(&mut s, TaskCommand::EndJob { job: JOB.into() });
        assert!(fx.contains(&Effect::Cancel(key(&a))));
        assert!(fx.contains(&Effect::RemoveJobDir(JOB.into())));
        assert!(starts(&fx).is_empty(), "the queued attempt went with its job");
        assert!(sent(&s.handle(done(&a))).is_empty());
        assert!(sent(&command(&mut s, TaskCommand::Query { job: JOB.into() })).is_empty());
        assert_eq!(s.busy(), 0);
    }

    #[test]
    fn a_gone_controller_ends_its_job_and_a_running_one_changes_nothing() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let a = task("m-00000", 1);
        assign(&mut s, &a);
        let running = controller(JOB, ControllerState::Running, 1, None);
        assert!(!s.handle(running).iter().any(|e| matches!(e, Effect::Cancel(_))));
        let fx = s.handle(controller(JOB, ControllerState::Gone, 1, None));
        assert!(fx.contains(&Effect::Cancel(key(&a))));
        assert!(fx.contains(&Effect::RemoveJobDir(JOB.into())));
        assert!(fx.contains(&Effect::ClearController(JOB.into())), "a gone status acted on is cleared");
    }

    #[test]
    fn a_node_down_failure_marks_the_node_unreachable_before_reporting() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        s.handle(Input::IpfsHealth(IpfsHealth::Ok));
        let a = task("m-00000", 1);
        assign(&mut s, &a);
        let fx = s.handle(failed(&a, true));
        let status = fx.iter().position(|e| *e == Effect::PublishStatus).expect("status published");
        let report = fx.iter().position(|e| matches!(e, Effect::Send(_))).expect("failure sent");
        assert!(status < report, "{fx:?}");
        assert_eq!(s.ipfs(), &IpfsHealth::Unreachable("boom".into()));
        assert!(matches!(&sent(&fx)[0].1, EventKind::Failed { node_down: true, .. }));
        // The next check that answers makes it ok again, with a status.
        assert!(s.handle(Input::IpfsHealth(IpfsHealth::Ok)).contains(&Effect::PublishStatus));
        assert!(!s.handle(Input::IpfsHealth(IpfsHealth::Ok)).contains(&Effect::PublishStatus), "no change");
    }

    #[test]
    fn ids_that_could_name_a_path_are_refused() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 4);
        for (job, id) in
            [("..", "m-00000"), (".", "m-00000"), ("/tmp/x", "m-00000"), (JOB, "../../x"), (JOB, "/etc/x")]
        {
            let mut t = task(id, 1);
            t.job = job.into();
            assert!(assign(&mut s, &t).is_empty(), "{job} {id}");
        }
        for job in ["..", "/some/dir", ""] {
            assert!(s.handle(controller(job, ControllerState::Gone, 1, None)).is_empty(), "{job}");
            assert!(command(&mut s, TaskCommand::EndJob { job: job.into() }).is_empty(), "{job}");
        }
    }

    #[test]
    fn commands_for_another_agent_are_ignored() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let message = TaskMessage::new(SESSION, TaskCommand::Assign { task: task("m-00000", 1) });
        assert!(
            s.handle(Input::Message(Incoming::Command { agent: "pi-2".into(), message, from: None }))
                .is_empty()
        );
    }

    #[test]
    fn a_command_for_an_earlier_run_of_the_agent_is_refused() {
        let mut s = AgentState::new("pi-1", "a-new-session", "http://127.0.0.1:5001", 1);
        assert!(assign(&mut s, &task("m-00000", 1)).is_empty(), "captured before a restart and replayed");
        let message = TaskMessage::new("a-new-session", TaskCommand::Assign { task: task("m-00000", 1) });
        let fx = s.handle(Input::Message(Incoming::Command { agent: "pi-1".into(), message, from: None }));
        assert_eq!(starts(&fx), ["m-00000"]);
    }

    #[test]
    fn only_the_submitter_that_gave_a_job_its_tasks_may_end_cancel_or_query_it() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let a = task("m-00000", 1);
        command_from(&mut s, TaskCommand::Assign { task: a.clone() }, Some("alice"));
        for c in [
            TaskCommand::EndJob { job: JOB.into() },
            TaskCommand::Cancel { job: JOB.into(), task: "m-00000".into(), attempt: 1 },
            TaskCommand::Query { job: JOB.into() },
            TaskCommand::Assign { task: task("m-00001", 1) },
        ] {
            assert!(command_from(&mut s, c, Some("mallory")).is_empty());
        }
        assert!(s.handle(controller(JOB, ControllerState::Gone, 9, Some("mallory"))).is_empty());
        assert_eq!(s.busy(), 1, "alice's attempt still runs");
        let fx = command_from(&mut s, TaskCommand::EndJob { job: JOB.into() }, Some("alice"));
        assert!(fx.contains(&Effect::Cancel(key(&a))));
    }

    #[test]
    fn a_replayed_gone_status_of_an_earlier_connection_is_ignored() {
        let mut s = AgentState::new("pi-1", SESSION, "http://127.0.0.1:5001", 1);
        let a = task("m-00000", 1);
        assign(&mut s, &a);
        // The submitter reconnected (epoch 20) after its first connection (10) was lost.
        s.handle(controller(JOB, ControllerState::Running, 20, None));
        assert!(s.handle(controller(JOB, ControllerState::Gone, 10, None)).is_empty());
        assert_eq!(s.busy(), 1);
        let fx = s.handle(controller(JOB, ControllerState::Gone, 20, None));
        assert!(fx.contains(&Effect::Cancel(key(&a))), "the latest connection's Will still counts");
    }
}

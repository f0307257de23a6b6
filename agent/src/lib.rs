//! `ipdc-agent`: joins a cluster over MQTT, says what it can do, runs the map
//! and reduce tasks it is given, and moves data only through its IPFS node.
//!
//! - [`config`]: flags, environment and config file, validated.
//! - [`check`]: `--check`, the one-screen diagnosis.
//! - [`status`]: the retained status (load, memory, Python) it publishes.
//! - [`queue`]: tasks waiting for a slot, jobs served in turn.
//! - [`task`]: one attempt: fetch, execute, add outputs.
//!
//! [`run`] is the agent's one event loop; the `ipdc-agent` binary and the
//! submitter's `--local` mode both call it.

pub mod check;
pub mod config;
pub mod queue;
pub mod status;
pub mod task;
mod workdir;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipdc_common::auth::{self, Opener, Sealer};
use ipdc_common::ipfs::IpfsClient;
use ipdc_common::mqtt;
use ipdc_common::protocol::{
    AgentStatus, ControllerStatus, EventKind, Message, PROTOCOL_VERSION, Task, TaskCommand, TaskEvent,
    TaskMessage, Topics, validate_name,
};
use ipdc_common::python::CancelToken;
use log::{debug, info, warn};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use config::AgentConfig;
use queue::{AttemptKey, TaskQueue};
use status::{FixedFacts, StatusProbe};
use task::{TaskContext, TaskError};

/// The agent's own version, reported in its status.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version and build (commit, target, profile), for `--version`.
pub const BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("IPDC_BUILD_INFO"), ")");

/// Runs the agent until `shutdown` completes. Broker and IPFS outages are
/// waited out (with backoff), never fatal; only a bad configuration is.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    validate_name("agent name", &config.name)?;
    validate_name("cluster name", &config.cluster)?;
    // A work dir no task could use would fail every task given to us.
    let _work_dir = workdir::claim(&config.work_dir)?;
    let ipfs = IpfsClient::new(&config.ipfs).map_err(|e| e.to_string())?;
    let python = match config.python.clone() {
        Some(p) => {
            let probe = p.clone();
            match tokio::task::spawn_blocking(move || ipdc_common::python::detect(&probe)).await {
                Ok(Some((exe, v))) => {
                    if exe != p {
                        info!("Python {} is {} {v}", p.display(), exe.display());
                    }
                    Some((exe, v))
                }
                _ => {
                    warn!("no usable Python at {} (needs 3.7+): running without Python", p.display());
                    None
                }
            }
        }
        None => None,
    };
    let topics = Topics::new(&config.cluster);
    let status_topic = topics.agent_status(&config.name);
    let tasks_topic = topics.agent_tasks(&config.name);
    let controllers_topic = topics.all_job_controllers();
    let sealer = Sealer::new(config.cluster_key.clone());
    if config.cluster_key.is_none() && config.warn_if_open {
        warn!(
            "no cluster key: this cluster is open, anyone who can publish to the broker can make this agent run code (set cluster_key; see `ipdc-submit keygen`)"
        );
    }
    let will = (status_topic.clone(), sealer.seal(&AgentStatus::offline(&config.name).encode()));
    let options = config.mqtt.options(&format!("ipdc-agent-{}", config.name), Some(will))?;
    let (client, mut eventloop) = mqtt::client(options);
    let broker = config.mqtt.broker.clone();

    let fixed = FixedFacts {
        name: config.name.clone(),
        version: VERSION.to_string(),
        slots: config.slots.max(1),
        python: python.as_ref().map(|(_, v)| v.clone()),
        memory_mb: config.memory_mb,
        heartbeat_ms: config.heartbeat.as_millis() as u64,
        ipfs: "unknown: not checked yet".to_string(),
    };
    let ctx = Arc::new(TaskContext {
        agent: config.name.clone(),
        ipfs: ipfs.clone(),
        work_dir: config.work_dir.clone(),
        python: python.map(|(p, _)| p),
        max_memory_mb: config.memory_mb,
        delay: config.test_task_delay,
        max_task_secs: config.max_task_secs,
        max_task_memory_mb: config.max_task_memory_mb,
        local_files: config.local_files.clone(),
    });
    info!(
        "agent {} starting: cluster {}, broker {}, IPFS {}, {} slots, Python {}",
        config.name,
        config.cluster,
        broker,
        config.ipfs,
        fixed.slots,
        fixed.python.as_deref().unwrap_or("none")
    );

    let mut state = AgentState {
        client: client.clone(),
        topics,
        ctx,
        fixed,
        probe: StatusProbe::new(),
        queue: TaskQueue::default(),
        running: HashMap::new(),
        stopping: Vec::new(),
        done_tx: mpsc::channel(64).0,
        finished: HashMap::new(),
        finished_order: Default::default(),
        sealer,
        opener: Opener::new(config.cluster_key.clone()),
        // Retained messages (a Last Will) may be old: their MAC still counts.
        retained_opener: Opener::new(config.cluster_key.clone()).with_window(RETAINED_WINDOW),
    };
    let (done_tx, mut done_rx) = mpsc::channel(64);
    state.done_tx = done_tx;
    let (ipfs_tx, mut ipfs_rx) = mpsc::channel::<Result<(), String>>(4);
    let mut probing = false;

    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Duration::from_millis(200);
    let mut connected = false;
    // Connections the broker closed soon after accepting them, in a row:
    // what another client with this agent's name (client id) causes.
    let (mut connected_at, mut quick_drops) = (Instant::now(), 0u32);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!("connected to broker {broker}");
                    connected = true;
                    connected_at = Instant::now();
                    backoff = Duration::from_millis(200);
                    for t in [&tasks_topic, &controllers_topic] {
                        if let Err(e) = client.try_subscribe(t, QoS::AtLeastOnce) {
                            warn!("cannot subscribe to {t}: {e}");
                        }
                    }
                    state.publish_status();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == tasks_topic => {
                    state.on_task_message(&p.payload);
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/controller") => {
                    state.on_controller_status(&p.payload);
                }
                Ok(_) => {}
                Err(e) => {
                    let why = mqtt::describe(&e);
                    if mqtt::is_auth_error(&e) {
                        log::error!("broker {broker}: {why}; retrying in {backoff:?}");
                    } else if connected {
                        warn!("lost the broker {broker}: {why}; reconnecting");
                        quick_drops = if connected_at.elapsed() < DUPLICATE_HINT_WITHIN { quick_drops + 1 } else { 0 };
                        if quick_drops == DUPLICATE_HINT_AFTER {
                            log::error!(
                                "the broker keeps closing this agent's connection right after accepting it: \
                                 is another agent named {} connected to it (two boards with the same host name)? \
                                 give each board its own name (name in agent.toml, or --name)",
                                config.name
                            );
                        }
                    } else {
                        warn!("cannot reach the broker {broker}: {why}; retrying in {backoff:?}");
                    }
                    connected = false;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut shutdown => break, // stop at once, not after the backoff
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(if mqtt::is_auth_error(&e) { 30 } else { 10 }));
                }
            },
            Some((key, result)) = done_rx.recv() => state.on_task_finished(key, result),
            Some(health) = ipfs_rx.recv() => {
                probing = false;
                let now = match health {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("unreachable: {e}"),
                };
                if now != state.fixed.ipfs {
                    if now == "ok" {
                        info!("IPFS API {} answers", config.ipfs);
                    } else {
                        warn!("IPFS API {}: {now}; this agent takes no tasks until it answers", config.ipfs);
                    }
                    state.fixed.ipfs = now;
                    if connected {
                        state.publish_status();
                    }
                }
            }
            _ = heartbeat.tick() => {
                if !probing {
                    probing = true;
                    let (ipfs, tx) = (ipfs.clone(), ipfs_tx.clone());
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(Duration::from_secs(5), ipfs.id()).await;
                        let r = match r {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("no answer within 5 s".to_string()),
                        };
                        let _ = tx.send(r).await;
                    });
                }
                if connected { state.publish_status() }
            },
        }
    }

    info!("agent {} stopping", config.name);
    // Cancelled tasks kill their process groups (the user's code and what it
    // started) within milliseconds; wait for that before going, as the
    // process may exit right after (`ipdc-submit --local` does).
    let mut handles: Vec<_> = state
        .running
        .drain()
        .map(|(_, (handle, cancel))| {
            cancel.cancel();
            handle
        })
        .collect();
    handles.append(&mut state.stopping);
    let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
    let stopped = async {
        for h in handles {
            let _ = h.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(3), stopped).await.is_err() {
        aborts.iter().for_each(|a| a.abort()); // e.g. still fetching: nothing of the user's runs yet
    }
    // Say goodbye ourselves: a clean disconnect does not fire the Last Will.
    let offline = state.sealer.seal(&AgentStatus::offline(&config.name).encode());
    let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, offline);
    let _ = client.try_disconnect();
    let _ =
        tokio::time::timeout(Duration::from_secs(2), async { while eventloop.poll().await.is_ok() {} }).await;
    Ok(())
}

/// Connections dropped within this time after being accepted...
const DUPLICATE_HINT_WITHIN: Duration = Duration::from_secs(5);
/// ...this many times in a row make the agent suggest a duplicate name.
const DUPLICATE_HINT_AFTER: u32 = 3;

type Finished = (AttemptKey, Result<ipdc_common::protocol::TaskOutput, TaskError>);

struct AgentState {
    client: AsyncClient,
    topics: Topics,
    ctx: Arc<TaskContext>,
    fixed: FixedFacts,
    probe: StatusProbe,
    queue: TaskQueue,
    running: HashMap<AttemptKey, (JoinHandle<()>, CancelToken)>,
    /// Attempts cancelled while running, until they have stopped: their
    /// user code is killed from a blocking thread, which aborting the task
    /// would not wait for, so shutdown waits for these too.
    stopping: Vec<JoinHandle<()>>,
    done_tx: mpsc::Sender<Finished>,
    /// The final report of recently finished attempts, re-sent when a
    /// controller asks (its first copy may have been lost).
    finished: HashMap<AttemptKey, EventKind>,
    finished_order: std::collections::VecDeque<AttemptKey>,
    sealer: Sealer,
    /// Task commands: signed, fresh and never replayed (in a keyed cluster).
    opener: Opener,
    retained_opener: Opener,
}

/// Finished attempts remembered for re-sending.
const FINISHED_MEMORY: usize = 4096;

/// How old a signed retained message (a controller's Last Will) may be.
const RETAINED_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

impl AgentState {
    fn publish_status(&mut self) {
        let mut status = self.probe.status(&self.fixed, self.running.len() as u32);
        status.rejected_messages = self.opener.rejected() + self.retained_opener.rejected();
        status.keyed = self.opener.is_keyed();
        let topic = self.topics.agent_status(&self.fixed.name);
        if let Err(e) =
            self.client.try_publish(topic, QoS::AtLeastOnce, true, self.sealer.seal(&status.encode()))
        {
            debug!("status not sent: {e}");
        }
    }

    fn send_event(&self, task: &Task, kind: EventKind) {
        self.send_event_raw(&task.job, &task.task, task.attempt, kind);
    }

    fn send_event_raw(&self, job: &str, task: &str, attempt: u32, kind: EventKind) {
        let event = TaskEvent {
            v: PROTOCOL_VERSION,
            job: job.to_string(),
            task: task.to_string(),
            attempt,
            agent: self.fixed.name.clone(),
            kind,
        };
        let payload = self.sealer.seal(&event.encode());
        if let Err(e) = self.client.try_publish(self.topics.job_events(job), QoS::AtLeastOnce, false, payload)
        {
            warn!("event for {job}/{task} not sent: {e}");
        }
    }

    fn on_task_message(&mut self, payload: &[u8]) {
        let payload = match self.opener.open(payload, ipdc_common::protocol::now_ms()) {
            Ok(body) => body,
            Err(why) => {
                warn!("rejected a task message ({} rejected so far): {why}", self.opener.rejected());
                self.publish_status();
                return;
            }
        };
        let msg = match TaskMessage::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                warn!("rejected a task message: {e}");
                return;
            }
        };
        match msg.command {
            TaskCommand::Assign { task } => {
                if validate_name("job id", &task.job).is_err() {
                    warn!("rejected a task with an invalid job id {:?}", task.job);
                    return;
                }
                let fresh = self.queue.push(task.clone());
                // Acknowledge duplicates too: the first acknowledgement may be the one that was lost.
                self.send_event(&task, EventKind::Accepted);
                if fresh {
                    debug!("accepted {}/{} attempt {}", task.job, task.task, task.attempt);
                    self.start_queued();
                }
            }
            TaskCommand::Cancel { job, task, attempt } => {
                if !self.queue.cancel(&job, &task, attempt) {
                    let key = (job, task, attempt);
                    if let Some((h, cancel)) = self.running.remove(&key) {
                        cancel.cancel();
                        self.stop_later(h);
                        info!("cancelled {}/{} attempt {}", key.0, key.1, key.2);
                        self.start_queued();
                    }
                }
            }
            TaskCommand::EndJob { job } => self.end_job(&job),
            TaskCommand::Query { job } => {
                let mut live = self.queue.queued_of(&job);
                live.extend(self.running.keys().filter(|k| k.0 == job).cloned());
                for (j, t, a) in live {
                    self.send_event_raw(&j, &t, a, EventKind::Accepted);
                }
                let done: Vec<_> = self
                    .finished
                    .iter()
                    .filter(|(k, _)| k.0 == job)
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .collect();
                for ((j, t, a), kind) in done {
                    self.send_event_raw(&j, &t, a, kind);
                }
            }
        }
    }

    /// Drops everything of a job: queued and running attempts, remembered
    /// results and its temporary files.
    /// Keeps a cancelled attempt's task until it has stopped (see `stopping`).
    fn stop_later(&mut self, handle: JoinHandle<()>) {
        self.stopping.retain(|h| !h.is_finished());
        self.stopping.push(handle);
    }

    fn end_job(&mut self, job: &str) {
        self.queue.end_job(job);
        let keys: Vec<_> = self.running.keys().filter(|k| k.0 == job).cloned().collect();
        for k in keys {
            if let Some((h, cancel)) = self.running.remove(&k) {
                cancel.cancel();
                self.stop_later(h);
            }
        }
        self.finished.retain(|k, _| k.0 != job);
        self.finished_order.retain(|k| k.0 != job);
        let dir = self.ctx.work_dir.join(job);
        tokio::spawn(async move {
            let _ = tokio::fs::remove_dir_all(dir).await;
        });
        self.start_queued();
    }

    /// A controller's retained status: a job whose controller is gone is dropped.
    fn on_controller_status(&mut self, payload: &[u8]) {
        if payload.is_empty() {
            return; // a cleared retained status: the job ended normally
        }
        let payload = match self.retained_opener.open(payload, ipdc_common::protocol::now_ms()) {
            Ok(body) => body,
            Err(auth::Rejected::Replayed) => return, // a retained message seen before
            Err(why) => {
                warn!("rejected a controller status: {why}");
                return;
            }
        };
        match ControllerStatus::decode(payload) {
            Ok(s) if s.state == "gone" => {
                let holds =
                    self.running.keys().any(|k| k.0 == s.job) || !self.queue.queued_of(&s.job).is_empty();
                if holds {
                    warn!("the controller of job {} is gone: dropping its tasks", s.job);
                }
                self.end_job(&s.job);
            }
            Ok(_) => {}
            Err(e) => debug!("ignored a controller status: {e}"),
        }
    }

    fn start_queued(&mut self) {
        while self.running.len() < self.fixed.slots as usize {
            let Some(task) = self.queue.pop() else { break };
            let key = queue::key(&task);
            let ctx = self.ctx.clone();
            let tx = self.done_tx.clone();
            let k = key.clone();
            info!("running {}/{} attempt {}", task.job, task.task, task.attempt);
            let cancel = CancelToken::new();
            let token = cancel.clone();
            let handle = tokio::spawn(async move {
                let result = task::run(ctx, task, token).await;
                let _ = tx.send((k, result)).await;
            });
            self.running.insert(key, (handle, cancel));
        }
        self.publish_status();
    }

    fn on_task_finished(
        &mut self,
        key: AttemptKey,
        result: Result<ipdc_common::protocol::TaskOutput, TaskError>,
    ) {
        if self.running.remove(&key).is_none() {
            return; // cancelled meanwhile
        }
        let (job, task, attempt) = &key;
        let kind = match result {
            Ok(output) => {
                info!("finished {job}/{task} attempt {attempt} in {} ms", output.elapsed_ms);
                EventKind::Done { output }
            }
            Err(e) => {
                // Info, not warn: the submitter tells its user (once per
                // distinct error), and under `--local` this log is theirs too.
                info!("{job}/{task} attempt {attempt} failed: {}", e.error);
                if e.node_down && self.fixed.ipfs == "ok" {
                    // Said in the status first, so that controllers stop
                    // assigning here at once; the next health check says
                    // when the node answers again.
                    self.fixed.ipfs = format!("unreachable: {}", e.error);
                    warn!(
                        "{job}/{task}: the IPFS node did not answer; this agent takes no tasks until it answers"
                    );
                    self.publish_status();
                }
                EventKind::Failed {
                    error: e.error,
                    detail: e.detail,
                    lost_inputs: e.lost_inputs,
                    node_down: e.node_down,
                }
            }
        };
        self.send_event_raw(job, task, *attempt, kind.clone());
        self.finished.insert(key.clone(), kind);
        self.finished_order.push_back(key);
        while self.finished_order.len() > FINISHED_MEMORY {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
        self.start_queued();
    }
}

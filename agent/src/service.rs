//! The agent's event loop: the I/O around [`AgentState`]. It selects over
//! the MQTT connection, finished attempts, IPFS health checks, heartbeats
//! and the shutdown future; every incoming message goes through the wire
//! ([`Wire::receive`]) and then the state, and the state's effects are
//! carried out here. Broker and IPFS outages are waited out, never fatal.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipdc_common::auth::Rejected;
use ipdc_common::ipfs::IpfsClient;
use ipdc_common::mqtt::{self, BrokerAddr};
use ipdc_common::protocol::{
    AgentStatus, EventKind, IpfsHealth, Located, Outgoing, Refused, Task, TaskEvent, TaskOutput, Wire, now_ms,
};
use ipdc_common::python::CancelToken;
use log::{debug, info, warn};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::attempts::AttemptKey;
use crate::modules::{self, ModuleCache};
use crate::state::{AgentState, Effect, Input};
use crate::status::{FixedFacts, StatusProbe};
use crate::sweep::Sweeper;
use crate::task::{self, TaskContext, TaskError};
use crate::workdir::WorkDir;

/// Connections dropped within this time after being accepted...
const DUPLICATE_HINT_WITHIN: Duration = Duration::from_secs(5);
/// ...this many times in a row make the agent suggest a duplicate name.
const DUPLICATE_HINT_AFTER: u32 = 3;
/// How long an IPFS health check may take.
const IPFS_CHECK: Duration = Duration::from_secs(5);
/// How often running attempts say how far they have read.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

type Finished = (AttemptKey, Result<TaskOutput, TaskError>);

/// Everything the loop owns besides the MQTT event loop.
pub struct Service {
    pub wire: Wire,
    pub client: AsyncClient,
    pub fixed: FixedFacts,
    pub ctx: Arc<TaskContext>,
    pub work_dir: WorkDir,
    pub ipfs: IpfsClient,
    pub heartbeat: Duration,
    pub broker: BrokerAddr,
    state: AgentState,
    probe: StatusProbe,
    connected: bool,
    /// The last status said the work dir is below its free-space floor.
    disk_low: bool,
    /// Removes what jobs leave in the work dir's root.
    sweeper: Sweeper,
    /// Attempts running or stopping, with what cancels them: a cancelled
    /// attempt's user code is killed from a blocking thread, which aborting
    /// its task would not wait for, so its handle stays until it ends.
    tasks: HashMap<AttemptKey, Running>,
    done_tx: mpsc::Sender<Finished>,
    /// Which Python modules import here, as far as checked.
    modules: ModuleCache,
    /// Names asked about while a check runs (one check at a time).
    modules_waiting: Vec<String>,
    modules_checking: bool,
    modules_tx: mpsc::Sender<BTreeMap<String, bool>>,
    modules_rx: Option<mpsc::Receiver<BTreeMap<String, bool>>>,
    /// What its IPFS node said of itself at the last check.
    node: NodeFacts,
    /// Its latest answer to `Locate`, said in the status.
    located: Option<Located>,
    /// A `Locate` that came while one was being answered (the latest only).
    locate_waiting: Option<(String, Vec<String>)>,
    locating: bool,
    locate_tx: mpsc::Sender<Located>,
    locate_rx: Option<mpsc::Receiver<Located>>,
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        wire: Wire,
        client: AsyncClient,
        fixed: FixedFacts,
        ctx: Arc<TaskContext>,
        work_dir: WorkDir,
        ipfs: IpfsClient,
        heartbeat: Duration,
        broker: BrokerAddr,
    ) -> (Self, mpsc::Receiver<Finished>) {
        let (done_tx, done_rx) = mpsc::channel(64);
        let state = AgentState::new(&fixed.name, &fixed.session, ipfs.api(), fixed.slots);
        let sweeper = Sweeper::new(&ctx.work_dir);
        let (modules_tx, modules_rx) = mpsc::channel(4);
        let (locate_tx, locate_rx) = mpsc::channel(4);
        let service = Service {
            wire,
            client,
            fixed,
            ctx,
            work_dir,
            ipfs,
            heartbeat,
            broker,
            state,
            probe: StatusProbe::new(),
            connected: false,
            disk_low: false,
            sweeper,
            tasks: HashMap::new(),
            done_tx,
            modules: ModuleCache::default(),
            modules_waiting: Vec::new(),
            modules_checking: false,
            modules_tx,
            modules_rx: Some(modules_rx),
            node: NodeFacts::default(),
            located: None,
            locate_waiting: None,
            locating: false,
            locate_tx,
            locate_rx: Some(locate_rx),
        };
        (service, done_rx)
    }

    /// Runs until `shutdown` completes, then stops the running attempts and
    /// says goodbye.
    pub async fn run(
        mut self,
        mut eventloop: EventLoop,
        mut done_rx: mpsc::Receiver<Finished>,
        shutdown: impl Future<Output = ()>,
    ) {
        let (ipfs_tx, mut ipfs_rx) = mpsc::channel::<(IpfsHealth, NodeFacts)>(4);
        let mut modules_rx = self.modules_rx.take().expect("run once");
        let mut locate_rx = self.locate_rx.take().expect("run once");
        let mut probing = false;
        let mut heartbeat = tokio::time::interval(self.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::from_millis(200);
        // Connections the broker closed soon after accepting them, in a row:
        // what another client with this agent's name (client id) causes.
        let (mut connected_at, mut quick_drops) = (Instant::now(), 0u32);
        self.set_will(&mut eventloop);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        info!("connected to broker {}", self.broker);
                        self.connected = true;
                        connected_at = Instant::now();
                        backoff = Duration::from_millis(200);
                        let topics = self.wire.topics();
                        for t in [topics.agent_tasks(&self.fixed.name), topics.all_job_controllers()] {
                            if let Err(e) = self.client.try_subscribe(&t, QoS::AtLeastOnce) {
                                warn!("cannot subscribe to {t}: {e}");
                            }
                        }
                        self.publish_status();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => self.on_publish(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(e) => {
                        let why = mqtt::describe(&e);
                        let broker = &self.broker;
                        if mqtt::is_auth_error(&e) {
                            log::error!("broker {broker}: {why}; retrying in {backoff:?}");
                        } else if self.connected {
                            warn!("lost the broker {broker}: {why}; reconnecting");
                            quick_drops = if connected_at.elapsed() < DUPLICATE_HINT_WITHIN { quick_drops + 1 } else { 0 };
                            if quick_drops == DUPLICATE_HINT_AFTER {
                                log::error!(
                                    "the broker keeps closing this agent's connection right after accepting it: \
                                     is another agent named {} connected to it (two boards with the same host name)? \
                                     give each board its own name (name in agent.toml, or --name)",
                                    self.fixed.name
                                );
                            }
                        } else {
                            warn!("cannot reach the broker {broker}: {why}; retrying in {backoff:?}");
                        }
                        self.connected = false;
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = &mut shutdown => break, // stop at once, not after the backoff
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(if mqtt::is_auth_error(&e) { 30 } else { 10 }));
                        self.set_will(&mut eventloop);
                    }
                },
                Some((key, result)) = done_rx.recv() => {
                    self.tasks.remove(&key);
                    self.apply(Input::Finished { key, result });
                    if self.tasks.is_empty() && !self.state.holds_any_job() {
                        // The last attempt of an ended job has stopped.
                        self.sweep();
                    }
                }
                Some(answers) = modules_rx.recv() => {
                    info!("python modules: {}", answers.iter().map(|(m, ok)| format!("{m} {}", if *ok { "imports" } else { "does not import" })).collect::<Vec<_>>().join(", "));
                    self.modules.record(answers);
                    self.modules_checking = false;
                    let waiting = std::mem::take(&mut self.modules_waiting);
                    self.check_modules(waiting);
                    self.publish_status();
                }
                Some(located) = locate_rx.recv() => {
                    self.located = Some(located);
                    self.locating = false;
                    if let Some((job, blocks)) = self.locate_waiting.take() {
                        self.locate(job, blocks);
                    }
                    self.publish_status();
                }
                Some((health, node)) = ipfs_rx.recv() => {
                    probing = false;
                    if node.swarm_peers != self.node.swarm_peers {
                        match node.swarm_peers {
                            Some(0) => warn!("its IPFS node has no swarm peers: tasks here can fetch only what it holds"),
                            Some(n) if self.node.swarm_peers == Some(0) => info!("its IPFS node has {n} swarm peer(s) again"),
                            _ => {}
                        }
                    }
                    self.node = node;
                    self.apply(Input::IpfsHealth(health));
                }
                _ = progress.tick(), if self.connected && !self.tasks.is_empty() => self.report_progress(),
                _ = heartbeat.tick() => {
                    if !probing {
                        probing = true;
                        let (ipfs, tx) = (self.ipfs.clone(), ipfs_tx.clone());
                        tokio::spawn(async move { let _ = tx.send(check_ipfs(&ipfs).await).await; });
                    }
                    self.publish_status();
                },
            }
        }
        self.stop(eventloop).await;
    }

    /// A new epoch for the next connection, and its Last Will sealed afresh
    /// (with the epoch in it: see `AgentStatus::epoch`).
    fn set_will(&mut self, eventloop: &mut EventLoop) {
        self.fixed.epoch = now_ms();
        let mut offline = AgentStatus::offline(&self.fixed.name);
        (offline.session, offline.epoch) = (self.fixed.session.clone(), self.fixed.epoch);
        let will = self.wire.status(&offline);
        mqtt::set_will(eventloop, will.topic, will.payload);
    }

    fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        let now = now_ms();
        match self.wire.receive(topic, payload, now) {
            Ok(incoming) => self.apply(Input::Message(incoming)),
            // A retained message seen before (re-subscribing gives them again).
            Err(Refused::Envelope { why: Rejected::Replayed, route }) if route.is_retained() => {}
            Err(why) => {
                if let Some(line) = self.wire.refusal_line(topic, &why, now) {
                    warn!("{line}");
                }
            }
        }
    }

    fn apply(&mut self, input: Input) {
        for effect in self.state.handle(input) {
            match effect {
                Effect::Start(task) => self.start(task),
                Effect::Cancel(key) => {
                    if let Some(Running { cancel, .. }) = self.tasks.get(&key) {
                        cancel.cancel();
                    }
                }
                Effect::Send(event) => {
                    let out = self.wire.event(&event);
                    self.publish(out, "event");
                }
                Effect::PublishStatus => self.publish_status(),
                Effect::CheckModules(asked) => {
                    self.check_modules(asked);
                    // What is known already is said at once.
                    self.publish_status();
                }
                Effect::Locate { job, blocks } => self.locate(job, blocks),
                Effect::ClearController(job) => {
                    let out = self.wire.controller_cleared(&job);
                    self.publish(out, "clearing a gone status");
                }
                Effect::RemoveJobDir(job) => {
                    if let Some(dir) = self.work_dir.job_dir(&job) {
                        tokio::spawn(async move {
                            let _ = tokio::fs::remove_dir_all(dir).await;
                        });
                    }
                    self.sweep();
                }
            }
        }
    }

    /// Removes what jobs left in the work dir's root (the job folders of
    /// jobs no longer held, and what their code wrote beside them).
    fn sweep(&mut self) {
        let idle = self.tasks.is_empty() && !self.state.holds_any_job();
        let state = &self.state;
        let aside = self.sweeper.sweep(|job| state.holds_job(job), idle);
        if !aside.is_empty() {
            tokio::task::spawn_blocking(move || Sweeper::delete(aside));
        }
    }

    fn start(&mut self, task: Task) {
        // Before any user code runs: what is in the root now is not a job's.
        self.sweeper.before_attempt();
        let key = AttemptKey::of(&task);
        let (ctx, tx, k) = (self.ctx.clone(), self.done_tx.clone(), key.clone());
        let cancel = CancelToken::new();
        let meter = Arc::new(task::Meter::default());
        let (token, m) = (cancel.clone(), meter.clone());
        let handle = tokio::spawn(async move {
            let result = task::run(ctx, task, token, m).await;
            let _ = tx.send((k, result)).await;
        });
        self.tasks.insert(key, Running { handle, cancel, meter, sent: (0, 0) });
    }

    /// Says how far each running attempt has read, where it moved since
    /// the last report (about once a second: small, not retained).
    fn report_progress(&mut self) {
        let mut out = Vec::new();
        for (key, run) in &mut self.tasks {
            let (bytes, lines) = run.meter.read();
            if (bytes, lines) == run.sent {
                continue;
            }
            run.sent = (bytes, lines);
            let event = TaskEvent {
                v: ipdc_common::protocol::PROTOCOL_VERSION,
                job: key.job.clone(),
                task: key.task.clone(),
                attempt: key.attempt,
                agent: self.fixed.name.clone(),
                kind: EventKind::Progress { bytes_read: bytes, lines },
            };
            out.push(self.wire.event(&event));
        }
        for o in out {
            if let Err(e) = self.client.try_publish(&o.topic, QoS::AtMostOnce, false, o.payload) {
                debug!("progress on {} not sent: {e}", o.topic);
            }
        }
    }

    /// Starts checking the modules of `asked` not known yet (one check at a
    /// time: names asked meanwhile wait for it, a bounded few).
    fn check_modules(&mut self, asked: Vec<String>) {
        if self.modules_checking {
            self.modules_waiting.extend(self.modules.to_check(&asked));
            self.modules_waiting.truncate(ipdc_common::protocol::MAX_PYTHON_MODULES);
            return;
        }
        let names = self.modules.to_check(&asked);
        if names.is_empty() {
            return;
        }
        let Some(python) = self.ctx.python.clone() else {
            self.modules.record(names.into_iter().map(|n| (n, false)).collect());
            return;
        };
        self.modules_checking = true;
        let tx = self.modules_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.blocking_send(modules::check(&python, &names));
        });
    }

    /// Asks the node which of the job's `blocks` it holds (one question at
    /// a time; one asked meanwhile waits, a later one replaces it).
    fn locate(&mut self, job: String, blocks: Vec<String>) {
        if self.locating {
            self.locate_waiting = Some((job, blocks));
            return;
        }
        self.locating = true;
        let (ipfs, tx) = (self.ipfs.clone(), self.locate_tx.clone());
        tokio::spawn(async move {
            let located = match ipfs.held_blocks(&blocks).await {
                Ok(held) => {
                    info!(
                        "job {job}: its node holds {} of the {} input blocks asked about",
                        held.len(),
                        blocks.len()
                    );
                    Located::new(&job, blocks.len(), held.into_iter())
                }
                Err(e) => {
                    info!("job {job}: its node cannot say which blocks it holds: {e}");
                    Located { job, asked: blocks.len() as u32, held: String::new() }
                }
            };
            let _ = tx.send(located).await;
        });
    }

    fn publish(&self, out: Outgoing, what: &str) {
        if let Err(e) = self.client.try_publish(&out.topic, QoS::AtLeastOnce, out.retain, out.payload) {
            warn!("{what} on {} not sent: {e}", out.topic);
        }
    }

    fn publish_status(&mut self) {
        if !self.connected {
            return;
        }
        self.fixed.ipfs = self.state.ipfs().clone();
        let mut status = self.probe.status(&self.fixed, self.state.busy());
        status.rejected_messages = self.wire.rejected();
        status.python_modules = self.modules.report();
        status.located = self.located.clone();
        status.keyed = self.wire.is_keyed();
        (status.ipfs_peer_id, status.swarm_peers) = (self.node.peer_id.clone(), self.node.swarm_peers);
        let low = status.low_on_disk();
        if low.is_some() != self.disk_low {
            let dir = self.fixed.work_dir.display();
            match &low {
                Some(why) => warn!("work dir {dir}: {why}; this agent takes no tasks until there is more"),
                None => info!("work dir {dir}: enough free space again; this agent takes tasks"),
            }
            self.disk_low = low.is_some();
        }
        let out = self.wire.status(&status);
        if let Err(e) = self.client.try_publish(&out.topic, QoS::AtLeastOnce, true, out.payload) {
            debug!("status not sent: {e}");
        }
    }

    async fn stop(mut self, mut eventloop: EventLoop) {
        info!("agent {} stopping", self.fixed.name);
        // Cancelled attempts kill their process groups (the user's code and
        // what it started) within milliseconds; wait for that before going,
        // as the process may exit right after (`ipdc-submit --local` does).
        let handles: Vec<_> = self
            .tasks
            .drain()
            .map(|(_, run)| {
                run.cancel.cancel();
                run.handle
            })
            .collect();
        let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        let stopped = async {
            for h in handles {
                let _ = h.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(3), stopped).await.is_err() {
            aborts.iter().for_each(|a| a.abort()); // e.g. still fetching: nothing of the user's runs yet
        }
        // Its attempts have stopped: what its jobs left goes now (their
        // folders too, as at the next start), and so does the record, so
        // that the next start does not sweep against an old one.
        let aside = self.sweeper.sweep(|_| false, true);
        let deleting = tokio::task::spawn_blocking(move || Sweeper::delete(aside));
        let _ = tokio::time::timeout(Duration::from_secs(2), deleting).await;
        // Say goodbye ourselves: a clean disconnect does not fire the Last Will.
        let mut offline = AgentStatus::offline(&self.fixed.name);
        (offline.session, offline.epoch) = (self.fixed.session.clone(), self.fixed.epoch);
        let out = self.wire.status(&offline);
        let _ = self.client.try_publish(&out.topic, QoS::AtLeastOnce, true, out.payload);
        let _ = self.client.try_disconnect();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), async { while eventloop.poll().await.is_ok() {} })
                .await;
    }
}

/// A running attempt: its task, the token that stops its user code, how
/// far it has read and what was last reported of that.
struct Running {
    handle: JoinHandle<()>,
    cancel: CancelToken,
    meter: Arc<task::Meter>,
    sent: (u64, u64),
}

/// What the agent's IPFS node says of itself: its peer ID, and how many
/// swarm peers it has (None: it does not say, as a hub's store).
#[derive(Debug, Clone, Default, PartialEq)]
struct NodeFacts {
    peer_id: Option<String>,
    swarm_peers: Option<u32>,
}

/// Whether the IPFS API answers within [`IPFS_CHECK`], and its node's facts.
async fn check_ipfs(ipfs: &IpfsClient) -> (IpfsHealth, NodeFacts) {
    let id = match tokio::time::timeout(IPFS_CHECK, ipfs.id()).await {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => return (IpfsHealth::Unreachable(e.to_string()), NodeFacts::default()),
        Err(_) => {
            let why = format!("no answer within {} s", IPFS_CHECK.as_secs());
            return (IpfsHealth::Unreachable(why), NodeFacts::default());
        }
    };
    let peers = tokio::time::timeout(IPFS_CHECK, ipfs.swarm_peers()).await.ok().and_then(Result::ok);
    (IpfsHealth::Ok, NodeFacts { peer_id: Some(id), swarm_peers: peers })
}

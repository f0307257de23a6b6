//! Driving one job: upload, pick agents, hand out tasks, follow events until
//! the controller says done, then write the output. This is the submitter's
//! one event loop; decisions are the controller's (`controller.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use ipdc_common::auth::{ClusterKey, Rejected};
use ipdc_common::exec::ExecStats;
use ipdc_common::ipfs::IpfsClient;
use ipdc_common::mapreduce::split::{Split, plan_splits};
use ipdc_common::mqtt::{self, BrokerAddr, MqttSettings};
use ipdc_common::protocol::{
    AgentStatus, CodeFiles, CodeSpec, ControllerState, Incoming, Outgoing, Refused, Route, TaskCommand,
    TaskEvent, TaskLimits, Wire, now_ms,
};
use log::{debug, info, warn};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use serde_json::json;

use crate::controller::{Action, Controller, JobPlan, Phase};
use crate::directory::{self, Directory, Requirements};
use crate::job::JobSpec;
use crate::output;
use crate::progress::ProgressView;

/// Where the cluster is.
#[derive(Debug, Clone)]
pub struct Connection {
    pub mqtt: MqttSettings,
    /// The cluster key: control messages are signed with it and agents'
    /// messages must carry it. None: an open cluster.
    pub key: Option<ClusterKey>,
    pub ipfs: String,
    pub cluster: String,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub overwrite: bool,
    /// How long to wait for enough capable agents.
    pub wait: Duration,
    /// The embedded store of this process (`--local`): the input is added by
    /// reference, hashed once from disk, instead of being sent over HTTP.
    pub local_store: Option<crate::store::LocalStore>,
    /// `--local N`: the cluster is exactly these N in-process agents on a
    /// broker of this process, so the job picks its agents as soon as all N
    /// have announced themselves instead of waiting for other agents'
    /// retained statuses.
    pub local_agents: Option<usize>,
    /// An assignment not acknowledged within this long goes to another agent.
    pub accept_timeout: Duration,
    pub show_progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            overwrite: false,
            wait: Duration::from_secs(10),
            local_store: None,
            local_agents: None,
            accept_timeout: Duration::from_secs(15),
            show_progress: true,
        }
    }
}

/// A job id: the job's name, the time in base 36 and random bits, so ids of
/// jobs submitted anywhere at any time do not collide.
pub fn new_job_id(name: &str) -> String {
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).expect("the OS has a random source");
    let mut t = now_ms();
    let mut ts = Vec::new();
    while t > 0 {
        ts.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(t % 36) as usize]);
        t /= 36;
    }
    ts.reverse();
    let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}-{}-{hex}", String::from_utf8(ts).expect("ASCII"))
}

/// The MQTT side of a submitter: one client, one event loop, the agent
/// directory and the job's events as they arrive.
pub struct Session {
    client: AsyncClient,
    eventloop: EventLoop,
    wire: Wire,
    pub directory: Directory,
    /// The job whose events are followed.
    job: Option<String>,
    events: VecDeque<TaskEvent>,
    outbox: VecDeque<Outgoing>,
    connected: bool,
    /// When the broker first acknowledged a subscription (retained statuses
    /// follow it).
    subscribed: Option<Instant>,
    broker: BrokerAddr,
    /// A refusal no retry can fix (bad credentials).
    fatal: Option<String>,
    /// What this session keeps published as retained messages, published
    /// again after a reconnection: a restarted broker may have lost them, or
    /// replaced ours with our Last Will while it shut down.
    retained: Vec<Outgoing>,
    /// Agents whose statuses were refused (another cluster key, or none),
    /// and why: said when no capable agent is found.
    pub refused: BTreeMap<String, String>,
}

/// Map tasks per job at most: a reduce assignment carries one CID per map
/// and must stay under the message size limit.
const MAX_MAP_TASKS: usize = 10_000;

/// How long after the broker acknowledged the status subscription its
/// retained statuses are taken to have arrived (they follow the
/// acknowledgement at once).
const STATUS_SETTLE: Duration = Duration::from_millis(150);

impl Session {
    /// `will`: what the broker publishes (retained) if this process vanishes.
    pub fn connect(
        conn: &Connection,
        client_id: &str,
        will: Option<ControllerState>,
        job: Option<&str>,
    ) -> Result<Self, String> {
        let wire = Wire::new(&conn.cluster, conn.key.clone());
        let will = match (will, job) {
            (Some(state), Some(job)) => {
                let o = wire.controller(job, state);
                Some((o.topic, o.payload))
            }
            _ => None,
        };
        let (client, eventloop) = mqtt::client(conn.mqtt.options(client_id, will)?);
        Ok(Session {
            client,
            eventloop,
            wire,
            directory: Directory::default(),
            job: job.map(str::to_string),
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            connected: false,
            subscribed: None,
            broker: conn.mqtt.broker.clone(),
            fatal: None,
            retained: Vec::new(),
            refused: BTreeMap::new(),
        })
    }

    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    fn subscribe_to_events(&self) {
        if let Some(job) = &self.job {
            let _ = self.client.try_subscribe(self.wire.topics().job_events(job), QoS::AtLeastOnce);
        }
    }

    /// Publishes a message; a retained one is published again after every
    /// reconnection (an empty retained payload clears its topic and is not).
    pub fn publish(&mut self, out: Outgoing) {
        if out.retain {
            self.retained.retain(|o| o.topic != out.topic);
            if !out.payload.is_empty() {
                self.retained.push(out.clone());
            }
        }
        self.outbox.push_back(out);
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(out) = self.outbox.pop_front() {
            if let Err(e) =
                self.client.try_publish(&out.topic, QoS::AtLeastOnce, out.retain, out.payload.clone())
            {
                debug!("outgoing queue full ({e}); will retry");
                self.outbox.push_front(out);
                break;
            }
        }
    }

    fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        match self.wire.receive(topic, payload, now_ms()) {
            Ok(Incoming::Event(ev)) if self.job.as_deref() == Some(ev.job.as_str()) => {
                self.events.push_back(ev)
            }
            Ok(Incoming::Status(s)) => {
                self.refused.remove(&s.agent);
                self.directory.update(s);
            }
            Ok(other) => debug!("ignored {other:?}"),
            Err(Refused::Envelope { route: Route::AgentStatus { .. }, why: Rejected::Replayed }) => {}
            Err(Refused::Envelope { route: Route::AgentStatus { agent }, why }) => {
                debug!("rejected a status on {topic}: {why}");
                if self.directory.get(&agent).is_none() {
                    self.refused.insert(agent, why.to_string());
                }
            }
            Err(why @ Refused::Invalid { route: Route::AgentStatus { .. }, .. }) => {
                debug!("ignored a status on {topic}: {why}")
            }
            Err(why) => warn!("rejected a message on {topic}: {why}"),
        }
    }

    /// Handles one event of the MQTT connection. Connection errors are
    /// retried; the first connection failing for `connect_deadline` is fatal.
    async fn poll_once(&mut self) -> Result<(), String> {
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                self.subscribed.get_or_insert_with(Instant::now);
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                self.connected = true;
                let _ = self.client.try_subscribe(self.wire.topics().all_agent_statuses(), QoS::AtLeastOnce);
                self.subscribe_to_events();
                self.outbox.extend(self.retained.iter().cloned());
            }
            Ok(Event::Incoming(Packet::Publish(p))) => self.on_publish(&p.topic, &p.payload),
            Ok(_) => {}
            Err(e) => {
                let why = mqtt::describe(&e);
                if self.connected {
                    warn!("lost the broker {}: {why}; reconnecting", self.broker);
                }
                self.connected = false;
                let msg = format!("cannot reach the MQTT broker {}: {why}", self.broker);
                if mqtt::is_auth_error(&e) {
                    self.fatal = Some(msg.clone());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Err(msg);
            }
        }
        self.flush();
        Ok(())
    }

    /// Lines naming the agents whose statuses were refused, with what to do;
    /// empty when there are none.
    pub fn refused_note(&self) -> String {
        if self.refused.is_empty() {
            return String::new();
        }
        let list: Vec<String> = self.refused.iter().map(|(a, why)| format!("{a}: {why}")).collect();
        format!(
            "\n  ignored (their statuses fail the cluster key check): {}\n  give every agent and submitter the same cluster key file (cluster_key / --cluster-key), or none",
            list.join("; ")
        )
    }

    /// Keeps the connection served while `fut` runs.
    pub async fn pump_until<F: Future>(&mut self, fut: F) -> F::Output {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                r = self.poll_once() => if let Err(e) = r { debug!("{e}") },
            }
        }
    }

    /// Connects and reads the retained agent statuses. Fails after `deadline`
    /// without a connection.
    pub async fn connect_and_listen(&mut self, deadline: Duration) -> Result<(), String> {
        self.connect_and_subscribe(deadline).await?;
        // Retained statuses follow the subscription's acknowledgement at once.
        self.pump_until(tokio::time::sleep(STATUS_SETTLE)).await;
        Ok(())
    }

    /// Connects and waits for the broker to acknowledge the status
    /// subscription; the retained statuses are still on their way. Fails
    /// after `deadline` without a connection.
    pub async fn connect_and_subscribe(&mut self, deadline: Duration) -> Result<(), String> {
        let start = Instant::now();
        let mut last_err = String::new();
        while !self.connected || self.subscribed.is_none() {
            if let Some(f) = &self.fatal {
                return Err(f.clone());
            }
            if start.elapsed() > deadline {
                return Err(format!("{last_err}; is the broker running? (--broker, IPDC_BROKER)"));
            }
            if let Err(e) =
                tokio::time::timeout(Duration::from_secs(2), self.poll_once()).await.unwrap_or(Ok(()))
            {
                last_err = e;
            }
        }
        Ok(())
    }

    pub async fn disconnect(mut self) {
        self.flush();
        let _ = self.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.eventloop.poll().await.is_ok() {}
        })
        .await;
    }
}

/// The least `--wait` for agents started by `--local`.
const LOCAL_MIN_WAIT: Duration = Duration::from_secs(10);

/// Picks K capable agents, waiting up to `wait` for enough of them. Called
/// right after the status subscription was acknowledged: it picks only once
/// the retained statuses had [`STATUS_SETTLE`] to arrive (so the best K of
/// all agents are ranked, not the first K heard of), or, with
/// `local_agents = Some(n)` (a cluster of exactly n agents of this process),
/// as soon as all n have announced themselves.
async fn pick_agents(
    session: &mut Session,
    spec: &JobSpec,
    wait: Duration,
    local_agents: Option<usize>,
) -> Result<Vec<AgentStatus>, String> {
    let req = Requirements {
        needs_python: spec.needs_python,
        min_memory_mb: spec.min_memory_mb,
        arch: spec.arch.clone(),
        have_key: session.wire.is_keyed(),
    };
    // Local agents start with this job: they need a moment to report
    // (their IPFS check too) whatever --wait says.
    let wait = if local_agents.is_some() { wait.max(LOCAL_MIN_WAIT) } else { wait };
    let start = Instant::now();
    let mut said_waiting = false;
    loop {
        let now = now_ms();
        let capable = session.directory.capable(&req, now);
        let enough = match spec.workers {
            Some(k) => capable.len() >= k,
            None => !capable.is_empty(),
        };
        let settled = session.subscribed.is_some_and(|t| t.elapsed() >= STATUS_SETTLE)
            || local_agents.is_some_and(|n| session.directory.all().count() >= n);
        if enough && settled {
            let k = spec.workers.unwrap_or(capable.len());
            let picked: Vec<AgentStatus> = capable.into_iter().take(k).cloned().collect();
            println!("picked {} agent(s):", picked.len());
            for s in &picked {
                println!("  {}", directory::describe(s));
            }
            let others: Vec<_> = session
                .directory
                .capable(&req, now)
                .into_iter()
                .skip(k)
                .map(|s| format!("{} (not needed: the job asks for {k} workers)", s.agent))
                .chain(
                    session.directory.skipped(&req, now).into_iter().map(|(a, why)| format!("{a} ({why})")),
                )
                .collect();
            if !others.is_empty() {
                println!("skipped: {}", others.join(", "));
            }
            return Ok(picked);
        }
        // Local agents that have all reported without Python will not find one.
        // (Online statuses only: a local agent whose first connection was
        // replaced has an offline Will, without Python, in the directory.)
        let online: Vec<&AgentStatus> = session.directory.all().filter(|s| s.online).collect();
        let no_python = req.needs_python
            && local_agents.is_some_and(|n| online.len() >= n)
            && online.iter().all(|s| s.python.is_none());
        if start.elapsed() >= wait || no_python {
            let skipped = session.directory.skipped(&req, now);
            let mut msg = match (spec.workers, local_agents) {
                _ if no_python => "the local agents found no python3 on PATH (3.7 or newer): install it, \
                    or run a native job with --native wordcount"
                    .to_string(),
                (Some(k), _) if !capable.is_empty() => format!(
                    "the job asks for {k} workers but only {} capable agent(s) are online ({}); lower --workers or start more agents",
                    capable.len(),
                    capable.iter().map(|s| s.agent.as_str()).collect::<Vec<_>>().join(", ")
                ),
                (_, Some(_)) => "no local agent can run this job".to_string(),
                _ => "no capable agent is online in this cluster; start ipdc-agent on a board (or use --local N)".to_string(),
            };
            if !skipped.is_empty() {
                msg += &format!(
                    "\n  not capable: {}",
                    skipped.iter().map(|(a, why)| format!("{a}: {why}")).collect::<Vec<_>>().join("; ")
                );
            }
            msg += &session.refused_note();
            return Err(msg);
        }
        if !said_waiting && start.elapsed() > Duration::from_secs(1) {
            println!(
                "waiting up to {} s for {} capable agent(s) ({} so far)...",
                wait.as_secs(),
                spec.workers.map(|k| k.to_string()).unwrap_or_else(|| "1".into()),
                capable.len()
            );
            said_waiting = true;
        }
        // Look again after each message (a status may be what was missing).
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(20), session.poll_once()).await {
            debug!("{e}");
        }
    }
}

/// Runs a job from upload to output folder.
pub async fn run(spec: &JobSpec, conn: &Connection, opts: &RunOptions) -> Result<(), String> {
    let t0 = Instant::now();
    let job = new_job_id(&spec.name);
    let keep = [spec.folder.as_path(), &spec.input, &spec.map_py, &spec.reduce_py];
    let target = output::Target::claim(&spec.out, opts.overwrite, &job, &keep)?;
    // Check the Python files while connecting (an interpreter start is slow).
    let syntax = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || spec.check_python_syntax())
    };
    // With --local, hash the input (for its CID) while connecting and picking
    // agents: nothing leaves this machine, so there is nothing to waste.
    let local_add = match (&opts.local_store, &spec.input_cid) {
        (Some(store), None) => {
            let (store, path) = (store.clone(), spec.input.clone());
            Some(tokio::spawn(async move { store.add_file(&path).await }))
        }
        _ => None,
    };
    let ipfs = IpfsClient::new(&conn.ipfs).map_err(|e| e.to_string())?;
    // Agents drop this job's tasks if this process vanishes (its Last Will).
    let mut session =
        Session::connect(conn, &format!("ipdc-submit-{job}"), Some(ControllerState::Gone), Some(&job))?;
    session.connect_and_subscribe(Duration::from_secs(10)).await?;
    session.publish(session.wire().controller(&job, ControllerState::Running));
    session.pump_until(syntax).await.map_err(|e| format!("syntax check crashed: {e}"))??;
    let picked = pick_agents(&mut session, spec, opts.wait, opts.local_agents).await?;

    // Upload the input and the code while the MQTT connection stays served.
    let upload = async {
        let input = match &spec.input_cid {
            Some(cid) => {
                let size = ipfs.file_size(cid).await.map_err(|e| format!("input {cid}: {e}"))?;
                Input { cid: cid.clone(), size }
            }
            None => match local_add {
                Some(adding) => {
                    let (cid, size) =
                        adding.await.map_err(|e| format!("adding the input crashed: {e}"))??;
                    Input { cid, size }
                }
                None => {
                    let added = ipfs
                        .add_path(&spec.input, false)
                        .await
                        .map_err(|e| format!("uploading the input: {e}"))?;
                    // The store's `Size` is the DAG's; splits need the file's own length.
                    let size = std::fs::metadata(&spec.input)
                        .map_err(|e| format!("input file {}: {e}", spec.input.display()))?
                        .len();
                    Input { cid: added.cid, size }
                }
            },
        };
        if input.size == 0 {
            return Err(format!("input {} is empty: there is nothing to map", input.cid));
        }
        let (map_cid, reduce_cid) = if spec.force_native.is_some() {
            (String::new(), String::new())
        } else {
            let m = ipfs.add_path(&spec.map_py, false).await.map_err(|e| e.to_string())?;
            let r = ipfs.add_path(&spec.reduce_py, false).await.map_err(|e| e.to_string())?;
            (m.cid, r.cid)
        };
        Ok::<_, String>((input, map_cid, reduce_cid))
    };
    let (input, map_cid, reduce_cid) = session.pump_until(upload).await?;
    let input_size = input.size;
    let upload_ms = t0.elapsed().as_millis() as u64;
    info!("input is {} ({} bytes)", input.cid, input_size);

    let splits = splits_for(input_size, picked.iter().map(|s| s.slots));
    if splits.len() > MAX_MAP_TASKS {
        return Err(format!(
            "input of {} needs {} map tasks, more than the limit of {MAX_MAP_TASKS} (a reduce assignment lists every map's output): split the input into several jobs",
            human_bytes(input_size),
            splits.len()
        ));
    }
    let code = CodeSpec {
        map_cid,
        reduce_cid,
        combiner: spec.combiner,
        force_native: spec.force_native.clone(),
        native_fallback: spec.native_fallback.clone(),
        limits: TaskLimits { wall_secs: Some(spec.task_timeout_secs), memory_mb: Some(spec.task_memory_mb) },
        files: CodeFiles::of(&spec.map_py, &spec.reduce_py),
    };
    let plan = JobPlan {
        input_cid: input.cid.clone(),
        input_size,
        splits: splits.iter().map(|s| (s.start, s.end)).collect(),
        reducers: spec.reducers,
        memory_mb: spec.memory_mb,
        accept_timeout_ms: opts.accept_timeout.as_millis() as u64,
        speculative: spec.speculative,
        ..JobPlan::defaults(&job, code)
    };
    println!(
        "job {job}: {} map task(s) over {}, {} reduce task(s), {} agent(s)",
        splits.len(),
        human_bytes(input_size),
        spec.reducers,
        picked.len()
    );
    let agent_slots: Vec<(String, u32)> = picked.iter().map(|s| (s.agent.clone(), s.slots)).collect();
    let mut ctl = Controller::new(plan, &agent_slots);
    let mut view = opts.show_progress.then(ProgressView::new);
    let t_map = Instant::now();
    let (outcome, map_ms) = drive(&mut session, &mut ctl, &picked, &conn.cluster, &job, view.as_mut()).await;
    if let Some(v) = view.as_mut() {
        v.update(ctl.progress());
        v.finish();
    }
    // Tell the agents the job is over, done or not: they drop what is left of it.
    session.publish(session.wire().controller_cleared(&job));
    for s in &picked {
        session.publish(session.wire().command(&s.agent, TaskCommand::EndJob { job: job.clone() }));
    }
    let reduce_ms = (t_map.elapsed().as_millis() as u64).saturating_sub(map_ms);
    if let Err((message, detail)) = outcome {
        session.disconnect().await;
        let mut msg = format!("job {job} failed: {message}");
        if !detail.trim().is_empty() {
            msg += &format!("\n--- detail from the agent ---\n{}", detail.trim_end());
        }
        msg += "\nno output was written";
        return Err(msg);
    }

    let t_out = Instant::now();
    let parts = ctl.part_cids();
    let records = ctl.records();
    let mut summary = build_summary(&job, &input.cid, input_size, spec, &picked, &records, ctl.speculated());
    summary["times_ms"] = json!({
        "upload": upload_ms,
        "map": map_ms,
        "reduce": reduce_ms,
        "total": t0.elapsed().as_millis() as u64,
    });
    let write = target.write(&ipfs, &parts, &summary);
    let written = session.pump_until(write).await;
    session.disconnect().await;
    if let Err(e) = written {
        if opts.local_store.is_some() {
            return Err(e);
        }
        // The parts may still be in IPFS for a while: say where.
        let listed: Vec<String> =
            parts.iter().enumerate().map(|(i, (cid, _))| format!("part-{i:05} {cid}")).collect();
        return Err(format!(
            "{e}\nthe result's parts were added to IPFS unpinned by the agents that made them and may still be \
             there (fetch them with `ipfs cat CID` soon: garbage collection removes them): {}",
            listed.join(", ")
        ));
    }
    let total_ms = t0.elapsed().as_millis() as u64;
    let _ = t_out;
    println!(
        "job {job} done in {:.1} s: {} map + {} reduce task(s) on {} agent(s); {} input records -> {} output records",
        total_ms as f64 / 1000.0,
        summary["map_tasks"],
        summary["reduce_tasks"],
        picked.len(),
        summary["counters"]["map_input_records"],
        summary["counters"]["reduce_output_records"],
    );
    println!("output: {}", spec.out.display());
    Ok(())
}

type Outcome = Option<Result<(), (String, String)>>;

/// The job's event loop: MQTT events and timer ticks into the controller,
/// its actions onto the wire, until the job is done or failed. Returns the
/// outcome and how long the map phase took, in ms.
pub async fn drive(
    session: &mut Session,
    ctl: &mut Controller,
    picked: &[AgentStatus],
    cluster: &str,
    job: &str,
    mut view: Option<&mut ProgressView>,
) -> (Result<(), (String, String)>, u64) {
    let t_map = Instant::now();
    let mut map_ms = None;
    let actions = ctl.start(now_ms());
    let mut outcome = apply(session, cluster, job, actions);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut was_connected = true;
    while outcome.is_none() {
        tokio::select! {
            r = session.poll_once() => if let Err(e) = r { debug!("{e}") },
            _ = tick.tick() => {
                let now = now_ms();
                // While this submitter cannot hear the broker, the silence of
                // the agents tells nothing: the controller's clocks wait.
                if !session.connected {
                    was_connected = false;
                    continue;
                }
                if !was_connected {
                    was_connected = true;
                    ctl.on_reconnect(now);
                }
                let mut actions = ctl.tick(now);
                for s in picked {
                    // Whether it is lost or back is the controller's call.
                    actions.extend(ctl.on_agent_status(&s.agent, session.directory.get(&s.agent), now));
                }
                outcome = apply(session, cluster, job, actions);
                if let Some(v) = view.as_deref_mut() {
                    v.update(ctl.progress());
                }
            }
        }
        while outcome.is_none() {
            let Some(ev) = session.events.pop_front() else { break };
            let actions = ctl.on_event(&ev, now_ms());
            outcome = apply(session, cluster, job, actions);
        }
        if map_ms.is_none() && ctl.phase() != Phase::Map {
            map_ms = Some(t_map.elapsed().as_millis() as u64);
        }
    }
    let map_ms = map_ms.unwrap_or_else(|| t_map.elapsed().as_millis() as u64);
    (outcome.expect("the loop ends with an outcome"), map_ms)
}

/// The job's input in IPFS.
struct Input {
    cid: String,
    size: u64,
}

/// Carries out the controller's actions; returns the job's end when one says so.
fn apply(session: &mut Session, _cluster: &str, job: &str, actions: Vec<Action>) -> Outcome {
    let mut end = None;
    for a in actions {
        let command = |agent: &str, command| session.wire().command(agent, command);
        match a {
            Action::Assign { agent, task } => {
                debug!("assign {} attempt {} to {agent}", task.task, task.attempt);
                let out = command(&agent, TaskCommand::Assign { task });
                session.publish(out);
            }
            Action::Cancel { agent, task, attempt } => {
                debug!("cancel {task} attempt {attempt} on {agent}");
                let out = command(&agent, TaskCommand::Cancel { job: job.to_string(), task, attempt });
                session.publish(out);
            }
            Action::Query { agent } => {
                let out = command(&agent, TaskCommand::Query { job: job.to_string() });
                session.publish(out);
            }
            Action::Warn { message } => warn!("{message}"),
            Action::Finished => end = Some(Ok(())),
            Action::Failed { message, detail } => end = Some(Err((message, detail))),
        }
    }
    end
}

fn build_summary(
    job: &str,
    input_cid: &str,
    input_size: u64,
    spec: &JobSpec,
    picked: &[AgentStatus],
    records: &[crate::controller::TaskRecord],
    speculated: u32,
) -> serde_json::Value {
    let mut map = ExecStats::default();
    let mut reduce = ExecStats::default();
    let mut shuffle_bytes = 0;
    let mut per_agent: BTreeMap<String, (u32, u32, u64)> =
        picked.iter().map(|s| (s.agent.clone(), (0, 0, 0))).collect();
    for r in records {
        let e = per_agent.entry(r.agent.clone()).or_default();
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
    json!({
        "job": job,
        "input": if spec.input_cid.is_some() { serde_json::Value::Null } else { spec.input.display().to_string().into() },
        "input_cid": input_cid,
        "input_bytes": input_size,
        "reducers": spec.reducers,
        "combiner": spec.combiner,
        "executor": executors_used(records),
        "map_tasks": records.iter().filter(|r| r.task.starts_with('m')).count(),
        "speculative_attempts": speculated,
        "speculative_wins": records.iter().filter(|r| r.speculative).count(),
        "reduce_tasks": records.iter().filter(|r| r.task.starts_with('r')).count(),
        "counters": {
            "map_input_records": map.input_records,
            "map_output_records": map.map_output_records,
            "combine_output_records": map.combine_output_records,
            "map_output_written_records": map.output_records,
            "shuffle_bytes": shuffle_bytes,
            "reduce_input_records": reduce.input_records,
            "reduce_input_groups": reduce.reduce_input_groups,
            "reduce_output_records": reduce.output_records,
        },
        "agents": per_agent.iter().map(|(a, (m, r, b))| json!({
            "agent": a, "map_tasks": m, "reduce_tasks": r, "bytes_read": b,
            "arch": picked.iter().find(|s| &s.agent == a).map(|s| s.arch.clone()),
        })).collect::<Vec<_>>(),
        "tasks": records,
    })
}

/// The executor every task ran (`python`, `native:wordcount`), or
/// `mixed: ...` listing them when agents without Python ran the native
/// fallback.
fn executors_used(records: &[crate::controller::TaskRecord]) -> String {
    let used: std::collections::BTreeSet<String> = records.iter().map(|r| r.executor.to_string()).collect();
    match used.len() {
        1 => used.into_iter().next().unwrap_or_default(),
        _ => format!("mixed: {}", used.into_iter().collect::<Vec<_>>().join(", ")),
    }
}

/// The input's splits for the picked agents' slots: per slot, not per
/// agent, as a board runs one task per core at once. Only the input's size
/// (not a huge cluster, or an agent announcing absurd slots) can need more
/// than [`MAX_MAP_TASKS`] splits.
fn splits_for(input_size: u64, slots: impl Iterator<Item = u32>) -> Vec<Split> {
    let slots: usize = slots.map(|s| s.max(1) as usize).sum();
    plan_splits(input_size, slots, MAX_MAP_TASKS)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_have_the_shape_agents_recognise() {
        for name in ["wordcount", "a", "my-job_2"] {
            let id = new_job_id(name);
            assert!(ipdc_common::protocol::looks_like_job_id(&id), "{id}");
        }
    }

    #[test]
    fn splits_follow_the_slots_and_only_the_input_size_can_pass_the_task_limit() {
        const MIB: u64 = 1 << 20;
        // Two splits per slot: agents of 2 and 3 slots, 400 MiB.
        assert_eq!(splits_for(400 * MIB, [2, 3].into_iter()).len(), 10);
        // A slot count of 0 counts as 1.
        assert_eq!(splits_for(400 * MIB, [0, 0].into_iter()).len(), 4);
        // A huge cluster (80 agents of 64 cores) or an absurd slot count stays
        // within the limit on 20 GiB ...
        let big = 20 << 30;
        // (one 4 MiB split per slot: every slot gets one, as 5,120 are within
        // the limit; so do 6,000 slots on 60 GiB, and 20,000 on 600 GiB get
        // the limit, two per slot being past it)
        assert_eq!(splits_for(big, std::iter::repeat_n(64, 80)).len(), 5_120);
        assert_eq!(splits_for(60 << 30, std::iter::repeat_n(1, 6_000)).len(), 6_000);
        assert_eq!(splits_for(600 << 30, std::iter::repeat_n(1, 20_000)).len(), MAX_MAP_TASKS);
        assert!(splits_for(big, [u32::MAX, u32::MAX].into_iter()).len() <= MAX_MAP_TASKS);
        // ... and only an input over MAX_MAP_TASKS * 128 MiB needs more.
        assert!(splits_for(2 << 40, [1].into_iter()).len() > MAX_MAP_TASKS);
    }

    #[test]
    fn job_ids_differ_and_are_topic_safe() {
        let a = new_job_id("wordcount");
        let b = new_job_id("wordcount");
        assert_ne!(a, b);
        ipdc_common::protocol::validate_name("job", &a).unwrap();
        assert!(a.starts_with("wordcount-"));
    }

    #[test]
    fn bytes_read_like_a_human_would() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}

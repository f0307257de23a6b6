//! The submitter's MQTT session: one client and its event loop, the job's
//! controller status (said again, with a fresh Last Will, on every
//! connection), the agent directory built from the retained statuses, and
//! the followed job's events as they arrive. Every message goes through the
//! cluster's [`Wire`]; `poll_once` is the one place that polls the connection.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use ipdc_common::auth::Rejected;
use ipdc_common::mqtt::{self, BrokerAddr};
use ipdc_common::protocol::{
    ControllerState, ControllerStatus, Incoming, JobInfo, Outgoing, Refused, Route, TaskCommand, TaskEvent,
    Wire, now_ms,
};
use log::{debug, warn};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};

use crate::cluster::Connection;
use crate::directory::Directory;

/// The MQTT side of a submitter: one client, one event loop, the agent
/// directory and the job's events as they arrive.
pub struct Session {
    client: AsyncClient,
    eventloop: EventLoop,
    wire: Wire,
    pub directory: Directory,
    /// The job whose events are followed, and whose controller this is.
    job: Option<String>,
    /// Whether the job's controller is running (said on every connection;
    /// its Last Will says gone).
    running: bool,
    /// When the current connection (attempt) began: the epoch of its
    /// controller status and Last Will.
    epoch: u64,
    events: VecDeque<TaskEvent>,
    outbox: VecDeque<Outgoing>,
    connected: bool,
    /// When the broker first acknowledged a subscription (retained statuses
    /// follow it).
    subscribed: Option<Instant>,
    broker: BrokerAddr,
    /// A refusal no retry can fix (bad credentials), or a broker that keeps
    /// closing the connection right after accepting it.
    fatal: Option<String>,
    /// When the current connection was accepted, and how many in a row were
    /// closed soon after being accepted, with the same error.
    connected_at: Option<Instant>,
    quick_drops: (u32, String),
    /// When the next connection may be tried, after a failed one.
    retry_at: Option<tokio::time::Instant>,
    /// Agents whose statuses were refused (another cluster key, or none),
    /// and why: said when no capable agent is found.
    pub refused: BTreeMap<String, String>,
    /// What the controller status says of the job (`ipdc-submit jobs`).
    info: Option<JobInfo>,
    /// Who asked this job to stop (`ipdc-submit cancel`), once one did.
    cancelled_by: Option<String>,
    /// With [`Session::watch_jobs`]: the cluster's running jobs, by id.
    pub jobs: Option<BTreeMap<String, ControllerStatus>>,
    /// Every job's events are taken, not only the followed job's (the dashboard).
    all_events: bool,
}

/// How long after the broker acknowledged the status subscription its
/// retained statuses are taken to have arrived (they follow the
/// acknowledgement at once).
pub const STATUS_SETTLE: Duration = Duration::from_millis(150);

/// A connection closed within this long after it was accepted...
const QUICK_DROP: Duration = Duration::from_secs(5);
/// ...this many times in a row, the same way, is a refusal no retry fixes.
const QUICK_DROPS_FATAL: u32 = 5;

impl Session {
    /// A session following `job` (as its controller), or none (reading the
    /// agents' statuses only).
    pub fn connect(conn: &Connection, client_id: &str, job: Option<&str>) -> Result<Self, String> {
        let wire = Wire::new(&conn.cluster, conn.credentials.clone());
        let (client, eventloop) = mqtt::client(conn.mqtt.options(client_id, None)?);
        let mut session = Session {
            client,
            eventloop,
            wire,
            directory: Directory::default(),
            job: job.map(str::to_string),
            running: false,
            epoch: 0,
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            connected: false,
            subscribed: None,
            broker: conn.mqtt.broker.clone(),
            fatal: None,
            connected_at: None,
            quick_drops: (0, String::new()),
            retry_at: None,
            refused: BTreeMap::new(),
            info: None,
            cancelled_by: None,
            jobs: None,
            all_events: false,
        };
        session.next_connection();
        Ok(session)
    }

    /// Before every (re)connection: a new epoch, and the job's Last Will
    /// (agents drop its tasks if this process vanishes) sealed afresh, as a
    /// Will sealed once would be refused as a replay the second time.
    fn next_connection(&mut self) {
        self.epoch = now_ms();
        if let Some(job) = &self.job {
            let will = self.wire.controller(job, ControllerState::Gone, self.epoch);
            mqtt::set_will(&mut self.eventloop, will.topic, will.payload);
        }
    }

    /// Says the job's controller is running, now and after every reconnection
    /// (a restarted broker may have lost the status, or published our Will).
    pub fn announce_running(&mut self) {
        self.running = true;
        self.say_running();
    }

    fn say_running(&mut self) {
        if let (true, Some(job)) = (self.running, &self.job) {
            let out = self.wire.controller_running(job, self.epoch, self.info.clone());
            self.publish(out);
        }
    }

    /// Says how the job stands in its controller status (when it changed).
    pub fn set_info(&mut self, info: JobInfo) {
        if self.info.as_ref() != Some(&info) {
            self.info = Some(info);
            self.say_running();
        }
    }

    /// Changes what the controller status says of the job.
    pub fn update_info(&mut self, change: impl FnOnce(&mut JobInfo)) {
        let mut info = self.info.clone().unwrap_or_default();
        change(&mut info);
        self.set_info(info);
    }

    /// Who asked the job to stop, once someone did: the signer's name in a
    /// keyed cluster, and who they say they are.
    pub fn cancelled_by(&self) -> Option<&str> {
        self.cancelled_by.as_deref()
    }

    /// Follows every job's controller status (into `jobs`).
    pub fn watch_jobs(&mut self) {
        self.jobs = Some(BTreeMap::new());
        let _ = self.client.try_subscribe(self.wire.topics().all_job_controllers(), QoS::AtLeastOnce);
    }

    /// Takes every job's events (see [`Session::next_event`]).
    pub fn watch_all_events(&mut self) {
        self.all_events = true;
        let _ = self.client.try_subscribe(self.wire.topics().all_job_events(), QoS::AtMostOnce);
    }

    /// Asks job `job`'s submitter to stop it, saying who asks.
    pub fn ask_to_cancel(&mut self, job: &str, by: &str) {
        let out = self.wire.cancel(job, by);
        self.publish(out);
    }

    /// The job is over: its controller status is cleared and every agent in
    /// `agents` is told to drop what is left of it.
    pub fn end_job<'a>(&mut self, agents: impl IntoIterator<Item = &'a str>) {
        let Some(job) = self.job.clone() else { return };
        self.running = false;
        self.publish(self.wire.controller_cleared(&job));
        for agent in agents {
            self.command(agent, TaskCommand::EndJob { job: job.clone() });
        }
    }

    /// The job this session runs, if any.
    pub fn job(&self) -> Option<&str> {
        self.job.as_deref()
    }

    /// Sends a command to `agent`'s current run (the session in its latest status).
    pub fn command(&mut self, agent: &str, command: TaskCommand) {
        let session = self.directory.get(agent).map(|s| s.session.clone()).unwrap_or_default();
        let out = self.wire.command(agent, &session, command);
        self.publish(out);
    }

    pub fn wire(&self) -> &Wire {
        &self.wire
    }

    /// Whether the broker connection is up now.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the retained statuses have had time to arrive since the
    /// broker acknowledged the subscription.
    pub fn statuses_settled(&self) -> bool {
        self.subscribed.is_some_and(|t| t.elapsed() >= STATUS_SETTLE)
    }

    /// The next event of the followed job, in arrival order.
    pub fn next_event(&mut self) -> Option<TaskEvent> {
        self.events.pop_front()
    }

    fn subscribe_to_events(&self) {
        if let Some(job) = &self.job {
            let _ = self.client.try_subscribe(self.wire.topics().job_events(job), QoS::AtLeastOnce);
            let _ = self.client.try_subscribe(self.wire.topics().job_cancel(job), QoS::AtLeastOnce);
        }
        if self.jobs.is_some() {
            let _ = self.client.try_subscribe(self.wire.topics().all_job_controllers(), QoS::AtLeastOnce);
        }
        if self.all_events {
            let _ = self.client.try_subscribe(self.wire.topics().all_job_events(), QoS::AtMostOnce);
        }
    }

    fn publish(&mut self, out: Outgoing) {
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
        let now = now_ms();
        match self.wire.receive(topic, payload, now) {
            Ok(Incoming::Event(ev)) if self.all_events || self.job.as_deref() == Some(ev.job.as_str()) => {
                self.events.push_back(ev)
            }
            Ok(Incoming::Status(s)) => {
                self.refused.remove(&s.agent);
                self.directory.update(s);
            }
            Ok(Incoming::Cancel { request, from }) if self.job.as_deref() == Some(request.job.as_str()) => {
                let who = match from {
                    Some(signer) => format!("submitter {signer} ({})", request.by),
                    None => request.by,
                };
                self.cancelled_by.get_or_insert(who);
            }
            Ok(Incoming::Controller { status, .. }) if self.jobs.is_some() => {
                let jobs = self.jobs.as_mut().expect("watching jobs");
                match status.state {
                    ControllerState::Running => jobs.insert(status.job.clone(), status),
                    ControllerState::Gone => jobs.remove(&status.job),
                };
            }
            Ok(Incoming::ControllerCleared { job }) if self.jobs.is_some() => {
                self.jobs.as_mut().expect("watching jobs").remove(&job);
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
            Err(why) => {
                if let Some(line) = self.wire.refusal_line(topic, &why, now) {
                    warn!("{line}");
                }
            }
        }
    }

    /// Handles one event of the MQTT connection (the one place that polls
    /// it). Connection errors are retried after a pause and returned.
    pub async fn poll_once(&mut self) -> Result<(), String> {
        // The pause after a failed connection is taken here, before the next
        // try, not after the failure: callers' select!s drop this future
        // often, and an error must reach them at once.
        if let Some(at) = self.retry_at.take() {
            tokio::time::sleep_until(at).await;
        }
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                self.subscribed.get_or_insert_with(Instant::now);
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                self.connected = true;
                self.connected_at = Some(Instant::now());
                let _ = self.client.try_subscribe(self.wire.topics().all_agent_statuses(), QoS::AtLeastOnce);
                self.subscribe_to_events();
                self.say_running();
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
                // Accepted, then closed at once, the same way, again and again:
                // no retry will fix it (another client with this id, a broker
                // that refuses what this program sends).
                let quick = self.connected_at.take().is_some_and(|t| t.elapsed() < QUICK_DROP);
                self.quick_drops = match (quick, &self.quick_drops) {
                    (true, (n, last)) if *last == why => (n + 1, why.clone()),
                    (true, _) => (1, why.clone()),
                    (false, _) => (0, String::new()),
                };
                if self.quick_drops.0 >= QUICK_DROPS_FATAL {
                    self.fatal = Some(format!(
                        "the MQTT broker {} closed this connection {} times in a row right after accepting it ({why}); \
                         is another program connected with the same client id, or does the broker refuse what it is sent?",
                        self.broker, self.quick_drops.0
                    ));
                }
                self.next_connection();
                self.retry_at = Some(tokio::time::Instant::now() + Duration::from_millis(500));
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
            "\n  ignored (their statuses fail the key check): {}\n  give every agent and submitter its own key (node_key / --node-key) and the same trust file listing them (trust / --trust), or none",
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

    /// A refusal no retry can fix, once one happened.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    /// Connects and reads the retained agent statuses. Fails after `deadline`
    /// without a connection, and when the connection is lost while the
    /// statuses arrive (what it read would not be the whole cluster).
    pub async fn connect_and_listen(&mut self, deadline: Duration) -> Result<(), String> {
        self.connect_and_subscribe(deadline).await?;
        // Retained statuses follow the subscription's acknowledgement at once.
        let mut lost = None;
        let settle = tokio::time::sleep(STATUS_SETTLE);
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                r = self.poll_once() => if let Err(e) = r { lost = Some(e) },
            }
        }
        match lost {
            Some(e) => Err(format!("lost the connection while reading the agents' statuses: {e}")),
            None => Ok(()),
        }
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

//! The submitter's MQTT session: one client and its event loop, what it
//! keeps published (retained, published again after every reconnection),
//! the agent directory built from the retained statuses, and the followed
//! job's events as they arrive. Every message goes through the cluster's
//! [`Wire`]; `poll_once` is the one place that polls the connection.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use ipdc_common::auth::Rejected;
use ipdc_common::mqtt::{self, BrokerAddr};
use ipdc_common::protocol::{ControllerState, Incoming, Outgoing, Refused, Route, TaskEvent, Wire, now_ms};
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

/// How long after the broker acknowledged the status subscription its
/// retained statuses are taken to have arrived (they follow the
/// acknowledgement at once).
pub const STATUS_SETTLE: Duration = Duration::from_millis(150);

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

    /// Handles one event of the MQTT connection (the one place that polls
    /// it). Connection errors are retried after a pause and returned.
    pub async fn poll_once(&mut self) -> Result<(), String> {
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

//! [`Wire`]: one cluster's topics and this node's envelope, the only way
//! either program puts a message on MQTT ([`Outgoing`]) or takes one off it
//! ([`Incoming`]).
//!
//! An incoming publish is routed by its topic, opened (signature for this
//! topic, freshness, replay: [`crate::auth`]), decoded, and checked against
//! its topic and its signer, in that order; any failure is a [`Refused`]
//! that says which step refused it. In a keyed cluster:
//!
//! | topic | signed by | and |
//! |---|---|---|
//! | `agents/<id>/status` | agent `<id>` | the status names `<id>` |
//! | `agents/<id>/tasks` | a submitter | |
//! | `jobs/<job>/events` | the agent the event names | the event names `<job>` |
//! | `jobs/<job>/controller` | a submitter | the status names `<job>` |
//! | `jobs/<job>/cancel` | a submitter | the request names `<job>` |
//!
//! so a result counts only as the agent that signed it, and a board's key
//! speaks for that board alone. (Which submitter owns a job is the agent's
//! to check: [`Incoming`] says who signed.) Retained topics get an opener
//! whose window allows old messages: a status or a Last Will may be days
//! old when it arrives, and its signature still counts.

use std::collections::HashMap;
use std::time::Duration;

use crate::auth::{Credentials, Identity, Opener, Rejected, Role, Sealer};

use super::{
    AgentStatus, CancelRequest, ControllerState, ControllerStatus, DecodeError, JobInfo, Message, Route,
    TaskCommand, TaskEvent, TaskMessage, Topics,
};

/// How old a signed retained message may be.
const RETAINED_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// A message ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// An incoming message that passed every check. `from`: the submitter that
/// signed it (None in an open cluster).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Status(AgentStatus),
    /// On `agent`'s task topic.
    Command {
        agent: String,
        message: TaskMessage,
        from: Option<String>,
    },
    Event(TaskEvent),
    Controller {
        status: ControllerStatus,
        from: Option<String>,
    },
    /// The job's retained controller status was cleared.
    ControllerCleared {
        job: String,
    },
    /// Someone asks the job's submitter to stop it.
    Cancel {
        request: CancelRequest,
        from: Option<String>,
    },
}

/// Why an incoming publish was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Not a topic of this cluster's contract (or a name in it is not valid).
    Unrouted,
    /// The envelope refused it: unsigned, unknown or revoked signer, forged,
    /// stale, replayed, too large.
    Envelope { route: Route, why: Rejected },
    /// Opened, but not a valid message for its topic, or its signer may not
    /// say it there.
    Invalid { route: Route, why: String },
}

impl Refused {
    /// A short name of the reason, for counting refusals by kind.
    pub fn kind(&self) -> String {
        match self {
            Refused::Unrouted => "unrouted".into(),
            Refused::Envelope { why, .. } => format!("{why:?}"),
            Refused::Invalid { .. } => "invalid".into(),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unrouted => f.write_str("not a topic of this cluster"),
            Refused::Envelope { why, .. } => write!(f, "{why}"),
            Refused::Invalid { why, .. } => f.write_str(why),
        }
    }
}

/// One cluster's topics and this node's envelope for it. One per MQTT
/// connection: its openers keep the replay caches and the counters.
#[derive(Debug)]
pub struct Wire {
    topics: Topics,
    sealer: Sealer,
    /// Task commands and events: signed, fresh and never replayed.
    fresh: Opener,
    /// Retained statuses: may be old; replays are what re-subscribing gives.
    retained: Opener,
    refusals: RefusalLog,
}

impl Wire {
    /// With credentials, everything sent is signed and only what the trust
    /// file allows is taken; without, the cluster is open.
    pub fn new(cluster: &str, credentials: Option<Credentials>) -> Self {
        let (key, trust) = match credentials {
            Some(c) => (Some(c.key), Some(c.trust)),
            None => (None, None),
        };
        Wire {
            topics: Topics::new(cluster),
            sealer: Sealer::new(key),
            fresh: Opener::new(trust.clone()),
            retained: Opener::new(trust).with_window(RETAINED_WINDOW),
            refusals: RefusalLog::default(),
        }
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Whether messages are signed and only signed ones are taken.
    pub fn is_keyed(&self) -> bool {
        self.sealer.is_keyed()
    }

    /// Incoming messages refused so far, for any reason.
    pub fn rejected(&self) -> u64 {
        self.refusals.total
    }

    fn out(&self, topic: String, body: &[u8], retain: bool) -> Outgoing {
        Outgoing { payload: self.sealer.seal(&topic, body), topic, retain }
    }

    /// An agent's retained status (also its Last Will, when offline).
    pub fn status(&self, status: &AgentStatus) -> Outgoing {
        self.out(self.topics.agent_status(&status.agent), &status.encode(), true)
    }

    /// A command for `agent`'s run `session` (from its status).
    pub fn command(&self, agent: &str, session: &str, command: TaskCommand) -> Outgoing {
        self.out(self.topics.agent_tasks(agent), &TaskMessage::new(session, command).encode(), false)
    }

    pub fn event(&self, event: &TaskEvent) -> Outgoing {
        self.out(self.topics.job_events(&event.job), &event.encode(), false)
    }

    /// A controller's retained status (its Last Will says `Gone`), for the
    /// connection that began at `epoch`.
    pub fn controller(&self, job: &str, state: ControllerState, epoch: u64) -> Outgoing {
        self.out(self.topics.job_controller(job), &ControllerStatus::new(job, state, epoch).encode(), true)
    }

    /// A running controller's status with what `jobs` shows of it.
    pub fn controller_running(&self, job: &str, epoch: u64, info: Option<JobInfo>) -> Outgoing {
        let status = ControllerStatus { info, ..ControllerStatus::new(job, ControllerState::Running, epoch) };
        self.out(self.topics.job_controller(job), &status.encode(), true)
    }

    /// Asks job `job`'s submitter to stop it.
    pub fn cancel(&self, job: &str, by: &str) -> Outgoing {
        self.out(self.topics.job_cancel(job), &CancelRequest::new(job, by).encode(), false)
    }

    /// Clears a job's retained controller status.
    pub fn controller_cleared(&self, job: &str) -> Outgoing {
        Outgoing { topic: self.topics.job_controller(job), payload: Vec::new(), retain: true }
    }

    /// Routes, opens, decodes and checks one incoming publish. A refusal is
    /// counted; [`Wire::refusal_line`] says when one is worth a log line.
    pub fn receive(&mut self, topic: &str, payload: &[u8], now_ms: u64) -> Result<Incoming, Refused> {
        let r = self.check(topic, payload, now_ms);
        if let Err(why) = &r {
            self.refusals.count(why);
        }
        r
    }

    fn check(&mut self, topic: &str, payload: &[u8], now_ms: u64) -> Result<Incoming, Refused> {
        let route = self.topics.route(topic).ok_or(Refused::Unrouted)?;
        if let Route::JobController { job } = &route
            && payload.is_empty()
        {
            return Ok(Incoming::ControllerCleared { job: job.clone() });
        }
        let opener = if route.is_retained() { &mut self.retained } else { &mut self.fresh };
        let opened = match opener.open(topic, payload, now_ms) {
            Ok(o) => o,
            Err(why) => return Err(Refused::Envelope { route, why }),
        };
        let invalid = |why: String| Refused::Invalid { route: route.clone(), why };
        let decoded = |e: DecodeError| invalid(e.to_string());
        let signer = opened.signer.as_ref();
        // In an open cluster there is no signer, and anyone may say anything.
        let signed_as = |role: Role, name: Option<&str>| match signer {
            None => Ok(()),
            Some(id) if id.role == role && name.is_none_or(|n| n == id.name) => Ok(()),
            Some(id) => Err(invalid(format!(
                "signed by {id}, who may not say this here (only {role}{})",
                name.map(|n| format!(" {n}")).unwrap_or_default()
            ))),
        };
        let from = || signer.map(|id: &Identity| id.name.clone());
        match &route {
            Route::AgentStatus { agent } => {
                let s = AgentStatus::decode(opened.body).map_err(decoded)?;
                if s.agent != *agent {
                    return Err(invalid(format!("a status of agent {:?} on {agent}'s topic", s.agent)));
                }
                signed_as(Role::Agent, Some(agent))?;
                Ok(Incoming::Status(s))
            }
            Route::AgentTasks { agent } => {
                let message = TaskMessage::decode(opened.body).map_err(decoded)?;
                signed_as(Role::Submitter, None)?;
                Ok(Incoming::Command { agent: agent.clone(), message, from: from() })
            }
            Route::JobEvents { job } => {
                let ev = TaskEvent::decode(opened.body).map_err(decoded)?;
                if ev.job != *job {
                    return Err(invalid(format!("an event of job {:?} on job {job}'s topic", ev.job)));
                }
                signed_as(Role::Agent, Some(&ev.agent))?;
                Ok(Incoming::Event(ev))
            }
            Route::JobController { job } => {
                let status = ControllerStatus::decode(opened.body).map_err(decoded)?;
                if status.job != *job {
                    return Err(invalid(format!("a status of job {:?} on job {job}'s topic", status.job)));
                }
                signed_as(Role::Submitter, None)?;
                Ok(Incoming::Controller { status, from: from() })
            }
            Route::JobCancel { job } => {
                let request = CancelRequest::decode(opened.body).map_err(decoded)?;
                if request.job != *job || !request.by_is_plain() {
                    return Err(invalid(format!("a cancel of job {:?} on job {job}'s topic", request.job)));
                }
                signed_as(Role::Submitter, None)?;
                Ok(Incoming::Cancel { request, from: from() })
            }
        }
    }

    /// A log line for refusal `why` at `now_ms`, at most one per kind of
    /// refusal per [`REFUSAL_LOG_INTERVAL`], saying how many were refused
    /// since the last line; None when this one is not worth a line.
    pub fn refusal_line(&mut self, topic: &str, why: &Refused, now_ms: u64) -> Option<String> {
        self.refusals.line(topic, why, now_ms)
    }
}

/// How often a kind of refusal may be logged.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Refusals counted by kind, and when each kind was last logged: a flood of
/// bad messages costs a counter each, not a log line each.
#[derive(Debug, Default)]
struct RefusalLog {
    total: u64,
    /// Per kind: refused since the last line, and when that line was.
    kinds: HashMap<String, (u64, Option<u64>)>,
}

impl RefusalLog {
    fn count(&mut self, why: &Refused) {
        self.total += 1;
        self.kinds.entry(why.kind()).or_default().0 += 1;
    }

    fn line(&mut self, topic: &str, why: &Refused, now_ms: u64) -> Option<String> {
        let (since, last) = self.kinds.entry(why.kind()).or_default();
        let due = last.is_none_or(|t| now_ms.saturating_sub(t) >= REFUSAL_LOG_INTERVAL.as_millis() as u64);
        if !due {
            return None;
        }
        let line = match *since {
            0 | 1 => format!("rejected a message on {topic}: {why}"),
            n => format!(
                "rejected {n} messages in the last {} s like this one on {topic}: {why}",
                REFUSAL_LOG_INTERVAL.as_secs()
            ),
        };
        *since = 0;
        *last = Some(now_ms);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EventKind, PROTOCOL_VERSION, sample_task};
    use super::*;
    use crate::auth::{NodeKey, TrustList, TrustSource};

    struct Cluster {
        laptop: NodeKey,
        pi1: NodeKey,
        pi2: NodeKey,
        trust: TrustSource,
    }

    fn cluster() -> Cluster {
        let (laptop, pi1, pi2) =
            (NodeKey::generate().unwrap(), NodeKey::generate().unwrap(), NodeKey::generate().unwrap());
        let text = format!(
            "submitter laptop {}\nagent pi-1 {}\nagent pi-2 {}\n",
            laptop.public(),
            pi1.public(),
            pi2.public()
        );
        Cluster { trust: TrustSource::fixed(TrustList::parse(&text).unwrap()), laptop, pi1, pi2 }
    }

    impl Cluster {
        fn wire(&self, key: &NodeKey) -> Wire {
            Wire::new("lab", Some(Credentials { key: key.clone(), trust: self.trust.clone() }))
        }
    }

    fn receive(w: &mut Wire, o: &Outgoing) -> Result<Incoming, Refused> {
        w.receive(&o.topic, &o.payload, super::super::now_ms())
    }

    fn event(agent: &str) -> TaskEvent {
        TaskEvent {
            v: PROTOCOL_VERSION,
            job: "j1".into(),
            task: "m-00000".into(),
            attempt: 1,
            agent: agent.into(),
            kind: EventKind::Accepted,
        }
    }

    #[test]
    fn every_message_sent_is_received_as_what_it_was() {
        let c = cluster();
        let (submitter, agent) = (c.wire(&c.laptop), c.wire(&c.pi1));
        for (mut at_agent, mut at_submitter, keyed) in [
            (c.wire(&c.pi1), c.wire(&c.laptop), true),
            (Wire::new("lab", None), Wire::new("lab", None), false),
        ] {
            let mut status = AgentStatus::offline("pi-1");
            status.online = true;
            let o = agent.status(&status);
            assert!(o.retain);
            assert_eq!(receive(&mut at_submitter, &o), Ok(Incoming::Status(status)));

            let task = sample_task();
            let o = submitter.command("pi-1", "s1", TaskCommand::Assign { task: task.clone() });
            assert!(!o.retain);
            let Ok(Incoming::Command { agent, message, from }) = receive(&mut at_agent, &o) else { panic!() };
            assert_eq!((agent.as_str(), message.to.as_str()), ("pi-1", "s1"));
            assert_eq!(message.command, TaskCommand::Assign { task });
            assert_eq!(from.as_deref(), keyed.then_some("laptop"));

            let ev = event("pi-1");
            assert_eq!(receive(&mut at_submitter, &c.wire(&c.pi1).event(&ev)), Ok(Incoming::Event(ev)));

            let o = submitter.controller("j1", ControllerState::Gone, 5);
            let status = ControllerStatus::new("j1", ControllerState::Gone, 5);
            let from = keyed.then(|| "laptop".to_string());
            assert_eq!(receive(&mut at_agent, &o), Ok(Incoming::Controller { status, from }));
            let o = submitter.controller_cleared("j1");
            assert_eq!(receive(&mut at_agent, &o), Ok(Incoming::ControllerCleared { job: "j1".into() }));
        }
    }

    #[test]
    fn a_key_speaks_only_for_its_own_node_and_role() {
        let c = cluster();
        let mut at_submitter = c.wire(&c.laptop);
        let mut at_agent = c.wire(&c.pi1);
        // pi-2 reporting as pi-1: a status, and a result.
        let o = c.wire(&c.pi2).status(&AgentStatus { online: true, ..AgentStatus::offline("pi-1") });
        assert!(
            matches!(receive(&mut at_submitter, &o), Err(Refused::Invalid { .. })),
            "status as another agent"
        );
        let o = c.wire(&c.pi2).event(&event("pi-1"));
        assert!(
            matches!(receive(&mut at_submitter, &o), Err(Refused::Invalid { .. })),
            "result as another agent"
        );
        // An agent's key cannot assign tasks or end a job.
        let o = c.wire(&c.pi2).command("pi-1", "s1", TaskCommand::EndJob { job: "j1".into() });
        assert!(matches!(receive(&mut at_agent, &o), Err(Refused::Invalid { .. })));
        let o = c.wire(&c.pi2).controller("j1", ControllerState::Gone, 1);
        assert!(matches!(receive(&mut at_agent, &o), Err(Refused::Invalid { .. })));
        // A key the trust file does not list.
        let stranger =
            Wire::new("lab", Some(Credentials { key: NodeKey::generate().unwrap(), trust: c.trust.clone() }));
        let o = stranger.command("pi-1", "s1", TaskCommand::EndJob { job: "j1".into() });
        assert!(matches!(
            receive(&mut at_agent, &o),
            Err(Refused::Envelope { why: Rejected::UnknownSigner, .. })
        ));
    }

    #[test]
    fn a_cancel_counts_only_from_a_submitter_and_for_its_own_topics_job() {
        let c = cluster();
        let mut at_submitter = c.wire(&c.laptop);
        let o = c.wire(&c.laptop).cancel("j1", "alice@desk");
        match receive(&mut at_submitter, &o) {
            Ok(Incoming::Cancel { request, from }) => {
                assert_eq!(
                    (request.job.as_str(), request.by.as_str(), from.as_deref()),
                    ("j1", "alice@desk", Some("laptop"))
                )
            }
            other => panic!("{other:?}"),
        }
        let o = c.wire(&c.pi1).cancel("j1", "pi-1@board");
        assert!(matches!(receive(&mut at_submitter, &o), Err(Refused::Invalid { .. })), "an agent's cancel");
        let o = Wire::new("lab", None).cancel("j1", "stranger@x");
        assert!(matches!(receive(&mut at_submitter, &o), Err(Refused::Envelope { .. })), "unsigned");
        let mut o = c.wire(&c.laptop).cancel("j2", "alice@desk");
        o.topic = c.wire(&c.laptop).topics().job_cancel("j1");
        assert!(receive(&mut at_submitter, &o).is_err(), "another job's cancel");
        let o = c.wire(&c.laptop).cancel("j1", "alice\n[WARN] forged log line");
        assert!(
            matches!(receive(&mut at_submitter, &o), Err(Refused::Invalid { .. })),
            "a by that is not one line"
        );
    }

    #[test]
    fn a_signed_message_replayed_on_another_topic_is_refused() {
        let c = cluster();
        let mut at_pi2 = c.wire(&c.pi2);
        let mut o = c.wire(&c.laptop).command("pi-1", "s1", TaskCommand::Assign { task: sample_task() });
        o.topic = c.wire(&c.laptop).topics().agent_tasks("pi-2");
        assert!(matches!(
            receive(&mut at_pi2, &o),
            Err(Refused::Envelope { why: Rejected::BadSignature, .. })
        ));
    }

    #[test]
    fn a_message_on_a_topic_that_is_not_its_own_is_refused() {
        let (sender, mut receiver) = (Wire::new("lab", None), Wire::new("lab", None));
        let mut o = sender.status(&AgentStatus::offline("pi-2"));
        o.topic = sender.topics().agent_status("pi-1");
        assert!(matches!(receive(&mut receiver, &o), Err(Refused::Invalid { .. })));
        let mut o = sender.controller("/some/dir", ControllerState::Gone, 1);
        o.topic = sender.topics().job_controller("j1");
        assert!(matches!(receive(&mut receiver, &o), Err(Refused::Invalid { .. })));
        let mut o = sender.controller("..", ControllerState::Gone, 1);
        o.topic = "ipdc/lab/jobs/../controller".into();
        assert_eq!(receive(&mut receiver, &o), Err(Refused::Unrouted));
        assert_eq!(receiver.rejected(), 3);
    }

    #[test]
    fn a_fresh_message_is_taken_once_and_a_retained_one_may_be_old() {
        let c = cluster();
        let sender = c.wire(&c.laptop);
        let mut receiver = c.wire(&c.pi1);
        let o = sender.command("pi-1", "s1", TaskCommand::EndJob { job: "j1".into() });
        assert!(receive(&mut receiver, &o).is_ok());
        assert!(matches!(receive(&mut receiver, &o), Err(Refused::Envelope { why: Rejected::Replayed, .. })));
        let o = sender.controller("j1", ControllerState::Gone, 1);
        let a_day_later = super::super::now_ms() + 24 * 3600 * 1000;
        assert!(receiver.receive(&o.topic, &o.payload, a_day_later).is_ok());
        let o = sender.command("pi-1", "s1", TaskCommand::EndJob { job: "j1".into() });
        assert!(matches!(
            receiver.receive(&o.topic, &o.payload, a_day_later),
            Err(Refused::Envelope { why: Rejected::Stale, .. })
        ));
    }

    #[test]
    fn refusals_are_logged_once_per_kind_per_interval_with_a_count() {
        let mut w =
            Wire::new("lab", Some(Credentials { key: NodeKey::generate().unwrap(), trust: cluster().trust }));
        let topic = "ipdc/lab/agents/pi-1/tasks";
        let mut lines = Vec::new();
        for i in 0..20_000u64 {
            let now = 1_000_000 + i; // 20 s in all
            if let Err(why) = w.receive(topic, b"{\"v\":2}", now) {
                lines.extend(w.refusal_line(topic, &why, now));
            }
        }
        assert_eq!(w.rejected(), 20_000);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("rejected a message on"), "{}", lines[0]);
        assert!(lines[1].starts_with("rejected 10000 messages in the last 10 s"), "{}", lines[1]);
    }
}

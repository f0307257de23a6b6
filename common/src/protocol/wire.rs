//! [`Wire`]: one cluster's topics and envelope, the only way either program
//! puts a message on MQTT ([`Outgoing`]) or takes one off it ([`Incoming`]).
//!
//! An incoming publish is routed by its topic, opened (signature, freshness,
//! replay: [`crate::auth`]), decoded, and checked against its topic (a status
//! names the agent whose topic it is on, an event or a controller status the
//! job whose topic it is on), in that order; any failure is a [`Refused`] that
//! says which step refused it. Retained topics get an opener whose window
//! allows old messages: a status or a Last Will may be days old when it
//! arrives, and its signature still counts.

use std::time::Duration;

use crate::auth::{ClusterKey, Opener, Rejected, Sealer};

use super::{
    AgentStatus, ControllerState, ControllerStatus, DecodeError, Message, Route, TaskCommand, TaskEvent,
    TaskMessage, Topics,
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

/// An incoming message that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Status(AgentStatus),
    /// On `agent`'s task topic.
    Command {
        agent: String,
        message: TaskMessage,
    },
    Event(TaskEvent),
    Controller(ControllerStatus),
    /// The job's retained controller status was cleared: it ended normally.
    ControllerCleared {
        job: String,
    },
}

/// Why an incoming publish was not taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// Not a topic of this cluster's contract (or a name in it is not valid).
    Unrouted,
    /// The envelope refused it: unsigned, forged, stale, replayed, too large.
    Envelope { route: Route, why: Rejected },
    /// It opened, but is not a valid message for its topic.
    Invalid { route: Route, why: String },
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

/// One cluster's topics and this program's envelope for it. One per MQTT
/// connection: its openers keep the replay caches and the counters.
#[derive(Debug)]
pub struct Wire {
    topics: Topics,
    sealer: Sealer,
    /// Task commands and events: signed, fresh and never replayed.
    fresh: Opener,
    /// Retained statuses: may be old; replays are what re-subscribing gives.
    retained: Opener,
}

impl Wire {
    pub fn new(cluster: &str, key: Option<ClusterKey>) -> Self {
        Wire {
            topics: Topics::new(cluster),
            sealer: Sealer::new(key.clone()),
            fresh: Opener::new(key.clone()),
            retained: Opener::new(key).with_window(RETAINED_WINDOW),
        }
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Whether messages are signed and only signed ones are taken.
    pub fn is_keyed(&self) -> bool {
        self.sealer.is_keyed()
    }

    /// Incoming messages refused by the envelope so far.
    pub fn rejected(&self) -> u64 {
        self.fresh.rejected() + self.retained.rejected()
    }

    fn out(&self, topic: String, body: &[u8], retain: bool) -> Outgoing {
        Outgoing { payload: self.sealer.seal(body), topic, retain }
    }

    /// An agent's retained status (also its Last Will, when offline).
    pub fn status(&self, status: &AgentStatus) -> Outgoing {
        self.out(self.topics.agent_status(&status.agent), &status.encode(), true)
    }

    pub fn command(&self, agent: &str, command: TaskCommand) -> Outgoing {
        self.out(self.topics.agent_tasks(agent), &TaskMessage::new(command).encode(), false)
    }

    pub fn event(&self, event: &TaskEvent) -> Outgoing {
        self.out(self.topics.job_events(&event.job), &event.encode(), false)
    }

    /// A controller's retained status (its Last Will says `Gone`).
    pub fn controller(&self, job: &str, state: ControllerState) -> Outgoing {
        self.out(self.topics.job_controller(job), &ControllerStatus::new(job, state).encode(), true)
    }

    /// Clears a job's retained controller status: the job ended normally.
    pub fn controller_cleared(&self, job: &str) -> Outgoing {
        Outgoing { topic: self.topics.job_controller(job), payload: Vec::new(), retain: true }
    }

    /// Routes, opens, decodes and checks one incoming publish.
    pub fn receive(&mut self, topic: &str, payload: &[u8], now_ms: u64) -> Result<Incoming, Refused> {
        let route = self.topics.route(topic).ok_or(Refused::Unrouted)?;
        if let Route::JobController { job } = &route
            && payload.is_empty()
        {
            return Ok(Incoming::ControllerCleared { job: job.clone() });
        }
        let opener = if route.is_retained() { &mut self.retained } else { &mut self.fresh };
        let body = match opener.open(payload, now_ms) {
            Ok(body) => body,
            Err(why) => return Err(Refused::Envelope { route, why }),
        };
        let invalid = |route: &Route, why: String| Refused::Invalid { route: route.clone(), why };
        let decoded = |e: DecodeError| e.to_string();
        match &route {
            Route::AgentStatus { agent } => {
                let s = AgentStatus::decode(body).map_err(|e| invalid(&route, decoded(e)))?;
                if s.agent != *agent {
                    return Err(invalid(
                        &route,
                        format!("a status of agent {:?} on {agent}'s topic", s.agent),
                    ));
                }
                Ok(Incoming::Status(s))
            }
            Route::AgentTasks { agent } => {
                let message = TaskMessage::decode(body).map_err(|e| invalid(&route, decoded(e)))?;
                Ok(Incoming::Command { agent: agent.clone(), message })
            }
            Route::JobEvents { job } => {
                let ev = TaskEvent::decode(body).map_err(|e| invalid(&route, decoded(e)))?;
                if ev.job != *job {
                    return Err(invalid(
                        &route,
                        format!("an event of job {:?} on job {job}'s topic", ev.job),
                    ));
                }
                Ok(Incoming::Event(ev))
            }
            Route::JobController { job } => {
                let s = ControllerStatus::decode(body).map_err(|e| invalid(&route, decoded(e)))?;
                if s.job != *job {
                    return Err(invalid(&route, format!("a status of job {:?} on job {job}'s topic", s.job)));
                }
                Ok(Incoming::Controller(s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EventKind, PROTOCOL_VERSION, sample_task};
    use super::*;

    fn pair(key: Option<ClusterKey>) -> (Wire, Wire) {
        (Wire::new("lab", key.clone()), Wire::new("lab", key))
    }

    fn receive(w: &mut Wire, o: &Outgoing) -> Result<Incoming, Refused> {
        w.receive(&o.topic, &o.payload, super::super::now_ms())
    }

    #[test]
    fn every_message_sent_is_received_as_what_it_was() {
        for key in [None, Some(ClusterKey::generate())] {
            let (sender, mut receiver) = pair(key);
            let mut status = AgentStatus::offline("pi-1");
            status.online = true;
            let o = sender.status(&status);
            assert!(o.retain);
            assert_eq!(receive(&mut receiver, &o), Ok(Incoming::Status(status)));

            let task = sample_task();
            let o = sender.command("pi-1", TaskCommand::Assign { task: task.clone() });
            assert!(!o.retain);
            let Ok(Incoming::Command { agent, message }) = receive(&mut receiver, &o) else { panic!() };
            assert_eq!((agent.as_str(), message.command), ("pi-1", TaskCommand::Assign { task }));

            let ev = TaskEvent {
                v: PROTOCOL_VERSION,
                job: "j1".into(),
                task: "m-00000".into(),
                attempt: 1,
                agent: "pi-1".into(),
                kind: EventKind::Accepted,
            };
            assert_eq!(receive(&mut receiver, &sender.event(&ev)), Ok(Incoming::Event(ev)));

            let o = sender.controller("j1", ControllerState::Gone);
            let want = Incoming::Controller(ControllerStatus::new("j1", ControllerState::Gone));
            assert_eq!(receive(&mut receiver, &o), Ok(want));
            let o = sender.controller_cleared("j1");
            assert_eq!(receive(&mut receiver, &o), Ok(Incoming::ControllerCleared { job: "j1".into() }));
        }
    }

    #[test]
    fn a_message_on_a_topic_that_is_not_its_own_is_refused() {
        let (sender, mut receiver) = pair(None);
        // A status naming another agent, an event or controller status of another job.
        let mut o = sender.status(&AgentStatus::offline("pi-2"));
        o.topic = sender.topics().agent_status("pi-1");
        assert!(matches!(receive(&mut receiver, &o), Err(Refused::Invalid { .. })));
        let mut o = sender.controller("/some/dir", ControllerState::Gone);
        o.topic = sender.topics().job_controller("j1");
        assert!(matches!(receive(&mut receiver, &o), Err(Refused::Invalid { .. })));
        let mut o = sender.controller("..", ControllerState::Gone);
        o.topic = "ipdc/lab/jobs/../controller".into();
        assert_eq!(receive(&mut receiver, &o), Err(Refused::Unrouted));
    }

    #[test]
    fn a_keyed_wire_refuses_unsigned_messages_and_says_on_which_route() {
        let mut keyed = Wire::new("lab", Some(ClusterKey::generate()));
        let open = Wire::new("lab", None);
        let o = open.status(&AgentStatus::offline("pi-1"));
        assert_eq!(
            receive(&mut keyed, &o),
            Err(Refused::Envelope {
                route: Route::AgentStatus { agent: "pi-1".into() },
                why: Rejected::NoSignature
            })
        );
        assert_eq!(keyed.rejected(), 1);
    }

    #[test]
    fn a_fresh_message_is_taken_once_and_a_retained_one_may_be_old() {
        let (sender, mut receiver) = pair(Some(ClusterKey::generate()));
        let o = sender.command("pi-1", TaskCommand::EndJob { job: "j1".into() });
        assert!(receive(&mut receiver, &o).is_ok());
        assert!(matches!(receive(&mut receiver, &o), Err(Refused::Envelope { why: Rejected::Replayed, .. })));
        let o = sender.controller("j1", ControllerState::Gone);
        let a_day_later = super::super::now_ms() + 24 * 3600 * 1000;
        assert!(receiver.receive(&o.topic, &o.payload, a_day_later).is_ok());
        let o = sender.command("pi-1", TaskCommand::EndJob { job: "j1".into() });
        assert!(matches!(
            receiver.receive(&o.topic, &o.payload, a_day_later),
            Err(Refused::Envelope { why: Rejected::Stale, .. })
        ));
    }
}

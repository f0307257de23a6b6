//! The job's event loop: MQTT events and timer ticks into the controller,
//! its actions onto the wire, until the job is done or failed. Decisions are
//! the controller's (`crate::controller`); this only carries them out.

use std::time::{Duration, Instant};

use ipdc_common::protocol::{AgentStatus, TaskCommand, now_ms};
use log::{debug, warn};

use super::session::Session;
use crate::controller::{Action, Controller, Phase};
use crate::progress::ProgressView;

type Outcome = Option<Result<(), (String, String)>>;

/// The job's event loop: MQTT events and timer ticks into the controller,
/// its actions onto the wire, until the job is done or failed. Returns the
/// outcome and how long the map phase took, in ms.
pub async fn drive(
    session: &mut Session,
    ctl: &mut Controller,
    picked: &[AgentStatus],
    job: &str,
    mut view: Option<&mut ProgressView>,
    mut early: Option<&mut super::early::EarlyParts>,
) -> (Result<(), (String, String)>, u64) {
    let t_map = Instant::now();
    let mut map_ms = None;
    if early.is_some() {
        ctl.hold_parts();
    }
    let actions = ctl.start(now_ms());
    let mut outcome = apply(session, job, actions);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut was_connected = true;
    let mut info_at = Instant::now() - INFO_EVERY;
    while outcome.is_none() {
        tokio::select! {
            r = session.poll_once() => if let Err(e) = r {
                debug!("{e}");
                if let Some(f) = session.fatal() {
                    outcome = Some(Err((f.to_string(), String::new())));
                }
            },
            _ = tick.tick() => {
                let now = now_ms();
                // While this submitter cannot hear the broker, the silence of
                // the agents tells nothing: the controller's clocks wait.
                if !session.is_connected() {
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
                outcome = apply(session, job, actions);
                if let Some(v) = view.as_deref_mut() {
                    v.update(ctl.progress());
                }
                if info_at.elapsed() >= INFO_EVERY {
                    info_at = Instant::now();
                    say_progress(session, ctl);
                }
                if outcome.is_none() && let Some(who) = session.cancelled_by() {
                    outcome = Some(Err((format!("cancelled by {who}"), String::new())));
                    // Said before the status is cleared: the canceller waits for it.
                    session.update_info(|i| i.phase = CANCELLED.to_string());
                }
            }
            (part, got) = next_fetch(&mut early) => {
                let actions = match got {
                    Ok(()) => ctl.part_fetched(part),
                    Err(e) => ctl.part_lost(part, &e, now_ms()),
                };
                outcome = apply(session, job, actions);
            }
        }
        while outcome.is_none() {
            let Some(ev) = session.next_event() else { break };
            let actions = ctl.on_event(&ev, now_ms());
            outcome = apply(session, job, actions);
        }
        if let Some(early) = early.as_deref_mut() {
            for part in ctl.parts_done() {
                early.want(part);
            }
        }
        if map_ms.is_none() && ctl.phase() != Phase::Map {
            map_ms = Some(t_map.elapsed().as_millis() as u64);
        }
    }
    let map_ms = map_ms.unwrap_or_else(|| t_map.elapsed().as_millis() as u64);
    (outcome.expect("the loop ends with an outcome"), map_ms)
}

/// The phase a cancelled job's last controller status says.
pub const CANCELLED: &str = "cancelled";

/// How often the controller status says how the job stands.
const INFO_EVERY: Duration = Duration::from_secs(2);

/// Puts the job's progress in its controller status, for `ipdc-submit jobs`.
fn say_progress(session: &mut Session, ctl: &Controller) {
    let p = ctl.progress();
    let phase = match ctl.phase() {
        Phase::Map => "map",
        Phase::Reduce => "reduce",
        Phase::Done => "done",
        Phase::Failed => "failed",
    };
    session.update_info(|i| {
        i.phase = phase.to_string();
        (i.maps_done, i.maps) = (p.maps_done as u32, p.maps as u32);
        (i.reduces_done, i.reduces) = (p.reduces_done as u32, p.reduces as u32);
        (i.bytes_read, i.input_bytes) = (p.bytes_read, p.input_bytes);
    });
}

/// The next early fetch that ended (never, without early fetches).
async fn next_fetch(early: &mut Option<&mut super::early::EarlyParts>) -> super::early::Outcome {
    match early {
        Some(e) => e.next().await,
        None => std::future::pending().await,
    }
}

/// Carries out the controller's actions; returns the job's end when one says so.
fn apply(session: &mut Session, job: &str, actions: Vec<Action>) -> Outcome {
    let mut end = None;
    for a in actions {
        match a {
            Action::Assign { agent, task } => {
                debug!("assign {} attempt {} to {agent}", task.task, task.attempt);
                session.command(&agent, TaskCommand::Assign { task });
            }
            Action::Cancel { agent, task, attempt } => {
                debug!("cancel {task} attempt {attempt} on {agent}");
                session.command(&agent, TaskCommand::Cancel { job: job.to_string(), task, attempt });
            }
            Action::Query { agent } => session.command(&agent, TaskCommand::Query { job: job.to_string() }),
            Action::Warn { message } => warn!("{message}"),
            Action::Finished => end = Some(Ok(())),
            Action::Failed { message, detail } => end = Some(Err((message, detail))),
        }
    }
    end
}

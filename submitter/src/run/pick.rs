//! Picking the K agents of a job: the capable ones, best first, waiting a
//! while for enough of them, and saying whom it picked and why the others
//! were skipped.

use std::time::{Duration, Instant};

use ipdc_common::protocol::{AgentStatus, TaskCommand, now_ms};
use log::debug;

use super::session::Session;
use crate::cluster::Cluster;
use crate::directory::{self, Requirements};
use crate::job::JobSpec;

/// The least `--wait` for agents started by `--local`.
const LOCAL_MIN_WAIT: Duration = Duration::from_secs(10);

/// Asks every online agent with Python not asked yet whether it imports `modules`.
fn ask_for_modules(
    session: &mut Session,
    modules: &[String],
    asked: &mut std::collections::BTreeSet<String>,
) {
    let Some(job) = session.job().map(str::to_string) else { return };
    let new: Vec<String> = session
        .directory
        .all()
        .filter(|s| s.online && s.python.is_some() && !asked.contains(&s.session))
        .map(|s| s.agent.clone())
        .collect();
    for agent in new {
        let command = TaskCommand::CheckModules { job: job.clone(), modules: modules.to_vec() };
        session.command(&agent, command);
        if let Some(s) = session.directory.get(&agent) {
            asked.insert(s.session.clone());
        }
    }
}

/// Whether every online agent with Python has said whether it imports each
/// of `modules` (an importing agent says so within a second or two; a
/// large package on a slow board, or an old agent, takes the whole wait).
fn modules_answered(session: &Session, modules: &[String]) -> bool {
    session
        .directory
        .all()
        .filter(|s| s.online && s.python.is_some())
        .all(|s| modules.iter().all(|m| s.python_modules.contains_key(m)))
}

/// Picks K capable agents, waiting up to `wait` for enough of them. Called
/// right after the status subscription was acknowledged: it picks only once
/// the retained statuses had time to arrive (so the best K of
/// all agents are ranked, not the first K heard of), or, with
/// a cluster of exactly n agents of this process (`--local n`),
/// as soon as all n have announced themselves.
pub async fn pick_agents(
    session: &mut Session,
    spec: &JobSpec,
    cluster: &Cluster,
    wait: Duration,
    own_node: Option<String>,
) -> Result<Vec<AgentStatus>, String> {
    let local_agents = cluster.own_agents();
    let req = Requirements {
        needs_python: spec.needs_python,
        min_memory_mb: spec.min_memory_mb,
        arch: spec.arch.clone(),
        have_key: session.wire().is_keyed(),
        python_modules: spec.python_modules.clone(),
        own_node,
    };
    // Agents asked whether they import the job's modules (by their session).
    let mut asked: std::collections::BTreeSet<String> = Default::default();
    // Local agents start with this job: they need a moment to report
    // (their IPFS check too) whatever --wait says.
    let wait = if local_agents.is_some() { wait.max(LOCAL_MIN_WAIT) } else { wait };
    let start = Instant::now();
    let mut said_waiting = false;
    loop {
        let now = now_ms();
        if !req.python_modules.is_empty() {
            ask_for_modules(session, &req.python_modules, &mut asked);
        }
        let capable = session.directory.capable(&req, now);
        // At least the agents verification needs (each task on that many).
        let least = spec.workers.unwrap_or(1).max(spec.verify.agents_needed());
        let enough = capable.len() >= least;
        let settled = (session.statuses_settled()
            || local_agents.is_some_and(|n| session.directory.all().count() >= n))
            // An agent that never answers (an old one) is waited for most of the wait, not all.
            && (modules_answered(session, &req.python_modules) || start.elapsed() >= wait.mul_f32(0.8));
        if enough && settled {
            let k = spec.workers.unwrap_or(capable.len());
            let picked: Vec<AgentStatus> = capable.into_iter().take(k).cloned().collect();
            crate::say!("picked {} agent(s):", picked.len());
            for s in &picked {
                crate::say!("  {}", directory::describe(s));
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
                crate::say!("skipped: {}", others.join(", "));
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
                _ if !capable.is_empty() && spec.verify.agents_needed() > spec.workers.unwrap_or(1) => format!(
                    "verify = {} runs tasks on {} different agents, but only {} agent(s) can run this job ({}): start more agents or lower verify",
                    spec.verify,
                    spec.verify.agents_needed(),
                    capable.len(),
                    capable.iter().map(|s| s.agent.as_str()).collect::<Vec<_>>().join(", ")
                ),
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
            crate::say!(
                "waiting up to {} s for {} capable agent(s) ({} so far)...",
                wait.as_secs(),
                spec.workers.unwrap_or(1).max(spec.verify.agents_needed()),
                capable.len()
            );
            said_waiting = true;
        }
        // Look again after each message (a status may be what was missing).
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(20), session.poll_once()).await {
            debug!("{e}");
            if let Some(f) = session.fatal() {
                return Err(f.to_string());
            }
        }
    }
}

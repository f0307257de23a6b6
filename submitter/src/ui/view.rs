//! What the dashboard shows, kept from what the broker says: the jobs
//! (running ones from their controllers' retained statuses, recent ones
//! kept a while after they end) and each job's attempts as their agents
//! report them. Pure: it takes messages and the time, and gives a JSON
//! snapshot; `mod.rs` does the I/O.

use std::collections::BTreeMap;

use ipdc_common::protocol::{ControllerStatus, EventKind, JobInfo, TaskEvent};
use serde::Serialize;
use serde_json::{Value, json};

use crate::directory::{Directory, Requirements};

/// Jobs kept (the oldest ended ones go first).
const MAX_JOBS: usize = 50;
/// How long an ended job stays listed.
const KEEP_ENDED_MS: u64 = 3_600_000;
/// Attempts kept per job.
const MAX_ATTEMPTS: usize = 5_000;
/// Of an error's detail (a traceback), the last this many bytes.
const MAX_DETAIL: usize = 4_096;

#[derive(Debug, Default)]
pub struct View {
    jobs: BTreeMap<String, JobView>,
}

#[derive(Debug, Clone, Serialize)]
struct JobView {
    job: String,
    info: Option<JobInfo>,
    running: bool,
    /// When this dashboard first heard of it (Unix ms).
    seen_ms: u64,
    ended_ms: Option<u64>,
    attempts: Vec<Bar>,
}

/// One attempt as its agent reports it.
#[derive(Debug, Clone, Serialize)]
struct Bar {
    task: String,
    attempt: u32,
    agent: String,
    start_ms: u64,
    end_ms: Option<u64>,
    /// `running`, `done` or `failed`.
    state: &'static str,
    bytes_read: u64,
    lines: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl View {
    /// The running jobs as their retained statuses say now.
    pub fn on_jobs(&mut self, running: &BTreeMap<String, ControllerStatus>, now_ms: u64) {
        for (id, status) in running {
            let j = self.job(id, now_ms);
            j.running = true;
            j.ended_ms = None;
            if status.info.is_some() {
                j.info = status.info.clone();
            }
        }
        for j in self.jobs.values_mut().filter(|j| j.running && !running.contains_key(&j.job)) {
            j.running = false;
            j.ended_ms = Some(now_ms);
        }
        self.jobs.retain(|_, j| j.ended_ms.is_none_or(|e| now_ms.saturating_sub(e) < KEEP_ENDED_MS));
        while self.jobs.len() > MAX_JOBS {
            let oldest =
                self.jobs.values().filter(|j| !j.running).min_by_key(|j| j.seen_ms).map(|j| j.job.clone());
            match oldest {
                Some(id) => self.jobs.remove(&id),
                None => break,
            };
        }
    }

    /// An agent's report about an attempt.
    pub fn on_event(&mut self, ev: &TaskEvent, now_ms: u64) {
        let j = self.job(&ev.job, now_ms);
        let found = j
            .attempts
            .iter()
            .position(|b| b.task == ev.task && b.attempt == ev.attempt && b.agent == ev.agent);
        let i = match found {
            Some(i) => i,
            None if j.attempts.len() >= MAX_ATTEMPTS => return,
            None => {
                j.attempts.push(Bar {
                    task: ev.task.clone(),
                    attempt: ev.attempt,
                    agent: ev.agent.clone(),
                    start_ms: now_ms,
                    end_ms: None,
                    state: "running",
                    bytes_read: 0,
                    lines: 0,
                    error: None,
                    detail: None,
                });
                j.attempts.len() - 1
            }
        };
        let b = &mut j.attempts[i];
        match &ev.kind {
            EventKind::Accepted => {}
            EventKind::Progress { bytes_read, lines } => (b.bytes_read, b.lines) = (*bytes_read, *lines),
            EventKind::Done { output } => {
                (b.state, b.end_ms, b.bytes_read) = ("done", Some(now_ms), output.bytes_read);
                b.lines = output.stats.input_records;
            }
            EventKind::Failed { error, detail, .. } => {
                (b.state, b.end_ms) = ("failed", Some(now_ms));
                b.error = Some(error.chars().take(1_000).collect());
                let cut = detail.len().saturating_sub(MAX_DETAIL);
                let cut = (cut..detail.len()).find(|&c| detail.is_char_boundary(c)).unwrap_or(detail.len());
                b.detail = (!detail.is_empty()).then(|| detail[cut..].to_string());
            }
        }
    }

    fn job(&mut self, id: &str, now_ms: u64) -> &mut JobView {
        self.jobs.entry(id.to_string()).or_insert_with(|| JobView {
            job: id.to_string(),
            info: None,
            running: false,
            seen_ms: now_ms,
            ended_ms: None,
            attempts: Vec::new(),
        })
    }

    /// Everything the page shows, as of `now_ms`.
    pub fn snapshot(&self, agents: &Directory, keyed: bool, now_ms: u64) -> Value {
        let req = Requirements { have_key: true, ..Default::default() };
        let agents: Vec<Value> = agents
            .all()
            .map(|s| {
                let mut v = serde_json::to_value(s).expect("a status serializes");
                v["state"] = Directory::unfit(s, &req, now_ms).unwrap_or_else(|| "online".into()).into();
                v["heartbeat_age_ms"] = now_ms.saturating_sub(s.heartbeat_ms).into();
                v
            })
            .collect();
        let mut jobs: Vec<&JobView> = self.jobs.values().collect();
        jobs.sort_by_key(|j| {
            (!j.running, std::cmp::Reverse(j.info.as_ref().map_or(j.seen_ms, |i| i.started_ms)))
        });
        json!({ "now_ms": now_ms, "keyed": keyed, "agents": agents, "jobs": jobs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipdc_common::protocol::{ControllerState, PROTOCOL_VERSION, TaskOutput};

    fn ev(task: &str, agent: &str, kind: EventKind) -> TaskEvent {
        TaskEvent {
            v: PROTOCOL_VERSION,
            job: "j1".into(),
            task: task.into(),
            attempt: 1,
            agent: agent.into(),
            kind,
        }
    }

    #[test]
    fn a_job_shows_its_attempts_as_they_run_and_stays_listed_after_it_ends() {
        let mut v = View::default();
        let mut status = ControllerStatus::new("j1", ControllerState::Running, 1);
        status.info = Some(JobInfo { name: "wc".into(), by: "ann@laptop".into(), ..Default::default() });
        v.on_jobs(&BTreeMap::from([("j1".to_string(), status)]), 1_000);
        v.on_event(&ev("m-00000", "pi-1", EventKind::Accepted), 1_100);
        v.on_event(&ev("m-00000", "pi-1", EventKind::Progress { bytes_read: 10, lines: 2 }), 1_500);
        let failed = EventKind::Failed {
            error: "map() raised".into(),
            detail: "Traceback".into(),
            lost_inputs: vec![],
            node_down: false,
        };
        v.on_event(&ev("m-00001", "pi-2", failed), 1_600);
        let s = v.snapshot(&Directory::default(), false, 2_000);
        let j = &s["jobs"][0];
        assert_eq!((j["running"].as_bool(), j["info"]["by"].as_str()), (Some(true), Some("ann@laptop")));
        assert_eq!(j["attempts"][0]["state"], "running");
        assert_eq!(j["attempts"][0]["bytes_read"], 10);
        assert_eq!(j["attempts"][1]["state"], "failed");
        assert_eq!(j["attempts"][1]["detail"], "Traceback");
        let done = EventKind::Done { output: TaskOutput { bytes_read: 20, ..Default::default() } };
        v.on_event(&ev("m-00000", "pi-1", done), 2_500);
        v.on_jobs(&BTreeMap::new(), 3_000);
        let s = v.snapshot(&Directory::default(), false, 3_000);
        let j = &s["jobs"][0];
        assert_eq!((j["running"].as_bool(), j["ended_ms"].as_u64()), (Some(false), Some(3_000)));
        assert_eq!(j["attempts"][0]["end_ms"], 2_500);
        v.on_jobs(&BTreeMap::new(), 3_000 + KEEP_ENDED_MS);
        assert_eq!(v.snapshot(&Directory::default(), false, 0)["jobs"].as_array().unwrap().len(), 0);
    }
}

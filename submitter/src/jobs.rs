//! `ipdc-submit jobs` (the cluster's running jobs, from their controllers'
//! retained statuses) and `ipdc-submit cancel JOB` (asks the job's own
//! submitter to stop it, and waits until it has).

use std::time::{Duration, Instant};

use ipdc_common::protocol::{ControllerStatus, looks_like_job_id, now_ms};

use crate::cluster::Connection;
use crate::run::drive::CANCELLED;
use crate::run::human_bytes;
use crate::run::session::Session;

/// How long `cancel` waits for the job's submitter to end it.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// The running jobs, from their retained controller statuses.
async fn running_jobs(session: &mut Session) -> Result<Vec<ControllerStatus>, String> {
    session.watch_jobs();
    session.connect_and_listen(Duration::from_secs(10)).await?;
    Ok(session.jobs.clone().unwrap_or_default().into_values().collect())
}

pub async fn list(conn: &Connection, json: bool) -> Result<(), String> {
    let mut session = Session::connect(conn, &format!("ipdc-jobs-{}", std::process::id()), None)?;
    let jobs = running_jobs(&mut session).await?;
    session.disconnect().await;
    if json {
        let all: Vec<serde_json::Value> = jobs
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s.info.clone().unwrap_or_default()).expect("serializes");
                v["job"] = s.job.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all).expect("serializes"));
        return Ok(());
    }
    print!("{}", table(&jobs, now_ms()));
    Ok(())
}

fn table(jobs: &[ControllerStatus], now: u64) -> String {
    if jobs.is_empty() {
        return "no job is running on this cluster\n".to_string();
    }
    let mut rows = vec![["JOB", "NAME", "SUBMITTER", "PHASE", "PROGRESS", "AGE"].map(String::from)];
    for s in jobs {
        let i = s.info.clone().unwrap_or_default();
        let progress = if i.maps == 0 {
            "-".to_string()
        } else {
            format!(
                "map {}/{} reduce {}/{}, {} of {}",
                i.maps_done,
                i.maps,
                i.reduces_done,
                i.reduces,
                human_bytes(i.bytes_read),
                human_bytes(i.input_bytes)
            )
        };
        let age = if i.started_ms == 0 {
            "-".into()
        } else {
            format!("{}s", now.saturating_sub(i.started_ms) / 1000)
        };
        let by = if i.by.is_empty() { "-".into() } else { i.by.clone() };
        let phase = if i.phase.is_empty() { "running".into() } else { i.phase.clone() };
        rows.push([s.job.clone(), i.name.clone(), by, phase, progress, age]);
    }
    crate::agents::columns(&rows)
}

pub async fn cancel(conn: &Connection, job: &str) -> Result<(), String> {
    if !looks_like_job_id(job) {
        return Err(format!(
            "{job:?} is not a job id (like wordcount-mxcf3qps-4cd49edc1e6a): `ipdc-submit jobs` lists them"
        ));
    }
    let mut session = Session::connect(conn, &format!("ipdc-cancel-{}", std::process::id()), None)?;
    let jobs = running_jobs(&mut session).await?;
    if !jobs.iter().any(|s| s.job == job) {
        session.disconnect().await;
        return Err(format!(
            "no job {job} is running on this cluster (`ipdc-submit jobs` lists those that are)"
        ));
    }
    let by = crate::say::user_at_host();
    session.ask_to_cancel(job, &by);
    let start = Instant::now();
    let mut stopped = false;
    while let Some(status) = session.jobs.as_ref().and_then(|j| j.get(job)) {
        stopped |= status.info.as_ref().is_some_and(|i| i.phase == CANCELLED);
        if start.elapsed() > CANCEL_WAIT {
            session.disconnect().await;
            return Err(format!(
                "asked job {job} to stop, but its submitter did not end it within {} s (in a keyed cluster it takes \
                 a cancel only from a listed submitter: give this one its key with --node-key and --trust)",
                CANCEL_WAIT.as_secs()
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), session.poll_once()).await;
    }
    session.disconnect().await;
    if !stopped {
        return Err(format!(
            "job {job} ended before it could be cancelled: it finished or failed on its own"
        ));
    }
    println!("job {job} cancelled: its submitter stopped it, and wrote no output");
    Ok(())
}

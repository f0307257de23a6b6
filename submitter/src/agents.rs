//! `ipdc-submit agents`: the cluster's agents as a table (or JSON).

use std::time::Duration;

use ipdc_common::protocol::now_ms;

use crate::cluster::Connection;
use crate::directory::{Directory, Requirements};
use crate::run::session::Session;

pub async fn list(conn: &Connection, json: bool) -> Result<(), String> {
    let mut session = Session::connect(conn, &format!("ipdc-agents-{}", std::process::id()), None)?;
    session.connect_and_listen(Duration::from_secs(10)).await?;
    let dir = session.directory.clone();
    let note = session.refused_note();
    session.disconnect().await;
    if json {
        let all: Vec<_> = dir.all().collect();
        println!("{}", serde_json::to_string_pretty(&all).expect("statuses serialize"));
        if !note.is_empty() {
            eprintln!("{}", note.trim_start_matches('\n')); // stdout stays JSON
        }
        return Ok(());
    }
    print!("{}", table(&dir, now_ms()));
    if !note.is_empty() {
        println!("{}", note.trim_start_matches('\n'));
    }
    Ok(())
}

fn table(dir: &Directory, now: u64) -> String {
    let mut rows = vec![
        [
            "AGENT",
            "STATE",
            "ARCH",
            "CORES",
            "CPU USED",
            "MEM FREE/TOTAL",
            "PYTHON",
            "SLOTS",
            "SWARM",
            "HEARTBEAT",
            "VERSION",
        ]
        .map(String::from),
    ];
    for s in dir.all() {
        let state = match Directory::unfit(s, &Requirements { have_key: true, ..Default::default() }, now) {
            None => "online".to_string(),
            Some(why) => why,
        };
        rows.push([
            s.agent.clone(),
            state,
            s.arch.clone(),
            s.cores.to_string(),
            format!("{:.0}%", s.cpu_percent),
            format!("{}/{} MiB", s.mem_available_mb, s.mem_total_mb),
            s.python.clone().unwrap_or_else(|| "none".into()),
            format!("{}/{}", s.slots_busy, s.slots),
            {
                let peers = match s.swarm_peers {
                    None => "-".to_string(),
                    Some(0) => "isolated".into(),
                    Some(n) => format!("{n} peer(s)"),
                };
                match &s.private_swarm {
                    Some(f) => format!("{peers}, private {f}"),
                    None => peers,
                }
            },
            if s.heartbeat_ms == 0 {
                "-".into()
            } else {
                format!("{:.0}s ago", now.saturating_sub(s.heartbeat_ms) as f64 / 1000.0)
            },
            s.version.clone(),
        ]);
    }
    if rows.len() == 1 {
        return "no agents have reported in this cluster\n".to_string();
    }
    columns(&rows)
}

/// Rows as left-aligned columns two spaces apart, one line each.
pub fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

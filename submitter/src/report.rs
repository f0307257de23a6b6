//! `summary.html`: a finished job's report, one self-contained page (inline
//! CSS and SVG, no scripts, nothing fetched) drawn from `summary.json`
//! alone, so `ipdc-submit report OUTDIR` draws the same page again: the
//! phases, a timeline with one row per agent slot and one bar per attempt,
//! what each agent did, the counters, the warnings and the output.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

/// The report's file name in an output folder.
pub const REPORT: &str = "summary.html";

/// Writes `OUTDIR/summary.html` again from `OUTDIR/summary.json`.
pub fn rewrite(out: &Path) -> Result<std::path::PathBuf, String> {
    let json = out.join("summary.json");
    let text = std::fs::read_to_string(&json).map_err(|e| {
        format!("{}: {e}: give the output folder of an IPDC job (it holds summary.json)", json.display())
    })?;
    let summary: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a job's summary: {e}", json.display()))?;
    if summary.get("job").and_then(Value::as_str).is_none() {
        return Err(format!("{} is not a job's summary: it names no job", json.display()));
    }
    let path = out.join(REPORT);
    std::fs::write(&path, render(&summary)).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// The whole page.
pub fn render(summary: &Value) -> String {
    let job = text(summary, "job");
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>IPDC job {}</title><style>{STYLE}</style></head><body>\n<h1>IPDC job <code>{}</code></h1>\n",
        esc(&job),
        esc(&job)
    );
    let steps = summary.get("steps").and_then(Value::as_array).cloned().unwrap_or_default();
    let of = steps.len() + 1;
    for (i, step) in steps.iter().enumerate() {
        section(&mut page, step, Some((i + 1, of)));
    }
    section(&mut page, summary, (of > 1).then_some((of, of)));
    page.push_str("<footer>Written by ipdc-submit from summary.json; <code>ipdc-submit report OUTDIR</code> writes it again.</footer>\n</body></html>\n");
    page
}

/// One step's part of the page.
fn section(page: &mut String, s: &Value, step: Option<(usize, usize)>) {
    if let Some((n, of)) = step {
        let _ = writeln!(page, "<h2>Step {n} of {of}: <code>{}</code></h2>", esc(&text(s, "job")));
    }
    let times = &s["times_ms"];
    let input = match s.get("input").and_then(Value::as_str) {
        Some(i) => esc(i),
        None => format!("<code>{}</code>", esc(&text(s, "input_cid"))),
    };
    let _ = writeln!(
        page,
        "<p class=\"facts\">{} map + {} reduce task(s) over {} ({}), executor <b>{}</b>, {} in all \
         (upload {}, map {}, reduce {}).</p>",
        num(s, "map_tasks"),
        num(s, "reduce_tasks"),
        input,
        crate::run::human_bytes(num(s, "input_bytes")),
        esc(&text(s, "executor")),
        secs(num(times, "total")),
        secs(num(times, "upload")),
        secs(num(times, "map")),
        secs(num(times, "reduce")),
    );
    let attempts = s.get("attempts").and_then(Value::as_array).cloned().unwrap_or_default();
    page.push_str("<h3>Timeline</h3>\n");
    if attempts.is_empty() {
        page.push_str("<p>No attempt ran in this job (every task's output came from the task cache, or the summary is from an IPDC before 0.1 kept attempts).</p>\n");
    } else {
        timeline(page, &attempts);
    }
    agents(page, s, &attempts);
    counters(page, s);
    if let Some(w) = s.get("warnings").and_then(Value::as_array).filter(|w| !w.is_empty()) {
        page.push_str("<h3>Warnings</h3>\n<ul class=\"warnings\">\n");
        for line in w.iter().filter_map(Value::as_str) {
            let _ = writeln!(page, "<li>{}</li>", esc(line));
        }
        page.push_str("</ul>\n");
    }
    if let Some(d) = s.get("disagreements").and_then(Value::as_array).filter(|d| !d.is_empty()) {
        let _ = writeln!(
            page,
            "<h3>Disagreements</h3>\n<pre>{}</pre>",
            esc(&serde_json::to_string_pretty(d).unwrap_or_default())
        );
    }
    output(page, s);
}

/// Bars, one row per agent slot: an agent's attempts go to the first of its
/// rows free when they start, so overlapping attempts stack.
fn timeline(page: &mut String, attempts: &[Value]) {
    let t0 = attempts.iter().map(|a| num(a, "start_ms")).min().unwrap_or(0);
    let end_of = |a: &Value| a.get("end_ms").and_then(Value::as_u64).unwrap_or_else(|| num(a, "start_ms"));
    let t1 = attempts.iter().map(end_of).max().unwrap_or(t0).max(t0 + 1);
    let mut rows: BTreeMap<String, Vec<u64>> = BTreeMap::new(); // agent -> each row's end
    let mut placed = Vec::new();
    let mut order: Vec<&Value> = attempts.iter().collect();
    order.sort_by_key(|a| num(a, "start_ms"));
    for a in order {
        let lanes = rows.entry(text(a, "agent")).or_default();
        let (start, end) = (num(a, "start_ms"), end_of(a));
        let lane = match lanes.iter().position(|&e| e <= start) {
            Some(i) => i,
            None => {
                lanes.push(0);
                lanes.len() - 1
            }
        };
        lanes[lane] = end.max(start + 1);
        placed.push((text(a, "agent"), lane, a));
    }
    let mut first_row = BTreeMap::new();
    let mut n = 0;
    for (agent, lanes) in &rows {
        first_row.insert(agent.clone(), n);
        n += lanes.len();
    }
    let (label, width, row_h, top) = (140.0, 820.0, 20.0, 24.0);
    let height = top + row_h * n as f64 + 8.0;
    let x = |t: u64| label + (t - t0) as f64 / (t1 - t0) as f64 * width;
    let _ = writeln!(
        page,
        "<svg class=\"timeline\" role=\"img\" aria-label=\"timeline of the job's attempts\" \
         width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        label + width + 10.0,
        label + width + 10.0
    );
    // The time axis: a tick at each "nice" step.
    let span = (t1 - t0) as f64 / 1000.0;
    let step = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]
        .into_iter()
        .find(|s| span / s <= 10.0)
        .unwrap_or(7200.0);
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let px = label + t / span * width;
        let _ = writeln!(
            page,
            "<line class=\"grid\" x1=\"{px:.1}\" y1=\"{}\" x2=\"{px:.1}\" y2=\"{height}\"/><text class=\"tick\" x=\"{px:.1}\" y=\"14\">{}</text>",
            top - 4.0,
            trim(t)
        );
        t += step;
    }
    for (agent, lanes) in &rows {
        let y = top + row_h * first_row[agent] as f64;
        let _ = writeln!(
            page,
            "<text class=\"agent\" x=\"4\" y=\"{:.1}\">{}</text>",
            y + row_h * 0.7,
            esc(agent)
        );
        if lanes.len() > 1 {
            let _ = writeln!(
                page,
                "<line class=\"sep\" x1=\"0\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\"/>",
                y + row_h * lanes.len() as f64,
                label + width,
                y + row_h * lanes.len() as f64
            );
        }
    }
    for (agent, lane, a) in placed {
        let (start, end) = (num(a, "start_ms"), end_of(a));
        let y = top + row_h * (first_row[&agent] + lane) as f64 + 3.0;
        let w = (x(end) - x(start)).max(2.0);
        let task = text(a, "task");
        let outcome = text(a, "outcome");
        let kind = if task.starts_with('r') { "reduce" } else { "map" };
        let class = match outcome.as_str() {
            "failed" => "failed".to_string(),
            "stopped" => "stopped".to_string(),
            _ if a["speculative"] == true => format!("{kind} backup"),
            _ => kind.to_string(),
        };
        let range = a
            .get("range")
            .and_then(Value::as_array)
            .map(|r| format!(", bytes {}..{}", r[0], r[1]))
            .unwrap_or_default();
        let backup = if a["speculative"] == true { " (backup)" } else { "" };
        let _ = writeln!(
            page,
            "<rect class=\"bar {class}\" data-task=\"{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{}\" rx=\"2\">\
             <title>{} attempt {}{backup} on {}: {} after {}{range}</title></rect>",
            esc(&task),
            x(start),
            row_h - 6.0,
            esc(&task),
            num(a, "attempt"),
            esc(&agent),
            esc(&outcome),
            secs(end - start),
        );
    }
    page.push_str("</svg>\n<p class=\"legend\"><span class=\"key map\"></span>map <span class=\"key reduce\"></span>reduce \
                   <span class=\"key map backup\"></span>backup <span class=\"key failed\"></span>failed \
                   <span class=\"key stopped\"></span>cancelled or given up (seconds from the first attempt's start; hover a bar for its task)</p>\n");
}

/// Per agent: tasks, bytes read, time busy.
fn agents(page: &mut String, s: &Value, attempts: &[Value]) {
    let Some(list) = s.get("agents").and_then(Value::as_array) else { return };
    let mut busy: BTreeMap<String, (u64, u32)> = BTreeMap::new();
    for a in attempts {
        let end = a.get("end_ms").and_then(Value::as_u64).unwrap_or_else(|| num(a, "start_ms"));
        let e = busy.entry(text(a, "agent")).or_default();
        e.0 += end - num(a, "start_ms");
        e.1 += u32::from(text(a, "outcome") == "failed");
    }
    page.push_str("<h3>Agents</h3>\n<table><tr><th>agent</th><th>arch</th><th>map tasks</th><th>reduce tasks</th><th>bytes read</th><th>time in attempts</th><th>failed attempts</th></tr>\n");
    for a in list {
        let name = text(a, "agent");
        let (ms, failed) = busy.get(&name).copied().unwrap_or_default();
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{failed}</td></tr>",
            esc(&name),
            esc(&text(a, "arch")),
            num(a, "map_tasks"),
            num(a, "reduce_tasks"),
            crate::run::human_bytes(num(a, "bytes_read")),
            secs(ms),
        );
    }
    page.push_str("</table>\n");
}

fn counters(page: &mut String, s: &Value) {
    page.push_str("<h3>Counters</h3>\n<table class=\"counters\">\n");
    let mut row = |k: &str, v: &Value| {
        let _ = writeln!(page, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v.to_string()));
    };
    if let Some(c) = s.get("counters").and_then(Value::as_object) {
        for (k, v) in c {
            row(k, v);
        }
    }
    if let Some(c) = s.get("user_counters").and_then(Value::as_object) {
        for (k, v) in c {
            row(&format!("user: {k}"), v);
        }
    }
    for k in ["speculative_attempts", "speculative_wins", "cached_tasks", "verified_tasks"] {
        if let Some(v) = s.get(k) {
            row(k, v);
        }
    }
    page.push_str("</table>\n");
}

fn output(page: &mut String, s: &Value) {
    page.push_str("<h3>Output</h3>\n");
    if let Some(cid) = s.get("output_cid").and_then(Value::as_str) {
        let _ = writeln!(page, "<p>Output CID: <code class=\"cid\">{}</code></p>", esc(cid));
    }
    let Some(parts) = s.get("parts").and_then(Value::as_array).filter(|p| !p.is_empty()) else { return };
    page.push_str("<table><tr><th>part</th><th>bytes</th><th>CID</th></tr>\n");
    for p in parts {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&text(p, "name")),
            num(p, "bytes"),
            esc(&text(p, "cid"))
        );
    }
    page.push_str("</table>\n");
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn trim(t: f64) -> String {
    let s = format!("{t:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// Text for HTML, in an element or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;max-width:1000px}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px}h3{font-size:15px;margin:20px 0 6px}\
code{font:12px ui-monospace,monospace;background:#f2f4f7;padding:1px 4px;border-radius:3px}\
table{border-collapse:collapse;margin:4px 0}th,td{padding:3px 10px;border-bottom:1px solid #e3e6eb;text-align:left}\
td{font-variant-numeric:tabular-nums}.counters th{font-weight:normal;color:#4a5263}\
svg.timeline{background:#fbfcfd;border:1px solid #e3e6eb;border-radius:4px}\
.tick{font-size:10px;fill:#6b7385;text-anchor:middle}.grid{stroke:#e8ebf0}.sep{stroke:#d5d9e0}\
.agent{font-size:12px;fill:#1d2330}\
.bar.map,.key.map{fill:#3b7dd8;background:#3b7dd8}.bar.reduce,.key.reduce{fill:#2e9e6a;background:#2e9e6a}\
.bar.backup,.key.backup{fill:#e0a526;background:#e0a526}.bar.failed,.key.failed{fill:#d64545;background:#d64545}\
.bar.stopped,.key.stopped{fill:#a7adb8;background:#a7adb8}\
.key{display:inline-block;width:12px;height:10px;border-radius:2px;margin:0 4px 0 12px}\
.legend{font-size:12px;color:#4a5263}.warnings li{color:#9a5b00}\
footer{margin-top:32px;font-size:12px;color:#6b7385}";

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        serde_json::json!({
            "job": "wc-1", "input": "in.txt", "input_bytes": 2048, "map_tasks": 2, "reduce_tasks": 1,
            "executor": "python", "times_ms": {"upload": 100, "map": 2000, "reduce": 500, "total": 2700},
            "attempts": [
                {"task": "m-00000", "attempt": 1, "agent": "pi-1", "speculative": false, "start_ms": 1000, "end_ms": 2000, "outcome": "failed", "range": [0, 1024]},
                {"task": "m-00000", "attempt": 2, "agent": "pi-2", "speculative": false, "start_ms": 2000, "end_ms": 3000, "outcome": "done", "range": [0, 1024]},
                {"task": "m-00001", "attempt": 1, "agent": "pi-1", "speculative": false, "start_ms": 1500, "end_ms": 2600, "outcome": "done", "range": [1024, 2048]},
                {"task": "r-00000", "attempt": 1, "agent": "<pi-3>", "speculative": false, "start_ms": 3000, "end_ms": 3500, "outcome": "done"}
            ],
            "agents": [{"agent": "pi-1", "arch": "aarch64", "map_tasks": 1, "reduce_tasks": 0, "bytes_read": 1024}],
            "counters": {"map_input_records": 10},
            "user_counters": {"bad_lines": 2},
            "warnings": ["no output"],
            "output_cid": "bafyout",
            "parts": [{"name": "part-00000", "cid": "bafypart", "bytes": 5}]
        })
    }

    #[test]
    fn the_report_draws_a_bar_per_attempt_in_a_row_per_agent_slot() {
        let page = render(&summary());
        assert_eq!(page.matches("<rect class=\"bar").count(), 4);
        assert!(page.contains("class=\"bar failed\" data-task=\"m-00000\""), "{page}");
        // pi-1's two attempts overlap (1.0-2.0 s and 1.5-2.6 s): two rows.
        assert_eq!(page.matches("class=\"sep\"").count(), 1, "{page}");
        assert!(page.contains("m-00001 attempt 1 on pi-1: done after 1.1 s, bytes 1024..2048"), "{page}");
        assert!(page.contains("user: bad_lines") && page.contains("bafyout") && page.contains("no output"));
    }

    #[test]
    fn what_the_summary_holds_is_escaped_and_nothing_is_fetched() {
        let page = render(&summary());
        assert!(page.contains("&lt;pi-3&gt;") && !page.contains("<pi-3>"), "{page}");
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="), "{page}");
    }
}

//! Live progress of a running job: a progress bar on a terminal, plain
//! periodic lines otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::controller::Progress;

pub struct ProgressView {
    bar: Option<ProgressBar>,
    started: Instant,
    lines: PlainLines,
}

/// When to print a plain line: every 2 s while the job runs, so a log
/// shows it is alive and how fast it goes.
struct PlainLines {
    at: Instant,
}

impl PlainLines {
    const EVERY: Duration = Duration::from_secs(2);

    fn due(&mut self, now: Instant) -> bool {
        if now.duration_since(self.at) < Self::EVERY {
            return false;
        }
        self.at = now;
        true
    }
}

/// The line: tasks done, input read (running attempts' part included), the
/// lines read, the rate and, while maps run, the time they need yet.
fn message(p: &Progress, elapsed_secs: f64) -> String {
    const MIB: f64 = (1 << 20) as f64;
    let rate = p.bytes_read as f64 / elapsed_secs.max(0.001);
    let mut msg = format!(
        "map {}/{}  reduce {}/{}  {:.1} of {:.1} MiB read  {} lines  {:.1} MiB/s",
        p.maps_done,
        p.maps,
        p.reduces_done,
        p.reduces,
        p.bytes_read as f64 / MIB,
        p.input_bytes as f64 / MIB,
        p.lines,
        rate / MIB
    );
    if p.maps_done < p.maps && rate > 0.0 {
        let left = p.input_bytes.saturating_sub(p.bytes_read) as f64 / rate;
        msg += &format!("  maps done in ~{left:.0} s");
    }
    msg
}

/// How full the bar is, of 1000: reading the input is most of a job, the
/// reduces the rest.
fn position(p: &Progress) -> u64 {
    let read = if p.input_bytes == 0 { 1.0 } else { (p.bytes_read as f64 / p.input_bytes as f64).min(1.0) };
    let f = if p.reduces == 0 { read } else { 0.8 * read + 0.2 * p.reduces_done as f64 / p.reduces as f64 };
    (f * 1000.0) as u64
}

impl ProgressView {
    pub fn new() -> Self {
        let bar = (std::io::stdout().is_terminal() && !crate::say::json_mode()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                    .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        ProgressView { bar, started: now, lines: PlainLines { at: now } }
    }

    pub fn update(&mut self, p: Progress) {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let msg = message(&p, elapsed);
        match &self.bar {
            Some(bar) => {
                bar.set_position(position(&p));
                bar.set_message(msg);
            }
            None => {
                if self.lines.due(Instant::now()) {
                    crate::say!("[{:>6.1}s] {msg}", elapsed);
                    crate::say::event(
                        "progress",
                        serde_json::json!({
                            "elapsed_ms": (elapsed * 1000.0) as u64,
                            "maps_done": p.maps_done,
                            "maps": p.maps,
                            "reduces_done": p.reduces_done,
                            "reduces": p.reduces,
                            "bytes_read": p.bytes_read,
                            "input_bytes": p.input_bytes,
                            "lines": p.lines,
                        }),
                    );
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Default for ProgressView {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_every_two_seconds() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut lines = PlainLines { at: t0 };
        assert!(!lines.due(at(250)), "not within the first 2 s");
        assert!(lines.due(at(2000)));
        assert!(!lines.due(at(3999)));
        assert!(lines.due(at(4000)), "again 2 s later, changed or not");
    }

    #[test]
    fn the_line_shows_what_running_maps_read_the_rate_and_the_time_left() {
        let mib = 1 << 20;
        let p = Progress {
            maps_done: 0,
            maps: 2,
            reduces_done: 0,
            reduces: 1,
            bytes_read: 16 * mib,
            lines: 1234,
            input_bytes: 64 * mib,
        };
        assert_eq!(
            message(&p, 2.0),
            "map 0/2  reduce 0/1  16.0 of 64.0 MiB read  1234 lines  8.0 MiB/s  maps done in ~6 s"
        );
        assert_eq!(position(&p), 200);
        let done = Progress { maps_done: 2, bytes_read: 64 * mib, reduces_done: 1, ..p };
        assert!(!message(&done, 8.0).contains("maps done in"));
        assert_eq!(position(&done), 1000);
    }
}

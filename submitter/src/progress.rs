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

/// When to print a plain line: at most every 2 s, when something changed
/// since the last line printed (not since the last update: a change inside
/// the 2 s is printed at the next chance).
struct PlainLines {
    at: Instant,
    shown: Option<Progress>,
}

impl PlainLines {
    const EVERY: Duration = Duration::from_secs(2);

    fn due(&mut self, p: Progress, now: Instant) -> bool {
        if self.shown == Some(p) || now.duration_since(self.at) < Self::EVERY {
            return false;
        }
        self.at = now;
        self.shown = Some(p);
        true
    }
}

impl ProgressView {
    pub fn new() -> Self {
        let bar = (std::io::stdout().is_terminal() && !crate::say::json_mode()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                    .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        ProgressView { bar, started: now, lines: PlainLines { at: now, shown: None } }
    }

    pub fn update(&mut self, p: Progress) {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let mib = p.bytes_read as f64 / (1 << 20) as f64;
        let msg = format!(
            "map {}/{}  reduce {}/{}  {:.1} MiB read  {:.1} MiB/s",
            p.maps_done,
            p.maps,
            p.reduces_done,
            p.reduces,
            mib,
            mib / elapsed
        );
        match &self.bar {
            Some(bar) => {
                bar.set_length((p.maps + p.reduces) as u64);
                bar.set_position((p.maps_done + p.reduces_done) as u64);
                bar.set_message(msg);
            }
            None => {
                if self.lines.due(p, Instant::now()) {
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
    fn a_change_inside_two_seconds_is_printed_at_the_next_chance() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let p = |maps_done| Progress { maps_done, maps: 2, reduces_done: 0, reduces: 1, bytes_read: 0 };
        let mut lines = PlainLines { at: t0, shown: None };
        assert!(!lines.due(p(0), at(250)), "not within the first 2 s");
        assert!(lines.due(p(0), at(2000)));
        assert!(!lines.due(p(1), at(2250)), "changed, but only 250 ms later");
        assert!(!lines.due(p(1), at(3000)));
        assert!(lines.due(p(1), at(4250)), "the change is printed once 2 s have passed");
        assert!(!lines.due(p(1), at(9000)), "nothing new");
    }
}

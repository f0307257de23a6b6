//! Live progress of a running job: a progress bar on a terminal, plain
//! periodic lines otherwise (CI logs, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::controller::Progress;

pub struct ProgressView {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
    last: Option<Progress>,
}

impl ProgressView {
    pub fn new() -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
                    .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        ProgressView { bar, started: Instant::now(), last_line: Instant::now(), last: None }
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
                let changed = self.last != Some(p);
                if changed && self.last_line.elapsed() >= Duration::from_secs(2) {
                    println!("[{:>6.1}s] {msg}", elapsed);
                    self.last_line = Instant::now();
                }
            }
        }
        self.last = Some(p);
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

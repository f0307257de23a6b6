//! Where `ipdc-submit run` talks: human text on stdout, or, with `--json`,
//! JSON lines on stdout (one object per line with its `event`: for a
//! script driving jobs) and the human text on stderr. Decided once, in
//! `main.rs`.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Turns on `--json`: events on stdout, human text on stderr.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

pub fn json_mode() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// One line of human text.
pub fn human(args: std::fmt::Arguments<'_>) {
    if json_mode() {
        eprintln!("{args}");
    } else {
        println!("{args}");
    }
}

/// One event, with `--json` only: `{"event": NAME, ...fields}`.
pub fn event(name: &str, fields: serde_json::Value) {
    if !json_mode() {
        return;
    }
    let mut line = serde_json::Map::new();
    line.insert("event".into(), name.into());
    if let serde_json::Value::Object(fields) = fields {
        line.extend(fields);
    }
    println!("{}", serde_json::Value::Object(line));
}

/// `println!` for human text: see [`human`].
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::say::human(format_args!($($t)*)) };
}

/// `user@host` of this process, as a job's submitter or a canceller says
/// who it is (printable ASCII, at most 64 characters).
pub fn user_at_host() -> String {
    let user =
        std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "someone".into());
    let user: String = user.chars().filter(|c| c.is_ascii_graphic() && *c != '@').take(24).collect();
    let user = if user.is_empty() { "someone".to_string() } else { user };
    let mut who = format!("{user}@{}", ipdc_common::settings::host_name("host"));
    who.truncate(64);
    who
}

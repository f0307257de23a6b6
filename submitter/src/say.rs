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

//! Finding a usable interpreter: whether `python3` (or the configured one)
//! runs, is recent enough for the runner, and where its real executable is.
//! Running tasks with it is the executor's business.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Oldest Python the runner supports.
const MIN_VERSION: (u32, u32) = (3, 7);

/// How long [`detect_version`] waits for the interpreter.
const DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The version of `python` (like `"3.11.7"`) if it runs and is at least
/// 3.7, else `None`. Gives up (and kills it) after 10 seconds.
pub fn detect_version(python: &Path) -> Option<String> {
    detect(python).map(|(_, version)| version)
}

/// The interpreter's real executable (`sys.executable`) and version, when
/// `python` runs and is recent enough. Running the real executable skips
/// wrappers such as pyenv's shims, which cost ~0.3 s per start.
pub fn detect(python: &Path) -> Option<(PathBuf, String)> {
    let mut child = Command::new(python)
        .args(["-S", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable)"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < DETECT_TIMEOUT => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    if !status.success() {
        return None;
    }
    let mut lines = out.lines();
    let version = lines.next().unwrap_or_default().trim().to_string();
    let executable = match lines.next().map(str::trim) {
        Some(exe) if !exe.is_empty() && Path::new(exe).is_file() => PathBuf::from(exe),
        _ => python.to_path_buf(),
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return None;
    };
    ((major, minor) >= MIN_VERSION).then_some((executable, version))
}

//! Which Python modules this agent can import, for jobs that name the
//! modules they need (`python_modules`): checked on request, once per name,
//! by importing it in a fresh interpreter run as tasks run it (`-I`: no
//! folder of the agent's or a job's is on its path, only what is installed),
//! and reported in the agent's status.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipdc_common::protocol::{MAX_PYTHON_MODULES, is_module_name};

/// How many module names the agent remembers (and reports) at most.
const MAX_KNOWN: usize = 256;
/// A missing module is checked again after this long: its user was told to
/// install it and will try again.
const MISSING_FOR: Duration = Duration::from_secs(20);
/// How long one check may take (importing a large package is slow on a board).
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

const CHECK: &str = r#"
import importlib, json, sys
ok = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        ok[name] = True
    except BaseException:
        ok[name] = False
sys.stdout.write(json.dumps(ok))
"#;

/// What the agent knows of its modules, and when it learnt it.
#[derive(Debug, Default)]
pub struct ModuleCache {
    known: BTreeMap<String, (bool, Instant)>,
}

impl ModuleCache {
    /// The names of `asked` (valid module names, at most
    /// [`MAX_PYTHON_MODULES`]) that need a check now.
    pub fn to_check(&self, asked: &[String]) -> Vec<String> {
        let mut out: Vec<String> = asked
            .iter()
            .filter(|m| is_module_name(m))
            .filter(|m| match self.known.get(m.as_str()) {
                Some((true, _)) => false,
                Some((false, at)) => at.elapsed() >= MISSING_FOR,
                None => true,
            })
            .take(MAX_PYTHON_MODULES)
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Records a check's answers, forgetting the oldest beyond [`MAX_KNOWN`].
    pub fn record(&mut self, answers: BTreeMap<String, bool>) {
        let now = Instant::now();
        for (name, ok) in answers {
            self.known.insert(name, (ok, now));
        }
        while self.known.len() > MAX_KNOWN {
            let oldest = self.known.iter().min_by_key(|(_, (_, at))| *at).map(|(n, _)| n.clone());
            match oldest {
                Some(n) => self.known.remove(&n),
                None => break,
            };
        }
    }

    /// What goes in the status: each known name, importable or not.
    pub fn report(&self) -> BTreeMap<String, bool> {
        self.known.iter().map(|(n, (ok, _))| (n.clone(), *ok)).collect()
    }
}

/// Imports each of `names` (valid module names) in a fresh `python -I`;
/// a name whose import raises, or a check that
/// fails or times out, is not importable.
pub fn check(python: &Path, names: &[String]) -> BTreeMap<String, bool> {
    let missing = || names.iter().map(|n| (n.clone(), false)).collect();
    let child = Command::new(python)
        .args(["-I", "-B", "-c", CHECK])
        .args(names)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return missing() };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < CHECK_TIMEOUT => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return missing();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    let said: BTreeMap<String, bool> = serde_json::from_str(&out).unwrap_or_default();
    names.iter().map(|n| (n.clone(), said.get(n).copied().unwrap_or(false))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn importable_modules_are_told_from_missing_and_bad_names_never_checked() {
        let Some((python, _)) = ipdc_common::python::detect(Path::new("python3")) else { return };
        let names = vec!["json".to_string(), "xml.dom".to_string(), "ipdc_no_such_module_7".to_string()];
        let got = check(&python, &names);
        assert!(got["json"]);
        assert!(got["xml.dom"]);
        assert!(!got["ipdc_no_such_module_7"]);
        let mut cache = ModuleCache::default();
        let asked =
            vec!["json".to_string(), "-c".to_string(), "os; import x".to_string(), "json".to_string()];
        assert_eq!(cache.to_check(&asked), vec!["json".to_string()]);
        cache.record(got);
        assert!(cache.to_check(&names).is_empty(), "known a moment ago");
        assert_eq!(cache.report().len(), 3);
    }
}

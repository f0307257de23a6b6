//! Bad input gets one clear message that names the file, line or agent and
//! says what to do — and never a hang, and never a result-looking folder.

use std::path::Path;
use std::process::Command;

use ipdc_tests::*;

fn job(dir: &Path, map: &str, reduce: &str, data: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Map.py"), map).unwrap();
    std::fs::write(dir.join("Reduce.py"), reduce).unwrap();
    std::fs::write(dir.join("data.dat"), data).unwrap();
}

const MAP: &str = "def map(line):\n    for w in line.split():\n        yield w, 1\n";
const REDUCE: &str = "def reduce(key, values):\n    yield key, sum(values)\n";

fn run(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["run", "--local", "2", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = submit(&args);
    (o.status.success(), text(&o))
}

#[test]
fn a_missing_input_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), MAP, REDUCE, "a\n");
    let (ok, t) = run(tmp.path(), &["--input", "/no/such/file.txt"]);
    assert!(!ok);
    assert!(t.contains("input /no/such/file.txt cannot be read"), "{t}");
}

#[test]
fn an_input_cid_the_local_store_does_not_hold_is_named_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), MAP, REDUCE, "a\n");
    let cid = "bafkreicfoidd6qzcixjjdamz2zuw4lwaoxlgraq3ned6nf3rcetdyigwyq";
    let (ok, t) = run(tmp.path(), &["--input-cid", cid]);
    assert!(!ok);
    assert!(t.contains(&format!("input {cid}: ")) && t.contains("could not find"), "{t}");
    assert!(t.contains("--local finds a CID only in its kept store"), "{t}");
    assert!(t.contains("give the file with --input"), "{t}");
}

#[test]
fn an_empty_input_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), MAP, REDUCE, "");
    let (ok, t) = run(tmp.path(), &[]);
    assert!(!ok);
    assert!(t.contains("data.dat is empty"), "{t}");
}

#[test]
fn a_syntax_error_names_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), "def map(line):\n    yield line.split(\n\n", REDUCE, "a\n");
    let (ok, t) = run(tmp.path(), &[]);
    assert!(!ok);
    assert!(t.contains("syntax error in") && t.contains("Map.py, line"), "{t}");
    assert!(!tmp.path().join("output").exists());
}

#[test]
fn a_reduce_that_raises_shows_the_python_traceback_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let reduce = "def reduce(key, values):\n    if key == 'boom':\n        raise ValueError('cannot reduce ' + key)\n    yield key, sum(values)\n";
    job(tmp.path(), MAP, reduce, "a b boom c\n");
    let (ok, t) = run(tmp.path(), &[]);
    assert!(!ok, "{t}");
    assert!(t.contains("ValueError: cannot reduce boom"), "{t}");
    // The traceback reaches the user, naming the job's file (not the
    // agent's task folder) and showing the line that raised.
    assert!(t.contains("File \"Reduce.py\", line 3, in reduce"), "{t}");
    assert!(t.contains("raise ValueError('cannot reduce ' + key)"), "{t}");
    assert!(t.contains("r-00000 failed 4 times"), "{t}");
    // Four attempts failed the same way: the user is told while the job
    // runs once, not once per attempt (the agents' own log lines say it at info).
    assert_eq!(t.matches("task r-00000 attempt").count(), 1, "{t}");
    assert!(t.contains("task r-00000 attempt 1 failed on agent local-"), "{t}");
    assert!(!tmp.path().join("output").exists(), "no output folder after a failed job");
}

#[test]
fn a_traceback_names_the_users_own_file_names() {
    // --map and --reduce files with other names than Map.py and Reduce.py:
    // the agent's traceback shows them by the names the user knows.
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), MAP, REDUCE, "a b\nc\n");
    let map = tmp.path().join("words_of_line.py");
    std::fs::write(&map, "def map(line):\n    for w in line.split():\n        yield w, 1 // 0\n").unwrap();
    let (ok, t) = run(tmp.path(), &["--map", map.to_str().unwrap()]);
    assert!(!ok, "{t}");
    assert!(t.contains("File \"words_of_line.py\", line 3, in map"), "{t}");
    assert!(t.contains("ZeroDivisionError"), "{t}");
    assert!(!t.contains("Map.py"), "{t}");
}

#[test]
fn a_mapper_named_like_a_module_the_runner_imports_still_runs() {
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), MAP, REDUCE, "a b a\n");
    let map = tmp.path().join("json.py");
    std::fs::write(&map, MAP).unwrap();
    let out = tmp.path().join("result");
    let (ok, t) = run(tmp.path(), &["--map", map.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(ok, "{t}");
    assert_eq!(std::fs::read_to_string(out.join("part-00000")).unwrap(), "a\t2\nb\t1\n");
}

#[test]
fn a_key_json_cannot_encode_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), "def map(line):\n    yield {1, 2}, 1\n", REDUCE, "a\n");
    let (ok, t) = run(tmp.path(), &[]);
    assert!(!ok);
    assert!(t.contains("set"), "the message names the type: {t}");
    assert!(!tmp.path().join("output").exists());
}

#[test]
fn no_agents_at_all_is_reported_after_the_wait() {
    let hub = Hub::start();
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), MAP, REDUCE, "a\n");
    let o = hub.submit(&[tmp.path().to_str().unwrap(), "--wait", "1"]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("no capable agent is online"), "{t}");
}

#[test]
fn an_unreachable_broker_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), MAP, REDUCE, "a\n");
    let o = submit(&[
        "run",
        tmp.path().to_str().unwrap(),
        "--broker",
        "mqtt://127.0.0.1:1",
        "--ipfs",
        "http://127.0.0.1:1",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("cannot reach the MQTT broker mqtt://127.0.0.1:1"), "{t}");
}

/// A job whose map() starts a child process (`sleep`) and never returns,
/// writing both process ids to `pid_file` first.
fn spinning_job(dir: &Path, pid_file: &Path) {
    let map = format!(
        "import os, subprocess\ndef map(line):\n    child = subprocess.Popen(['sleep', '300'])\n    open({:?}, 'w').write('%d %d' % (os.getpid(), child.pid))\n    while True:\n        pass\n    yield line, 1\n",
        pid_file.to_str().unwrap()
    );
    job(dir, &map, REDUCE, "a b\n");
}

/// The process ids the spinning map wrote (its own, its child's), once it runs.
fn runner_pids(pid_file: &Path) -> (u32, u32) {
    wait_until("the map to start", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(pid_file).is_ok_and(|t| t.contains(' '))
    });
    let text = std::fs::read_to_string(pid_file).unwrap();
    let (a, b) = text.split_once(' ').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// True once `pid` has exited (a zombie waiting for its new parent counts).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn ctrl_c_stops_a_local_job_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, scratch) = (tmp.path().join("job"), tmp.path().join("scratch"));
    std::fs::create_dir_all(&scratch).unwrap();
    let pid_file = tmp.path().join("runner.pid");
    spinning_job(&dir, &pid_file);
    let out = tmp.path().join("result");
    let args = ["run", "--local", "1", dir.to_str().unwrap(), "--out", out.to_str().unwrap()];
    // Landlock off: the map writes its pids beside the job, outside its task folder.
    let env = [("TMPDIR", scratch.to_str().unwrap()), ("IPDC_LANDLOCK", "off")];
    let mut p = spawn(&bin("ipdc-submit"), &args, &env);
    let (pid, child) = runner_pids(&pid_file);
    let status =
        std::process::Command::new("kill").args(["-INT", &p.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    assert!(!p.wait_exit(std::time::Duration::from_secs(15)).success());
    assert!(
        p.output()
            .contains("stopped (Ctrl-C or SIGTERM): the job's tasks are dropped; no output was written"),
        "{}",
        p.output()
    );
    wait_until("the user's code to be stopped", std::time::Duration::from_secs(5), || gone(pid));
    wait_until("what the user's code started to be stopped", std::time::Duration::from_secs(5), || {
        gone(child)
    });
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "the local cluster's folder is removed: {left:?}");
    let beside: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        beside.iter().all(|n| !n.to_string_lossy().contains("result")),
        "no output, not even a temporary one: {beside:?}"
    );
}

#[test]
fn the_users_code_dies_with_a_killed_agent() {
    // SIGKILL leaves no chance to clean up: the kernel stops the runner
    // (its parent-death signal), so no user code runs on with nobody to stop it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    let pid_file = tmp.path().join("runner.pid");
    spinning_job(&dir, &pid_file);
    let out = tmp.path().join("result");
    // Landlock off: the map writes its pids beside the job, outside its task folder.
    let args = ["run", "--local", "1", dir.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let mut p = spawn(&bin("ipdc-submit"), &args, &[("IPDC_LANDLOCK", "off")]);
    let (pid, child) = runner_pids(&pid_file);
    p.kill9();
    wait_until("the user's code to be stopped", std::time::Duration::from_secs(5), || gone(pid));
    // What it started lives on (the parent-death signal reaches the runner
    // only; under systemd the unit's cgroup is stopped with the agent).
    let _ = Command::new("kill").args(["-KILL", &child.to_string()]).status();
}

#[test]
fn code_left_in_the_user_site_packages_does_not_run_in_jobs() {
    // A job can write to the agent user's home, where Python's user
    // site-packages live; a .pth file there would run in every later task.
    let tmp = tempfile::tempdir().unwrap();
    let user_base = tmp.path().join("userbase");
    let site = std::process::Command::new("python3")
        .args(["-c", "import site; print(site.getusersitepackages())"])
        .env("PYTHONUSERBASE", &user_base)
        .output()
        .unwrap();
    let site = std::path::PathBuf::from(String::from_utf8(site.stdout).unwrap().trim());
    std::fs::create_dir_all(&site).unwrap();
    let marker = tmp.path().join("planted-code-ran");
    std::fs::write(
        site.join("zz_planted.pth"),
        format!("import os; open({:?}, 'a').write(open('/proc/self/cmdline').read() + '\\n')\n", marker),
    )
    .unwrap();
    // The file is live for a plain interpreter (so this test can fail).
    std::process::Command::new("python3")
        .args(["-c", "pass"])
        .env("PYTHONUSERBASE", &user_base)
        .status()
        .unwrap();
    assert!(marker.exists(), "the planted .pth runs in a plain python3");
    std::fs::remove_file(&marker).unwrap();

    let dir = tmp.path().join("job");
    job(&dir, MAP, REDUCE, "a b a\n");
    let out = tmp.path().join("result");
    let args = ["run", "--local", "1", dir.to_str().unwrap(), "--out", out.to_str().unwrap()];
    // Landlock off: with it, a runner that did run the .pth could not write the marker.
    let env = [("PYTHONUSERBASE", user_base.to_str().unwrap()), ("IPDC_LANDLOCK", "off")];
    let mut p = spawn(&bin("ipdc-submit"), &args, &env);
    assert!(p.wait_exit(std::time::Duration::from_secs(60)).success(), "{}", p.output());
    assert_eq!(std::fs::read_to_string(out.join("part-00000")).unwrap(), "a\t2\nb\t1\n");
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    // The runner is a sealed file the interpreter opens as /proc/self/fd/N.
    assert!(!ran.contains("/proc/self/fd/"), "the runner ignores the user site-packages: {ran}");
}

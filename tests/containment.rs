//! A task's processes end with the task, end to end: a job whose Map.py
//! leaves a `setsid` daemon that keeps planting a `struct.py` (and an
//! `ipdc_runner.py`, ...) in every folder under the agent's work dir, then
//! an honest job on the same agent. The daemon must be gone when the first
//! job ends, and the second job's output must equal Python's own counts.
//! Run with each containment mechanism the machine allows (a cgroup per
//! task, a reaper process per task), chosen with `IPDC_CONTAINMENT`, with
//! Landlock off; and under `ipdc-submit --local` (where the agents run
//! inside the submitter) with what the machine offers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipdc_tests::*;

/// The daemon: plants its files in every folder under the work dir, every
/// 20 ms, for ever.
const DAEMON: &str = r#"
import os, sys, time
work = sys.argv[1]
poison = "raise ImportError('planted by an earlier job')\n"
while True:
    for root, dirs, files in os.walk(work):
        for name in ("struct.py", "json.py", "dis.py", "ipdc_runner.py"):
            try:
                with open(os.path.join(root, name), "w") as f:
                    f.write(poison)
            except OSError:
                pass
    time.sleep(0.02)
"#;

/// Map.py of the first job: WordCount that, when imported, starts the
/// daemon (a double fork with `setsid`, stdio on /dev/null, so that nothing
/// but its process ties it to the task), writes its pid to `pid_file` and
/// also yields it as a key (`daemon-pid:N`), in case the job may not write
/// outside its folder.
fn planting_map(pid_file: &Path) -> String {
    format!(
        r#"import os, sys

PID_FILE = {pid_file:?}
DAEMON = {DAEMON:?}

def _start_daemon():
    # The work dir: the parent of the job's folder (WORK/JOB/ATTEMPT/code/Map.py).
    work = os.path.abspath(__file__)
    for _ in range(4):
        work = os.path.dirname(work)
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, b"%d" % os.getpid())
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execv(sys.executable, [sys.executable, "-c", DAEMON, work])
        os._exit(0)
    os.close(w)
    pid = int(os.read(r, 32))
    os.close(r)
    os.wait()
    try:
        with open(PID_FILE, "a") as f:
            f.write("%d\n" % pid)
    except OSError:
        pass
    return pid

_PID = _start_daemon()
_told = False

def map(line):
    global _told
    if not _told:
        _told = True
        yield "daemon-pid:%d" % _PID, 1
    for w in line.split():
        yield w, 1
"#,
        pid_file = pid_file.to_str().unwrap()
    )
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, None | Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// A job folder with the planting Map.py, the example's Reduce.py and data.
fn planting_job(dir: &Path, pid_file: &Path) -> PathBuf {
    let job = dir.join("planter");
    std::fs::create_dir(&job).unwrap();
    std::fs::write(job.join("Map.py"), planting_map(pid_file)).unwrap();
    let example = repo_root().join("examples/wordcount");
    std::fs::copy(example.join("Reduce.py"), job.join("Reduce.py")).unwrap();
    std::fs::copy(example.join("data.dat"), job.join("data.dat")).unwrap();
    job
}

/// The daemons' pids: from the pid file and from the `daemon-pid:` keys
/// of the output.
fn daemon_pids(pid_file: &Path, out: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(pid_file)
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    for part in std::fs::read_dir(out).unwrap().flatten() {
        if !part.file_name().to_string_lossy().starts_with("part-") {
            continue;
        }
        for line in std::fs::read_to_string(part.path()).unwrap().lines() {
            if let Some(pid) = line.strip_prefix("daemon-pid:").and_then(|l| l.split('\t').next()) {
                pids.push(pid.parse().unwrap());
            }
        }
    }
    pids.sort();
    pids.dedup();
    assert!(!pids.is_empty(), "the first job started no daemon");
    pids
}

fn assert_daemons_gone(pids: &[i32], what: &str) {
    let start = Instant::now();
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(5) {
            // The test's own leftovers should not outlive it.
            for &p in &left {
                let _ = std::process::Command::new("kill").args(["-9", &p.to_string()]).status();
            }
            panic!("{what}: the first job's daemon is still running: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An agent of `hub` with `IPDC_CONTAINMENT=mechanism`, a pause before every
/// task (so that the daemon has time to plant its files in a task's folder
/// before the runner starts), and `work` as its work dir. Landlock is off,
/// so that the daemon can plant where it likes, as on a kernel without it.
fn agent(hub: &Hub, name: &str, mechanism: &str, work: &Path) -> Proc {
    let args = [
        "--broker",
        &hub.mqtt,
        "--ipfs",
        &hub.ipfs,
        "--name",
        name,
        "--heartbeat-secs",
        "1",
        "--slots",
        "2",
        "--work-dir",
        work.to_str().unwrap(),
    ];
    let p = spawn(
        &bin("ipdc-agent"),
        &args,
        &[("IPDC_CONTAINMENT", mechanism), ("IPDC_LANDLOCK", "off"), ("IPDC_TEST_TASK_DELAY_MS", "1000")],
    );
    p.wait_for("connected to broker", Duration::from_secs(20));
    p
}

/// The two jobs on one agent contained by `mechanism`; false when the
/// agent could not use it (said in its log) and fell back to another.
fn planted_then_honest(mechanism: &str) -> bool {
    let hub = Hub::start();
    let work = tempfile::tempdir().unwrap();
    let a = agent(&hub, "contain-1", mechanism, work.path());
    if !a.output().contains(&format!("user code containment: {mechanism}")) {
        eprintln!("skipped: the agent does not use {mechanism} here:\n{}", a.output());
        return false;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("daemon-pids");
    let job = planting_job(tmp.path(), &pid_file);
    let out1 = tmp.path().join("out1");
    let o = hub.submit(&[
        job.to_str().unwrap(),
        "--workers",
        "1",
        "--reducers",
        "1",
        "--out",
        out1.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\nagent:\n{}", text(&o), a.output());
    assert_daemons_gone(&daemon_pids(&pid_file, &out1), mechanism);

    let example = repo_root().join("examples/wordcount");
    let out2 = tmp.path().join("out2");
    let o = hub.submit(&[
        example.to_str().unwrap(),
        "--input",
        example.join("data.dat").to_str().unwrap(),
        "--workers",
        "1",
        "--reducers",
        "2",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\nagent:\n{}", text(&o), a.output());
    let got = read_output(&out2, 2);
    assert_counts_eq(&got, &reference_counts(&example.join("data.dat")), mechanism);
    true
}

#[test]
fn a_planting_daemon_dies_with_its_task_in_a_cgroup() {
    planted_then_honest("cgroup");
}

#[test]
fn a_planting_daemon_dies_with_its_task_under_a_reaper() {
    assert!(planted_then_honest("subreaper"), "every Linux agent can use the reaper");
}

#[test]
fn a_planting_daemon_dies_with_its_task_under_local_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("daemon-pids");
    let job = planting_job(tmp.path(), &pid_file);
    let out = tmp.path().join("out");
    let o = submit(&[
        "run",
        job.to_str().unwrap(),
        "--local",
        "2",
        "--reducers",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_daemons_gone(&daemon_pids(&pid_file, &out), "--local");
}

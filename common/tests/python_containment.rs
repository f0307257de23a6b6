//! A task's processes end with the task: what the user's code starts is
//! gone when the run returns, however it left the runner's process group
//! (`setsid`, a double fork, `setpgid`), a forked child holding the
//! runner's stdout does not hold the run, and files an earlier run planted
//! (a `struct.py`, an `ipdc_runner.py`) are never imported. Real `python3`,
//! checked in `/proc` (Linux only).

#[allow(dead_code)] // this file uses only part of it
mod support;

use std::time::{Duration, Instant};

use ipdc_common::python::{Containment, ExecError, landlock_abi};
use support::*;

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

/// Asserts that none of `pids` is alive, allowing a moment for SIGKILL to land.
fn assert_gone(pids: &[i32], what: &str) {
    let start = Instant::now();
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{what}: processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// User code that starts processes outside the runner's process group and
/// writes their pids to `pids` in its folder before `map()` runs. `how`
/// chooses the way out; each waits until its process has written its pid
/// (through a pipe), so the file is complete when the import ends.
const ESCAPES: &str = r#"
import os, subprocess, sys, time

def _record(pid):
    with open("pids", "a") as f:
        f.write("%d\n" % pid)

def _daemon_setsid():
    # The classic daemon: a new session, stdio on /dev/null.
    p = subprocess.Popen(["sleep", "60"], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _record(p.pid)

def _double_fork():
    r, w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, b"%d" % os.getpid())
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execvp("sleep", ["sleep", "60"])
        os._exit(0)
    os.close(w)
    _record(int(os.read(r, 32)))
    os.close(r)
    os.wait()

def _setpgid():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        os.write(w, b"x")
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.execvp("sleep", ["sleep", "60"])
    os.close(w)
    os.read(r, 1)
    os.close(r)
    _record(pid)

def _holds_stdout():
    # A plain fork: the child keeps every pipe of the runner open.
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    _record(pid)

for how in HOW:
    globals()["_" + how]()

def map(line):
    for w in line.split():
        yield w, 1
"#;

fn escaping_map(how: &[&str]) -> String {
    format!("HOW = {how:?}\n{ESCAPES}")
}

fn recorded_pids(j: &Job) -> Vec<i32> {
    let text = std::fs::read_to_string(j.exec.workdir.join("pids")).expect("the user code wrote its pids");
    text.split_whitespace().map(|p| p.parse().unwrap()).collect()
}

/// The containments this machine allows: a cgroup per run where the test
/// may make cgroups, and always a reaper per run.
fn mechanisms() -> Vec<Containment> {
    let mut all = Vec::new();
    match Containment::own_cgroup() {
        Ok(c) => all.push(c),
        Err(why) => eprintln!("no cgroup containment here ({why}): testing the reaper only"),
    }
    all.push(Containment::Subreaper);
    all
}

fn contained_job(files: &[(&str, &str)], how: &Containment) -> Job {
    let mut j = job(files);
    j.exec.containment = how.clone();
    j
}

#[test]
fn processes_that_leave_the_group_are_gone_when_the_run_returns() {
    for mechanism in mechanisms() {
        for how in ["daemon_setsid", "double_fork", "setpgid"] {
            let what = format!("{how} under {mechanism:?}");
            let j = contained_job(&[("Map.py", &escaping_map(&[how]))], &mechanism);
            let mut out = Vec::new();
            let stats = j.exec.run_map(&j.path("Map.py"), None, &b"a b\nc\n"[..], &mut out).unwrap();
            assert_eq!(stats.output_records, 3, "{what}");
            let pids = recorded_pids(&j);
            assert_eq!(pids.len(), 1, "{what}");
            assert_gone(&pids, &what);
        }
    }
}

#[test]
fn a_forked_child_holding_stdout_does_not_hold_the_run() {
    for mechanism in mechanisms().into_iter().chain([Containment::ProcessGroup]) {
        let j = contained_job(&[("Map.py", &escaping_map(&["holds_stdout"]))], &mechanism);
        let start = Instant::now();
        let mut out = Vec::new();
        let stats = j.exec.run_map(&j.path("Map.py"), None, &b"a b\nc\n"[..], &mut out).unwrap();
        let took = start.elapsed();
        assert_eq!(stats.output_records, 3);
        assert_eq!(counts(&out).len(), 3);
        // The child sleeps 60 s: the run ends with the runner, not with it.
        assert!(took < Duration::from_secs(10), "{mechanism:?}: {took:?}");
        assert_gone(&recorded_pids(&j), &format!("the forked child under {mechanism:?}"));
    }
}

#[test]
fn the_run_ends_with_the_runner_even_when_an_escaped_child_holds_its_pipes() {
    // The process group alone does not catch a child that left it; the run
    // must still end when the runner does (the child is the test's to kill).
    let map = escaping_map(&[]).replace(
        "for how in HOW:",
        "pid = os.fork()\n\
         if pid == 0:\n    os.setsid()\n    time.sleep(60)\n    os._exit(0)\n\
         _record(pid)\n\
         for how in HOW:",
    );
    let j = contained_job(&[("Map.py", &map)], &Containment::ProcessGroup);
    let start = Instant::now();
    let mut out = Vec::new();
    let stats = j.exec.run_map(&j.path("Map.py"), None, &b"a b\nc\n"[..], &mut out).unwrap();
    assert_eq!(stats.output_records, 3);
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    let pids = recorded_pids(&j);
    assert!(alive(pids[0]), "it escaped the group, as expected without a cgroup or reaper");
    // SAFETY: kill() has no memory-safety preconditions; our test's leftover.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
}

#[test]
fn a_reduce_that_leaves_every_kind_of_process_behind_ends_promptly() {
    let reduce = ESCAPES.replace("def map(line):\n    for w in line.split():\n        yield w, 1\n", "")
        + "def reduce(key, values):\n    yield key, sum(values)\n";
    let reduce = format!("HOW = ['daemon_setsid', 'double_fork', 'setpgid', 'holds_stdout']\n{reduce}");
    for mechanism in mechanisms() {
        let j = contained_job(&[("Reduce.py", &reduce)], &mechanism);
        let recs: Vec<_> = (0..1000).map(|i| (format!("sk{i:04}").into_bytes(), b"j1".to_vec())).collect();
        let start = Instant::now();
        let mut out = Vec::new();
        let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs, 0), &mut out).unwrap();
        assert_eq!(stats.output_records, 1000);
        assert!(start.elapsed() < Duration::from_secs(10), "{mechanism:?}: {:?}", start.elapsed());
        let pids = recorded_pids(&j);
        assert_eq!(pids.len(), 4);
        assert_gone(&pids, &format!("reduce under {mechanism:?}"));
    }
}

#[test]
fn a_timeout_and_a_cancel_take_the_escaped_processes_too() {
    let endless = escaping_map(&["daemon_setsid", "double_fork", "setpgid"])
        .replace("def map(line):\n", "def map(line):\n    while True:\n        pass\n");
    for mechanism in mechanisms() {
        let mut j = contained_job(&[("Map.py", &endless)], &mechanism);
        j.exec.limits.wall = Some(Duration::from_secs(2));
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
        assert!(matches!(e, ExecError::TimedOut { .. }), "{mechanism:?}: {e:?}");
        assert_gone(&recorded_pids(&j), &format!("timeout under {mechanism:?}"));

        let j = contained_job(&[("Map.py", &endless)], &mechanism);
        let token = j.exec.cancel.clone();
        let pids_file = j.exec.workdir.join("pids");
        let canceller = std::thread::spawn(move || {
            let start = Instant::now();
            while std::fs::read_to_string(&pids_file).map_or(0, |t| t.lines().count()) < 3
                && start.elapsed() < Duration::from_secs(20)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            token.cancel();
        });
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
        canceller.join().unwrap();
        assert!(matches!(e, ExecError::Cancelled { .. }), "{mechanism:?}: {e:?}");
        assert_gone(&recorded_pids(&j), &format!("cancel under {mechanism:?}"));
    }
}

#[test]
fn the_end_of_one_run_takes_only_its_own_processes() {
    // Two runs at once in this process (as an agent's slots, or the agents
    // of `--local`): when the short one ends, the long one's daemon lives on
    // until the long one ends.
    let long = escaping_map(&["double_fork"]).replace(
        "def map(line):\n",
        // Bounded, so that a failed assertion below cannot hang the test.
        "def map(line):\n    t = time.time()\n    while not os.path.exists('go') and time.time() - t < 30:\n        time.sleep(0.01)\n",
    );
    for mechanism in mechanisms() {
        let lj = contained_job(&[("Map.py", &long)], &mechanism);
        let sj = contained_job(&[("Map.py", &escaping_map(&["double_fork"]))], &mechanism);
        std::thread::scope(|s| {
            let long_run =
                s.spawn(|| lj.exec.run_map(&lj.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()));
            let start = Instant::now();
            while !lj.exec.workdir.join("pids").exists() {
                assert!(start.elapsed() < Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(10));
            }
            sj.exec.run_map(&sj.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap();
            assert_gone(&recorded_pids(&sj), "the short run");
            let long_pids = recorded_pids(&lj);
            assert!(
                alive(long_pids[0]),
                "{mechanism:?}: the long run's daemon was killed by the short run's end"
            );
            std::fs::write(lj.exec.workdir.join("go"), "").unwrap();
            long_run.join().unwrap().unwrap();
            assert_gone(&long_pids, "the long run");
        });
    }
}

/// What an earlier job plants: a module named like one the runner (or the
/// next job) imports, and a runner of its own.
const POISON: &str = "raise ImportError('planted by an earlier job')\n";

/// The files an earlier job plants.
const PLANTED: [&str; 5] = ["struct.py", "json.py", "dis.py", "collections.py", "ipdc_runner.py"];

#[test]
fn modules_planted_by_an_earlier_run_are_not_imported_by_the_next() {
    // The first job writes its files into its own folder and every parent
    // folder up to the test's temporary folder (where its code is), where
    // it may: with Landlock, its own folder only.
    let planter = format!(
        "import os\n\
         def _plant(folder):\n    \
             for name in {PLANTED:?}:\n        \
                 try:\n            \
                     with open(os.path.join(folder, name), 'w') as f:\n                \
                         f.write({POISON:?})\n        \
                 except OSError:\n            \
                     pass\n\
         TOP = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))\n\
         for start in (os.getcwd(), os.path.dirname(os.path.abspath(__file__))):\n    \
             d = os.path.realpath(start)\n    \
             while d.startswith(TOP):\n        \
                 _plant(d)\n        \
                 d = os.path.dirname(d)\n\
         def map(line):\n    yield line, 1\n"
    );
    // The next job imports `struct` and `json` itself, beside its own file.
    let honest = "import json, struct\n\
                  def map(line):\n    for w in line.split():\n        yield w, json.loads('1') * struct.calcsize('<I') // 4\n";
    for landlock in [true, false] {
        let mut j = job(&[("Planter.py", &planter), ("Map.py", honest), ("Reduce.py", WC_REDUCE)]);
        j.exec.landlock = landlock;
        j.exec.run_map(&j.path("Planter.py"), None, &b"x\n"[..], &mut Vec::new()).unwrap();
        assert!(j.exec.workdir.join("struct.py").is_file(), "the planter ran");
        let confined = landlock && landlock_abi().is_ok();
        assert_eq!(j.path("struct.py").is_file(), !confined, "landlock {landlock}");
        // Where Landlock kept it in its folder, plant beside the code as a
        // process outside the run could.
        for name in PLANTED {
            std::fs::write(j.path(name), POISON).unwrap();
        }
        let text = tricky_text();
        let mut native = Vec::new();
        ipdc_common::wordcount::map(&text[..], &mut native, 1 << 30).unwrap();
        for combine in [None, Some(j.path("Reduce.py"))] {
            let mut out = Vec::new();
            j.exec.run_map(&j.path("Map.py"), combine.as_deref(), &text[..], &mut out).unwrap();
            assert_eq!(counts(&out), counts(&native));
        }
        let mut recs = native.clone();
        recs.sort();
        let mut out = Vec::new();
        j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs.clone(), 0), &mut out).unwrap();
        let mut want = Vec::new();
        ipdc_common::wordcount::reduce(&mut Sorted(recs, 0), &mut want).unwrap();
        assert_eq!(out, want);
    }
}

#[test]
fn with_landlock_user_code_writes_only_in_its_folder() {
    let Ok(abi) = landlock_abi() else {
        eprintln!("skipped: {}", landlock_abi().unwrap_err());
        return;
    };
    // Each try yields what it tried and how that went.
    let map = r#"
import os, subprocess, tempfile
def _try(what, fn):
    try:
        fn()
        return what + " ok"
    except (OSError, subprocess.CalledProcessError) as e:
        return what + " " + type(e).__name__

def _write(path):
    with open(path, "w") as f:
        f.write("x")

RESULTS = [
    _try("own", lambda: _write("mine")),
    _try("own-dir", lambda: os.mkdir("sub")),
    _try("tempfile", lambda: tempfile.NamedTemporaryFile().close()),
    _try("devnull", lambda: _write(os.devnull)),
    _try("parent", lambda: _write("../planted")),
    _try("tmp", lambda: _write("/tmp/ipdc-landlock-test-%d" % os.getpid())),
    _try("child", lambda: subprocess.run(["sh", "-c", "echo x > ../planted-by-child"], check=True, stderr=subprocess.DEVNULL)),
]

def map(line):
    for r in RESULTS:
        yield r, 1
"#;
    let j = job(&[("Map.py", map)]);
    let mut out = Vec::new();
    j.exec.run_map(&j.path("Map.py"), None, &b"x\n"[..], &mut out).unwrap();
    let mut got: Vec<String> =
        out.iter().map(|(k, _)| String::from_utf8_lossy(&k[1..]).into_owned()).collect();
    got.sort();
    let want = [
        "child CalledProcessError",
        "devnull ok",
        "own ok",
        "own-dir ok",
        "parent PermissionError",
        "tempfile ok",
        "tmp PermissionError",
    ];
    assert_eq!(got, want, "Landlock ABI {abi}");
    assert!(!j.dir.path().join("planted").exists() && !j.dir.path().join("planted-by-child").exists());
}

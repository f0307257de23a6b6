//! The Python executor's sandbox against a real `python3`: wall-clock and
//! memory limits, cancellation, and that nothing the user's code started
//! outlives its run (checked in `/proc`, so Linux only).

mod support;

use std::io;
use std::time::{Duration, Instant};

use ipdc_common::python::{ExecError, Limits, MIN_MEMORY_BYTES, Stage};
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

/// The live (not zombie) processes of the group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2) == Some(&pgid.to_string().as_str()) && !matches!(fields[0], "Z" | "X") {
            pids.push(pid);
        }
    }
    pids
}

/// Asserts that none of `pids` and no process of the group `pgid` is
/// alive (allowing a moment for SIGKILL to land).
fn assert_all_gone(pgid: i32, pids: &[i32]) {
    let start = Instant::now();
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).chain(group_members(pgid)).collect();
        if left.is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids the user code wrote to `pids` in the task folder: its own
/// (= its process group), then those of its subprocesses.
fn user_pids(j: &Job) -> Vec<i32> {
    let text = std::fs::read_to_string(j.exec.workdir.join("pids")).expect("the user code wrote its pids");
    text.split_whitespace().map(|p| p.parse().unwrap()).collect()
}

/// Writes the runner's pid, its group and `extra` pids to `pids`.
const WRITE_PIDS: &str = "import os, subprocess\n\
    def write_pids(*extra):\n    \
        assert os.getpgid(0) == os.getpid()\n    \
        with open('pids', 'w') as f:\n        \
            f.write(' '.join(str(p) for p in (os.getpid(),) + extra))\n";

fn limited(j: &mut Job, wall: Option<u64>, memory_mib: Option<u64>) {
    j.exec.limits = Limits { wall: wall.map(Duration::from_secs), memory_bytes: memory_mib.map(|m| m << 20) };
}

#[test]
fn an_endless_map_times_out_and_its_group_is_gone() {
    let map = format!("{WRITE_PIDS}\ndef map(line):\n    write_pids()\n    while True:\n        pass\n");
    let mut j = job(&[("Map.py", &map)]);
    limited(&mut j, Some(2), None);
    let start = Instant::now();
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\nb\n"[..], &mut Vec::new()).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(e, ExecError::TimedOut { stage: Stage::Map, limit } if limit == Duration::from_secs(2)));
    assert_eq!(e.to_string(), "map() killed: it ran longer than the task's wall-clock limit of 2 s");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(3), "{took:?}");
    let pids = user_pids(&j);
    // SAFETY: kill with signal 0 only checks.
    let r = unsafe { libc::kill(-pids[0], 0) };
    assert_eq!((r, io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ESRCH)));
    assert_all_gone(pids[0], &pids);
}

#[test]
fn a_timeout_kills_the_users_subprocesses_too() {
    // The grandchild also holds the runner's stderr open (30 s: a run
    // that waits for it fails on time instead of hanging).
    let map = format!(
        "{WRITE_PIDS}\ndef map(line):\n    p = subprocess.Popen(['sleep', '30'])\n    \
         write_pids(p.pid)\n    while True:\n        pass\n"
    );
    let mut j = job(&[("Map.py", &map)]);
    limited(&mut j, Some(2), Some(1024));
    let start = Instant::now();
    let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, ExecError::TimedOut { .. }), "{e:?}");
    // Killed at the limit, not left running (generous: machines here are shared).
    assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
    let pids = user_pids(&j);
    assert_eq!(pids.len(), 2);
    assert_all_gone(pids[0], &pids);
}

#[test]
fn subprocesses_left_behind_by_a_successful_run_are_killed() {
    // No limits: the run must still end promptly (the first sleep holds
    // stderr open) and take both sleeps with it.
    let map = format!(
        "{WRITE_PIDS}\np = subprocess.Popen(['sleep', '30'])\n\
         q = subprocess.Popen(['sleep', '1000'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
         write_pids(p.pid, q.pid)\n\n\
         def map(line):\n    yield line, 1\n"
    );
    let j = job(&[("Map.py", &map)]);
    let start = Instant::now();
    let mut out = Vec::new();
    let stats = j.exec.run_map(&j.path("Map.py"), None, &b"a\nb\n"[..], &mut out).unwrap();
    assert_eq!(stats.output_records, 2);
    assert!(start.elapsed() < Duration::from_secs(10));
    let pids = user_pids(&j);
    assert_eq!(pids.len(), 3);
    assert_all_gone(pids[0], &pids);
}

#[test]
fn a_failing_sink_kills_the_users_subprocesses() {
    let map = format!(
        "{WRITE_PIDS}\np = subprocess.Popen(['sleep', '30'])\nwrite_pids(p.pid)\n\n\
         def map(line):\n    yield line, 1\n"
    );
    let j = job(&[("Map.py", &map)]);
    let start = Instant::now();
    let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut FailingSink(0)).unwrap_err();
    assert!(matches!(&e, ExecError::Io(io) if io.to_string() == "disk full"), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    let pids = user_pids(&j);
    assert_all_gone(pids[0], &pids);
}

const HOG: &str = "hog = []\nwhile True:\n    hog.append(bytes(10 << 20))\n";

#[test]
fn a_map_that_allocates_without_bound_hits_the_memory_limit() {
    let map = format!("def map(line):\n    yield line, 1\n    {}", HOG.replace('\n', "\n    "));
    let mut j = job(&[("Map.py", &map), ("Reduce.py", WC_REDUCE)]);
    limited(&mut j, Some(60), Some(200));
    for combine in [None, Some(j.path("Reduce.py"))] {
        let start = Instant::now();
        let e = j.exec.run_map(&j.path("Map.py"), combine.as_deref(), &b"a\nb\n"[..], &mut Vec::new());
        let e = e.unwrap_err();
        assert_eq!(
            e.to_string(),
            "map() killed: it exceeded the task's memory limit of 200 MiB (MemoryError)"
        );
        let ExecError::OutOfMemory { stage: Stage::Map, limit_bytes, detail, .. } = e else { unreachable!() };
        assert_eq!(limit_bytes, 200 << 20);
        assert!(detail.contains("MemoryError: map() ran out of memory on line 1"), "{detail}");
        assert!(detail.contains("Map.py\", line 5, in map"), "{detail}");
        assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());
    }
    // The same code without a limit would run the machine out of
    // memory; a MemoryError without our limit is the user's error.
    let j = job(&[("Map.py", "def map(line):\n    raise MemoryError('big')\n")]);
    let (summary, _) =
        user_error(j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err());
    assert_eq!(summary, "MemoryError: map() ran out of memory on line 1 of this split: 'a'");
}

#[test]
fn a_crash_under_a_memory_limit_is_taken_as_the_memory_limit() {
    let map = "import os, signal\ndef map(line):\n    os.kill(os.getpid(), signal.SIGSEGV)\n";
    let mut j = job(&[("Map.py", map)]);
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
    assert!(matches!(e, ExecError::Runner { .. }), "{e:?}");
    limited(&mut j, None, Some(300));
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "map() killed: it exceeded the task's memory limit of 300 MiB (killed by SIGSEGV)"
    );
}

#[test]
fn a_tiny_memory_limit_is_raised_to_the_floor() {
    // 1 MiB of address space would not even let Python start.
    let mut j = job(&[("Map.py", WC_MAP)]);
    limited(&mut j, None, None);
    j.exec.limits.memory_bytes = Some(1 << 20);
    assert_eq!(j.exec.limits.effective_memory_bytes(), Some(MIN_MEMORY_BYTES));
    let mut out = Vec::new();
    j.exec.run_map(&j.path("Map.py"), None, &b"a b\n"[..], &mut out).unwrap();
    assert_eq!(out.len(), 2);
}

#[test]
fn cancel_stops_a_long_map_promptly() {
    let map = format!("{WRITE_PIDS}\ndef map(line):\n    write_pids()\n    while True:\n        pass\n");
    let mut j = job(&[("Map.py", &map)]);
    limited(&mut j, Some(600), None);
    let token = j.exec.cancel.clone();
    let start = Instant::now();
    let pids_file = j.exec.workdir.join("pids");
    let canceller = std::thread::spawn(move || {
        // Cancel once the user code runs (a loaded machine starts Python slowly).
        while !pids_file.exists() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        token.cancel();
        Instant::now()
    });
    let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
    let returned = Instant::now();
    let cancelled_at = canceller.join().unwrap();
    assert!(matches!(e, ExecError::Cancelled { stage: Stage::Map }), "{e:?}");
    assert_eq!(e.to_string(), "map() stopped: the task was cancelled");
    assert!(returned >= cancelled_at && returned - cancelled_at < Duration::from_secs(5));
    let pids = user_pids(&j);
    assert_all_gone(pids[0], &pids);
    // A cancelled token stops later runs before they start.
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
    assert!(matches!(e, ExecError::Cancelled { .. }), "{e:?}");
}

#[test]
fn wordcount_under_generous_limits_is_unchanged() {
    let mut j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE)]);
    limited(&mut j, Some(120), Some(2048));
    let text = tricky_text();
    let mut native = Vec::new();
    ipdc_common::wordcount::map(&text[..], &mut native, 1 << 30).unwrap();
    let mut plain = Vec::new();
    j.exec.run_map(&j.path("Map.py"), None, &text[..], &mut plain).unwrap();
    assert_eq!(counts(&plain), counts(&native));
    let mut combined = Vec::new();
    j.exec.run_map(&j.path("Map.py"), Some(&j.path("Reduce.py")), &text[..], &mut combined).unwrap();
    assert_eq!(counts(&combined), counts(&native));
    combined.sort();
    let mut py = Vec::new();
    j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(combined.clone(), 0), &mut py).unwrap();
    let mut nat = Vec::new();
    ipdc_common::wordcount::reduce(&mut Sorted(combined, 0), &mut nat).unwrap();
    assert_eq!(py, nat);
}

/// Many sorted records for a reduce.
fn many_records() -> Sorted {
    Sorted((0..100_000).map(|i| (format!("sk{i:06}").into_bytes(), b"j1".to_vec())).collect(), 0)
}

#[test]
fn reduce_honours_the_limits() {
    let endless = format!(
        "{WRITE_PIDS}\ndef reduce(key, values):\n    p = subprocess.Popen(['sleep', '30'])\n    \
         write_pids(p.pid)\n    while True:\n        pass\n"
    );
    let hog = format!("def reduce(key, values):\n    {}", HOG.replace('\n', "\n    "));
    let mut j = job(&[("Endless.py", &endless), ("Hog.py", &hog)]);
    limited(&mut j, Some(2), Some(200));

    let start = Instant::now();
    let e = j.exec.run_reduce(&j.path("Endless.py"), &mut many_records(), &mut Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "reduce() killed: it ran longer than the task's wall-clock limit of 2 s");
    assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
    let pids = user_pids(&j);
    assert_all_gone(pids[0], &pids);

    let start = Instant::now();
    let e = j.exec.run_reduce(&j.path("Hog.py"), &mut many_records(), &mut Vec::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "reduce() killed: it exceeded the task's memory limit of 200 MiB (MemoryError)"
    );
    assert!(start.elapsed() < Duration::from_secs(10), "{:?}", start.elapsed());

    std::fs::remove_file(j.exec.workdir.join("pids")).unwrap();
    j.exec.limits.wall = None;
    let token = j.exec.cancel.clone();
    let pids_file = j.exec.workdir.join("pids");
    let canceller = std::thread::spawn(move || {
        let waited = Instant::now();
        while !pids_file.exists() && waited.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        token.cancel();
    });
    let start = Instant::now();
    let e = j.exec.run_reduce(&j.path("Endless.py"), &mut many_records(), &mut Vec::new()).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(e, ExecError::Cancelled { stage: Stage::Reduce }), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(15), "{:?}", start.elapsed());
    let pids = user_pids(&j);
    assert_all_gone(pids[0], &pids);
}

//! Surviving failure: agents killed with SIGKILL in the map and in the
//! reduce phase, the broker restarted mid-job, a slow agent (speculative
//! backups), an agent whose IPFS node stops answering, and user code that
//! keeps failing. Real processes: Debian's Mosquitto, the embedded store of
//! `ipdc-submit hub` as the IPFS API, and `ipdc-agent` processes.

use std::path::Path;
use std::time::{Duration, Instant};

use ipdc_tests::*;

struct Cluster {
    broker: Mosquitto,
    store: Hub,
    agents: Vec<Proc>,
}

impl Cluster {
    fn start(agents: &[(&str, &[&str])]) -> Cluster {
        let broker = Mosquitto::start("");
        let store = Hub::start();
        let names: Vec<String> = agents.iter().map(|(n, _)| n.to_string()).collect();
        let procs: Vec<Proc> =
            agents.iter().map(|(name, extra)| agent(&broker.url(), &store.ipfs, name, extra)).collect();
        let c = Cluster { broker, store, agents: procs };
        c.wait_online(&names);
        c
    }

    fn wait_online(&self, names: &[String]) {
        let url = self.broker.url();
        wait_until(&format!("{names:?} online"), Duration::from_secs(30), || {
            let list = agents_json(&["--broker", &url]);
            names.iter().all(|n| {
                list.iter().any(|s| s["agent"] == n.as_str() && s["online"] == true && s["ipfs"] == "ok")
            })
        });
    }

    fn submit(&self, input: &Path, out: &Path, extra: &[&str]) -> Proc {
        let url = self.broker.url();
        let job = repo_root().join("examples/wordcount");
        let mut args = vec![
            job.to_str().unwrap(),
            "--broker",
            &url,
            "--ipfs",
            &self.store.ipfs,
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        submit_bg(&args)
    }
}

const SLOWISH: &[&str] = &["--slots", "1", "--test-task-delay-ms", "1200"];

fn kill_an_agent_during(phase_marker: &str) {
    let mut c = Cluster::start(&[("k-1", SLOWISH), ("k-2", SLOWISH), ("k-3", SLOWISH)]);
    let input = corpus("16M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let mut run = c.submit(&input, &out_dir, &["--workers", "3", "--reducers", "3", "--native", "wordcount"]);
    // Wait until the victim is running a task of the phase, then SIGKILL it.
    let victim = 2;
    c.agents[victim].wait_for(phase_marker, Duration::from_secs(60));
    c.agents[victim].kill9();
    let status = run.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", run.output());
    assert_counts_eq(&read_output(&out_dir, 3), &reference_counts(&input), "after an agent was killed");
    // The killed agent's attempt ran again elsewhere.
    let s = summary(&out_dir);
    let retried =
        s["tasks"].as_array().unwrap().iter().filter(|t| t["attempts"].as_u64().unwrap() > 1).count();
    assert!(retried >= 1, "some task needed a second attempt: {s:#}");
}

#[test]
fn killing_an_agent_in_the_map_phase_still_gives_the_reference() {
    kill_an_agent_during("/m-");
}

#[test]
fn killing_an_agent_in_the_reduce_phase_still_gives_the_reference() {
    kill_an_agent_during("/r-");
}

#[test]
fn restarting_the_broker_mid_job_still_gives_the_reference() {
    let mut c = Cluster::start(&[("b-1", SLOWISH), ("b-2", SLOWISH)]);
    let input = corpus("16M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let mut run = c.submit(&input, &out_dir, &["--workers", "2", "--reducers", "2", "--native", "wordcount"]);
    c.agents[0].wait_for("/m-", Duration::from_secs(60));
    // Stop Mosquitto as `systemctl restart` does (SIGTERM: on its way out it
    // publishes every client's Last Will, so the submitter hears all agents
    // go offline and the agents hear the job's controller is gone), and start
    // it again on the same port with the same config.
    let port = c.broker.port;
    let conf = c.broker.dir.path().join("mosquitto.conf");
    let pid = c.broker.proc.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    c.broker.proc.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(800));
    let program = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
    let restarted = spawn(Path::new(program), &["-c", conf.to_str().unwrap()], &[]);
    wait_until("mosquitto back", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let status = run.wait_exit(Duration::from_secs(180));
    assert!(status.success(), "{}\n--- broker:\n{}", run.output(), restarted.output());
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "after a broker restart");
    for a in &c.agents {
        assert!(
            a.output().contains("reconnecting") || a.output().contains("cannot reach the broker"),
            "{}",
            a.output()
        );
    }
}

#[test]
fn an_agent_whose_ipfs_node_stops_answering_is_left_out_until_it_answers_again() {
    // i-1 reaches the store through a proxy the test cuts, as if its IPFS
    // daemon stopped while it runs a map task.
    let broker = Mosquitto::start("");
    let store = Hub::start();
    let mut proxy = TcpProxy::start(store.ipfs.trim_start_matches("http://"));
    let via_proxy = format!("http://127.0.0.1:{}", proxy.port);
    let agents = vec![
        agent(&broker.url(), &via_proxy, "i-1", SLOWISH),
        agent(&broker.url(), &store.ipfs, "i-2", SLOWISH),
        agent(&broker.url(), &store.ipfs, "i-3", SLOWISH),
    ];
    let c = Cluster { broker, store, agents };
    c.wait_online(&["i-1".into(), "i-2".into(), "i-3".into()]);
    let input = corpus("16M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    // No backups: the map i-1 runs when its node stops must run again
    // because of that, not because a backup won.
    let job = ["--workers", "3", "--reducers", "3", "--native", "wordcount", "--no-speculative"];
    let mut run = c.submit(&input, &out_dir, &job);
    c.agents[0].wait_for("/m-", Duration::from_secs(60));
    proxy.cut();
    let status = run.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", run.output());
    assert_counts_eq(&read_output(&out_dir, 3), &reference_counts(&input), "after an agent's IPFS stopped");
    // The user is told which agent and why; its map ran again elsewhere,
    // not counted as a failure.
    let said = run.output();
    assert!(said.contains("agent i-1 cannot use its IPFS node ("), "{said}");
    assert!(said.contains("; its running task m-"), "{said}");
    assert!(said.contains("will run again (not counted as a failure)"), "{said}");
    assert!(!said.contains("failed on agent i-1"), "{said}");
    c.agents[0].wait_for("this agent takes no tasks until it answers", Duration::from_secs(10));
    // Its node answers again: it says so, and the next job gives it work.
    proxy.restore();
    c.agents[0].wait_for(&format!("IPFS API {via_proxy} answers"), Duration::from_secs(10));
    c.wait_online(&["i-1".into(), "i-2".into(), "i-3".into()]);
    let small = corpus("4M");
    let out_dir = out.path().join("again");
    let mut run = c.submit(&small, &out_dir, &job);
    assert!(run.wait_exit(Duration::from_secs(120)).success(), "{}", run.output());
    assert_counts_eq(&read_output(&out_dir, 3), &reference_counts(&small), "after its IPFS came back");
    let s = summary(&out_dir);
    let i1 = s["agents"].as_array().unwrap().iter().find(|a| a["agent"] == "i-1");
    let tasks =
        |a: &serde_json::Value| a["map_tasks"].as_u64().unwrap() + a["reduce_tasks"].as_u64().unwrap();
    assert!(i1.is_some_and(|a| tasks(a) >= 1), "{s:#}");
}

#[test]
fn a_slow_agent_gets_a_backup_attempt_that_finishes_the_job_first() {
    let c = Cluster::start(&[
        ("fast-1", &["--slots", "1"]),
        ("fast-2", &["--slots", "1"]),
        ("slow-1", &["--slots", "1", "--test-task-delay-ms", "30000"]),
    ]);
    let input = corpus("4M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let started = Instant::now();
    let mut run = c.submit(&input, &out_dir, &["--workers", "3", "--reducers", "3", "--native", "wordcount"]);
    let status = run.wait_exit(Duration::from_secs(120));
    let took = started.elapsed();
    assert!(status.success(), "{}", run.output());
    assert_counts_eq(&read_output(&out_dir, 3), &reference_counts(&input), "with a slow agent");
    assert!(took < Duration::from_secs(20), "the job waited for the slow agent: {took:?}");
    let s = summary(&out_dir);
    assert!(s["speculative_wins"].as_u64().unwrap() >= 1, "{s:#}");
    let tasks = s["tasks"].as_array().unwrap();
    assert!(tasks.iter().all(|t| t["agent"] != "slow-1"), "no result came from the slow agent: {s:#}");
}

#[test]
fn a_map_that_raises_on_one_line_fails_the_job_after_four_attempts_with_its_traceback() {
    let c = Cluster::start(&[("f-1", &["--slots", "1"]), ("f-2", &["--slots", "1"])]);
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::write(
        job.join("Map.py"),
        "def map(line):\n    if 'poison' in line:\n        raise ValueError('cannot map ' + line)\n    for w in line.split():\n        yield w, 1\n",
    )
    .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    let mut data = String::new();
    for i in 0..2000 {
        data += &format!("line {i} of good words\n");
    }
    data += "a poison pill line\n";
    std::fs::write(job.join("data.dat"), &data).unwrap();
    let url = c.broker.url();
    let o = submit(&["run", job.to_str().unwrap(), "--broker", &url, "--ipfs", &c.store.ipfs]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("m-00000 failed 4 times"), "{t}");
    assert!(t.contains("ValueError: cannot map a poison pill line"), "{t}");
    assert!(t.contains("line 2001 of this split"), "the line is named: {t}");
    assert!(t.contains("split 0 (data.dat, bytes 0.."), "the split is named: {t}");
    assert!(t.contains("Map.py\", line 3"), "the traceback reaches the user: {t}");
    assert!(!job.join("output").exists(), "no output folder, no _SUCCESS");
}

#[test]
fn agents_drop_the_tasks_and_files_of_a_submitter_that_died() {
    let work = tempfile::tempdir().unwrap();
    let work_dir = work.path().join("agent-work");
    let w = work_dir.to_str().unwrap().to_string();
    let slow: &[&str] = &["--slots", "1", "--test-task-delay-ms", "30000", "--work-dir", &w];
    let c = Cluster::start(&[("d-1", slow)]);
    let input = corpus("4M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let mut run = c.submit(&input, &out_dir, &["--native", "wordcount"]);
    c.agents[0].wait_for("/m-", Duration::from_secs(60));
    wait_until("the task's folder exists", Duration::from_secs(10), || job_folders(&work_dir) > 0);
    run.kill9();
    // The broker publishes the submitter's Last Will; the agent drops the job.
    c.agents[0].wait_for("is gone: dropping its tasks", Duration::from_secs(30));
    wait_until("the job's temporary files are removed", Duration::from_secs(10), || {
        job_folders(&work_dir) == 0
    });
    assert!(!out_dir.exists(), "no output from a dead submitter");
    // Running the same job again works and gives the reference (on a fast agent).
    let mut c = c;
    c.agents[0].kill9();
    let delay_free = agent(&c.broker.url(), &c.store.ipfs, "d-2", &["--slots", "1"]);
    c.wait_online(&["d-2".to_string()]);
    let mut again = c.submit(&input, &out_dir, &["--native", "wordcount", "--workers", "1"]);
    assert!(again.wait_exit(Duration::from_secs(120)).success(), "{}", again.output());
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "re-run after a submitter crash");
    drop(delay_free);
}

/// Entries of an agent's work dir other than its own dotfiles (`.lock`).
fn job_folders(work_dir: &Path) -> usize {
    std::fs::read_dir(work_dir)
        .map(|d| d.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).count())
        .unwrap_or(0)
}

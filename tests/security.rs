//! Keeping strangers out and user code in bounds: task limits (wall clock,
//! memory) and the cluster key (forged, tampered and replayed task messages
//! published with `mosquitto_pub` are never executed). Real Mosquitto, real
//! agents, the embedded store as the IPFS API.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipdc_tests::*;

fn job(dir: &Path, map: &str) {
    std::fs::write(dir.join("Map.py"), map).unwrap();
    std::fs::write(dir.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    std::fs::write(dir.join("data.dat"), "a b c\n").unwrap();
}

fn cluster(agent_args: &[&str]) -> (Mosquitto, Hub, Proc) {
    let broker = Mosquitto::start("");
    let store = Hub::start();
    let a = agent(&broker.url(), &store.ipfs, "sec-1", agent_args);
    a.wait_for("connected to broker", Duration::from_secs(20));
    wait_until("sec-1 online", Duration::from_secs(20), || {
        let mut args = vec!["--broker".to_string(), broker.url()];
        if let Some(i) = agent_args.iter().position(|a| *a == "--cluster-key") {
            args.extend(["--cluster-key".to_string(), agent_args[i + 1].to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        agents_json(&refs).iter().any(|s| s["agent"] == "sec-1" && s["ipfs"] == "ok")
    });
    (broker, store, a)
}

/// Runs a one-line job whose Map.py is `map_py` with `limit` flags; the job
/// must fail, write nothing, and its message is returned.
fn failing_run(map_py: &str, limit: &[&str]) -> String {
    let (broker, store, _a) = cluster(&[]);
    let tmp = tempfile::tempdir().unwrap();
    job(tmp.path(), map_py);
    let (dir, url) = (tmp.path().to_str().unwrap().to_string(), broker.url());
    let mut args = vec!["run", &dir, "--broker", &url, "--ipfs", &store.ipfs];
    args.extend_from_slice(limit);
    let o = submit(&args);
    assert!(!o.status.success());
    assert!(!tmp.path().join("output").exists());
    text(&o)
}

#[test]
fn an_endless_map_is_killed_at_the_wall_clock_limit() {
    let t = failing_run("def map(line):\n    while True:\n        pass\n", &["--task-timeout", "2"]);
    assert!(t.contains("killed: it ran longer than the task's wall-clock limit of 2 s"), "{t}");
}

#[test]
fn an_unbounded_allocation_is_killed_at_the_memory_limit() {
    let hog = "hog = []\ndef map(line):\n    while True:\n        hog.append(b'x' * 10_000_000)\n";
    let t = failing_run(hog, &["--task-memory-mb", "200"]);
    assert!(t.contains("exceeded the task's memory limit of 200 MiB"), "{t}");
}

/// A task assignment as a stranger would write it: valid JSON for a job the
/// agent would run if it obeyed unsigned messages.
fn forged_assignment(job_id: &str) -> String {
    format!(
        r#"{{"v":1,"type":"assign","task":{{"job":"{job_id}","task":"m-00000","attempt":1,"reducers":1,"code":{{"map_cid":"","reduce_cid":"","combiner":false,"force_native":"wordcount","native_fallback":null}},"memory_mb":8,"kind":"map","input_cid":"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku","input_size":1,"split":0,"start":0,"end":1}}}}"#
    )
}

fn mosquitto_pub(port: u16, topic: &str, payload_file: &Path) {
    let o = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-f"])
        .arg(payload_file)
        .output()
        .expect("mosquitto_pub runs");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn without_a_key_a_forged_task_is_obeyed_which_is_why_the_key_exists() {
    // The control for the test below: the same forgery works on an open cluster.
    let (broker, _store, a) = cluster(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("forged.json");
    std::fs::write(&f, forged_assignment("forged-open")).unwrap();
    mosquitto_pub(broker.port, "ipdc/default/agents/sec-1/tasks", &f);
    a.wait_for("running forged-open/m-00000", Duration::from_secs(10));
    assert!(a.output().contains("no cluster key: this cluster is open"), "{}", a.output());
}

#[test]
fn with_a_cluster_key_forged_tampered_and_replayed_tasks_are_never_executed() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("cluster.key");
    let o = submit(&["keygen", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let again = submit(&["keygen", key.to_str().unwrap()]);
    assert!(!again.status.success(), "keygen never overwrites a key");
    let k = key.to_str().unwrap();
    let (broker, store, a) = cluster(&["--cluster-key", k]);

    // A real job, signed, runs; capture one of its signed assignments on the way.
    let capture = tmp.path().join("captured");
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-t",
            "ipdc/default/agents/sec-1/tasks",
            "-C",
            "1",
            "-N",
        ])
        .stdout(std::fs::File::create(&capture).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let jobdir = tmp.path().join("job");
    std::fs::create_dir(&jobdir).unwrap();
    job(&jobdir, "def map(line):\n    for w in line.split():\n        yield w, 1\n");
    let o = submit(&[
        "run",
        jobdir.to_str().unwrap(),
        "--broker",
        &broker.url(),
        "--ipfs",
        &store.ipfs,
        "--cluster-key",
        k,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("no cluster key"), "{}", text(&o));
    let mut sub = sub;
    let _ = sub.wait();
    let captured = std::fs::read(&capture).unwrap();
    assert!(
        captured.starts_with(b"IPDC-SIG1 "),
        "assignments are signed: {}",
        String::from_utf8_lossy(&captured)
    );
    let runs_before = a.output().matches("running ").count();

    // 1. No MAC at all.
    let plain = tmp.path().join("plain.json");
    std::fs::write(&plain, forged_assignment("forged-plain")).unwrap();
    mosquitto_pub(broker.port, "ipdc/default/agents/sec-1/tasks", &plain);
    // 2. A signature header with a wrong MAC.
    let wrong = tmp.path().join("wrong");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let body = forged_assignment("forged-mac");
    std::fs::write(&wrong, format!("IPDC-SIG1 {now} 0123456789abcdef {}\n{body}", "ab".repeat(32))).unwrap();
    mosquitto_pub(broker.port, "ipdc/default/agents/sec-1/tasks", &wrong);
    // 3. A valid signed message, replayed.
    mosquitto_pub(broker.port, "ipdc/default/agents/sec-1/tasks", &capture);

    a.wait_for("no signature", Duration::from_secs(10));
    a.wait_for("bad signature", Duration::from_secs(10));
    a.wait_for("replayed", Duration::from_secs(10));
    let log = a.output();
    assert!(!log.contains("forged-"), "a forged job was never run:\n{log}");
    assert_eq!(log.matches("running ").count(), runs_before, "nothing new ran:\n{log}");
    // The agent counts the rejections in its status.
    let mut list_args = vec!["--broker".to_string(), broker.url(), "--cluster-key".into(), k.to_string()];
    let refs: Vec<&str> = list_args.iter().map(String::as_str).collect();
    wait_until("the rejection counter shows 3", Duration::from_secs(10), || {
        agents_json(&refs).iter().any(|s| s["agent"] == "sec-1" && s["rejected_messages"] == 3)
    });
    // A submitter without the key is told it needs it, instead of hanging.
    list_args.truncate(2);
    let refs: Vec<&str> = list_args.iter().map(String::as_str).collect();
    assert!(agents_json(&refs).iter().any(|s| s["agent"] == "sec-1" && s["keyed"] == true));
    let (b, d) = (broker.url(), jobdir.to_str().unwrap().to_string());
    let o = submit(&["run", &d, "--broker", &b, "--ipfs", &store.ipfs, "--wait", "1", "--overwrite"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("sec-1: requires the cluster key"), "{}", text(&o));
}

#[test]
fn a_submitter_with_a_key_names_agents_without_it_and_what_to_do() {
    let (broker, _store, _a) = cluster(&[]); // an open agent
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("cluster.key");
    let o = submit(&["keygen", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = submit(&["agents", "--broker", &broker.url(), "--cluster-key", key.to_str().unwrap()]);
    let t = text(&o);
    assert!(t.contains("no agents have reported in this cluster"), "{t}");
    assert!(t.contains("ignored (their statuses fail the cluster key check): sec-1: no signature"), "{t}");
    assert!(t.contains("give every agent and submitter the same cluster key file"), "{t}");
}

//! Keeping strangers out and user code in bounds: task limits (wall clock,
//! memory) and the cluster's keys (forged, tampered, replayed, misdirected
//! and strangers' task messages published with `mosquitto_pub` are never
//! executed). Real Mosquitto, real agents, the embedded store as the IPFS API.

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
        for flag in ["--node-key", "--trust"] {
            if let Some(i) = agent_args.iter().position(|a| *a == flag) {
                // The submitter reads the cluster with its own key.
                let v = if flag == "--node-key" {
                    submitter_key(agent_args[i + 1])
                } else {
                    agent_args[i + 1].to_string()
                };
                args.extend([flag.to_string(), v]);
            }
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

/// The submitter key beside an agent key made by `keygen --cluster` (`laptop.key`).
fn submitter_key(agent_key: &str) -> String {
    Path::new(agent_key).with_file_name("laptop.key").to_str().unwrap().to_string()
}

/// `keygen --cluster DIR --agents ... --submitters laptop`: DIR/trust and a key per node.
fn keys(dir: &Path, agents: &str) {
    let o =
        submit(&["keygen", "--cluster", dir.to_str().unwrap(), "--agents", agents, "--submitters", "laptop"]);
    assert!(o.status.success(), "{}", text(&o));
}

/// A task assignment as a stranger would write it: valid JSON for a job the
/// agent would run if it obeyed whoever can publish, for its run `session`.
fn forged_assignment(job_id: &str, session: &str) -> String {
    format!(
        r#"{{"v":3,"to":"{session}","type":"assign","task":{{"job":"{job_id}","task":"m-00000","attempt":1,"reducers":1,"code":{{"map_cid":"","reduce_cid":"","combiner":false,"force_native":"wordcount","native_fallback":null}},"memory_mb":8,"kind":"map","input_cid":"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku","input_size":1,"split":0,"start":0,"end":1}}}}"#
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

/// The agent's run (its session), from its retained status.
fn session_of(broker: &Mosquitto, agent: &str, extra: &[&str]) -> String {
    let mut args = vec!["--broker".to_string(), broker.url()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let all = agents_json(&refs);
    let s = all.iter().find(|s| s["agent"] == agent).expect("the agent has reported");
    s["session"].as_str().unwrap().to_string()
}

#[test]
fn without_keys_a_forged_task_is_obeyed_which_is_why_keys_exist() {
    // The control for the test below: the same forgery works on an open cluster.
    let (broker, _store, a) = cluster(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("forged.json");
    std::fs::write(&f, forged_assignment("forged-open", &session_of(&broker, "sec-1", &[]))).unwrap();
    mosquitto_pub(broker.port, "ipdc/default/agents/sec-1/tasks", &f);
    a.wait_for("running forged-open/m-00000", Duration::from_secs(10));
    assert!(a.output().contains("no keys: this cluster is open"), "{}", a.output());
}

#[test]
fn with_keys_forged_tampered_replayed_misdirected_and_strangers_tasks_are_never_executed() {
    use ipdc_common::auth::{NodeKey, Sealer};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    keys(&dir, "sec-1,sec-2");
    let again = submit(&["keygen", "--cluster", dir.to_str().unwrap(), "--agents", "sec-1"]);
    assert!(!again.status.success(), "keygen never replaces a key");
    let (k1, trust) = (dir.join("sec-1.key"), dir.join("trust"));
    let (k1, trust) = (k1.to_str().unwrap(), trust.to_str().unwrap());
    let (broker, store, a) = cluster(&["--node-key", k1, "--trust", trust]);
    let k2 = dir.join("sec-2.key");
    let b =
        agent(&broker.url(), &store.ipfs, "sec-2", &["--node-key", k2.to_str().unwrap(), "--trust", trust]);
    b.wait_for("connected to broker", Duration::from_secs(20));
    let laptop = submitter_key(k1);
    let keyed = ["--node-key", laptop.as_str(), "--trust", trust];

    // A real job, signed, runs; capture one of its signed commands to sec-1 on the way.
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
    let (url, d) = (broker.url(), jobdir.to_str().unwrap().to_string());
    let mut run = vec!["run", &d, "--broker", &url, "--ipfs", &store.ipfs];
    run.extend_from_slice(&keyed);
    let o = submit(&run);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("no keys"), "{}", text(&o));
    let mut sub = sub;
    let _ = sub.wait();
    let captured = std::fs::read(&capture).unwrap();
    assert!(
        captured.starts_with(b"IPDC-SIG2 "),
        "assignments are signed: {}",
        String::from_utf8_lossy(&captured)
    );
    let logs = || a.output() + &b.output();
    let runs_before = logs().matches("running ").count();

    let session = session_of(&broker, "sec-1", &keyed);
    let topic = "ipdc/default/agents/sec-1/tasks";
    let publish = |name: &str, payload: &[u8], topic: &str| {
        let f = tmp.path().join(name);
        std::fs::write(&f, payload).unwrap();
        mosquitto_pub(broker.port, topic, &f);
    };
    // 1. No signature at all.
    publish("plain", forged_assignment("forged-plain", &session).as_bytes(), topic);
    // 2. Signed by a key the trust file does not list.
    let stranger = Sealer::new(Some(NodeKey::generate().unwrap()));
    publish(
        "stranger",
        &stranger.seal(topic, forged_assignment("forged-stranger", &session).as_bytes()),
        topic,
    );
    // 3. Signed by sec-2's own key: an agent may not assign tasks.
    let board = Sealer::new(Some(NodeKey::load(&k2).unwrap()));
    publish("board", &board.seal(topic, forged_assignment("forged-board", &session).as_bytes()), topic);
    // 4. The captured signed assignment, replayed to sec-1, and sent on to sec-2 (not picked).
    publish("replay", &captured, topic);
    publish("misdirected", &captured, "ipdc/default/agents/sec-2/tasks");

    a.wait_for("no signature", Duration::from_secs(10));
    a.wait_for("a key the trust file does not list", Duration::from_secs(10));
    a.wait_for("signed by agent sec-2, who may not say this here", Duration::from_secs(10));
    a.wait_for("replayed", Duration::from_secs(10));
    b.wait_for("bad signature (altered, or meant for another topic)", Duration::from_secs(10));
    let log = logs();
    assert!(!log.contains("forged-"), "a forged job was never run:\n{log}");
    assert_eq!(log.matches("running ").count(), runs_before, "nothing new ran:\n{log}");
    // The agents count the rejections in their statuses.
    let refs: Vec<&str> = ["--broker", url.as_str()].into_iter().chain(keyed).collect();
    wait_until("the rejection counters", Duration::from_secs(10), || {
        let all = agents_json(&refs);
        all.iter().any(|s| s["agent"] == "sec-1" && s["rejected_messages"] == 4)
            && all.iter().any(|s| s["agent"] == "sec-2" && s["rejected_messages"] == 1)
    });
    // A submitter without keys is told the agents want them, instead of hanging.
    assert!(agents_json(&["--broker", &url]).iter().any(|s| s["agent"] == "sec-1" && s["keyed"] == true));
    let o = submit(&["run", &d, "--broker", &url, "--ipfs", &store.ipfs, "--wait", "1", "--overwrite"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("sec-1: takes only signed messages (give --node-key and --trust)"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_submitter_with_keys_names_agents_without_them_and_what_to_do() {
    let (broker, _store, _a) = cluster(&[]); // an open agent
    let tmp = tempfile::tempdir().unwrap();
    keys(tmp.path(), "other");
    let (k, trust) = (tmp.path().join("laptop.key"), tmp.path().join("trust"));
    let o = submit(&[
        "agents",
        "--broker",
        &broker.url(),
        "--node-key",
        k.to_str().unwrap(),
        "--trust",
        trust.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(t.contains("no agents have reported in this cluster"), "{t}");
    assert!(t.contains("ignored (their statuses fail the key check): sec-1: no signature"), "{t}");
    assert!(t.contains("give every agent and submitter its own key"), "{t}");
}

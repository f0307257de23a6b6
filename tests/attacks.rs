//! The cluster against a stranger and a careless or hostile key holder, as
//! an attacker would do it: real Mosquitto, real agent processes, messages
//! published with `mosquitto_pub` or sealed with a key the attacker holds.
//! Each case is one that once worked: an oversized message that knocked
//! every client off the broker, protocol fields used as paths, a result
//! forged by another board's key, a submitter's second Last Will refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ipdc_common::auth::{NodeKey, Sealer};
use ipdc_tests::*;

fn mosquitto_pub(port: u16, topic: &str, payload: &[u8], retain: bool) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), payload).unwrap();
    let mut args =
        vec!["-h".to_string(), "127.0.0.1".into(), "-p".into(), port.to_string(), "-q".into(), "1".into()];
    args.extend(["-t".into(), topic.to_string(), "-f".into(), f.path().to_str().unwrap().to_string()]);
    if retain {
        args.push("-r".into());
    }
    let o = Command::new("mosquitto_pub").args(&args).output().expect("mosquitto_pub runs");
    assert!(o.status.success(), "{}", text(&o));
}

/// A cluster's keys: `DIR/trust`, `DIR/laptop.key` and a key per agent.
fn keys(dir: &Path, agents: &str) -> (String, String) {
    let o =
        submit(&["keygen", "--cluster", dir.to_str().unwrap(), "--agents", agents, "--submitters", "laptop"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = |p: &str| dir.join(p).to_str().unwrap().to_string();
    (s("laptop.key"), s("trust"))
}

fn wait_online(broker: &Mosquitto, names: &[&str], extra: &[&str]) {
    let url = broker.url();
    let mut args = vec!["--broker", url.as_str()];
    args.extend_from_slice(extra);
    wait_until(&format!("{names:?} online"), Duration::from_secs(30), || {
        let list = agents_json(&args);
        names
            .iter()
            .all(|n| list.iter().any(|s| s["agent"] == *n && s["online"] == true && s["ipfs"] == "ok"))
    });
}

#[test]
fn oversized_messages_retained_or_not_never_cost_a_connection_and_the_job_succeeds_on_time() {
    // Mosquitto as it comes: no max_packet_size, so it passes them all on.
    let broker = Mosquitto::start("");
    let store = Hub::start();
    let agents: Vec<Proc> =
        ["big-1", "big-2"].iter().map(|n| agent(&broker.url(), &store.ipfs, n, &[])).collect();
    wait_online(&broker, &["big-1", "big-2"], &[]);
    let big = vec![b'x'; 3 << 20];
    // Retained: every client that subscribes gets them, again after every reconnection.
    mosquitto_pub(broker.port, "ipdc/default/jobs/any/controller", &big, true);
    mosquitto_pub(broker.port, "ipdc/default/agents/any/status", &big, true);
    let input = corpus("4M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let job = repo_root().join("examples/wordcount");
    let (url, i, o) = (broker.url(), input.to_str().unwrap(), out_dir.to_str().unwrap());
    let mut run = submit_bg(&[
        job.to_str().unwrap(),
        "--broker",
        &url,
        "--ipfs",
        &store.ipfs,
        "--input",
        i,
        "--out",
        o,
    ]);
    run.wait_for("map task(s) over", Duration::from_secs(60));
    // Not retained, on the running job's own event topic.
    let id = run.output().split("job ").nth(1).unwrap().split(':').next().unwrap().to_string();
    mosquitto_pub(broker.port, &format!("ipdc/default/jobs/{id}/events"), &big, false);
    assert!(run.wait_exit(Duration::from_secs(120)).success(), "{}", run.output());
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "with oversized messages about");
    for a in &agents {
        let log = a.output();
        assert_eq!(
            log.matches("connected to broker").count(),
            1,
            "the agent never lost its connection:\n{log}"
        );
        assert!(
            log.contains("payload too large") || log.contains("exceeds"),
            "the message was refused:\n{log}"
        );
    }
    assert!(!run.output().contains("lost the broker"), "{}", run.output());
    // And `agents` still reads the cluster.
    let list = agents_json(&["--broker", &url]);
    assert_eq!(list.iter().filter(|s| s["online"] == true).count(), 2, "{list:?}");
}

#[test]
fn protocol_fields_never_become_paths_outside_the_work_dir() {
    let broker = Mosquitto::start("");
    let store = Hub::start();
    let top = tempfile::tempdir().unwrap();
    let work = top.path().join("work");
    let victim = top.path().join("victim");
    std::fs::create_dir_all(victim.join("x-a1")).unwrap();
    std::fs::write(victim.join("keep.txt"), "precious").unwrap();
    let w = work.to_str().unwrap().to_string();
    let a = agent(&broker.url(), &store.ipfs, "path-1", &["--work-dir", &w]);
    wait_online(&broker, &["path-1"], &[]);
    let session = agents_json(&["--broker", &broker.url()])
        .into_iter()
        .find(|s| s["agent"] == "path-1")
        .unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let v = victim.to_str().unwrap();
    let tasks = "ipdc/default/agents/path-1/tasks";
    let assign = |job: &str, task: &str| {
        format!(
            r#"{{"v":3,"to":"{session}","type":"assign","task":{{"job":"{job}","task":"{task}","attempt":1,"reducers":1,"code":{{"map_cid":"","reduce_cid":"","combiner":false,"force_native":"wordcount","native_fallback":null}},"memory_mb":8,"kind":"map","input_cid":"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku","input_size":1,"split":0,"start":0,"end":1}}}}"#
        )
    };
    for (topic, payload, retain) in [
        // A controller status naming a folder as its job, on a job's topic and on a `..` topic.
        (
            "ipdc/default/jobs/j1/controller".to_string(),
            format!(r#"{{"v":3,"job":"{v}","state":"gone","epoch":1}}"#),
            true,
        ),
        (
            "ipdc/default/jobs/../controller".to_string(),
            r#"{"v":3,"job":"..","state":"gone","epoch":1}"#.to_string(),
            true,
        ),
        // The end of job `..` and `.` (the work dir's parent and itself).
        (tasks.to_string(), format!(r#"{{"v":3,"to":"{session}","type":"end_job","job":".."}}"#), false),
        (tasks.to_string(), format!(r#"{{"v":3,"to":"{session}","type":"end_job","job":"."}}"#), false),
        // Task ids and job ids that climb out, or are absolute.
        (tasks.to_string(), assign("j-1", "../../victim/x"), false),
        (tasks.to_string(), assign("j-1", &format!("{v}/x")), false),
        (tasks.to_string(), assign("..", "m-00000"), false),
    ] {
        mosquitto_pub(broker.port, &topic, payload.as_bytes(), retain);
    }
    // A well-formed task after them, to know they were all read.
    mosquitto_pub(broker.port, tasks, assign("ok-job", "m-00000").as_bytes(), false);
    a.wait_for("running ok-job/m-00000", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2)); // what an end_job removes, it removes in the background
    let log = a.output();
    assert!(!log.contains("running ../") && !log.contains("running j-1/"), "{log}");
    assert!(victim.join("x-a1").is_dir() && victim.join("keep.txt").is_file(), "the victim folder survives");
    assert!(work.join(".lock").is_file(), "the work dir's own lock survives");
    assert!(top.path().join("work").is_dir());
}

#[test]
fn a_per_file_task_holds_its_files_to_their_sizes_and_never_uses_their_names_as_paths() {
    let broker = Mosquitto::start("");
    let store = Hub::start();
    let top = tempfile::tempdir().unwrap();
    let work = top.path().join("work");
    let a = agent(&broker.url(), &store.ipfs, "files-1", &["--work-dir", work.to_str().unwrap()]);
    wait_online(&broker, &["files-1"], &[]);
    let session = agents_json(&["--broker", &broker.url()])
        .into_iter()
        .find(|s| s["agent"] == "files-1")
        .unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let add = |name: &str, body: &[u8]| {
        let path = top.path().join(name);
        std::fs::write(&path, body).unwrap();
        let o = Command::new("curl")
            .args(["-sS", "-F"])
            .arg(format!("file=@{}", path.display()))
            .arg(format!("{}/api/v0/add?cid-version=1&pin=true", store.ipfs))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["Hash"].as_str().unwrap().to_string()
    };
    let map = add("Map.py", b"def map(name, data):\n    yield name, len(data)\n");
    let reduce = add("Reduce.py", b"def reduce(k, vs):\n    yield k, sum(vs)\n");
    let big = add("big.bin", &vec![b'x'; 1 << 20]);
    let tasks = "ipdc/default/agents/files-1/tasks";
    let assign = |task: &str, files: &str| {
        format!(
            r#"{{"v":3,"to":"{session}","type":"assign","task":{{"job":"files-1","task":"{task}","attempt":1,"reducers":1,"code":{{"map_cid":"{map}","reduce_cid":"{reduce}","combiner":false,"force_native":null,"native_fallback":null}},"memory_mb":8,"kind":"map_files","split":0,"files":[{files}]}}}}"#
        )
    };
    // A 1 MiB object said to be 10 bytes: no more than 11 are written.
    let lie = format!(r#"{{"name":"small.bin","cid":"{big}","size":10}}"#);
    // A name that climbs out is data for map(), never a path.
    let climb = format!(r#"{{"name":"../../victim","cid":"{big}","size":{}}}"#, 1 << 20);
    mosquitto_pub(broker.port, tasks, assign("m-00000", &lie).as_bytes(), false);
    a.wait_for("files-1/m-00000 attempt 1 failed", Duration::from_secs(30));
    let log = a.output();
    assert!(
        log.contains("input file small.bin (")
            && log.contains("is not the 10 bytes the job says: IPFS holds more"),
        "{log}"
    );
    mosquitto_pub(broker.port, tasks, assign("m-00001", &climb).as_bytes(), false);
    a.wait_for("finished files-1/m-00001", Duration::from_secs(30));
    fn named(dir: &Path, name: &str) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
            e.file_name() == name || (e.file_type().is_ok_and(|t| t.is_dir()) && named(&e.path(), name))
        })
    }
    assert!(!named(top.path(), "victim"), "{}", a.output());
}

#[test]
fn a_result_forged_with_another_boards_key_never_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (laptop, trust) = keys(tmp.path(), "f-1,f-2");
    let broker = Mosquitto::start("");
    let store = Hub::start();
    let key = |n: &str| tmp.path().join(format!("{n}.key")).to_str().unwrap().to_string();
    // f-1 does the work, slowly; f-2 is a board of the cluster that lies.
    let (k1, k2) = (key("f-1"), key("f-2"));
    let slow = ["--node-key", &k1, "--trust", &trust, "--slots", "1", "--test-task-delay-ms", "4000"];
    let _a = agent(&broker.url(), &store.ipfs, "f-1", &slow);
    let keyed = ["--node-key", laptop.as_str(), "--trust", trust.as_str()];
    wait_online(&broker, &["f-1"], &keyed);
    let input = corpus("4M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let job = repo_root().join("examples/wordcount");
    let (url, i, o) = (broker.url(), input.to_str().unwrap(), out_dir.to_str().unwrap());
    let mut args =
        vec![job.to_str().unwrap(), "--broker", &url, "--ipfs", &store.ipfs, "--input", i, "--out", o];
    args.extend_from_slice(&keyed);
    args.extend(["--native", "wordcount", "--no-speculative"]);
    let mut run = submit_bg(&args);
    run.wait_for("map task(s) over", Duration::from_secs(60));
    let id = run.output().split("job ").nth(1).unwrap().split(':').next().unwrap().to_string();
    let topic = format!("ipdc/default/jobs/{id}/events");
    let done = |agent: &str| {
        format!(
            r#"{{"v":3,"job":"{id}","task":"m-00000","attempt":1,"agent":"{agent}","type":"done","output":{{"cids":["bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku","bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"],"sizes":[0,0],"stats":{{"input_records":0,"map_output_records":0,"combine_output_records":0,"reduce_input_groups":0,"output_records":0}},"bytes_read":0,"executor":"native:wordcount","elapsed_ms":1,"spills":0}}}}"#
        )
    };
    let liar = Sealer::new(Some(NodeKey::load(Path::new(&k2)).unwrap()));
    // As f-1 (whose attempt it is), signed with f-2's key; as f-2 itself; unsigned.
    mosquitto_pub(broker.port, &topic, &liar.seal(&topic, done("f-1").as_bytes()), false);
    mosquitto_pub(broker.port, &topic, &liar.seal(&topic, done("f-2").as_bytes()), false);
    mosquitto_pub(broker.port, &topic, done("f-1").as_bytes(), false);
    assert!(run.wait_exit(Duration::from_secs(120)).success(), "{}", run.output());
    assert_counts_eq(
        &read_output(&out_dir, 2),
        &reference_counts(&input),
        "the real result, not the forged one",
    );
    let s = summary(&out_dir);
    assert!(s["tasks"].as_array().unwrap().iter().all(|t| t["agent"] == "f-1"), "{s}");
}

#[test]
fn a_submitter_killed_after_it_reconnected_still_has_its_tasks_dropped_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let (laptop, trust) = keys(tmp.path(), "w-1");
    let broker = Mosquitto::start("");
    let store = Hub::start();
    let k1 = tmp.path().join("w-1.key").to_str().unwrap().to_string();
    let slow = ["--node-key", &k1, "--trust", &trust, "--slots", "1", "--test-task-delay-ms", "120000"];
    let a = agent(&broker.url(), &store.ipfs, "w-1", &slow);
    let keyed = ["--node-key", laptop.as_str(), "--trust", trust.as_str()];
    wait_online(&broker, &["w-1"], &keyed);
    // The submitter reaches the broker through a proxy the test can cut.
    let mut proxy = TcpProxy::start(&format!("127.0.0.1:{}", broker.port));
    let url = format!("mqtt://127.0.0.1:{}", proxy.port);
    let input = corpus("4M");
    let out = tempfile::tempdir().unwrap();
    let (i, o) = (input.to_str().unwrap(), out.path().join("r"));
    let job = repo_root().join("examples/wordcount");
    let mut args = vec![job.to_str().unwrap(), "--broker", &url, "--ipfs", &store.ipfs, "--input", i];
    args.extend(["--out", o.to_str().unwrap(), "--native", "wordcount", "--no-speculative"]);
    args.extend_from_slice(&keyed);
    let mut run = submit_bg(&args);
    a.wait_for("running ", Duration::from_secs(60));
    // Its connection drops once (its first Last Will fires), and comes back.
    proxy.cut();
    a.wait_for("is gone: dropping its tasks", Duration::from_secs(30));
    proxy.restore();
    // (its queries find the agent dropped the attempt: the third unanswered one, 30 s on, runs it again)
    wait_until("the job's task runs again", Duration::from_secs(90), || {
        a.output().matches("running ").count() >= 2
    });
    // Then it dies: its second Last Will must be obeyed too.
    run.kill9();
    let killed = Instant::now();
    while a.output().matches("is gone: dropping its tasks").count() < 2 {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the agent never dropped the job again:\n{}",
            a.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!a.output().contains("replayed"), "{}", a.output());
}

#[test]
fn a_broker_that_keeps_closing_the_connection_right_after_accepting_it_is_a_clear_error() {
    // A scripted broker: accepts every connection (CONNACK), then closes it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut conn = conn;
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf); // CONNECT
            let _ = conn.write_all(&[0x20, 0x02, 0x00, 0x00]); // CONNACK, accepted
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let url = format!("mqtt://127.0.0.1:{port}");
    let mut p = spawn(&bin("ipdc-submit"), &["agents", "--broker", &url], &[]);
    // It stops instead of looping (wait_exit panics if it is still running).
    assert!(!p.wait_exit(Duration::from_secs(60)).success(), "{}", p.output());
    let t = p.output();
    assert!(t.contains("closed this connection 5 times in a row right after accepting it"), "{t}");
}

#[test]
fn jobs_lists_two_submitters_jobs_and_only_a_key_holder_can_cancel_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = submit(&[
        "keygen",
        "--cluster",
        dir.to_str().unwrap(),
        "--agents",
        "c-1,c-2",
        "--submitters",
        "laptop,desk",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (trust, laptop, desk) = (p("trust"), p("laptop.key"), p("desk.key"));
    let broker = Mosquitto::start("");
    let store = Hub::start();
    // Slow boards: every task waits 5 s, so both jobs run for a while.
    let agents: Vec<Proc> = ["c-1", "c-2"]
        .iter()
        .map(|n| {
            let k = p(&format!("{n}.key"));
            let args = ["--node-key", &k, "--trust", &trust, "--slots", "2", "--test-task-delay-ms", "5000"];
            agent(&broker.url(), &store.ipfs, n, &args)
        })
        .collect();
    wait_online(&broker, &["c-1", "c-2"], &["--node-key", &laptop, "--trust", &trust]);
    let input = corpus("4M");
    let job = repo_root().join("examples/wordcount");
    let url = broker.url();
    let start = |key: &str, out: &Path| {
        let args = [
            job.to_str().unwrap(),
            "--broker",
            &url,
            "--ipfs",
            &store.ipfs,
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--node-key",
            key,
            "--trust",
            &trust,
            "--native",
            "wordcount",
            "--workers",
            "2",
            "--no-cache",
        ];
        let run = submit_bg(&args);
        run.wait_for("map task(s) over", Duration::from_secs(60));
        let id = run.output().split("job ").nth(1).unwrap().split(':').next().unwrap().to_string();
        (run, id)
    };
    let (out_a, out_b) = (dir.join("a"), dir.join("b"));
    let (mut run_a, a) = start(&laptop, &out_a);
    let (mut run_b, b) = start(&desk, &out_b);

    // Both are listed, with who runs them and how far they are.
    let keyed = ["--broker", url.as_str(), "--node-key", laptop.as_str(), "--trust", trust.as_str()];
    let mut args = vec!["jobs", "--json"];
    args.extend_from_slice(&keyed);
    let o = submit(&args);
    assert!(o.status.success(), "{}", text(&o));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    for id in [&a, &b] {
        let j =
            list.iter().find(|j| j["job"] == id.as_str()).unwrap_or_else(|| panic!("{id} not in {list:#?}"));
        assert_eq!(j["name"], "wordcount", "{j}");
        assert!(j["by"].as_str().unwrap().contains('@'), "{j}");
        assert!(j["started_ms"].as_u64().unwrap() > 0, "{j}");
    }
    let mut args = vec!["jobs"];
    args.extend_from_slice(&keyed);
    let table = text(&submit(&args));
    assert!(table.contains("SUBMITTER") && table.contains(&a) && table.contains(&b), "{table}");

    // A stranger without the cluster's keys cannot stop it.
    let o = submit(&["cancel", &a, "--broker", &url]);
    assert!(!o.status.success(), "{}\n--- a:\n{}", text(&o), run_a.output());
    assert!(run_a.child.try_wait().unwrap().is_none(), "job a stopped for a stranger: {}", run_a.output());

    // A holder of a submitter's key can, within seconds.
    let t = Instant::now();
    let mut args = vec!["cancel", a.as_str()];
    args.extend_from_slice(&keyed);
    let o = submit(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("job {a} cancelled")), "{}", text(&o));
    assert!(t.elapsed() < Duration::from_secs(5), "cancel took {:?}", t.elapsed());
    assert!(!run_a.wait_exit(Duration::from_secs(10)).success());
    let said = run_a.output();
    assert!(said.contains(&format!("job {a} cancelled by submitter laptop (")), "{said}");
    assert!(said.contains("no output was written"), "{said}");
    assert!(!out_a.exists(), "a cancelled job wrote {}", out_a.display());

    // The other job goes on and gives the right answer.
    assert!(run_b.wait_exit(Duration::from_secs(120)).success(), "{}", run_b.output());
    assert_counts_eq(&read_output(&out_b, 2), &reference_counts(&input), "the job not cancelled");
    drop(agents);
}

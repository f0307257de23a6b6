//! A small cluster of separate processes: `ipdc-submit hub` (embedded broker
//! and store), two `ipdc-agent` processes — one of them without Python — and
//! `ipdc-submit run` against them.

use std::time::Duration;

use ipdc_tests::*;

#[test]
fn a_mixed_cluster_with_an_agent_without_python_gives_the_reference_counts() {
    let hub = Hub::start();
    let _with_python = hub.agent("py-1", &["--slots", "2"]);
    let _without_python = hub.agent("nopy-1", &["--python", "none", "--slots", "3"]);
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let input = corpus("16M");
    let o = hub.submit(&[
        repo_root().join("examples/wordcount").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--workers",
        "2",
        "--reducers",
        "3",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let got = read_output(&out_dir, 3);
    assert_counts_eq(&got, &reference_counts(&input), "mixed cluster");
    // Both agents worked, and the one without Python ran the native fallback.
    let s = summary(&out_dir);
    // Splits per slot of the picked agents (2 + 3), not per agent: 16 MiB
    // is too small for a second split per slot, so 5 splits (one per agent
    // would give 2).
    assert_eq!(s["map_tasks"], 5, "{s:#}");
    let tasks = s["tasks"].as_array().unwrap();
    let by = |agent: &str| tasks.iter().filter(|t| t["agent"] == agent).collect::<Vec<_>>();
    assert!(!by("py-1").is_empty() && !by("nopy-1").is_empty(), "{s:#}");
    assert!(by("nopy-1").iter().all(|t| t["executor"] == "native:wordcount"), "{s:#}");
    assert!(by("py-1").iter().all(|t| t["executor"] == "python"), "{s:#}");
    assert_eq!(s["executor"], "mixed: native:wordcount, python", "{s:#}");
}

#[test]
fn agents_lists_every_agent_with_its_capabilities() {
    let hub = Hub::start();
    let _a = hub.agent("board-a", &["--slots", "3"]);
    let _b = hub.agent("board-b", &["--python", "none"]);
    std::thread::sleep(Duration::from_millis(300));
    let o = submit(&["agents", "--broker", &hub.mqtt, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = list.as_array().unwrap();
    let a = list.iter().find(|s| s["agent"] == "board-a").expect("board-a listed");
    let b = list.iter().find(|s| s["agent"] == "board-b").expect("board-b listed");
    assert_eq!(a["slots"], 3);
    assert_eq!(a["arch"], std::env::consts::ARCH);
    assert!(a["python"].as_str().unwrap().starts_with("3."));
    assert!(b["python"].is_null());
    assert!(a["mem_total_mb"].as_u64().unwrap() > 0);
    let table = submit(&["agents", "--broker", &hub.mqtt]);
    let table = text(&table);
    assert!(table.contains("AGENT") && table.contains("board-a") && table.contains("none"), "{table}");
}

#[test]
fn a_stopped_agent_is_marked_offline_and_not_picked() {
    let hub = Hub::start();
    let mut gone = hub.agent("gone-1", &[]);
    // SIGKILL: no goodbye. The broker's Last Will says it is gone as soon as
    // the broker has seen the connection close; failing that, its status
    // goes stale (3 heartbeats + 5 s). Under heavy load the embedded broker
    // (rumqttd 0.20) was seen to drop the Will now and then (the killed
    // agent's last status stayed retained), so either counts here.
    gone.kill();
    let now_ms =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let gone_or_silent = |s: &serde_json::Value| {
        s["online"] == false
            || now_ms().saturating_sub(s["heartbeat_ms"].as_u64().unwrap_or(0))
                > 3 * s["heartbeat_interval_ms"].as_u64().unwrap_or(0).max(1000) + 5_000
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = agents_json(&["--broker", &hub.mqtt]);
        if seen.iter().any(|s| s["agent"] == "gone-1" && gone_or_silent(s)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gone-1 still looks online 30 s after it was killed; `agents --json` says: {seen:?}\nnow_ms {}; agent log:\n{}",
            now_ms(),
            gone.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = hub.submit(&[
        repo_root().join("examples/wordcount").to_str().unwrap(),
        "--wait",
        "3",
        "--out",
        "/nonexistent/never",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("no capable agent is online"), "{t}");
}

#[test]
fn asking_for_more_workers_than_are_online_says_so() {
    let hub = Hub::start();
    let _a = hub.agent("only-1", &[]);
    let o = hub.submit(&[
        repo_root().join("examples/wordcount").to_str().unwrap(),
        "--workers",
        "3",
        "--wait",
        "2",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("asks for 3 workers but only 1 capable agent(s) are online (only-1)"), "{t}");
}

#[test]
fn the_scheduler_simulation_dispatches_every_task_through_a_real_broker() {
    // The benchmark's simulation, smaller: simulated agents answer at once.
    let o = std::process::Command::new(bin("ipdc-sim-scheduler"))
        .args(["--agents", "50", "--tasks", "2000"])
        .output()
        .expect("ipdc-sim-scheduler runs");
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("50 agents, 2000 map tasks + 1 reduce"), "{t}");
    assert!(t.contains("tasks/s dispatched and completed"), "{t}");
}

#[test]
fn the_hubs_store_collects_a_jobs_intermediate_data_and_keeps_its_input() {
    let hub = Hub::start();
    let _a = hub.agent("gc-1", &[]);
    let _b = hub.agent("gc-2", &[]);
    let job = repo_root().join("examples/wordcount");
    let input = corpus("4M");
    let out = tempfile::tempdir().unwrap();
    let first = out.path().join("first");
    let args = |extra: [&str; 2], out_dir: &std::path::Path| {
        let o = hub.submit(&[
            job.to_str().unwrap(),
            extra[0],
            extra[1],
            "--reducers",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        read_output(out_dir, 2)
    };
    args(["--input", input.to_str().unwrap()], &first);
    let s = summary(&first);
    let input_cid = s["input_cid"].as_str().unwrap().to_string();
    // kubo's `ipfs repo gc`, as `curl` sends it: the map outputs and the
    // parts (added unpinned by the agents) go, the input and code stay.
    let gc = std::process::Command::new("curl")
        .args(["-sS", "-X", "POST"])
        .arg(format!("{}/api/v0/repo/gc", hub.ipfs))
        .output()
        .expect("curl runs");
    assert!(gc.status.success(), "{}", text(&gc));
    let removed: Vec<String> = String::from_utf8_lossy(&gc.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Key"]["/"].as_str().unwrap().to_string()
        })
        .collect();
    let maps = s["map_tasks"].as_u64().unwrap() as usize;
    assert!(removed.len() >= maps, "{maps} map task(s); removed {removed:?}");
    assert!(!removed.contains(&input_cid), "{removed:?}");
    // The parts stay too: the result is pinned as the output directory.
    for part in s["parts"].as_array().unwrap() {
        assert!(!removed.iter().any(|r| part["cid"] == r.as_str()), "{part} was collected: {removed:?}");
    }
    // The input is still there: the job runs again from its CID.
    let second = out.path().join("second");
    let got = args(["--input-cid", &input_cid], &second);
    assert_counts_eq(&got, &reference_counts(&input), "a second job from the kept input");
}

/// A POST to the hub's IPFS API, as `curl` sends it; the answer's JSON.
fn ipfs_call(hub: &Hub, call: &str) -> serde_json::Value {
    let o = std::process::Command::new("curl")
        .args(["-sS", "-X", "POST"])
        .arg(format!("{}/api/v0/{call}", hub.ipfs))
        .output()
        .expect("curl runs");
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{call}: {e}: {}", text(&o)))
}

#[test]
fn a_result_is_a_pinned_directory_cid_that_the_next_job_reads_and_no_fetch_leaves_in_ipfs() {
    let hub = Hub::start();
    let _a = hub.agent("out-1", &[]);
    let _b = hub.agent("out-2", &[]);
    let input = corpus("4M");
    let tmp = tempfile::tempdir().unwrap();
    let run = |job: &std::path::Path, source: [&str; 2], out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            job.to_str().unwrap(),
            source[0],
            source[1],
            "--reducers",
            "2",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = hub.submit(&args);
        assert!(o.status.success(), "{}", text(&o));
        o
    };
    let wordcount = repo_root().join("examples/wordcount");
    let first = tmp.path().join("first");
    let o = run(&wordcount, ["--input", input.to_str().unwrap()], &first, &[]);
    let s = summary(&first);
    let cid = s["output_cid"].as_str().expect("an output_cid").to_string();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().last(), Some(format!("output CID: {cid}").as_str()), "{stdout}");
    assert_eq!(s["fetched"], true);
    // The directory lists the parts under their names, with the summary's CIDs.
    let listed = ipfs_call(&hub, &format!("ls?arg={cid}"));
    let links = listed["Objects"][0]["Links"].as_array().unwrap();
    let parts = s["parts"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{listed}");
    for (link, part) in links.iter().zip(parts) {
        assert_eq!(link["Name"], part["name"]);
        assert_eq!(link["Hash"], part["cid"]);
        let bytes = std::fs::metadata(first.join(part["name"].as_str().unwrap())).unwrap().len();
        assert_eq!(part["bytes"], bytes, "{part}");
    }

    // A second job reads the result straight from IPFS: how many distinct
    // words of each length, weighted by their counts.
    let by_length = tmp.path().join("by-length");
    std::fs::create_dir(&by_length).unwrap();
    std::fs::write(
        by_length.join("Map.py"),
        "def map(line):\n    word, n = line.rsplit('\\t', 1)\n    yield len(word), int(n)\n",
    )
    .unwrap();
    std::fs::write(by_length.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    let second = tmp.path().join("second");
    run(&by_length, ["--input-cid", &cid], &second, &[]);
    let s2 = summary(&second);
    let names: Vec<&str> =
        s2["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["part-00000", "part-00001"]);
    let reference = r#"
import collections, sys
c = collections.Counter()
for name in ("part-00000", "part-00001"):
    for line in open(sys.argv[1] + "/" + name, encoding="utf-8", errors="surrogateescape"):
        word, n = line.rstrip("\n").rsplit("\t", 1)
        c[len(word)] += int(n)
for k in sorted(c):
    print("%d\t%d" % (k, c[k]))
"#;
    let o = std::process::Command::new("python3").args(["-c", reference]).arg(&first).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let want: std::collections::BTreeMap<u64, u64> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once('\t').map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap())).unwrap())
        .collect();
    let mut got = std::collections::BTreeMap::new();
    for part in ["part-00000", "part-00001"] {
        for line in std::fs::read_to_string(second.join(part)).unwrap().lines() {
            let (k, v) = line.split_once('\t').unwrap();
            got.insert(k.parse::<u64>().unwrap(), v.parse::<u64>().unwrap());
        }
    }
    assert!(want.len() > 5, "{want:?}");
    assert_eq!(got, want);
    let total: u64 = reference_counts(&input).values().sum();
    assert_eq!(got.values().sum::<u64>(), total, "every word of the input, once");

    // --no-fetch: the same job, run again (not from the task cache), leaves
    // its result in IPFS under the same CID (the record encoding is
    // deterministic), and writes no part.
    let third = tmp.path().join("third");
    run(&wordcount, ["--input", input.to_str().unwrap()], &third, &["--no-fetch", "--no-cache"]);
    let s3 = summary(&third);
    assert_eq!(s3["output_cid"], cid.as_str());
    assert_eq!(s3["fetched"], false);
    let mut files: Vec<String> = std::fs::read_dir(&third)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["_SUCCESS", "summary.html", "summary.json"]);
    assert_eq!(s3["cached_tasks"], 0);

    // Once more, from the task cache: the agents run nothing, the hub's
    // store still has every output, and the result is the same.
    let fourth = tmp.path().join("fourth");
    run(&wordcount, ["--input", input.to_str().unwrap()], &fourth, &["--no-fetch"]);
    let s4 = summary(&fourth);
    let all = s4["map_tasks"].as_u64().unwrap() + s4["reduce_tasks"].as_u64().unwrap();
    assert_eq!(s4["cached_tasks"], all, "{s4:#}");
    assert_eq!(s4["output_cid"], cid.as_str());
    assert!(
        s4["agents"].as_array().unwrap().iter().all(|a| a["map_tasks"] == 0 && a["reduce_tasks"] == 0),
        "{s4:#}"
    );
}

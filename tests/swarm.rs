//! Every board its own IPFS node: a swarm of real IPFS peers (the tests'
//! js-ipfs) on loopback, one agent per peer and the submitter on a peer of
//! its own, Debian's Mosquitto as the broker. The data moves between the
//! nodes over bitswap: inputs from the submitter's node to the mappers',
//! map outputs to the reducers', parts to the submitter's.

use std::path::Path;
use std::time::Duration;

use ipdc_tests::*;

/// A broker, a swarm of 1 + `agents` peers, one agent (1 slot) on each
/// peer but the first, which is the submitter's.
struct SwarmCluster {
    broker: Mosquitto,
    swarm: Swarm,
    agents: Vec<Proc>,
}

impl SwarmCluster {
    fn start(agents: usize, extra: &[&str]) -> SwarmCluster {
        SwarmCluster::with_slots(&vec![1; agents], extra)
    }

    /// One agent per entry of `slots`, with that many slots.
    fn with_slots(slots: &[u32], extra: &[&str]) -> SwarmCluster {
        let agents = slots.len();
        let broker = Mosquitto::start("");
        let swarm = Swarm::start(agents + 1);
        let procs: Vec<Proc> = (1..=agents)
            .map(|i| {
                let n = slots[i - 1].to_string();
                let mut args = vec!["--slots", n.as_str()];
                args.extend_from_slice(extra);
                agent(&broker.url(), &swarm.peers[i].api, &format!("sw-{i}"), &args)
            })
            .collect();
        let names: Vec<String> = (1..=agents).map(|i| format!("sw-{i}")).collect();
        wait_until(&format!("agents {names:?} online with IPFS ok"), Duration::from_secs(30), || {
            let list = agents_json(&["--broker", &broker.url()]);
            names
                .iter()
                .all(|n| list.iter().any(|s| s["agent"] == *n && s["online"] == true && s["ipfs"] == "ok"))
        });
        SwarmCluster { broker, swarm, agents: procs }
    }

    /// `ipdc-submit run JOB` on the submitter's own node.
    fn args(&self, job: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            job.to_str().unwrap().into(),
            "--broker".into(),
            self.broker.url(),
            "--ipfs".into(),
            self.swarm.peers[0].api.clone(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--workers".into(),
            self.agents.len().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn run(&self, job: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["run".to_string()];
        args.extend(self.args(job, out, extra));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        submit(&refs)
    }
}

/// A CID as js-ipfs's `refs/local` names its block: the blockstore is keyed
/// by multihash, so every block lists as a raw CIDv1.
fn block_key(cid: &str) -> String {
    use ipdc_submit::store::cid::{Cid, RAW};
    let c = Cid::parse(cid).unwrap_or_else(|e| panic!("{cid}: {e}"));
    let b = c.as_bytes();
    Cid::v1_sha256(RAW, &b[b.len() - 32..]).to_string()
}

fn wordcount() -> std::path::PathBuf {
    repo_root().join("examples/wordcount")
}

#[test]
fn native_and_python_jobs_on_a_swarm_give_the_reference_and_each_split_is_fetched_about_once() {
    let c = SwarmCluster::start(3, &[]);
    let input = corpus("32M");
    let want = reference_counts(&input);
    let out = tempfile::tempdir().unwrap();

    let native = out.path().join("native");
    let o = c.run(&wordcount(), &native, &["--input", input.to_str().unwrap(), "--native", "wordcount"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_counts_eq(&read_output(&native, 2), &want, "native on a swarm");
    let s = summary(&native);
    assert!(s["map_tasks"].as_u64().unwrap() >= 3, "{s:#}");
    // The input's blocks the agents' nodes fetched (js-ipfs keeps no
    // bitswap counters; what a node holds is what it fetched): each split
    // once, and at most a block more where a line crosses a split's end.
    let input_cid = s["input_cid"].as_str().unwrap();
    let leaves = c.swarm.peers[0].blocks_of(input_cid);
    let held: Vec<usize> =
        c.swarm.peers[1..].iter().map(|p| p.local_blocks().intersection(&leaves).count()).collect();
    let fetched: usize = held.iter().sum();
    eprintln!(
        "input blocks {} (256 KiB each), fetched by the agents' nodes: {held:?} = {fetched}",
        leaves.len()
    );
    assert!(fetched >= leaves.len(), "every block of the input was read by some agent: {held:?}");
    assert!(
        fetched as f64 <= 1.05 * leaves.len() as f64,
        "{held:?}: over 5% more than the input's {} blocks",
        leaves.len()
    );
    // The parts are on the submitter's node; no map output is.
    let mine = c.swarm.peers[0].local_blocks();
    for part in s["parts"].as_array().unwrap() {
        assert!(mine.contains(&block_key(part["cid"].as_str().unwrap())), "{part}");
    }

    let python = out.path().join("python");
    let small = corpus("4M");
    let o = c.run(&wordcount(), &python, &["--input", small.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_counts_eq(&read_output(&python, 2), &reference_counts(&small), "Python on a swarm");
    assert_eq!(summary(&python)["executor"], "python");
}

#[test]
fn a_two_step_job_leaves_its_first_steps_parts_on_the_agents_nodes_and_only_the_last_comes_to_the_submitter()
{
    let c = SwarmCluster::start(2, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("top-n");
    std::fs::create_dir(&job).unwrap();
    for e in std::fs::read_dir(repo_root().join("examples/top-n")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), job.join(e.file_name())).unwrap();
        }
    }
    let out = tmp.path().join("out");
    let before = c.swarm.peers[0].local_blocks();
    let o = c.run(&job, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let reference =
        std::process::Command::new("python3").arg(job.join("reference.py")).arg(&job).output().unwrap();
    assert!(reference.status.success(), "{}", text(&reference));
    let got = std::fs::read_to_string(out.join("part-00000")).unwrap();
    assert_eq!(got, String::from_utf8(reference.stdout).unwrap());
    let s = summary(&out);
    let first: Vec<String> = s["steps"][0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| block_key(p["cid"].as_str().unwrap()))
        .collect();
    assert_eq!(first.len(), 2, "{s:#}");
    // What the submitter's node gained: the code, the input, the last step's
    // part and the output directory, nothing of the first step's parts.
    let gained: Vec<String> = c.swarm.peers[0].local_blocks().difference(&before).cloned().collect();
    for cid in &first {
        assert!(!gained.contains(cid), "step 1's part {cid} came to the submitter's node: {gained:?}");
        let on_agents = c.swarm.peers[1..].iter().any(|p| p.local_blocks().contains(cid));
        assert!(on_agents, "step 1's part {cid} is on an agent's node");
    }
    let last = block_key(s["parts"][0]["cid"].as_str().unwrap());
    assert!(gained.contains(&last), "{gained:?}");
    assert!(gained.contains(&block_key(s["output_cid"].as_str().unwrap())), "{gained:?}");
}

#[test]
fn an_input_added_on_one_agents_node_is_mapped_there_and_barely_moves_over_the_swarm() {
    // Board 2 has the slots for most of the splits; its maps run there.
    let c = SwarmCluster::with_slots(&[1, 4, 1], &[]);
    let input = corpus("8M");
    // Added by a user on board 2's node, with kubo's defaults (CIDv0).
    let cid = c.swarm.peers[2].add_default(&input);
    assert!(cid.starts_with("Qm"), "{cid}");
    let leaves: std::collections::BTreeSet<String> =
        c.swarm.peers[2].blocks_of(&cid).iter().map(|b| block_key(b)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let o = c.run(&wordcount(), &out, &["--input-cid", &cid, "--native", "wordcount"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_counts_eq(&read_output(&out, 2), &reference_counts(&input), "--input-cid on a swarm");
    assert!(
        text(&o).contains(
            "data locality: 8.0 MiB of the 8.0 MiB input is on the agents' nodes already (sw-2 8.0 MiB)"
        ),
        "{}",
        text(&o)
    );
    // What moved: the input's leaves every other node holds now.
    let moved: Vec<usize> =
        [0, 1, 3].iter().map(|&i| c.swarm.peers[i].local_blocks().intersection(&leaves).count()).collect();
    let total: usize = moved.iter().sum();
    eprintln!(
        "input blocks {}; fetched by the submitter's, sw-1's and sw-3's nodes: {moved:?}",
        leaves.len()
    );
    assert!(
        total * 10 <= leaves.len(),
        "{moved:?} of {} blocks moved over the swarm: more than a tenth",
        leaves.len()
    );
    let s = summary(&out);
    assert_eq!(s["input_cid"], cid.as_str());
    let maps: Vec<&serde_json::Value> = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["task"].as_str().unwrap().starts_with('m'))
        .collect();
    let sum =
        |f: &str| maps.iter().map(|t| t[f].as_u64().unwrap_or_else(|| panic!("{f} in {t}"))).sum::<u64>();
    let (local, remote, read) = (sum("local_bytes"), sum("remote_bytes"), sum("bytes_read"));
    assert_eq!(local + remote, read, "{s:#}");
    assert!(remote * 10 <= read, "{remote} of {read} bytes read came over the swarm: {s:#}");
}

#[test]
fn a_node_that_dies_after_its_reduce_costs_nothing_its_part_is_already_on_the_submitters_node() {
    let c = SwarmCluster::start(2, &[]);
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    std::fs::create_dir(&job).unwrap();
    std::fs::copy(wordcount().join("Map.py"), job.join("Map.py")).unwrap();
    // The reducer that gets the word "slow" takes 15 s more: the other
    // finishes first, and its node dies while the job still runs.
    std::fs::write(
        job.join("Reduce.py"),
        "import time\ndef reduce(key, values):\n    if key == 'slow':\n        time.sleep(15)\n    yield key, sum(values)\n",
    )
    .unwrap();
    let input = tmp.path().join("in.txt");
    let mut text_in = std::fs::read(corpus("1M")).unwrap();
    text_in.extend_from_slice(b"slow\n");
    std::fs::write(&input, &text_in).unwrap();
    let out = tmp.path().join("out");
    let args =
        c.args(&job, &out, &["--input", input.to_str().unwrap(), "--reducers", "2", "--no-speculative"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = submit_bg(&refs);
    run.wait_for("as its task finished", Duration::from_secs(60));
    let fast = (0..2)
        .find(|&i| c.agents[i].output().lines().any(|l| l.contains("finished ") && l.contains("/r-0000")))
        .expect("one agent finished a reduce");
    c.swarm.peers[fast + 1].stop();
    assert!(run.wait_exit(Duration::from_secs(90)).success(), "{}", run.output());
    assert_counts_eq(&read_output(&out, 2), &reference_counts(&input), "a node dead after its reduce");
    assert!(!run.output().contains("failed"), "{}", run.output());
}

#[test]
fn a_node_that_dies_mid_map_has_its_map_run_again_on_another_board() {
    // Every attempt waits 3 s in its folder first: time to kill a node under a running map.
    let c = SwarmCluster::start(3, &["--test-task-delay-ms", "3000"]);
    let input = corpus("4M");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let args = c.args(&wordcount(), &out, &["--input", input.to_str().unwrap(), "--no-speculative"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = submit_bg(&refs);
    wait_until("a map runs on sw-1", Duration::from_secs(60), || c.agents[0].output().contains("/m-0000"));
    c.swarm.peers[1].stop();
    assert!(run.wait_exit(Duration::from_secs(120)).success(), "{}", run.output());
    assert_counts_eq(&read_output(&out, 2), &reference_counts(&input), "a node dead mid-map");
    let s = summary(&out);
    let by_sw1 = s["tasks"].as_array().unwrap().iter().filter(|t| t["agent"] == "sw-1").count();
    assert_eq!(by_sw1, 0, "no result came from the board whose node died: {s:#}");
    assert!(run.output().contains("sw-1"), "the user is told about sw-1: {}", run.output());
}

#[test]
fn an_agent_whose_node_has_no_swarm_peers_is_shown_isolated_and_gets_no_task() {
    let c = SwarmCluster::start(2, &[]);
    // A board whose node never joined the swarm.
    let lone = IpfsPeer::start();
    let _lone_agent = agent(&c.broker.url(), &lone.api, "sw-lone", &["--slots", "4"]);
    wait_until("sw-lone reports its node isolated", Duration::from_secs(30), || {
        agents_json(&["--broker", &c.broker.url()])
            .iter()
            .any(|s| s["agent"] == "sw-lone" && s["swarm_peers"] == 0)
    });
    let listed = submit(&["agents", "--broker", &c.broker.url()]);
    let line = text(&listed).lines().find(|l| l.starts_with("sw-lone")).unwrap_or_default().to_string();
    assert!(line.contains("no swarm peers") && line.contains("isolated"), "{}", text(&listed));
    let check = std::process::Command::new(bin("ipdc-agent"))
        .args([
            "--check",
            "--broker",
            &c.broker.url(),
            "--ipfs",
            &lone.api,
            "--name",
            "lone-check",
            "--python",
            "none",
        ])
        .arg("--work-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("IPFS swarm") && text(&check).contains("no swarm peers"),
        "{}",
        text(&check)
    );

    let input = corpus("1M");
    let out = tempfile::tempdir().unwrap();
    let mut args = c.args(&wordcount(), &out.path().join("r"), &["--input", input.to_str().unwrap()]);
    args.retain(|a| a != "--workers" && a != "2"); // every capable agent
    let mut all = vec!["run".to_string()];
    all.extend(args);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let o = submit(&refs);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("sw-lone") && text(&o).contains("no swarm peers"),
        "the user is told: {}",
        text(&o)
    );
    assert_counts_eq(
        &read_output(&out.path().join("r"), 2),
        &reference_counts(&input),
        "isolated board left out",
    );
    let s = summary(&out.path().join("r"));
    assert!(s["agents"].as_array().unwrap().iter().all(|a| a["agent"] != "sw-lone"), "{s:#}");
}

#[test]
fn a_node_that_dies_after_its_map_has_the_map_run_again_at_once_not_after_a_reducers_timeout() {
    // Every attempt waits 4 s in its folder first: the reduce fetches its
    // inputs only after the node is killed.
    let c = SwarmCluster::start(3, &["--test-task-delay-ms", "4000"]);
    let input = corpus("4M");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let args = c.args(
        &wordcount(),
        &out,
        &["--input", input.to_str().unwrap(), "--no-speculative", "--reducers", "1"],
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = submit_bg(&refs);
    let ran = |i: usize, what: &str| c.agents[i].output().lines().any(|l| l.contains(what));
    wait_until("the reduce starts", Duration::from_secs(90), || {
        (0..3).any(|i| ran(i, "running ") && ran(i, "/r-00000"))
    });
    let reducer = (0..3).find(|&i| ran(i, "/r-00000")).unwrap();
    let victim = (0..3).find(|&i| i != reducer && ran(i, "finished ")).expect("another agent finished a map");
    let killed = std::time::Instant::now();
    c.swarm.peers[victim + 1].stop();
    assert!(run.wait_exit(Duration::from_secs(120)).success(), "{}", run.output());
    let took = killed.elapsed();
    assert_counts_eq(&read_output(&out, 1), &reference_counts(&input), "a node dead after its map");
    let said = run.output();
    let name = format!("sw-{}", victim + 1);
    assert!(
        said.contains(&format!("agent {name}")) && said.contains("were only on its node and are lost"),
        "{said}"
    );
    // Not the 60 s a reducer waits for a block no node has.
    assert!(took < Duration::from_secs(50), "the job took {took:?} after the kill:\n{said}");
}

#[test]
fn each_agent_shows_which_private_network_its_node_is_in() {
    let broker = Mosquitto::start("");
    let ipfs = IpfsPeer::start();
    let d = tempfile::tempdir().unwrap();
    let key = |file: &str, byte: &str| {
        let path = d.path().join(file);
        std::fs::write(&path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", byte.repeat(32))).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (one, other, none) = (key("one.key", "ab"), key("other.key", "cd"), d.path().join("no.key"));
    let keys = [one.as_str(), one.as_str(), other.as_str(), none.to_str().unwrap()];
    let _agents: Vec<Proc> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| agent(&broker.url(), &ipfs.api, &format!("pk-{}", i + 1), &["--swarm-key", k]))
        .collect();
    let mut list = Vec::new();
    wait_until("four agents online", Duration::from_secs(30), || {
        list = agents_json(&["--broker", &broker.url()]);
        list.iter().filter(|s| s["online"] == true).count() == 4
    });
    let of = |name: &str| list.iter().find(|s| s["agent"] == name).unwrap()["private_swarm"].clone();
    let f = of("pk-1");
    assert!(f.as_str().is_some_and(|f| f.len() == 16), "{list:?}");
    assert_eq!(of("pk-2"), f, "the same key, the same network");
    assert!(of("pk-3").is_string() && of("pk-3") != f, "{list:?}");
    assert!(of("pk-4").is_null(), "no key: the public network: {list:?}");
    let table = text(&submit(&["agents", "--broker", &broker.url()]));
    let row = table.lines().find(|l| l.starts_with("pk-1")).unwrap();
    assert!(row.contains(&format!("private {}", f.as_str().unwrap())), "{table}");

    let check = std::process::Command::new(bin("ipdc-agent"))
        .args(["--check", "--broker", &broker.url(), "--ipfs", &ipfs.api, "--swarm-key", &one])
        .output()
        .unwrap();
    let out = text(&check);
    assert!(out.contains(&format!("ok (private network {}", f.as_str().unwrap())), "{out}");
}

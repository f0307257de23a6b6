//! Verified results end to end: `ipdc-submit hub` and three separate
//! `ipdc-agent` processes, one of them lying (the hidden `--test-lie` hook:
//! every output CID it reports is the CID of something else it added to
//! IPFS). With `verify = 2` the job's output is still the reference word
//! count and `summary.json` names the liar; with `verify = 1` (the default)
//! an honest cluster runs as before.

use std::path::Path;

use ipdc_tests::*;

/// The wordcount example in a folder of its own, with `extra` appended to its ipdc.toml.
fn wordcount_job(dir: &Path, extra: &str) -> std::path::PathBuf {
    let job = dir.join("job");
    std::fs::create_dir_all(&job).unwrap();
    let example = repo_root().join("examples/wordcount");
    for f in ["Map.py", "Reduce.py"] {
        std::fs::copy(example.join(f), job.join(f)).unwrap();
    }
    let toml = std::fs::read_to_string(example.join("ipdc.toml")).unwrap();
    std::fs::write(job.join("ipdc.toml"), format!("{toml}\n{extra}")).unwrap();
    job
}

#[test]
fn verify_2_outvotes_a_lying_agent_gives_the_reference_output_and_names_the_liar() {
    let hub = Hub::start();
    let _a = hub.agent("honest-1", &["--slots", "1"]);
    let _b = hub.agent("honest-2", &["--slots", "1"]);
    let liar = hub.agent("liar-1", &["--slots", "1", "--test-lie"]);
    let dir = tempfile::tempdir().unwrap();
    let job = wordcount_job(dir.path(), "verify = 2\n");
    let out_dir = dir.path().join("result");
    let input = corpus("4M");
    let o = hub.submit(&[
        job.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--workers",
        "3",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}\nliar's log:\n{}", liar.output());
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "verify = 2 with a liar");
    let s = summary(&out_dir);
    assert_eq!(s["verify"], 2, "{s:#}");
    let tasks = s["map_tasks"].as_u64().unwrap() + s["reduce_tasks"].as_u64().unwrap();
    assert_eq!(s["verified_tasks"], tasks, "every task confirmed by two agents: {s:#}");
    let disagreements = s["disagreements"].as_array().unwrap();
    assert!(!disagreements.is_empty(), "the liar ran a task at the start (one slot each): {s:#}");
    for d in disagreements {
        assert_eq!(d["outvoted"], serde_json::json!(["liar-1"]), "{d:#}");
        let agreed = d["agreed_by"].as_array().unwrap();
        assert_eq!(agreed.len(), 2, "{d:#}");
        assert!(agreed.iter().all(|a| a != "liar-1"), "{d:#}");
        let lie =
            d["results"].as_array().unwrap().iter().find(|r| r["agent"] == "liar-1").expect("its result");
        assert_ne!(lie["cids"], d["won"], "{d:#}");
        assert!(lie["cids"][0].as_str().unwrap().starts_with("bafk"), "a well-formed CID: {d:#}");
    }
    // No result of the liar stands.
    for task in s["tasks"].as_array().unwrap() {
        assert!(task["agreed_by"].as_array().unwrap().iter().all(|a| a != "liar-1"), "{task:#}");
    }
    assert!(
        t.contains(&format!("verified {tasks} of {tasks} task(s), each confirmed by 2 agents (verify = 2)")),
        "{t}"
    );
    assert!(t.contains("agent liar-1 returned results the other agents disagreed with"), "{t}");
    assert!(t.contains("agent liar-1 returned a different result for task "), "the warning: {t}");
}

#[test]
fn verify_1_on_an_honest_cluster_runs_each_task_once_as_before() {
    let hub = Hub::start();
    let _a = hub.agent("plain-1", &["--slots", "1"]);
    let _b = hub.agent("plain-2", &["--slots", "1"]);
    let _c = hub.agent("plain-3", &["--slots", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("result");
    let input = corpus("4M");
    let o = hub.submit(&[
        repo_root().join("examples/wordcount").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--workers",
        "3",
        "--no-speculative",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "verify = 1");
    let s = summary(&out_dir);
    assert_eq!(s["verify"], 1, "{s:#}");
    assert_eq!(s["verified_tasks"], 0, "{s:#}");
    assert_eq!(s["disagreements"], serde_json::json!([]), "{s:#}");
    for task in s["tasks"].as_array().unwrap() {
        assert_eq!(task["attempts"], 1, "one attempt each: {task:#}");
        assert_eq!(task["agreed_by"], serde_json::json!([task["agent"]]), "{task:#}");
    }
    assert!(!t.contains("verified "), "no verification lines: {t}");
    assert!(!t.contains("verified on"), "{t}");
}

#[test]
fn verify_asks_for_more_agents_than_the_cluster_has_and_the_job_does_not_start() {
    let hub = Hub::start();
    let _a = hub.agent("lone-1", &[]);
    let _b = hub.agent("lone-2", &[]);
    let o = hub.submit(&[
        repo_root().join("examples/wordcount").to_str().unwrap(),
        "--verify",
        "3",
        "--wait",
        "2",
    ]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("verify = 3 runs tasks on 3 different agents, but only 2 agent(s) can run this job ("),
        "{t}"
    );
    assert!(t.contains("lone-1") && t.contains("lone-2") && t.contains("lower verify"), "{t}");
}

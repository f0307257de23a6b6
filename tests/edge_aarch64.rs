//! The static aarch64 agent (built by `scripts/dist.sh agent-aarch64`) under
//! `qemu-aarch64-static`, beside an x86_64 agent, in a cluster around
//! `ipdc-submit hub`: it names its build, reports `aarch64`, runs map and
//! reduce tasks, and the job's output equals Python's `collections.Counter`.
//!
//! Needs `IPDC_AARCH64_AGENT=/path/to/ipdc-agent` (and qemu-user-static);
//! without it the test prints SKIPPED and passes. `.ci/run` runs it as its
//! own step. `IPDC_QEMU_AARCH64` overrides the emulator (default
//! `qemu-aarch64-static`, called explicitly: binfmt is not relied upon).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipdc_tests::*;

fn aarch64_agent() -> Option<(PathBuf, PathBuf)> {
    let Some(agent) = std::env::var_os("IPDC_AARCH64_AGENT") else {
        println!(
            "SKIPPED: set IPDC_AARCH64_AGENT to the aarch64 ipdc-agent (scripts/dist.sh agent-aarch64) to run this test"
        );
        return None;
    };
    let qemu = std::env::var_os("IPDC_QEMU_AARCH64").unwrap_or_else(|| "qemu-aarch64-static".into());
    Some((PathBuf::from(qemu), PathBuf::from(agent)))
}

#[test]
fn an_aarch64_agent_under_qemu_runs_map_and_reduce_tasks_beside_an_x86_64_agent() {
    let Some((qemu, agent)) = aarch64_agent() else { return };

    // The binary is really aarch64 (a host binary would not need qemu) and names its build.
    let v = Command::new(&qemu).arg(&agent).arg("--version").output().expect("qemu-aarch64-static runs");
    let version = text(&v);
    assert!(v.status.success(), "{version}");
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    assert!(version.contains("aarch64-unknown-linux-musl"), "{version}");
    assert!(version.contains("dist"), "not the size-tuned dist profile: {version}");
    // Every dependency must earn its bytes on a board: the agent stays under 6 MB.
    let bytes = std::fs::metadata(&agent).unwrap().len();
    println!("static aarch64 agent: {bytes} bytes");
    assert!(bytes < 6_000_000, "the static aarch64 agent is {bytes} bytes, over the 6 MB budget");

    let hub = Hub::start();
    // One slot each: every agent gets maps at the start and, with two
    // reducers, one reduce each (the scheduler fills the most free slots first).
    let arm_args = [
        "--broker",
        &hub.mqtt,
        "--ipfs",
        &hub.ipfs,
        "--name",
        "arm-1",
        "--heartbeat-secs",
        "1",
        "--slots",
        "1",
    ];
    let mut qemu_args = vec![agent.to_str().unwrap()];
    qemu_args.extend_from_slice(&arm_args);
    let arm = spawn(&qemu, &qemu_args, &[]);
    arm.wait_for("connected to broker", Duration::from_secs(60));
    let _x86 = hub.agent("x86-1", &["--slots", "1"]);

    // Its status says aarch64 (the x86 one says x86_64).
    let mut listed = serde_json::Value::Null;
    for _ in 0..40 {
        let o = submit(&["agents", "--broker", &hub.mqtt, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        listed = serde_json::from_slice(&o.stdout).unwrap();
        if listed.as_array().unwrap().len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let find = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["agent"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {listed:#}\narm-1 log:\n{}", arm.output()))
    };
    assert_eq!(find("arm-1")["arch"], "aarch64", "{listed:#}");
    assert_eq!(find("x86-1")["arch"], "x86_64", "{listed:#}");

    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let input = corpus("4M");
    let o = hub.submit(&[
        repo_root().join("examples/wordcount").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--workers",
        "2",
        "--reducers",
        "2",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\narm-1 log:\n{}", text(&o), arm.output());
    let got = read_output(&out_dir, 2);
    assert_counts_eq(&got, &reference_counts(&input), "aarch64 + x86_64 cluster");

    let s = summary(&out_dir);
    let tasks = s["tasks"].as_array().unwrap();
    let ran = |agent: &str, prefix: &str| {
        tasks.iter().any(|t| t["agent"] == agent && t["task"].as_str().unwrap().starts_with(prefix))
    };
    assert!(ran("arm-1", "m-"), "the aarch64 agent ran no map task: {s:#}");
    assert!(ran("arm-1", "r-"), "the aarch64 agent ran no reduce task: {s:#}");
    assert!(ran("x86-1", "m-"), "the x86_64 agent ran no map task: {s:#}");
}

//! What a user checks on an installed agent: `ipdc-agent --version` names the
//! build (version, commit, target, profile), and the packaged default config
//! (packaging/agent.toml, installed as /etc/ipdc/agent.toml) is accepted by
//! `ipdc-agent --check`.

use std::process::Command;

use ipdc_tests::*;

#[test]
fn agent_version_names_version_commit_target_and_profile() {
    let o = Command::new(bin("ipdc-agent")).arg("--version").output().unwrap();
    let v = text(&o);
    assert!(o.status.success(), "{v}");
    assert!(v.starts_with(&format!("ipdc-agent {} (", env!("CARGO_PKG_VERSION"))), "{v}");
    let commit = Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert!(v.contains(&format!("commit {commit},")), "want commit {commit}: {v}");
    let target = format!("{}-unknown-{}", std::env::consts::ARCH, std::env::consts::OS);
    assert!(v.contains(&target), "want target {target}: {v}");
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    assert!(v.trim_end().ends_with(&format!("{profile})")), "want profile {profile}: {v}");
}

#[test]
fn the_packaged_config_passes_check_against_a_live_hub() {
    let hub = Hub::start();
    let work = tempfile::tempdir().unwrap();
    let config = repo_root().join("packaging/agent.toml");
    // Flags override the file's broker, IPFS and work dir (which point at a
    // board's own services and /var/lib); everything else comes from the file.
    let o = Command::new(bin("ipdc-agent"))
        .arg("--config")
        .arg(&config)
        .args(["--check", "--broker", &hub.mqtt, "--ipfs", &hub.ipfs, "--name", "pkg-check", "--work-dir"])
        .arg(work.path())
        .output()
        .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("all checks passed"), "{t}");
    assert!(t.contains("in cluster default") && t.contains("256 MiB per task"), "{t}");
}

#[test]
fn check_names_an_unreachable_ipfs_api_and_what_to_do() {
    let hub = Hub::start();
    let work = tempfile::tempdir().unwrap();
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ipfs = format!("http://127.0.0.1:{port}");
    let o = Command::new(bin("ipdc-agent"))
        .args(["--check", "--broker", &hub.mqtt, "--ipfs", &ipfs, "--name", "bad-ipfs", "--python", "none"])
        .arg("--work-dir")
        .arg(work.path())
        .output()
        .unwrap();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    let line = t.lines().find(|l| l.trim_start().starts_with("IPFS API")).unwrap_or_else(|| panic!("{t}"));
    assert!(line.contains(&format!("{ipfs} ... FAILED")) && line.contains("connection refused"), "{line}");
    assert!(line.contains("ipfs config Addresses.API"), "{line}");
    assert_eq!(line.matches("is the IPFS daemon running").count(), 1, "{line}");
    assert!(t.lines().any(|l| l.trim_start().starts_with("broker") && l.contains(" ... ok (")), "{t}");
}

#[test]
fn an_agent_refuses_to_start_on_a_work_dir_it_cannot_write_or_a_missing_named_config() {
    let o = Command::new(bin("ipdc-agent"))
        .args([
            "--broker",
            "mqtt://127.0.0.1:1",
            "--name",
            "no-wd",
            "--python",
            "none",
            "--work-dir",
            "/proc/ipdc-work",
        ])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("work dir /proc/ipdc-work: cannot create it"), "{t}");
    assert!(t.contains("ReadWritePaths="), "{t}");

    let missing = tempfile::tempdir().unwrap().path().join("agent.toml");
    for (flag, env) in [(true, false), (false, true)] {
        let mut cmd = Command::new(bin("ipdc-agent"));
        cmd.arg("--check");
        if flag {
            cmd.arg("--config").arg(&missing);
        }
        if env {
            cmd.env("IPDC_CONFIG", &missing);
        }
        let o = cmd.output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(t.contains(&format!("cannot read the config file {}", missing.display())), "{t}");
    }
}

#[test]
fn an_agent_stops_at_once_while_it_waits_to_retry_the_broker() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let work = tempfile::tempdir().unwrap();
    let broker = format!("mqtt://127.0.0.1:{port}");
    let args = ["--broker", &broker, "--name", "stop-me", "--python", "none", "--work-dir"];
    let mut all: Vec<&str> = args.to_vec();
    all.push(work.path().to_str().unwrap());
    let mut agent = spawn(&bin("ipdc-agent"), &all, &[]);
    // The backoff doubles from 200 ms: by now the agent sleeps 3.2 s.
    agent.wait_for("retrying in 3.2s", std::time::Duration::from_secs(20));
    let asked = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &agent.child.id().to_string()]).status().unwrap().success());
    agent.wait_exit(std::time::Duration::from_secs(10));
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(1),
        "took {:?}\n{}",
        asked.elapsed(),
        agent.output()
    );
}

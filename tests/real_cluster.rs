//! Real deployments: Debian's Mosquitto as the broker and a real IPFS
//! implementation (js-ipfs answering the kubo RPC API) as the store, with
//! agents and submitters as separate processes on loopback.

use std::path::Path;
use std::time::Duration;

use ipdc_tests::*;

fn job_dir() -> String {
    repo_root().join("examples/wordcount").to_str().unwrap().to_string()
}

fn run_job(broker: &str, ipfs: &str, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run".to_string(),
        job_dir(),
        "--broker".into(),
        broker.into(),
        "--ipfs".into(),
        ipfs.into(),
        "--input".into(),
        input.to_str().unwrap().into(),
        "--out".into(),
        out.to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    submit(&refs)
}

fn wait_online(broker: &str, names: &[&str]) {
    wait_until(&format!("agents {names:?} online with IPFS ok"), Duration::from_secs(30), || {
        let list = agents_json(&["--broker", broker]);
        names
            .iter()
            .all(|n| list.iter().any(|s| s["agent"] == *n && s["online"] == true && s["ipfs"] == "ok"))
    });
}

#[test]
fn mosquitto_three_agents_and_ipfs_give_the_reference_counts_for_64mib() {
    let broker = Mosquitto::start("");
    let ipfs = IpfsPeer::start();
    let _agents: Vec<_> =
        (1..=3).map(|i| agent(&broker.url(), &ipfs.api, &format!("m-{i}"), &["--slots", "1"])).collect();
    wait_online(&broker.url(), &["m-1", "m-2", "m-3"]);
    let input = corpus("64M");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let pins_before = ipfs.recursive_pins();
    let o = run_job(
        &broker.url(),
        &ipfs.api,
        &input,
        &out_dir,
        &["--workers", "3", "--reducers", "3", "--native", "wordcount"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_counts_eq(&read_output(&out_dir, 3), &reference_counts(&input), "Mosquitto + js-ipfs, 64 MiB");
    let s = summary(&out_dir);
    for a in s["agents"].as_array().unwrap() {
        assert!(a["map_tasks"].as_u64().unwrap() >= 1, "every agent mapped: {s:#}");
    }
    // The user's input stays pinned, and the result as its directory; the
    // agents' map outputs do not, or boards' disks would fill job after job.
    let new: Vec<String> = ipfs.recursive_pins().into_iter().filter(|p| !pins_before.contains(p)).collect();
    // (js-ipfs lists them in base58, as zdj7… or Qm…, not as the job's bafy…)
    assert_eq!(new.len(), 2, "the input and the output directory are pinned: {new:?}");
    // The output CID is what js-ipfs makes of the three part files wrapped
    // in a directory: our dag-pb node and the parts' DAG sizes agree with it.
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "-X", "POST"]);
    for r in 0..3 {
        let part = out_dir.join(format!("part-{r:05}"));
        curl.arg("-F").arg(format!("file=@{};filename=part-{r:05}", part.display()));
    }
    let added = curl
        .arg(format!(
            "{}/api/v0/add?cid-version=1&raw-leaves=true&cid-base=base32&wrap-with-directory=true",
            ipfs.api
        ))
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", text(&added));
    let added = String::from_utf8_lossy(&added.stdout);
    let wrapped: serde_json::Value = serde_json::from_str(added.lines().last().unwrap()).unwrap();
    assert_eq!(s["output_cid"], wrapped["Hash"], "{added}");
}

#[test]
fn two_submitters_at_once_each_get_their_own_result_and_share_all_agents() {
    let broker = Mosquitto::start("");
    let ipfs = IpfsPeer::start();
    let _agents: Vec<_> =
        (1..=3).map(|i| agent(&broker.url(), &ipfs.api, &format!("s-{i}"), &["--slots", "1"])).collect();
    wait_online(&broker.url(), &["s-1", "s-2", "s-3"]);
    let a_in = corpus("16M");
    let b_in = repo_root().join("examples/wordcount/data.dat");
    let out = tempfile::tempdir().unwrap();
    let (a_out, b_out) = (out.path().join("a"), out.path().join("b"));
    let (bu, api) = (broker.url(), ipfs.api.clone());
    let (a_in2, a_out2) = (a_in.clone(), a_out.clone());
    let a = std::thread::spawn(move || {
        run_job(&bu, &api, &a_in2, &a_out2, &["--reducers", "2", "--native", "wordcount"])
    });
    let b = run_job(&broker.url(), &ipfs.api, &b_in, &b_out, &["--reducers", "1"]);
    let a = a.join().unwrap();
    assert!(a.status.success(), "A: {}", text(&a));
    assert!(b.status.success(), "B: {}", text(&b));
    assert_counts_eq(&read_output(&a_out, 2), &reference_counts(&a_in), "submitter A");
    assert_counts_eq(&read_output(&b_out, 1), &reference_counts(&b_in), "submitter B");
    // Both jobs were spread over every agent.
    for (name, dir) in [("A", &a_out), ("B", &b_out)] {
        let s = summary(dir);
        let used: Vec<_> = s["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["agent"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(used.len(), 3, "job {name} used all agents: {s:#}");
        assert_ne!(s["job"], summary(if name == "A" { &b_out } else { &a_out })["job"]);
    }
}

#[test]
fn an_agent_whose_ipfs_is_down_joins_once_it_comes_up() {
    let broker = Mosquitto::start("");
    let port = free_port();
    let late = agent(&broker.url(), &format!("http://127.0.0.1:{port}"), "late-1", &[]);
    wait_until("late-1 reports its IPFS API unreachable", Duration::from_secs(20), || {
        agents_json(&["--broker", &broker.url()])
            .iter()
            .any(|s| s["agent"] == "late-1" && s["ipfs"].as_str().unwrap_or("").starts_with("unreachable"))
    });
    // Not picked while its IPFS API is down.
    let out = tempfile::tempdir().unwrap();
    let input = repo_root().join("examples/wordcount/data.dat");
    let o = run_job(
        &broker.url(),
        &format!("http://127.0.0.1:{port}"),
        &input,
        &out.path().join("x"),
        &["--wait", "1"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("late-1: IPFS API unreachable"), "{}", text(&o));
    // The IPFS node comes up: the agent joins and runs the job.
    let ipfs = IpfsPeer::start_on(port);
    wait_online(&broker.url(), &["late-1"]);
    let out_dir = out.path().join("result");
    let o = run_job(&broker.url(), &ipfs.api, &input, &out_dir, &[]);
    assert!(o.status.success(), "{}\nagent log:\n{}", text(&o), late.output());
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "late agent");
}

#[test]
fn input_cid_runs_on_a_file_added_directly_to_ipfs() {
    let broker = Mosquitto::start("");
    let ipfs = IpfsPeer::start();
    let _a = agent(&broker.url(), &ipfs.api, "cid-1", &[]);
    wait_online(&broker.url(), &["cid-1"]);
    let input = corpus("4M");
    let cid = ipfs.add_default(&input);
    assert!(cid.starts_with("Qm"), "the peer's default add gives CIDv0: {cid}");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let o = submit(&[
        "run",
        &job_dir(),
        "--broker",
        &broker.url(),
        "--ipfs",
        &ipfs.api,
        "--input-cid",
        &cid,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "--input-cid");
    assert_eq!(summary(&out_dir)["input_cid"], cid.as_str());
}

/// A test CA, a server certificate for 127.0.0.1, and a password file.
fn tls_and_passwords(dir: &Path) {
    let run = |args: &[&str]| {
        let o = std::process::Command::new(args[0]).args(&args[1..]).current_dir(dir).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    };
    run(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=IPDC test CA",
    ]);
    run(&[
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    run(&["mosquitto_passwd", "-b", "-c", "passwd", "board", "s3cret"]);
    std::fs::write(dir.join("good-password"), "s3cret\n").unwrap();
    std::fs::write(dir.join("bad-password"), "wrong\n").unwrap();
    // Mosquitto runs as whoever starts it; make the files readable for it.
    for f in ["server.key", "passwd"] {
        run(&["chmod", "644", f]);
    }
}

#[test]
fn tls_and_passwords_let_the_right_clients_in_and_tell_the_wrong_ones_why() {
    let certs = tempfile::tempdir().unwrap();
    tls_and_passwords(certs.path());
    let d = certs.path().display();
    let broker = Mosquitto::start(&format!(
        "listener {{PORT}} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    ));
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let ca = format!("{d}/ca.pem");
    let good = format!("{d}/good-password");
    let bad = format!("{d}/bad-password");
    let ipfs = Hub::start(); // the embedded store as the IPFS API; Mosquitto is the broker
    let creds = |pw: &str| {
        vec![
            "--tls-ca".to_string(),
            ca.clone(),
            "--username".into(),
            "board".into(),
            "--password-file".into(),
            pw.to_string(),
        ]
    };
    let good_args = creds(&good);
    let good_refs: Vec<&str> = good_args.iter().map(String::as_str).collect();
    let bad_args = creds(&bad);
    let bad_refs: Vec<&str> = bad_args.iter().map(String::as_str).collect();

    let _ok = agent(&url, &ipfs.ipfs, "tls-good", &good_refs);
    let wrong = agent(&url, &ipfs.ipfs, "tls-wrong", &bad_refs);
    wrong.wait_for("refused the user name or password", Duration::from_secs(20));

    let mut list_args = vec!["--broker", &url];
    list_args.extend_from_slice(&good_refs);
    wait_until("tls-good online", Duration::from_secs(20), || {
        agents_json(&list_args).iter().any(|s| s["agent"] == "tls-good" && s["ipfs"] == "ok")
    });
    assert!(
        !agents_json(&list_args).iter().any(|s| s["agent"] == "tls-wrong"),
        "the agent with a wrong password is not listed"
    );

    // The submitter with the right credentials runs a job over TLS.
    let input = repo_root().join("examples/wordcount/data.dat");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let o = run_job(&url, &ipfs.ipfs, &input, &out_dir, &good_refs);
    assert!(o.status.success(), "{}", text(&o));
    assert_counts_eq(&read_output(&out_dir, 2), &reference_counts(&input), "over TLS");

    // A --password-file flag beats a password in the environment, in both
    // programs (flags win over the environment).
    let o = std::process::Command::new(bin("ipdc-submit"))
        .env("IPDC_PASSWORD", "wrong")
        .args(["agents", "--json", "--broker", &url])
        .args(&good_refs)
        .output()
        .unwrap();
    assert!(o.status.success() && text(&o).contains("tls-good"), "{}", text(&o));
    let work = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(bin("ipdc-agent"))
        .env("IPDC_PASSWORD", "wrong")
        .args(["--check", "--broker", &url, "--ipfs", &ipfs.ipfs, "--name", "env-check", "--python", "none"])
        .args(&good_refs)
        .arg("--work-dir")
        .arg(work.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).lines().any(|l| l.trim_start().starts_with("broker") && l.contains(" ... ok (")),
        "{}",
        text(&o)
    );
    // Without the flag the environment's password is used (and refused).
    let o = std::process::Command::new(bin("ipdc-submit"))
        .env("IPDC_PASSWORD", "wrong")
        .args(["agents", "--json", "--broker", &url, "--tls-ca", &ca, "--username", "board"])
        .output()
        .unwrap();
    assert!(!o.status.success() && text(&o).contains("refused the user name or password"), "{}", text(&o));

    // Wrong password, and no CA: clear errors, no hang.
    let o = run_job(&url, &ipfs.ipfs, &input, &out.path().join("y"), &bad_refs);
    assert!(!o.status.success());
    assert!(text(&o).contains("refused the user name or password"), "{}", text(&o));
    let no_ca = ["--username", "board", "--password-file", good.as_str(), "--tls-ca", "/nonexistent/ca.pem"];
    let o = run_job(&url, &ipfs.ipfs, &input, &out.path().join("z"), &no_ca);
    assert!(!o.status.success());
    assert!(text(&o).contains("tls_ca /nonexistent/ca.pem"), "{}", text(&o));
    // Plain MQTT against the TLS listener fails clearly too.
    let plain_url = format!("mqtt://127.0.0.1:{}", broker.port);
    let o = run_job(
        &plain_url,
        &ipfs.ipfs,
        &input,
        &out.path().join("w"),
        &["--username", "board", "--password-file", &good],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("cannot reach the MQTT broker"), "{}", text(&o));
}

#[test]
fn two_agents_with_one_name_are_told_why_the_broker_drops_them() {
    // Raspberry Pi OS names every board `raspberrypi`: two such agents take
    // turns throwing each other off the broker (one client id).
    let broker = Mosquitto::start("");
    let ipfs = "http://127.0.0.1:9"; // not needed to connect to the broker
    let a = agent(&broker.url(), ipfs, "raspberrypi", &["--python", "none"]);
    let b = agent(&broker.url(), ipfs, "raspberrypi", &["--python", "none"]);
    let hint = "is another agent named raspberrypi connected to it (two boards with the same host name)?";
    wait_until("the duplicate-name hint", Duration::from_secs(60), || {
        a.output().contains(hint) || b.output().contains(hint)
    });
}

#[test]
fn a_directory_cid_is_the_input_each_file_named_by_its_path_inside_it() {
    let broker = Mosquitto::start("");
    let ipfs = IpfsPeer::start();
    let _agents: Vec<_> = (1..=2).map(|i| agent(&broker.url(), &ipfs.api, &format!("d-{i}"), &[])).collect();
    wait_online(&broker.url(), &["d-1", "d-2"]);
    // The example's docs/ folder as `ipfs add -r -w` adds it: the last line is the wrapping directory.
    let example = repo_root().join("examples/inverted-index");
    let mut files: Vec<_> = walk(&example.join("docs"));
    files.sort();
    let add_folder = |api: &str| {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "-X", "POST"]);
        for f in &files {
            let rel = f.strip_prefix(&example).unwrap().to_str().unwrap();
            curl.arg("-F").arg(format!("file=@{};filename={rel}", f.display()));
        }
        let out = curl
            .arg(format!("{api}/api/v0/add?cid-version=1&cid-base=base32&wrap-with-directory=true"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        lines
            .iter()
            .map(|l| (l["Name"].as_str().unwrap().to_string(), l["Hash"].as_str().unwrap().to_string()))
            .collect::<Vec<_>>()
    };
    let added = add_folder(&ipfs.api);
    let root = added.last().unwrap().1.clone();
    // The hub's embedded store builds the same directories, with the same CIDs.
    let hub = Hub::start();
    let mut by_store = add_folder(&hub.ipfs);
    let mut by_peer = added.clone();
    by_store.sort();
    by_peer.sort();
    assert_eq!(by_store, by_peer, "the embedded store's add -r against js-ipfs's");

    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("inverted-index");
    std::fs::create_dir_all(&job).unwrap();
    for f in ["Map.py", "Reduce.py"] {
        std::fs::copy(example.join(f), job.join(f)).unwrap();
    }
    std::fs::write(job.join("ipdc.toml"), "reducers = 2\n").unwrap();
    let o = submit(&[
        "run",
        job.to_str().unwrap(),
        "--broker",
        &broker.url(),
        "--ipfs",
        &ipfs.api,
        "--input-cid",
        &root,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("in {} files", files.len())), "{}", text(&o));
    // The reference reads the example's own docs/: the names inside the CID are the same paths.
    let want = std::process::Command::new("python3")
        .arg(example.join("reference.py"))
        .arg(&example)
        .output()
        .unwrap();
    let mut want: Vec<String> = String::from_utf8(want.stdout).unwrap().lines().map(String::from).collect();
    let mut got: Vec<String> = (0..2)
        .flat_map(|p| {
            let part = std::fs::read_to_string(job.join(format!("output/part-{p:05}"))).unwrap();
            part.lines().map(String::from).collect::<Vec<_>>()
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    // The same by CID on the hub, its agents reading the store's directory.
    let _hub_agent = hub.agent("hub-1", &[]);
    let o = hub.submit(&[job.to_str().unwrap(), "--input-cid", &root, "--overwrite"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut on_hub: Vec<String> = (0..2)
        .flat_map(|p| {
            let part = std::fs::read_to_string(job.join(format!("output/part-{p:05}"))).unwrap();
            part.lines().map(String::from).collect::<Vec<_>>()
        })
        .collect();
    on_hub.sort();
    assert_eq!(on_hub, want, "by CID on the hub");

    // A directory with no files is named.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-X", "POST", "-F", "file=;type=application/x-directory;filename=empty"])
        .arg(format!("{}/api/v0/add?cid-version=1", ipfs.api))
        .output()
        .unwrap();
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    let empty: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let empty = empty["Hash"].as_str().unwrap();
    let (b, i) = (broker.url(), ipfs.api.clone());
    let o = submit(&[
        "run",
        job.to_str().unwrap(),
        "--broker",
        &b,
        "--ipfs",
        &i,
        "--input-cid",
        empty,
        "--overwrite",
    ]);
    assert!(!o.status.success() && text(&o).contains("is a directory with no files"), "{}", text(&o));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

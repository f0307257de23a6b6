//! What a person looks at, in a real browser (Debian's headless Chromium):
//! a finished job's report, `summary.html`, from a real cluster (Mosquitto,
//! a js-ipfs peer, agent processes).

use std::time::Duration;

use ipdc_tests::*;

#[test]
fn a_finished_jobs_report_shows_its_agents_bars_and_counters_in_chromium() {
    let broker = Mosquitto::start("");
    let ipfs = IpfsPeer::start();
    let _agents: Vec<_> =
        ["look-1", "look-2"].iter().map(|n| agent(&broker.url(), &ipfs.api, n, &["--slots", "2"])).collect();
    wait_until("both agents online", Duration::from_secs(30), || {
        let list = agents_json(&["--broker", &broker.url()]);
        ["look-1", "look-2"].iter().all(|n| list.iter().any(|s| s["agent"] == *n && s["ipfs"] == "ok"))
    });
    let input = corpus("16M");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let job = repo_root().join("examples/wordcount");
    let o = submit(&[
        "run",
        job.to_str().unwrap(),
        "--broker",
        &broker.url(),
        "--ipfs",
        &ipfs.api,
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--workers",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let s = summary(&out);
    let attempts = s["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 6, "4 maps and 2 reduces at least: {s:#}");
    for a in attempts {
        assert!(a["end_ms"].as_u64().unwrap() >= a["start_ms"].as_u64().unwrap(), "{a}");
    }
    let report = out.join("summary.html");
    let written = std::fs::read(&report).unwrap();

    // `report` draws the same page again from summary.json alone.
    std::fs::remove_file(&report).unwrap();
    let o = submit(&["report", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(&report).unwrap(), written, "the page drawn again differs");
    let o = submit(&["report", tmp.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("summary.json") && text(&o).contains("output folder of an IPDC job"),
        "{}",
        text(&o)
    );

    // What Chromium shows: the agents' rows, a bar per attempt, the counters.
    let url = format!("file://{}", report.display());
    let dom = Browser::dom(&url);
    for name in ["look-1", "look-2"] {
        assert!(dom.contains(&format!(">{name}</text>")), "no timeline row for {name}: {dom}");
    }
    assert_eq!(dom.matches("<rect class=\"bar").count(), attempts.len(), "{dom}");
    let records = s["counters"]["map_input_records"].as_u64().unwrap();
    assert!(dom.contains(&format!("<th>map_input_records</th><td>{records}</td>")), "{dom}");
    assert!(dom.contains(s["output_cid"].as_str().unwrap()));
    let shot = Browser::screenshot(&url, "report", 1100, 900);
    // The map (blue) and reduce (green) bars are drawn, far larger than
    // the legend's keys (about 120 pixels each).
    let px = Browser::pixels_of(&shot, &["3b7dd8", "2e9e6a"]);
    assert!(px[0] > 2_000 && px[1] > 500, "map and reduce pixels {px:?} in {}", shot.display());
}

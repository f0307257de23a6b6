//! What a job leaves on disk and what it says about it: a result with no
//! output at all warns, an input that changes while it is added is named,
//! and user code leaves nothing in an agent's work dir.

use std::path::Path;

use ipdc_tests::*;

fn job(dir: &Path, map: &str, reduce: &str, data: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Map.py"), map).unwrap();
    std::fs::write(dir.join("Reduce.py"), reduce).unwrap();
    std::fs::write(dir.join("data.dat"), data).unwrap();
}

const MAP: &str = "def map(line):\n    for w in line.split():\n        yield w, 1\n";

#[test]
fn a_reduce_that_returns_none_gives_a_warning_in_the_summary_and_the_last_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    // Returns None for every key: a forgotten `return` or `yield`.
    let reduce = "def reduce(key, values):\n    sum(values)\n";
    let words: Vec<String> = (0..133).map(|i| format!("w{i}")).collect();
    job(&dir, MAP, reduce, &format!("{}\n{}\n", words.join(" "), words[..50].join(" ")));
    let out = tmp.path().join("out");
    let o = submit(&["run", "--local", "2", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let want = "reduce produced no output for any of its 133 keys: does it return or yield its pairs?";
    let s = summary(&out);
    assert_eq!(s["warnings"], serde_json::json!([want]), "{s:#}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(3).collect();
    assert!(tail.contains(&format!("warning: {want}").as_str()), "{stdout}");
    assert!(out.join("_SUCCESS").is_file());
    assert_eq!(std::fs::read(out.join("part-00000")).unwrap(), b"");

    // A job with output has none.
    let out2 = tmp.path().join("out2");
    let reduce = "def reduce(key, values):\n    yield key, sum(values)\n";
    std::fs::write(dir.join("Reduce.py"), reduce).unwrap();
    let o = submit(&["run", "--local", "2", dir.to_str().unwrap(), "--out", out2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary(&out2)["warnings"], serde_json::json!([]));
    assert!(!text(&o).contains("warning: "), "{}", text(&o));
}

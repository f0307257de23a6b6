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

/// A text file of `mib` MiB, and a thread appending a line to it every
/// millisecond until the returned flag is set.
fn growing_file(
    path: &Path,
    mib: usize,
) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let line = b"the quick brown fox jumps over the lazy dog again and again\n";
    let mut block = Vec::with_capacity(1 << 20);
    while block.len() + line.len() <= 1 << 20 {
        block.extend_from_slice(line);
    }
    let mut f = std::fs::File::create(path).unwrap();
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    drop(f);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, path) = (stop.clone(), path.to_path_buf());
    let appender = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            f.write_all(b"still being written\n").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
    (stop, appender)
}

/// The add of a 64 MiB input reads all of it (tens of milliseconds at the
/// least, hashing or sending it) while a line is appended every millisecond:
/// its size always differs between the start and the end of the add.
fn assert_named_as_changing(t: &str, input: &Path) {
    let named = format!("input {} changed while it was being added (size ", input.display());
    assert!(t.contains(&named), "{t}");
    assert!(t.contains("): wait until it is complete, or copy it first"), "{t}");
    assert!(!t.contains("no data at offset"), "{t}");
    assert!(t.contains("no output was written") || !t.contains("output: "), "{t}");
}

#[test]
fn an_input_that_grows_while_it_is_added_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    job(&dir, MAP, "def reduce(key, values):\n    yield key, sum(values)\n", "unused\n");
    let input = tmp.path().join("growing.txt");
    let (stop, appender) = growing_file(&input, 64);
    let out = tmp.path().join("out");
    let args = ["--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()];

    // --local: added by reference into the embedded store, in-process.
    let mut local = vec!["run", "--local", "1", dir.to_str().unwrap()];
    local.extend(args);
    let o = submit(&local);
    assert!(!o.status.success(), "{}", text(&o));
    assert_named_as_changing(&text(&o), &input);
    assert!(!out.exists());

    // Sent over HTTP to a store (the hub's).
    let hub = Hub::start();
    let _a = hub.agent("grow-1", &[]);
    let mut remote = vec![dir.to_str().unwrap()];
    remote.extend(args);
    let o = hub.submit(&remote);
    assert!(!o.status.success(), "{}", text(&o));
    assert_named_as_changing(&text(&o), &input);
    assert!(!out.exists());

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    appender.join().unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

#[test]
fn a_job_leaves_nothing_in_the_work_dir_its_temp_folder_or_home() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("job");
    // Everywhere user code can write without naming an absolute path.
    let map = r#"import os, tempfile
def map(line):
    # The code runs in WORK/JOB/ATTEMPT/code: three levels up is the work dir.
    open('../../../left-by-job', 'w').write('x')
    os.makedirs('../../../made/deep', exist_ok=True)
    open('../../../.dotfile', 'w').write('x')
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b'x')
    open(os.path.expanduser('~/in-home'), 'w').write('x')
    for w in line.split():
        yield w, 1
"#;
    job(&dir, map, "def reduce(key, values):\n    yield key, sum(values)\n", "a b a\nc\n");
    let (work, agent_tmp, agent_home) =
        (tmp.path().join("work"), tmp.path().join("agent-tmp"), tmp.path().join("agent-home"));
    for d in [&work, &agent_tmp, &agent_home] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::create_dir(work.join("photos")).unwrap(); // the operator's
    let hub = Hub::start();
    let a = spawn(
        &bin("ipdc-agent"),
        &[
            "--broker",
            &hub.mqtt,
            "--ipfs",
            &hub.ipfs,
            "--name",
            "tidy-1",
            "--heartbeat-secs",
            "1",
            "--work-dir",
            work.to_str().unwrap(),
        ],
        // Landlock off: with it those writes fail; the sweep is what cleans
        // up on kernels without it.
        &[
            ("TMPDIR", agent_tmp.to_str().unwrap()),
            ("HOME", agent_home.to_str().unwrap()),
            ("IPDC_LANDLOCK", "off"),
        ],
    );
    a.wait_for("connected to broker", std::time::Duration::from_secs(20));
    let out = tmp.path().join("out");
    let o = hub.submit(&[dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", text(&o), a.output());
    assert_eq!(std::fs::read_to_string(out.join("part-00000")).unwrap(), "a\t2\nb\t1\nc\t1\n");
    // The agent's own, the operator's, and a dot file (taken for the agent's own) stay.
    let want = [".dotfile", ".lock", "photos"];
    wait_until("the work dir swept", std::time::Duration::from_secs(15), || names(&work) == want);
    assert!(a.output().contains("that jobs left in the work dir"), "{}", a.output());
    assert_eq!(names(&agent_tmp), Vec::<String>::new(), "the agent's TMPDIR");
    assert_eq!(names(&agent_home), Vec::<String>::new(), "the agent user's home");
}

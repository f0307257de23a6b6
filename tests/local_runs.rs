//! `ipdc-submit run --local K`: the README's command, on the example and on
//! the 64 MiB benchmark corpus, for K = 1, 2, 4 and R = 1, 3, with the Python
//! executor and with `--native wordcount`; every output must equal Python's
//! `collections.Counter`, word for word and count for count.

use std::path::Path;

use ipdc_tests::*;

fn run_local(input: &Path, k: usize, r: usize, native: bool) -> Counts {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().join("result");
    let (k_s, r_s) = (k.to_string(), r.to_string());
    let mut args = vec![
        "run",
        "--local",
        &k_s,
        "--reducers",
        &r_s,
        "--input",
        input.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    let job = repo_root().join("examples/wordcount");
    args.insert(1, job.to_str().unwrap());
    if native {
        args.extend(["--native", "wordcount"]);
    }
    let o = submit(&args);
    assert!(o.status.success(), "K={k} R={r} native={native}: {}", text(&o));
    let s = summary(&out_dir);
    let agents_used = s["agents"].as_array().unwrap().len();
    assert_eq!(agents_used, k, "{s:#}");
    assert_eq!(s["executor"], if native { "native:wordcount" } else { "python" });
    read_output(&out_dir, r)
}

#[test]
fn the_example_job_gives_the_reference_counts_for_every_k_r_and_executor() {
    let input = repo_root().join("examples/wordcount/data.dat");
    let want = reference_counts(&input);
    for native in [false, true] {
        for k in [1, 2, 4] {
            for r in [1, 3] {
                let got = run_local(&input, k, r, native);
                assert_counts_eq(&got, &want, &format!("example K={k} R={r} native={native}"));
            }
        }
    }
}

#[test]
fn the_64mib_corpus_gives_the_reference_counts() {
    let input = corpus("64M");
    let want = reference_counts(&input);
    for (k, r, native) in
        [(1, 1, true), (2, 3, true), (4, 3, true), (4, 1, true), (1, 3, false), (2, 1, false), (4, 3, false)]
    {
        let got = run_local(&input, k, r, native);
        assert_counts_eq(&got, &want, &format!("64 MiB K={k} R={r} native={native}"));
    }
}

#[test]
fn the_readme_command_writes_the_example_output_folder() {
    // Exactly what a newcomer types (minus cargo), into a copy of the example.
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("wordcount");
    std::fs::create_dir(&job).unwrap();
    for f in ["ipdc.toml", "Map.py", "Reduce.py", "data.dat"] {
        std::fs::copy(repo_root().join("examples/wordcount").join(f), job.join(f)).unwrap();
    }
    let o = submit(&["run", "--local", "4", job.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("picked 4 agent(s)") && t.contains("output: "), "{t}");
    let out = job.join("output");
    let got = read_output(&out, 2);
    assert_counts_eq(&got, &reference_counts(&job.join("data.dat")), "README command");
    let s = summary(&out);
    let lines = std::fs::read(job.join("data.dat")).unwrap().iter().filter(|&&b| b == b'\n').count();
    assert_eq!(s["counters"]["map_input_records"], lines as u64);
    assert!(s["input_cid"].as_str().unwrap().starts_with("baf"));
    // A second run refuses to replace the result unless told to.
    let again = submit(&["run", "--local", "1", job.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    let over = submit(&["run", "--local", "1", job.to_str().unwrap(), "--overwrite"]);
    assert!(over.status.success(), "{}", text(&over));
    assert_counts_eq(&read_output(&out, 2), &reference_counts(&job.join("data.dat")), "overwrite");
}

/// `ipdc-submit` with its cache (and so the kept `--local` store) in `cache`.
fn submit_with_cache(cache: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("ipdc-submit"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .env("RUST_LOG", "warn,rumqttd=off")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn local_runs_keep_their_store_so_a_result_cid_feeds_the_next_run_until_store_gc() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let input = repo_root().join("examples/wordcount/data.dat");
    let first = tmp.path().join("first");
    let wordcount = repo_root().join("examples/wordcount");
    let o = submit_with_cache(
        &cache,
        &["run", "--local", "2", wordcount.to_str().unwrap(), "--out", first.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cid = summary(&first)["output_cid"].as_str().unwrap().to_string();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cache.join("ipdc/local-store")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the kept store is this user's alone");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().last(),
        Some(format!("output CID: {cid}").as_str())
    );

    // A later run reads it by CID: the parts' lines are its input.
    let job = tmp.path().join("lines");
    std::fs::create_dir(&job).unwrap();
    std::fs::write(
        job.join("Map.py"),
        "def map(line):\n    word, n = line.rsplit('\\t', 1)\n    yield 'words', int(n)\n",
    )
    .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    let second = tmp.path().join("second");
    let run_second = |out: &Path| {
        submit_with_cache(
            &cache,
            &[
                "run",
                "--local",
                "2",
                job.to_str().unwrap(),
                "--input-cid",
                &cid,
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    let o = run_second(&second);
    assert!(o.status.success(), "{}", text(&o));
    let total: u64 = reference_counts(&input).values().sum();
    assert_eq!(std::fs::read_to_string(second.join("part-00000")).unwrap(), format!("words\t{total}\n"));

    // While another run holds the kept store, a run gets a temporary one
    // (and says so), and `store gc` waits for it.
    let lock = std::fs::File::open(cache.join("ipdc/local-store.lock")).unwrap();
    lock.lock().unwrap();
    let o = run_second(&tmp.path().join("third"));
    assert!(!o.status.success(), "the temporary store does not hold the CID: {}", text(&o));
    assert!(text(&o).contains("another --local run is using the kept store"), "{}", text(&o));
    let o = submit_with_cache(&cache, &["store", "gc"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("a --local run is using the kept store: wait until it ends"), "{}", text(&o));
    lock.unlock().unwrap();

    // `store gc` empties it: the CID is gone, and the error says where --local looks.
    let o = submit_with_cache(&cache, &["store", "gc"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("removed the kept --local store"), "{}", text(&o));
    assert!(!cache.join("ipdc/local-store").exists());
    let o = run_second(&tmp.path().join("fourth"));
    assert!(!o.status.success());
    assert!(text(&o).contains("--local finds a CID only in its kept store"), "{}", text(&o));
}

/// The parts of an output folder, by name, byte for byte.
fn parts_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut parts: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    parts.sort();
    parts
}

/// Tasks of a summary that ran (were not taken from the task cache), maps and reduces.
fn ran(s: &serde_json::Value) -> (usize, usize) {
    let tasks = s["tasks"].as_array().unwrap();
    let ran = |prefix: char| {
        tasks
            .iter()
            .filter(|t| t["task"].as_str().unwrap().starts_with(prefix) && t.get("cached").is_none())
            .count()
    };
    (ran('m'), ran('r'))
}

#[test]
fn the_task_cache_reuses_what_an_unchanged_job_ran_only_the_edited_reducer_runs_and_no_cache_runs_all() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let job = tmp.path().join("wc");
    std::fs::create_dir(&job).unwrap();
    let example = repo_root().join("examples/wordcount");
    for f in ["Map.py", "Reduce.py"] {
        std::fs::copy(example.join(f), job.join(f)).unwrap();
    }
    // No combiner: a map's output does not depend on Reduce.py.
    std::fs::write(job.join("ipdc.toml"), "name = \"wc\"\ninput = \"in.txt\"\nreducers = 2\n").unwrap();
    let text_in = std::fs::read(example.join("data.dat")).unwrap().repeat(40);
    std::fs::write(job.join("in.txt"), &text_in).unwrap();
    let want = reference_counts(&job.join("in.txt"));
    let run = |out: &str, extra: &[&str]| {
        let out = tmp.path().join(out);
        let mut args = vec!["run", "--local", "2", job.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = submit_with_cache(&cache, &args);
        assert!(o.status.success(), "{}", text(&o));
        let s = summary(&out);
        (out, s, text(&o))
    };

    let (first, s1, _) = run("first", &[]);
    assert_counts_eq(&read_output(&first, 2), &want, "first run");
    let (maps, reduces) = (s1["map_tasks"].as_u64().unwrap() as usize, 2);
    assert!(maps >= 2, "{s1:#}");
    assert_eq!((s1["cached_tasks"].as_u64(), ran(&s1)), (Some(0), (maps, reduces)));

    // Unchanged: nothing runs, and the parts are the very same bytes.
    let (second, s2, t2) = run("second", &[]);
    assert_eq!((s2["cached_tasks"].as_u64(), ran(&s2)), (Some((maps + reduces) as u64), (0, 0)), "{t2}");
    assert!(
        t2.contains(&format!("reusing {} of {} task(s) from the task cache", maps + reduces, maps + reduces)),
        "{t2}"
    );
    assert_eq!(parts_of(&second), parts_of(&first));
    assert_eq!(s2["output_cid"], s1["output_cid"]);
    assert_eq!(s2["counters"], s1["counters"], "the counters are the cached tasks'");

    // Only Reduce.py edited: no map runs, every reduce does.
    std::fs::write(job.join("Reduce.py"), "def reduce(key, values):\n    yield key, 2 * sum(values)\n")
        .unwrap();
    let (third, s3, _) = run("third", &[]);
    assert_eq!(ran(&s3), (0, reduces), "{s3:#}");
    let doubled: Counts = want.iter().map(|(w, n)| (w.clone(), 2 * n)).collect();
    assert_counts_eq(&read_output(&third, 2), &doubled, "edited reducer");

    // --no-cache: everything runs, and gives the same.
    let (fourth, s4, _) = run("fourth", &["--no-cache"]);
    assert_eq!((s4["cached_tasks"].as_u64(), ran(&s4)), (Some(0), (maps, reduces)));
    assert_eq!(parts_of(&fourth), parts_of(&third));

    // Outputs gone from the store (here: the whole kept store): recomputed, not a failure.
    std::fs::remove_dir_all(cache.join("ipdc/local-store")).unwrap();
    let (fifth, s5, _) = run("fifth", &[]);
    assert_eq!((s5["cached_tasks"].as_u64(), ran(&s5)), (Some(0), (maps, reduces)), "{s5:#}");
    assert_eq!(parts_of(&fifth), parts_of(&third));

    // cache = false in ipdc.toml: the same as --no-cache.
    std::fs::write(job.join("ipdc.toml"), "name = \"wc\"\ninput = \"in.txt\"\nreducers = 2\ncache = false\n")
        .unwrap();
    let (_, s6, _) = run("sixth", &[]);
    assert_eq!((s6["cached_tasks"].as_u64(), ran(&s6)), (Some(0), (maps, reduces)));
}

#[test]
fn the_progress_moves_every_two_seconds_inside_long_map_tasks() {
    // Two splits of 32 MiB in Python: each map runs for seconds, and only
    // the agents' reports from inside them can move the progress.
    let input = corpus("64M");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let job = repo_root().join("examples/wordcount");
    let o = submit(&[
        "run",
        job.to_str().unwrap(),
        "--local",
        "2",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
        "--no-cache",
        "--no-combiner",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let progress: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "progress").collect();
    let during_maps: Vec<&&serde_json::Value> =
        progress.iter().filter(|e| e["maps_done"].as_u64() < e["maps"].as_u64()).collect();
    assert!(during_maps.len() >= 2, "fewer than two progress lines while the maps ran: {progress:#?}");
    assert_eq!(during_maps[0]["maps"], 2);
    let size = std::fs::metadata(&input).unwrap().len();
    let mut last = (0, 0);
    for (i, e) in during_maps.iter().enumerate() {
        let (bytes, lines) = (e["bytes_read"].as_u64().unwrap(), e["lines"].as_u64().unwrap());
        assert_eq!(e["input_bytes"].as_u64(), Some(size), "{e}");
        assert!(bytes > last.0 && lines > last.1, "line {i} did not move: {e} after {last:?}\n{progress:#?}");
        assert!(bytes < size, "{e}");
        last = (bytes, lines);
    }
    // A line every 2 s, changed or not.
    let times: Vec<u64> = progress.iter().map(|e| e["elapsed_ms"].as_u64().unwrap()).collect();
    for w in times.windows(2) {
        assert!((1_900..3_000).contains(&(w[1] - w[0])), "progress lines at {times:?} ms");
    }
}

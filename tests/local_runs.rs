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

//! The jobs people write, end to end: every example under `examples/`
//! (many input files, side files, parameters, counters, map-only, whole-split
//! maps, task logs) run with `--local` and on a hub with separate agent
//! processes, each output compared with the example's plain-Python
//! `reference.py`; and the bad inputs of such jobs, each refused with a
//! message naming what to fix before anything runs.

use std::path::{Path, PathBuf};

use ipdc_tests::*;

/// The examples that carry a `reference.py`.
const EXAMPLES: &[&str] = &["inverted-index", "log-rollup", "join", "grep", "wordcount-split"];

/// A copy of example `name` in a temporary folder (so its output lands there).
fn copy_example(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    copy_tree(&repo_root().join("examples").join(name), &dst);
    (tmp, dst)
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() != "output" {
                copy_tree(&e.path(), &to);
            }
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// What `reference.py` says: the output lines and the counters (its
/// `#counters` line, if any).
fn reference(job: &Path, args: &[&str]) -> (Vec<String>, serde_json::Value) {
    let o = std::process::Command::new("python3")
        .arg(job.join("reference.py"))
        .arg(job)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mut lines: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect();
    let counters = match lines.last() {
        Some(l) if l.starts_with("#counters\t") => {
            let c = serde_json::from_str(&l["#counters\t".len()..]).unwrap();
            lines.pop();
            c
        }
        _ => serde_json::json!({}),
    };
    (lines, counters)
}

/// The output's lines, parts in order.
fn output_lines(out: &Path) -> Vec<String> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("part-"))
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(String::from).collect::<Vec<_>>())
        .collect()
}

/// Checks a finished example against its reference: a map-only job's lines
/// in input order, a reduce's as a set of lines (the user's check: every
/// key with its value); the counters exactly.
fn check(job: &Path, out: &Path, ref_args: &[&str], what: &str) {
    let (want, counters) = reference(job, ref_args);
    let s = summary(out);
    let mut got = output_lines(out);
    assert!(!want.is_empty(), "{what}: the reference is empty");
    if s["reducers"] == 0 {
        assert_eq!(got, want, "{what}: map-only output in input order");
    } else {
        let mut want = want;
        got.sort();
        want.sort();
        assert_eq!(got, want, "{what}");
    }
    assert_eq!(s["user_counters"], counters, "{what}: counters");
    assert!(out.join("_SUCCESS").is_file(), "{what}");
}

#[test]
fn every_example_gives_its_reference_under_local() {
    for name in EXAMPLES {
        let (_tmp, job) = copy_example(name);
        let o = submit(&["run", "--local", "2", job.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        check(&job, &job.join("output"), &[], name);
        // The counters are also the job's last lines.
        let (_, counters) = reference(&job, &[]);
        for (k, v) in counters.as_object().unwrap() {
            assert!(text(&o).contains(&format!("counter {k}: {v}")), "{name}: {}", text(&o));
        }
    }
}

#[test]
fn every_example_gives_its_reference_on_a_hub_with_separate_agents() {
    let hub = Hub::start();
    let _a = hub.agent("pi-1", &[]);
    let _b = hub.agent("pi-2", &[]);
    for name in EXAMPLES {
        let (_tmp, job) = copy_example(name);
        let o = hub.submit(&[job.to_str().unwrap(), "--workers", "2"]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        check(&job, &job.join("output"), &[], &format!("{name} on a hub"));
    }
    // Inputs already in IPFS, repeated: the join's two files by CID.
    let (_tmp, job) = copy_example("join");
    let cid = |f: &str| {
        let o = std::process::Command::new("curl")
            .args(["-sS", "-F"])
            .arg(format!("file=@{}", job.join(f).display()))
            .arg(format!("{}/api/v0/add?cid-version=1&pin=true", hub.ipfs))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["Hash"].as_str().unwrap().to_string()
    };
    let (users, orders) = (cid("users.csv"), cid("orders.csv"));
    // By CID a file's name is its CID: the mapper tells the files apart by it.
    let map =
        std::fs::read_to_string(job.join("Map.py")).unwrap().replace("\"users.csv\"", &format!("{users:?}"));
    std::fs::write(job.join("Map.py"), map).unwrap();
    let o = hub.submit(&[job.to_str().unwrap(), "--input-cid", &users, "--input-cid", &orders]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("in 2 files"), "{}", text(&o));
    check(&job, &job.join("output"), &[], "join by CIDs");
    let s = summary(&job.join("output"));
    assert_eq!(s["inputs"].as_array().unwrap().len(), 2, "{s:#}");
    assert!(s["input_cid"].is_null(), "{s:#}");
}

#[test]
fn parameters_from_the_command_line_override_the_file() {
    let (_tmp, job) = copy_example("grep");
    let o = submit(&["run", "--local", "2", job.to_str().unwrap(), "--param", "pattern=WARN .* 9"]);
    assert!(o.status.success(), "{}", text(&o));
    check(&job, &job.join("output"), &["WARN .* 9"], "grep --param");
    let names: Vec<String> = std::fs::read_dir(job.join("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("part-m-")), "{names:?}");
}

#[test]
fn repeated_inputs_globs_and_input_file_names_reach_the_code() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::create_dir_all(job.join("logs/old")).unwrap();
    std::fs::write(job.join("logs/a.log"), "x y\nz\n").unwrap();
    std::fs::write(job.join("logs/b.log"), "x\n").unwrap();
    std::fs::write(job.join("logs/c.txt"), "not a log\n").unwrap();
    std::fs::write(job.join("logs/old/d.log"), "q\n").unwrap();
    std::fs::write(job.join("extra.txt"), "e e e\n").unwrap();
    std::fs::write(
        job.join("Map.py"),
        "import ipdc\ndef map(line):\n    print('mapping', ipdc.input_file())\n    yield ipdc.input_file(), len(line.split())\n",
    )
    .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    let j = job.to_str().unwrap();
    let glob = job.join("logs/*.log");
    let o = submit(&["run", "--local", "2", j, "--input", glob.to_str().unwrap(), "--input", "extra.txt"]);
    // A relative --input is relative to where the command runs, like any path argument.
    assert!(!o.status.success() && text(&o).contains("extra.txt"), "{}", text(&o));
    let extra = job.join("extra.txt");
    let o = submit(&[
        "run",
        "--local",
        "2",
        j,
        "--input",
        glob.to_str().unwrap(),
        "--input",
        extra.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3 map task(s) over 14 B in 3 files"), "{}", text(&o));
    let mut got = output_lines(&job.join("output"));
    got.sort();
    assert_eq!(got, ["extra.txt\t3", "logs/a.log\t3", "logs/b.log\t1"]);
    // What a successful map printed is kept, one file per task.
    let log = std::fs::read_to_string(job.join("output/_logs/m-00000.log")).unwrap();
    assert_eq!(log, "mapping logs/a.log\nmapping logs/a.log\n");
    assert!(!job.join("output/_logs/r-00000.log").exists(), "the reduce printed nothing");
}

/// Runs `ipdc-submit run --local 1` on a job folder made of `files`
/// (ipdc.toml among them), with `args`; returns what it printed, after
/// checking it failed and wrote no output.
fn refused(files: &[(&str, &str)], args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = tmp.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let mut all = vec!["run", "--local", "1", tmp.path().to_str().unwrap()];
    all.extend_from_slice(args);
    let o = submit(&all);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(!tmp.path().join("output").exists(), "{t}");
    t
}

const MAP: (&str, &str) = ("Map.py", "def map(line):\n    yield line, 1\n");
const REDUCE: (&str, &str) = ("Reduce.py", "def reduce(k, vs):\n    yield k, sum(vs)\n");
const DATA: (&str, &str) = ("data.dat", "a b\n");

/// A bad job: its files, its flags, and what the error must say.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);

#[test]
fn bad_inputs_of_such_jobs_are_named_before_anything_runs() {
    let cases: &[Case] = &[
        (
            &[MAP, REDUCE, DATA, ("ipdc.toml", "files = [\"stop.txt\"]\n")],
            &[],
            &["side file", "stop.txt", "cannot be read"],
        ),
        (&[MAP, REDUCE, DATA, ("ipdc.toml", "input = \"in/*.csv\"\n")], &[], &["in/*.csv matches no file"]),
        (&[MAP, REDUCE, ("in/.hidden", "x\n"), ("ipdc.toml", "input = \"in\"\n")], &[], &["holds no files"]),
        (
            &[MAP, REDUCE, DATA, ("ipdc.toml", "reducers = 0\ncombiner = true\n")],
            &[],
            &["combiner = true with reducers = 0"],
        ),
        (&[MAP, REDUCE, DATA], &["--param", "k"], &["--param \"k\" is not KEY=VALUE"]),
        (
            &[
                ("Map.py", "from helper import f\ndef map(line):\n    yield f(line), 1\n"),
                ("helper.py", "f = str\n"),
                REDUCE,
                DATA,
            ],
            &[],
            &["Map.py imports helper", "helper.py", "files = [\"helper.py\"]", "--file helper.py"],
        ),
        (
            &[MAP, REDUCE, DATA, ("big.bin", "")],
            &["--file", "/nonexistent/model.bin"],
            &["side file /nonexistent/model.bin"],
        ),
        (
            &[MAP, REDUCE, DATA, ("ipdc.toml", "files = [\"my model.bin\"]\n"), ("my model.bin", "w")],
            &[],
            &["which they refuse"],
        ),
    ];
    for (files, args, needles) in cases {
        let t = refused(files, args);
        for n in *needles {
            assert!(t.contains(n), "{files:?} {args:?}: wanted {n:?} in:\n{t}");
        }
    }
}

#[test]
fn bad_user_code_of_such_jobs_fails_naming_the_problem_and_writes_nothing() {
    let both = ("Map.py", "def map(line):\n    yield line, 1\ndef map_split(lines):\n    yield 'a', 1\n");
    let t = refused(&[both, REDUCE, DATA], &[]);
    assert!(t.contains("defines both map() and map_split()"), "{t}");
    let bad_counter = ("Map.py", "import ipdc\ndef map(line):\n    ipdc.counter(3)\n    yield line, 1\n");
    let t = refused(&[bad_counter, REDUCE, DATA], &[]);
    assert!(
        t.contains("ipdc.counter(name, n=1): name must be a str, not int") && t.contains("line 1"),
        "{t}"
    );
}

#[test]
fn counters_count_the_winning_attempt_only() {
    // Attempt 1 of each map fails after counting; the retry's counts alone are kept.
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::write(job.join("data.dat"), "a\nb\nc\n").unwrap();
    std::fs::write(
        job.join("Map.py"),
        "import ipdc, os\n\
         def map(line):\n    \
             ipdc.counter('lines')\n    \
             if line == 'c' and not os.path.exists(os.environ['MARK']):\n        \
                 open(os.environ['MARK'], 'w').close()\n        \
                 raise RuntimeError('first attempt fails')\n    \
             yield line, 1\n",
    )
    .unwrap();
    std::fs::write(
        job.join("Reduce.py"),
        "import ipdc\ndef reduce(k, vs):\n    ipdc.counter('keys')\n    yield k, sum(vs)\n",
    )
    .unwrap();
    let mark = job.join("mark");
    let o = std::process::Command::new(bin("ipdc-submit"))
        .args(["run", "--local", "1", job.to_str().unwrap()])
        .env("MARK", &mark)
        .env("IPDC_LANDLOCK", "off") // the first attempt leaves a mark outside its folder
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(mark.exists(), "the first attempt ran and failed");
    let s = summary(&job.join("output"));
    assert_eq!(s["user_counters"], serde_json::json!({"lines": 3, "keys": 3}), "{s:#}");
}

#[test]
fn gzip_inputs_are_read_decompressed_and_a_corrupt_one_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::create_dir(job.join("in")).unwrap();
    // Big enough that a plain file of its size would get several splits.
    let script = "import gzip, random, sys\n\
                  r = random.Random(3)\n\
                  words = ['w%d' % i for i in range(500)]\n\
                  lines = [' '.join(r.choice(words) for _ in range(12)) for _ in range(300000)]\n\
                  with gzip.open(sys.argv[1] + '/in/big.txt.gz', 'wt') as f:\n    f.write('\\n'.join(lines) + '\\n')\n\
                  open(sys.argv[1] + '/in/plain.txt', 'w').write('w1 w2\\nw2\\n')\n";
    let o = std::process::Command::new("python3").args(["-c", script]).arg(job).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(job.join("Map.py"), "def map(line):\n    for w in line.split():\n        yield w, 1\n")
        .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    std::fs::write(job.join("ipdc.toml"), "input = \"in\"\nreducers = 2\n").unwrap();
    let o = submit(&["run", "--local", "2", job.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("2 map task(s)"), "one split per file: {}", text(&o));
    let reference = "import collections, gzip, sys\n\
                     c = collections.Counter()\n\
                     for line in gzip.open(sys.argv[1] + '/in/big.txt.gz', 'rt'):\n    c.update(line.split())\n\
                     for line in open(sys.argv[1] + '/in/plain.txt'):\n    c.update(line.split())\n\
                     for w in sorted(c):\n    print('%s\\t%d' % (w, c[w]))\n";
    let o = std::process::Command::new("python3").args(["-c", reference]).arg(job).output().unwrap();
    let mut want: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect();
    let mut got = output_lines(&job.join("output"));
    got.sort();
    want.sort();
    assert_eq!(got.len(), 500);
    assert_eq!(got, want);

    // A corrupt one (cut short) fails the job, naming the file.
    let gz = std::fs::read(job.join("in/big.txt.gz")).unwrap();
    std::fs::write(job.join("in/big.txt.gz"), &gz[..gz.len() / 2]).unwrap();
    let o =
        submit(&["run", "--local", "1", job.to_str().unwrap(), "--out", job.join("out2").to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("in/big.txt.gz is not a valid gzip file"), "{t}");
    assert!(!job.join("out2").exists());
}

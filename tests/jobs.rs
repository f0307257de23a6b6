//! The jobs people write, end to end: every example under `examples/`
//! (many input files, side files, parameters, counters, map-only, whole-split
//! maps, task logs) run with `--local` and on a hub with separate agent
//! processes, each output compared with the example's plain-Python
//! `reference.py`; and the bad inputs of such jobs, each refused with a
//! message naming what to fix before anything runs.

use std::path::{Path, PathBuf};

use ipdc_tests::*;

/// The examples that carry a `reference.py`.
const EXAMPLES: &[&str] =
    &["inverted-index", "log-rollup", "join", "grep", "wordcount-split", "file-stats", "top-n"];

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
const FILES_MAP: (&str, &str) = ("Map.py", "def map(name, data):\n    yield name, len(data)\n");

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
        (
            &[MAP, REDUCE, DATA, ("ipdc.toml", "input_format = \"csv\"\n")],
            &[],
            &["input_format = \"csv\"", "\"files\""],
        ),
        (
            &[MAP, REDUCE, DATA, ("ipdc.toml", "input_format = \"files\"\n")],
            &[],
            &["Map.py defines map(line), but input_format = \"files\" calls map(name, data)"],
        ),
        (
            &[
                ("Map.py", "def map_split(lines):\n    yield 'a', 1\n"),
                REDUCE,
                DATA,
                ("ipdc.toml", "input_format = \"files\"\n"),
            ],
            &[],
            &["Map.py defines map_split(), but input_format = \"files\""],
        ),
        (
            &[("Map.py", "def map(name, data):\n    yield name, 1\n"), REDUCE, DATA],
            &[],
            &["Map.py defines map(name, data), which takes a whole file", "set input_format = \"files\""],
        ),
        (
            &[FILES_MAP, REDUCE, DATA, ("ipdc.toml", "input_format = \"files\"\n")],
            &["--native", "wordcount"],
            &["drop --native"],
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
        .env("XDG_CACHE_HOME", test_cache())
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

#[test]
fn zstd_inputs_are_read_decompressed_by_either_executor_and_a_corrupt_one_is_named() {
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::create_dir(job.join("in")).unwrap();
    let script = "import random, sys\n\
                  r = random.Random(5)\n\
                  words = ['w%d' % i for i in range(400)] + ['caf\\u00e9', 'x\\ty']\n\
                  for name, n in (('a', 200000), ('b', 7)):\n\
                  \x20   lines = [' '.join(r.choice(words) for _ in range(10)) for _ in range(n)]\n\
                  \x20   open(sys.argv[1] + '/' + name, 'w').write('\\n'.join(lines) + '\\n')\n";
    let o = std::process::Command::new("python3").args(["-c", script]).arg(job).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let reference = "import collections, sys\n\
                     c = collections.Counter()\n\
                     for name in ('a', 'b'):\n    c.update(open(sys.argv[1] + '/' + name).read().split())\n\
                     for w in sorted(c):\n    print('%s\\t%d' % (w, c[w]))\n";
    let o = std::process::Command::new("python3").args(["-c", reference]).arg(job).output().unwrap();
    let mut want: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect();
    want.sort();
    // Two frames in one file, as `cat a.zst b.zst` (or pzstd) makes.
    let mut zst = compress_to_vec(&std::fs::read(job.join("a")).unwrap()[..], CompressionLevel::Fastest);
    zst.extend(compress_to_vec(&std::fs::read(job.join("b")).unwrap()[..], CompressionLevel::Fastest));
    std::fs::write(job.join("in/words.txt.zst"), &zst).unwrap();
    std::fs::write(job.join("Map.py"), "def map(line):\n    for w in line.split():\n        yield w, 1\n")
        .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    std::fs::write(job.join("ipdc.toml"), "input = \"in\"\nreducers = 2\nnative = \"wordcount\"\n").unwrap();
    for (out, native) in [("out-py", false), ("out-native", true)] {
        let mut args = vec!["run", "--local", "2", job.to_str().unwrap(), "--out"];
        let path = job.join(out);
        args.push(path.to_str().unwrap());
        if native {
            args.extend(["--native", "wordcount"]);
        }
        let o = submit(&args);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("1 map task(s)"), "one split for the file: {}", text(&o));
        let mut got = output_lines(&path);
        got.sort();
        assert_eq!(got.len(), 403, "400 words, café, x and y");
        assert_eq!(got, want, "native: {native}");
    }

    // A corrupt one (cut short) fails the job, naming the file.
    std::fs::write(job.join("in/words.txt.zst"), &zst[..zst.len() / 3]).unwrap();
    let o =
        submit(&["run", "--local", "1", job.to_str().unwrap(), "--out", job.join("out2").to_str().unwrap()]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("input in/words.txt.zst is not a valid zstd file ("), "{t}");
    assert!(!job.join("out2").exists());
}

/// The order Python users expect, as a plain-Python sort key: by type
/// (None < bool < numbers < str < list < dict), then by value.
const PY_KEY_ORDER: &str = "def rank(v):\n\
    \x20   if v is None: return (0,)\n\
    \x20   if isinstance(v, bool): return (1, v)\n\
    \x20   if isinstance(v, (int, float)): return (2, v, isinstance(v, int))\n\
    \x20   if isinstance(v, str): return (3, v)\n\
    \x20   if isinstance(v, list): return (4, [rank(x) for x in v])\n\
    \x20   return (5, sorted((k, rank(x)) for k, x in v.items()))\n";

#[test]
fn keys_sort_as_python_sorts_them_and_equal_keys_meet() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    // One JSON value per line; a two-item list is mapped as a tuple, a
    // dict's items are shuffled: both must still meet their equals.
    let generator = "import json, random, sys\n\
               r = random.Random(7)\n\
               pool = [None, True, False, 0, 1, -1, 2, 10, 100, -10, -20, -30, 0.25, 1.0, 2.0, -0.5, 1e300,\n\
               \x20       2**53 + 1, 2**64, -2**64, 10**30, -10**30, 10**400, 'a', 'b', '', '10', '9', 'é', 'a\\u0000',\n\
               \x20       [], [1], [1, 2], [1, 'a'], [2], ['a', [None]], [[1], 2], {'a': 1, 'b': [2]}, {'a': 0}, {}]\n\
               with open(sys.argv[1] + '/data.jsonl', 'w') as f:\n\
               \x20   for _ in range(20000):\n\
               \x20       v = r.choice(pool)\n\
               \x20       if isinstance(v, dict):\n\
               \x20           items = list(v.items()); r.shuffle(items); v = dict(items)\n\
               \x20       f.write(json.dumps(v) + '\\n')\n";
    let o = std::process::Command::new("python3").args(["-c", generator]).arg(job).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(
        job.join("Map.py"),
        "import json\n\ndef map(line):\n    v = json.loads(line)\n    \
         yield (tuple(v) if isinstance(v, list) and len(v) == 2 else v), 1\n",
    )
    .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    // The reference: Python's own grouping and this order, each part's
    // lines as the job writes them (a str as its text, else compact JSON).
    let reference = format!(
        "import collections, json, sys\n{PY_KEY_ORDER}\
         c = collections.Counter()\n\
         for line in open(sys.argv[1] + '/data.jsonl'):\n    c[json.dumps(json.loads(line), sort_keys=True)] += 1\n\
         keys = sorted((json.loads(k) for k in c), key=rank)\n\
         for k in keys:\n    n = c[json.dumps(k, sort_keys=True)]\n    \
         t = k if isinstance(k, str) else json.dumps(k, separators=(',', ':'), ensure_ascii=False)\n    \
         print('%s\\t%d' % (t, n))\n"
    );
    let o = std::process::Command::new("python3").args(["-c", &reference]).arg(job).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let want: Vec<String> = String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect();
    assert!(want.len() > 35, "{want:?}");
    let in_order = |got: &[String]| {
        // Each part's lines are a subsequence of the reference, in its order.
        let mut at = want.iter();
        got.iter().all(|line| at.any(|w| w == line))
    };
    let hub = Hub::start();
    let _a = hub.agent("pi-1", &[]);
    let _b = hub.agent("pi-2", &[]);
    for (reducers, combiner) in [("1", "false"), ("3", "true")] {
        std::fs::write(
            job.join("ipdc.toml"),
            format!("input = \"data.jsonl\"\nreducers = {reducers}\ncombiner = {combiner}\n"),
        )
        .unwrap();
        for how in ["--local 2", "a hub"] {
            let o = match how {
                "a hub" => hub.submit(&[job.to_str().unwrap(), "--workers", "2"]),
                _ => submit(&["run", "--local", "2", job.to_str().unwrap()]),
            };
            let what = format!("reducers {reducers}, combiner {combiner}, {how}");
            assert!(o.status.success(), "{what}: {}", text(&o));
            let out = job.join("output");
            let mut all = Vec::new();
            for p in 0..reducers.parse::<u32>().unwrap() {
                let part = std::fs::read_to_string(out.join(format!("part-{p:05}"))).unwrap();
                let lines: Vec<String> = part.lines().map(String::from).collect();
                assert!(in_order(&lines), "{what}: part {p} is not in key order:\n{part}");
                all.extend(lines);
            }
            all.sort();
            let mut sorted_want = want.clone();
            sorted_want.sort();
            assert_eq!(all, sorted_want, "{what}");
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}

#[test]
fn per_file_jobs_hand_map_each_whole_file_spread_over_the_slots() {
    // Map-only: one line per file, in name order, from several tasks.
    let hub = Hub::start();
    let _a = hub.agent("pi-1", &[]);
    let _b = hub.agent("pi-2", &[]);
    let (_tmp, job) = copy_example("file-stats");
    for how in ["--local 2", "a hub"] {
        let o = match how {
            "a hub" => {
                hub.submit(&[job.to_str().unwrap(), "--workers", "2", "--reducers", "0", "--overwrite"])
            }
            _ => submit(&["run", "--local", "2", job.to_str().unwrap(), "--reducers", "0", "--overwrite"]),
        };
        assert!(o.status.success(), "{how}: {}", text(&o));
        check(&job, &job.join("output"), &["--reducers", "0"], &format!("file-stats map-only, {how}"));
        let s = summary(&job.join("output"));
        assert!(s["map_tasks"].as_u64().unwrap() >= 2, "{how}: 20 small files in one task: {s}");
    }

    // A file larger than half the task memory is named before anything runs.
    let big = "x".repeat(40 << 20);
    let t = refused(
        &[
            FILES_MAP,
            REDUCE,
            ("in/small.bin", "a"),
            ("in/big.bin", &big),
            ("ipdc.toml", "input = \"in\"\ninput_format = \"files\"\n"),
        ],
        &["--task-memory-mb", "64"],
    );
    assert!(t.contains("input file") && t.contains("big.bin") && t.contains("raise task_memory_mb"), "{t}");

    // A file's bytes reach map() unchanged, whatever they hold.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(d.join("in/all-bytes.bin"), &bytes).unwrap();
    std::fs::write(d.join("in/crlf.txt"), b"a\r\nb\r\n\xff").unwrap();
    std::fs::write(
        d.join("Map.py"),
        "import hashlib, ipdc\ndef map(name, data):\n    assert ipdc.input_file() == name\n    \
         yield name, hashlib.sha256(data).hexdigest()\n",
    )
    .unwrap();
    std::fs::write(d.join("Reduce.py"), "def reduce(k, vs):\n    yield k, list(vs)\n").unwrap();
    std::fs::write(d.join("ipdc.toml"), "input = \"in\"\ninput_format = \"files\"\n").unwrap();
    let o = submit(&["run", "--local", "2", d.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let sha = |b: &[u8]| {
        let o = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        o.stdin.as_ref().unwrap().write_all(b).unwrap();
        String::from_utf8(o.wait_with_output().unwrap().stdout).unwrap()[..64].to_string()
    };
    let want =
        format!("in/all-bytes.bin\t[\"{}\"]\nin/crlf.txt\t[\"{}\"]\n", sha(&bytes), sha(b"a\r\nb\r\n\xff"));
    assert_eq!(std::fs::read_to_string(d.join("output/part-00000")).unwrap(), want);
}

#[test]
fn python_modules_pick_only_agents_that_import_them_and_name_the_others() {
    // One agent's Python is a virtual environment holding a module the
    // system's Python lacks.
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    let o = std::process::Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let python = venv.join("bin/python3");
    let o = std::process::Command::new(&python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        .output()
        .unwrap();
    let site = PathBuf::from(String::from_utf8(o.stdout).unwrap().trim());
    std::fs::write(site.join("ipdc_test_extra.py"), "ANSWER = 42\n").unwrap();
    let hub = Hub::start();
    let _with = hub.agent("pi-with", &["--python", python.to_str().unwrap()]);
    let _without = hub.agent("pi-without", &[]);

    let job = tmp.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(job.join("data.dat"), "a b a\n").unwrap();
    std::fs::write(
        job.join("Map.py"),
        "import ipdc_test_extra\ndef map(line):\n    for w in line.split():\n        yield w, ipdc_test_extra.ANSWER\n",
    )
    .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    let toml = |modules: &str| {
        std::fs::write(job.join("ipdc.toml"), format!("python_modules = {modules}\n")).unwrap()
    };

    toml(r#"["ipdc_test_extra", "json"]"#);
    let o = hub.submit(&[job.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("picked 1 agent(s)") && t.contains("  pi-with ("), "{t}");
    assert!(
        t.contains("pi-without (its Python (3.") && t.contains("cannot import ipdc_test_extra: install it"),
        "{t}"
    );
    assert_eq!(std::fs::read_to_string(job.join("output/part-00000")).unwrap(), "a\t84\nb\t42\n");
    std::fs::remove_dir_all(job.join("output")).unwrap();

    // A module no agent imports: the job does not start, and says why of each.
    toml(r#"["ipdc_no_such_module_7"]"#);
    let o = hub.submit(&[job.to_str().unwrap(), "--wait", "3"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    for agent in ["pi-with", "pi-without"] {
        assert!(t.contains(&format!("{agent}: its Python (3.")), "{t}");
    }
    assert!(t.contains("cannot import ipdc_no_such_module_7"), "{t}");
    assert!(!job.join("output").exists());

    // A name that is not a module's is refused before anything is asked.
    toml(r#"["numpy; import os"]"#);
    let o = hub.submit(&[job.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains("\"numpy; import os\" is not a Python module name"),
        "{}",
        text(&o)
    );
}

#[test]
fn side_files_are_fetched_once_per_agent_and_each_task_gets_its_own_copy() {
    let hub = Hub::start();
    let agent = hub.agent("pi-1", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::create_dir_all(job.join("in")).unwrap();
    for i in 0..3 {
        std::fs::write(job.join(format!("in/{i}.txt")), "one line\n").unwrap();
    }
    std::fs::write(job.join("table.txt"), "original\n").unwrap();
    // Each task changes its copy: no other task, of this job or the next, may see it.
    std::fs::write(
        job.join("Map.py"),
        "def map(line):\n    seen = open('table.txt').read()\n    \
         open('table.txt', 'a').write('changed\\n')\n    yield seen.strip(), 1\n",
    )
    .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    std::fs::write(job.join("ipdc.toml"), "input = \"in\"\nfiles = [\"table.txt\"]\n").unwrap();
    for _ in 0..2 {
        // --no-cache: the second job runs its tasks too (they would be cached).
        let o = hub.submit(&[job.to_str().unwrap(), "--overwrite", "--no-cache"]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(std::fs::read_to_string(job.join("output/part-00000")).unwrap(), "original\t3\n");
    }
    // Two jobs of 3 maps and a reduce each: one fetch, seven copies from the cache.
    let log = agent.output();
    let fetched = log.matches("side file table.txt (").count();
    assert_eq!(log.matches(") fetched").count(), 1, "{log}");
    assert_eq!(log.matches(") from the cache").count(), 7, "{log}");
    assert_eq!(fetched, 8, "{log}");
}

#[test]
fn an_unchanged_side_file_is_not_sent_again_and_a_changed_one_is() {
    let hub = Hub::start();
    let _agent = hub.agent("pi-1", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(job.join("data.dat"), "x\n").unwrap();
    std::fs::write(job.join("model.txt"), "v1\n").unwrap();
    std::fs::write(job.join("Map.py"), "def map(line):\n    yield open('model.txt').read().strip(), 1\n")
        .unwrap();
    std::fs::write(job.join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
    std::fs::write(job.join("ipdc.toml"), "files = [\"model.txt\"]\n").unwrap();
    let cache = tmp.path().join("cache");
    let run = || {
        let o = std::process::Command::new(bin("ipdc-submit"))
            .args(["run", "--broker", &hub.mqtt, "--ipfs", &hub.ipfs, job.to_str().unwrap(), "--overwrite"])
            .env("XDG_CACHE_HOME", &cache)
            .env("RUST_LOG", "warn,rumqttd=off")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        (text(&o), std::fs::read_to_string(job.join("output/part-00000")).unwrap())
    };
    let (first, out) = run();
    assert!(!first.contains("not sent again"), "{first}");
    assert_eq!(out, "v1\t1\n");
    let (second, out) = run();
    assert!(second.contains("1 side file(s) unchanged since an earlier job: not sent again"), "{second}");
    assert_eq!(out, "v1\t1\n");
    // Changed (same size, later time): sent again, and the job sees the new bytes.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(job.join("model.txt"), "v2\n").unwrap();
    let (third, out) = run();
    assert!(!third.contains("not sent again"), "{third}");
    assert_eq!(out, "v2\t1\n");
}

#[test]
fn kmeans_through_its_json_driver_converges_to_the_reference_centroids() {
    let (_tmp, job) = copy_example("kmeans");
    let o = std::process::Command::new("python3")
        .arg(job.join("driver.py"))
        .args(["--ipdc", bin("ipdc-submit").to_str().unwrap(), "--", "--local", "2"])
        .env("XDG_CACHE_HOME", test_cache())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let got = String::from_utf8(o.stdout).unwrap();
    let want =
        std::process::Command::new("python3").arg(job.join("reference.py")).arg(&job).output().unwrap();
    assert_eq!(got, String::from_utf8(want.stdout).unwrap());
    let steps: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert!(steps["steps"].as_u64().unwrap() >= 3, "{got}");

    // What the driver reads: with --json, stdout is JSON lines only
    // (`started`, then `done` with the summary, or `failed`); the text goes to stderr.
    let out = job.join("one-step");
    let o = submit(&["run", "--local", "2", job.to_str().unwrap(), "--json", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let events: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.first().unwrap()["event"], "started");
    assert_eq!(events.first().unwrap()["map_tasks"], 3, "one map task per file");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["summary"], summary(&out));
    assert_eq!(done["output_cid"], summary(&out)["output_cid"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("output CID: "), "{}", text(&o));
    let o = submit(&[
        "run",
        "--local",
        "1",
        job.to_str().unwrap(),
        "--json",
        "--param",
        "centroids=oops",
        "--out",
        job.join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let stdout = String::from_utf8(o.stdout).unwrap();
    let failed: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(failed["event"], "failed");
    assert!(failed["error"].as_str().unwrap().contains("job kmeans-"), "{failed}");
}

#[test]
fn a_later_step_gets_the_very_pairs_the_step_before_wrote_and_a_failure_names_its_step() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path();
    std::fs::write(job.join("data.dat"), "x\n").unwrap();
    // Keys and values a text line would blur: "5" and 5, a tab and a newline
    // in a string, a list, None, a byte that is not UTF-8.
    std::fs::write(
        job.join("first.py"),
        "def map(line):\n    yield '5', '5'\n    yield 5, 5\n    yield 'tab\\there', ['a\\nb', None, 1.5]\n    yield 'caf\\udce9', {'k': True}\n",
    )
    .unwrap();
    std::fs::write(job.join("ident.py"), "def reduce(k, vs):\n    for v in vs:\n        yield k, v\n")
        .unwrap();
    std::fs::write(job.join("second.py"), "def map(key, value):\n    yield ascii(key), ascii(value)\n")
        .unwrap();
    std::fs::write(
        job.join("ipdc.toml"),
        "[[step]]\nmap = \"first.py\"\nreduce = \"ident.py\"\nreducers = 2\n\n\
         [[step]]\nmap = \"second.py\"\nreduce = \"ident.py\"\n",
    )
    .unwrap();
    let o = submit(&["run", "--local", "2", job.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let mut got = output_lines(&job.join("output"));
    got.sort();
    let mut want = vec![
        "'5'\t'5'".to_string(),
        "5\t5".to_string(),
        "'tab\\there'\t['a\\nb', None, 1.5]".to_string(),
        "'caf\\udce9'\t{'k': True}".to_string(),
    ];
    want.sort();
    assert_eq!(got, want);
    let s = summary(&job.join("output"));
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "the first step's summary, before the last's: {s:#}");
    assert_eq!(steps[0]["parts"].as_array().unwrap().len(), 2);
    assert!(!job.join("output/part-00001").exists(), "only the last step's part is fetched");

    // A later step whose mapper takes lines is refused before anything runs, naming it.
    std::fs::write(job.join("second.py"), "def map(line):\n    yield line, 1\n").unwrap();
    let o =
        submit(&["run", "--local", "1", job.to_str().unwrap(), "--out", job.join("o2").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("step 2 of 2: second.py is the mapper of a later step"), "{}", text(&o));
    // A step before the last that writes nothing stops the job, saying so.
    std::fs::write(job.join("second.py"), "def map(key, value):\n    yield key, value\n").unwrap();
    std::fs::write(job.join("first.py"), "def map(line):\n    return\n    yield\n").unwrap();
    let o =
        submit(&["run", "--local", "1", job.to_str().unwrap(), "--out", job.join("o4").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("step 1 of 2 wrote no records, so step 2 has nothing to map"), "{}", text(&o));
    std::fs::write(job.join("first.py"), "def map(line):\n    yield line, 1\n").unwrap();
    // A step that fails at run time is named.
    std::fs::write(job.join("second.py"), "def map(key, value):\n    raise ValueError('no')\n").unwrap();
    let o =
        submit(&["run", "--local", "1", job.to_str().unwrap(), "--out", job.join("o3").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("step 2 of 2: job "), "{}", text(&o));
    assert!(text(&o).contains("ValueError: no"), "{}", text(&o));
    assert!(!job.join("o3").exists());
}

#[test]
fn pagerank_through_its_driver_chains_output_cids_and_matches_a_power_iteration() {
    let (tmp, job) = copy_example("pagerank");
    // Its own cache: each step reads the last one's output CID from the
    // kept --local store, which a concurrent test must not be holding.
    let cache = tmp.path().join("cache");
    let o = std::process::Command::new("python3")
        .arg(job.join("driver.py"))
        .args(["--ipdc", bin("ipdc-submit").to_str().unwrap(), "--", "--local", "2"])
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want =
        std::process::Command::new("python3").arg(job.join("reference.py")).arg(&job).output().unwrap();
    let want: serde_json::Value = serde_json::from_slice(&want.stdout).unwrap();
    assert_eq!(got["steps"], want["steps"]);
    assert!(want["steps"].as_u64().unwrap() > 5, "{want}");
    let (got, want) = (got["ranks"].as_object().unwrap(), want["ranks"].as_object().unwrap());
    assert_eq!(got.len(), 300);
    for (page, w) in want {
        let (g, w) = (got[page].as_f64().unwrap(), w.as_f64().unwrap());
        // The same sums in another order: equal up to rounding.
        assert!((g - w).abs() < 1e-12, "{page}: {g} vs {w}");
    }
    let total: f64 = got.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "ranks sum to {total}");
}

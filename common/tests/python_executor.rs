//! The Python executor against a real `python3`: interpreter detection,
//! map and reduce round trips (checked against the native WordCount), how
//! user errors are reported, and runners that stop early or outrun their
//! sink. Limits and subprocess cleanup are in `python_sandbox.rs`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ipdc_common::python::{ExecError, RUNNER_FILE_NAME, detect_version};
use support::*;

const WC_REDUCE_COMBINE: &str = "def reduce(key, values):\n    yield key, sum(values)\n\n\
    def combine(key, values):\n    yield key, sum(values)\n";

#[test]
fn detects_the_python_version() {
    let v = detect_version(Path::new("python3")).expect("python3 >= 3.7");
    assert!(v.starts_with("3."), "{v}");
    assert_eq!(detect_version(Path::new("/nonexistent/python3")), None);
}

#[test]
fn wordcount_map_matches_native_with_and_without_combine() {
    let j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE), ("Combine.py", WC_REDUCE_COMBINE)]);
    let text = tricky_text();
    let mut native = Vec::new();
    let nstats = ipdc_common::wordcount::map(&text[..], &mut native, 1 << 30).unwrap();
    let want = counts(&native);

    let mut plain = Vec::new();
    let stats = j.exec.run_map(&j.path("Map.py"), None, &text[..], &mut plain).unwrap();
    assert_eq!(counts(&plain), want);
    assert_eq!(stats.input_records, nstats.input_records);
    assert_eq!(stats.map_output_records, nstats.map_output_records);
    assert_eq!(stats.combine_output_records, 0);
    assert_eq!(stats.output_records, plain.len() as u64);
    assert_eq!(plain.len() as u64, nstats.map_output_records);

    for reduce in ["Reduce.py", "Combine.py"] {
        let mut combined = Vec::new();
        let stats =
            j.exec.run_map(&j.path("Map.py"), Some(&j.path(reduce)), &text[..], &mut combined).unwrap();
        assert_eq!(counts(&combined), want, "{reduce}");
        assert_eq!(combined.len(), want.len());
        assert_eq!(stats.input_records, nstats.input_records);
        assert_eq!(stats.map_output_records, nstats.map_output_records);
        assert_eq!(stats.combine_output_records, want.len() as u64);
        assert_eq!(stats.output_records, want.len() as u64);
    }
}

#[test]
fn reduce_round_trip_matches_native_reduce() {
    let j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE)]);
    let text = tricky_text();
    let mut mapped = Vec::new();
    for _ in 0..3 {
        j.exec.run_map(&j.path("Map.py"), Some(&j.path("Reduce.py")), &text[..], &mut mapped).unwrap();
    }
    mapped.sort();
    let n = mapped.len() as u64;
    let mut py = Vec::new();
    let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(mapped.clone(), 0), &mut py).unwrap();
    let mut native = Vec::new();
    let nstats = ipdc_common::wordcount::reduce(&mut Sorted(mapped, 0), &mut native).unwrap();
    assert_eq!(py, native);
    assert_eq!(stats, nstats);
    assert_eq!(stats.input_records, n);
}

#[test]
fn json_keys_and_values_survive_the_round_trip() {
    let map = r#"
def map(line):
    n, word = line.split()
    yield int(n), (word, {"w": word, "f": 1.5, "b": True, "z": None})
    yield [int(n), word], [1, 2]
    yield None, 1
    yield word, 2.5
"#;
    let reduce = r#"
def reduce(key, values):
    values = list(values)
    yield key, [type(key).__name__, len(values), values[0]]
"#;
    let j = job(&[("Map.py", map), ("Reduce.py", reduce)]);
    let mut mapped = Vec::new();
    j.exec.run_map(&j.path("Map.py"), None, &b"1 a\n2 caf\xc3\xa9\n1 \xff\n"[..], &mut mapped).unwrap();
    // A map's keys are in their sortable form (a number as 8 ordered bytes
    // and its kind, a list's items nested), its values JSON text.
    let one = b"d\xbf\xf0\0\0\0\0\0\0\x03";
    assert_eq!(mapped[0], (one.to_vec(), br#"j["a",{"w":"a","f":1.5,"b":true,"z":null}]"#.to_vec()));
    assert_eq!(mapped[1], ([&b"u"[..], one, b"sa\0\0"].concat(), b"j[1,2]".to_vec()));
    assert_eq!(mapped[2], (b"a".to_vec(), b"j1".to_vec()));
    assert_eq!(mapped[3], (b"sa".to_vec(), b"j2.5".to_vec()));
    assert_eq!(mapped[4].0, b"d\xc0\0\0\0\0\0\0\0\x03".to_vec());
    assert_eq!(mapped[4].1, "j[\"café\",{\"w\":\"café\",\"f\":1.5,\"b\":true,\"z\":null}]".as_bytes());
    // Undecodable bytes inside JSON text stay raw bytes.
    assert_eq!(mapped[8].1, b"j[\"\xff\",{\"w\":\"\xff\",\"f\":1.5,\"b\":true,\"z\":null}]".to_vec());
    mapped.sort();
    let mut out = Vec::new();
    let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(mapped, 0), &mut out).unwrap();
    assert_eq!(stats.input_records, 12);
    assert_eq!(stats.reduce_input_groups, 9);
    let got: BTreeMap<Vec<u8>, Vec<u8>> = out.into_iter().collect();
    assert_eq!(got[&b"j1".to_vec()], br#"j["int",2,["a",{"w":"a","f":1.5,"b":true,"z":null}]]"#.to_vec());
    assert_eq!(got[&br#"j[1,"a"]"#.to_vec()], br#"j["list",1,[1,2]]"#.to_vec());
    assert_eq!(got[&b"jnull".to_vec()], br#"j["NoneType",3,1]"#.to_vec());
    assert_eq!(got[&b"s\xff".to_vec()], br#"j["str",1,2.5]"#.to_vec());
}

#[test]
fn combine_sees_values_as_the_reducer_would() {
    let map = "def map(line):\n    yield (1, 'x'), (line, 2)\n";
    let reduce = "def reduce(key, values):\n    yield key, [[type(key).__name__] + [type(v).__name__ for v in values]]\n";
    let j = job(&[("Map.py", map), ("Reduce.py", reduce)]);
    let mut out = Vec::new();
    j.exec.run_map(&j.path("Map.py"), Some(&j.path("Reduce.py")), &b"a\nb\n"[..], &mut out).unwrap();
    // The combiner's output key keeps the map's sortable form.
    let key = b"ud\xbf\xf0\0\0\0\0\0\0\x03sx\0\0";
    assert_eq!(out, vec![(key.to_vec(), br#"j[["list","list","list"]]"#.to_vec())]);
}

#[test]
fn reduce_groups_span_input_blocks() {
    // Groups of 1 to 3 records, and one of 5,000 that spans whole blocks
    // of the reduce input (REDUCE_BLOCK_RECORDS records each).
    let mut recs = Vec::new();
    let mut want = Vec::new();
    for i in 0..3000u32 {
        let n = if i == 1500 { 5000 } else { 1 + i % 3 };
        let (mut total, mut text) = (0f64, String::new());
        for j in 0..n {
            let v: Vec<u8> = match (i + j) % 3 {
                0 => b"j1".to_vec(),
                1 => b"j2.5".to_vec(),
                _ => b"sx".to_vec(),
            };
            match v[1] {
                b'1' => total += 1.0,
                b'2' => total += 2.5,
                _ => text.push('x'),
            }
            recs.push((format!("sk{i:05}").into_bytes(), v));
        }
        let first = recs[recs.len() - n as usize].1.clone();
        want.push((i, n, total, text.len(), first));
    }
    let reduce = "def reduce(key, values):\n    vs = list(values)\n    yield key, [len(vs), float(sum(v for v in vs if not isinstance(v, str))), len(''.join(v for v in vs if isinstance(v, str)))]\n";
    let first = "def reduce(key, values):\n    yield key, next(values)\n";
    let j = job(&[("Reduce.py", reduce), ("First.py", first)]);
    let mut out = Vec::new();
    let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs.clone(), 0), &mut out).unwrap();
    assert_eq!(
        (stats.input_records, stats.reduce_input_groups, stats.output_records),
        (recs.len() as u64, 3000, 3000)
    );
    for ((k, v), (i, n, total, strs, _)) in out.iter().zip(&want) {
        assert_eq!(k, format!("sk{i:05}").as_bytes());
        let got = String::from_utf8(v.clone()).unwrap();
        assert_eq!(got, format!("j[{n},{total:?},{strs}]"), "key {i}");
    }
    let mut out = Vec::new();
    j.exec.run_reduce(&j.path("First.py"), &mut Sorted(recs, 0), &mut out).unwrap();
    assert_eq!(out.len(), 3000);
    for ((_, v), (_, _, _, _, first)) in out.iter().zip(&want) {
        assert_eq!(v, first);
    }
}

#[test]
fn a_str_is_not_taken_for_a_pair() {
    // `yield word` for `yield word, 1`: "ab" would unpack as key "a",
    // value "b"; refused, in map() and in reduce() alike.
    let j = job(&[
        ("Map.py", "def map(line):\n    for w in line.split():\n        yield w\n"),
        ("Reduce.py", "def reduce(k, vs):\n    yield k\n"),
    ]);
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
    let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
    assert!(summary.contains("a str, not a (key, value) pair: yield key, value"), "{summary}");
    assert!(summary.contains("on line 1 of this split"), "{summary}");
    let recs = vec![(b"sab".to_vec(), b"j1".to_vec())];
    let e = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs, 0), &mut Vec::new()).unwrap_err();
    let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
    assert!(summary.contains("a str, not a (key, value) pair"), "{summary}");
}

#[test]
fn user_code_reading_stdin_gets_nothing_and_every_line_is_mapped() {
    // The split comes on the runner's stdin: a map() that reads stdin
    // must not eat lines (it did, and the job still "succeeded").
    let map = "import sys\ndef map(line):\n    assert sys.stdin.read() == ''\n    yield line, 1\n";
    let j = job(&[("Map.py", map)]);
    let input: Vec<u8> = (0..20_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let mut out = Vec::new();
    let stats = j.exec.run_map(&j.path("Map.py"), None, &input[..], &mut out).unwrap();
    assert_eq!((stats.input_records, out.len()), (20_000, 20_000));
    assert_eq!(out[19_999].0, b"sline 19999");
}

#[test]
fn a_set_or_dict_of_two_is_not_taken_for_a_pair_and_the_runner_is_not_in_the_traceback() {
    for shape in ["{w, 1}", "{'w': w, 'n': 1}"] {
        let map = format!("def map(line):\n    for w in line.split():\n        yield {shape}\n");
        let j = job(&[("Map.py", map.as_str())]);
        let e = j.exec.run_map(&j.path("Map.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
        let ExecError::User { summary, traceback } = &e else { panic!("{e:?}") };
        assert!(summary.contains("not a (key, value) pair"), "{summary}");
        assert!(!traceback.contains("ipdc_runner") && !traceback.contains("runner.py"), "{traceback}");
    }
}

#[test]
fn sys_exit_in_user_code_is_its_error_and_os_exit_is_named() {
    let j = job(&[
        ("Map.py", "import sys\ndef map(line):\n    sys.exit(0)\n    yield line, 1\n"),
        ("Quit.py", "import os\ndef map(line):\n    os._exit(0)\n"),
    ]);
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
    let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
    assert!(summary.contains("map() raised SystemExit: 0 on line 1 of this split"), "{summary}");
    let e = j.exec.run_map(&j.path("Quit.py"), None, &b"ab\n"[..], &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("os._exit()"), "{e}");
}

#[test]
fn a_key_over_the_size_limit_is_the_users_error() {
    let map = "def map(line):\n    yield 'k' * (17 << 20), 1\n";
    let j = job(&[("Map.py", map)]);
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
    let ExecError::User { summary, .. } = &e else { panic!("{e:?}") };
    assert!(
        summary.starts_with("a key or value of 17825793 bytes is larger than the limit of 16 MiB"),
        "{summary}"
    );
}

#[test]
fn reduce_groups_even_when_values_are_not_read() {
    let reduce = "def reduce(key, values):\n    yield 'k:' + key, 1\n";
    let j = job(&[("Reduce.py", reduce)]);
    let recs: Vec<_> =
        [b"sa", b"sa", b"sa", b"sb", b"sc", b"sc"].iter().map(|k| (k.to_vec(), b"j1".to_vec())).collect();
    let mut out = Vec::new();
    let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs, 0), &mut out).unwrap();
    let keys: Vec<_> = out.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![b"sk:a".to_vec(), b"sk:b".to_vec(), b"sk:c".to_vec()]);
    assert_eq!((stats.input_records, stats.reduce_input_groups, stats.output_records), (6, 3, 3));
}

#[test]
fn a_map_that_raises_names_the_line_and_the_user_code() {
    let map =
        "def map(line):\n    if line == 'boom':\n        raise ValueError('bad value')\n    yield line, 1\n";
    let j = job(&[("Map.py", map)]);
    let mut text = b"a\nb\r\n".to_vec();
    text.extend(b"x\n".repeat(14));
    text.extend(b"boom\r\nafter\n");
    let e = j.exec.run_map(&j.path("Map.py"), None, &text[..], &mut Vec::new()).unwrap_err();
    let shown = e.to_string();
    let (summary, traceback) = user_error(e);
    assert_eq!(summary, "map() raised ValueError: bad value on line 17 of this split: 'boom'");
    assert_eq!(shown, summary);
    assert!(traceback.contains("Map.py\", line 3, in map"), "{traceback}");
    assert!(traceback.contains("ValueError: bad value"), "{traceback}");
    assert!(!traceback.contains(RUNNER_FILE_NAME), "{traceback}");
}

#[test]
fn a_reduce_that_raises_names_the_key() {
    let reduce = "def reduce(key, values):\n    return {}[key]\n";
    let j = job(&[("Reduce.py", reduce)]);
    let recs = vec![(b"sthe".to_vec(), b"j1".to_vec())];
    let e = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(recs, 0), &mut Vec::new()).unwrap_err();
    let (summary, traceback) = user_error(e);
    assert_eq!(summary, "reduce() raised KeyError: 'the' for key 'the'");
    assert!(traceback.contains("File \"Reduce.py\", line 2, in reduce"), "{traceback}");
}

#[test]
fn load_errors_are_clear() {
    let j = job(&[
        ("Map.py", "def map(line):\n    yield line,, 1\n"),
        ("NoMap.py", "def mapper(line):\n    yield line, 1\n"),
        ("BadImport.py", "import os\nimport no_such_module_ipdc\n"),
        ("Reduce.py", WC_REDUCE),
    ]);
    let run =
        |m: &str| user_error(j.exec.run_map(&j.path(m), None, &b"a\n"[..], &mut Vec::new()).unwrap_err());
    let (summary, traceback) = run("Map.py");
    assert!(summary.starts_with("Map.py has a syntax error on line 2 of Map.py"), "{summary}");
    assert!(summary.contains("Fix Map.py"), "{summary}");
    assert!(traceback.contains("SyntaxError"), "{traceback}");
    // Named as the job names it, not by the agent's task folder.
    assert!(traceback.contains("File \"Map.py\", line 2"), "{traceback}");
    let (summary, _) = run("NoMap.py");
    assert!(summary.contains("NoMap.py defines no function map()"), "{summary}");
    assert!(summary.contains("def map(line):"), "{summary}");
    let (summary, _) = run("BadImport.py");
    assert!(summary.contains("BadImport.py failed while being imported (line 2)"), "{summary}");
    assert!(summary.contains("no_such_module_ipdc"), "{summary}");
    let e = j.exec.run_reduce(&j.path("Map.py"), &mut Sorted(Vec::new(), 0), &mut Vec::new()).unwrap_err();
    assert!(user_error(e).0.contains("syntax error"));
    let e = j.exec.run_reduce(&j.path("NoMap.py"), &mut Sorted(Vec::new(), 0), &mut Vec::new()).unwrap_err();
    assert!(user_error(e).0.contains("defines no function reduce()"));
}

#[test]
fn values_json_cannot_encode_are_clear_errors() {
    let j = job(&[
        ("SetKey.py", "def map(line):\n    yield {line}, 1\n"),
        ("NanValue.py", "def map(line):\n    yield line, float('nan')\n"),
        ("NotPair.py", "def map(line):\n    yield line\n"),
        ("Reduce.py", WC_REDUCE),
    ]);
    let run = |m: &str, c: Option<&Path>| {
        user_error(j.exec.run_map(&j.path(m), c, &b"first\nsecond\n"[..], &mut Vec::new()).unwrap_err()).0
    };
    for combine in [None, Some(j.path("Reduce.py"))] {
        let s = run("SetKey.py", combine.as_deref());
        assert!(s.contains("a key of type set"), "{s}");
        assert!(s.contains("on line 1 of this split: 'first'"), "{s}");
        let s = run("NanValue.py", combine.as_deref());
        assert!(s.contains("a value of type float"), "{s}");
        let s = run("NotPair.py", combine.as_deref());
        assert!(s.contains("must yield (key, value) pairs"), "{s}");
    }
}

#[test]
fn user_prints_do_not_corrupt_records() {
    let map = "import sys\ndef map(line):\n    print('hello from map', line)\n    sys.stdout.write('more')\n    yield line, 1\n";
    let j = job(&[("Map.py", map)]);
    let mut out = Vec::new();
    let stats = j.exec.run_map(&j.path("Map.py"), None, &b"a\nb\n"[..], &mut out).unwrap();
    assert_eq!(out, vec![(b"sa".to_vec(), b"j1".to_vec()), (b"sb".to_vec(), b"j1".to_vec())]);
    assert_eq!(stats.output_records, 2);
}

#[test]
fn a_runner_that_stops_early_does_not_hang() {
    let j = job(&[
        ("Raise.py", "def map(line):\n    raise RuntimeError('no')\n"),
        ("Exit0.py", "import os\nos._exit(0)\n"),
        ("Exit7.py", "import os\nos._exit(7)\n"),
    ]);
    let start = Instant::now();
    let e = j.exec.run_map(&j.path("Raise.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
    assert!(user_error(e).0.contains("on line 1 of this split"));
    let e = j.exec.run_map(&j.path("Exit0.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, ExecError::Runner { .. } | ExecError::Protocol(_)), "{e:?}");
    let e = j.exec.run_map(&j.path("Exit7.py"), None, Lots(1 << 30), &mut Vec::new()).unwrap_err();
    assert!(matches!(&e, ExecError::Runner { status, .. } if status.contains('7')), "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_failing_sink_stops_the_runner() {
    let j = job(&[("Map.py", WC_MAP)]);
    let e = j.exec.run_map(&j.path("Map.py"), None, Lots(1 << 30), &mut FailingSink(0)).unwrap_err();
    assert!(matches!(&e, ExecError::Io(io) if io.to_string() == "disk full"), "{e:?}");
}

#[test]
fn temporary_files_and_home_are_in_the_tasks_own_folder() {
    let map = r#"import os, tempfile
def map(line):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(b'x')
    yield 'tmp', f.name
    yield 'gettempdir', tempfile.gettempdir()
    yield 'home', os.path.expanduser('~')
    for k in ('TMPDIR', 'TEMP', 'TMP', 'HOME'):
        yield k, os.environ[k]
"#;
    let j = job(&[("Map.py", map)]);
    let mut out = Vec::new();
    j.exec.run_map(&j.path("Map.py"), None, &b"one line\n"[..], &mut out).unwrap();
    let scratch = std::path::absolute(j.exec.workdir.join("tmp")).unwrap();
    assert!(scratch.is_dir());
    let got: BTreeMap<String, String> = out
        .iter()
        .map(|(k, v)| {
            assert_eq!((k[0], v[0]), (b's', b's'), "str keys and values");
            let s = |b: &[u8]| String::from_utf8_lossy(&b[1..]).into_owned();
            (s(k), s(v))
        })
        .collect();
    assert_eq!(got.len(), 7, "{got:?}");
    for (k, v) in &got {
        assert!(Path::new(v).starts_with(&scratch), "{k} = {v}, not in {}", scratch.display());
    }
    assert!(Path::new(&got["tmp"]).is_file(), "the file is there until the task's folder goes");
}

#[test]
fn a_missing_interpreter_is_an_io_error() {
    let mut j = job(&[("Map.py", WC_MAP)]);
    j.exec.python = "/nonexistent/python3".into();
    let e = j.exec.run_map(&j.path("Map.py"), None, &b"a\n"[..], &mut Vec::new()).unwrap_err();
    assert!(matches!(e, ExecError::Io(_)), "{e:?}");
}

/// Python map+combine speed on the benchmark corpus:
/// `cargo test -p ipdc-common --test python_executor python_map_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn python_map_speed() {
    let path = "/tmp/ipdc_corpus_16M.txt";
    if !Path::new(path).exists() {
        let out = Command::new("python3")
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/corpus.py"), "16M", "--seed", "1"])
            .output()
            .unwrap();
        std::fs::write(path, out.stdout).unwrap();
    }
    let data = std::fs::read(path).unwrap();
    let j = job(&[("Map.py", WC_MAP), ("Reduce.py", WC_REDUCE)]);
    for combine in [Some(j.path("Reduce.py")), None] {
        let t = Instant::now();
        let mut out = Vec::new();
        let stats = j.exec.run_map(&j.path("Map.py"), combine.as_deref(), &data[..], &mut out).unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "python map (combine: {}): {} bytes, {} records out in {secs:.2}s = {:.1} MB/s",
            combine.is_some(),
            data.len(),
            stats.output_records,
            data.len() as f64 / secs / 1e6
        );
    }
}

/// A batch tried the fast way and redone the careful way (here: one float
/// value among int ones) runs map() twice on its lines; its counts must
/// count once. Likewise for combine() and reduce().
#[test]
fn counters_count_each_line_and_key_once_whichever_way_a_batch_ran() {
    let map = "import ipdc\n\
               def map(line):\n    \
                   ipdc.counter('lines')\n    \
                   for w in line.split():\n        \
                       yield w, (1.5 if w == 'odd' else 1)\n";
    let reduce = "import ipdc\n\
                  def combine(k, vs):\n    \
                      ipdc.counter('combined_keys')\n    \
                      yield k, sum(vs)\n\
                  def reduce(k, vs):\n    \
                      ipdc.counter('keys')\n    \
                      yield k, (sum(vs) if k != 'odd' else str(sum(vs)))\n";
    let j = job(&[("Map.py", map), ("Reduce.py", reduce)]);
    let mut text = String::new();
    for i in 0..20_000 {
        text += &format!("w{} x y\n", i % 3000);
        if i == 15_000 {
            text += "odd\n";
        }
    }
    let lines = 20_001i64;
    let mut out = Vec::new();
    let stats = j.exec.run_map(&j.path("Map.py"), None, text.as_bytes(), &mut out).unwrap();
    assert_eq!(stats.user_counters, BTreeMap::from([("lines".to_string(), lines)]));
    let mut combined = Vec::new();
    let stats = j
        .exec
        .run_map(&j.path("Map.py"), Some(&j.path("Reduce.py")), text.as_bytes(), &mut combined)
        .unwrap();
    let keys = combined.len() as i64;
    assert_eq!(
        stats.user_counters,
        BTreeMap::from([("lines".to_string(), lines), ("combined_keys".to_string(), keys)])
    );
    combined.sort();
    let mut reduced = Vec::new();
    let stats = j.exec.run_reduce(&j.path("Reduce.py"), &mut Sorted(combined, 0), &mut reduced).unwrap();
    assert_eq!(stats.user_counters, BTreeMap::from([("keys".to_string(), keys)]));
}

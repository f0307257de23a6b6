//! The runner's batched map path (grouping, counting and framing in C)
//! against a plain one-pair-at-a-time reference, in `runner_paths.py`.

use std::path::Path;
use std::process::Command;

#[test]
fn batched_map_path_matches_the_plain_loop() {
    let (python, _) =
        ipdc_common::python::detect(Path::new("python3")).expect("python3 is needed for this test");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg("-B")
        .arg(dir.join("tests/runner_paths.py"))
        .arg(dir.join("src/runner.py"))
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("runner paths agree: "), "{text}");
}

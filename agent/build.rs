//! Names the build for `ipdc-agent --version`: version, git commit, target, profile.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    // PROFILE is only "debug" or "release"; a custom profile (`dist`) shows in
    // OUT_DIR: <target-dir>/[<triple>/]<profile>/build/<pkg>-<hash>/out.
    let out_dir = std::env::var("OUT_DIR").unwrap_or_default();
    let profile = Path::new(&out_dir)
        .ancestors()
        .nth(3)
        .and_then(Path::file_name)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| std::env::var("PROFILE").unwrap_or_default());
    println!("cargo:rustc-env=IPDC_BUILD_INFO=commit {commit}, {target}, {profile}");
    // Re-run when the commit changes. Ask git where HEAD and the branch live: in a
    // worktree `.git` is a file. Only existing paths: cargo re-runs on a missing one.
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(git(&["rev-parse", "--git-path", &head_ref]));
    }
    watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watch.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

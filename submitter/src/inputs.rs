//! What `input` and `files` in ipdc.toml (and `--input`, `--file`) name,
//! expanded into the files they stand for: a file, a folder (recursively,
//! hidden files skipped), a glob in the last path component (`logs/*.log`,
//! `part-??.csv`), or a list of these. Every file is checked readable here,
//! before anything is uploaded.

use std::path::{Path, PathBuf};

/// One file of a job's input or side files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFile {
    pub path: PathBuf,
    /// Its name as the job's code sees it: the path under the job folder
    /// when the file is inside it, else under the folder that holds what
    /// was given (`/data/orders/a.csv` given as `/data/orders` is `orders/a.csv`).
    pub name: String,
    pub size: u64,
}

/// Folders nested deeper than this are not followed (a symlink loop).
const MAX_DEPTH: usize = 32;

/// The files `given` names (paths relative to the job folder already
/// joined to it), in the order given and each folder's files by name.
/// `what` names the setting in errors ("input", "side file").
pub fn expand(given: &[PathBuf], job_folder: &Path, what: &str) -> Result<Vec<NamedFile>, String> {
    let folder = std::fs::canonicalize(job_folder).unwrap_or_else(|_| job_folder.to_path_buf());
    let mut out: Vec<NamedFile> = Vec::new();
    let mut seen: std::collections::HashMap<PathBuf, String> = Default::default();
    for g in given {
        let text = g.to_string_lossy();
        let matches = if has_wildcard(&text) {
            let m = glob(g).map_err(|e| format!("{what} {}: {e}", g.display()))?;
            if m.is_empty() {
                return Err(format!(
                    "{what} {} matches no file: check the pattern (wildcards * and ? work in the last part of a path)",
                    g.display()
                ));
            }
            m
        } else {
            vec![g.clone()]
        };
        for m in matches {
            let meta = std::fs::metadata(&m).map_err(|e| {
                let (key, flag) = keys(what);
                format!("{what} {} cannot be read ({e}): check `{key}` in ipdc.toml or {flag}", m.display())
            })?;
            let before = out.len();
            if meta.is_dir() {
                walk(&m, 0, &mut out, what)?;
                if out.len() == before {
                    return Err(format!(
                        "{what} folder {} holds no files (hidden files are skipped): put the files there or name others",
                        m.display()
                    ));
                }
            } else {
                out.push(file(&m, what)?);
            }
            let root = m.parent().map(Path::to_path_buf).unwrap_or_default();
            for f in &mut out[before..] {
                f.name = name_of(&f.path, &folder, &root);
                let canonical = std::fs::canonicalize(&f.path).unwrap_or_else(|_| f.path.clone());
                if let Some(first) = seen.insert(canonical, g.display().to_string()) {
                    return Err(format!(
                        "{what} file {} is named twice (by {first} and by {}): name it once",
                        f.path.display(),
                        g.display()
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The ipdc.toml key and the flag of `what`.
fn keys(what: &str) -> (&'static str, &'static str) {
    if what == "input" { ("input", "--input") } else { ("files", "--file") }
}

/// A regular file, checked readable now (permissions) rather than when agents are picked.
fn file(path: &Path, what: &str) -> Result<NamedFile, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{what} {} cannot be read ({e})", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{what} {} is not a file or a folder", path.display()));
    }
    std::fs::File::open(path).map_err(|e| {
        format!("{what} file {} cannot be read ({e}): check its permissions, or leave it out", path.display())
    })?;
    Ok(NamedFile { path: path.to_path_buf(), name: String::new(), size: meta.len() })
}

/// Every file under `dir`, by name, hidden ones (`.git`, `.DS_Store`) skipped.
fn walk(dir: &Path, depth: usize, out: &mut Vec<NamedFile>, what: &str) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{what} folder {} is nested more than {MAX_DEPTH} deep (a symlink loop?)",
            dir.display()
        ));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{what} folder {} cannot be read ({e})", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    paths.sort();
    for p in paths {
        if p.is_dir() { walk(&p, depth + 1, out, what)? } else { out.push(file(&p, what)?) }
    }
    Ok(())
}

fn name_of(path: &Path, job_folder: &Path, given_root: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let rel = canonical
        .strip_prefix(job_folder)
        .ok()
        .or_else(|| path.strip_prefix(given_root).ok())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| path.file_name().map(PathBuf::from).unwrap_or_default());
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

/// The files (and folders) matching `pattern`, whose wildcards may only be
/// in its last component, sorted by name; hidden names match only a
/// pattern that starts with `.`.
fn glob(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let last = pattern.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = match pattern.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("."),
    };
    if has_wildcard(&dir.to_string_lossy()) {
        return Err("wildcards work only in the last part of a path (logs/*.log, not */x.log)".into());
    }
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(|e| format!("folder {} cannot be read ({e})", dir.display()))?,
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (last.starts_with('.') || !name.starts_with('.')) && wildcard_match(&last, &name)
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

/// `*` matches any run of characters, `?` one character.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = d.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        d
    }

    fn names(files: &[NamedFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn files_folders_globs_and_lists_expand_in_order() {
        let d = tree(&[
            ("users.csv", "u\n"),
            ("orders/2024/b.csv", "b\n"),
            ("orders/a.csv", "a\n"),
            ("orders/.hidden", "h\n"),
            ("logs/x.log", "x\n"),
            ("logs/y.log", "y\n"),
            ("logs/y.txt", "y\n"),
        ]);
        let j = |p: &str| d.path().join(p);
        let got = expand(&[j("users.csv"), j("orders/"), j("logs/*.log")], d.path(), "input").unwrap();
        assert_eq!(
            names(&got),
            ["users.csv", "orders/2024/b.csv", "orders/a.csv", "logs/x.log", "logs/y.log"]
        );
        assert_eq!(got[0].size, 2);
        // Outside the job folder: under the folder that holds what was given.
        let job = tempfile::tempdir().unwrap();
        let got = expand(&[j("orders")], job.path(), "input").unwrap();
        assert_eq!(names(&got), ["orders/2024/b.csv", "orders/a.csv"]);
    }

    #[test]
    fn what_names_nothing_is_refused_naming_it() {
        let d = tree(&[("a.txt", "a\n")]);
        std::fs::create_dir(d.path().join("empty")).unwrap();
        std::fs::write(d.path().join("empty/.only-hidden"), "x").unwrap();
        let e = expand(&[d.path().join("empty")], d.path(), "input").unwrap_err();
        assert!(e.contains("empty holds no files (hidden files are skipped)"), "{e}");
        let e = expand(&[d.path().join("*.csv")], d.path(), "input").unwrap_err();
        assert!(e.contains("*.csv matches no file"), "{e}");
        let e = expand(&[d.path().join("nope.txt")], d.path(), "side file").unwrap_err();
        assert!(e.starts_with("side file ") && e.contains("nope.txt") && e.contains("`files`"), "{e}");
        let e = expand(&[d.path().join("a.txt"), d.path().join("*.txt")], d.path(), "input").unwrap_err();
        assert!(e.contains("is named twice"), "{e}");
        let e = expand(&[d.path().join("*/a.txt")], d.path(), "input").unwrap_err();
        assert!(e.contains("only in the last part"), "{e}");
    }

    #[test]
    fn an_unreadable_file_inside_a_folder_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tree(&[("in/a.txt", "a\n"), ("in/b.txt", "b\n")]);
        let b = d.path().join("in/b.txt");
        std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::File::open(&b).is_ok() {
            return; // root reads anything: nothing to test
        }
        let e = expand(&[d.path().join("in")], d.path(), "input").unwrap_err();
        assert!(e.contains("b.txt cannot be read"), "{e}");
    }

    #[test]
    fn wildcards_match_like_a_shell() {
        for (p, n, m) in [
            ("*.log", "x.log", true),
            ("*.log", "x.log.1", false),
            ("part-??.csv", "part-01.csv", true),
            ("part-??.csv", "part-1.csv", false),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ] {
            assert_eq!(wildcard_match(p, n), m, "{p} {n}");
        }
    }
}

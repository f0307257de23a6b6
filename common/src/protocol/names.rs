//! The names that travel on the wire and end up in topics and file names:
//! clusters, agents, jobs, tasks, code files. Each has one check, here.

/// Checks that a cluster, agent or job name is safe inside a topic and as a
/// folder name: 1 to 64 of `a-z A-Z 0-9 - _ .`, not starting with `.` (so
/// never `.`, `..` or a hidden file).
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not valid: use 1 to 64 characters from a-z, A-Z, 0-9, '-', '_', '.', not starting with '.'"
        ))
    }
}

/// Whether `name` has the shape of a job id as submitters make them:
/// `<job name>-<time, base 36>-<12 hex digits>` (agents name their work
/// folders by it, and remove only folders of this shape).
pub fn looks_like_job_id(name: &str) -> bool {
    let mut parts = name.rsplitn(3, '-');
    let (Some(hex), Some(time), Some(job)) = (parts.next(), parts.next(), parts.next()) else { return false };
    hex.len() == 12
        && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && !time.is_empty()
        && time.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        && !job.is_empty()
        && job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a task id's strict shape: `m-` or `r-` and 5 to 10 digits, as the
/// controller names them (`m-00003`, `r-00001`).
pub fn validate_task_id(id: &str) -> Result<(), String> {
    let digits = id.strip_prefix("m-").or_else(|| id.strip_prefix("r-"));
    match digits {
        Some(d) if (5..=10).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("task id {id:?} is not valid: expected m-NNNNN or r-NNNNN")),
    }
}

/// A name of at most 100 ASCII letters, digits, `_`, `-` and `.`, ending in
/// `.py`, not starting with `.`, and not the runner's own file name.
pub fn is_plain_code_file_name(name: &str) -> bool {
    name.len() > 3
        && name.len() <= 100
        && name.ends_with(".py")
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && name != crate::python::RUNNER_FILE_NAME
}

/// Whether `path` (a side file's place in a task's code folder, from the
/// wire) is a relative path of plain components: at most 8 of them, each of
/// ASCII letters, digits and `._-+@`, not starting with `.`, joined by `/`,
/// 255 bytes at most. So no `..`, no absolute path, no hidden file, nothing
/// a shell or a terminal reads specially.
pub fn is_safe_relative_path(path: &str) -> bool {
    let plain = |c: &str| {
        !c.is_empty()
            && !c.starts_with('.')
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b))
    };
    !path.is_empty() && path.len() <= 255 && path.split('/').count() <= 8 && path.split('/').all(plain)
}

/// The most bytes of an input file's name (`TaskKind::Map`'s `name`).
pub const MAX_INPUT_NAME: usize = 1024;

/// The most Python modules a job may name (`python_modules`).
pub const MAX_PYTHON_MODULES: usize = 32;

/// Whether `name` is a Python module name (`numpy`, `PIL.Image`): dotted
/// identifiers of ASCII letters, digits and `_`, at most 100 bytes. Only
/// such names are ever handed to an interpreter.
pub fn is_module_name(name: &str) -> bool {
    let identifier = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    name.len() <= 100 && name.split('.').all(identifier)
}

/// Whether an input file's name from the wire may be handed to user code:
/// short, and no control characters (it is an argument of the runner).
pub fn is_safe_input_name(name: &str) -> bool {
    name.len() <= MAX_INPUT_NAME && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_dotted_identifiers() {
        for ok in ["numpy", "PIL.Image", "_private", "a1.b_2"] {
            assert!(is_module_name(ok), "{ok}");
        }
        for bad in ["", "1abc", "a..b", ".a", "a.", "os; import x", "-c", "a-b", "é", &"a".repeat(101)] {
            assert!(!is_module_name(bad), "{bad}");
        }
    }

    #[test]
    fn side_file_paths_stay_inside_the_code_folder() {
        for ok in ["stopwords.txt", "util.py", "model/weights.bin", "a/b/c/d/e/f/g/h", "v1.2_x-y+z@w"] {
            assert!(is_safe_relative_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../b",
            "./a",
            "a//b",
            "a/",
            ".hidden",
            "a/.git/config",
            "a\\b",
            "a b",
            "caf\u{e9}",
            "a\0b",
            "a/b/c/d/e/f/g/h/i",
        ] {
            assert!(!is_safe_relative_path(bad), "{bad:?}");
        }
        assert!(!is_safe_relative_path(&"a".repeat(256)));
    }

    #[test]
    fn input_names_are_data_without_control_characters() {
        assert!(is_safe_input_name("orders/2024 q1.csv"));
        assert!(is_safe_input_name("caf\u{e9}.txt"));
        assert!(!is_safe_input_name("a\nb"));
        assert!(!is_safe_input_name("a\u{1b}[31m"));
        assert!(!is_safe_input_name(&"a".repeat(MAX_INPUT_NAME + 1)));
    }

    #[test]
    fn job_ids_are_told_from_other_folder_names() {
        assert!(looks_like_job_id("wordcount-mwwtc2sy-d46ad903c424"));
        assert!(looks_like_job_id("my-job_2-a-000000000000"));
        for other in [
            "wordcount",
            "photos",
            "wordcount-mwwtc2sy-d46ad903c42",
            "x-MW-d46ad903c424",
            "-a-d46ad903c424",
            ".lock",
        ] {
            assert!(!looks_like_job_id(other), "{other}");
        }
    }

    #[test]
    fn names_with_topic_or_path_syntax_are_refused() {
        assert!(validate_name("agent", "pi-1.lab_2").is_ok());
        for bad in ["", "a/b", "a+b", "#", "a b", ".", "..", ".hidden", "a\0b", &"a".repeat(65)] {
            assert!(validate_name("agent", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn task_ids_have_one_shape() {
        for ok in ["m-00000", "r-00001", "m-1234567890"] {
            assert!(validate_task_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "m-",
            "m-0001",
            "x-00001",
            "../../x",
            "/tmp/x",
            "m-00001/..",
            "m-0000a",
            "M-00001",
            "m-12345678901",
        ] {
            assert!(validate_task_id(bad).is_err(), "{bad:?}");
        }
    }
}

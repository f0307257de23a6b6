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

#[cfg(test)]
mod tests {
    use super::*;

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

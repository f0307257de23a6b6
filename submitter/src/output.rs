//! Writing a finished job's result: the parts fetched from IPFS, the summary
//! and `_SUCCESS`, all in a temporary folder beside the output that is renamed
//! into place last, so a folder at the output path is always complete.

use std::path::{Path, PathBuf};

use ipdc_common::ipfs::IpfsClient;

/// Refuses to start a job whose output would replace something, unless asked to.
pub fn check_target(out: &Path, overwrite: bool) -> Result<(), String> {
    if out.exists() && !overwrite {
        return Err(format!(
            "output folder {} already exists: remove it, choose another with --out, or pass --overwrite",
            out.display()
        ));
    }
    Ok(())
}

/// Fetches `parts` (CIDs in partition order) and writes them with `summary`
/// as the output folder `out`. Returns the total bytes of the parts.
pub async fn write(
    ipfs: &IpfsClient,
    parts: &[(String, u64)],
    summary: &serde_json::Value,
    out: &Path,
    job: &str,
) -> Result<u64, String> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let tmp = parent.join(format!(".{name}.{job}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let result = fill(ipfs, parts, summary, &tmp).await;
    let total = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Replace an older output only now that the new one is complete.
    if out.exists() {
        let old = parent.join(format!(".{name}.{job}.old"));
        std::fs::rename(out, &old)
            .map_err(|e| format!("cannot move the old {} aside: {e}", out.display()))?;
        std::fs::rename(&tmp, out)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), out.display()))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, out)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), out.display()))?;
    }
    Ok(total)
}

async fn fill(
    ipfs: &IpfsClient,
    parts: &[(String, u64)],
    summary: &serde_json::Value,
    dir: &Path,
) -> Result<u64, String> {
    let mut total = 0;
    for (i, (cid, _)) in parts.iter().enumerate() {
        let path: PathBuf = dir.join(format!("part-{i:05}"));
        total += ipfs.cat_to_file(cid, &path).await.map_err(|e| format!("fetching part {i}: {e}"))?;
    }
    let text = serde_json::to_string_pretty(summary).expect("a JSON value serializes");
    std::fs::write(dir.join("summary.json"), text + "\n")
        .map_err(|e| format!("writing summary.json: {e}"))?;
    // _SUCCESS last: its presence means everything before it is complete.
    std::fs::write(dir.join("_SUCCESS"), b"").map_err(|e| format!("writing _SUCCESS: {e}"))?;
    Ok(total)
}

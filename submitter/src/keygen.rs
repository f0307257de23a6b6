//! `ipdc-submit keygen`: node keys and the trust file that lists them. The
//! one-command setup of a small cluster is `--cluster DIR --agents ...`:
//! a key per node and the trust file, to copy to the nodes.

use std::io::Write;
use std::path::{Path, PathBuf};

use ipdc_common::auth::{Identity, NodeKey, Role, TrustList};
use ipdc_common::protocol::validate_name;

use crate::cli::KeygenArgs;

pub fn run(a: &KeygenArgs) -> Result<(), String> {
    match (&a.file, &a.cluster) {
        (Some(file), _) => {
            let id = match (&a.agent, &a.submitter) {
                (Some(n), _) => Identity { role: Role::Agent, name: n.clone() },
                (None, Some(n)) => Identity { role: Role::Submitter, name: n.clone() },
                (None, None) => {
                    Identity { role: Role::Submitter, name: ipdc_common::settings::host_name("submitter") }
                }
            };
            validate_name(&id.role.to_string(), &id.name)?;
            let line = write_key(file, &id)?;
            println!("wrote {} ({id}); its line for the trust file:\n{line}", file.display());
            Ok(())
        }
        (None, Some(dir)) => cluster(dir, &a.agents, &a.submitters),
        (None, None) => Err("give a FILE for one key, or --cluster DIR for a cluster's keys".into()),
    }
}

/// Makes `file` a new key for `id`; returns its trust-file line.
fn write_key(file: &Path, id: &Identity) -> Result<String, String> {
    let key = NodeKey::generate()?;
    key.save(file)?;
    Ok(TrustList::line(id, &key.public()))
}

fn cluster(dir: &Path, agents: &[String], submitters: &[String]) -> Result<(), String> {
    let trust = dir.join("trust");
    let fresh = !trust.exists();
    let mut ids: Vec<Identity> =
        agents.iter().map(|n| Identity { role: Role::Agent, name: n.clone() }).collect();
    let submitters = if submitters.is_empty() && fresh {
        vec![ipdc_common::settings::host_name("submitter")]
    } else {
        submitters.to_vec()
    };
    ids.extend(submitters.into_iter().map(|name| Identity { role: Role::Submitter, name }));
    if ids.is_empty() {
        return Err(format!(
            "{} exists: name the nodes to add with --agents and --submitters",
            trust.display()
        ));
    }
    // Check everything before writing anything: no half-made cluster.
    for id in &ids {
        validate_name(&id.role.to_string(), &id.name)?;
        let file = key_file(dir, id);
        if file.exists() {
            return Err(format!(
                "{} exists already: not replacing a node's key (remove it first)",
                file.display()
            ));
        }
    }
    if ids.iter().map(|i| &i.name).collect::<std::collections::BTreeSet<_>>().len() != ids.len() {
        return Err("each node needs its own name: a name is listed twice".into());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut lines = String::new();
    if fresh {
        lines += "# IPDC trust file: who may run jobs (submitter) and who may report results (agent).\n";
        lines +=
            "# One line per key: ROLE NAME KEY; `revoke KEY` revokes one. Copy this file to every node.\n";
    }
    for id in &ids {
        lines += &write_key(&key_file(dir, id), id)?;
        lines.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&trust)
        .map_err(|e| format!("cannot write {}: {e}", trust.display()))?;
    f.write_all(lines.as_bytes()).map_err(|e| format!("cannot write {}: {e}", trust.display()))?;
    println!(
        "{} {} (added {} key(s)); a key per node:",
        if fresh { "wrote" } else { "updated" },
        trust.display(),
        ids.len()
    );
    for id in &ids {
        let file = key_file(dir, id);
        match id.role {
            Role::Agent => println!(
                "  {:<24} {id}: copy to {} as /etc/ipdc/node.key (owner ipdc, mode 0600), with the trust file as /etc/ipdc/trust",
                file.display(),
                id.name
            ),
            Role::Submitter => println!(
                "  {:<24} {id}: on that machine, node_key and trust in ~/.config/ipdc/submit.toml (or --node-key and --trust)",
                file.display()
            ),
        }
    }
    println!(
        "then set node_key and trust in every agent.toml (packaging/agent.toml has them commented out) and restart the agents"
    );
    Ok(())
}

fn key_file(dir: &Path, id: &Identity) -> PathBuf {
    dir.join(format!("{}.key", id.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipdc_common::auth::TrustSource;

    #[test]
    fn a_cluster_gets_a_key_per_node_and_a_trust_file_listing_them_and_can_grow() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("keys");
        cluster(&dir, &["pi-1".into(), "pi-2".into()], &["laptop".into()]).unwrap();
        let mut trust = TrustSource::load(&dir.join("trust")).unwrap();
        for (name, role) in [("pi-1", Role::Agent), ("pi-2", Role::Agent), ("laptop", Role::Submitter)] {
            let key = NodeKey::load(&dir.join(format!("{name}.key"))).unwrap();
            assert_eq!(
                trust.current(0).identify(&key.public()).unwrap(),
                &Identity { role, name: name.into() }
            );
        }
        // A board added later; the first keys stay.
        let before = std::fs::read_to_string(dir.join("pi-1.key")).unwrap();
        cluster(&dir, &["pi-3".into()], &[]).unwrap();
        let mut trust = TrustSource::load(&dir.join("trust")).unwrap();
        let k3 = NodeKey::load(&dir.join("pi-3.key")).unwrap();
        assert!(trust.current(0).identify(&k3.public()).is_ok());
        assert_eq!(std::fs::read_to_string(dir.join("pi-1.key")).unwrap(), before);
        // Nothing is replaced or half-made.
        let e = cluster(&dir, &["pi-4".into(), "pi-1".into()], &[]).unwrap_err();
        assert!(e.contains("pi-1.key exists already"), "{e}");
        assert!(!dir.join("pi-4.key").exists());
        assert!(cluster(&dir, &["../x".into()], &[]).unwrap_err().contains("not valid"));
    }
}

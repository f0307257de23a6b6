//! The agents a submitter knows of (from their retained statuses), which of
//! them can run a job, and which K it picks.

use std::collections::BTreeMap;

use ipdc_common::protocol::{AgentStatus, PROTOCOL_VERSION};

/// What a job asks of an agent.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    pub needs_python: bool,
    pub min_memory_mb: u64,
    pub arch: Option<String>,
    /// This submitter signs with the cluster key.
    pub have_key: bool,
    /// Modules the agent's Python must import (`python_modules`).
    pub python_modules: Vec<String>,
    /// The peer ID of the submitter's own IPFS node: an agent on that very
    /// node needs no swarm peer to reach the job's data.
    pub own_node: Option<String>,
}

/// Latest status per agent.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    agents: BTreeMap<String, AgentStatus>,
}

impl Directory {
    /// Takes an agent's status unless the one it has supersedes it: a
    /// status (or Last Will) of an earlier connection, replayed, changes
    /// nothing (see `AgentStatus::supersedes`). A stale entry takes anything,
    /// so an agent whose clock went back is not shut out.
    pub fn update(&mut self, status: AgentStatus) -> bool {
        let now = ipdc_common::protocol::now_ms();
        match self.agents.get(&status.agent) {
            Some(cur) if !(status.supersedes(cur) || cur.is_stale(now)) => false,
            _ => {
                self.agents.insert(status.agent.clone(), status);
                true
            }
        }
    }

    pub fn get(&self, agent: &str) -> Option<&AgentStatus> {
        self.agents.get(agent)
    }

    pub fn all(&self) -> impl Iterator<Item = &AgentStatus> {
        self.agents.values()
    }

    /// Why `s` cannot take this job, or None if it can.
    pub fn unfit(s: &AgentStatus, req: &Requirements, now_ms: u64) -> Option<String> {
        if !s.online {
            return Some("offline".into());
        }
        if s.v != PROTOCOL_VERSION {
            return Some(format!("speaks protocol {}, this submitter {}", s.v, PROTOCOL_VERSION));
        }
        if s.is_stale(now_ms) {
            return Some(format!("silent for {} s", now_ms.saturating_sub(s.heartbeat_ms) / 1000));
        }
        if s.keyed && !req.have_key {
            return Some("takes only signed messages (give --node-key and --trust)".into());
        }
        if !s.ipfs.is_ok() {
            return Some(format!("IPFS API {}", s.ipfs));
        }
        if let Some(why) = s.low_on_disk() {
            return Some(why);
        }
        if s.swarm_peers == Some(0) && s.ipfs_peer_id.is_some() && s.ipfs_peer_id != req.own_node {
            return Some(
                "its IPFS node has no swarm peers (isolated: it could fetch neither the job's code nor its data): \
                 check that node's swarm key and bootstrap peers (`ipfs swarm peers`)"
                    .into(),
            );
        }
        if req.needs_python && s.python.is_none() {
            return Some("no Python, and the job names no native fallback".into());
        }
        if let Some(arch) = &req.arch
            && &s.arch != arch
        {
            return Some(format!("arch {}, the job asks for {arch}", s.arch));
        }
        if s.mem_available_mb < req.min_memory_mb {
            return Some(format!("{} MiB free, the job asks for {}", s.mem_available_mb, req.min_memory_mb));
        }
        let missing: Vec<&str> = req
            .python_modules
            .iter()
            .filter(|m| s.python_modules.get(m.as_str()) == Some(&false))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "its Python ({}) cannot import {}: install {} for it (e.g. with pip), then run the job again",
                s.python.as_deref().unwrap_or("none"),
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            ));
        }
        if let Some(unknown) = req.python_modules.iter().find(|m| !s.python_modules.contains_key(m.as_str()))
        {
            return Some(format!(
                "has not said whether its Python imports {unknown} (an agent older than python_modules never does)"
            ));
        }
        None
    }

    /// Capable agents, best first: most idle cores, then most free memory.
    pub fn capable(&self, req: &Requirements, now_ms: u64) -> Vec<&AgentStatus> {
        let mut v: Vec<_> = self.agents.values().filter(|s| Self::unfit(s, req, now_ms).is_none()).collect();
        v.sort_by(|a, b| {
            score(b).partial_cmp(&score(a)).unwrap_or(std::cmp::Ordering::Equal).then(a.agent.cmp(&b.agent))
        });
        v
    }

    /// The agents skipped, with why (offline ones only if they were seen recently).
    pub fn skipped(&self, req: &Requirements, now_ms: u64) -> Vec<(String, String)> {
        self.agents
            .values()
            .filter(|s| s.online)
            .filter_map(|s| Self::unfit(s, req, now_ms).map(|why| (s.agent.clone(), why)))
            .collect()
    }
}

/// Idle cores, with free memory as a small tie-breaker.
fn score(s: &AgentStatus) -> f64 {
    let idle = s.cores as f64 * (1.0 - (s.cpu_percent as f64 / 100.0).clamp(0.0, 1.0));
    idle + (s.mem_available_mb as f64 / 1024.0) * 0.01
}

/// One line describing an agent for the "picked" message.
pub fn describe(s: &AgentStatus) -> String {
    format!(
        "{} ({} {}, {} cores, {:.0}% CPU used, {} MiB free, {})",
        s.agent,
        s.arch,
        s.os,
        s.cores,
        s.cpu_percent,
        s.mem_available_mb,
        s.python.as_deref().map(|v| format!("Python {v}")).unwrap_or_else(|| "no Python".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, cores: u32, cpu: f32, python: bool, now: u64) -> AgentStatus {
        let mut s = AgentStatus::offline(name);
        s.online = true;
        s.cores = cores;
        s.cpu_percent = cpu;
        s.python = python.then(|| "3.11.7".into());
        s.mem_available_mb = 1000;
        s.heartbeat_ms = now;
        s.heartbeat_interval_ms = 5000;
        s.ipfs = ipdc_common::protocol::IpfsHealth::Ok;
        s
    }

    #[test]
    fn capable_agents_are_ranked_by_idle_cores() {
        let mut d = Directory::default();
        d.update(st("busy", 4, 90.0, true, 100));
        d.update(st("idle", 2, 0.0, true, 100));
        d.update(st("big", 8, 50.0, true, 100));
        let names: Vec<_> =
            d.capable(&Requirements::default(), 100).iter().map(|s| s.agent.clone()).collect();
        assert_eq!(names, ["big", "idle", "busy"]);
    }

    #[test]
    fn an_agent_whose_node_has_no_swarm_peers_is_skipped_unless_it_is_the_submitters_own_node() {
        let on = |id: &str, peers: Option<u32>| {
            let mut s = st(id, 2, 0.0, true, 100);
            (s.ipfs_peer_id, s.swarm_peers) = (Some(format!("node-{id}")), peers);
            s
        };
        let req = Requirements { own_node: Some("node-mine".into()), ..Default::default() };
        let why = Directory::unfit(&on("lone", Some(0)), &req, 100).expect("isolated");
        assert!(why.contains("no swarm peers") && why.contains("ipfs swarm peers"), "{why}");
        assert_eq!(Directory::unfit(&on("mine", Some(0)), &req, 100), None, "the submitter's own node");
        assert_eq!(Directory::unfit(&on("joined", Some(3)), &req, 100), None);
        assert_eq!(Directory::unfit(&on("hub", None), &req, 100), None, "a node that lists no swarm");
    }

    #[test]
    fn agents_without_python_stale_or_small_are_skipped_with_a_reason() {
        let mut d = Directory::default();
        d.update(st("nopy", 2, 0.0, false, 100_000));
        d.update(st("old", 2, 0.0, true, 0));
        d.update(st("ok", 2, 0.0, true, 100_000));
        let req = Requirements { needs_python: true, min_memory_mb: 10, ..Default::default() };
        let names: Vec<_> = d.capable(&req, 100_000).iter().map(|s| s.agent.clone()).collect();
        assert_eq!(names, ["ok"]);
        let skipped = d.skipped(&req, 100_000);
        assert!(skipped.iter().any(|(a, why)| a == "nopy" && why.contains("no Python")));
        assert!(skipped.iter().any(|(a, why)| a == "old" && why.contains("silent")));
        let big = Requirements { needs_python: false, min_memory_mb: 5000, ..Default::default() };
        assert!(d.capable(&big, 100_000).is_empty());
        let arm = Requirements { arch: Some("aarch64".into()), ..Default::default() };
        assert!(d.skipped(&arm, 100_000).iter().any(|(_, why)| why.contains("the job asks for aarch64")));
    }

    #[test]
    fn an_agent_below_its_free_disk_floor_is_skipped_naming_both() {
        let mut d = Directory::default();
        let mut full = st("full", 4, 0.0, true, 100_000);
        (full.disk_free_mb, full.min_free_disk_mb) = (Some(300), 512);
        let mut roomy = st("roomy", 2, 0.0, true, 100_000);
        (roomy.disk_free_mb, roomy.min_free_disk_mb) = (Some(600), 512);
        // An agent that does not report its free space (an older one) is not held to a floor.
        let unknown = st("unknown", 1, 0.0, true, 100_000);
        for s in [full, roomy, unknown] {
            d.update(s);
        }
        let req = Requirements::default();
        let names: Vec<_> = d.capable(&req, 100_000).iter().map(|s| s.agent.clone()).collect();
        assert_eq!(names, ["roomy", "unknown"]);
        assert_eq!(
            d.skipped(&req, 100_000),
            [(
                "full".to_string(),
                "300 MiB free in its work dir, below its floor of 512 MiB (min_free_disk_mb)".to_string()
            )]
        );
    }
}

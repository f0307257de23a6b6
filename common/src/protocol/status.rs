//! What an agent says about itself ([`AgentStatus`], retained), and the
//! health of its IPFS node as it travels in it ([`IpfsHealth`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::PROTOCOL_VERSION;

/// What an agent says about itself, retained so a new submitter sees it at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AgentStatus {
    pub v: u32,
    pub agent: String,
    pub online: bool,
    pub version: String,
    pub arch: String,
    pub os: String,
    pub cores: u32,
    /// Tasks it runs at once.
    pub slots: u32,
    pub slots_busy: u32,
    /// CPU usage across all cores, 0-100.
    pub cpu_percent: f32,
    pub mem_total_mb: u64,
    pub mem_available_mb: u64,
    /// The Python version its executor runs, or None when it has no Python.
    pub python: Option<String>,
    /// Native executors it has (e.g. "wordcount").
    pub native: Vec<String>,
    /// Map/reduce memory budget per task.
    pub memory_budget_mb: u64,
    /// When this status was sent, Unix milliseconds.
    pub heartbeat_ms: u64,
    /// How often it sends a status, so readers know when one is stale.
    pub heartbeat_interval_ms: u64,
    /// Whether its IPFS API answers; an agent whose node does not takes no tasks.
    pub ipfs: IpfsHealth,
    /// Its IPFS node's peer ID (None: not known yet, or an older agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfs_peer_id: Option<String>,
    /// How many swarm peers its node is connected to (None: the node does
    /// not say, e.g. a hub's store, which is every agent's node at once).
    /// 0: it can fetch only what its own node holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_peers: Option<u32>,
    /// Free space of the file system of its work dir, MiB (what an
    /// unprivileged user may still write); None when it could not be read
    /// (or the agent is older than this field).
    #[serde(default)]
    pub disk_free_mb: Option<u64>,
    /// Its floor (`min_free_disk_mb`): with less free than this it takes no
    /// tasks (0: no floor).
    #[serde(default)]
    pub min_free_disk_mb: u64,
    /// The Python modules it was asked about, and whether each imports
    /// (see `python_modules`); the most recent few hundred names.
    #[serde(default)]
    pub python_modules: std::collections::BTreeMap<String, bool>,
    /// Which of a job's input blocks its node held when asked (`Locate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub located: Option<Located>,
    /// Its node's private network: its swarm key's fingerprint (absent: no
    /// key, the public network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_swarm: Option<String>,
    /// Control messages it refused (bad or missing signature, stale, replayed).
    #[serde(default)]
    pub rejected_messages: u64,
    /// It obeys only signed messages (keys and a trust file).
    pub keyed: bool,
    /// Random per start of the agent process: commands name the session
    /// they are for, so none sent to an earlier run of the agent is obeyed.
    pub session: String,
    /// When the agent's current broker connection began (Unix ms). Its Last
    /// Will carries the same epoch, so a status (or Will) of an earlier
    /// connection replayed later is told from the current one.
    pub epoch: u64,
}

/// An agent's answer to `Locate`: of the `asked` blocks, those its node
/// holds, as a bitmap in hex (bit `i % 8` of byte `i / 8` for block `i`);
/// `held` is empty when the node cannot say (it has no `refs/local`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Located {
    pub job: String,
    pub asked: u32,
    pub held: String,
}

impl Located {
    /// The bitmap of `held` blocks among `asked`.
    pub fn new(job: &str, asked: usize, held: impl Iterator<Item = usize>) -> Located {
        let mut bits = vec![0u8; asked.div_ceil(8)];
        for i in held.filter(|&i| i < asked) {
            bits[i / 8] |= 1 << (i % 8);
        }
        Located {
            job: job.to_string(),
            asked: asked as u32,
            held: bits.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// Whether block `i` is held (false when the node could not say).
    pub fn holds(&self, i: usize) -> bool {
        self.held
            .get(i / 8 * 2..i / 8 * 2 + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }
}

impl AgentStatus {
    /// The Last Will: what the broker publishes if the agent vanishes.
    pub fn offline(agent: &str) -> Self {
        AgentStatus {
            v: PROTOCOL_VERSION,
            agent: agent.to_string(),
            online: false,
            version: String::new(),
            arch: String::new(),
            os: String::new(),
            cores: 0,
            slots: 0,
            slots_busy: 0,
            cpu_percent: 0.0,
            mem_total_mb: 0,
            mem_available_mb: 0,
            python: None,
            native: Vec::new(),
            memory_budget_mb: 0,
            heartbeat_ms: 0,
            heartbeat_interval_ms: 0,
            ipfs: IpfsHealth::Unknown(String::new()),
            ipfs_peer_id: None,
            swarm_peers: None,
            disk_free_mb: None,
            min_free_disk_mb: 0,
            python_modules: Default::default(),
            located: None,
            private_swarm: None,
            rejected_messages: 0,
            keyed: false,
            session: String::new(),
            epoch: 0,
        }
    }

    /// Whether `self` supersedes `older` (both of one agent): a later
    /// connection, or on the same connection a later heartbeat or its end.
    /// A replayed status or Will of an earlier connection never does.
    pub fn supersedes(&self, older: &AgentStatus) -> bool {
        let order = |s: &AgentStatus| (s.epoch, if s.online { s.heartbeat_ms } else { u64::MAX });
        order(self) >= order(older)
    }

    /// Why it takes no tasks for want of disk space, or None: less free in
    /// its work dir than its own floor says (an unknown free space is no
    /// reason).
    pub fn low_on_disk(&self) -> Option<String> {
        let free = self.disk_free_mb?;
        (free < self.min_free_disk_mb).then(|| {
            format!(
                "{free} MiB free in its work dir, below its floor of {} MiB (min_free_disk_mb)",
                self.min_free_disk_mb
            )
        })
    }

    /// Whether three heartbeats (and a grace period) went missing by `now_ms`:
    /// the agent may be gone without its Last Will having fired yet.
    pub fn is_stale(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.heartbeat_ms) > 3 * self.heartbeat_interval_ms.max(1000) + 5_000
    }
}

/// Whether an agent's IPFS node answers. On the wire it is one string:
/// `"ok"`, `"unreachable: <why>"`, or anything else (e.g. `"unknown: not
/// checked yet"`), which reads as [`IpfsHealth::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpfsHealth {
    Ok,
    Unreachable(String),
    /// Not checked yet, or a word this program does not know; never `Ok`.
    Unknown(String),
}

impl IpfsHealth {
    pub fn is_ok(&self) -> bool {
        *self == IpfsHealth::Ok
    }

    /// Before the first check.
    pub fn not_checked() -> Self {
        IpfsHealth::Unknown("unknown: not checked yet".into())
    }
}

impl std::fmt::Display for IpfsHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpfsHealth::Ok => f.write_str("ok"),
            IpfsHealth::Unreachable(why) => write!(f, "unreachable: {why}"),
            IpfsHealth::Unknown(s) if s.is_empty() => f.write_str("unknown"),
            IpfsHealth::Unknown(s) => f.write_str(s),
        }
    }
}

impl From<&str> for IpfsHealth {
    fn from(s: &str) -> Self {
        match s {
            "ok" => IpfsHealth::Ok,
            _ => match s.strip_prefix("unreachable: ") {
                Some(why) => IpfsHealth::Unreachable(why.to_string()),
                None => IpfsHealth::Unknown(s.to_string()),
            },
        }
    }
}

impl Serialize for IpfsHealth {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // The offline Last Will says nothing about the node.
            IpfsHealth::Unknown(raw) => s.serialize_str(raw),
            other => s.collect_str(other),
        }
    }
}

impl<'de> Deserialize<'de> for IpfsHealth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(IpfsHealth::from(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipfs_health_keeps_its_wire_strings() {
        for (health, wire) in [
            (IpfsHealth::Ok, "\"ok\""),
            (IpfsHealth::Unreachable("no answer within 5 s".into()), "\"unreachable: no answer within 5 s\""),
            (IpfsHealth::not_checked(), "\"unknown: not checked yet\""),
            (IpfsHealth::Unknown(String::new()), "\"\""),
        ] {
            assert_eq!(serde_json::to_string(&health).unwrap(), wire);
            assert_eq!(serde_json::from_str::<IpfsHealth>(wire).unwrap(), health);
        }
        assert!(!serde_json::from_str::<IpfsHealth>("\"OK\"").unwrap().is_ok());
    }

    #[test]
    fn a_status_of_an_earlier_connection_never_supersedes_a_later_one() {
        let at = |epoch, online, heartbeat_ms| AgentStatus {
            epoch,
            online,
            heartbeat_ms,
            ..AgentStatus::offline("a")
        };
        assert!(at(10, true, 20).supersedes(&at(10, true, 15)), "a later heartbeat");
        assert!(!at(10, true, 15).supersedes(&at(10, true, 20)), "a replayed earlier heartbeat");
        assert!(at(10, false, 0).supersedes(&at(10, true, 20)), "the connection's own Will ends it");
        assert!(!at(9, false, 0).supersedes(&at(10, true, 20)), "an earlier connection's Will does not");
        assert!(at(11, true, 12).supersedes(&at(10, false, 0)), "a new connection after a Will");
    }

    #[test]
    fn an_agent_below_its_disk_floor_says_so_and_an_unknown_free_space_is_fine() {
        let mut s = AgentStatus { min_free_disk_mb: 512, ..AgentStatus::offline("a") };
        assert_eq!(s.low_on_disk(), None, "not measured");
        s.disk_free_mb = Some(512);
        assert_eq!(s.low_on_disk(), None, "at the floor");
        s.disk_free_mb = Some(100);
        assert_eq!(
            s.low_on_disk().as_deref(),
            Some("100 MiB free in its work dir, below its floor of 512 MiB (min_free_disk_mb)")
        );
        // A status without the fields (an older agent) reads as unknown.
        let mut v = serde_json::to_value(AgentStatus::offline("a")).unwrap();
        v.as_object_mut().unwrap().retain(|k, _| k != "disk_free_mb" && k != "min_free_disk_mb");
        let old: AgentStatus = serde_json::from_value(v).unwrap();
        assert_eq!((old.disk_free_mb, old.min_free_disk_mb, old.low_on_disk()), (None, 0, None));
    }

    #[test]
    fn a_status_is_stale_after_three_missed_heartbeats_and_a_grace() {
        let mut s = AgentStatus::offline("a");
        s.heartbeat_ms = 1_000_000;
        s.heartbeat_interval_ms = 5_000;
        assert!(!s.is_stale(1_000_000 + 20_000));
        assert!(s.is_stale(1_000_000 + 20_001));
    }
}

//! What the agent reports about itself: cores, CPU load, memory, arch, OS,
//! Python, slots — read through sysinfo and sent as a retained status.

use ipdc_common::protocol::{AgentStatus, PROTOCOL_VERSION, now_ms};
use sysinfo::System;

/// Reads the machine's load and memory each heartbeat.
pub struct StatusProbe {
    sys: Option<System>,
    cores: u32,
    os: String,
}

impl StatusProbe {
    pub fn new() -> Self {
        // sysinfo can fail on exotic kernels; the agent still runs, reporting zeros.
        let sys = System::new().ok();
        let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        let os = System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.to_string());
        let mut probe = StatusProbe { sys, cores, os };
        probe.refresh();
        probe
    }

    pub fn cores(&self) -> u32 {
        self.cores
    }

    fn refresh(&mut self) {
        if let Some(sys) = &mut self.sys {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
        }
    }

    /// A fresh status (CPU usage is measured since the previous call).
    pub fn status(&mut self, fixed: &FixedFacts, slots_busy: u32) -> AgentStatus {
        self.refresh();
        let (cpu, total, avail) = match &self.sys {
            Some(s) => (s.global_cpu_usage(), s.total_memory(), s.available_memory()),
            None => (0.0, 0, 0),
        };
        AgentStatus {
            v: PROTOCOL_VERSION,
            agent: fixed.name.clone(),
            online: true,
            version: fixed.version.clone(),
            arch: std::env::consts::ARCH.to_string(),
            os: self.os.clone(),
            cores: self.cores,
            slots: fixed.slots,
            slots_busy,
            cpu_percent: cpu,
            mem_total_mb: total >> 20,
            mem_available_mb: avail >> 20,
            python: fixed.python.clone(),
            native: vec!["wordcount".to_string()],
            memory_budget_mb: fixed.memory_mb,
            heartbeat_ms: now_ms(),
            heartbeat_interval_ms: fixed.heartbeat_ms,
            ipfs: fixed.ipfs.clone(),
            rejected_messages: 0,
            keyed: false,
        }
    }
}

impl Default for StatusProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// The parts of the status that do not change while the agent runs.
#[derive(Debug, Clone)]
pub struct FixedFacts {
    pub name: String,
    pub version: String,
    pub slots: u32,
    pub python: Option<String>,
    pub memory_mb: u64,
    pub heartbeat_ms: u64,
    /// "ok", or why the IPFS API does not answer (changes while running).
    pub ipfs: String,
}

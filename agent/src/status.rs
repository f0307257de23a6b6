//! What the agent reports about itself: cores, CPU load, memory, arch, OS,
//! Python, slots — read through sysinfo and sent as a retained status.

use ipdc_common::protocol::{AgentStatus, IpfsHealth, PROTOCOL_VERSION, now_ms};
use std::time::{Duration, Instant};

use sysinfo::System;

/// Reads the machine's load and memory each heartbeat.
pub struct StatusProbe {
    sys: Option<System>,
    cores: u32,
    os: String,
    /// CPU usage as last measured, and when.
    cpu: f32,
    cpu_at: Instant,
}

/// CPU usage is the share of busy time between two readings: over a window
/// of a few milliseconds (statuses also go out when a task starts or ends)
/// it is mostly noise, so a reading closer than this to the last is skipped.
const CPU_WINDOW: Duration = Duration::from_secs(1);

impl StatusProbe {
    pub fn new() -> Self {
        // sysinfo can fail on exotic kernels; the agent still runs, reporting zeros.
        let sys = System::new().ok();
        let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        let os = System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.to_string());
        let mut probe = StatusProbe { sys, cores, os, cpu: 0.0, cpu_at: Instant::now() };
        if let Some(sys) = &mut probe.sys {
            // The first reading starts the window; until it is long enough
            // (the first status goes out as soon as the broker answers), the
            // 1-minute load average per core stands in for the CPU usage.
            sys.refresh_cpu_usage();
            let load = System::load_average().map(|l| l.one).unwrap_or(0.0);
            probe.cpu = (load / cores as f64 * 100.0).clamp(0.0, 100.0) as f32;
        }
        probe
    }

    pub fn cores(&self) -> u32 {
        self.cores
    }

    /// A fresh status: memory now, CPU usage since the last reading at
    /// least [`CPU_WINDOW`] ago.
    pub fn status(&mut self, fixed: &FixedFacts, slots_busy: u32) -> AgentStatus {
        let (mut cpu, mut total, mut avail) = (0.0, 0, 0);
        if let Some(sys) = &mut self.sys {
            if self.cpu_at.elapsed() >= CPU_WINDOW {
                sys.refresh_cpu_usage();
                self.cpu = sys.global_cpu_usage();
                self.cpu_at = Instant::now();
            }
            sys.refresh_memory();
            (cpu, total, avail) = (self.cpu, sys.total_memory(), sys.available_memory());
        }
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
            ipfs_peer_id: None,
            swarm_peers: None,
            disk_free_mb: free_disk_mb(&fixed.work_dir),
            min_free_disk_mb: fixed.min_free_disk_mb,
            python_modules: Default::default(),
            located: None,
            private_swarm: fixed.private_swarm.clone(),
            rejected_messages: 0,
            keyed: false,
            session: fixed.session.clone(),
            epoch: fixed.epoch,
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
    /// Whether the IPFS API answers (changes while running).
    pub ipfs: IpfsHealth,
    /// This run of the agent, and when its current connection began.
    pub session: String,
    pub epoch: u64,
    /// Its work dir, whose free space each status reports, and the floor
    /// below which it takes no tasks (`min_free_disk_mb`).
    pub work_dir: std::path::PathBuf,
    pub min_free_disk_mb: u64,
    /// Its node's swarm key's fingerprint (None: no key, the public network).
    pub private_swarm: Option<String>,
}

/// Free space of the file system holding `dir`, MiB: what an unprivileged
/// user may still write there (`statvfs`' `f_bavail`); None if unreadable.
pub fn free_disk_mb(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string and `st` a plain struct
    // that statvfs only writes.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64) >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_usage_is_read_over_a_window_of_at_least_a_second() {
        let fixed = FixedFacts {
            name: "t".into(),
            version: "0".into(),
            slots: 1,
            python: None,
            memory_mb: 1,
            heartbeat_ms: 1000,
            ipfs: IpfsHealth::Ok,
            session: "s".into(),
            epoch: 1,
            work_dir: std::env::temp_dir(),
            min_free_disk_mb: 512,
            private_swarm: None,
        };
        let mut probe = StatusProbe::new();
        // Busy statuses (a task started, a task ended) in quick succession
        // repeat the last reading rather than measure a window of microseconds.
        let first = probe.status(&fixed, 0).cpu_percent;
        let burn = Instant::now();
        while burn.elapsed() < Duration::from_millis(300) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert_eq!(probe.status(&fixed, 1).cpu_percent, first);
        assert!((0.0..=100.0).contains(&first), "{first}");
        std::thread::sleep(CPU_WINDOW);
        let later = probe.status(&fixed, 0);
        assert!((0.0..=100.0).contains(&later.cpu_percent), "{}", later.cpu_percent);
        assert!(probe.cpu_at.elapsed() < CPU_WINDOW, "a new reading was taken");
    }

    #[test]
    fn the_status_reports_the_work_dirs_free_space_and_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_disk_mb(dir.path()).expect("statvfs of a temp dir");
        // df's view of the same file system, in MiB.
        let out = std::process::Command::new("df").args(["-Pk"]).arg(dir.path()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let avail_kib: u64 = text.lines().nth(1).unwrap().split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(free.abs_diff(avail_kib >> 10) <= 64, "statvfs {free} MiB, df {} MiB", avail_kib >> 10);
        assert_eq!(free_disk_mb(&dir.path().join("missing")), None);
        let fixed = FixedFacts {
            name: "t".into(),
            version: "0".into(),
            slots: 1,
            python: None,
            memory_mb: 1,
            heartbeat_ms: 1000,
            ipfs: IpfsHealth::Ok,
            session: "s".into(),
            epoch: 1,
            work_dir: dir.path().to_path_buf(),
            min_free_disk_mb: u64::MAX,
            private_swarm: None,
        };
        let s = StatusProbe::new().status(&fixed, 0);
        assert!(s.disk_free_mb.is_some() && s.min_free_disk_mb == u64::MAX);
        assert!(s.low_on_disk().is_some_and(|why| why.contains("below its floor")), "{s:?}");
    }
}

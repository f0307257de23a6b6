//! The `ipdc-agent` binary: flags and environment → [`AgentConfig`], then the
//! agent's event loop until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipdc_agent::AgentConfig;
use ipdc_common::mqtt::BrokerAddr;

#[derive(Parser, Debug)]
#[command(name = "ipdc-agent", version, about = "IPDC agent: runs MapReduce tasks next to an IPFS node")]
struct Args {
    /// MQTT broker of the cluster.
    #[arg(long, env = "IPDC_BROKER", default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// The kubo RPC API of this board's IPFS node.
    #[arg(long, env = "IPDC_IPFS", default_value = "http://127.0.0.1:5001")]
    ipfs: String,
    /// Cluster name: topics live under ipdc/<cluster>/.
    #[arg(long, env = "IPDC_CLUSTER", default_value = "default")]
    cluster: String,
    /// This agent's name in the cluster [default: the host name].
    #[arg(long, env = "IPDC_AGENT_NAME")]
    name: Option<String>,
    /// Tasks run at once [default: the number of cores].
    #[arg(long, env = "IPDC_SLOTS")]
    slots: Option<u32>,
    /// Most memory one task's buffers may use, MiB.
    #[arg(long, env = "IPDC_MEMORY_MB", default_value_t = 256)]
    memory_mb: u64,
    /// Folder for the tasks' temporary files [default: $TMPDIR/ipdc-agent/<name>].
    #[arg(long, env = "IPDC_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Python interpreter for Map.py/Reduce.py, or "none" to run only native executors.
    #[arg(long, env = "IPDC_PYTHON", default_value = "python3")]
    python: String,
    /// Seconds between status reports.
    #[arg(long, env = "IPDC_HEARTBEAT_SECS", default_value_t = 5)]
    heartbeat_secs: u64,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_string())
}

fn config(args: Args) -> Result<AgentConfig, String> {
    let broker = BrokerAddr::parse(&args.broker)?;
    let name = args.name.unwrap_or_else(host_name);
    let mut c = AgentConfig::local_defaults(&name, broker, &args.ipfs);
    c.cluster = args.cluster;
    if let Some(s) = args.slots {
        c.slots = s.max(1);
    }
    c.memory_mb = args.memory_mb.max(1);
    if let Some(w) = args.work_dir {
        c.work_dir = w;
    }
    c.python = match args.python.as_str() {
        "none" | "" => None,
        p => Some(PathBuf::from(p)),
    };
    c.heartbeat = Duration::from_secs(args.heartbeat_secs.max(1));
    Ok(c)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let result = match config(Args::parse()) {
        Ok(c) => ipdc_agent::run(c, shutdown_signal()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("ipdc-agent: {e}");
        std::process::exit(2);
    }
}

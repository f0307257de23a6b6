//! The `ipdc-agent` binary: flags, environment and the config file →
//! [`AgentConfig`], then the agent's event loop until Ctrl-C or SIGTERM (or a
//! one-screen diagnosis with `--check`).

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use ipdc_agent::config::{ConfigFile, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "ipdc-agent",
    version = ipdc_agent::BUILD,
    about = "IPDC agent: runs MapReduce tasks next to an IPFS node",
    after_help = "Precedence: flag, then environment variable, then the config file, then the default."
)]
struct Args {
    /// Config file (TOML; keys as the long flags with '_' for '-').
    #[arg(long, env = "IPDC_CONFIG", default_value = ipdc_agent::config::DEFAULT_CONFIG)]
    config: PathBuf,
    /// Test the configuration (broker, IPFS API, Python, work dir), print a diagnosis and exit.
    #[arg(long)]
    check: bool,
    /// MQTT broker of the cluster, mqtt://HOST:PORT or mqtts://HOST:PORT [default: mqtt://127.0.0.1:1883].
    #[arg(long, env = "IPDC_BROKER")]
    broker: Option<String>,
    /// User name for the broker.
    #[arg(long, env = "IPDC_USERNAME")]
    username: Option<String>,
    /// Password for the broker (prefer --password-file: flags show in the process list).
    #[arg(long, env = "IPDC_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// File holding the broker password.
    #[arg(long, env = "IPDC_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the broker's TLS certificate.
    #[arg(long, env = "IPDC_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for brokers that require one.
    #[arg(long, env = "IPDC_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "IPDC_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The kubo RPC API of this board's IPFS node [default: http://127.0.0.1:5001].
    #[arg(long, env = "IPDC_IPFS")]
    ipfs: Option<String>,
    /// Cluster name: topics live under ipdc/<cluster>/ [default: default].
    #[arg(long, env = "IPDC_CLUSTER")]
    cluster: Option<String>,
    /// This agent's name in the cluster [default: the host name].
    #[arg(long, env = "IPDC_AGENT_NAME")]
    name: Option<String>,
    /// Tasks run at once [default: the number of cores].
    #[arg(long, env = "IPDC_SLOTS")]
    slots: Option<u32>,
    /// Most memory one task's buffers may use, MiB [default: 256].
    #[arg(long, env = "IPDC_MEMORY_MB")]
    memory_mb: Option<u64>,
    /// Folder for the tasks' temporary files [default: $TMPDIR/ipdc-agent/<name>].
    #[arg(long, env = "IPDC_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Python interpreter for Map.py/Reduce.py, or "none" [default: python3].
    #[arg(long, env = "IPDC_PYTHON")]
    python: Option<String>,
    /// Seconds between status reports [default: 5].
    #[arg(long, env = "IPDC_HEARTBEAT_SECS")]
    heartbeat_secs: Option<u64>,
    /// The most wall-clock seconds a job may give one task [default: 21600].
    #[arg(long, env = "IPDC_MAX_TASK_SECS")]
    max_task_secs: Option<u64>,
    /// The most memory a job may give one task's user code, MiB [default: 2048].
    #[arg(long, env = "IPDC_MAX_TASK_MEMORY_MB")]
    max_task_memory_mb: Option<u64>,
    /// Cluster key file (`ipdc-submit keygen FILE`): only messages signed with it are obeyed.
    #[arg(long, env = "IPDC_CLUSTER_KEY")]
    cluster_key: Option<PathBuf>,
    /// Test hook: sleep this many milliseconds before every task (simulates a slow board).
    #[arg(long, hide = true, env = "IPDC_TEST_TASK_DELAY_MS")]
    test_task_delay_ms: Option<u64>,
}

impl Args {
    fn settings(&self) -> Settings {
        Settings {
            broker: self.broker.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            password_file: self.password_file.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            ipfs: self.ipfs.clone(),
            cluster: self.cluster.clone(),
            name: self.name.clone(),
            slots: self.slots,
            memory_mb: self.memory_mb,
            work_dir: self.work_dir.clone(),
            python: self.python.clone(),
            heartbeat_secs: self.heartbeat_secs,
            max_task_secs: self.max_task_secs,
            max_task_memory_mb: self.max_task_memory_mb,
            cluster_key: self.cluster_key.clone(),
        }
    }
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
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Flags win over the environment also across the password and its file
    // (clap takes both from either): a password file given as a flag beats
    // IPDC_PASSWORD.
    if matches.value_source("password") == Some(ValueSource::EnvVariable)
        && matches.value_source("password_file") == Some(ValueSource::CommandLine)
    {
        args.password = None;
    }
    // A config file named on the command line or in the environment must
    // exist; the default one may be absent.
    let named = matches.value_source("config").is_some_and(|s| s != ValueSource::DefaultValue);
    let config = ConfigFile::load(&args.config, named)
        .and_then(|file| args.settings().or(file.settings).into_config());
    let config = config.map(|mut c| {
        c.test_task_delay = std::time::Duration::from_millis(args.test_task_delay_ms.unwrap_or(0));
        c
    });
    let result = match config {
        Ok(c) if args.check => match ipdc_agent::check::run(&c).await {
            true => Ok(()),
            false => std::process::exit(1),
        },
        Ok(c) => ipdc_agent::run(c, shutdown_signal()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("ipdc-agent: {e}");
        std::process::exit(2);
    }
}

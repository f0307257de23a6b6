//! The `ipdc-agent` binary: flags, environment and the config file →
//! [`AgentConfig`], then the agent's event loop until Ctrl-C or SIGTERM (or a
//! one-screen diagnosis with `--check`).

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use ipdc_agent::config::{AgentSettings, Settings};
use ipdc_common::settings::ClusterSettings;
use ipdc_common::signal::shutdown_signal;

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
    #[command(flatten)]
    cluster: ClusterSettings,
    #[command(flatten)]
    agent: AgentSettings,
    /// Test hook: sleep this many milliseconds before every task (simulates a slow board).
    #[arg(long, hide = true, env = "IPDC_TEST_TASK_DELAY_MS")]
    test_task_delay_ms: Option<u64>,
    /// Test hook: report a wrong output CID for every task (a lying board, for the submitter's `verify`).
    #[arg(long, hide = true, env = "IPDC_TEST_LIE", value_parser = clap::builder::BoolishValueParser::new())]
    test_lie: bool,
}

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let matches = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    args.cluster.prefer_flags_over_env(&matches);
    // A config file named on the command line or in the environment must
    // exist; the default one may be absent.
    let named = matches.value_source("config").is_some_and(|s| s != ValueSource::DefaultValue);
    let flags = Settings { cluster: args.cluster.clone(), agent: args.agent.clone() };
    let config = Settings::load(&args.config, named).and_then(|file| flags.or(file).into_config());
    if args.test_lie {
        log::warn!("test hook --test-lie is on: every task's result will be a lie");
        ipdc_agent::config::set_test_lie();
    }
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

//! `ipdc-submit`: parse the command line, run the command, turn errors into
//! a message and an exit code. The work is in the modules.

mod agents;
mod broker;
mod cli;
mod controller;
mod directory;
mod hub;
mod job;
mod local;
mod output;
mod progress;
mod run;
mod settings;
mod sim;
mod store;

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};
use cli::{Cli, Command};
use ipdc_common::mqtt::MqttSettings;

/// This program's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

async fn run_command(args: cli::RunArgs) -> Result<(), String> {
    if args.local == Some(0) {
        return Err("--local 0: give the number of local agents to start, e.g. --local 4".into());
    }
    let spec = job::JobSpec::load(args.job.as_deref(), args.overrides(), args.native.clone())?;
    let mut opts = run::RunOptions { overwrite: args.overwrite, ..Default::default() };
    opts.wait = std::time::Duration::from_secs(args.wait);
    match args.local {
        Some(_) if spec.input_cid.is_some() => Err(
            "--input-cid needs a cluster's IPFS, and --local starts an empty store: give the file with --input".into(),
        ),
        Some(n) if spec.workers.is_some_and(|k| k > n) => Err(format!(
            "the job asks for {} workers but --local {n} starts {n} agents: lower --workers or raise --local",
            spec.workers.unwrap_or_default()
        )),
        Some(n) => {
            // The embedded broker serves this job alone: the default topics do.
            let cluster = "default".to_string();
            // A native job needs no Python (unless ipdc.toml says it does):
            // its agents skip finding one.
            let python = (spec.force_native.is_none() || spec.needs_python).then(|| PathBuf::from("python3"));
            let local = local::LocalCluster::start(n, &cluster, python).await?;
            let conn = run::Connection {
                key: None, // in-process agents on loopback
                mqtt: MqttSettings::plain(local.broker.clone()),
                ipfs: local.ipfs.clone(),
                cluster,
            };
            opts.local_store = Some(local.store()); // reference the input, do not send or copy it
            opts.local_agents = Some(n);
            let result = until_stopped(run::run(&spec, &conn, &opts), &spec.out).await;
            local.stop().await; // cancels the agents' tasks; the folder goes with `local`
            result
        }
        None => until_stopped(run::run(&spec, &settings::connection(&args.cluster)?, &opts), &spec.out).await,
    }
}

/// Runs `job` until it ends or the user stops it (Ctrl-C, SIGTERM). Then the
/// job is dropped where it stands: its temporary output folder is removed,
/// and its MQTT connection closes without a goodbye, so the broker publishes
/// its Last Will and the agents drop its tasks. A second signal exits at once.
async fn until_stopped(
    job: impl std::future::Future<Output = Result<(), String>>,
    out: &std::path::Path,
) -> Result<(), String> {
    let started = std::time::SystemTime::now();
    tokio::select! {
        result = job => result,
        () = hub::shutdown_signal() => {
            tokio::spawn(async {
                hub::shutdown_signal().await;
                std::process::exit(130);
            });
            // Stopped while saying goodbye to the broker: the result is whole.
            let written = std::fs::metadata(out.join("_SUCCESS")).and_then(|m| m.modified()).is_ok_and(|t| t >= started);
            if written {
                println!("stopped after the result was written; output: {}", out.display());
                return Ok(());
            }
            Err("stopped (Ctrl-C or SIGTERM): the job's tasks are dropped; no output was written".into())
        }
    }
}

#[tokio::main]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,rumqttd=off")).init();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.flag_password_file_beats_env_password(&matches);
    let result = match cli.command {
        Command::Run(args) => run_command(*args).await,
        Command::Agents(a) => match settings::connection(&a.cluster) {
            Ok(conn) => agents::list(&conn, a.json).await,
            Err(e) => Err(e),
        },
        Command::SimScheduler { agents, tasks, broker } => sim::run(agents, tasks, broker).await.map(|_| ()),
        Command::Keygen { file } => {
            let key = ipdc_common::auth::ClusterKey::generate();
            key.save(&file).map(|()| {
                println!("wrote cluster key {} (fingerprint {})", file.display(), key.fingerprint());
                println!(
                    "copy it to every agent (e.g. as /etc/ipdc/cluster.key, named by cluster_key in agent.toml) and submitter (--cluster-key {} or cluster_key in submit.toml)",
                    file.display()
                );
            })
        }
        Command::Hub(h) => match h.data {
            Some(data) => hub::run(h.mqtt, h.ipfs, data, h.keep_unpinned_hours).await,
            // A temporary folder goes when the hub stops.
            None => match tempfile::Builder::new().prefix("ipdc-hub-").tempdir() {
                Ok(dir) => hub::run(h.mqtt, h.ipfs, dir.path().to_path_buf(), h.keep_unpinned_hours).await,
                Err(e) => Err(format!("cannot create a temporary folder for the hub's store: {e}")),
            },
        },
    };
    if let Err(e) = result {
        eprintln!("ipdc-submit: {e}");
        std::process::exit(1);
    }
}

//! `ipdc-submit`: parse the command line, run the command, turn errors into
//! a message and an exit code. The work is in the modules.

use clap::{CommandFactory, FromArgMatches};
use ipdc_common::signal::shutdown_signal;
use ipdc_submit::cli::{self, Cli, Command};
use ipdc_submit::cluster::Cluster;
use ipdc_submit::{agents, hub, job, keygen, run, settings};

async fn run_command(args: cli::RunArgs) -> Result<(), String> {
    if args.no_fetch && args.local.is_some() {
        return Err("--no-fetch leaves the result in IPFS, but the store of --local keeps it unpinned, \
                    collected once later runs pass its 2 GiB: drop --no-fetch, or run on a hub or a cluster"
            .into());
    }
    let spec = job::JobSpec::load(args.job.as_deref(), args.overrides(), args.native.clone())?;
    let opts = run::RunOptions {
        overwrite: args.overwrite,
        wait: std::time::Duration::from_secs(args.wait),
        no_fetch: args.no_fetch,
        ..Default::default()
    };
    let cluster = match args.local {
        Some(n) => Cluster::start_local(n, &spec).await?,
        None => Cluster::Remote(settings::connection(&args.cluster)?),
    };
    let result = until_stopped(run::run(&spec, &cluster, &opts), &spec.out).await;
    cluster.stop().await; // --local: cancels the agents' tasks; the folder goes with it
    result
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
        () = shutdown_signal() => {
            tokio::spawn(async {
                shutdown_signal().await;
                std::process::exit(130);
            });
            // Stopped while saying goodbye to the broker: the result is whole.
            let written = std::fs::metadata(out.join("_SUCCESS")).and_then(|m| m.modified()).is_ok_and(|t| t >= started);
            if written {
                ipdc_submit::say!("stopped after the result was written; output: {}", out.display());
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
    cli.prefer_flags_over_env(&matches);
    let result = match cli.command {
        Command::Run(args) => {
            ipdc_submit::say::set_json(args.json);
            run_command(*args).await
        }
        Command::Agents(a) => match settings::connection(&a.cluster) {
            Ok(conn) => agents::list(&conn, a.json).await,
            Err(e) => Err(e),
        },
        Command::Ui(u) => match settings::connection(&u.cluster) {
            Ok(conn) => ipdc_submit::ui::run(conn, u.listen).await,
            Err(e) => Err(e),
        },
        Command::Jobs(a) => match settings::connection(&a.cluster) {
            Ok(conn) => ipdc_submit::jobs::list(&conn, a.json).await,
            Err(e) => Err(e),
        },
        Command::Cancel(c) => match settings::connection(&c.cluster) {
            Ok(conn) => ipdc_submit::jobs::cancel(&conn, &c.job).await,
            Err(e) => Err(e),
        },
        Command::Keygen(k) => keygen::run(&k),
        Command::Store(cli::StoreCommand::Gc) => ipdc_submit::cache::empty_kept_store(),
        Command::Report(r) => {
            ipdc_submit::report::rewrite(&r.outdir).map(|path| println!("{}", path.display()))
        }
        Command::Hub(h) => match h.data {
            Some(data) => hub::run(h.mqtt, h.ipfs, data, h.keep_unpinned_hours, h.nocopy_root, h.ui).await,
            // A temporary folder goes when the hub stops.
            None => match tempfile::Builder::new().prefix("ipdc-hub-").tempdir() {
                Ok(dir) => {
                    let data = dir.path().to_path_buf();
                    hub::run(h.mqtt, h.ipfs, data, h.keep_unpinned_hours, h.nocopy_root, h.ui).await
                }
                Err(e) => Err(format!("cannot create a temporary folder for the hub's store: {e}")),
            },
        },
    };
    if let Err(e) = result {
        ipdc_submit::say::event("failed", serde_json::json!({ "error": e }));
        eprintln!("ipdc-submit: {e}");
        std::process::exit(1);
    }
}

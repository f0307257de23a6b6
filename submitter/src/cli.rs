//! Command-line arguments of `ipdc-submit`, and turning them into the
//! validated settings the commands take.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipdc_common::settings::ClusterSettings;

#[derive(Parser, Debug)]
#[command(
    name = "ipdc-submit",
    version,
    about = "IPDC: run MapReduce jobs (Map.py/Reduce.py) on a fleet of small devices over IPFS and MQTT",
    after_help = "Quick start:  ipdc-submit run --local 4 examples/wordcount"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a job and write its result into the output folder.
    Run(Box<RunArgs>),
    /// List the agents of the cluster and what they can do.
    Agents(AgentsArgs),
    /// Run the embedded MQTT broker and IPFS content store as a service.
    Hub(HubArgs),
    /// Make node keys: one (FILE), or a whole small cluster's (--cluster DIR) with its trust file.
    Keygen(KeygenArgs),
    /// The store `--local` runs keep between runs (~/.cache/ipdc/local-store).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Serve a live web dashboard of the cluster: agents, jobs, each job's timeline.
    Ui(UiArgs),
    /// List the jobs running on the cluster: who runs them, how far they are.
    Jobs(AgentsArgs),
    /// Ask a running job's submitter to stop it (no output is written).
    Cancel(CancelArgs),
    /// Write a finished job's report (OUTDIR/summary.html) again from its summary.json.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct UiArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Address to serve the page on (loopback unless told otherwise: anyone who reaches it sees the cluster).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The job's id, as `ipdc-submit jobs` lists it.
    pub job: String,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The job's output folder (it holds summary.json).
    pub outdir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Empty it: every result and object that earlier --local runs kept, and the task cache's index (of every cluster).
    Gc,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  ipdc-submit keygen --cluster keys --agents pi-1,pi-2,pi-3   (keys/trust, keys/<name>.key; copy to each node)\n  ipdc-submit keygen --cluster keys --agents pi-4            (adds a board to keys/trust)\n  ipdc-submit keygen /etc/ipdc/node.key --agent pi-5         (one key; prints its trust line)"
)]
pub struct KeygenArgs {
    /// Write one key here (never replaces a file) and print its line for the trust file.
    #[arg(required_unless_present = "cluster", conflicts_with = "cluster")]
    pub file: Option<PathBuf>,
    /// With FILE: the key is the agent NAME's.
    #[arg(long, value_name = "NAME", conflicts_with = "submitter")]
    pub agent: Option<String>,
    /// With FILE: the key is the submitter NAME's [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub submitter: Option<String>,
    /// Make a key for each node named by --agents and --submitters in DIR (NAME.key), and list them in DIR/trust (added to it when it exists).
    #[arg(long, value_name = "DIR")]
    pub cluster: Option<PathBuf>,
    /// With --cluster: the agents, comma-separated.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', requires = "cluster")]
    pub agents: Vec<String>,
    /// With --cluster: the submitters, comma-separated [default: this host's name, when DIR/trust is new].
    #[arg(long, value_name = "NAMES", value_delimiter = ',', requires = "cluster")]
    pub submitters: Vec<String>,
}

/// Where the cluster is (shared by `run` and `agents`). Each setting falls
/// back to the environment, then to `~/.config/ipdc/submit.toml`, then to
/// the default.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Config file with these settings [default: ~/.config/ipdc/submit.toml].
    #[arg(long, env = "IPDC_SUBMIT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: ClusterSettings,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Job folder with ipdc.toml, Map.py, Reduce.py and data.dat.
    pub job: Option<PathBuf>,
    /// Start an embedded broker, store and N agents in this process and run there.
    #[arg(long, value_name = "N")]
    pub local: Option<usize>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Input file, folder or glob; repeat for more (overrides `input` in ipdc.toml) [default: <job>/data.dat].
    #[arg(long)]
    pub input: Vec<PathBuf>,
    /// Run on a file already in IPFS (added with `ipfs add`, any CID version) instead of uploading one; repeat for more.
    #[arg(long, value_name = "CID", conflicts_with = "input")]
    pub input_cid: Vec<String>,
    /// A side file or folder placed beside the code on every agent; repeat for more (added to `files`).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// A job parameter, user code's `ipdc.params[KEY]` (VALUE as JSON, else a string); repeatable, over `[params]`.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = crate::job::parse_param)]
    pub params: Vec<(String, serde_json::Value)>,
    /// Mapper file (overrides `map`) [default: <job>/Map.py].
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Reducer file (overrides `reduce`) [default: <job>/Reduce.py].
    #[arg(long)]
    pub reduce: Option<PathBuf>,
    /// Number of agents K to use (overrides `workers`; default: all capable, or N with --local).
    #[arg(long, short = 'k')]
    pub workers: Option<usize>,
    /// Number of reduce tasks R, one output part each (overrides `reducers`) [default: 1].
    #[arg(long, short = 'r')]
    pub reducers: Option<u32>,
    /// Run the combiner on each map's output (overrides `combiner`; default: off).
    #[arg(long, overrides_with = "no_combiner")]
    pub combiner: bool,
    /// Do not run a combiner.
    #[arg(long)]
    pub no_combiner: bool,
    /// Run this native executor instead of Python on every agent (e.g. wordcount).
    #[arg(long, value_name = "NAME")]
    pub native: Option<String>,
    /// Native executor for agents without Python (overrides `native` in ipdc.toml).
    #[arg(long, value_name = "NAME")]
    pub native_fallback: Option<String>,
    /// Memory budget per task for sort/spill buffers, MiB (overrides `memory_mb`) [default: 64].
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Output folder (overrides `output`) [default: <job>/output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not run backup attempts of straggling tasks (overrides `speculative`).
    #[arg(long)]
    pub no_speculative: bool,
    /// Run every task, reusing no output of an earlier run and recording none (overrides `cache`).
    #[arg(long)]
    pub no_cache: bool,
    /// Wall-clock limit of each task's user code, seconds (overrides `task_timeout_secs`) [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub task_timeout: Option<u64>,
    /// Memory limit of each task's user code, MiB (overrides `task_memory_mb`) [default: 1024].
    #[arg(long, value_name = "MB")]
    pub task_memory_mb: Option<u64>,
    /// Verified results: run each task on N different agents and count it when they agree (overrides `verify`; 1: no check) [default: 1]; a fraction (e.g. 0.1) spot-checks that share of the tasks on two agents.
    #[arg(long, value_name = "N")]
    pub verify: Option<crate::job::Verify>,
    /// Replace an earlier result (a folder holding _SUCCESS) at the output path, once the new one is complete.
    #[arg(long)]
    pub overwrite: bool,
    /// Leave the result in IPFS, pinned on this machine's node, and write only summary.json (with its output_cid) and _SUCCESS.
    #[arg(long)]
    pub no_fetch: bool,
    /// Print JSON lines on stdout (`started`, `progress`, then `done` with the summary, or `failed`), for scripts; the usual text goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for enough capable agents.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub wait: u64,
}

impl RunArgs {
    pub fn overrides(&self) -> crate::job::Overrides {
        crate::job::Overrides {
            input: self.input.clone(),
            input_cid: self.input_cid.clone(),
            files: self.files.clone(),
            params: self.params.clone(),
            map: self.map.clone(),
            reduce: self.reduce.clone(),
            // `--local N` is a flag: it beats `workers` in ipdc.toml (all N
            // local agents work), and `--workers K` beats it.
            workers: self.workers.or(self.local),
            reducers: self.reducers,
            combiner: if self.combiner {
                Some(true)
            } else if self.no_combiner {
                Some(false)
            } else {
                None
            },
            native: self.native_fallback.clone(),
            memory_mb: self.memory_mb,
            out: self.out.clone(),
            speculative: self.no_speculative.then_some(false),
            cache: self.no_cache.then_some(false),
            task_timeout_secs: self.task_timeout,
            task_memory_mb: self.task_memory_mb,
            verify: self.verify,
        }
    }
}

impl Cli {
    /// See [`ClusterSettings::prefer_flags_over_env`]; `matches`: the ones
    /// this was parsed from.
    pub fn prefer_flags_over_env(&mut self, matches: &clap::ArgMatches) {
        let cluster = match &mut self.command {
            Command::Run(a) => &mut a.cluster,
            Command::Agents(a) | Command::Jobs(a) => &mut a.cluster,
            Command::Cancel(c) => &mut c.cluster,
            Command::Ui(u) => &mut u.cluster,
            _ => return,
        };
        if let Some((_, sub)) = matches.subcommand() {
            cluster.settings.prefer_flags_over_env(sub);
        }
    }
}

#[derive(Args, Debug)]
pub struct AgentsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct HubArgs {
    /// Address of the MQTT broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: SocketAddr,
    /// Address of the IPFS RPC API.
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub ipfs: SocketAddr,
    /// Folder for the stored data [default: a new temporary folder].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Remove objects added unpinned (agents' map outputs and result parts)
    /// this many hours after they were added, checked every hour; 0 keeps
    /// them. Inputs and code, added pinned, are kept.
    #[arg(long, default_value_t = 24, value_name = "HOURS")]
    pub keep_unpinned_hours: u64,
    /// Let clients add files under DIR by reference (kubo's `add --nocopy`:
    /// hashed from DIR, not copied) [default: none, nocopy is refused].
    #[arg(long, value_name = "DIR")]
    pub nocopy_root: Option<PathBuf>,
    /// Also serve the dashboard (as `ipdc-submit ui`) on this address, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub ui: Option<SocketAddr>,
}

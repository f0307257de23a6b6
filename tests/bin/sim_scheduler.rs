//! `ipdc-sim-scheduler`: the scheduler's own cost, for `bench/` (simulated
//! agents on a real broker; see `ipdc_submit::sim`). Not shipped: it lives
//! in the test crate, beside the tests that run it.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "ipdc-sim-scheduler", about = "The scheduler's cost with simulated agents (see bench/)")]
struct Args {
    #[arg(long, default_value_t = 200)]
    agents: usize,
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Use this broker instead of the embedded one.
    #[arg(long)]
    broker: Option<String>,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    if let Err(e) = ipdc_submit::sim::run(a.agents, a.tasks, a.broker).await {
        eprintln!("ipdc-sim-scheduler: {e}");
        std::process::exit(1);
    }
}

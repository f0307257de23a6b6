//! `ipdc-submit`'s library: everything the binary (`main.rs`) runs.
//!
//! - [`cli`]: the command line; [`settings`]: the cluster settings, validated.
//! - [`cluster`]: where a job runs (a cluster of boards, or `--local N`), decided once.
//! - [`job`]: the job folder and `ipdc.toml`, validated into a `JobSpec`.
//! - [`run`]: one job as a pipeline (session, picking agents, upload, the
//!   driver loop, the summary); [`controller`]: its decisions, as a pure state machine.
//! - [`directory`]: the agents known from their statuses, and which can work.
//! - [`output`]: the output folder, written whole or not at all; [`report`]: its `summary.html`.
//! - [`progress`]: the progress bar and lines.
//! - [`agents`]: `ipdc-submit agents`; [`jobs`]: `jobs` and `cancel`; [`keygen`]: `ipdc-submit keygen`.
//! - [`hub`], [`broker`], [`store`]: the embedded MQTT broker and IPFS content store.
//! - [`local`]: `--local N`, a whole cluster in this process.
//! - [`ui`]: `ipdc-submit ui`, the live dashboard.
//! - [`task_cache`]: finished tasks' outputs, found again by what decides them.
//! - [`sim`]: the scheduler simulation (for `bench/`; not a command of the binary).

pub mod agents;
pub mod broker;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod directory;
pub mod hub;
pub mod inputs;
pub mod job;
pub mod jobs;
pub mod keygen;
pub mod local;
pub mod output;
pub mod progress;
pub mod report;
pub mod run;
pub mod say;
pub mod settings;
pub mod sim;
pub mod store;
pub mod task_cache;
pub mod ui;

/// This program's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

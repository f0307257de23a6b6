//! A job's description: `ipdc.toml` in the job folder, overridden by flags,
//! validated once into a [`JobSpec`] that names every file it will use.

use std::path::{Path, PathBuf};

use ipdc_common::protocol::Compression;
use serde::{Deserialize, Serialize};

use crate::controller::{Verification, spot_check};
use crate::inputs::{self, NamedFile};

/// `ipdc.toml`. Every key is optional; paths are relative to the job folder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// Job name, the prefix of its id (default: the folder's name).
    pub name: Option<String>,
    /// The input: a file, a folder, a glob, or a list of these (default: data.dat).
    pub input: Option<OneOrMany>,
    /// How map reads the input: "lines" (`map(line)`, the default) or
    /// "files" (`map(name, data)` once per whole file).
    pub input_format: Option<String>,
    /// Side files and folders placed beside the code on every agent.
    pub files: Option<Vec<PathBuf>>,
    /// The job's parameters, user code's `ipdc.params`.
    pub params: Option<toml::Table>,
    /// The mapper (default: Map.py).
    pub map: Option<PathBuf>,
    /// The reducer (default: Reduce.py).
    pub reduce: Option<PathBuf>,
    /// Agents to use, K (default: every capable agent online).
    pub workers: Option<usize>,
    /// Reduce tasks, R, one output part each (default: 1).
    pub reducers: Option<u32>,
    /// Run the combiner on each map's output (default: false).
    pub combiner: Option<bool>,
    /// Native executor for agents without Python, e.g. "wordcount".
    pub native: Option<String>,
    /// Memory budget per task for sort/spill buffers, MiB (default: 64).
    pub memory_mb: Option<u64>,
    /// Only agents with at least this much free memory, MiB.
    pub min_memory_mb: Option<u64>,
    /// Only agents with Python (default: when the job names no native fallback).
    pub needs_python: Option<bool>,
    /// Only agents of this architecture (as `uname -m` / Rust names it: x86_64, aarch64, arm).
    pub arch: Option<String>,
    /// Only agents whose Python imports these modules (e.g. ["numpy", "PIL"]).
    pub python_modules: Option<Vec<String>>,
    /// Output folder (default: output, inside the job folder).
    pub output: Option<PathBuf>,
    /// Run backup attempts of straggling tasks (default: true).
    pub speculative: Option<bool>,
    /// Reuse the outputs of tasks run before (the task cache; default:
    /// true). False for code whose output is not decided by its input.
    pub cache: Option<bool>,
    /// Wall-clock limit of one task attempt's user code, seconds (default: 3600).
    pub task_timeout_secs: Option<u64>,
    /// Memory limit of one task attempt's user code, MiB (default: 1024).
    pub task_memory_mb: Option<u64>,
    /// Verified results: run each task on this many agents (an integer, 1:
    /// no check), or spot-check this share of the tasks on two (a fraction
    /// in (0, 1)). See [`Verify`].
    pub verify: Option<toml::Value>,
    /// A multi-step job: `[[step]]` tables, run in order, each step's
    /// output the next one's input.
    pub step: Option<Vec<StepFile>>,
}

/// One `[[step]]` of a multi-step job.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// The step's mapper (required).
    pub map: Option<PathBuf>,
    /// The step's reducer (required unless `reducers = 0`).
    pub reduce: Option<PathBuf>,
    pub reducers: Option<u32>,
    pub combiner: Option<bool>,
    /// Over the job's `[params]`.
    pub params: Option<toml::Table>,
    /// Side files of this step, beside the job's `files`.
    pub files: Option<Vec<PathBuf>>,
}

/// What a step changes of the job it belongs to.
#[derive(Debug, Clone)]
pub struct StepSpec {
    pub map_py: PathBuf,
    pub reduce_py: PathBuf,
    pub reducers: u32,
    pub combiner: bool,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub side_files: Vec<NamedFile>,
}

/// How a job's map reads its input (`input_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// `map(line)` once per line; files are cut into splits.
    #[default]
    Lines,
    /// `map(name, data)` once per whole file; files are grouped into tasks.
    Files,
    /// `map(key, value)` once per pair the step before wrote (a later step
    /// of a multi-step job; not a key of `ipdc.toml`).
    Pairs,
}

impl InputFormat {
    fn parse(s: &str) -> Result<InputFormat, String> {
        match s {
            "lines" => Ok(InputFormat::Lines),
            "files" => Ok(InputFormat::Files),
            _ => Err(format!(
                "input_format = {s:?}: use \"lines\" (the default: map(line) once per line) or \"files\" (map(name, data) once per whole file)"
            )),
        }
    }
}

/// A path or a list of paths, as `input` takes them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<PathBuf> {
        match self {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The most bytes of a job's parameters as JSON (see the agent's own limit).
pub const MAX_PARAMS_BYTES: usize = ipdc_agent::task::MAX_PARAMS_BYTES;

/// `--param KEY=VALUE`: VALUE as JSON when it parses, else as a string.
pub fn parse_param(s: &str) -> Result<(String, serde_json::Value), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
            Ok((k.trim().to_string(), value))
        }
        _ => Err(format!("--param {s:?} is not KEY=VALUE: give e.g. --param k=3 or --param name=alice")),
    }
}

/// `verify` in ipdc.toml / `--verify`: how much of the job's work is done
/// twice (or more) to check the agents' results against each other.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Verify {
    /// Each task runs on this many different agents, and its result counts
    /// when they agree (1: the first result counts, nothing is checked).
    Agents(u32),
    /// A spot check: this share of the tasks (at least one), chosen at
    /// random, runs on two agents; the others once.
    SpotCheck(f64),
}

impl Default for Verify {
    fn default() -> Self {
        Verify::Agents(1)
    }
}

impl std::fmt::Display for Verify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verify::Agents(n) => write!(f, "{n}"),
            Verify::SpotCheck(x) => write!(f, "{x}"),
        }
    }
}

/// What `verify` takes, for error messages.
const VERIFY_HELP: &str = "give the number of agents each task runs on (1: no check; 2 or more: their results must agree) \
     or a fraction between 0 and 1 to spot-check that share of the tasks on two agents";

impl std::str::FromStr for Verify {
    type Err = String;

    /// `2` or `0.1`, as on the command line.
    fn from_str(s: &str) -> Result<Verify, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<i64>() {
            return Verify::from_int(n, s);
        }
        match s.parse::<f64>() {
            Ok(x) => Verify::from_float(x, s),
            Err(_) => Err(format!("verify = {s:?}: {VERIFY_HELP}")),
        }
    }
}

impl Verify {
    fn from_int(n: i64, shown: &str) -> Result<Verify, String> {
        match u32::try_from(n) {
            Ok(n) if n >= 1 => Ok(Verify::Agents(n)),
            _ => Err(format!("verify = {shown}: {VERIFY_HELP}")),
        }
    }

    fn from_float(x: f64, shown: &str) -> Result<Verify, String> {
        if x > 0.0 && x < 1.0 {
            Ok(Verify::SpotCheck(x))
        } else if x >= 1.0 && x.fract() == 0.0 && x <= u32::MAX as f64 {
            Ok(Verify::Agents(x as u32))
        } else {
            Err(format!("verify = {shown}: {VERIFY_HELP}"))
        }
    }

    /// `verify` as ipdc.toml has it: an integer or a float.
    fn from_toml(v: &toml::Value) -> Result<Verify, String> {
        match v {
            toml::Value::Integer(n) => Verify::from_int(*n, &n.to_string()),
            toml::Value::Float(x) => Verify::from_float(*x, &x.to_string()),
            toml::Value::String(s) => Err(format!("verify = {s:?}: {VERIFY_HELP}")),
            toml::Value::Boolean(b) => Err(format!("verify = {b}: {VERIFY_HELP}")),
            other => Err(format!("verify = (a {}): {VERIFY_HELP}", other.type_str())),
        }
    }

    /// Different agents the job needs at least.
    pub fn agents_needed(&self) -> usize {
        match self {
            Verify::Agents(n) => *n as usize,
            Verify::SpotCheck(_) => 2,
        }
    }

    /// Whether any result is checked.
    pub fn checks(&self) -> bool {
        *self != Verify::Agents(1)
    }

    /// The controller's plan for a job of `maps` and `reducers` tasks; a
    /// spot check's tasks are chosen by `seed` (from the OS's random source,
    /// so the agents cannot tell which will be checked).
    pub fn plan(&self, maps: usize, reducers: u32, seed: u64) -> Verification {
        match *self {
            Verify::Agents(n) => Verification::Every(n),
            Verify::SpotCheck(fraction) => {
                Verification::Spot { fraction, tasks: spot_check(maps, reducers, fraction, seed) }
            }
        }
    }
}

/// Flags of `ipdc-submit run` that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--input`, repeatable (empty: none given).
    pub input: Vec<PathBuf>,
    /// `--input-cid`, repeatable.
    pub input_cid: Vec<String>,
    /// `--file`, repeatable: added to `files`.
    pub files: Vec<PathBuf>,
    /// `--param KEY=VALUE`, repeatable: over `[params]`.
    pub params: Vec<(String, serde_json::Value)>,
    pub map: Option<PathBuf>,
    pub reduce: Option<PathBuf>,
    pub workers: Option<usize>,
    pub reducers: Option<u32>,
    pub combiner: Option<bool>,
    pub native: Option<String>,
    pub memory_mb: Option<u64>,
    pub out: Option<PathBuf>,
    pub speculative: Option<bool>,
    pub cache: Option<bool>,
    pub task_timeout_secs: Option<u64>,
    pub task_memory_mb: Option<u64>,
    pub verify: Option<Verify>,
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    /// The job folder (`.` when none was given).
    pub folder: PathBuf,
    /// The input as given (files, folders, globs).
    pub input: Vec<PathBuf>,
    /// The files it stands for, in order (empty with `--input-cid`).
    pub input_files: Vec<NamedFile>,
    /// Inputs already in IPFS (`--input-cid`): nothing is uploaded.
    pub input_cids: Vec<String>,
    pub input_format: InputFormat,
    /// Side files, placed under their names beside the code.
    pub side_files: Vec<NamedFile>,
    /// The job's parameters.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub map_py: PathBuf,
    pub reduce_py: PathBuf,
    pub workers: Option<usize>,
    pub reducers: u32,
    pub combiner: bool,
    /// `--native NAME`: every agent runs this native executor.
    pub force_native: Option<String>,
    /// `native = NAME` in ipdc.toml: agents without Python run it.
    pub native_fallback: Option<String>,
    pub memory_mb: u64,
    pub min_memory_mb: u64,
    pub needs_python: bool,
    pub arch: Option<String>,
    /// Modules every picked agent's Python must import.
    pub python_modules: Vec<String>,
    pub out: PathBuf,
    pub speculative: bool,
    /// Use the task cache (`cache` in ipdc.toml, `--no-cache`).
    pub cache: bool,
    pub task_timeout_secs: u64,
    pub task_memory_mb: u64,
    pub verify: Verify,
    /// A multi-step job's steps (empty: one step, the fields above).
    pub steps: Vec<StepSpec>,
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Native executors agents have.
pub const NATIVE_EXECUTORS: &[&str] = &["wordcount"];

impl JobSpec {
    /// Reads `dir/ipdc.toml` (if any), applies the flags and checks every file.
    /// `dir` None is the current folder, as a job folder like any other.
    pub fn load(dir: Option<&Path>, o: Overrides, force_native: Option<String>) -> Result<JobSpec, String> {
        let base = dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        if let Some(d) = dir
            && !d.is_dir()
        {
            return Err(format!(
                "job folder {} not found: give a folder with ipdc.toml, Map.py and Reduce.py",
                d.display()
            ));
        }
        let file_path = base.join("ipdc.toml");
        let mut file: JobFile = if file_path.exists() {
            let text = std::fs::read_to_string(&file_path)
                .map_err(|e| format!("cannot read {}: {e}", file_path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", file_path.display()))?
        } else {
            JobFile::default()
        };
        let step_files = file.step.take().unwrap_or_default();
        if !step_files.is_empty() {
            let top = [
                ("map", file.map.is_some() || o.map.is_some()),
                ("reduce", file.reduce.is_some() || o.reduce.is_some()),
                ("reducers", file.reducers.is_some() || o.reducers.is_some()),
                ("combiner", file.combiner.is_some() || o.combiner.is_some()),
            ];
            if let Some((key, _)) = top.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{}: a job with [[step]] tables sets `{key}` in each step, not for the whole job (nor with --{key})",
                    file_path.display()
                ));
            }
        }
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let input = if !o.input.is_empty() {
            o.input
        } else if let Some(given) = file.input {
            given.into_vec().into_iter().map(rel).collect()
        } else {
            vec![base.join("data.dat")]
        };
        let side: Vec<PathBuf> = file.files.unwrap_or_default().into_iter().map(rel).chain(o.files).collect();
        let mut params = serde_json::Map::new();
        for (k, v) in file.params.unwrap_or_default() {
            let v =
                serde_json::to_value(v).map_err(|e| format!("{}: [params] {k}: {e}", file_path.display()))?;
            params.insert(k, v);
        }
        params.extend(o.params);
        let map_py = o.map.or(file.map.map(rel)).unwrap_or_else(|| base.join("Map.py"));
        let reduce_py = o.reduce.or(file.reduce.map(rel)).unwrap_or_else(|| base.join("Reduce.py"));
        let out = o.out.or(file.output.map(rel)).unwrap_or_else(|| base.join("output"));
        let name = file
            .name
            .or_else(|| {
                let abs = std::fs::canonicalize(&base).ok()?;
                abs.file_name().map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "job".to_string());
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
            .take(32)
            .collect();
        let native_fallback = o.native.or(file.native);
        for n in force_native.iter().chain(native_fallback.iter()) {
            if !NATIVE_EXECUTORS.contains(&n.as_str()) {
                return Err(format!(
                    "unknown native executor {n:?}: agents have {}",
                    NATIVE_EXECUTORS.join(", ")
                ));
            }
        }
        let verify = match (o.verify, &file.verify) {
            (Some(v), _) => v,
            (None, Some(v)) => Verify::from_toml(v).map_err(|e| format!("{}: {e}", file_path.display()))?,
            (None, None) => Verify::default(),
        };
        let python_modules = file.python_modules.unwrap_or_default();
        let needs_python = file
            .needs_python
            .unwrap_or(force_native.is_none() && (native_fallback.is_none() || !python_modules.is_empty()));
        let spec = JobSpec {
            name,
            folder: base.clone(),
            input,
            input_files: Vec::new(),
            input_cids: o.input_cid,
            input_format: match &file.input_format {
                Some(f) => InputFormat::parse(f).map_err(|e| format!("{}: {e}", file_path.display()))?,
                None => InputFormat::Lines,
            },
            side_files: Vec::new(),
            params,
            map_py,
            reduce_py,
            workers: o.workers.or(file.workers),
            reducers: o.reducers.or(file.reducers).unwrap_or(1),
            combiner: o.combiner.or(file.combiner).unwrap_or(false),
            force_native,
            native_fallback,
            memory_mb: o.memory_mb.or(file.memory_mb).unwrap_or(64),
            min_memory_mb: file.min_memory_mb.unwrap_or(0),
            needs_python,
            arch: file.arch,
            python_modules,
            out,
            speculative: o.speculative.or(file.speculative).unwrap_or(true),
            cache: o.cache.or(file.cache).unwrap_or(true),
            task_timeout_secs: o.task_timeout_secs.or(file.task_timeout_secs).unwrap_or(3600),
            task_memory_mb: o.task_memory_mb.or(file.task_memory_mb).unwrap_or(1024),
            verify,
            steps: Vec::new(),
        };
        let mut spec = spec;
        for (i, st) in step_files.into_iter().enumerate() {
            let at = |e: String| format!("{}: step {}: {e}", file_path.display(), i + 1);
            let Some(map) = st.map else { return Err(at("give its mapper: map = \"...py\"".into())) };
            let reducers = st.reducers.unwrap_or(1);
            let reduce = match (st.reduce, reducers) {
                (Some(r), _) => rel(r),
                (None, 0) => spec.reduce_py.clone(),
                (None, _) => {
                    return Err(at("give its reducer (reduce = \"...py\"), or set reducers = 0".into()));
                }
            };
            let mut params = spec.params.clone();
            for (k, v) in st.params.unwrap_or_default() {
                params.insert(
                    k.clone(),
                    serde_json::to_value(v).map_err(|e| at(format!("[params] {k}: {e}")))?,
                );
            }
            let extra: Vec<PathBuf> = st.files.unwrap_or_default().into_iter().map(rel).collect();
            let side_files = inputs::expand(
                &side.iter().cloned().chain(extra).collect::<Vec<_>>(),
                &spec.folder,
                "side file",
            )
            .map_err(at)?;
            spec.steps.push(StepSpec {
                map_py: rel(map),
                reduce_py: reduce,
                reducers,
                combiner: st.combiner.unwrap_or(false),
                params,
                side_files,
            });
        }
        if let Some(first) = spec.steps.first().cloned() {
            spec.map_py = first.map_py;
            spec.reduce_py = first.reduce_py;
            spec.reducers = first.reducers;
            spec.combiner = first.combiner;
            spec.params = first.params;
        }
        spec.check()?;
        for (i, step) in spec.steps().iter().enumerate().skip(1) {
            step.check().map_err(|e| format!("{}: step {}: {e}", file_path.display(), i + 1))?;
        }
        if spec.input_cids.is_empty() {
            spec.input_files = inputs::expand(&spec.input, &spec.folder, "input")?;
            spec.check_input_files()?;
        }
        spec.side_files = inputs::expand(&side, &spec.folder, "side file")?;
        spec.check_side_files()?;
        spec.check_params()?;
        spec.check_python_modules().map_err(|e| format!("{}: {e}", file_path.display()))?;
        Ok(spec)
    }

    /// The job's steps, each as a job of its own: its code, reducers,
    /// parameters and side files; every step after the first reads the
    /// pairs of the one before.
    pub fn steps(&self) -> Vec<JobSpec> {
        if self.steps.is_empty() {
            return vec![self.clone()];
        }
        self.steps
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let mut spec = self.clone();
                spec.steps = Vec::new();
                spec.map_py = st.map_py.clone();
                spec.reduce_py = st.reduce_py.clone();
                spec.reducers = st.reducers;
                spec.combiner = st.combiner;
                spec.params = st.params.clone();
                spec.side_files = st.side_files.clone();
                if i > 0 {
                    spec.input_format = InputFormat::Pairs;
                    spec.needs_python = true;
                    spec.input_files = Vec::new();
                    spec.input_cids = Vec::new();
                }
                spec
            })
            .collect()
    }

    /// Whether an empty input file is a map input (a per-file job maps every
    /// file) rather than nothing to read.
    pub fn maps_empty_files(&self) -> bool {
        self.input_format == InputFormat::Files
    }

    /// Inputs of the job's files: some bytes, and not more files than map tasks may be.
    fn check_input_files(&self) -> Result<(), String> {
        let total: u64 = self.input_files.iter().map(|f| f.size).sum();
        if total == 0 {
            let given: Vec<String> = self.input.iter().map(|p| p.display().to_string()).collect();
            return Err(format!("input {} is empty: there is nothing to map", given.join(", ")));
        }
        if self.input_format == InputFormat::Files {
            let most = (self.task_memory_mb << 20) / 2;
            if let Some(big) = self.input_files.iter().find(|f| f.size > most) {
                return Err(format!(
                    "input file {} is {}, more than half the memory a task's code may use (task_memory_mb = {}), \
                     and input_format = \"files\" hands map() a whole file: raise task_memory_mb or split the file",
                    big.path.display(),
                    crate::run::human_bytes(big.size),
                    self.task_memory_mb
                ));
            }
            return Ok(());
        }
        if self.force_native.is_some()
            && let Some(gz) = self
                .input_files
                .iter()
                .find(|f| crate::run::upload::compression_of(&f.path) == Some(Compression::Gzip))
        {
            return Err(format!(
                "input {} is gzip-compressed, which the native executors cannot read: run it with Python (drop --native)",
                gz.path.display()
            ));
        }
        let files = self.input_files.iter().filter(|f| f.size > 0).count();
        if files > crate::run::MAX_MAP_TASKS {
            return Err(format!(
                "the input has {files} files, more than the {} map tasks a job may have (one per file at least): join small files first, or run several jobs",
                crate::run::MAX_MAP_TASKS
            ));
        }
        Ok(())
    }

    /// Side files: names the agents accept, within the size limit, not the code itself.
    fn check_side_files(&mut self) -> Result<(), String> {
        let (map_name, reduce_name) = (file_name(&self.map_py), file_name(&self.reduce_py));
        let code = [std::fs::canonicalize(&self.map_py).ok(), std::fs::canonicalize(&self.reduce_py).ok()];
        // The code is sent anyway: listing it (files = ["*.py"]) is no error.
        self.side_files.retain(|f| !code.contains(&std::fs::canonicalize(&f.path).ok()));
        let mut total = 0u64;
        for f in &self.side_files {
            if !ipdc_common::protocol::is_safe_relative_path(&f.name) {
                return Err(format!(
                    "side file {} would be {:?} on the agents, which they refuse: use names of letters, digits and ._-+@ (no spaces, none starting with a dot), at most 8 folders deep",
                    f.path.display(),
                    f.name
                ));
            }
            let top = f.name.split('/').next().unwrap_or_default();
            if top == map_name || top == reduce_name || top == ipdc_common::python::RUNNER_FILE_NAME {
                return Err(format!(
                    "side file {} has the name of the job's code ({top}) on the agents: rename it",
                    f.path.display()
                ));
            }
            total += f.size;
        }
        let max = ipdc_agent::task::MAX_SIDE_FILE_BYTES;
        if total > max {
            return Err(format!(
                "the side files hold {} in all, more than the {} an agent takes: put large data in the input instead",
                crate::run::human_bytes(total),
                crate::run::human_bytes(max)
            ));
        }
        Ok(())
    }

    /// Parameters within what the agents take.
    fn check_python_modules(&self) -> Result<(), String> {
        use ipdc_common::protocol::{MAX_PYTHON_MODULES, is_module_name};
        if let Some(bad) = self.python_modules.iter().find(|m| !is_module_name(m)) {
            return Err(format!(
                "python_modules: {bad:?} is not a Python module name (dotted identifiers such as \"numpy\" or \"PIL.Image\": what `import` takes, not a pip package name)"
            ));
        }
        if self.python_modules.len() > MAX_PYTHON_MODULES {
            return Err(format!(
                "python_modules names {} modules, more than {MAX_PYTHON_MODULES}: name the top-level packages the job imports",
                self.python_modules.len()
            ));
        }
        if !self.python_modules.is_empty() && self.force_native.is_some() {
            return Err("python_modules names what the job's Python code imports, but --native runs no Python: drop one of them".into());
        }
        Ok(())
    }

    fn check_params(&self) -> Result<(), String> {
        let params = serde_json::to_string(&self.params).expect("JSON values serialize");
        if params.len() > MAX_PARAMS_BYTES {
            return Err(format!(
                "the job's parameters take {} bytes as JSON, more than {MAX_PARAMS_BYTES}: put large data in a side file (`files` in ipdc.toml)",
                params.len()
            ));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        if self.reducers > 10_000 {
            return Err(format!("reducers = {}: use 0 (a map-only job) to 10000", self.reducers));
        }
        if self.reducers == 0 && self.combiner {
            return Err("combiner = true with reducers = 0: a map-only job has no reduce for a combiner to work for; drop one of them".into());
        }
        if self.reducers == 0 && self.force_native.is_some() {
            return Err("reducers = 0 (a map-only job) runs Python's map(); the native executors count words for a reduce: drop --native or set reducers".into());
        }
        if self.input_format == InputFormat::Pairs && self.force_native.is_some() {
            return Err("a later step runs Python's map(key, value) on the pairs of the step before; the native executors read lines: drop --native".into());
        }
        if self.input_format == InputFormat::Files && self.force_native.is_some() {
            return Err("input_format = \"files\" runs Python's map(name, data) on each file; the native executors read lines: drop --native".into());
        }
        if self.workers == Some(0) {
            return Err("workers = 0: a job needs at least one agent".into());
        }
        if let Some(k) = self.workers
            && k < self.verify.agents_needed()
        {
            return Err(format!(
                "verify = {} runs tasks on {} different agents, but workers = {k}: ask for at least {} workers or lower verify",
                self.verify,
                self.verify.agents_needed(),
                self.verify.agents_needed()
            ));
        }
        if self.task_timeout_secs == 0 {
            return Err("task_timeout_secs = 0: give each attempt at least 1 second".into());
        }
        let min_task_mb = ipdc_common::python::MIN_MEMORY_BYTES >> 20;
        if self.task_memory_mb < min_task_mb {
            return Err(format!(
                "task_memory_mb = {}: the smallest memory limit for user code is {min_task_mb} MiB (Python needs that much to start); give {min_task_mb} or more",
                self.task_memory_mb
            ));
        }
        if self.memory_mb == 0 {
            return Err("memory_mb = 0: give the tasks at least 1 MiB".into());
        }
        for cid in &self.input_cids {
            if cid.is_empty() || !cid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("--input-cid {cid:?} is not a CID: give the CID `ipfs add` printed"));
            }
        }
        if self.force_native.is_none() {
            for (what, path) in [("mapper", &self.map_py), ("reducer", &self.reduce_py)] {
                if what == "reducer" && !self.needs_reducer_file() {
                    continue;
                }
                if !path.is_file() {
                    return Err(format!(
                        "{what} {} not found: write it, point to it in ipdc.toml / with --{}, or run with --native wordcount",
                        path.display(),
                        if what == "mapper" { "map" } else { "reduce" }
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the job runs Reduce.py: a map-only job (reducers = 0) does not.
    pub fn needs_reducer_file(&self) -> bool {
        self.reducers > 0
    }

    /// Compiles Map.py and Reduce.py with a local Python, when there is one,
    /// so a syntax error is reported before anything is uploaded.
    pub fn check_python_syntax(&self) -> Result<(), String> {
        if self.force_native.is_some() {
            return Ok(());
        }
        // One interpreter start for both files: it prints the first error,
        // as the problem's first line and its details after.
        const CHECK: &str = r#"import sys
sent = set(sys.argv[sys.argv.index("--sent") + 1:])
sys.argv = sys.argv[:sys.argv.index("--sent")]
input_format = sys.argv.pop()
files_format = input_format == "files"
pairs_format = input_format == "pairs"
for path in sys.argv[1:]:
    try:
        src = open(path, "rb").read()
    except OSError as e:
        print("cannot read %s: %s" % (path, e.strerror or e))
        sys.exit(1)
    try:
        compile(src, path, "exec")
    except SyntaxError as e:
        print("syntax error in %s" % path)
        if e.lineno:
            print("%s, line %s: %s" % (path, e.lineno, e.msg))
        else:
            print("%s: %s" % (path, e.msg))
        if e.text:
            print("    " + e.text.rstrip())
        sys.exit(1)
    except ValueError as e:  # a NUL byte, before Python 3.12
        print("syntax error in %s" % path)
        print("%s: %s" % (path, e))
        sys.exit(1)
# map() that does not take what input_format hands it (the mapper is first).
import ast, os
mapper = sys.argv[1]
for node in ast.parse(open(mapper, "rb").read(), mapper).body:
    if not isinstance(node, ast.FunctionDef) or node.name not in ("map", "map_split"):
        continue
    a = node.args
    shown = os.path.basename(mapper)
    if pairs_format and (node.name == "map_split" or (not a.vararg and len(getattr(a, "posonlyargs", [])) + len(a.args) < 2)):
        print("%s is the mapper of a later step, which is called as map(key, value) with the pairs the step before wrote" % shown)
        print("define map(key, value) in it")
        sys.exit(1)
    if pairs_format:
        continue
    if node.name == "map_split" and files_format:
        print('%s defines map_split(), but input_format = "files" calls map(name, data) once per file' % shown)
        print("define map(name, data) instead, or drop input_format from ipdc.toml")
        sys.exit(1)
    if node.name != "map" or a.vararg:
        continue
    positional = len(getattr(a, "posonlyargs", [])) + len(a.args)
    required = positional - len(a.defaults)
    if files_format and positional < 2:
        print('%s defines map(%s), but input_format = "files" calls map(name, data) once per file' % (shown, ", ".join(x.arg for x in a.args)))
        print("define map(name, data), or drop input_format from ipdc.toml to map lines")
        sys.exit(1)
    if not files_format and required >= 2:
        print("%s defines map(%s), which takes a whole file: map(name, data) is called with input_format = \"files\"" % (shown, ", ".join(x.arg for x in a.args)))
        print('set input_format = "files" in ipdc.toml, or define map(line) to be called once per line')
        sys.exit(1)
# A module beside the code that it imports but the job does not send.
for path in sys.argv[1:]:
    folder = os.path.dirname(os.path.abspath(path))
    for node in ast.walk(ast.parse(open(path, "rb").read(), path)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            for beside in (top + ".py", top):
                if top not in sent and os.path.exists(os.path.join(folder, beside)) and top != "ipdc":
                    print("%s imports %s, which is beside it (%s) but is not sent to the agents "
                          "(only the mapper, the reducer and the side files are)" % (os.path.basename(path), top, beside))
                    print('add it to `files` in ipdc.toml (files = ["%s"]) or give --file %s' % (beside, beside))
                    sys.exit(1)
"#;
        let out = match std::process::Command::new("python3")
            .arg("-S") // compiling needs no site-packages (and starts faster)
            .arg("-c")
            .arg(CHECK)
            .arg(&self.map_py)
            .args(self.needs_reducer_file().then_some(&self.reduce_py))
            .arg(match self.input_format {
                InputFormat::Files => "files",
                InputFormat::Pairs => "pairs",
                InputFormat::Lines => "lines",
            })
            .arg("--sent")
            .args(self.side_files.iter().map(|f| {
                // The importable name: `util` of util.py, `model` of model/x.
                let top = f.name.split('/').next().unwrap_or_default();
                top.strip_suffix(".py").unwrap_or(top).to_string()
            }))
            .output()
        {
            Ok(out) => out,
            Err(_) => return Ok(()), // no local Python: the agents will report it
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() || text.trim().is_empty() {
            return Ok(()); // nothing found, or the check itself broke: the agents will say
        }
        if text.contains("is not sent to the agents")
            || text.contains("input_format")
            || text.contains("a later step")
        {
            return Err(text.trim_end().to_string());
        }
        Err(format!("{}\nfix the file and run again", text.trim_end()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_dir(toml: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ipdc.toml"), toml).unwrap();
        std::fs::write(d.path().join("data.dat"), "a b\n").unwrap();
        std::fs::write(d.path().join("Map.py"), "def map(line):\n    yield line, 1\n").unwrap();
        std::fs::write(d.path().join("Reduce.py"), "def reduce(k, vs):\n    yield k, sum(vs)\n").unwrap();
        d
    }

    #[test]
    fn the_local_python_check_names_the_file_and_the_problem() {
        let d = job_dir("");
        let spec = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap();
        spec.check_python_syntax().unwrap();
        std::fs::write(d.path().join("Map.py"), "def map(line):\n    yield line, 1\0\n").unwrap();
        let e = spec.check_python_syntax().unwrap_err();
        assert!(e.starts_with("syntax error in ") && e.contains("Map.py") && e.contains("null bytes"), "{e}");
        assert!(e.ends_with("fix the file and run again"), "{e}");
        std::fs::write(d.path().join("Map.py"), "def map(line):\n    yield line 1\n").unwrap();
        let e = spec.check_python_syntax().unwrap_err();
        assert!(e.contains("Map.py, line 2: "), "{e}");
        std::fs::remove_file(d.path().join("Map.py")).unwrap();
        std::fs::create_dir(d.path().join("Map.py")).unwrap();
        let e = spec.check_python_syntax().unwrap_err();
        assert!(e.starts_with("cannot read ") && e.contains("Map.py: Is a directory"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let d = job_dir("workers = 3\nreducers = 2\ncombiner = true\nnative = \"wordcount\"\n");
        let spec = JobSpec::load(Some(d.path()), Overrides { reducers: Some(5), ..Default::default() }, None)
            .unwrap();
        assert_eq!((spec.workers, spec.reducers, spec.combiner), (Some(3), 5, true));
        assert_eq!(spec.native_fallback.as_deref(), Some("wordcount"));
        assert_eq!(spec.out, d.path().join("output"));
    }

    #[test]
    fn unknown_keys_and_missing_files_are_named() {
        let d = job_dir("wrokers = 3\n");
        let e = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap_err();
        assert!(e.contains("ipdc.toml") && e.contains("wrokers"), "{e}");
        let d = job_dir("input = \"nope.txt\"\n");
        let e = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap_err();
        assert!(e.contains("nope.txt") && e.contains("--input"), "{e}");
    }

    #[test]
    fn an_empty_input_is_refused() {
        let d = job_dir("");
        std::fs::write(d.path().join("data.dat"), "").unwrap();
        let e = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let d = job_dir("");
        std::fs::write(d.path().join("Map.py"), "def map(line):\n    yield line 1\n").unwrap();
        let spec = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap();
        let e = spec.check_python_syntax().unwrap_err();
        assert!(e.contains("Map.py, line 2"), "{e}");
    }

    #[test]
    fn a_task_memory_limit_python_cannot_start_in_is_refused() {
        let d = job_dir("task_memory_mb = 32\n");
        let e = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap_err();
        assert!(
            e.contains("task_memory_mb = 32") && e.contains("is 64 MiB") && e.contains("give 64 or more"),
            "{e}"
        );
        let d = job_dir("task_memory_mb = 64\n");
        assert_eq!(JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap().task_memory_mb, 64);
    }

    #[test]
    fn verify_takes_a_number_of_agents_or_a_share_of_the_tasks() {
        let load = |toml: &str, o: Overrides| JobSpec::load(Some(job_dir(toml).path()), o, None);
        assert_eq!(load("", Overrides::default()).unwrap().verify, Verify::Agents(1));
        assert_eq!(load("verify = 2\n", Overrides::default()).unwrap().verify, Verify::Agents(2));
        assert_eq!(load("verify = 0.1\n", Overrides::default()).unwrap().verify, Verify::SpotCheck(0.1));
        assert_eq!(load("verify = 3.0\n", Overrides::default()).unwrap().verify, Verify::Agents(3));
        let flag = Overrides { verify: Some("3".parse().unwrap()), ..Default::default() };
        assert_eq!(load("verify = 0.5\n", flag).unwrap().verify, Verify::Agents(3), "the flag wins");
        for bad in ["verify = 0", "verify = -2", "verify = 1.5", "verify = \"two\"", "verify = true"] {
            let e = load(&format!("{bad}\n"), Overrides::default()).unwrap_err();
            assert!(
                e.contains("ipdc.toml")
                    && e.contains("verify = ")
                    && e.contains("a fraction between 0 and 1"),
                "{bad}: {e}"
            );
        }
        for bad in ["0", "1.0001e9x", "", "-0.5", "1.5"] {
            let e = bad.parse::<Verify>().unwrap_err();
            assert!(e.starts_with("verify = "), "{bad}: {e}");
        }
        assert_eq!("0.25".parse::<Verify>().unwrap(), Verify::SpotCheck(0.25));
        // The summary's `verify` is the setting as written.
        assert_eq!(serde_json::to_string(&Verify::Agents(2)).unwrap(), "2");
        assert_eq!(serde_json::to_string(&Verify::SpotCheck(0.1)).unwrap(), "0.1");
    }

    #[test]
    fn fewer_workers_than_verify_needs_are_refused_naming_both() {
        let d = job_dir("verify = 3\nworkers = 2\n");
        let e = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap_err();
        assert_eq!(
            e,
            "verify = 3 runs tasks on 3 different agents, but workers = 2: ask for at least 3 workers or lower verify"
        );
        let d = job_dir("verify = 0.2\nworkers = 1\n");
        let e = JobSpec::load(Some(d.path()), Overrides::default(), None).unwrap_err();
        assert!(e.starts_with("verify = 0.2 runs tasks on 2 different agents, but workers = 1"), "{e}");
    }

    #[test]
    fn a_spot_check_plan_picks_its_share_of_the_tasks() {
        match Verify::SpotCheck(0.1).plan(19, 1, 42) {
            Verification::Spot { tasks, fraction } => {
                assert_eq!((tasks.len(), fraction), (2, 0.1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Verify::Agents(2).plan(19, 1, 42), Verification::Every(2));
    }
}

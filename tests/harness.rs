//! Test harness for end-to-end tests: builds and starts the real programs
//! (`ipdc-submit hub`, `ipdc-agent`, `ipdc-submit run`) as OS processes on
//! loopback, makes test corpora, and computes reference word counts with
//! Python's own `collections.Counter` so outputs are checked against the
//! definition, not against another piece of our code.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo").to_path_buf()
}

/// Path of a workspace binary, built once per test process with the same
/// profile as the tests (`cargo test --release` → release binaries).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        // The same targets and features as `cargo test --workspace`, so the
        // two never rebuild each other's binaries.
        cmd.args(["build", "--workspace", "--bins", "--tests"]).current_dir(repo_root());
        // And without the variables cargo sets for this test process (they
        // describe this package, not the build): a build script that
        // watches one (ring's watches CARGO_MANIFEST_DIR) would see it
        // change and rebuild, here and again in the next `cargo test`,
        // minutes each time.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_EXE_")
                || ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_TARGET_TMPDIR"]
                    .contains(&&*key)
            {
                cmd.env_remove(&*key);
            }
        }
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
        // target/<profile>/deps/<test> → target/<profile>
        let exe = std::env::current_exe().expect("test binary path");
        exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
    });
    dir.join(name)
}

/// A child process killed when dropped, with its output kept in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
    /// Folders that live as long as the process (an agent's work dir).
    _keep: Vec<tempfile::TempDir>,
}

impl Proc {
    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`, or panics with the log.
    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.output().contains(needle) {
            if start.elapsed() > timeout {
                panic!("timed out waiting for {needle:?}; log:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The cache folder the tests' submitters use: under `target/`, not the
/// user's `~/.cache`, and one per test (named after the test's thread) and
/// per run of the tests, so that no test is served by another's task cache
/// or kept `--local` store, nor by an earlier run's.
pub fn test_cache() -> PathBuf {
    static RUN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let base = repo_root().join("target").join("test-cache");
        // Earlier runs' folders, once their process is gone.
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("run-").and_then(|r| r.split('-').next()).map(str::to_string);
            if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        base.join(format!("run-{}-{nanos}", std::process::id()))
    });
    let test = std::thread::current().name().unwrap_or("main").replace("::", "-");
    run.join(test)
}

/// Starts a program with stdout and stderr going to a log file.
pub fn spawn(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let logdir = tempfile::tempdir().expect("temp dir");
    let log = logdir.path().join("log");
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(program)
        .args(args)
        .env("XDG_CACHE_HOME", test_cache())
        .envs(envs.iter().copied())
        .env("RUST_LOG", "info,rumqttd=off")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    Proc { child, log, _logdir: logdir, _keep: Vec::new() }
}

/// `ipdc-submit hub` on free loopback ports.
pub struct Hub {
    pub proc: Proc,
    pub mqtt: String,
    pub ipfs: String,
    _data: tempfile::TempDir,
}

impl Hub {
    pub fn start() -> Hub {
        let data = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(bin("ipdc-submit"))
            .args(["hub", "--mqtt", "127.0.0.1:0", "--ipfs", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .env("RUST_LOG", "warn,rumqttd=off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ipdc-submit hub starts");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let (mut mqtt, mut ipfs) = (String::new(), String::new());
        while mqtt.is_empty() || ipfs.is_empty() {
            let line = lines.next().expect("hub prints its addresses").expect("utf-8");
            if let Some(v) = line.strip_prefix("MQTT=") {
                mqtt = v.to_string();
            } else if let Some(v) = line.strip_prefix("IPFS=") {
                ipfs = v.to_string();
            }
        }
        // Keep draining stdout so the hub never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let logdir = tempfile::tempdir().expect("temp dir");
        let log = logdir.path().join("log");
        std::fs::write(&log, "").unwrap();
        Hub { proc: Proc { child, log, _logdir: logdir, _keep: Vec::new() }, mqtt, ipfs, _data: data }
    }

    /// Starts an `ipdc-agent` process connected to this hub.
    pub fn agent(&self, name: &str, extra: &[&str]) -> Proc {
        let p = agent(&self.mqtt, &self.ipfs, name, extra);
        p.wait_for("connected to broker", Duration::from_secs(20));
        p
    }

    /// Runs `ipdc-submit run` against this hub.
    pub fn submit(&self, args: &[&str]) -> Output {
        let mut all = vec!["run", "--broker", &self.mqtt, "--ipfs", &self.ipfs];
        all.extend_from_slice(args);
        submit(&all)
    }
}

/// Runs `ipdc-submit` with these arguments and returns its output.
pub fn submit(args: &[&str]) -> Output {
    Command::new(bin("ipdc-submit"))
        .args(args)
        .env("XDG_CACHE_HOME", test_cache())
        .env("RUST_LOG", "warn,rumqttd=off")
        .stdin(Stdio::null())
        .output()
        .expect("ipdc-submit runs")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The test corpus of `size` (e.g. "64M") made by `tests/corpus.py` with
/// seed 1, generated once and cached in `target/test-data/`. The file name
/// carries a hash of the generator, so a changed generator makes new files.
pub fn corpus(size: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let generator = repo_root().join("tests").join("corpus.py");
    let code = std::fs::read(&generator).unwrap_or_else(|e| panic!("{}: {e}", generator.display()));
    let dir = repo_root().join("target").join("test-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("corpus-{size}-seed1-{:016x}.txt", fnv1a(&code)));
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        let out = std::fs::File::create(&tmp).unwrap();
        let status = Command::new("python3")
            .arg(&generator)
            .args([size, "--seed", "1"])
            .stdout(out)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "{} {size} failed", generator.display());
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

/// 64-bit FNV-1a: a stable fingerprint (std's hashers may change between
/// Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

pub type Counts = BTreeMap<Vec<u8>, u64>;

/// Python's own answer: `collections.Counter(w for line in open(f,
/// encoding="utf-8", errors="surrogateescape") for w in line.split())`.
pub fn reference_counts(input: &Path) -> Counts {
    static CACHE: Mutex<BTreeMap<PathBuf, Counts>> = Mutex::new(BTreeMap::new());
    if let Some(c) = CACHE.lock().unwrap().get(input) {
        return c.clone();
    }
    const SCRIPT: &str = r#"
import collections, sys
c = collections.Counter(w for line in open(sys.argv[1], encoding="utf-8", errors="surrogateescape") for w in line.split())
out = sys.stdout.buffer
for w, n in c.items():
    out.write(w.encode("utf-8", "surrogateescape").hex().encode() + b"\t" + str(n).encode() + b"\n")
"#;
    let out = Command::new("python3").arg("-c").arg(SCRIPT).arg(input).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut counts = Counts::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let s = std::str::from_utf8(line).unwrap();
        let (hex, n) = s.split_once('\t').unwrap();
        let word =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        counts.insert(word, n.parse().unwrap());
    }
    CACHE.lock().unwrap().insert(input.to_path_buf(), counts.clone());
    counts
}

/// Reads a WordCount output folder, checking what a user would: `_SUCCESS`
/// and `summary.json` exist, `reducers` parts, each sorted by key bytes, no
/// key in two parts.
pub fn read_output(dir: &Path, reducers: usize) -> Counts {
    assert!(dir.join("_SUCCESS").is_file(), "no _SUCCESS in {}", dir.display());
    assert!(dir.join("summary.json").is_file(), "no summary.json in {}", dir.display());
    let mut counts = Counts::new();
    for r in 0..reducers {
        let part = dir.join(format!("part-{r:05}"));
        let bytes = std::fs::read(&part).unwrap_or_else(|e| panic!("{}: {e}", part.display()));
        let mut prev: Option<Vec<u8>> = None;
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let tab = line.iter().rposition(|&b| b == b'\t').expect("key<TAB>value");
            let (key, value) = (line[..tab].to_vec(), &line[tab + 1..]);
            let n: u64 = std::str::from_utf8(value).unwrap().parse().unwrap();
            if let Some(p) = &prev {
                assert!(p < &key, "{} is not sorted by key", part.display());
            }
            prev = Some(key.clone());
            assert!(counts.insert(key, n).is_none(), "a key appears in two parts");
        }
    }
    assert!(!dir.join(format!("part-{reducers:05}")).exists(), "more parts than reducers");
    counts
}

/// Summary.json of an output folder.
pub fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

/// Compares counts and, on a mismatch, shows a few differing words.
pub fn assert_counts_eq(got: &Counts, want: &Counts, what: &str) {
    if got == want {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in want {
        if got.get(k) != Some(v) {
            diffs.push(format!("{:?}: want {v}, got {:?}", String::from_utf8_lossy(k), got.get(k)));
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("{:?}: unexpected", String::from_utf8_lossy(k)));
    }
    diffs.truncate(10);
    panic!(
        "{what}: {} words in output, {} in reference; first differences:\n{}",
        got.len(),
        want.len(),
        diffs.join("\n")
    );
}

/// A free TCP port on loopback (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Debian's Mosquitto on a free loopback port, with our own config file.
pub struct Mosquitto {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    /// `extra` is appended to the config (listeners, auth, TLS). Without a
    /// `listener` line in it, a plain anonymous listener is used.
    pub fn start(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut conf = String::from("persistence false\nlog_dest stdout\nper_listener_settings false\n");
        if extra.contains("listener") {
            conf += &extra.replace("{PORT}", &port.to_string());
        } else {
            conf += &format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}");
        }
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, conf).unwrap();
        // Debian puts it in /usr/sbin, which is not on every user's PATH.
        let program =
            if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let proc = spawn(Path::new(program), &["-c", path.to_str().unwrap()], &[]);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "mosquitto did not start:\n{}", proc.output());
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto { proc, port, dir }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

/// `tests/ipfs-peer/peer.sh`, which runs the tests' IPFS peer.
fn peer_sh() -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_root().join("tests").join("ipfs-peer").join("peer.sh"));
    cmd
}

/// A real IPFS implementation, js-ipfs 0.66.1 answering the kubo RPC API
/// (`tests/ipfs-peer/peer.sh`), on a free loopback port with a repo of its
/// own in a temp dir, stopped on drop. js-ipfs is installed once, on first
/// use, into `target/ipfs-peer/` (npm ci, about 360 MB, about 2 minutes)
/// and shared by every peer.
pub struct IpfsPeer {
    pub api: String,
    pub peer_id: String,
    /// Its libp2p address on loopback, for `swarm/connect`.
    pub swarm: String,
    dir: PathBuf,
}

impl IpfsPeer {
    pub fn start() -> IpfsPeer {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> IpfsPeer {
        {
            // Once per test process; peer.sh itself keeps two processes
            // from installing at once. Its progress goes to the terminal.
            static INSTALLED: Mutex<bool> = Mutex::new(false);
            let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
            if !*installed {
                let status = peer_sh().arg("install").stdin(Stdio::null()).status().expect("bash runs");
                assert!(status.success(), "installing the tests' IPFS peer failed (see above)");
                *installed = true;
            }
        }
        let dir = tempfile::Builder::new().prefix("ipfs-peer-").tempdir().unwrap().keep();
        let out =
            peer_sh().arg("start").arg(&dir).arg(port.to_string()).stdin(Stdio::null()).output().unwrap();
        let mut peer = IpfsPeer { api: String::new(), peer_id: String::new(), swarm: String::new(), dir };
        assert!(out.status.success(), "the IPFS peer did not start: {}", text(&out));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((key, value)) = line.split_once('=') {
                match key {
                    "API" => peer.api = value.to_string(),
                    "PEER_ID" => peer.peer_id = value.to_string(),
                    "SWARM" => peer.swarm = value.to_string(),
                    _ => {}
                }
            }
        }
        assert_eq!(peer.api, format!("http://127.0.0.1:{port}"), "{}", text(&out));
        assert!(!peer.peer_id.is_empty() && !peer.swarm.is_empty(), "{}", text(&out));
        peer
    }

    /// `ipfs add` of a file with the peer's defaults (CIDv0), as a user would
    /// with curl; returns the CID.
    pub fn add_default(&self, file: &Path) -> String {
        let out = Command::new("curl")
            .args(["-sS", "-X", "POST", "-F"])
            .arg(format!("file=@{}", file.display()))
            .arg(format!("{}/api/v0/add", self.api))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{}", text(&out));
        let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
        v["Hash"].as_str().unwrap().to_string()
    }
}

impl IpfsPeer {
    /// A POST to its RPC API, as `curl` sends it; the answer's JSON.
    pub fn call(&self, call: &str) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sS", "-X", "POST"])
            .arg(format!("{}/api/v0/{call}", self.api))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{call}: {}", text(&out));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{call}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Joins it to the peer at `swarm` (`swarm/connect`).
    pub fn connect(&self, swarm: &str) {
        let v = self.call(&format!("swarm/connect?arg={swarm}"));
        assert!(v.get("Strings").is_some(), "swarm/connect {swarm}: {v}");
    }

    /// How many peers it is connected to (`swarm/peers`).
    pub fn swarm_peers(&self) -> usize {
        self.call("swarm/peers")["Peers"].as_array().map_or(0, Vec::len)
    }

    /// The CIDs of every block it holds (`refs/local`).
    pub fn local_blocks(&self) -> std::collections::BTreeSet<String> {
        self.ndjson_refs("refs/local")
    }

    /// The CIDs of every block under `cid` (`refs?recursive`), as
    /// `refs/local` names them.
    pub fn blocks_of(&self, cid: &str) -> std::collections::BTreeSet<String> {
        self.ndjson_refs(&format!("refs?arg={cid}&recursive=true&unique=true&cid-base=base32"))
    }

    fn ndjson_refs(&self, call: &str) -> std::collections::BTreeSet<String> {
        let out = Command::new("curl")
            .args(["-sS", "-X", "POST"])
            .arg(format!("{}/api/v0/{call}", self.api))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{call}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{call}: {e}: {l}"));
                v["Ref"].as_str().unwrap_or_else(|| panic!("{call}: {l}")).to_string()
            })
            .collect()
    }

    /// Kills its daemon (a board's node dying); the peer stays stopped.
    pub fn stop(&self) {
        let _ = peer_sh().arg("stop").arg(&self.dir).output();
    }

    /// The CIDs the node keeps pinned (recursively), as `ipfs pin ls` lists them.
    pub fn recursive_pins(&self) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sS", "-X", "POST"])
            .arg(format!("{}/api/v0/pin/ls?type=recursive", self.api))
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        v["Keys"].as_object().map(|keys| keys.keys().cloned().collect()).unwrap_or_default()
    }
}

/// A swarm of real IPFS peers on loopback, each joined to every other,
/// blocks moving between them over bitswap: the data path of a cluster of
/// boards, each with its own node.
pub struct Swarm {
    pub peers: Vec<IpfsPeer>,
}

impl Swarm {
    pub fn start(n: usize) -> Swarm {
        let peers: Vec<IpfsPeer> = std::thread::scope(|s| {
            let started: Vec<_> = (0..n).map(|_| s.spawn(IpfsPeer::start)).collect();
            started.into_iter().map(|h| h.join().expect("a peer starts")).collect()
        });
        for (i, a) in peers.iter().enumerate() {
            for b in &peers[i + 1..] {
                a.connect(&b.swarm);
            }
        }
        wait_until("every peer sees every other", Duration::from_secs(30), || {
            peers.iter().all(|p| p.swarm_peers() >= n - 1)
        });
        Swarm { peers }
    }
}

impl Drop for IpfsPeer {
    fn drop(&mut self) {
        let _ = peer_sh().arg("stop").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An `ipdc-agent` process for any broker and IPFS API.
/// Each gets a work dir of its own (tests running at once may use the same
/// agent names), unless `extra` names one.
pub fn agent(broker: &str, ipfs: &str, name: &str, extra: &[&str]) -> Proc {
    let work = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["--broker", broker, "--ipfs", ipfs, "--name", name, "--heartbeat-secs", "1"];
    if !extra.contains(&"--work-dir") {
        args.extend(["--work-dir", work.path().to_str().expect("UTF-8 temp path")]);
    }
    args.extend_from_slice(extra);
    let mut p = spawn(&bin("ipdc-agent"), &args, &[]);
    p._keep.push(work);
    p
}

/// `ipdc-submit agents --json` as a list of statuses.
pub fn agents_json(extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["agents", "--json"];
    args.extend_from_slice(extra);
    let o = submit(&args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap().as_array().unwrap().clone()
}

/// Waits until `f` holds, polling, or panics with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Proc {
    /// Waits for the process to exit (panics with its log after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > timeout {
                panic!("process still running after {timeout:?}; log:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no goodbye, no Last Will sent by the process itself.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ipdc-submit run ...` started in the background (so a test can break
/// things while it runs).
pub fn submit_bg(args: &[&str]) -> Proc {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    spawn(&bin("ipdc-submit"), &all, &[])
}

/// A TCP proxy on loopback in front of `target` ("127.0.0.1:PORT") that a
/// test can cut, as if the service behind it stopped: every open connection
/// is shut and the port refuses new ones until [`TcpProxy::restore`].
pub struct TcpProxy {
    pub port: u16,
    target: String,
    open: std::sync::Arc<Mutex<Vec<std::net::TcpStream>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TcpProxy {
    pub fn start(target: &str) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
        let port = listener.local_addr().unwrap().port();
        let p =
            TcpProxy { port, target: target.to_string(), open: Default::default(), stop: Default::default() };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: std::net::TcpListener) {
        use std::sync::atomic::Ordering;
        listener.set_nonblocking(true).unwrap();
        let (target, open, stop) = (self.target.clone(), self.open.clone(), self.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                // Under the lock `cut` takes: a connection accepted as the
                // proxy is cut is closed, not served.
                let mut conns = open.lock().unwrap();
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else { continue };
                conns.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                drop(conns);
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
            // Dropping the listener here closes the port.
        });
    }

    /// Shuts every connection and closes the port.
    pub fn cut(&self) {
        let mut conns = self.open.lock().unwrap();
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in conns.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        drop(conns);
        wait_until("the proxy port closed", Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }

    /// Opens the same port again.
    pub fn restore(&mut self) {
        self.stop = Default::default();
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).expect("re-bind the proxy port");
        self.serve(listener);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Debian's headless Chromium, as a person's browser: `--dump-dom` of a
/// page (the DOM once loaded) and a screenshot of it, kept in
/// `target/screenshots/NAME.png`.
pub struct Browser;

impl Browser {
    fn command(profile: &Path) -> Command {
        let program = ["chromium", "/usr/bin/chromium", "chromium-browser"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
            .expect("chromium is installed (Debian's package chromium; .ci/run installs it)");
        let mut c = Command::new(program);
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
            .arg(format!("--user-data-dir={}", profile.display()));
        c
    }

    /// The page's DOM as Chromium built it.
    pub fn dom(url: &str) -> String {
        let profile = tempfile::tempdir().unwrap();
        let out = Browser::command(profile.path())
            .args(["--virtual-time-budget=3000", "--dump-dom", url])
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium --dump-dom {url}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A screenshot of the page at `width` x `height`; its path.
    pub fn screenshot(url: &str, name: &str, width: u32, height: u32) -> PathBuf {
        let dir = repo_root().join("target").join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&path);
        let profile = tempfile::tempdir().unwrap();
        let out = Browser::command(profile.path())
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--screenshot={}", path.display()))
            .arg(url)
            .output()
            .unwrap();
        assert!(out.status.success() && path.exists(), "chromium --screenshot {url}: {}", text(&out));
        path
    }

    /// How many pixels of the screenshot have each colour (`"3b7dd8"`).
    pub fn pixels_of(png: &Path, colours: &[&str]) -> Vec<u64> {
        let out = Command::new("python3")
            .arg(repo_root().join("tests/png_colors.py"))
            .arg(png)
            .args(colours)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.parse().unwrap()).collect()
    }
}

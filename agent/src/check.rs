//! `ipdc-agent --check`: tests the configuration (broker reachable, IPFS API
//! answers, Python found, work folder writable) and prints a one-screen
//! diagnosis with what to do about each failure.

use std::time::{Duration, Instant};

use ipdc_common::ipfs::IpfsClient;
use ipdc_common::mqtt;
use rumqttc::{Event, Packet};

use crate::AgentConfig;

/// Prints the diagnosis; true when every check passed.
pub async fn run(c: &AgentConfig) -> bool {
    println!("ipdc-agent {} — configuration check", crate::BUILD);
    println!(
        "  agent      {} in cluster {}, {} slot(s), {} MiB per task",
        c.name, c.cluster, c.slots, c.memory_mb
    );
    let mut ok = true;
    let tls = if c.mqtt.uses_tls() { " (TLS)" } else { "" };
    let user = c.mqtt.username.as_deref().map(|u| format!(" as {u}")).unwrap_or_default();
    ok &= report("broker", &format!("{}{tls}{user}", c.mqtt.broker), check_broker(c).await);
    ok &= report("IPFS API", &c.ipfs, check_ipfs(&c.ipfs).await);
    ok &= report("IPFS swarm", &c.ipfs, check_swarm(&c.ipfs).await);
    ok &= report("swarm key", &c.swarm_key.display().to_string(), check_swarm_key(&c.swarm_key));
    let python = match &c.python {
        None => Ok("disabled (python = none): only native executors run here".to_string()),
        Some(p) => {
            let probe = p.clone();
            match tokio::task::spawn_blocking(move || ipdc_common::python::detect_version(&probe)).await {
                Ok(Some(v)) => Ok(format!("Python {v}")),
                _ => Err("not found or older than 3.7; install python3, set python = \"/path/to/python3\", or python = \"none\"".to_string()),
            }
        }
    };
    let shown = c.python.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into());
    ok &= report("Python", &shown, python);
    ok &= report("work dir", &c.work_dir.display().to_string(), check_work_dir(&c.work_dir));
    ok &= report("free disk", &c.work_dir.display().to_string(), check_free_disk(c));
    println!("{}", if ok { "all checks passed" } else { "some checks failed" });
    ok
}

fn report(what: &str, target: &str, result: Result<String, String>) -> bool {
    match result {
        Ok(detail) => {
            println!("  {what:<10} {target} ... ok ({detail})");
            true
        }
        Err(why) => {
            println!("  {what:<10} {target} ... FAILED: {why}");
            false
        }
    }
}

async fn check_broker(c: &AgentConfig) -> Result<String, String> {
    let started = Instant::now();
    let options = c.mqtt.options(&format!("ipdc-check-{}-{}", c.name, std::process::id()), None)?;
    let (client, mut eventloop) = mqtt::client(options);
    let result = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(mqtt::describe(&e)),
            }
        }
    })
    .await;
    let _ = client.try_disconnect();
    match result {
        Ok(Ok(())) => Ok(format!("connected in {} ms", started.elapsed().as_millis())),
        Ok(Err(e)) => Err(format!("{e}; check broker, username/password and tls_ca")),
        Err(_) => Err("no answer within 5 s; check the address and any firewall".into()),
    }
}

async fn check_ipfs(api: &str) -> Result<String, String> {
    let client = IpfsClient::new(api).map_err(|e| e.to_string())?;
    let id = client.id().await.map_err(|e| {
        format!("{e}; check that `ipfs` names the node's API address (kubo: `ipfs config Addresses.API`)")
    })?;
    let version = client.version().await.map_err(|e| e.to_string())?;
    Ok(format!("peer {id}, version {version}"))
}

/// Whether the node has swarm peers to fetch a job's data from.
async fn check_swarm(api: &str) -> Result<String, String> {
    let client = IpfsClient::new(api).map_err(|e| e.to_string())?;
    match client.swarm_peers().await {
        Ok(0) => {
            Err("no swarm peers: this board could fetch only what its own node holds (only fine if the \
                      submitters use this very node); check the swarm key and `ipfs bootstrap list`, \
                      then `ipfs swarm peers`"
                .into())
        }
        Ok(n) => Ok(format!("{n} peer(s)")),
        Err(_) => Ok("the node lists no swarm (a hub's store: every agent's node at once)".into()),
    }
}

/// Which private network the node is in, as its swarm key says.
fn check_swarm_key(path: &std::path::Path) -> Result<String, String> {
    match crate::swarm_key::fingerprint(path)? {
        Some(f) => Ok(format!(
            "private network {f}: every board of the cluster should show the same; `ipfs swarm peers` lists those it reaches"
        )),
        None => {
            Ok("none: the node is in the public IPFS network (or its key is elsewhere: set swarm_key)".into())
        }
    }
}

/// Makes `dir` and writes a file in it: tasks will need both.
/// The work dir's free space against the agent's floor (`min_free_disk_mb`).
fn check_free_disk(c: &AgentConfig) -> Result<String, String> {
    let floor = c.min_free_disk_mb;
    match crate::status::free_disk_mb(&c.work_dir) {
        None => Err("cannot read the free space of its file system".into()),
        Some(free) if free < floor => Err(format!(
            "{free} MiB free, below min_free_disk_mb = {floor}: the agent would take no tasks; free space there, or set work_dir to a larger disk"
        )),
        Some(free) => Ok(format!("{free} MiB free, floor {floor} MiB")),
    }
}

pub fn check_work_dir(dir: &std::path::Path) -> Result<String, String> {
    const HINT: &str = "set work_dir (the packaged service may write only below /var/lib/ipdc: \
        make another folder the ipdc user's and list it under [Service] as ReadWritePaths= \
        with `systemctl edit ipdc-agent`)";
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}; {HINT}"))?;
    let probe = dir.join(".ipdc-check");
    std::fs::write(&probe, b"ok").map_err(|e| format!("not writable: {e}; {HINT}"))?;
    let _ = std::fs::remove_file(probe);
    Ok("writable".into())
}

//! The scheduler simulation behind `ipdc-sim-scheduler` (a tool of the test
//! crate, not a command of the shipped binary): the
//! scheduler's own cost. Simulated agents — real MQTT clients on a real
//! broker that answer every assignment at once with a made-up result, no
//! IPFS, no executor — and the real controller and driver (`run::drive`)
//! dispatching a job of many tiny map tasks. It reports tasks dispatched per
//! second, end to end through the broker.

use std::time::{Duration, Instant};

use ipdc_common::mqtt::{self, BrokerAddr, MqttSettings};
use ipdc_common::protocol::{
    AgentStatus, CodeSpec, EventKind, Executor, Incoming, IpfsHealth, PROTOCOL_VERSION, TaskCommand,
    TaskEvent, TaskMessage, TaskOutput, Wire, now_ms,
};
use rumqttc::{Event, Packet, QoS};

use crate::cluster::Connection;
use crate::controller::{Controller, JobPlan, MapSplit};
use crate::directory::Requirements;
use crate::run::{self, drive::drive, session::Session};

/// Runs the simulation; returns the line it printed.
pub async fn run(agents: usize, tasks: usize, broker: Option<String>) -> Result<String, String> {
    let broker = match broker {
        Some(url) => BrokerAddr::parse(&url)?,
        None => {
            let addr = crate::broker::start("127.0.0.1:0".parse().expect("valid"))
                .map_err(|e| format!("embedded broker: {e}"))?;
            BrokerAddr { host: addr.ip().to_string(), port: addr.port(), tls: false }
        }
    };
    let cluster = format!("sim{}", std::process::id());
    let conn =
        Connection { mqtt: MqttSettings::plain(broker), credentials: None, ipfs: String::new(), cluster };
    for i in 0..agents {
        let conn = conn.clone();
        tokio::spawn(async move { sim_agent(format!("sim-{i:04}"), conn).await });
    }
    let job = run::new_job_id("sim");
    let mut session = Session::connect(&conn, &format!("ipdc-sim-{job}"), Some(&job))?;
    session.connect_and_listen(Duration::from_secs(10)).await?;
    let req = Requirements::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while session.directory.capable(&req, now_ms()).len() < agents {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {agents} simulated agents came online",
                session.directory.capable(&req, now_ms()).len()
            ));
        }
        session.pump_until(tokio::time::sleep(Duration::from_millis(100))).await;
    }
    let picked: Vec<AgentStatus> = session.directory.capable(&req, now_ms()).into_iter().cloned().collect();
    let code = CodeSpec {
        map_cid: String::new(),
        reduce_cid: String::new(),
        combiner: false,
        force_native: Some("wordcount".into()),
        native_fallback: None,
        limits: Default::default(),
        files: Default::default(),
        ..Default::default()
    };
    let plan = JobPlan {
        splits: (0..tasks as u64)
            .map(|i| MapSplit {
                input_cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
                input_size: tasks as u64,
                name: String::new(),
                compression: None,
                start: i,
                end: i + 1,
                files: Vec::new(),
            })
            .collect(),
        speculative: false,
        ..JobPlan::defaults(&job, code)
    };
    let slots: Vec<(String, u32)> = picked.iter().map(|s| (s.agent.clone(), s.slots)).collect();
    let mut ctl = Controller::new(plan, &slots);
    let started = Instant::now();
    let (outcome, map_ms) = drive(&mut session, &mut ctl, &picked, &job, None, None).await;
    let elapsed = started.elapsed();
    session.disconnect().await;
    outcome.map_err(|(m, _)| m)?;
    let done = ctl.records();
    let per_agent = done.iter().filter(|r| r.task.starts_with('m')).count();
    let line = format!(
        "sim-scheduler: {agents} agents, {per_agent} map tasks + 1 reduce in {:.2} s (map phase {:.2} s): {:.0} tasks/s dispatched and completed",
        elapsed.as_secs_f64(),
        map_ms as f64 / 1000.0,
        (tasks + 1) as f64 / elapsed.as_secs_f64()
    );
    println!("{line}");
    Ok(line)
}

/// A simulated agent: reports itself and answers every assignment with Done.
async fn sim_agent(name: String, conn: Connection) {
    let mut wire = Wire::new(&conn.cluster, None);
    let Ok(options) = conn.mqtt.options(&format!("ipdc-{name}"), None) else { return };
    let (client, mut eventloop) = mqtt::client(options);
    let tasks_topic = wire.topics().agent_tasks(&name);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(&tasks_topic, QoS::AtLeastOnce);
                let mut s = AgentStatus::offline(&name);
                s.online = true;
                s.version = crate::VERSION.to_string();
                s.arch = std::env::consts::ARCH.into();
                s.cores = 4;
                s.slots = 4;
                s.mem_available_mb = 1024;
                s.mem_total_mb = 1024;
                s.native = vec!["wordcount".into()];
                s.ipfs = IpfsHealth::Ok;
                s.session = name.clone();
                s.epoch = now_ms();
                s.heartbeat_ms = now_ms();
                s.heartbeat_interval_ms = 600_000;
                let out = wire.status(&s);
                let _ = client.try_publish(out.topic, QoS::AtLeastOnce, true, out.payload);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(Incoming::Command {
                    message: TaskMessage { command: TaskCommand::Assign { task }, .. },
                    ..
                }) = wire.receive(&p.topic, &p.payload, now_ms())
                else {
                    continue;
                };
                let output = TaskOutput {
                    cids: (0..task.reducers).map(|r| format!("bafksim{}{r}", task.task)).collect(),
                    sizes: vec![1; task.reducers as usize],
                    executor: Executor::Native("sim".into()),
                    ..Default::default()
                };
                let ev = TaskEvent {
                    v: PROTOCOL_VERSION,
                    job: task.job.clone(),
                    task: task.task.clone(),
                    attempt: task.attempt,
                    agent: name.clone(),
                    kind: EventKind::Done { output },
                };
                let out = wire.event(&ev);
                let _ = client.publish(out.topic, QoS::AtLeastOnce, false, out.payload).await;
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

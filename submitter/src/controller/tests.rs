//! The controller's unit tests: every race driven directly, with made-up times.

use super::*;
use ipdc_common::protocol::{AgentStatus, EventKind, PROTOCOL_VERSION, TaskEvent, TaskOutput};

fn plan(splits: usize, reducers: u32) -> JobPlan {
    let code = CodeSpec {
        map_cid: "m".into(),
        reduce_cid: "r".into(),
        combiner: false,
        force_native: None,
        native_fallback: None,
        limits: Default::default(),
        files: Default::default(),
    };
    JobPlan {
        input_cid: "in".into(),
        input_size: splits as u64 * 10,
        splits: (0..splits as u64).map(|i| (i * 10, i * 10 + 10)).collect(),
        reducers,
        accept_timeout_ms: 10_000,
        speculative: false,
        ..JobPlan::defaults("j", code)
    }
}

fn ev(task: &Task, agent: &str, kind: EventKind) -> TaskEvent {
    TaskEvent {
        v: PROTOCOL_VERSION,
        job: task.job.clone(),
        task: task.task.clone(),
        attempt: task.attempt,
        agent: agent.into(),
        kind,
    }
}

fn done(task: &Task, agent: &str, reducers: u32) -> TaskEvent {
    let output = TaskOutput {
        cids: (0..reducers).map(|p| format!("{}-p{p}", task.task)).collect(),
        sizes: vec![5; reducers as usize],
        ..Default::default()
    };
    ev(task, agent, EventKind::Done { output })
}

fn warnings(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Warn { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn assigns(actions: &[Action]) -> Vec<(String, Task)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Assign { agent, task } => Some((agent.clone(), task.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn maps_fill_free_slots_then_queue_until_a_slot_frees() {
    let mut c = Controller::new(plan(5, 1), &[("a".into(), 2), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    assert_eq!(first.len(), 3);
    assert_eq!(first.iter().filter(|(a, _)| a == "a").count(), 2);
    let next = assigns(&c.on_event(&done(&first[0].1, &first[0].0, 1), 1));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].0, first[0].0, "the freed slot gets the next task");
}

#[test]
fn reduces_start_after_every_map_and_get_each_maps_partition() {
    let mut c = Controller::new(plan(2, 2), &[("a".into(), 4)]);
    let maps = assigns(&c.start(0));
    assert!(assigns(&c.on_event(&done(&maps[0].1, "a", 2), 1)).is_empty());
    let reduces = assigns(&c.on_event(&done(&maps[1].1, "a", 2), 2));
    assert_eq!(c.phase(), Phase::Reduce);
    assert_eq!(reduces.len(), 2);
    assert_eq!(
        reduces[1].1.kind,
        TaskKind::Reduce { partition: 1, inputs: vec!["m-00000-p1".into(), "m-00001-p1".into()] }
    );
    assert!(c.on_event(&done(&reduces[0].1, "a", 1), 3).is_empty());
    assert_eq!(c.on_event(&done(&reduces[1].1, "a", 1), 4), vec![Action::Finished]);
    assert_eq!(c.part_cids(), vec![("r-00000-p0".into(), 5), ("r-00001-p0".into(), 5)]);
}

#[test]
fn empty_partitions_are_not_fetched_by_reducers() {
    let mut c = Controller::new(plan(1, 2), &[("a".into(), 2)]);
    let m = assigns(&c.start(0)).remove(0).1;
    let output = TaskOutput { cids: vec!["p0".into(), "p1".into()], sizes: vec![0, 9], ..Default::default() };
    let r = assigns(&c.on_event(&ev(&m, "a", EventKind::Done { output }), 1));
    assert_eq!(r[0].1.kind, TaskKind::Reduce { partition: 0, inputs: vec![] });
    assert_eq!(r[1].1.kind, TaskKind::Reduce { partition: 1, inputs: vec!["p1".into()] });
}

#[test]
fn duplicated_and_stale_events_are_ignored() {
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    let (agent, task) = &first[0];
    let d = done(task, agent, 1);
    c.on_event(&d, 1);
    assert!(c.on_event(&d, 2).is_empty(), "a second delivery changes nothing");
    assert_eq!(c.progress().maps_done, 1);
    let mut stale = d.clone();
    stale.task = first[1].1.task.clone();
    stale.attempt = 7;
    assert!(c.on_event(&stale, 3).is_empty());
    assert_eq!(c.progress().maps_done, 1);
}

#[test]
fn a_failed_task_is_retried_on_another_agent_then_fails_the_job_with_its_error() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let (a1, t1) = assigns(&c.start(0)).remove(0);
    let fail = |t: &Task, a: &str| {
        ev(
            t,
            a,
            EventKind::Failed {
                error: "map() raised ValueError".into(),
                detail: "Traceback...".into(),
                lost_inputs: vec![],
                node_down: false,
            },
        )
    };
    let first = c.on_event(&fail(&t1, &a1), 1);
    assert_eq!(
        warnings(&first),
        [format!(
            "task m-00000 attempt 1 failed on agent {a1} (the job fails after 4 failures): map() raised ValueError"
        )]
    );
    let (a2, t2) = assigns(&first).remove(0);
    assert_ne!(a1, a2, "the retry goes to the other agent");
    assert_eq!(t2.attempt, 2);
    let second = c.on_event(&fail(&t2, &a2), 2);
    assert!(warnings(&second).is_empty(), "the same error is told once: {second:?}");
    let (a3, t3) = assigns(&second).remove(0);
    let (a4, t4) = assigns(&c.on_event(&fail(&t3, &a3), 3)).remove(0);
    let end = c.on_event(&fail(&t4, &a4), 4);
    assert_eq!(c.phase(), Phase::Failed);
    match &end[0] {
        Action::Failed { message, detail } => {
            assert!(message.contains("m-00000 failed 4 times"), "{message}");
            assert!(message.contains("map() raised ValueError"));
            assert_eq!(detail, "Traceback...");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_job_waits_for_its_agents_to_come_back_after_they_all_went_offline() {
    // A broker restart: both agents' Last Wills arrive at once.
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    assert_eq!(first.len(), 2);
    let w = warnings(&c.on_agent_lost("a", "went offline", 100));
    assert_eq!(
        w,
        ["agent a went offline; its running task m-00000 will run again (not counted as a failure)"]
    );
    let w = warnings(&c.on_agent_lost("b", "went offline", 100));
    assert_eq!(
        w[1..],
        [
            "no agent of this job can work now (offline, or its IPFS node does not answer); waiting up to 60 s for one to come back"
        ]
    );
    assert!(c.tick(30_000).iter().all(|a| !matches!(a, Action::Failed { .. })));
    assert_eq!(c.phase(), Phase::Map);
    // b reconnects: both maps run again there (a is still away).
    let back = c.on_agent_back("b", 31_000);
    assert_eq!(warnings(&back), ["agent b is back; the job goes on"]);
    let again = assigns(&back);
    assert_eq!(again.len(), 1, "b has one slot: {again:?}");
    assert_eq!(again[0].0, "b");
    assert_eq!(again[0].1.attempt, 2, "a new attempt, not a failure: {again:?}");
    let next = assigns(&c.on_event(&done(&again[0].1, "b", 1), 32_000));
    assert_eq!(next.len(), 1);
    c.on_event(&done(&next[0].1, "b", 1), 33_000);
    assert_eq!(c.phase(), Phase::Reduce);
    // Far past the wait: nothing fails, b is back.
    assert!(c.tick(200_000).iter().all(|a| !matches!(a, Action::Failed { .. })));
}

#[test]
fn the_submitters_own_outage_is_not_blamed_on_the_agents() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    let (a1, t1) = assigns(&c.start(0)).remove(0);
    // Disconnected from 1 s to 40 s: no ticks, no acknowledgement heard.
    c.on_reconnect(40_000);
    let actions = c.tick(40_250);
    assert_eq!(assigns(&actions), vec![(a1.clone(), t1.clone())], "sent again, not given up: {actions:?}");
    assert!(warnings(&actions).is_empty(), "{actions:?}");
    c.on_event(&ev(&t1, &a1, EventKind::Accepted), 40_300);
    assert!(c.tick(50_000).iter().all(|a| !matches!(a, Action::Failed { .. })));
}

#[test]
fn a_result_from_an_attempt_given_up_on_still_counts() {
    // The agent only looked lost (a broker restart): its attempt ran on.
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let (a1, t1) = assigns(&c.start(0)).remove(0);
    let (a2, t2) = assigns(&c.on_agent_lost(&a1, "went offline", 100)).remove(0);
    assert_ne!(a1, a2);
    let actions = c.on_event(&done(&t1, &a1, 1), 200);
    assert_eq!(c.progress().maps_done, 1, "{actions:?}");
    assert!(
        actions.contains(&Action::Cancel { agent: a2.clone(), task: t2.task.clone(), attempt: t2.attempt }),
        "the second attempt is cancelled: {actions:?}"
    );
    // The first result stays the one; a duplicate changes nothing.
    assert!(c.on_event(&done(&t1, &a1, 1), 300).is_empty());
}

#[test]
fn a_job_fails_when_no_agent_comes_back_in_time() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    c.start(0);
    c.on_agent_lost("a", "went offline", 1_000);
    assert!(c.tick(60_999).iter().all(|a| !matches!(a, Action::Failed { .. })));
    match &c.tick(61_000)[..] {
        [Action::Failed { message, .. }] => {
            assert_eq!(
                message,
                "no agent of this job could work for 60 s (offline, or its IPFS node did not answer)"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_new_error_of_a_task_is_told_again() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let (mut agent, mut task) = assigns(&c.start(0)).remove(0);
    let mut told = Vec::new();
    for (at, error) in ["disk full", "timed out", "timed out"].into_iter().enumerate() {
        let kind = EventKind::Failed {
            error: error.into(),
            detail: String::new(),
            lost_inputs: vec![],
            node_down: false,
        };
        let actions = c.on_event(&ev(&task, &agent, kind), at as u64 + 1);
        told.push(warnings(&actions).len());
        (agent, task) = assigns(&actions).remove(0);
    }
    assert_eq!(told, [1, 1, 0]);
}

#[test]
fn an_unacknowledged_assignment_is_resent_then_moves_to_another_agent() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let (a1, t1) = assigns(&c.start(0)).remove(0);
    let resent = assigns(&c.tick(3_000));
    assert_eq!(resent, vec![(a1.clone(), t1.clone())], "the same attempt is sent again");
    let actions = c.tick(10_000);
    assert!(actions.contains(&Action::Cancel { agent: a1.clone(), task: t1.task.clone(), attempt: 1 }));
    assert_eq!(
        warnings(&actions),
        [format!("agent {a1} did not acknowledge m-00000 attempt 1; giving it to another agent")]
    );
    let (a2, t2) = assigns(&actions).remove(0);
    assert_ne!(a1, a2);
    assert_eq!(t2.attempt, 2);
}

#[test]
fn a_quiet_accepted_attempt_is_queried_not_reassigned() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    let (a1, t1) = assigns(&c.start(0)).remove(0);
    c.on_event(&ev(&t1, &a1, EventKind::Accepted), 1);
    assert!(c.tick(5_000).is_empty());
    assert_eq!(c.tick(60_000), vec![Action::Query { agent: a1.clone() }]);
    assert!(c.tick(61_000).is_empty(), "one query per quiet period");
    // The result re-sent after the query completes the task.
    c.on_event(&done(&t1, &a1, 1), 61_500);
    assert_eq!(c.progress().maps_done, 1);
}

#[test]
fn an_attempt_its_agent_no_longer_knows_runs_again() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    let (a1, t1) = assigns(&c.start(0)).remove(0);
    c.on_event(&ev(&t1, &a1, EventKind::Accepted), 1);
    // The agent restarts and never answers the queries.
    for n in 1..=3 {
        assert_eq!(c.tick(n * 10_000), vec![Action::Query { agent: a1.clone() }]);
    }
    let actions = c.tick(40_000);
    assert!(actions.contains(&Action::Cancel { agent: a1.clone(), task: t1.task.clone(), attempt: 1 }));
    let again = assigns(&actions);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.attempt, 2);
    assert_eq!(c.tasks.reduces[0].failures + c.tasks.maps[0].failures, 0, "not counted as a failure");
}

#[test]
fn when_no_agent_answers_the_job_fails_with_a_message() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    c.start(0);
    let end = c.tick(10_000);
    assert!(
        matches!(&end[..], [Action::Failed { message, .. }] if message.contains("no agent acknowledged") && message.contains("silent: a")),
        "{end:?}"
    );
}

#[test]
fn a_straggler_gets_a_backup_attempt_and_the_first_result_wins() {
    let mut p = plan(3, 1);
    p.speculative = true;
    let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1), ("slow".into(), 1)]);
    let first = assigns(&c.start(0));
    for (agent, task) in &first {
        c.on_event(&ev(task, agent, EventKind::Accepted), 10);
    }
    let slow = first.iter().find(|(a, _)| a == "slow").unwrap().1.clone();
    for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
        c.on_event(&done(task, agent, 1), 1_000);
    }
    assert!(assigns(&c.tick(1_500)).is_empty(), "not yet a straggler");
    let backup = assigns(&c.tick(2_500));
    assert_eq!(backup.len(), 1);
    assert_eq!(backup[0].1.task, slow.task);
    assert_ne!(backup[0].0, "slow");
    assert_eq!(c.speculated(), 1);
    let actions = c.on_event(&done(&backup[0].1, &backup[0].0, 1), 3_000);
    assert!(warnings(&actions).is_empty(), "a lost race is not news: {actions:?}");
    assert!(actions.contains(&Action::Cancel { agent: "slow".into(), task: slow.task.clone(), attempt: 1 }));
    // The slow attempt's late result is ignored.
    assert!(c.on_event(&done(&slow, "slow", 1), 9_000).is_empty());
    let records = c.records();
    let rec = records.iter().find(|r| r.task == slow.task).unwrap();
    assert!(rec.speculative && rec.attempts == 2);
}

#[test]
fn backups_never_take_a_failing_task_past_max_attempts() {
    let mut p = plan(3, 1);
    p.speculative = true;
    p.max_attempts = 2;
    let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1), ("slow".into(), 1)]);
    let first = assigns(&c.start(0));
    for (agent, task) in &first {
        c.on_event(&ev(task, agent, EventKind::Accepted), 10);
    }
    let slow = first.iter().find(|(a, _)| a == "slow").unwrap().1.clone();
    for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
        c.on_event(&done(task, agent, 1), 1_000);
    }
    let backup = assigns(&c.tick(2_500));
    assert_eq!(backup.len(), 1, "a straggler gets a backup");
    c.on_event(&ev(&backup[0].1, &backup[0].0, EventKind::Accepted), 2_510);
    let fail = |t: &Task, a: &str| {
        let kind = EventKind::Failed {
            error: "map() raised ValueError".into(),
            detail: String::new(),
            lost_inputs: vec![],
            node_down: false,
        };
        ev(t, a, kind)
    };
    c.on_event(&fail(&backup[0].1, &backup[0].0), 3_000);
    // One failure, one attempt running: another backup could be a third failure.
    assert!(assigns(&c.tick(60_000)).is_empty());
    let end = c.on_event(&fail(&slow, "slow"), 61_000);
    assert!(
        matches!(&end[..], [Action::Failed { message, .. }] if message.starts_with("task m-") && message.contains("failed 2 times")),
        "{end:?}"
    );
}

#[test]
fn losing_an_agent_names_only_the_tasks_that_run_again() {
    // slow's map has a backup on another agent: losing slow restarts nothing.
    let mut p = plan(3, 1);
    p.speculative = true;
    let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1), ("slow".into(), 1)]);
    let first = assigns(&c.start(0));
    for (agent, task) in &first {
        c.on_event(&ev(task, agent, EventKind::Accepted), 10);
    }
    for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
        c.on_event(&done(task, agent, 1), 1_000);
    }
    assert_eq!(assigns(&c.tick(2_500)).len(), 1, "a backup of slow's map");
    let acts = c.on_agent_lost("slow", "went offline", 2_600);
    assert!(warnings(&acts).is_empty(), "{acts:?}");
    assert!(assigns(&acts).is_empty());
}

#[test]
fn a_task_failing_because_its_agents_ipfs_node_is_down_runs_again_without_counting() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let (a1, t1) = assigns(&c.start(0)).remove(0);
    let down = |t: &Task, a: &str| {
        let kind = EventKind::Failed {
            error: "cat: connection refused".into(),
            detail: String::new(),
            lost_inputs: vec![],
            node_down: true,
        };
        ev(t, a, kind)
    };
    let acts = c.on_event(&down(&t1, &a1), 10);
    assert_eq!(
        warnings(&acts),
        [format!(
            "agent {a1} cannot use its IPFS node (cat: connection refused); its running task m-00000 will run again (not counted as a failure)"
        )]
    );
    assert!(c.is_lost(&a1));
    let (a2, t2) = assigns(&acts).remove(0);
    assert_ne!(a2, a1);
    assert_eq!(t2.attempt, 2);
    assert!(c.on_event(&down(&t1, &a1), 11).is_empty(), "a second delivery changes nothing");
    // The other node goes down too: the job waits instead of failing.
    let acts = c.on_event(&down(&t2, &a2), 20);
    assert!(warnings(&acts).iter().any(|w| w.starts_with("no agent of this job can work now")), "{acts:?}");
    assert!(assigns(&acts).is_empty());
    // a's node answers again and goes down twice more: four such
    // failures, which would fail the job if they counted.
    let mut now = 5_000;
    let mut attempt = assigns(&c.on_agent_back(&a1, now)).remove(0).1;
    for _ in 0..2 {
        assert_eq!(c.phase(), Phase::Map);
        c.on_event(&down(&attempt, &a1), now + 1);
        now += 1_000;
        attempt = assigns(&c.on_agent_back(&a1, now)).remove(0).1;
    }
    assert_eq!(attempt.attempt, 5);
    c.on_event(&done(&attempt, &a1, 1), now + 1);
    assert_eq!(c.phase(), Phase::Reduce);
    assert_eq!(c.records()[0].attempts, 5);
}

#[test]
fn a_task_that_keeps_taking_ipfs_nodes_down_fails_the_job_in_the_end() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    let mut attempt = assigns(&c.start(0)).remove(0).1;
    let down = |t: &Task| {
        let kind = EventKind::Failed {
            error: "cat: connection refused".into(),
            detail: String::new(),
            lost_inputs: vec![],
            node_down: true,
        };
        ev(t, "a", kind)
    };
    let mut now = 0;
    for n in 1..=20 {
        now += 1_000;
        let acts = c.on_event(&down(&attempt), now);
        if c.phase() == Phase::Failed {
            // 4 excused, then 4 counted.
            assert_eq!(n, 8, "{acts:?}");
            return;
        }
        let mut next = assigns(&acts);
        if next.is_empty() {
            next = assigns(&c.on_agent_back("a", now + 500));
        }
        attempt = next.remove(0).1;
    }
    panic!("the job never failed");
}

#[test]
fn a_lost_map_output_runs_its_map_again_without_counting_a_failure() {
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 2)]);
    let maps = assigns(&c.start(0));
    c.on_event(&done(&maps[0].1, "a", 1), 1);
    let r = assigns(&c.on_event(&done(&maps[1].1, "a", 1), 2)).remove(0).1;
    let lost = ev(
        &r,
        "a",
        EventKind::Failed {
            error: "cannot fetch".into(),
            detail: String::new(),
            lost_inputs: vec!["m-00000-p0".into()],
            node_down: false,
        },
    );
    let again = assigns(&c.on_event(&lost, 3));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.task, "m-00000");
    assert_eq!(c.phase(), Phase::Map);
    let r2 = assigns(&c.on_event(&done(&again[0].1, "a", 1), 4)).remove(0).1;
    assert_eq!(r2.task, "r-00000");
    assert_eq!(r2.attempt, 2);
    assert_eq!(c.tasks.reduces[0].failures, 0);
}

#[test]
fn an_agent_failing_repeatedly_gets_no_more_of_the_jobs_tasks() {
    let mut c = Controller::new(plan(4, 1), &[("bad".into(), 1), ("good".into(), 1)]);
    let mut bad_failures = 0;
    let mut actions = c.start(0);
    for now in 1..40 {
        let mut next = Vec::new();
        for (agent, task) in assigns(&actions) {
            let kind = if agent == "bad" {
                bad_failures += 1;
                EventKind::Failed {
                    error: "boom".into(),
                    detail: String::new(),
                    lost_inputs: vec![],
                    node_down: false,
                }
            } else {
                let output = TaskOutput { cids: vec!["x".into()], sizes: vec![1], ..Default::default() };
                EventKind::Done { output }
            };
            next.extend(c.on_event(&ev(&task, &agent, kind), now));
        }
        actions = next;
    }
    assert_eq!(bad_failures, 3, "no task after the third failure");
    assert_eq!(c.phase(), Phase::Done);
}

#[test]
fn a_lost_agents_running_tasks_go_to_the_others() {
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    let lost = &first[0].0;
    let (d_agent, d_task) = &first[1];
    c.on_event(&done(d_task, d_agent, 1), 1);
    let again = assigns(&c.on_agent_lost(lost, "went offline", 2));
    assert_eq!(again.len(), 1);
    assert_eq!(&again[0].0, d_agent);
    assert_eq!(again[0].1.attempt, 2);
}

#[test]
fn an_empty_input_goes_straight_to_reduce() {
    let mut c = Controller::new(plan(0, 1), &[("a".into(), 1)]);
    let r = assigns(&c.start(0));
    assert_eq!(r[0].1.kind, TaskKind::Reduce { partition: 0, inputs: vec![] });
}

/// A status saying `agent` is online, sent at `now`, with a working IPFS node.
fn fresh(agent: &str, now: u64) -> AgentStatus {
    let mut s = AgentStatus::offline(agent);
    s.online = true;
    s.heartbeat_ms = now;
    s.heartbeat_interval_ms = 5_000;
    s.ipfs = "ok".into();
    s
}

/// The statuses at `now` that make `agent` lost, each alone, with what the user is told.
fn unusable(agent: &str, now: u64) -> [(AgentStatus, String); 3] {
    let mut offline = fresh(agent, now);
    offline.online = false;
    // Sent 30 s ago, every 5 s: three heartbeats and the grace period missed.
    let stale = fresh(agent, now - 30_000);
    let mut ipfs_down = fresh(agent, now);
    ipfs_down.ipfs = "connection refused".into();
    [
        (offline, "went offline".into()),
        (stale, "stopped sending its status".into()),
        (ipfs_down, "cannot use its IPFS node (connection refused)".into()),
    ]
}

/// `a` ran the one map and got a status that makes it lost: the map runs
/// again on `b`, and neither the task nor `a` counts a failure.
fn runs_elsewhere_without_failing(c: &Controller, acts: &[Action], why: &str) {
    assert_eq!(
        warnings(acts),
        [format!("agent a {why}; its running task m-00000 will run again (not counted as a failure)")]
    );
    let again = assigns(acts);
    assert_eq!(again.len(), 1, "{acts:?}");
    assert_eq!(again[0].0, "b");
    assert_eq!((again[0].1.task.as_str(), again[0].1.attempt), ("m-00000", 2));
    assert_eq!(c.tasks.maps[0].failures, 0);
    assert_eq!(c.agents["a"].failures, 0);
    assert!(c.is_lost("a"));
}

fn lose_a_by_status(which: usize) {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let (a1, _) = assigns(&c.start(0)).remove(0);
    assert_eq!(a1, "a");
    let (status, why) = unusable("a", 40_000)[which].clone();
    let acts = c.on_agent_status("a", Some(&status), 40_000);
    runs_elsewhere_without_failing(&c, &acts, &why);
}

#[test]
fn an_offline_status_runs_the_agents_running_tasks_elsewhere_without_counting_failures() {
    lose_a_by_status(0);
}

#[test]
fn a_stale_status_runs_the_agents_running_tasks_elsewhere_without_counting_failures() {
    lose_a_by_status(1);
}

#[test]
fn an_ipfs_down_status_runs_the_agents_running_tasks_elsewhere_without_counting_failures() {
    lose_a_by_status(2);
}

#[test]
fn a_fresh_status_after_any_of_these_makes_the_agent_usable_again_and_it_gets_tasks() {
    for (status, why) in unusable("a", 40_000) {
        let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
        c.start(0);
        let lost = c.on_agent_status("a", Some(&status), 40_000);
        assert!(c.is_lost("a"), "{why}");
        assert!(assigns(&lost).is_empty(), "{why}: {lost:?}");
        assert!(c.on_agent_status("a", Some(&status), 40_250).is_empty(), "{why}: told once");
        let back = c.on_agent_status("a", Some(&fresh("a", 41_000)), 41_000);
        assert!(!c.is_lost("a"), "{why}");
        assert_eq!(warnings(&back), ["agent a is back; the job goes on"], "{why}");
        let again = assigns(&back);
        assert_eq!(again.len(), 1, "{why}: {back:?}");
        assert_eq!((again[0].0.as_str(), again[0].1.attempt), ("a", 2), "{why}");
        // Fresh statuses of a usable agent change nothing.
        assert!(c.on_agent_status("a", Some(&fresh("a", 41_250)), 41_250).is_empty(), "{why}");
    }
}

#[test]
fn a_status_of_an_agent_never_heard_of_changes_nothing() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1), ("b".into(), 1)]);
    c.start(0);
    // Not lost for want of a status...
    assert!(c.on_agent_status("a", None, 40_000).is_empty());
    assert!(!c.is_lost("a"));
    // ...nor back for want of one.
    let (offline, _) = unusable("b", 40_000)[0].clone();
    c.on_agent_status("b", Some(&offline), 40_000);
    assert!(c.on_agent_status("b", None, 41_000).is_empty());
    assert!(c.is_lost("b"));
}

#[test]
fn a_status_for_an_agent_that_is_not_one_of_the_jobs_agents_changes_nothing() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    c.start(0);
    let (offline, _) = unusable("a", 40_000)[0].clone();
    c.on_agent_status("a", Some(&offline), 40_000);
    // The job waits for a; x coming and going is no reason to go on waiting.
    for (status, why) in unusable("x", 41_000) {
        assert!(c.on_agent_status("x", Some(&status), 41_000).is_empty(), "{why}");
        assert!(c.on_agent_status("x", Some(&fresh("x", 42_000)), 42_000).is_empty(), "{why}");
        assert!(!c.is_lost("x"));
    }
    assert!(matches!(&c.tick(100_000)[..], [Action::Failed { .. }]));
}

// ---- Verified results (verify.rs) ----

fn verified(splits: usize, reducers: u32, n: u32) -> JobPlan {
    JobPlan { verify: Verification::Every(n), ..plan(splits, reducers) }
}

/// What an honest agent returns for `task`: the same CIDs on every agent.
fn honest(task: &Task, agent: &str) -> TaskEvent {
    let n = match task.kind {
        TaskKind::Map { .. } => task.reducers,
        TaskKind::Reduce { .. } => 1,
    };
    done(task, agent, n)
}

/// What a lying agent returns: CIDs of its own.
fn lie(task: &Task, agent: &str) -> TaskEvent {
    let mut e = honest(task, agent);
    if let EventKind::Done { output } = &mut e.kind {
        output.cids = output.cids.iter().map(|c| format!("lie-{agent}-{c}")).collect();
    }
    e
}

/// Answers every assignment in turn, `liars` lying, until nothing more is
/// assigned; returns every action seen.
fn answer_all(c: &mut Controller, first: Actions, liars: &[&str]) -> Vec<Action> {
    let (mut seen, mut queue, mut now) = (first.clone(), first, 1_000);
    while !queue.is_empty() && !matches!(c.phase(), Phase::Done | Phase::Failed) {
        let mut next = Vec::new();
        for (agent, task) in assigns(&queue) {
            now += 10;
            let e = if liars.contains(&agent.as_str()) { lie(&task, &agent) } else { honest(&task, &agent) };
            next.extend(c.on_event(&e, now));
        }
        seen.extend(next.iter().cloned());
        queue = next;
    }
    seen
}

fn failed_message(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Failed { message, .. } => Some(message.clone()),
        _ => None,
    })
}

#[test]
fn n_agreeing_results_from_different_agents_finish_a_task_and_one_is_not_enough() {
    let agents = [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)];
    let mut c = Controller::new(verified(1, 1, 2), &agents);
    let first = assigns(&c.start(0));
    assert_eq!(first.len(), 2, "two attempts at once: {first:?}");
    assert_ne!(first[0].0, first[1].0, "on two different agents");
    assert!(first.iter().all(|(_, t)| t.task == "m-00000"));
    let after_one = c.on_event(&honest(&first[0].1, &first[0].0), 10);
    assert_eq!(c.progress().maps_done, 0, "one result is not enough: {after_one:?}");
    assert!(assigns(&after_one).is_empty(), "no reduce yet: {after_one:?}");
    let after_two = c.on_event(&honest(&first[1].1, &first[1].0), 20);
    assert_eq!(c.progress().maps_done, 1);
    assert!(warnings(&after_two).is_empty(), "{after_two:?}");
    let reduces = assigns(&after_two);
    assert_eq!(reduces.len(), 2, "the reduce runs on two agents too: {reduces:?}");
    assert_ne!(reduces[0].0, reduces[1].0);
    answer_all(&mut c, after_two, &[]);
    assert_eq!(c.phase(), Phase::Done);
    assert_eq!(c.verified_tasks(), 2);
    assert!(c.disagreements().is_empty());
    for r in c.records() {
        assert_eq!(r.agreed_by.len(), 2, "{r:?}");
        assert_eq!(r.agreed_by[0], r.agent);
    }
}

#[test]
fn a_disagreeing_result_runs_the_task_on_a_third_agent_the_majority_wins_and_the_liar_is_named_and_gets_no_more_tasks()
 {
    let agents = [("liar".into(), 1), ("a".into(), 1), ("b".into(), 1)];
    let mut c = Controller::new(verified(1, 1, 2), &agents);
    let first = assigns(&c.start(0));
    let on = |agent: &str| first.iter().find(|(a, _)| a == agent).map(|(_, t)| t.clone());
    let (m0_liar, m0_a) = (on("liar").unwrap(), on("a").unwrap());
    assert!(on("b").is_none(), "b waits: {first:?}");
    assert!(assigns(&c.on_event(&lie(&m0_liar, "liar"), 10)).is_empty(), "one result is not yet a mismatch");
    let acts = c.on_event(&honest(&m0_a, "a"), 20);
    assert_eq!(
        warnings(&acts),
        [
            "task m-00000: agents liar and a returned different results; running it on another agent to settle which is right"
        ]
    );
    assert_eq!(c.progress().maps_done, 0);
    let third = assigns(&acts);
    assert_eq!(third.len(), 1, "one more attempt: {acts:?}");
    assert_eq!((third[0].0.as_str(), third[0].1.task.as_str()), ("b", "m-00000"), "on the third agent");
    let settled = c.on_event(&honest(&third[0].1, "b"), 30);
    assert_eq!(
        warnings(&settled),
        [
            "agent liar returned a different result for task m-00000 than agents a and b; it gets no more tasks of this job"
        ]
    );
    assert_eq!(c.progress().maps_done, 1);
    let d = &c.disagreements()[0];
    assert_eq!(d.task, "m-00000");
    assert_eq!(
        (d.outvoted.clone(), d.agreed_by.clone()),
        (vec!["liar".to_string()], vec!["a".to_string(), "b".to_string()])
    );
    let said: Vec<(&str, &str)> = d.results.iter().map(|v| (v.agent.as_str(), v.cids[0].as_str())).collect();
    assert_eq!(said, [("liar", "lie-liar-m-00000-p0"), ("a", "m-00000-p0"), ("b", "m-00000-p0")]);
    assert_eq!(d.won, ["m-00000-p0"]);
    // The reduce goes to a and b only, with the agreed output as its input.
    let reduces = assigns(&settled);
    assert_eq!(reduces.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(reduces[0].1.kind, TaskKind::Reduce { partition: 0, inputs: vec!["m-00000-p0".into()] });
    let seen = answer_all(&mut c, settled, &[]);
    assert_eq!(c.phase(), Phase::Done, "{seen:?}");
    assert!(assigns(&seen).iter().all(|(a, _)| a != "liar"), "{seen:?}");
    assert_eq!(c.verified_tasks(), 2);
}

#[test]
fn results_that_all_disagree_up_to_the_bound_fail_the_task_with_a_message_listing_who_said_what() {
    let agents: Vec<(String, u32)> = ["a", "b", "c", "d", "e"].iter().map(|a| (a.to_string(), 1)).collect();
    let mut c = Controller::new(verified(1, 1, 2), &agents);
    let mut queue = c.start(0);
    let mut asked = Vec::new();
    let mut now = 0;
    while c.phase() != Phase::Failed {
        let next = assigns(&queue);
        assert!(!next.is_empty(), "the task failed or ran again: {queue:?}");
        queue = Vec::new();
        for (agent, task) in next {
            asked.push(agent.clone());
            now += 10;
            queue.extend(c.on_event(&lie(&task, &agent), now)); // each says something else
        }
    }
    assert_eq!(asked, ["a", "b", "c", "d"], "at most verify + 2 results");
    let message = failed_message(&queue).expect("the job failed");
    assert_eq!(
        message,
        "task m-00000 cannot be verified: verify = 2 needs 2 agreeing results from different agents, and 4 results disagreed (at most 4 are run): \
         a returned lie-a-m-00000-p0; b returned lie-b-m-00000-p0; c returned lie-c-m-00000-p0; d returned lie-d-m-00000-p0"
    );
}

#[test]
fn a_disagreement_with_no_agent_left_to_settle_it_fails_the_task_listing_who_said_what() {
    let mut c = Controller::new(verified(1, 1, 2), &[("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    c.on_event(&honest(&first[0].1, &first[0].0), 10);
    let end = c.on_event(&lie(&first[1].1, &first[1].0), 20);
    assert_eq!(c.phase(), Phase::Failed);
    let message = failed_message(&end).unwrap();
    assert!(
        message.starts_with("task m-00000 cannot be verified: verify = 2 needs 2 agreeing results"),
        "{message}"
    );
    assert!(message.contains("no other agent"), "{message}");
    assert!(message.contains("a returned m-00000-p0; b returned lie-b-m-00000-p0"), "{message}");
}

#[test]
fn a_job_with_fewer_agents_than_verify_needs_fails_at_start_naming_the_setting() {
    let mut c = Controller::new(verified(1, 1, 3), &[("a".into(), 1), ("b".into(), 1)]);
    let start = c.start(0);
    assert!(assigns(&start).is_empty());
    let message = failed_message(&start).unwrap();
    assert!(
        message.contains("verify = 3 needs 3 agreeing results") && message.contains("only 2 agent(s)"),
        "{message}"
    );
}

#[test]
fn a_spot_check_plan_verifies_exactly_the_chosen_tasks() {
    let chosen: std::collections::BTreeSet<String> = ["m-00001".to_string(), "r-00001".to_string()].into();
    let p = JobPlan { verify: Verification::Spot { fraction: 0.3, tasks: chosen.clone() }, ..plan(4, 2) };
    let agents = [("a".into(), 4), ("b".into(), 4), ("c".into(), 4)];
    let mut c = Controller::new(p, &agents);
    let first = c.start(0);
    let seen = answer_all(&mut c, first, &[]);
    assert_eq!(c.phase(), Phase::Done);
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (agent, task) in assigns(&seen) {
        runs.entry(task.task).or_default().push(agent);
    }
    for (task, on) in &runs {
        let want = if chosen.contains(task) { 2 } else { 1 };
        assert_eq!(on.len(), want, "{task} ran on {on:?}");
        assert!(on.len() < 2 || on[0] != on[1], "{task} ran twice on one agent");
    }
    assert_eq!(runs.len(), 6);
    assert_eq!(c.verified_tasks(), 2);
    let verified: Vec<String> =
        c.records().into_iter().filter(|r| r.agreed_by.len() > 1).map(|r| r.task).collect();
    assert_eq!(verified, ["m-00001", "r-00001"]);
}

#[test]
fn a_spot_check_picks_a_share_of_the_tasks_at_least_one_by_its_seed() {
    let a = spot_check(10, 2, 0.25, 7);
    assert_eq!(a.len(), 3, "a quarter of 12: {a:?}");
    assert_eq!(a, spot_check(10, 2, 0.25, 7), "the same seed, the same tasks");
    assert!((1..50).any(|seed| spot_check(10, 2, 0.25, seed) != a), "other seeds, other tasks");
    assert_eq!(spot_check(3, 1, 0.01, 1).len(), 1, "at least one");
    assert_eq!(spot_check(3, 1, 0.99, 1).len(), 4);
    let all: std::collections::BTreeSet<String> = (1..200).flat_map(|s| spot_check(3, 1, 0.25, s)).collect();
    assert_eq!(all.len(), 4, "every task can be picked: {all:?}");
}

#[test]
fn a_spot_check_that_catches_a_liar_runs_the_tasks_it_alone_returned_again() {
    // m-00000 is checked; the liar returned m-00001 unchecked, and lies.
    let chosen = ["m-00000".to_string()].into();
    let p = JobPlan { verify: Verification::Spot { fraction: 0.3, tasks: chosen }, ..plan(2, 1) };
    let mut c = Controller::new(p, &[("liar".into(), 2), ("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    let on = |agent: &str, task: &str| {
        first.iter().find(|(a, t)| a == agent && t.task == task).map(|(_, t)| t.clone()).expect("assigned")
    };
    let (m0_liar, m0_a, m1_liar) = (on("liar", "m-00000"), on("a", "m-00000"), on("liar", "m-00001"));
    c.on_event(&lie(&m1_liar, "liar"), 5);
    assert_eq!(c.progress().maps_done, 1, "unchecked: one result counts");
    c.on_event(&lie(&m0_liar, "liar"), 6);
    let acts = c.on_event(&honest(&m0_a, "a"), 7);
    let third = assigns(&acts).into_iter().find(|(_, t)| t.task == "m-00000").expect("a third agent");
    assert_eq!(third.0, "b");
    let settled = c.on_event(&honest(&third.1, "b"), 8);
    let w = warnings(&settled);
    assert!(
        w[0].starts_with("agent liar returned a different result for task m-00000 than agents a and b"),
        "{w:?}"
    );
    assert_eq!(
        w[1],
        "the results agent liar alone returned can no longer be trusted: task m-00001 runs again"
    );
    let again = assigns(&settled).into_iter().find(|(_, t)| t.task == "m-00001").expect("m-00001 runs again");
    assert_ne!(again.0, "liar");
    let seen = answer_all(&mut c, settled, &["liar"]);
    assert_eq!(c.phase(), Phase::Done);
    assert!(assigns(&seen).iter().all(|(a, _)| a != "liar"));
    let reduce = assigns(&seen).into_iter().find(|(_, t)| t.task == "r-00000").unwrap().1;
    assert_eq!(
        reduce.kind,
        TaskKind::Reduce { partition: 0, inputs: vec!["m-00000-p0".into(), "m-00001-p0".into()] },
        "no lie among the reducer's inputs"
    );
}

#[test]
fn two_results_from_the_same_agent_never_count_as_two_votes() {
    let mut c = Controller::new(verified(1, 1, 2), &[("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    let att = |agent: &str| first.iter().find(|(a, _)| a == agent).unwrap().1.clone();
    let (a1, b1) = (att("a"), att("b"));
    // a looks lost (a broker restart), its attempt is given up on, then it is back.
    let lost = c.on_agent_lost("a", "went offline", 100);
    assert!(assigns(&lost).is_empty(), "no other agent may take it: {lost:?}");
    assert!(
        warnings(&lost)
            .iter()
            .any(|w| w.starts_with("only 1 agent(s) of this job can work now and verify = 2 needs 2")),
        "{lost:?}"
    );
    let back = c.on_agent_back("a", 200);
    let (agent, a2) = assigns(&back).remove(0);
    assert_eq!((agent.as_str(), a2.task.as_str()), ("a", "m-00000"));
    // Both of a's attempts finish: one vote.
    c.on_event(&honest(&a2, "a"), 300);
    assert!(c.on_event(&honest(&a1, "a"), 310).is_empty());
    assert_eq!(c.progress().maps_done, 0, "a's two results are one vote");
    // The other way round: the attempt given up on answers first, and a's
    // other attempt is cancelled.
    let mut c2 = Controller::new(verified(1, 1, 2), &[("a".into(), 1), ("b".into(), 1)]);
    let first2 = assigns(&c2.start(0));
    let a1 = first2.iter().find(|(a, _)| a == "a").unwrap().1.clone();
    c2.on_agent_lost("a", "went offline", 100);
    let a2 = assigns(&c2.on_agent_back("a", 200)).remove(0).1;
    let acts = c2.on_event(&honest(&a1, "a"), 300);
    assert!(
        acts.contains(&Action::Cancel { agent: "a".into(), task: "m-00000".into(), attempt: a2.attempt }),
        "{acts:?}"
    );
    assert!(c2.on_event(&honest(&a2, "a"), 310).is_empty());
    assert_eq!(c2.progress().maps_done, 0);
    // b's result is the second vote.
    c.on_event(&honest(&b1, "b"), 400);
    assert_eq!(c.progress().maps_done, 1);
    assert_eq!(c.records()[0].agreed_by, ["a", "b"]);
}

#[test]
fn a_verification_attempt_on_an_agent_that_goes_offline_is_re_run_elsewhere() {
    let mut c = Controller::new(verified(1, 1, 2), &[("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    let first = assigns(&c.start(0));
    assert_eq!(first.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    let (offline, _) = unusable("b", 40_000)[0].clone();
    let acts = c.on_agent_status("b", Some(&offline), 40_000);
    assert_eq!(
        warnings(&acts),
        ["agent b went offline; its running task m-00000 will run again (not counted as a failure)"]
    );
    let again = assigns(&acts);
    assert_eq!(again.len(), 1, "{acts:?}");
    assert_eq!((again[0].0.as_str(), again[0].1.task.as_str()), ("c", "m-00000"), "not on a, which runs it");
    c.on_event(&honest(&first[0].1, "a"), 41_000);
    c.on_event(&honest(&again[0].1, "c"), 42_000);
    assert_eq!(c.progress().maps_done, 1);
    assert_eq!(c.records()[0].agreed_by, ["a", "c"]);
    assert_eq!(c.tasks.maps[0].failures, 0);
    // b's late result changes nothing.
    assert!(c.on_event(&honest(&first[1].1, "b"), 43_000).is_empty());
}

#[test]
fn a_backup_of_a_verified_task_runs_on_an_agent_without_a_result_of_it_and_is_one_vote() {
    let mut p = verified(2, 1, 2);
    p.speculative = true;
    // a, ranked first, returns a result for slow's task: the backup must
    // go to another agent.
    let agents = [("a".into(), 1), ("slow".into(), 1), ("b".into(), 1), ("c".into(), 1)];
    let mut c = Controller::new(p, &agents);
    let first = assigns(&c.start(0));
    for (agent, task) in &first {
        c.on_event(&ev(task, agent, EventKind::Accepted), 10);
    }
    let slow = first.iter().find(|(a, _)| a == "slow").unwrap().1.clone();
    assert_eq!(first.iter().find(|(a, _)| a == "a").unwrap().1.task, slow.task);
    for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
        c.on_event(&honest(task, agent), 1_000);
    }
    assert_eq!(c.progress().maps_done, 1);
    let backup = assigns(&c.tick(2_500));
    assert_eq!(backup.len(), 1, "{backup:?}");
    assert_eq!(backup[0].1.task, slow.task);
    assert_eq!(backup[0].0, "b", "not a, which returned a result, nor slow: {backup:?}");
    let acts = c.on_event(&honest(&backup[0].1, "b"), 3_000);
    assert!(acts.contains(&Action::Cancel {
        agent: "slow".into(),
        task: slow.task.clone(),
        attempt: slow.attempt
    }));
    assert_eq!(c.progress().maps_done, 2);
    let rec = c.records().into_iter().find(|r| r.task == slow.task).unwrap();
    assert_eq!(rec.agreed_by, ["a", "b"]);
    assert!(!rec.speculative, "the record is the first agreeing result, a's");
    assert_eq!(c.speculated(), 1);
}

#[test]
fn a_lost_verified_map_output_runs_its_map_again_verified_again() {
    let mut c = Controller::new(verified(1, 1, 2), &[("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    let first = c.start(0);
    // Every map and the first reduce attempt answer.
    let mut reduces = Vec::new();
    for (agent, task) in assigns(&first) {
        reduces.extend(assigns(&c.on_event(&honest(&task, &agent), 10)));
    }
    assert_eq!(reduces.len(), 2, "{reduces:?}");
    let (agent, r1) = reduces[0].clone();
    let lost = ev(
        &r1,
        &agent,
        EventKind::Failed {
            error: "cannot fetch".into(),
            detail: String::new(),
            lost_inputs: vec!["m-00000-p0".into()],
            node_down: false,
        },
    );
    let again = c.on_event(&lost, 20);
    assert_eq!(c.phase(), Phase::Map);
    let maps: Vec<_> = assigns(&again).into_iter().filter(|(_, t)| t.task == "m-00000").collect();
    assert_eq!(maps.len(), 2, "two agreeing results again: {again:?}");
    let seen = answer_all(&mut c, again, &[]);
    // The other reduce attempt, still running, answers: the inputs are the
    // same (the map gave the same CIDs again), so it is a vote.
    let (agent, r2) = reduces[1].clone();
    assert!(assigns(&seen).iter().all(|(a, t)| t.task != "r-00000" || a != &agent), "{seen:?}");
    c.on_event(&honest(&r2, &agent), 30_000);
    assert_eq!(c.phase(), Phase::Done, "{seen:?}");
    assert_eq!(c.tasks.reduces[0].failures, 0);
}

#[test]
fn an_outvoted_agent_lost_as_well_does_not_stall_the_job() {
    // Three agents, verify = 2: after the liar is outvoted, two are left, and
    // the job goes on with them.
    let mut c = Controller::new(verified(3, 1, 2), &[("a".into(), 1), ("b".into(), 1), ("liar".into(), 1)]);
    let first = c.start(0);
    let seen = answer_all(&mut c, first, &["liar"]);
    assert_eq!(c.phase(), Phase::Done, "{seen:?}");
    assert!(c.disagreements().iter().all(|d| d.outvoted == ["liar"]));
    assert!(!c.disagreements().is_empty());
    assert_eq!(c.verified_tasks(), 4);
    assert!(c.on_agent_lost("liar", "went offline", 99_000).is_empty());
}

#[test]
fn a_liar_caught_in_the_reduce_phase_sends_its_unchecked_maps_and_every_reduce_back() {
    // Only the reduce is checked; the liar's map went unchecked, and the
    // reduce's inputs hold its lie.
    let chosen = ["r-00000".to_string()].into();
    let p = JobPlan { verify: Verification::Spot { fraction: 0.3, tasks: chosen }, ..plan(2, 1) };
    let mut c = Controller::new(p, &[("liar".into(), 1), ("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(0));
    assert_eq!(
        first.iter().map(|(a, t)| (a.as_str(), t.task.as_str())).collect::<Vec<_>>(),
        [("liar", "m-00000"), ("a", "m-00001")]
    );
    c.on_event(&lie(&first[0].1, "liar"), 10);
    let reduces = assigns(&c.on_event(&honest(&first[1].1, "a"), 20));
    assert_eq!(reduces.len(), 2, "{reduces:?}");
    let lied_inputs = vec!["lie-liar-m-00000-p0".to_string(), "m-00001-p0".to_string()];
    assert_eq!(reduces[0].1.kind, TaskKind::Reduce { partition: 0, inputs: lied_inputs });
    let mut next = Vec::new();
    for (agent, task) in &reduces {
        let e = if agent == "liar" { lie(task, agent) } else { honest(task, agent) };
        next.extend(c.on_event(&e, 30));
    }
    let third = assigns(&next).remove(0);
    assert_eq!((third.0.as_str(), third.1.task.as_str()), ("b", "r-00000"));
    let settled = c.on_event(&honest(&third.1, "b"), 40);
    let w = warnings(&settled);
    assert!(w[0].starts_with("agent liar returned a different result for task r-00000"), "{w:?}");
    assert_eq!(
        w[1],
        "the results agent liar alone returned can no longer be trusted: tasks m-00000, r-00000 run again"
    );
    assert_eq!(c.phase(), Phase::Map);
    let seen = answer_all(&mut c, settled, &[]);
    assert_eq!(c.phase(), Phase::Done, "{seen:?}");
    let last_reduce = assigns(&seen).into_iter().rfind(|(_, t)| t.task == "r-00000").unwrap().1;
    assert_eq!(
        last_reduce.kind,
        TaskKind::Reduce { partition: 0, inputs: vec!["m-00000-p0".into(), "m-00001-p0".into()] }
    );
    assert_eq!(c.part_cids()[0].0, "r-00000-p0");
    assert!(assigns(&seen).iter().all(|(a, _)| a != "liar"));
}

#[test]
fn a_reduce_result_from_earlier_inputs_neither_counts_nor_outvotes_after_its_map_ran_again() {
    let out = |t: &Task, agent: &str, cid: &str| {
        let output = TaskOutput { cids: vec![cid.into()], sizes: vec![5], ..Default::default() };
        ev(t, agent, EventKind::Done { output })
    };
    let mut c = Controller::new(verified(1, 1, 2), &[("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    let maps = assigns(&c.start(0));
    let mut reduces = Vec::new();
    for (agent, task) in &maps {
        reduces.extend(assigns(&c.on_event(&out(task, agent, "m-old"), 10)));
    }
    let (ra, rb) = (reduces[0].clone(), reduces[1].clone());
    let lost = EventKind::Failed {
        error: "cannot fetch".into(),
        detail: String::new(),
        lost_inputs: vec!["m-old".into()],
        node_down: false,
    };
    let again = assigns(&c.on_event(&ev(&ra.1, &ra.0, lost), 20));
    // The other reducer finishes on the old inputs meanwhile.
    c.on_event(&out(&rb.1, &rb.0, "part-old"), 25);
    // The map, run again, gives other CIDs (its code is not deterministic).
    let mut next = Vec::new();
    for (agent, task) in again.iter().filter(|(_, t)| t.task == "m-00000") {
        next.extend(c.on_event(&out(task, agent, "m-new"), 30));
    }
    assert!(warnings(&next).is_empty(), "{next:?}");
    let fresh = assigns(&next);
    assert_eq!(fresh.len(), 2, "two attempts on the new inputs, the old result set aside: {next:?}");
    assert!(
        fresh.iter().all(|(_, t)| t.kind == TaskKind::Reduce { partition: 0, inputs: vec!["m-new".into()] })
    );
    let mut end = Vec::new();
    for (agent, task) in &fresh {
        end.extend(c.on_event(&out(task, agent, "part-new"), 40));
    }
    assert_eq!(c.phase(), Phase::Done, "{end:?}");
    assert!(warnings(&end).is_empty(), "nobody outvoted: {end:?}");
    assert!(c.disagreements().is_empty());
    assert_eq!(c.part_cids()[0].0, "part-new");
}

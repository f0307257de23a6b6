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
        ..Default::default()
    };
    JobPlan {
        splits: (0..splits as u64)
            .map(|i| MapSplit {
                input_cid: "in".into(),
                input_size: splits as u64 * 10,
                name: String::new(),
                compression: None,
                start: i * 10,
                end: i * 10 + 10,
                files: Vec::new(),
            })
            .collect(),
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
            "no agent of this job can work now (offline, its IPFS node does not answer, or low on disk); waiting up to 60 s for one to come back"
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
                "no agent of this job could work for 60 s (offline, its IPFS node did not answer, or low on disk)"
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
fn a_backup_goes_only_to_an_agent_with_the_attempts_memory_free() {
    let mut p = plan(3, 1);
    p.speculative = true;
    p.code.limits.memory_mb = Some(900);
    let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1), ("slow".into(), 1)]);
    let first = assigns(&c.start(0));
    for (agent, task) in &first {
        c.on_event(&ev(task, agent, EventKind::Accepted), 10);
    }
    for (agent, task) in first.iter().filter(|(a, _)| a != "slow") {
        c.on_event(&done(task, agent, 1), 1_000);
    }
    let with_memory = |agent: &str, mb: u64, now: u64| {
        let mut s = fresh(agent, now);
        s.mem_available_mb = mb;
        s
    };
    // Every agent says it has less free than the attempt's 900 MiB limit.
    for agent in ["a", "b", "slow"] {
        assert!(c.on_agent_status(agent, Some(&with_memory(agent, 500, 2_400)), 2_400).is_empty());
    }
    assert!(assigns(&c.tick(2_500)).is_empty(), "a straggler, but no room for a backup");
    assert_eq!(c.speculated(), 0);
    // b has room now: the backup goes there.
    c.on_agent_status("b", Some(&with_memory("b", 1_200, 2_600)), 2_600);
    let backup = assigns(&c.tick(2_750));
    assert_eq!(backup.len(), 1, "{backup:?}");
    assert_eq!(backup[0].0, "b");
    assert_eq!(c.speculated(), 1);
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
fn unusable(agent: &str, now: u64) -> [(AgentStatus, String); 4] {
    let mut offline = fresh(agent, now);
    offline.online = false;
    // Sent 30 s ago, every 5 s: three heartbeats and the grace period missed.
    let stale = fresh(agent, now - 30_000);
    let mut ipfs_down = fresh(agent, now);
    ipfs_down.ipfs = "connection refused".into();
    let mut disk_low = fresh(agent, now);
    (disk_low.disk_free_mb, disk_low.min_free_disk_mb) = (Some(100), 512);
    [
        (offline, "went offline".into()),
        (stale, "stopped sending its status".into()),
        (ipfs_down, "cannot use its IPFS node (connection refused)".into()),
        (
            disk_low,
            "is low on disk (100 MiB free in its work dir, below its floor of 512 MiB (min_free_disk_mb))"
                .into(),
        ),
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
fn a_low_disk_status_runs_the_agents_running_tasks_elsewhere_without_counting_failures() {
    lose_a_by_status(3);
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

mod verify;

// ---- Results from the task cache (cached.rs) ----

fn output(cids: &[&str]) -> TaskOutput {
    TaskOutput {
        cids: cids.iter().map(|c| c.to_string()).collect(),
        sizes: vec![5; cids.len()],
        ..Default::default()
    }
}

#[test]
fn cached_maps_settle_before_the_start_and_only_the_rest_run() {
    let mut c = Controller::new(plan(3, 2), &[("a".into(), 4)]);
    let wanted: Vec<String> = c.cacheable().into_iter().map(|(id, _)| id).collect();
    assert_eq!(wanted, ["m-00000", "m-00001", "m-00002"], "maps first");
    assert!(c.reuse("m-00000", output(&["x0", "x1"]), vec!["old".into()]));
    assert!(!c.reuse("m-00001", output(&["only one"]), vec!["old".into()]), "one output per partition");
    assert!(!c.reuse("r-00000", output(&["p"]), vec!["old".into()]), "no reduce while maps are open");
    let started = assigns(&c.start(0));
    let ran: Vec<&str> = started.iter().map(|(_, t)| t.task.as_str()).collect();
    assert_eq!(ran, ["m-00001", "m-00002"]);
    assert!(c.cacheable().is_empty(), "only before the start");
    assert!(!c.reuse("m-00001", output(&["y0", "y1"]), vec!["old".into()]));
    let mut reduces = Vec::new();
    for (_, t) in &started {
        reduces.extend(assigns(&c.on_event(&done(t, "a", 2), 1)));
    }
    let inputs: Vec<&TaskKind> = reduces.iter().map(|(_, t)| &t.kind).collect();
    assert!(
        matches!(inputs[0], TaskKind::Reduce { partition: 0, inputs } if inputs == &["x0", "m-00001-p0", "m-00002-p0"]),
        "the cached map's output is a reducer's input: {inputs:?}"
    );
    let records = c.records();
    assert!(records[0].cached && records[0].agent == "old" && !records[1].cached);
    assert_eq!(c.cached_tasks(), 1);
    // What the cache records afterwards: the maps this job ran, not the cached one.
    let settled = c.settled();
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert!(settled.iter().all(|s| s.output.cids[0] != "x0"));
}

#[test]
fn with_every_map_cached_the_reduces_are_asked_for_with_those_inputs_and_a_fully_cached_job_finishes_at_once()
{
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 1)]);
    assert!(c.reuse("m-00000", output(&["x"]), vec!["old".into()]));
    assert!(c.reuse("m-00001", output(&["y"]), vec!["old".into()]));
    let wanted = c.cacheable();
    assert_eq!(
        wanted,
        vec![(
            "r-00000".to_string(),
            TaskKind::Reduce { partition: 0, inputs: vec!["x".into(), "y".into()] }
        )]
    );
    assert!(c.reuse("r-00000", output(&["part"]), vec!["old".into()]));
    let actions = c.start(0);
    assert!(assigns(&actions).is_empty());
    assert!(actions.contains(&Action::Finished));
    assert_eq!(c.part_cids(), vec![("part".to_string(), 5)]);
    assert_eq!(c.cached_tasks(), 3);
    assert!(c.settled().is_empty(), "nothing ran, nothing new to record");
}

#[test]
fn a_cached_output_with_fewer_agreeing_agents_than_verification_asks_does_not_settle_a_task() {
    let p = JobPlan { verify: Verification::Every(2), ..plan(1, 1) };
    let mut c = Controller::new(p, &[("a".into(), 1), ("b".into(), 1)]);
    assert!(!c.reuse("m-00000", output(&["x"]), vec!["old".into()]));
    assert!(c.reuse("m-00000", output(&["x"]), vec!["old".into(), "older".into()]));
}

#[test]
fn a_lost_cached_map_output_runs_the_map_again() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    assert!(c.reuse("m-00000", output(&["gone"]), vec!["old".into()]));
    let reduce = assigns(&c.start(0)).remove(0).1;
    let lost = ev(
        &reduce,
        "a",
        EventKind::Failed {
            error: "fetching".into(),
            detail: String::new(),
            lost_inputs: vec!["gone".into()],
            node_down: false,
        },
    );
    let again = assigns(&c.on_event(&lost, 1));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.task, "m-00000");
    c.on_event(&done(&again[0].1, "a", 1), 2);
    assert_eq!(c.cached_tasks(), 0);
    assert_eq!(c.settled().len(), 1, "the new output is recorded");
}

#[test]
fn results_an_agent_outvoted_in_the_job_agreed_on_are_not_recorded() {
    // Every task on two agents; "liar" is honest on one task and lies on
    // the other, where a third agent outvotes it.
    let p = JobPlan { verify: Verification::Every(2), ..plan(2, 0) };
    let mut c = Controller::new(p, &[("liar".into(), 2), ("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    let mut queue = assigns(&c.start(0));
    let mut now = 1;
    while let Some((agent, t)) = (!queue.is_empty()).then(|| queue.remove(0)) {
        let mut d = done(&t, &agent, 1);
        if let (EventKind::Done { output }, true) = (&mut d.kind, agent == "liar" && t.task == "m-00001") {
            output.cids = vec!["forged".into()];
        }
        queue.extend(assigns(&c.on_event(&d, now)));
        now += 1;
    }
    assert_eq!(c.phase(), Phase::Done);
    let records = c.records();
    assert!(
        records.iter().any(|r| r.agreed_by.contains(&"liar".to_string())),
        "the liar's honest result still counts for this job: {records:?}"
    );
    let settled = c.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert!(!settled[0].agreed_by.contains(&"liar".to_string()));
}

#[test]
fn an_agent_outvoted_now_takes_its_cached_results_with_it_and_no_one_else_s() {
    let spot = Verification::Spot { fraction: 0.5, tasks: ["m-00001".to_string()].into() };
    let p = JobPlan { verify: spot, ..plan(3, 0) };
    let mut c = Controller::new(p, &[("liar".into(), 1), ("a".into(), 1), ("b".into(), 1)]);
    assert!(c.reuse("m-00000", output(&["x"]), vec!["liar".into()]));
    assert!(c.reuse("m-00002", output(&["z"]), vec!["a".into()]));
    let mut queue = assigns(&c.start(0));
    let mut reran = Vec::new();
    let mut now = 1;
    while let Some((agent, t)) = queue.pop() {
        reran.push(t.task.clone());
        let mut d = done(&t, &agent, 1);
        if let (EventKind::Done { output }, true) = (&mut d.kind, agent == "liar" && t.task == "m-00001") {
            output.cids = vec!["forged".into()];
        }
        queue.extend(assigns(&c.on_event(&d, now)));
        now += 1;
    }
    assert_eq!(c.phase(), Phase::Done);
    assert!(reran.contains(&"m-00000".to_string()), "the liar's cached result runs again: {reran:?}");
    assert!(!reran.contains(&"m-00002".to_string()), "a's cached result stands: {reran:?}");
}

// ---- Map outputs lost with their agent's node (liveness.rs) ----

/// Two agents, each on its own node (or both on one), a map done by each
/// and the reduce running on one; then the other becomes lost by `status`
/// (made for "a", renamed). Returns the controller, the actions, the lost
/// agent, its map and the reducer's agent.
fn lose_one(shared_node: bool, status: AgentStatus) -> (Controller, Vec<Action>, String, String, String) {
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 2), ("b".into(), 2)]);
    for (agent, node) in [("a", "node-a"), ("b", if shared_node { "node-a" } else { "node-b" })] {
        let mut s = fresh(agent, 0);
        s.ipfs_peer_id = Some(node.into());
        c.on_agent_status(agent, Some(&s), 0);
    }
    let maps = assigns(&c.start(0));
    let mut reduce = Vec::new();
    for (agent, t) in &maps {
        reduce.extend(assigns(&c.on_event(&done(t, agent, 1), 1)));
    }
    assert_eq!(reduce.len(), 1);
    let reducer = reduce[0].0.clone();
    let gone = if reducer == "a" { "b" } else { "a" }.to_string();
    let its_map = maps.iter().find(|(a, _)| *a == gone).unwrap().1.task.clone();
    let mut status = status;
    status.agent = gone.clone();
    if status.ipfs_peer_id.is_some() {
        status.ipfs_peer_id = Some(format!("node-{gone}"));
    }
    let acts = c.on_agent_status(&gone, Some(&status), 100_000);
    (c, acts, gone, its_map, reducer)
}

#[test]
fn a_map_output_only_a_gone_agents_node_held_runs_again_at_once() {
    for (status, why) in unusable("a", 100_000).into_iter().take(3) {
        let mut status = status;
        status.ipfs_peer_id = Some("node-a".into());
        let (c, acts, gone, its_map, reducer) = lose_one(false, status);
        let again: Vec<String> =
            assigns(&acts).into_iter().map(|(agent, t)| format!("{agent} {}", t.task)).collect();
        assert_eq!(again, [format!("{reducer} {its_map}")], "{why}: {acts:?}");
        let w = warnings(&acts).join("\n");
        let said = format!(
            "agent {gone} {why}: the outputs of its map {its_map} were only on its node and are lost"
        );
        assert!(w.contains(&said), "{w}");
        assert_eq!(c.phase(), Phase::Map);
    }
}

#[test]
fn nothing_is_lost_when_the_agent_shares_its_node_or_is_only_low_on_disk() {
    let [.., (disk_low, _)] = unusable("a", 100_000);
    let mut offline = fresh("a", 100_000);
    offline.online = false;
    for (shared, status) in [(true, offline), (false, disk_low)] {
        let (c, acts, ..) = lose_one(shared, status);
        assert!(assigns(&acts).is_empty(), "{acts:?}");
        assert_eq!(c.phase(), Phase::Reduce);
    }
}

// ---- Parts held until fetched (parts.rs) ----

/// A job of one map and two reduces on "a" and "b" (own nodes) that holds
/// its parts; runs to both reduces done. Returns the controller, the
/// reduces' (agent, task) and the actions of the last result.
fn held_job() -> (Controller, Vec<(String, Task)>, Vec<Action>) {
    let mut c = Controller::new(plan(1, 2), &[("a".into(), 1), ("b".into(), 1)]);
    for agent in ["a", "b"] {
        let mut s = fresh(agent, 0);
        s.ipfs_peer_id = Some(format!("node-{agent}"));
        c.on_agent_status(agent, Some(&s), 0);
    }
    c.hold_parts();
    let (agent, m) = assigns(&c.start(0)).remove(0);
    let reduces = assigns(&c.on_event(&done(&m, &agent, 2), 1));
    assert_eq!(reduces.len(), 2);
    c.on_event(&done(&reduces[0].1, &reduces[0].0, 1), 2);
    let last = c.on_event(&done(&reduces[1].1, &reduces[1].0, 1), 3);
    (c, reduces, last)
}

#[test]
fn a_job_holding_its_parts_is_done_once_each_part_is_fetched() {
    let (mut c, _, last) = held_job();
    assert!(!last.contains(&Action::Finished), "not before the parts are here: {last:?}");
    let parts = c.parts_done();
    assert_eq!(parts.iter().map(|p| p.cid.as_str()).collect::<Vec<_>>(), ["r-00000-p0", "r-00001-p0"]);
    assert!(c.part_fetched(parts[1].clone()).is_empty());
    // A fetch of an earlier attempt's part counts for nothing.
    let stale = PartRef { attempt: 99, ..parts[0].clone() };
    assert!(c.part_fetched(stale).is_empty());
    assert_eq!(c.part_fetched(parts[0].clone()), vec![Action::Finished]);
    assert_eq!(c.phase(), Phase::Done);
}

#[test]
fn a_part_that_cannot_be_fetched_runs_its_reduce_again_elsewhere() {
    let (mut c, reduces, _) = held_job();
    let parts = c.parts_done();
    c.part_fetched(parts[1].clone());
    let acts = c.part_lost(parts[0].clone(), "no answer within 60s", 10);
    let again = assigns(&acts);
    assert_eq!(again.len(), 1, "{acts:?}");
    assert_eq!(again[0].1.task, "r-00000");
    assert_ne!(again[0].0, reduces[0].0, "another agent than the one whose node lost it");
    let w = warnings(&acts).join("\n");
    assert!(
        w.contains(&format!(
            "part 0 (r-00000-p0) could not be fetched from agent {}'s node (no answer within 60s); r-00000 runs again",
            reduces[0].0
        )),
        "{w}"
    );
    assert!(!acts.contains(&Action::Finished));
    // Its new result, once fetched, finishes the job.
    c.on_event(&done(&again[0].1, &again[0].0, 1), 11);
    let new = c.parts_done().remove(0);
    assert_eq!(new.attempt, 2);
    assert_eq!(c.part_fetched(new), vec![Action::Finished]);
}

#[test]
fn a_part_lost_again_and_again_fails_the_job_with_the_fetch_error() {
    let (mut c, ..) = held_job();
    let mut now = 10;
    for _ in 0..c.plan.max_attempts {
        let part = c.parts_done().remove(0);
        let (agent, t) = assigns(&c.part_lost(part, "no answer within 60s", now)).remove(0);
        c.on_event(&done(&t, &agent, 1), now + 1);
        now += 2;
    }
    let part = c.parts_done().remove(0);
    let acts = c.part_lost(part, "no answer within 60s", now);
    match &acts[..] {
        [Action::Failed { message, .. }] => {
            assert!(message.contains("part 0 (r-00000-p0) could not be fetched"), "{message}");
            assert!(message.contains("4 times over: no answer within 60s"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_part_not_fetched_yet_is_lost_with_its_agents_node_and_runs_again_at_once() {
    let (mut c, reduces, _) = held_job();
    let parts = c.parts_done();
    // The other reducer's part is here already: only the lost one runs again.
    let (gone, kept) = (&reduces[0].0, &reduces[1].0);
    assert_ne!(gone, kept);
    c.part_fetched(parts[1].clone());
    let mut offline = fresh(gone, 100_000);
    offline.online = false;
    let acts = c.on_agent_status(gone, Some(&offline), 100_000);
    // The map ran on the lost agent too: it runs again first, then the reduce.
    let again: Vec<String> = assigns(&acts).into_iter().map(|(a, t)| format!("{a} {}", t.task)).collect();
    assert_eq!(again, [format!("{kept} m-00000")], "{acts:?}");
    let w = warnings(&acts).join("\n");
    assert!(
        w.contains(&format!(
            "agent {gone} went offline: its part r-00000 was not fetched yet and is lost with its node; it runs again"
        )),
        "{w}"
    );
    let (agent, m) = assigns(&acts).remove(0);
    let reduce = assigns(&c.on_event(&done(&m, &agent, 2), 200_000));
    let tasks: Vec<&str> = reduce.iter().map(|(_, t)| t.task.as_str()).collect();
    assert_eq!(tasks, ["r-00000"], "only the lost part's reduce runs again");
}

#[test]
fn a_job_not_holding_its_parts_is_done_with_its_last_task() {
    let mut c = Controller::new(plan(1, 1), &[("a".into(), 1)]);
    let (agent, m) = assigns(&c.start(0)).remove(0);
    let (agent2, r) = assigns(&c.on_event(&done(&m, &agent, 1), 1)).remove(0);
    assert_eq!(c.on_event(&done(&r, &agent2, 1), 2), vec![Action::Finished]);
}

#[test]
fn maps_go_first_to_the_agent_whose_node_holds_their_split() {
    // b's node holds splits 1 and 2 (all of 2, half of 1); a holds none.
    let mut c = Controller::new(plan(4, 1), &[("a".into(), 2), ("b".into(), 2)]);
    c.set_locality(LocalBytes::from([("a".into(), vec![0; 4]), ("b".into(), vec![0, 5, 10, 0])]));
    let first = assigns(&c.start(0));
    let on = |agent: &str| {
        let mut ids: Vec<String> =
            first.iter().filter(|(a, _)| a == agent).map(|(_, t)| t.task.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(on("b"), ["m-00001", "m-00002"], "b's slots go to the splits it holds: {first:?}");
    assert_eq!(on("a"), ["m-00000", "m-00003"]);
    // The summary says which bytes were on the node and which came over the swarm.
    for (agent, task) in &first {
        let mut d = done(task, agent, 1);
        if let EventKind::Done { output } = &mut d.kind {
            output.bytes_read = 10;
        }
        c.on_event(&d, 1);
    }
    let records = c.records();
    let m1 = records.iter().find(|r| r.task == "m-00001").unwrap();
    assert_eq!((m1.local_bytes, m1.remote_bytes), (Some(5), Some(5)));
    let m0 = records.iter().find(|r| r.task == "m-00000").unwrap();
    assert_eq!((m0.local_bytes, m0.remote_bytes), (Some(0), Some(10)));
}

#[test]
fn a_job_whose_data_is_nowhere_yet_is_scheduled_as_before_and_reports_no_locality() {
    let mut with = Controller::new(plan(3, 1), &[("a".into(), 2), ("b".into(), 1)]);
    with.set_locality(LocalBytes::from([("a".into(), vec![0; 3]), ("b".into(), vec![0; 3])]));
    let mut without = Controller::new(plan(3, 1), &[("a".into(), 2), ("b".into(), 1)]);
    let first = assigns(&without.start(0));
    assert_eq!(assigns(&with.start(0)), first);
    without.on_event(&done(&first[0].1, &first[0].0, 1), 1);
    assert!(without.records().iter().all(|r| r.local_bytes.is_none() && r.remote_bytes.is_none()));
}

#[test]
fn a_map_waits_a_little_for_a_slot_where_its_data_is_then_goes_elsewhere() {
    let mut c = Controller::new(plan(3, 1), &[("a".into(), 2), ("b".into(), 1)]);
    c.set_locality(LocalBytes::from([("b".into(), vec![10; 3])]));
    let first = assigns(&c.start(0));
    assert_eq!(
        first.iter().map(|(a, t)| (a.as_str(), t.task.as_str())).collect::<Vec<_>>(),
        [("b", "m-00000")]
    );
    assert!(assigns(&c.tick(1_000)).is_empty(), "a's free slots wait: b holds the data");
    let next = assigns(&c.on_event(&done(&first[0].1, "b", 1), 1_500));
    assert_eq!(next.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["b"]);
    c.on_event(&ev(&next[0].1, "b", EventKind::Accepted), 1_600);
    assert!(assigns(&c.tick(1_500 + LOCALITY_WAIT_MS - 1)).is_empty());
    let late = assigns(&c.tick(1_500 + LOCALITY_WAIT_MS));
    assert_eq!(
        late.iter().map(|(a, t)| (a.as_str(), t.task.as_str())).collect::<Vec<_>>(),
        [("a", "m-00002")]
    );
}

#[test]
fn a_map_does_not_wait_for_an_agent_that_is_gone() {
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
    c.set_locality(LocalBytes::from([("b".into(), vec![10; 2])]));
    let first = assigns(&c.start(0));
    assert_eq!(first.len(), 1);
    let moved = assigns(&c.on_agent_lost("b", "went offline", 100));
    assert_eq!(moved.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["a"], "{moved:?}");
}

#[test]
fn the_timeline_has_every_attempt_with_its_times_and_how_it_ended() {
    let mut c = Controller::new(plan(2, 1), &[("a".into(), 1), ("b".into(), 1)]);
    let first = assigns(&c.start(1_000));
    let (a0, t0) = first.iter().find(|(_, t)| t.task == "m-00000").cloned().unwrap();
    let (a1, t1) = first.iter().find(|(_, t)| t.task == "m-00001").cloned().unwrap();
    let failed = EventKind::Failed {
        error: "boom".into(),
        detail: String::new(),
        lost_inputs: vec![],
        node_down: false,
    };
    let retry = assigns(&c.on_event(&ev(&t0, &a0, failed), 2_000));
    c.on_event(&done(&t1, &a1, 1), 3_000);
    let (ar, tr) = assigns(&c.on_event(&done(&retry[0].1, &retry[0].0, 1), 4_000)).remove(0);
    c.on_agent_lost(&ar, "went offline", 5_000);
    let bars: Vec<(String, u32, u64, Option<u64>, Outcome)> =
        c.attempts(5_100).into_iter().map(|b| (b.task, b.attempt, b.start_ms, b.end_ms, b.outcome)).collect();
    assert_eq!(
        bars,
        [
            ("m-00000".into(), 1, 1_000, Some(2_000), Outcome::Failed),
            ("m-00001".into(), 1, 1_000, Some(3_000), Outcome::Done),
            ("m-00000".into(), 2, 2_000, Some(4_000), Outcome::Done),
            ("r-00000".into(), tr.attempt, 4_000, Some(5_100), Outcome::Stopped),
            ("r-00000".into(), tr.attempt + 1, 5_000, None, Outcome::Running),
        ],
        "{:#?}",
        c.attempts(5_100)
    );
    assert_eq!(c.attempts(5_100)[0].range, Some((0, 10)));
}

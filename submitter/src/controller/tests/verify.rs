//! The controller's verified results: votes, liars, spot checks.

use super::*;

fn verified(splits: usize, reducers: u32, n: u32) -> JobPlan {
    JobPlan { verify: Verification::Every(n), ..plan(splits, reducers) }
}

/// What an honest agent returns for `task`: the same CIDs on every agent.
fn honest(task: &Task, agent: &str) -> TaskEvent {
    let n = match task.kind {
        TaskKind::Map { .. } | TaskKind::MapFiles { .. } => task.reducers,
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

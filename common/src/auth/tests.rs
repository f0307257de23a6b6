use super::*;
use crate::protocol::{
    AgentStatus, EventKind, MAX_MESSAGE_BYTES, Message, PROTOCOL_VERSION, TaskCommand, TaskEvent,
    TaskMessage, TaskOutput,
};

const NOW: u64 = 1_764_000_000_000;
const WINDOW: u64 = 120_000;
const TOPIC: &str = "ipdc/lab/agents/pi-1/tasks";

fn key(seed: u8) -> NodeKey {
    // Fixed keys make the fuzz test repeatable; generate() is tested in keys.rs.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("k");
    std::fs::write(&p, format!("ed25519-secret:{}\n", format!("{seed:02x}").repeat(32))).unwrap();
    NodeKey::load(&p).unwrap()
}

fn trust(entries: &[(&str, &str, &NodeKey)], revoked: &[&NodeKey]) -> TrustSource {
    let mut text = String::new();
    for (role, name, k) in entries {
        text += &format!("{role} {name} {}\n", k.public());
    }
    for k in revoked {
        text += &format!("revoke {}\n", k.public());
    }
    TrustSource::fixed(TrustList::parse(&text).unwrap())
}

fn keyed() -> (Sealer, Opener, NodeKey) {
    let k = key(0x5a);
    let opener = Opener::new(Some(trust(&[("submitter", "laptop", &k)], &[])));
    (Sealer::new(Some(k.clone())), opener, k)
}

fn submitter() -> Identity {
    Identity { role: Role::Submitter, name: "laptop".into() }
}

#[test]
fn a_sealed_payload_opens_with_its_signer_on_its_topic_only() {
    let (sealer, mut opener, _) = keyed();
    let p = sealer.seal_at(TOPIC, b"{\"x\":1}", NOW, 7);
    assert!(p.starts_with(b"IPDC-SIG2 1764000000000 0000000000000007 "));
    assert_eq!(opener.open(TOPIC, &p, NOW), Ok(Opened { body: b"{\"x\":1}", signer: Some(submitter()) }));
    let p = sealer.seal_at(TOPIC, b"{}", NOW, 8);
    assert_eq!(opener.open("ipdc/lab/agents/pi-2/tasks", &p, NOW), Err(Rejected::BadSignature));
    // Topic and body cut differently into the same bytes do not verify.
    let p = sealer.seal_at("ab", b"c", NOW, 9);
    assert_eq!(opener.open("a", &[&p[..p.len() - 1], b"bc"].concat(), NOW), Err(Rejected::BadSignature));
}

#[test]
fn any_tampering_is_refused() {
    let (sealer, mut opener, _) = keyed();
    let p = sealer.seal_at(TOPIC, b"{\"task\":1}", NOW, 42);
    for i in 0..p.len() {
        for bit in [0x01u8, 0x20, 0x80] {
            let mut m = p.clone();
            m[i] ^= bit;
            assert!(opener.open(TOPIC, &m, NOW).is_err(), "byte {i} flipped with {bit:#x} still opened");
        }
    }
    assert!(opener.open(TOPIC, &p, NOW).is_ok(), "the original still opens");
}

#[test]
fn only_listed_unrevoked_keys_are_taken() {
    let (a, b, c) = (key(1), key(2), key(3));
    let mut opener = Opener::new(Some(trust(&[("agent", "pi-1", &a), ("agent", "pi-2", &c)], &[&c])));
    let seal = |k: &NodeKey, n| Sealer::new(Some(k.clone())).seal_at(TOPIC, b"{}", NOW, n);
    let sealed = seal(&a, 1);
    let got = opener.open(TOPIC, &sealed, NOW).unwrap();
    assert_eq!(got.signer, Some(Identity { role: Role::Agent, name: "pi-1".into() }));
    assert_eq!(opener.open(TOPIC, &seal(&b, 2), NOW), Err(Rejected::UnknownSigner));
    assert_eq!(opener.open(TOPIC, &seal(&c, 3), NOW), Err(Rejected::Revoked));
    // A known key named in the header with another key's signature.
    let forged = seal(&b, 4);
    let nl = forged.iter().position(|&x| x == b'\n').unwrap();
    let mut f: Vec<Vec<u8>> = forged[..nl].split(|&x| x == b' ').map(<[u8]>::to_vec).collect();
    f[3] = super::hex::hex_lower(&a.public().0).into_bytes();
    let forged = [f.join(&b' '), b"\n{}".to_vec()].concat();
    assert_eq!(opener.open(TOPIC, &forged, NOW), Err(Rejected::BadSignature));
}

#[test]
fn a_keyed_opener_wants_a_signature_and_an_open_one_takes_both() {
    let (sealer, mut keyed, _) = keyed();
    assert_eq!(keyed.open(TOPIC, b"{\"v\":2}", NOW), Err(Rejected::NoSignature));
    let mut open = Opener::new(None);
    assert_eq!(open.open(TOPIC, b"{\"v\":2}", NOW), Ok(Opened { body: b"{\"v\":2}", signer: None }));
    let p = sealer.seal_at(TOPIC, b"{\"v\":2}", NOW, 1);
    assert_eq!(open.open(TOPIC, &p, NOW), Ok(Opened { body: b"{\"v\":2}", signer: None }));
    assert_eq!(Sealer::new(None).seal(TOPIC, b"{}"), b"{}");
}

#[test]
fn malformed_headers_are_refused() {
    let (sealer, mut opener, _) = keyed();
    let good = sealer.seal_at(TOPIC, b"{}", NOW, 0xabcdef);
    let line = String::from_utf8(good[..good.iter().position(|&b| b == b'\n').unwrap()].to_vec()).unwrap();
    let f: Vec<&str> = line.split(' ').collect();
    for bad in [
        format!("IPDC-SIG1 {} {} {} {}", f[1], f[2], f[3], f[4]),
        format!("IPDC-SIG2 0{} {} {} {}", f[1], f[2], f[3], f[4]),
        format!("IPDC-SIG2 {} {} {} {}", f[1], f[2].to_uppercase(), f[3], f[4]),
        format!("IPDC-SIG2 {} {} {}", f[1], f[2], f[3]),
        format!("IPDC-SIG2  {} {} {} {}", f[1], f[2], f[3], f[4]),
        format!("IPDC-SIG2 {} {} {} {} x", f[1], f[2], f[3], f[4]),
        format!("IPDC-SIG2 {} {} {}0 {}", f[1], f[2], f[3], f[4]),
    ] {
        let p = [bad.as_bytes(), b"\n{}"].concat();
        assert_eq!(opener.open(TOPIC, &p, NOW), Err(Rejected::Malformed), "{bad}");
    }
    let long = [b"IPDC-SIG2 ".to_vec(), vec![b'1'; MAX_HEADER_LINE + 10], b"\n{}".to_vec()].concat();
    assert_eq!(opener.open(TOPIC, &long, NOW), Err(Rejected::Malformed));
}

#[test]
fn timestamps_outside_the_window_are_stale_and_replays_refused() {
    let (sealer, mut opener, _) = keyed();
    assert_eq!(
        opener.open(TOPIC, &sealer.seal_at(TOPIC, b"{}", NOW - WINDOW - 1, 1), NOW),
        Err(Rejected::Stale)
    );
    assert_eq!(
        opener.open(TOPIC, &sealer.seal_at(TOPIC, b"{}", NOW + WINDOW + 1, 2), NOW),
        Err(Rejected::Stale)
    );
    let p = sealer.seal_at(TOPIC, b"{}", NOW - WINDOW, 3);
    assert!(opener.open(TOPIC, &p, NOW).is_ok());
    assert_eq!(opener.open(TOPIC, &p, NOW), Err(Rejected::Replayed));
    // Sealing the same body twice gives two payloads that both open.
    let (a, b) = (sealer.seal(TOPIC, b"{}"), sealer.seal(TOPIC, b"{}"));
    assert_ne!(a, b);
    let now = crate::protocol::now_ms();
    assert!(opener.open(TOPIC, &a, now).is_ok() && opener.open(TOPIC, &b, now).is_ok());
}

#[test]
fn the_replay_cache_is_capped_and_never_lets_a_replay_through() {
    let (sealer, opener, _) = keyed();
    let mut opener = opener.with_replay_capacity(10);
    let sent: Vec<Vec<u8>> = (0..30).map(|i| sealer.seal_at(TOPIC, b"{}", NOW - 1000 + i, i)).collect();
    for p in &sent {
        assert!(opener.open(TOPIC, p, NOW).is_ok());
    }
    assert_eq!(opener.replay_cache_len(), 10);
    for p in &sent {
        assert!(matches!(opener.open(TOPIC, p, NOW), Err(Rejected::Replayed | Rejected::BeyondReplayCache)));
    }
    assert!(opener.open(TOPIC, &sealer.seal_at(TOPIC, b"{}", NOW, 99), NOW).is_ok(), "new ones still open");
}

#[test]
fn oversize_payloads_are_refused_unread_and_every_reason_is_counted() {
    let (sealer, mut opener, _) = keyed();
    let big = vec![b'{'; MAX_MESSAGE_BYTES + MAX_HEADER_LINE + 2];
    assert_eq!(opener.open(TOPIC, &big, NOW), Err(Rejected::TooLarge));
    assert_eq!(Opener::new(None).open(TOPIC, &big, NOW), Err(Rejected::TooLarge));
    let _ = opener.open(TOPIC, b"{}", NOW);
    let _ = opener.open(TOPIC, &sealer.seal_at(TOPIC, b"{}", 0, 1), NOW);
    assert_eq!(opener.rejected_for(Rejected::TooLarge), 1);
    assert_eq!(opener.rejected_for(Rejected::NoSignature), 1);
    assert_eq!(opener.rejected_for(Rejected::Stale), 1);
    assert_eq!(opener.rejected(), 3);
    let texts: std::collections::HashSet<String> = Rejected::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(texts.len(), Rejected::ALL.len(), "every reason has its own text");
}

/// A small deterministic generator for the fuzz test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        const SPECIAL: &[u8] = b" \n\r\t0123456789abcdefABCDEF{}\":,-+.\x00\xff";
        if self.below(2) == 0 { SPECIAL[self.below(SPECIAL.len())] } else { self.next() as u8 }
    }
}

fn sample_bodies() -> Vec<Vec<u8>> {
    let task = crate::protocol::sample_task();
    let event = |kind| TaskEvent {
        v: PROTOCOL_VERSION,
        job: "j1".into(),
        task: "r-00001".into(),
        attempt: 2,
        agent: "pi-1".into(),
        kind,
    };
    vec![
        AgentStatus::offline("pi-1").encode(),
        TaskMessage::new("s1", TaskCommand::Assign { task }).encode(),
        TaskMessage::new("s1", TaskCommand::EndJob { job: "j1".into() }).encode(),
        event(EventKind::Accepted).encode(),
        event(EventKind::Done {
            output: TaskOutput { cids: vec!["bafyout".into()], sizes: vec![9], ..Default::default() },
        })
        .encode(),
        Vec::new(),
        b"{}".to_vec(),
    ]
}

fn mutate(rng: &mut Rng, orig: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut m = orig.to_vec();
    match rng.below(7) {
        0 => {
            for _ in 0..1 + rng.below(3) {
                if !m.is_empty() {
                    let i = rng.below(m.len());
                    m[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => m.truncate(rng.below(m.len() + 1)),
        2 => {
            let at = rng.below(m.len() + 1);
            let ins: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.byte()).collect();
            m.splice(at..at, ins);
        }
        3 => {
            let a = rng.below(m.len() + 1);
            let b = (a + 1 + rng.below(16)).min(m.len());
            m.drain(a..b);
        }
        4 => {
            // One header field (or the body) from another valid envelope.
            let split = |p: &[u8]| {
                let nl = p.iter().position(|&b| b == b'\n').unwrap();
                let f: Vec<Vec<u8>> = p[..nl].split(|&b| b == b' ').map(<[u8]>::to_vec).collect();
                (f, p[nl + 1..].to_vec())
            };
            let (mut f, mut body) = split(orig);
            let (g, other_body) = split(&others[rng.below(others.len())]);
            match rng.below(6) {
                5 => body = other_body,
                i => f[i] = g[i].clone(),
            }
            m = [f.join(&b' '), b"\n".to_vec(), body].concat();
        }
        5 => {
            if !m.is_empty() {
                let i = rng.below(m.len());
                m[i] = rng.byte();
            }
        }
        _ => {
            m = if rng.below(2) == 0 { b"IPDC-SIG2 ".to_vec() } else { Vec::new() };
            m.extend((0..rng.below(300)).map(|_| rng.byte()));
        }
    }
    m
}

#[test]
fn fuzz_nothing_mutated_verifies_and_nothing_panics() {
    const ORIGINALS: usize = 32;
    const MUTANTS: usize = 10_000;
    let mut rng = Rng(0x1d9c_0ffe_e5ee_d001);
    let (sealer, mut keyed, _) = keyed();
    let mut open = Opener::new(None);
    let bodies = sample_bodies();
    let originals: Vec<Vec<u8>> = (0..ORIGINALS)
        .map(|i| {
            sealer.seal_at(
                TOPIC,
                &bodies[i % bodies.len()],
                NOW - WINDOW + rng.below(2 * WINDOW as usize) as u64,
                rng.next(),
            )
        })
        .collect();
    let known: std::collections::HashSet<&[u8]> = originals.iter().map(Vec::as_slice).collect();
    for (i, p) in originals.iter().enumerate() {
        assert_eq!(keyed.open(TOPIC, p, NOW).map(|o| o.body), Ok(&bodies[i % bodies.len()][..]));
    }
    let mut open_ok = 0;
    for n in 0..MUTANTS {
        let which = rng.below(ORIGINALS);
        let m = mutate(&mut rng, &originals[which], &originals);
        match keyed.open(TOPIC, &m, NOW) {
            Ok(_) => panic!("a mutant verified: {:?}", String::from_utf8_lossy(&m)),
            Err(Rejected::Stale | Rejected::Replayed | Rejected::BeyondReplayCache) => {
                assert!(known.contains(&m[..]), "a mutant passed the signature: {m:?}")
            }
            Err(_) => {}
        }
        if let Ok(o) = open.open(TOPIC, &m, NOW) {
            assert!(m.ends_with(o.body));
            open_ok += 1;
            if n % 4 == 1 {
                let _ = (AgentStatus::decode(o.body), TaskMessage::decode(o.body), TaskEvent::decode(o.body));
            }
        }
    }
    assert!(open_ok > 500, "{open_ok}");
    assert!(keyed.rejected_for(Rejected::BadSignature) > 250, "{keyed:?}");
    assert!(keyed.rejected_for(Rejected::Malformed) > 250, "{keyed:?}");
    assert!(keyed.rejected_for(Rejected::UnknownSigner) > 10, "{keyed:?}");
}

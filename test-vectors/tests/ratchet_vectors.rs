//! The ratchet vectors (`ratchet/v2/*.json`, `ratchet/v3/pqxdh.json`): they all pass, a changed byte
//! fails its check, and the ignored generator that wrote them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::testing::{ReplayRng, TestRng};
use securemesh_core::{Instant, Secret, UnixTime};
use securemesh_ratchet::{Bundle, Error, Identity, PrekeyConfig, PrekeyPool, Session, SessionConfig};
use securemesh_test_vectors::ratchet::{
    self, BundleCase, BundleFile, Event, Message, Model, TRANSCRIPT_LIMIT, Transcript, X3dhCase, X3dhFile,
    X3dhInputs,
};
use securemesh_test_vectors::vectors_dir;

fn dir() -> std::path::PathBuf {
    vectors_dir().join("ratchet").join("v2")
}

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

/// Flip the last hex digit.
fn flip(s: &mut String) {
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
}

/// Flip one hex digit at byte `i`.
fn flip_at(s: &mut String, i: usize) {
    let c = s.as_bytes()[2 * i];
    let new = if c == b'0' { "1" } else { "0" };
    s.replace_range(2 * i..2 * i + 1, new);
}

#[test]
fn every_ratchet_vector_passes() {
    let reports = ratchet::reports(&vectors_dir().join("ratchet"));
    let lines: Vec<String> = reports.iter().map(|r| r.line()).collect();
    for r in &reports {
        assert!(r.is_ok(), "{} failed: {:?}", r.line(), r.failures);
    }
    assert_eq!(lines, ratchet::EXPECTED_LINES, "{lines:?}");
}

fn failures_of(r: &securemesh_test_vectors::Report) -> Vec<String> {
    r.failures.iter().map(|f| f.split(':').next().unwrap().to_string()).collect()
}

#[test]
fn a_changed_x3dh_key_or_byte_fails_its_case() {
    let good: X3dhFile = load("x3dh.json");
    assert_eq!(ratchet::check_x3dh("x", &good).passed, 4);
    type Mutation = fn(&mut X3dhCase);
    let mutations: [(&str, Mutation); 6] = [
        ("sk", |c| flip(&mut c.sk)),
        ("dh2", |c| flip(&mut c.dh2)),
        ("bundle", |c| flip_at(&mut c.bundle, 200)),
        ("spk private", |c| flip(&mut c.signed_prekey.private)),
        ("ad", |c| flip(&mut c.ad)),
        ("first message ciphertext", |c| flip(&mut c.first_message.as_mut().unwrap().wire)),
    ];
    for (what, mutate) in mutations {
        for i in 0..good.cases.len() {
            let mut bad = good.clone();
            mutate(&mut bad.cases[i]);
            let r = ratchet::check_x3dh("x", &bad);
            assert_eq!(r.passed, r.total - 1, "{what} of case {i}: {:?}", r.failures);
            assert!(r.failures[0].starts_with(&format!("case {i} ")), "{what}: {:?}", r.failures);
        }
    }
    // The HE variant's header keys too.
    let he = good.cases.iter().position(|c| c.header_encryption).unwrap();
    let mut bad = good.clone();
    flip(bad.cases[he].nhkb.as_mut().unwrap());
    assert_eq!(ratchet::check_x3dh("x", &bad).passed, 3);
}

#[test]
fn a_changed_transcript_byte_or_key_fails_its_message() {
    for (file, he) in [("double-ratchet.json", false), ("double-ratchet-he.json", true)] {
        let good: Transcript = load(file);
        assert_eq!(good.header_encryption, he);
        assert!(ratchet::check_transcript("t", &good).is_ok());
        // Message 16 is delivered once, in the middle of its chain.
        type Mutation = fn(&mut Message);
        let mutations: [(&str, Mutation); 6] = [
            ("ciphertext", |m| flip(&mut m.wire)),
            ("header byte", |m| {
                let at = m.x3dh_prefix.as_ref().map_or(0, |p| p.len() / 2) + 5;
                flip_at(&mut m.wire, at)
            }),
            ("message key", |m| flip(&mut m.message_key)),
            ("chain key before", |m| flip(&mut m.chain_key_before)),
            ("chain key after", |m| flip(&mut m.chain_key_after)),
            ("associated data", |m| flip(&mut m.associated_data)),
        ];
        for (what, mutate) in mutations {
            let mut bad = good.clone();
            mutate(&mut bad.messages[16]);
            let r = ratchet::check_transcript("t", &bad);
            assert_eq!(failures_of(&r), ["message 16"], "{file}: {what}");
        }
        // A DH step's keys: the step of message 14.
        for field in ["dh_output", "root_key_before", "root_key_after", "chain_key"] {
            let mut bad = good.clone();
            let s = bad.messages[14].dh_step.as_mut().unwrap();
            let target = match field {
                "dh_output" => &mut s.dh_output,
                "root_key_before" => &mut s.root_key_before,
                "root_key_after" => &mut s.root_key_after,
                _ => &mut s.chain_key,
            };
            flip(target);
            let r = ratchet::check_transcript("t", &bad);
            assert_eq!(failures_of(&r), ["message 14"], "{file}: {field}");
        }
        if he {
            let mut bad = good.clone();
            flip(bad.messages[16].header_key.as_mut().unwrap());
            assert_eq!(failures_of(&ratchet::check_transcript("t", &bad)), ["message 16"]);
            let mut bad = good.clone();
            flip(bad.messages[16].encrypted_header.as_mut().unwrap());
            assert_eq!(failures_of(&ratchet::check_transcript("t", &bad)), ["message 16"]);
        }
        // A changed expected result fails the delivered message.
        let mut bad = good.clone();
        let dup = bad
            .events
            .iter_mut()
            .find_map(|e| match e {
                Event::Deliver { error: Some(e), message, .. } if e == "Duplicate" => Some((e, *message)),
                _ => None,
            })
            .unwrap();
        *dup.0 = "Decrypt".into();
        let which = format!("message {}", dup.1);
        assert_eq!(failures_of(&ratchet::check_transcript("t", &bad)), [which]);
    }
}

#[test]
fn a_forgery_with_another_error_or_genuine_bytes_fails_its_check() {
    for file in ["double-ratchet-limits.json", "double-ratchet-he-limits.json"] {
        let good: Transcript = load(file);
        let total = ratchet::check_transcript("t", &good).total;
        assert_eq!(ratchet::check_transcript("t", &good).passed, total, "{file}");
        let forges: Vec<usize> =
            (0..good.events.len()).filter(|&i| matches!(good.events[i], Event::Forge { .. })).collect();
        assert!(forges.len() > 30, "{file}");
        // Each forgery's check fails if it names another error, or if its
        // bytes are replaced by a genuine message that is accepted.
        for (k, &i) in forges.iter().enumerate() {
            let mut bad = good.clone();
            if let Event::Forge { error, .. } = &mut bad.events[i] {
                *error = if error == "Decrypt" { "Malformed".into() } else { "Decrypt".into() };
            }
            let failures = failures_of(&ratchet::check_transcript("t", &bad));
            assert_eq!(failures.len(), 1, "{file} forgery {k}: {failures:?}");
            assert!(failures[0].starts_with(&format!("forgery {k} (")), "{failures:?}");
        }
        // The first forgery with the genuine first message's bytes: respond opens a session.
        let mut bad = good.clone();
        let genuine = good.messages[0].wire.clone();
        if let Event::Forge { wire, .. } = &mut bad.events[forges[0]] {
            *wire = genuine;
        }
        let failures = failures_of(&ratchet::check_transcript("t", &bad));
        assert!(failures.iter().any(|f| f.starts_with("forgery 0 (")), "{failures:?}");
    }
}

#[test]
fn a_bundle_case_with_another_error_or_operation_fails() {
    let good: BundleFile = load("bundles.json");
    assert_eq!(ratchet::check_bundles("b", &good).passed, good.cases.len());
    for k in 0..good.cases.len() {
        let mut bad = good.clone();
        let c = &mut bad.cases[k];
        c.error = if c.error == "Malformed" { "Decrypt".into() } else { "Malformed".into() };
        assert_eq!(failures_of(&ratchet::check_bundles("b", &bad)).len(), 1, "case {k}");
        let mut bad = good.clone();
        let c = &mut bad.cases[k];
        c.operation = if c.operation == "decode" { "initiate".into() } else { "decode".into() };
        assert_eq!(failures_of(&ratchet::check_bundles("b", &bad)).len(), 1, "case {k}");
    }
}

// ------------------------------------------------------------- generator

const NOW: Instant = Instant(0);
const T0: UnixTime = UnixTime(1_700_000_000);
const SOURCE: &str = "securemesh-ratchet wire format version 2 (securemesh_ratchet::spec); generated by \
                      securemesh from its own code with recorded randomness (test-vectors/tests/\
                      ratchet_vectors.rs, write_ratchet_vectors); MIT OR Apache-2.0";

fn inputs(seed: u64, name: &str, he: bool, opk: bool, kem: bool) -> X3dhInputs {
    let mut rng = TestRng::new(seed);
    X3dhInputs {
        name: name.into(),
        header_encryption: he,
        alice_seed: rng.bytes(),
        alice_dh: rng.bytes(),
        bob_seed: rng.bytes(),
        bob_dh: rng.bytes(),
        // The reference pool numbers the signed prekey 1 and the first one-time prekey 2.
        spk_id: 1,
        spk: rng.bytes(),
        opk: opk.then(|| (2, rng.bytes())),
        // A placeholder ML-KEM-768-sized key: the bundle does not interpret it.
        kem: kem.then(|| (0x0102_0304, 1, (0..1184u32).map(|i| (i * 7 + 3) as u8).collect())),
        ek: rng.bytes(),
    }
}

/// Makes the bytes of a forged delivery from the messages sent so far.
type Forger = Box<dyn Fn(&[Message]) -> Vec<u8>>;

enum Op {
    /// Alice (0) or Bob (1) sends a text.
    Send(usize, &'static str),
    /// Deliver message i; `None` expects its plaintext, `Some(e)` the error.
    Deliver(usize, Option<Error>),
    /// Give forged bytes to Alice (0) or Bob (1), which must refuse them
    /// with the error and stay unchanged.
    Forge(usize, Forger, Error, String),
}

/// Drive the real sessions through `script` with fresh randomness from
/// `rng`, derive every message with the spec-level [`Model`] from the same
/// randomness, and assert both agree byte for byte.
fn record<const P: usize>(setup: &X3dhCase, script: &[Op], rng: &mut TestRng) -> (Vec<Message>, Vec<Event>) {
    record_with::<P, 128, 128>(setup, script, rng)
}

/// [`record`] with the receivers' `MAX_SKIP` and skipped-key capacity.
fn record_with<const P: usize, const MS: usize, const CAP: usize>(
    setup: &X3dhCase,
    script: &[Op],
    rng: &mut TestRng,
) -> (Vec<Message>, Vec<Event>) {
    let he = setup.header_encryption;
    let id = |k: &ratchet::IdentityKeys| {
        Identity::from_secrets(
            Secret::new(hex::decode(&k.sign_seed).unwrap().try_into().unwrap()),
            Secret::new(hex::decode(&k.dh_private).unwrap().try_into().unwrap()),
        )
    };
    let (alice, bob) = (id(&setup.alice), id(&setup.bob));
    let mut seed = hex::decode(&setup.signed_prekey.private).unwrap();
    if let Some(o) = &setup.one_time_prekey {
        seed.extend(hex::decode(&o.private).unwrap());
    }
    let mut pool: PrekeyPool<P> =
        PrekeyPool::new(&bob, &mut ReplayRng::new(&seed), T0, PrekeyConfig::default());
    let bundle_bytes = hex::decode(&setup.bundle).unwrap();
    let bundle = Bundle::decode(&bundle_bytes).unwrap();
    let ek = hex::decode(&setup.alice_ephemeral_private).unwrap();
    let cfg = SessionConfig { header_encryption: he, ..SessionConfig::default() };
    let mut a: Session<MS, CAP> =
        Session::initiate(&alice, &bundle, cfg, &mut ReplayRng::new(&ek), NOW).unwrap();
    let mut b: Option<Session<MS, CAP>> = None;
    let mut model = Model::new(setup).unwrap();
    let (mut messages, mut events) = (Vec::new(), Vec::new());
    for op in script {
        match op {
            &Op::Send(who, text) => {
                let randomness = rng.bytes::<56>();
                let mut rr = ReplayRng::new(&randomness);
                let s = if who == 0 { &mut a } else { b.as_mut().unwrap() };
                let mut wire = vec![0u8; s.encrypted_len(text.len())];
                let n = s.encrypt(text.as_bytes(), &mut wire, &mut rr, NOW).unwrap();
                let step = model.needs_step(who);
                assert_eq!(rr.drawn(), usize::from(step) * 32 + usize::from(he) * 24, "randomness drawn");
                let ratchet_private = step.then(|| randomness[..32].try_into().unwrap());
                let off = if step { 32 } else { 0 };
                let header_nonce = he.then(|| randomness[off..off + 24].try_into().unwrap());
                let m = model.send(who, text.as_bytes(), ratchet_private, header_nonce).unwrap();
                // The proof: the real session and the specification agree on every byte.
                assert_eq!(m.wire, hex::encode(&wire[..n]), "message {}", messages.len());
                assert_eq!(m.x3dh_prefix.is_some(), who == 0 && a.awaiting_reply());
                events.push(Event::Send { message: messages.len() });
                messages.push(m);
            }
            &Op::Deliver(i, expected) => {
                let m: &Message = &messages[i];
                let to = if m.sender == "alice" { 1 } else { 0 };
                let wire = hex::decode(&m.wire).unwrap();
                let mut out = vec![0u8; wire.len()];
                let got = match (to, b.as_mut()) {
                    (0, _) => a.decrypt(&wire, &mut out, NOW),
                    (_, Some(s)) => s.decrypt(&wire, &mut out, NOW),
                    (_, None) => {
                        ratchet::respond::<P, MS, CAP>(&bob, &mut pool, &wire, &mut out).map(|(s, n)| {
                            b = Some(s);
                            n
                        })
                    }
                };
                let (plaintext, error) = match (got, expected) {
                    (Ok(n), None) => {
                        assert_eq!(hex::encode(&out[..n]), m.plaintext, "delivery of {i}");
                        model.deliver(i, to).unwrap();
                        (Some(m.plaintext.clone()), None)
                    }
                    (Err(e), Some(want)) => {
                        assert_eq!(e, want, "delivery of {i}");
                        (None, Some(format!("{e:?}")))
                    }
                    (got, want) => panic!("delivery of {i}: got {got:?}, expected {want:?}"),
                };
                events.push(Event::Deliver { message: i, to: ["alice", "bob"][to].into(), plaintext, error });
            }
            Op::Forge(to, make, want, note) => {
                let wire = make(&messages);
                let mut out = vec![0u8; wire.len()];
                let got = match (*to, b.as_mut()) {
                    (0, _) => a.decrypt(&wire, &mut out, NOW).map(|_| ()),
                    (_, Some(s)) => s.decrypt(&wire, &mut out, NOW).map(|_| ()),
                    (_, None) => ratchet::respond::<P, MS, CAP>(&bob, &mut pool, &wire, &mut out).map(|_| ()),
                };
                assert_eq!(got, Err(*want), "forgery: {note}");
                events.push(Event::Forge {
                    to: ["alice", "bob"][*to].into(),
                    wire: hex::encode(&wire),
                    error: format!("{want:?}"),
                    note: note.clone(),
                });
            }
        }
    }
    assert_eq!(model.alice_awaits_reply(), a.awaiting_reply());
    (messages, events)
}

/// 22 messages; Alice steps 5 times (A1..A5), Bob 4 times (B1..B4).
fn conversation() -> Vec<Op> {
    use Op::{Deliver as D, Send as S};
    const A: usize = 0;
    const B: usize = 1;
    let dup = Some(Error::Duplicate);
    vec![
        S(A, "a0: hello Bob, run task 42"), // m0  A1 n0, X3DH prefix
        S(A, "a1"),                         // m1  A1 n1, prefix
        S(A, "a2"),                         // m2  A1 n2, prefix
        D(1, None),                         // Bob's session starts from m1; m0's key is skipped
        D(0, None),                         // repeated initial message, skipped key
        S(B, "b0: on it"),                  // m3  B1 n0 (Bob's first DH step)
        S(B, "b1"),                         // m4  B1 n1
        D(2, None),                         // still Alice's first chain, with prefix
        D(4, None),                         // Alice: new chain B1, skips n0; stops prefixing
        S(A, "a3"),                         // m5  A2 n0 (pn 3)
        S(A, "a4"),                         // m6  A2 n1
        S(A, "a5"),                         // m7  A2 n2
        D(3, None),                         // Alice: skipped key of B1
        D(7, None),                         // Bob: new chain A2, skips n0, n1
        D(7, dup),                          // duplicate in the current chain
        S(B, "b2"),                         // m8  B2 n0 (pn 2)
        S(B, "b3"),                         // m9  B2 n1
        S(B, "b4"),                         // m10 B2 n2
        D(5, None),                         // Bob: skipped key of A2
        D(10, None),                        // Alice: new chain B2, skips n0, n1
        S(A, "a6"),                         // m11 A3 n0 (pn 3)
        S(A, "a7"),                         // m12 A3 n1
        D(8, None),                         // Alice: skipped key of B2
        D(11, None),                        // Bob: new chain A3 (m6 still skipped in A2)
        D(6, None),                         // Bob: skipped key of the previous chain
        D(6, dup),                          // duplicate in the previous chain
        S(B, "b5"),                         // m13 B3 n0 (pn 3)
        D(13, None),                        // Alice: new chain B3
        S(A, "a8"),                         // m14 A4 n0 (pn 2)
        S(A, ""),                           // m15 A4 n1, empty: a heartbeat
        S(A, "a10"),                        // m16 A4 n2
        S(A, "a11"),                        // m17 A4 n3
        D(9, None),                         // Alice: skipped key of B2, two chains back
        D(17, None),                        // Bob: new chain A4; skips A3 n1 and A4 n0..n2
        D(14, None),                        // skipped
        D(16, None),                        // skipped
        D(15, None),                        // skipped, empty payload
        D(12, None),                        // skipped key of the previous chain A3
        S(B, "b6"),                         // m18 B4 n0 (pn 1)
        S(B, "b7"),                         // m19 B4 n1
        S(B, "b8"),                         // m20 B4 n2
        D(20, None),                        // Alice: new chain B4, skips n0, n1
        D(18, None),                        // skipped
        D(19, None),                        // skipped
        S(A, "a12: done"),                  // m21 A5 n0 (pn 4)
        D(21, None),                        // Bob: new chain A5
        D(0, Some(Error::Decrypt)),         // a replayed initial message from four chains back
    ]
}

fn transcript(seed: u64, he: bool) -> Transcript {
    let name = if he { "transcript, header encryption" } else { "transcript, clear headers" };
    let setup = ratchet::derive_x3dh(&inputs(seed, name, he, true, false)).unwrap();
    let mut rng = TestRng::new(seed + 1000);
    let (messages, events) = record::<1>(&setup, &conversation(), &mut rng);
    let what = if he { "encrypted headers (type 0x03)" } else { "clear headers (type 0x02)" };
    Transcript {
        source: SOURCE.into(),
        description: format!(
            "A Double Ratchet conversation with {what} after X3DH with a one-time prekey: 22 messages, \
             Alice takes 5 DH steps and Bob 4, out-of-order delivery (Bob's session starts from Alice's \
             second message), skipped keys of current, previous and older chains, an empty heartbeat, \
             duplicates in the current and the previous chain (Duplicate) and a replayed initial message \
             (Decrypt). Events are replayed in order; the first delivery to Bob goes to Session::respond, \
             every other to Session::decrypt."
        ),
        header_encryption: he,
        max_skip: TRANSCRIPT_LIMIT,
        skipped_capacity: TRANSCRIPT_LIMIT,
        setup,
        messages,
        events,
    }
}

// ---------------------------------------------- limits and refused inputs

/// Offsets in an initial message with a one-time prekey (spec §6.4).
const SIG: usize = 1 + 64;
const EK: usize = 1 + 128;
const SPK_ID: usize = EK + 32;
const OPK_ID: usize = SPK_ID + 4 + 1;
const KEM_COUNT: usize = OPK_ID + 4;
const HE_FLAG: usize = KEM_COUNT + 1;
/// Where the inner ratchet message of such an initial message starts.
const INNER: usize = HE_FLAG + 1;
/// `p = 2^255 - 19`, little-endian: a non-canonical encoding of 0.
const P: [u8; 32] = {
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

fn wire_of(ms: &[Message], i: usize) -> Vec<u8> {
    hex::decode(&ms[i].wire).unwrap()
}

/// Message `i` with `bytes` written at `at`.
fn patched(i: usize, at: usize, bytes: Vec<u8>) -> Forger {
    Box::new(move |ms| {
        let mut w = wire_of(ms, i);
        w[at..at + bytes.len()].copy_from_slice(&bytes);
        w
    })
}

/// Message `i` with `mask` XORed into the byte at `at` (from the end if negative).
fn flipped(i: usize, at: isize, mask: u8) -> Forger {
    Box::new(move |ms| {
        let mut w = wire_of(ms, i);
        let at = if at < 0 { w.len() - at.unsigned_abs() } else { at as usize };
        w[at] ^= mask;
        w
    })
}

fn forge(to: usize, make: Forger, want: Error, note: &str) -> Op {
    Op::Forge(to, make, want, note.into())
}

/// Message `i` (a bare ratchet message) with its header replaced by
/// `dh | pn | n`; with header encryption the header is encrypted again
/// with a fixed nonce under `key(messages)` (a header key of the sender's).
fn reheadered(i: usize, key: fn(&[Message]) -> Option<String>, dh: [u8; 32], pn: u32, n: u32) -> Forger {
    Box::new(move |ms| {
        let mut w = wire_of(ms, i);
        let header = [&dh[..], &pn.to_be_bytes(), &n.to_be_bytes()].concat();
        match key(ms) {
            Some(hk) => {
                use securemesh_core::crypto::{Aead, XChaChaPoly};
                let hk: [u8; 32] = hex::decode(hk).unwrap().try_into().unwrap();
                let nonce = [0x5au8; 24];
                let mut h = header.clone();
                let tag = XChaChaPoly::seal_detached(&Secret::new(hk), &nonce, &[], &mut h).unwrap();
                w[1..81].copy_from_slice(&[&nonce[..], &h, &tag].concat());
            }
            None => w[1..41].copy_from_slice(&header),
        }
        w
    })
}

/// The ratchet public key in message `i`'s header.
fn header_dh(ms: &[Message], i: usize) -> [u8; 32] {
    hex::decode(&ms[i].header.dh).unwrap().try_into().unwrap()
}

/// A conversation at `MAX_SKIP` = 4 and capacity 6, with a one-time
/// prekey: every limit at and just past its boundary, eviction, and a
/// forged or changed input of each kind the spec refuses, each followed by
/// proof that it changed nothing.
fn limits_conversation(he: bool) -> Vec<Op> {
    use Op::{Deliver as D, Send as S};
    const A: usize = 0;
    const B: usize = 1;
    let mut ops = vec![
        S(A, "a0"), // m0..m6: Alice's first chain, all with the X3DH prefix
        S(A, "a1"),
        S(A, "a2"),
        S(A, "a3"),
        S(A, "a4"),
        S(A, "a5"),
        S(A, "a6"),
    ];
    // Before Bob has a session: respond refuses each, opens nothing and
    // leaves the pool as it was.
    for k in 0..7 {
        let f: Forger = Box::new(move |ms| {
            let mut w = wire_of(ms, 0);
            let ek: [u8; 32] = w[EK..EK + 32].try_into().unwrap();
            let v = securemesh_core::testing::x25519_small_order_variants(&ek).unwrap()[k];
            w[EK..EK + 32].copy_from_slice(&v);
            w
        });
        ops.push(forge(B, f, Error::Decrypt, &format!("m0 with ek_pub + small-order point {}", k + 1)));
    }
    for (k, u) in securemesh_core::testing::X25519_SMALL_ORDER.into_iter().enumerate() {
        ops.push(forge(
            B,
            patched(0, EK, u.to_vec()),
            Error::NonContributory,
            &format!("m0 with ek_pub of small order ({k} of 5): DH2 is all zero"),
        ));
    }
    ops.extend([
        forge(
            B,
            patched(0, 0, vec![0x01]),
            Error::UnknownVersion,
            "m0 as a version-1 initial message (type 0x01)",
        ),
        forge(B, flipped(0, (EK + 31) as isize, 0x80), Error::Malformed, "m0 with bit 255 of ek_pub set"),
        forge(B, patched(0, EK, P.to_vec()), Error::Malformed, "m0 with ek_pub = p (u >= p)"),
        forge(
            B,
            flipped(0, SPK_ID as isize + 3, 0x40),
            Error::UnknownPrekey,
            "m0 naming an unknown signed prekey",
        ),
        forge(
            B,
            flipped(0, OPK_ID as isize + 3, 0x40),
            Error::UnknownPrekey,
            "m0 naming an unknown one-time prekey",
        ),
        forge(
            B,
            flipped(0, SIG as isize, 0x01),
            Error::BadSignature,
            "m0 with Alice's binding signature changed",
        ),
        forge(B, patched(0, KEM_COUNT, vec![1]), Error::UnknownVersion, "m0 with kem_count 1"),
        forge(B, flipped(0, HE_FLAG as isize, 0x01), Error::Malformed, "m0 with the other header mode flag"),
        forge(B, flipped(0, -1, 0x01), Error::Decrypt, "m0 with its tag changed"),
        forge(
            B,
            Box::new(|ms| wire_of(ms, 0)[..INNER].to_vec()),
            Error::Malformed,
            "m0 cut after its prefix",
        ),
        D(5, Some(Error::TooManySkipped)), // respond at n = 5 > MAX_SKIP: no session
        D(4, None),                        // n = 4 = MAX_SKIP: Bob's session; keys n0..n3 stored
        D(6, None),                        // skips n5: 5 keys stored
        // Repeated initial messages that differ from the one that opened the session.
        forge(
            B,
            flipped(1, OPK_ID as isize + 3, 0x01),
            Error::Malformed,
            "m1 with another one-time prekey id",
        ),
        forge(B, flipped(1, SPK_ID as isize + 3, 0x01), Error::Malformed, "m1 with another signed prekey id"),
        forge(B, flipped(1, 1, 0x01), Error::Malformed, "m1 with another identity sign_pub"),
        forge(
            B,
            Box::new(|ms| {
                let mut w = wire_of(ms, 1);
                let ek: [u8; 32] = w[EK..EK + 32].try_into().unwrap();
                let v = securemesh_core::testing::x25519_small_order_variants(&ek).unwrap()[0];
                w[EK..EK + 32].copy_from_slice(&v);
                w
            }),
            Error::Malformed,
            "m1 with ek_pub + a small-order point",
        ),
        forge(B, patched(1, 0, vec![0x01]), Error::UnknownVersion, "m1 as a version-1 initial message"),
        D(1, None), // the genuine repeat still opens: nothing changed
        S(B, "b0"), // m7: Bob's first DH step
        D(7, None), // Alice stops prefixing
        S(A, "a7"), // m8..m16: Alice's second chain A2, n0..n8 (pn 7)
        S(A, "a8"),
        S(A, "a9"),
        S(A, "a10"),
        S(A, "a11"),
        S(A, "a12"),
        S(A, "a13"),
        S(A, "a14"),
        S(A, "a15"),
        // Bob holds A1 n0, n2, n3, n5. A2 at n3 (pn 7 = Nr: nothing of A1
        // skipped) skips n0..n2: 7 keys > 6, the earliest stored (A1 n0) is evicted.
        D(11, None),
        D(0, Some(Error::Duplicate)), // m0's key was evicted: its chain is the previous one
        D(2, None),                   // A1 n2 is still stored
        D(8, None),                   // A2 n0 from the store
        S(B, "b1"),                   // m17: Bob's second DH step
        D(17, None),                  // Alice: new chain B2
        S(A, "a16"),                  // m18: A3 n0, pn 9
        D(18, Some(Error::TooManySkipped)), // pn 9 - Nr 4 = 5 > MAX_SKIP
        D(12, None),                  // A2 n4: Nr 5
        D(18, None),                  // pn - Nr = 4 = MAX_SKIP: A2 n5..n8 stored
        D(16, None),                  // A2 n8 from the store
        S(A, "a17"),                  // m19: A3 n1, not delivered yet
    ]);
    // Forged ratchet messages to Bob's session.
    let other_type = if he { 0x02 } else { 0x03 };
    ops.push(forge(
        B,
        patched(19, 0, vec![other_type]),
        Error::Malformed,
        "m19 with the type of the other header mode",
    ));
    ops.push(forge(B, flipped(19, -1, 0x01), Error::Decrypt, "m19 with its tag changed"));
    ops.push(forge(B, flipped(19, -17, 0x01), Error::Decrypt, "m19 with its last ciphertext byte changed"));
    ops.push(forge(
        B,
        Box::new(|ms| wire_of(ms, 19)[..20].to_vec()),
        Error::Malformed,
        "m19 cut to 20 bytes",
    ));
    if he {
        // The header keys are right: under HKr the same dh at n = 0 is a
        // Duplicate, under NHKr a pn far ahead is TooManySkipped.
        ops.push(forge(
            B,
            Box::new(|ms| reheadered(19, |ms| ms[19].header_key.clone(), header_dh(ms, 19), 1, 0)(ms)),
            Error::Duplicate,
            "m19 re-headered under its own header key at n = 0",
        ));
        ops.push(forge(
            B,
            reheadered(
                19,
                |ms| ms[18].dh_step.as_ref().and_then(|d| d.next_header_key.clone()),
                [9u8; 32],
                100,
                0,
            ),
            Error::TooManySkipped,
            "a header under the next header key with pn 100",
        ));
        ops.push(forge(
            B,
            Box::new(|ms| {
                let mut dh = header_dh(ms, 19);
                dh[31] |= 0x80;
                reheadered(19, |ms| ms[19].header_key.clone(), dh, 1, 1)(ms)
            }),
            Error::Decrypt,
            "m19 whose header, encrypted under the right key, holds a non-canonical dh",
        ));
        ops.push(forge(
            B,
            // Alice's next header key (NHKs, from her step at m18) is Bob's NHKr.
            reheadered(19, |ms| ms[18].dh_step.as_ref().and_then(|d| d.next_header_key.clone()), [0u8; 32], 0, 0),
            Error::Decrypt,
            "m19 whose header, under the next header key, names the new ratchet key 0 (pn 0, n 0): the DH output is all zero",
        ));
    } else {
        ops.push(forge(
            B,
            Box::new(|ms| {
                let mut dh = header_dh(ms, 19);
                dh[31] |= 0x80;
                reheadered(19, |_| None, dh, 9, 1)(ms)
            }),
            Error::Malformed,
            "m19 with bit 255 of its header dh set",
        ));
        ops.push(forge(
            B,
            reheadered(19, |_| None, [0u8; 32], 0, 0),
            Error::Decrypt,
            "m19 naming the new ratchet key 0 (pn 0, n 0): the DH output is all zero",
        ));
    }
    ops.extend([
        D(19, None), // the genuine m19 after all of them
        S(B, "b2"),  // m20: Bob's third DH step
        D(20, None), // Alice: new chain B3
        S(A, "a18"), // m21..m26: A4 n0..n5 (pn 2)
        S(A, "a19"),
        S(A, "a20"),
        S(A, "a21"),
        S(A, "a22"),
        S(A, "a23"),
        D(26, Some(Error::TooManySkipped)), // a new chain at n = 5 > MAX_SKIP
        D(25, None),                        // n = 4 = MAX_SKIP
        D(26, None),
        D(21, None),
    ]);
    ops
}

fn limits_transcript(seed: u64, he: bool) -> Transcript {
    let name = if he { "limits, header encryption" } else { "limits, clear headers" };
    let setup = ratchet::derive_x3dh(&inputs(seed, name, he, true, false)).unwrap();
    let mut rng = TestRng::new(seed + 1000);
    let (messages, events) = record_with::<1, 4, 6>(&setup, &limits_conversation(he), &mut rng);
    let what = if he { "encrypted headers" } else { "clear headers" };
    Transcript {
        source: SOURCE.into(),
        description: format!(
            "The limits and refusals of the spec, {what}, at MAX_SKIP = 4 and a skipped-key capacity of 6: \
             respond at n = MAX_SKIP + 1 (TooManySkipped) and at n = MAX_SKIP, pn - Nr = MAX_SKIP + 1 and \
             MAX_SKIP, a new chain at n = MAX_SKIP + 1 and MAX_SKIP, the earliest stored key evicted when \
             the store overflows (its message then Duplicate); forged deliveries (events with op forge, \
             each refused with the named error and leaving the receiver unchanged): the 7 small-order \
             variants of ek_pub (Decrypt), small-order ek_pub (NonContributory), the version-1 type, \
             non-canonical keys, unknown prekeys, a bad binding signature, kem_count 1, the other header \
             mode, changed tags and ciphertext, truncations, repeated initial messages that differ \
             (Malformed), forged ratchet headers. CounterExhausted is not here: it needs 2^32 - 1 \
             messages in one chain."
        ),
        header_encryption: he,
        max_skip: 4,
        skipped_capacity: 6,
        setup,
        messages,
        events,
    }
}

/// Bundles refused by `Bundle::decode` or, decoded, by `initiate`: every
/// check of spec §3 and the X3DH contributory checks, and which error wins
/// where two apply (wire order).
fn bundle_file() -> BundleFile {
    let i = inputs(31, "bundles", false, true, false);
    let alice = ratchet::derive_x3dh(&i).unwrap().alice;
    let spk_pub = ratchet::x25519_public(&i.spk);
    let opk = i.opk.map(|(id, k)| (id, ratchet::x25519_public(&k)));
    let bundle = |spk: &[u8; 32], opk: Option<(u32, [u8; 32])>, kem: Option<&(u32, u16, Vec<u8>)>| {
        ratchet::spec_bundle(&i.bob_seed, &i.bob_dh, i.spk_id, spk, opk, kem).unwrap().0
    };
    let good = bundle(&spk_pub, opk, None);
    assert!(Bundle::decode(&good).is_ok());
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let decode = |name: &str, b: Vec<u8>, e: Error| BundleCase {
        name: name.into(),
        bundle: hex::encode(b),
        operation: "decode".into(),
        alice: None,
        alice_ephemeral_private: None,
        error: format!("{e:?}"),
    };
    let initiate = |name: &str, b: Vec<u8>| BundleCase {
        name: name.into(),
        bundle: hex::encode(b),
        operation: "initiate".into(),
        alice: Some(alice.clone()),
        alice_ephemeral_private: Some(hex::encode(i.ek)),
        error: format!("{:?}", Error::NonContributory),
    };
    // Offsets (§3, with a one-time prekey).
    const ID_DH: usize = 1 + 32;
    const ID_SIG: usize = 1 + 64;
    const SPK_PUB: usize = 1 + 128 + 4;
    const SPK_SIG: usize = SPK_PUB + 32;
    const OPK_COUNT: usize = SPK_SIG + 64;
    const OPK_PUB: usize = OPK_COUNT + 1 + 4;
    const KEM_COUNT: usize = OPK_PUB + 32;
    let mut cases = Vec::new();
    for (k, u) in securemesh_core::testing::X25519_SMALL_ORDER.into_iter().enumerate() {
        cases.push(initiate(
            &format!("signed prekey of small order ({k} of 5), signed by Bob: DH1 is all zero"),
            bundle(&u, opk, None),
        ));
    }
    cases.push(initiate(
        "one-time prekey of small order (0): DH4 is all zero",
        bundle(&spk_pub, Some((2, securemesh_core::testing::X25519_SMALL_ORDER[0])), None),
    ));
    let kem_long = (7, 1, vec![0x42u8; 1569]);
    cases.extend([
        decode("version 2", with(&|b| b[0] = 2), Error::UnknownVersion),
        decode("identity dh_pub with bit 255 set", with(&|b| b[ID_DH + 31] |= 0x80), Error::Malformed),
        decode("identity binding signature changed", with(&|b| b[ID_SIG] ^= 1), Error::BadSignature),
        decode("spk_pub with bit 255 set", with(&|b| b[SPK_PUB + 31] |= 0x80), Error::Malformed),
        decode(
            "spk_pub = p (u >= p)",
            with(&|b| b[SPK_PUB..SPK_PUB + 32].copy_from_slice(&P)),
            Error::Malformed,
        ),
        decode("spk_sig changed", with(&|b| b[SPK_SIG] ^= 1), Error::BadSignature),
        decode(
            "spk_id changed (the signature covers it)",
            with(&|b| b[SPK_PUB - 1] ^= 1),
            Error::BadSignature,
        ),
        decode("opk_count 2", with(&|b| b[OPK_COUNT] = 2), Error::Malformed),
        decode("opk_pub with bit 255 set", with(&|b| b[OPK_PUB + 31] |= 0x80), Error::Malformed),
        decode("kem_count 2", with(&|b| b[KEM_COUNT] = 2), Error::Malformed),
        decode("kem_pub_len 1569, signed", bundle(&spk_pub, opk, Some(&kem_long)), Error::Malformed),
        decode("a trailing byte", with(&|b| b.push(0)), Error::Malformed),
        decode(
            "one byte short",
            with(&|b| {
                b.pop();
            }),
            Error::Malformed,
        ),
        decode(
            "identity signature changed and spk_pub non-canonical: the identity comes first",
            with(&|b| {
                b[ID_SIG] ^= 1;
                b[SPK_PUB + 31] |= 0x80;
            }),
            Error::BadSignature,
        ),
        decode(
            "spk_pub non-canonical and spk_sig changed: the key is read before its signature is checked",
            with(&|b| {
                b[SPK_PUB + 31] |= 0x80;
                b[SPK_SIG] ^= 1;
            }),
            Error::Malformed,
        ),
    ]);
    let kem = (7, 1, vec![0x42u8; 1184]);
    let mut kem_bad = bundle(&spk_pub, opk, Some(&kem));
    let last = kem_bad.len() - 1;
    kem_bad[last] ^= 1;
    cases.push(decode("kem_sig changed", kem_bad, Error::BadSignature));
    BundleFile { source: SOURCE.into(), cases }
}

fn x3dh_file() -> X3dhFile {
    let cases = [
        (11, "one-time prekey, clear headers", false, true, false, "x3dh case 0: hello"),
        (12, "no one-time prekey, clear headers", false, false, false, "x3dh case 1: hello"),
        (13, "one-time prekey, header encryption", true, true, false, "x3dh case 2: hello"),
        (
            14,
            "no one-time prekey, KEM prekey in the bundle (ignored by X3DH), header encryption",
            true,
            false,
            true,
            "x3dh case 3: hello",
        ),
    ];
    let cases = cases
        .into_iter()
        .map(|(seed, name, he, opk, kem, text)| {
            let mut case = ratchet::derive_x3dh(&inputs(seed, name, he, opk, kem)).unwrap();
            let script = [Op::Send(0, text), Op::Deliver(0, None)];
            let mut rng = TestRng::new(seed + 1000);
            let (mut messages, _) = if opk {
                record::<1>(&case, &script, &mut rng)
            } else {
                record::<0>(&case, &script, &mut rng)
            };
            case.first_message = messages.pop();
            case
        })
        .collect();
    X3dhFile { source: SOURCE.into(), cases }
}

/// Writes the ratchet vectors from today's code (`cargo test -p
/// securemesh-test-vectors --test ratchet_vectors -- --ignored`). Every
/// message is derived twice, by the real sessions and by the spec-level
/// model, and must agree; the finished files must pass the checker. It
/// never overwrites an existing file.
#[test]
#[ignore]
fn write_ratchet_vectors() {
    let x3dh = x3dh_file();
    let report = ratchet::check_x3dh("x3dh", &x3dh);
    assert!(report.is_ok(), "{:?}", report.failures);
    let dr = transcript(21, false);
    let dr_he = transcript(22, true);
    let limits = limits_transcript(23, false);
    let limits_he = limits_transcript(24, true);
    let bundles = bundle_file();
    let report = ratchet::check_bundles("bundles", &bundles);
    assert!(report.is_ok(), "{:?}", report.failures);
    for t in [&dr, &dr_he, &limits, &limits_he] {
        let report = ratchet::check_transcript("t", t);
        assert!(report.is_ok(), "{:?}", report.failures);
    }
    std::fs::create_dir_all(dir()).unwrap();
    let files = [
        ("x3dh.json", serde_json::to_string_pretty(&x3dh).unwrap()),
        ("double-ratchet.json", serde_json::to_string_pretty(&dr).unwrap()),
        ("double-ratchet-he.json", serde_json::to_string_pretty(&dr_he).unwrap()),
        ("double-ratchet-limits.json", serde_json::to_string_pretty(&limits).unwrap()),
        ("double-ratchet-he-limits.json", serde_json::to_string_pretty(&limits_he).unwrap()),
        ("bundles.json", serde_json::to_string_pretty(&bundles).unwrap()),
    ];
    let files: Vec<_> = files.into_iter().filter(|(name, _)| !dir().join(name).exists()).collect();
    for (name, text) in files {
        std::fs::write(dir().join(name), text + "\n").unwrap();
    }
}

// ------------------------------------------------------------ PQXDH (v3)

fn v3_dir() -> std::path::PathBuf {
    vectors_dir().join("ratchet").join("v3")
}

/// The inputs of the PQXDH vectors: fixed seeds of the deterministic test
/// generator for every secret and every random byte (the pool draws 192
/// bytes, Alice 96, or 120 with header encryption).
fn pqxdh_inputs() -> Vec<ratchet::PqxdhInputs> {
    let cases = [
        ("ML-KEM-768, one-time prekey and one-time KEM prekey, clear headers", 1u16, false, true, true),
        ("ML-KEM-768, last-resort KEM prekey, no one-time prekey, encrypted headers", 1, true, false, false),
        ("ML-KEM-1024, one-time KEM prekey, no one-time prekey, clear headers", 3, false, false, true),
        ("ML-KEM-1024, one-time prekey and last-resort KEM prekey, encrypted headers", 3, true, true, false),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, alg, he, opk, one_time_kem))| {
            let mut rng = TestRng::new(0x7071_0000 + 0x100 * i as u64);
            ratchet::PqxdhInputs {
                name: name.into(),
                alg,
                header_encryption: he,
                with_one_time_prekey: opk,
                one_time_kem,
                alice: (rng.bytes(), rng.bytes()),
                bob: (rng.bytes(), rng.bytes()),
                pool_randomness: random_bytes(&mut rng, 192),
                alice_randomness: random_bytes(&mut rng, if he { 120 } else { 96 }),
                plaintext: format!("pqxdh case {i}").into_bytes(),
            }
        })
        .collect()
}

fn random_bytes(rng: &mut TestRng, n: usize) -> Vec<u8> {
    (0..n).flat_map(|_| rng.bytes::<1>()).collect()
}

fn pqxdh_file() -> ratchet::PqxdhFile {
    let cases = pqxdh_inputs().iter().map(|i| ratchet::derive_pqxdh(i).unwrap()).collect();
    ratchet::PqxdhFile {
        description: "securemesh PQXDH vectors (wire version 2 with a KEM slot): ratchet/README.md".into(),
        cases,
    }
}

/// The PQXDH vectors on disk are what the model derives from their seeds,
/// and a changed byte of a key, a secret or a message fails its case.
#[test]
fn a_changed_pqxdh_byte_fails_its_case() {
    let good: ratchet::PqxdhFile =
        serde_json::from_str(&std::fs::read_to_string(v3_dir().join("pqxdh.json")).unwrap()).unwrap();
    assert_eq!(good, pqxdh_file(), "the file is not what the seeds give");
    assert_eq!(ratchet::check_pqxdh("x", &good).passed, 4);
    type Mutation = fn(&mut ratchet::PqxdhCase);
    let mutations: [(&str, Mutation); 8] = [
        ("sk", |c| flip(&mut c.sk)),
        ("kem ciphertext", |c| flip(&mut c.kem_ciphertext)),
        ("kem shared secret", |c| flip(&mut c.kem_shared_secret)),
        ("kem seed", |c| flip_at(&mut c.kem_prekey.seed, 3)),
        ("bundle", |c| flip_at(&mut c.bundle, 300)),
        ("pool randomness", |c| flip_at(&mut c.pool_randomness, 0)),
        ("alice randomness (m)", |c| flip_at(&mut c.alice_randomness, 40)),
        ("first message", |c| flip(&mut c.first_message)),
    ];
    for (what, mutate) in mutations {
        for i in 0..good.cases.len() {
            let mut bad = good.clone();
            mutate(&mut bad.cases[i]);
            let r = ratchet::check_pqxdh("x", &bad);
            assert_eq!(r.passed, r.total - 1, "{what} of case {i}: {:?}", r.failures);
            assert!(r.failures[0].starts_with(&format!("case {i} ")), "{what}: {:?}", r.failures);
        }
    }
}

/// Writes `ratchet/v3/pqxdh.json` once (never overwrites), after checking
/// that the model's cases pass both checks (the real pool and sessions
/// reproduce every byte).
#[test]
#[ignore = "writes the PQXDH vector file once; run with --ignored"]
fn write_pqxdh_vectors() {
    let file = pqxdh_file();
    let report = ratchet::check_pqxdh("pqxdh", &file);
    assert!(report.is_ok(), "{:?}", report.failures);
    std::fs::create_dir_all(v3_dir()).unwrap();
    let path = v3_dir().join("pqxdh.json");
    if !path.exists() {
        std::fs::write(path, serde_json::to_string_pretty(&file).unwrap() + "\n").unwrap();
    }
}

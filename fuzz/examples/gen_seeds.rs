//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`,
//! produced by the real encoders of `securemesh-core`:
//!
//! ```text
//! cd fuzz && cargo +nightly run --example gen_seeds [-- OUT_DIR]
//! ```
//!
//! The Noise seeds come from the deterministic sessions of
//! `securemesh_fuzz::noise` (fixed keys and ephemerals), so the genuine
//! messages and packets in them are exactly what the targets rebuild. The
//! ratchet seeds likewise come from `securemesh_fuzz::ratchet` (fixed
//! identities, `TestRng` for everything else). The MLS seeds are the
//! messages of the mlswg vectors in `test-vectors/mls/`, read from the JSON
//! here (`securemesh_fuzz::mls`), so only the few chosen ones are committed;
//! those of `mls_key_package` are KeyPackages made by `create_key_package`
//! (`securemesh_fuzz::mls::key_package_seeds`), and those of `mls_proposal`
//! proposals sent with `Group::propose` by the members of a group made with
//! the crate's own sender side (`securemesh_fuzz::mls::proposal_seeds`).
//!
//! The files are small (`main` prints the total and asserts it stays under
//! 256 KiB; the PQXDH messages and bundles are 1.3-1.9 KiB each, the
//! hybrid bundles 5.5 and 10 KiB, the X-Wing MLS messages 1.4-6 KiB, the
//! ML-KEM expanded keys with a ciphertext 3.5 and 4.7 KiB) and
//! committed, so `fuzz/run.sh` needs no extra build to seed the targets.

use std::fs;
use std::path::{Path, PathBuf};

use securemesh_core::Error;
use securemesh_core::Secret;
use securemesh_core::codec::{VARINT_MAX, Writer};
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{self, Header, Persist, StateKind};
use securemesh_fuzz::codec_ops::*;
use securemesh_fuzz::mesh;
use securemesh_fuzz::mls;
use securemesh_fuzz::noise::{
    self as nz, DATAGRAM_WORDS, Pattern, SITUATIONS, Situation, datagram_fixture, drive, encode_state,
    join_frames, stream_fixture,
};
use securemesh_fuzz::ratchet as rt;
use securemesh_fuzz::{FuzzRng, Sample, SealInput, fuzz_key};
use securemesh_noise::{Builder, DatagramTransport, MAX_MESSAGE_LEN, Protocol, Transport};

fn write_with(cap: usize, f: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>) -> Vec<u8> {
    let mut buf = vec![0u8; cap];
    let mut w = Writer::new(&mut buf);
    f(&mut w).expect("seed write");
    let n = w.finish().expect("seed fits");
    buf.truncate(n);
    buf
}

fn plain(h: &Header, f: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = envelope::encode(h, &mut buf, f).expect("encode seed");
    buf.truncate(n);
    buf
}

fn sealed(
    h: &Header,
    generation: u64,
    nonce: u8,
    f: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut rng = FuzzRng::new([nonce; 12]);
    let n = envelope::seal(&fuzz_key(), h, generation, &mut rng, &mut buf, f).expect("seal seed");
    buf.truncate(n);
    buf
}

fn envelope_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sample =
        Sample { suite: SuiteId::DEFAULT, counter: 0x0102_0304_0506_0708, label: b"peer-7".to_vec() };
    let mut v = Vec::new();

    let mut buf = vec![0u8; Sample::MAX_ENCODED_LEN];
    let n = sample.encode_state(&mut buf).expect("encode_state");
    v.push(("plain_sample_v2", buf[..n].to_vec()));

    let empty = Sample { suite: SuiteId(0x7777), counter: 0, label: Vec::new() };
    let n = empty.encode_state(&mut buf).expect("encode_state");
    v.push(("plain_sample_v2_empty_label", buf[..n].to_vec()));

    let v1 = Header { kind: Sample::KIND, version: 1, suite: SuiteId::DEFAULT };
    v.push(("plain_sample_v1", plain(&v1, |w| Sample::encode_v1_body(9, w))));

    let v3 = Header { kind: Sample::KIND, version: 3, suite: SuiteId::DEFAULT };
    v.push(("plain_sample_v3_unknown", plain(&v3, |w| w.write_u64(1))));

    let other = Header { kind: StateKind::MLS_GROUP, version: 1, suite: SuiteId::DEFAULT };
    v.push(("plain_other_kind", plain(&other, |w| w.write_vec8(b"group"))));
    v.push(("plain_empty_body", plain(&other, |_| Ok(()))));

    let mut out = vec![0u8; Sample::MAX_SEALED_LEN];
    let n = sample.seal_state(&fuzz_key(), 41, &mut FuzzRng::new([7; 12]), &mut out).expect("seal_state");
    v.push(("sealed_sample_v2_gen41", out[..n].to_vec()));

    v.push(("sealed_sample_v1_gen0", sealed(&v1, 0, 1, |w| Sample::encode_v1_body(3, w))));
    let ratchet = Header { kind: StateKind::RATCHET_SESSION, version: 1, suite: SuiteId::DEFAULT };
    v.push(("sealed_raw_gen_max", sealed(&ratchet, u64::MAX, 2, |w| w.write_bytes(b"ratchet state bytes"))));
    v.push(("sealed_empty_body", sealed(&ratchet, 5, 3, |_| Ok(()))));
    v
}

fn codec_program(ops: &[u8], cap: u16, data: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(ops.len()).expect("at most 255 ops")];
    v.extend_from_slice(ops);
    v.extend_from_slice(&cap.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn codec_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    // Every op once, over data written by the Writer.
    let data = write_with(1024, |w| {
        w.write_u8(0xab)?;
        w.write_u16(0x0102)?;
        w.write_u32(0xdead_beef)?;
        w.write_u64(u64::MAX - 1)?;
        w.write_varint(37)?;
        w.write_varint(15_293)?;
        w.write_varint(494_878_333)?;
        w.write_vec8(b"vec8")?;
        w.write_vec16(b"vec16")?;
        w.write_vec32(b"vec32")?;
        w.write_vec_varint(&[0x55; 70])?;
        w.write_bytes(&[0x11; 12])?;
        w.write_bytes(&[0x22; 6])
    });
    let ops = [
        op(U8, 0),
        op(U16, 0),
        op(U32, 0),
        op(U64, 0),
        op(VARINT, 0),
        op(VARINT, 0),
        op(VARINT, 0),
        op(VEC8, 0),
        op(VEC16, 1),
        op(VEC32, 0),
        op(VEC_VARINT, 0),
        op(ARRAY, 5),
        op(BYTES, 2),
        op(FINISH, 0),
    ];
    v.push(("all_ops", codec_program(&ops, 4096, &data)));
    v.push(("all_ops_small_writer", codec_program(&ops, 40, &data)));

    // Varint boundaries, then the non-minimal and reserved forms.
    let varints = write_with(64, |w| {
        for x in [0, 63, 64, 16_383, 16_384, VARINT_MAX] {
            w.write_varint(x)?;
        }
        w.write_bytes(&[0x40, 0x25, 0x80, 0x00, 0x00, 0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0])
    });
    v.push(("varints", codec_program(&[op(VARINT, 0); 10], 64, &varints)));

    // Truncated vec bodies (prefix claims more than is there).
    let short = [0x00, 0x05, 1, 2, 0x09, 1];
    v.push((
        "truncated_vecs",
        codec_program(&[op(VEC16, 0), op(VEC8, 0), op(VEC_VARINT, 0), op(FINISH, 0)], 8, &short),
    ));

    // A plain envelope walked field by field.
    let sample = Sample { suite: SuiteId::DEFAULT, counter: 9, label: b"label".to_vec() };
    let mut buf = vec![0u8; Sample::MAX_ENCODED_LEN];
    let n = sample.encode_state(&mut buf).expect("encode_state");
    let ops = [op(ARRAY, 4), op(U8, 0), op(U16, 0), op(U16, 0), op(VEC32, 0), op(FINISH, 0)];
    v.push(("envelope_walk", codec_program(&ops, 256, &buf[..n])));
    v
}

fn seal_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let base = SealInput {
        key: [0x5a; 32],
        kind: StateKind::RATCHET_SESSION.0,
        version: 2,
        suite: SuiteId::DEFAULT.0,
        generation: 41,
        newest_mode: 0,
        newest_delta: 0,
        nonce: *b"nonce-nonce!",
        flip_index: 40,
        flip_mask: 0x01,
        shortfall: 1,
        cut: 33,
        body: b"state".to_vec(),
    };
    let mut v = vec![("small_body", base.to_bytes())];
    let empty = SealInput { body: Vec::new(), flip_index: 0, ..base.clone() };
    v.push(("empty_body", empty.to_bytes()));
    let long: Vec<u8> = (0..300u16).map(|i| (i % 251) as u8).collect();
    let rollback = SealInput {
        newest_mode: 1,
        newest_delta: 3,
        body: long,
        flip_index: 500,
        flip_mask: 0x80,
        ..base.clone()
    };
    v.push(("long_body_rollback", rollback.to_bytes()));
    let max_gen = SealInput { generation: u64::MAX, newest_mode: 1, shortfall: 200, ..base.clone() };
    v.push(("generation_max", max_gen.to_bytes()));
    let v0 = SealInput { version: 0, ..base.clone() };
    v.push(("version_zero", v0.to_bytes()));
    v
}

fn situation_name(s: &Situation) -> String {
    let pattern = match s.pattern {
        Pattern::Xx => "xx",
        Pattern::Ik => "ik",
        Pattern::Nk => "nk",
    };
    let reader = if s.index.is_multiple_of(2) { "responder" } else { "initiator" };
    format!("{pattern}_{reader}_reads_msg{}", s.index)
}

fn with_prefix(first: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    v.extend_from_slice(rest);
    v
}

fn noise_handshake_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (i, s) in SITUATIONS.iter().enumerate() {
        let step = drive(s.pattern, s.index);
        let selector = u8::try_from(i).expect("few situations");
        v.push((situation_name(s), with_prefix(selector, &step.genuine)));
        if i == 0 {
            // XX message 0 with another payload: accepted (no key), then
            // the initiator must refuse the answer.
            let mut other = step.genuine.clone();
            other.truncate(securemesh_noise::DH_LEN);
            other.extend_from_slice(b"another payload");
            v.push(("xx_responder_reads_msg0_other_payload".into(), with_prefix(selector, &other)));
        }
        if i == 3 {
            // IK message 0 with its last (tag) byte flipped.
            let mut bad = step.genuine.clone();
            *bad.last_mut().expect("non-empty") ^= 1;
            v.push(("ik_responder_reads_msg0_bad_tag".into(), with_prefix(selector, &bad)));
        }
    }
    // hfs situations (selector 0xf0 + k, see the target): the genuine
    // message (`0xf4 | k`, no edits) and with its byte 64 flipped. Four
    // bytes at most, as the messages are rebuilt inside the target.
    for (k, name) in [
        "xxhfs_responder_reads_msg0",
        "xxhfs_initiator_reads_msg1",
        "xxhfs_responder_reads_msg2",
        "nkhfs_responder_reads_msg0",
    ]
    .into_iter()
    .enumerate()
    {
        let selector = 0xf4 | u8::try_from(k).expect("four situations");
        v.push((format!("{name}_genuine"), vec![selector]));
        v.push((format!("{name}_byte64_flipped"), vec![selector, 0, 64, 1]));
    }
    v
}

fn noise_transport_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (direction, name) in [(0u8, "to_responder"), (1u8, "to_initiator")] {
        let fx = stream_fixture(direction);
        let m: Vec<&[u8]> = fx.messages.iter().map(|(c, _)| c.as_slice()).collect();
        v.push((format!("{name}_in_order"), with_prefix(direction, &join_frames(m.iter().copied()))));
        if direction == 0 {
            // Replays, reordering, then the rest in order.
            let order = [m[0], m[0], m[2], m[1], m[1], m[2], m[3]];
            v.push((format!("{name}_replay_reorder"), with_prefix(direction, &join_frames(order))));
            // A flipped ciphertext byte and a truncated message, then the
            // genuine one.
            let mut flipped = m[1].to_vec();
            flipped[0] ^= 0x80;
            let frames = [m[0], flipped.as_slice(), &m[1][..m[1].len() - 1], m[1]];
            v.push((format!("{name}_corrupted"), with_prefix(direction, &join_frames(frames))));
        }
    }
    v
}

fn noise_datagram_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for (direction, name) in [(0u8, "to_responder"), (1u8, "to_initiator")] {
        let fx = datagram_fixture(direction);
        let p: Vec<&[u8]> = fx.packets.iter().map(|(_, p, _)| p.as_slice()).collect();
        let by = |c: u64| -> &[u8] {
            fx.packets.iter().find(|(k, _, _)| *k == c).map(|(_, p, _)| p.as_slice()).expect("counter")
        };
        v.push((format!("{name}_in_order"), with_prefix(direction, &join_frames(p.iter().copied()))));
        if direction == 0 {
            let rev = p.iter().rev().copied();
            v.push((format!("{name}_reverse"), with_prefix(direction, &join_frames(rev))));
            // Edges of the window: 2048 first, then 0 (exactly too old)
            // and 1 (just inside), replays, then a far jump.
            let order = [by(2048), by(0), by(1), by(1), by(2047), by(64), by(5000), by(4100), by(2200)];
            v.push((format!("{name}_window_edges"), with_prefix(direction, &join_frames(order))));
            // A forged packet (flipped counter byte), a short one, then the
            // genuine ones.
            let mut forged = by(65).to_vec();
            forged[7] ^= 0x01;
            let frames = [forged.as_slice(), &by(2)[..20], by(2), by(65)];
            v.push((format!("{name}_forged"), with_prefix(direction, &join_frames(frames))));
        }
    }
    v
}

fn handshake(protocol: &str, i_static: bool, r_static: bool, rs_known: bool) -> (Transport, Transport) {
    let protocol = Protocol::parse(protocol).expect("protocol");
    let mut rng = FuzzRng::new([9; 12]);
    let mut bi = Builder::new(&protocol);
    if i_static {
        bi = bi.local_static(Secret::new(nz::INITIATOR_STATIC));
    }
    if rs_known {
        bi = bi.remote_static(nz::public(nz::RESPONDER_STATIC));
    }
    let mut br = Builder::new(&protocol);
    if r_static {
        br = br.local_static(Secret::new(nz::RESPONDER_STATIC));
    }
    let mut i = bi.build_initiator().expect("initiator");
    let mut r = br.build_responder().expect("responder");
    let (mut msg, mut payload) = (vec![0u8; MAX_MESSAGE_LEN], vec![0u8; MAX_MESSAGE_LEN]);
    while !(i.is_complete() && r.is_complete()) {
        let (w, rd) = if i.is_my_turn() { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let n = w.write_message(b"", &mut msg, &mut rng).expect("write");
        rd.read_message(&msg[..n], &mut payload).expect("read");
        rd.accept_remote_static();
    }
    (i.finish().expect("finish"), r.finish().expect("finish"))
}

fn noise_state_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut buf = [0u8; 128];
    let mut out = [0u8; 128];

    // A live XX session: a few messages each way, so the nonces differ.
    let (mut i, mut r) = nz::xx_transports();
    for k in 0..3 {
        let n = i.write_message(b"to responder", &mut buf).expect("write");
        r.read_message(&buf[..n], &mut out).expect("read");
        if k < 1 {
            let n = r.write_message(b"to initiator", &mut buf).expect("write");
            i.read_message(&buf[..n], &mut out).expect("read");
        }
    }
    v.push(("stream_xx_initiator".into(), encode_state(&i)));
    v.push(("stream_xx_responder".into(), encode_state(&r)));

    // SHA-512 (64-byte handshake hash), no static keys.
    let (i, _) = handshake("Noise_NN_25519_ChaChaPoly_SHA512", false, false, false);
    v.push(("stream_nn_sha512".into(), encode_state(&i)));

    // One-way N: the initiator only sends, the responder only receives.
    let (i, r) = handshake("Noise_N_25519_ChaChaPoly_SHA256", false, true, true);
    v.push(("stream_oneway_sender".into(), encode_state(&i)));
    let mut rd: DatagramTransport<DATAGRAM_WORDS> = r.into_datagram();
    let mut i: DatagramTransport<DATAGRAM_WORDS> = i.into_datagram();
    let n = i.seal(b"one way", &mut buf).expect("seal");
    rd.open(&buf[..n], &mut out).expect("open");
    v.push(("datagram_oneway_receiver".into(), encode_state(&rd)));

    // A live datagram session with a populated replay window.
    let fx = datagram_fixture(0);
    let mut d = DatagramTransport::<DATAGRAM_WORDS>::decode_state(&fx.receiver).expect("fixture");
    for (c, p, _) in &fx.packets {
        if *c != 2200 {
            d.open(p, &mut [0u8; 64]).expect("open");
        }
    }
    v.push(("datagram_xx_window".into(), encode_state(&d)));
    v.push(("datagram_xx_fresh".into(), fx.receiver.clone()));
    v
}

fn ratchet_bundle_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> =
        rt::genuine_bundles().into_iter().map(|(n, b)| (n.into(), b)).collect();
    // A signed prekey whose signature does not verify (last byte flipped).
    let mut bad = v[0].1.clone();
    bad[1 + 128 + 4 + 32 + 63] ^= 0x01;
    v.push(("bad_spk_sig".into(), bad));
    v
}

fn ratchet_initial_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for m in rt::initial_fixture().messages {
        // Regression (found by this target in CI): bit 255 of `ek_pub`
        // (prefix offset 129..161) flipped leaves every X25519 result the
        // same; it must be refused as a non-canonical key.
        let mut flipped = m.message.clone();
        if let Some(b) = flipped.get_mut(160) {
            *b ^= 0x80;
        }
        v.push((format!("{}_ek_bit255", m.name), flipped));
        // Regression (issue 14): `ek_pub` plus a point of small order gives
        // the same X25519 results; wire version 2 binds the prefix into
        // the KDF, so it must fail to authenticate.
        let ek: [u8; 32] = m.message[129..161].try_into().expect("32 bytes");
        if let Some(variants) = securemesh_core::testing::x25519_small_order_variants(&ek) {
            let mut variant = m.message.clone();
            variant[129..161].copy_from_slice(&variants[3]);
            v.push((format!("{}_ek_small_order", m.name), variant));
        }
        v.push((m.name.to_string(), m.message));
    }
    // PQXDH initial messages to Bob's PQXDH pool, and one with its KEM slot
    // stripped (a downgrade).
    let pq = rt::pq_fixture();
    if let Some(m) = pq.messages.first() {
        v.push(("pq_downgrade_stripped".into(), m.stripped()));
    }
    v.extend(pq.messages.into_iter().map(|m| (m.name.to_string(), m.message)));
    v
}

fn ratchet_decrypt_seeds(he: bool) -> Vec<(String, Vec<u8>)> {
    let [alice, bob] = rt::decrypt_fixtures(he);
    let mut v = Vec::new();
    for (selector, fx, name) in [(0u8, &alice, "alice"), (1u8, &bob, "bob")] {
        let in_order = join_frames(fx.pending.iter().map(|g| g.message.as_slice()));
        v.push((format!("{name}_receives_in_order"), with_prefix(selector, &in_order)));
    }
    // Alice: the pending messages newest first, with a replay of one
    // received before the snapshot and one received in this run.
    let p: Vec<&[u8]> = alice.pending.iter().map(|g| g.message.as_slice()).collect();
    let frames = [p[5], p[4], alice.received[1].as_slice(), p[3], p[3], p[2], p[1], p[0]];
    v.push(("alice_receives_reversed_replays".into(), with_prefix(0, &join_frames(frames))));
    // Bob: chain 3 message 1 first, a replay from before the snapshot,
    // chain 1 message 3 without its X3DH prefix (accepted) then with it (a
    // replay), chain 3 message 0 with the prefix put in front (accepted) then
    // without (a replay), chain 2 message 1 with a flipped tag, then the
    // rest.
    let p: Vec<&[u8]> = bob.pending.iter().map(|g| g.message.as_slice()).collect();
    let stripped = bob.inner(p[1]);
    let wrapped = [bob.prefix.as_slice(), bob.inner(p[4])].concat();
    let mut flipped = p[2].to_vec();
    *flipped.last_mut().expect("non-empty") ^= 0x01;
    let frames =
        [p[5], bob.received[0].as_slice(), stripped, p[1], &wrapped, p[4], &flipped, p[2], p[3], p[0]];
    v.push(("bob_receives_mixed".into(), with_prefix(1, &join_frames(frames))));
    v
}

fn ratchet_state_seeds() -> Vec<(String, Vec<u8>)> {
    use securemesh_core::UnixTime;
    use securemesh_core::testing::TestRng;
    use securemesh_ratchet::{Bundle, PrekeyConfig, SessionConfig};

    let mut v = Vec::new();
    // Mid-conversation sessions: skipped keys, events, both header modes.
    for he in [false, true] {
        let mode = if he { "he" } else { "clear" };
        for fx in rt::decrypt_fixtures(he) {
            let side = if fx.receiver_is_bob { "bob" } else { "alice" };
            v.push((format!("session_{mode}_{side}_mid_conversation"), fx.receiver));
        }
    }
    // More than 4 skipped keys (too many for `Session<128, 4>`): Bob gets
    // the last message of chain 3 first.
    let [_, fx] = rt::decrypt_fixtures(false);
    let mut s = rt::FuzzSession::decode_state(&fx.receiver).expect("fixture");
    let last = fx.pending.last().expect("pending");
    rt::decrypt(&mut s, &last.message, &last.payload);
    assert_eq!(s.skipped_keys(), 5);
    v.push(("session_clear_bob_5_skipped".into(), encode_state(&s)));
    // Alice waiting for Bob's answer (the X3DH header in her state), and Bob
    // just after `respond` (Alice's header, a skipped key).
    let initial = rt::initial_fixture();
    let by_name = |n: &str| initial.messages.iter().find(|m| m.name == n).expect("fixture message");
    v.push(("session_clear_alice_awaiting_reply".into(), by_name("clear_opk3_msg1").alice.clone()));
    v.push((
        "session_he_alice_awaiting_reply_no_opk".into(),
        by_name("he_previous_spk_no_opk").alice.clone(),
    ));
    let mut pool = rt::SmallPool::decode_state(&initial.pool).expect("fixture pool");
    let respond = |pool: &mut rt::SmallPool, name: &str| {
        let m = by_name(name);
        let mut out = vec![0u8; m.message.len()];
        rt::FuzzSession::respond(rt::bob(), pool, &m.message, &mut out, SessionConfig::default(), rt::NOW)
            .expect("respond")
            .0
    };
    let b = respond(&mut pool, "he_opk4_msg1_empty");
    v.push(("session_he_bob_after_respond".into(), encode_state(&b)));
    // Version 1 (migrated on decode): Alice mid-conversation (decodes,
    // re-encodes as version 2), Alice awaiting her reply (refused), and a
    // responder that has not sent, whose `dhs` still held a key pair
    // (dropped by the migration). Version at 5..7, len at 9..13, the dhs
    // flag at 292 of the body.
    let as_v1 = |state: &[u8]| {
        let mut s = state.to_vec();
        s[5..7].copy_from_slice(&1u16.to_be_bytes());
        s
    };
    let [alice_mid, _] = rt::decrypt_fixtures(false);
    v.push(("session_v1_clear_alice_mid_conversation".into(), as_v1(&alice_mid.receiver)));
    v.push(("session_v1_clear_alice_awaiting_reply".into(), as_v1(&by_name("clear_opk3_msg1").alice)));
    let mut pre_send = as_v1(&encode_state(&b));
    let at = securemesh_core::envelope::HEADER_LEN + 292;
    assert_eq!(pre_send[at], 0, "v2 responder keeps no dhs");
    let secret = securemesh_core::Secret::new([0x11u8; 32]);
    let public = <securemesh_core::crypto::X25519 as securemesh_core::crypto::Dh>::public_key(&secret);
    pre_send[at] = 1;
    pre_send.splice(at + 1..at + 1, secret.expose().iter().chain(public.iter()).copied());
    let len = u32::from_be_bytes(pre_send[9..13].try_into().expect("4 bytes")) + 64;
    pre_send[9..13].copy_from_slice(&len.to_be_bytes());
    assert!(rt::FuzzSession::decode_state(&pre_send).is_ok(), "the crafted v1 responder decodes");
    v.push(("session_v1_he_bob_before_sending".into(), pre_send));
    v.push(("identity_bob".into(), encode_state(rt::bob())));

    // Pools: the fixture (previous signed prekey, a rotation event); three
    // one-time prekeys consumed (PoolLow) and the previous signed prekey
    // erased; refilled and rotated again.
    v.push(("pool4_rotated".into(), initial.pool.clone()));
    respond(&mut pool, "clear_opk3_msg0");
    respond(&mut pool, "clear_previous_spk_opk2");
    assert_eq!(pool.available(), 1);
    let bob = rt::bob();
    let mut rng = TestRng::new(0x9001);
    let grace_end = UnixTime(rt::T_ROTATE.0 + PrekeyConfig::default().grace_period_secs);
    pool.handle_timeout(bob, &mut rng, grace_end).expect("owner");
    v.push(("pool4_consumed_erased".into(), encode_state(&pool)));
    pool.refill(&mut rng);
    pool.handle_timeout(
        bob,
        &mut rng,
        UnixTime(rt::T_ROTATE.0 + PrekeyConfig::default().rotation_interval_secs),
    )
    .expect("owner");
    v.push(("pool4_refilled_rotated".into(), encode_state(&pool)));

    // PrekeyPool<200> (the default): 196 one-time prekeys consumed through
    // real X3DH answers (a full pool would be a 7.6 KiB seed), then rotated.
    let mut large = rt::LargePool::new(bob, &mut rng, rt::T0, PrekeyConfig::default());
    let alice = rt::alice();
    for _ in 0..196 {
        let id = large.one_time_ids().next().expect("a one-time prekey left");
        let bytes = rt::encode_bundle(&large.bundle(Some(id)));
        let bundle = Bundle::decode(&bytes).expect("bundle");
        let mut a = rt::FuzzSession::initiate(alice, &bundle, SessionConfig::default(), &mut rng, rt::NOW)
            .expect("initiate");
        let m = rt::encrypt(&mut a, &mut rng, b"");
        rt::FuzzSession::respond(bob, &mut large, &m, &mut [], SessionConfig::default(), rt::NOW)
            .expect("respond");
    }
    large.rotate(bob, &mut rng, rt::T_ROTATE).expect("owner");
    assert_eq!(large.available(), 4);
    v.push(("pool200_consumed_rotated".into(), encode_state(&large)));
    v.extend(rt::pq_state_seeds().into_iter().map(|(n, b)| (n.into(), b)));
    v
}

/// `messages.json` entries 0 and 1 (every message type: MLSMessages and bare
/// structures), and the MLSMessages of the passive-client vectors: a
/// PublicMessage commit with an UpdatePath, a PublicMessage proposal, a
/// PrivateMessage commit (interop vectors), a KeyPackage and a Welcome.
fn mls_decode_seeds() -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let all = mls::parse_json(&mls::messages_json());
    for (i, e) in all.arr().iter().take(2).enumerate() {
        for (name, value) in e.fields() {
            v.push((format!("messages_{i}_{name}"), value.hex()));
        }
    }
    let m = mls::commit_member();
    v.push(("passive_commit_public".into(), m.epochs[0].commit.clone()));
    v.push(("passive_proposal_public".into(), m.epochs[1].proposals[0].clone()));
    v.push(("passive_key_package".into(), m.key_package.clone()));
    v.push(("passive_welcome_ext_tree".into(), mls::welcome_members()[1].welcome.clone()));
    let interop = mls::parse_json(
        &fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../test-vectors/mls/interop-passive/commit.json"
        ))
        .expect("interop commit.json"),
    );
    let private = interop
        .arr()
        .iter()
        .flat_map(|e| e.get("epochs").arr())
        .map(|ep| ep.get("commit").hex())
        .find(|c| c[2..4] == [0, 2])
        .expect("a PrivateMessage commit");
    v.push(("interop_commit_private".into(), private));
    // Ciphersuite 0x004D (X-Wing): KeyPackage, commit, Welcome, GroupInfo.
    v.extend(mls::xwing_messages());
    v
}

/// `mode | dk | ciphertext` for `core_ml_kem_expanded_key`: the expanded
/// key of `ML_KEM_SEEDS[0]` (ML-KEM-768) and `[1]` (ML-KEM-1024), each with
/// a genuine ciphertext to it; the 768 key alone (mode bit 2) with its
/// `H(ek)` to be recomputed (bit 1).
fn ml_kem_seeds() -> Vec<(String, Vec<u8>)> {
    use securemesh_core::crypto::{MlKem768, MlKem1024};
    let [s768, s1024] = securemesh_fuzz::ML_KEM_SEEDS.map(Secret::new);
    let dk768 = MlKem768::dangerous_expanded_decapsulation_key(&s768);
    let (ct768, _) = MlKem768::dangerous_encapsulate_deterministic(
        &MlKem768::expand(&s768).encapsulation_key(),
        &[0x31; 32],
    )
    .expect("encapsulate");
    let dk1024 = MlKem1024::dangerous_expanded_decapsulation_key(&s1024);
    let (ct1024, _) = MlKem1024::dangerous_encapsulate_deterministic(
        &MlKem1024::expand(&s1024).encapsulation_key(),
        &[0x32; 32],
    )
    .expect("encapsulate");
    vec![
        ("ml_kem_768_dk_ct".into(), [&[0u8][..], &dk768.expose()[..], &ct768[..]].concat()),
        ("ml_kem_1024_dk_ct".into(), [&[1u8][..], &dk1024.expose()[..], &ct1024[..]].concat()),
        ("ml_kem_768_dk_rehash".into(), [&[6u8][..], &dk768.expose()[..]].concat()),
    ]
}

/// `flags | Welcome`: the three joiners, into an empty and into a joined
/// slot, and Welcomes meant for another joiner.
fn mls_welcome_seeds() -> Vec<(String, Vec<u8>)> {
    let members = mls::welcome_members();
    let mut v = Vec::new();
    for (i, m) in members.iter().enumerate() {
        for prejoined in [0u8, 2] {
            let flags = i as u8 | prejoined;
            v.push((format!("member{i}_flags{flags}"), [&[flags][..], &m.welcome].concat()));
        }
    }
    v.push(("member0_gets_member1_welcome".into(), [&[0u8][..], &members[1].welcome].concat()));
    // The 0x004D (X-Wing) joiner (flags bit 2), into an empty and into a
    // joined slot, and its Welcome given to a 0x0003 joiner.
    let xwing = mls::xwing_add().welcome;
    for flags in [4u8, 6] {
        v.push((format!("xwing_flags{flags}"), [&[flags][..], &xwing].concat()));
    }
    v.push(("member0_gets_xwing_welcome".into(), [&[0u8][..], &xwing].concat()));
    v
}

/// Frames of genuine handshake messages: the whole vector in order, the
/// epoch-0 commit alone, the epoch-1 commit before its proposals, a
/// proposal of the next epoch first, and a replayed commit.
fn mls_commit_seeds() -> Vec<(String, Vec<u8>)> {
    let m = mls::commit_member();
    let (e0, e1) = (&m.epochs[0], &m.epochs[1]);
    let mut all: Vec<&[u8]> = vec![&e0.commit];
    all.extend(e1.proposals.iter().map(Vec::as_slice));
    all.push(&e1.commit);
    let mut early: Vec<&[u8]> = vec![&e0.commit, &e1.commit];
    early.extend(e1.proposals.iter().rev().map(Vec::as_slice));
    vec![
        ("all_epochs_in_order".into(), nz::join_frames(all)),
        ("epoch0_commit".into(), nz::join_frames([&e0.commit[..]])),
        ("epoch1_commit_before_proposals".into(), nz::join_frames(early)),
        ("next_epoch_proposal_first".into(), nz::join_frames([&e1.proposals[1][..], &e0.commit, &e0.commit])),
    ]
}

/// Frames of the 0x004D passive client's genuine commits
/// (`mls::xwing_member`): both epochs in order, and the epoch-1 commit
/// replayed before the epoch-2 one.
fn mls_xwing_commit_seeds() -> Vec<(String, Vec<u8>)> {
    let m = mls::xwing_member();
    let (e1, e2) = (&m.epochs[0].commit[..], &m.epochs[1].commit[..]);
    vec![
        ("both_epochs_in_order".into(), nz::join_frames([e1, e2])),
        ("epoch1_commit_replayed".into(), nz::join_frames([e1, e1, e2])),
    ]
}

/// Frames of genuine application messages: in order, newest first (only
/// the window survives), shuffled with replays.
fn mls_application_seeds() -> Vec<(String, Vec<u8>)> {
    let fx = mls::application_fixture();
    let m = |g: usize| fx.messages[g].0.as_slice();
    vec![
        ("in_order".into(), nz::join_frames((0..8).map(m))),
        ("newest_first".into(), nz::join_frames((0..8).rev().map(m))),
        ("shuffled_with_replays".into(), nz::join_frames([3, 0, 3, 7, 2, 5, 1, 5, 6, 4].map(m))),
    ]
}

fn mesh_envelope_seeds() -> Vec<(String, Vec<u8>)> {
    let fx = mesh::fixture();
    let mut v = Vec::new();
    for (name, ex) in [("ik", &fx.ik), ("xx", &fx.xx)] {
        for (i, m) in ex.handshake.iter().enumerate() {
            v.push((format!("{name}_handshake_{i}"), m.clone()));
        }
        for (i, m) in ex.transports.iter().enumerate() {
            v.push((format!("{name}_transport_{i}"), m.clone()));
        }
    }
    for (i, m) in fx.ratchet.iter().enumerate() {
        v.push((format!("ratchet_{i}"), m.clone()));
    }
    v.push(("carol_initial".into(), fx.carol_initial.clone()));
    v
}

fn mesh_handle_input_seeds() -> Vec<(String, Vec<u8>)> {
    let fx = mesh::fixture();
    let names = ["bob_fresh", "bob_noise", "bob_ratchet", "alice_ik", "alice_xx", "bob_group"];
    let mut v = Vec::new();
    for s in 0..mesh::SITUATIONS {
        for (i, (seq, _)) in mesh::genuine(fx, s).into_iter().enumerate() {
            let frames = join_frames(seq.iter().map(|f| &f[..]));
            v.push((format!("{}_{i}", names[usize::from(s)]), with_prefix(s, &frames)));
            v.push((format!("{}_{i}_denied", names[usize::from(s)]), with_prefix(s | mesh::DENY, &frames)));
        }
    }
    // Out of order, replayed and tampered messages among genuine ones.
    let r = &fx.ratchet;
    let t = &fx.ik.transports;
    let mut bad = t[1].clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let g = &fx.group;
    let mut bad_g = g[1].clone();
    let mid = bad_g.len() / 2;
    bad_g[mid] ^= 1;
    let relabel = |m: &[u8]| {
        let mut m = m.to_vec();
        m[2] = securemesh::ChannelKind::RatchetMessage.tag();
        m[securemesh::envelope::HEADER_LEN] = securemesh_ratchet::MSG_RATCHET;
        m
    };
    let (lost, lost2) = (relabel(&r[1]), relabel(&r[2]));
    let seqs: [(&str, u8, Vec<&[u8]>); 6] = [
        ("bob_group_reordered_tampered", mesh::BOB_GROUP, vec![&g[2], &bad_g, &g[0], &g[0], &g[1]]),
        ("bob_ratchet_reordered", mesh::BOB_RATCHET, vec![&r[3], &r[1], &r[1], &r[2]]),
        ("bob_noise_tampered", mesh::BOB_NOISE, vec![&t[0], &bad, &t[1], &t[1]]),
        ("bob_noise_handshake_replayed", mesh::BOB_NOISE, vec![&t[0], &fx.ik.handshake[0], &t[1]]),
        ("bob_fresh_mixed", mesh::BOB_FRESH, vec![&r[0], &fx.ik.handshake[0], &r[2], &fx.carol_initial]),
        // Bob lost the session Alice writes on: a ratchet message of hers
        // on it (her r1 relabelled: she has no genuine non-initial one) makes
        // him re-establish from her bundle; the next one is then refused.
        ("bob_fresh_lost_session", mesh::BOB_FRESH, vec![&lost[..], &lost2[..]]),
    ];
    for (name, s, seq) in seqs {
        v.push((name.into(), with_prefix(s, &join_frames(seq))));
    }
    v
}

fn mesh_record_seeds() -> Vec<(String, Vec<u8>)> {
    let fx = mesh::fixture();
    let open = |blob: &[u8]| {
        let mut scratch = vec![0u8; blob.len()];
        envelope::open(&mesh::key(), blob, 0, &mut scratch).expect("open record").body.to_vec()
    };
    let agent = open(&fx.bob_record.bytes);
    let slot = open(&fx.bob_ratchet[1].bytes);
    let mut header = vec![StateKind::MESH_ROUTER.0];
    header.extend_from_slice(&1u16.to_be_bytes());
    header.extend_from_slice(&SuiteId::DEFAULT.0.to_be_bytes());
    vec![
        ("body_agent_bob".into(), with_prefix(0, &agent)),
        ("body_agent_alice".into(), with_prefix(0, &open(&fx.alice_records[2].bytes))),
        ("body_session".into(), with_prefix(1, &slot)),
        ("header_body_agent".into(), with_prefix(2, &[&header[..], &agent].concat())),
        ("header_body_session".into(), with_prefix(2, &[&header[..], &slot].concat())),
        ("blob_agent".into(), with_prefix(3, &fx.bob_record.bytes)),
        ("blob_session".into(), with_prefix(3, &fx.bob_ratchet[1].bytes)),
    ]
}

fn write_dir<N: AsRef<str>>(root: &Path, target: &str, seeds: Vec<(N, Vec<u8>)>) -> usize {
    let dir = root.join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("remove old seeds");
    }
    fs::create_dir_all(&dir).expect("create seed dir");
    let mut total = 0;
    for (name, bytes) in seeds {
        total += bytes.len();
        fs::write(dir.join(format!("{}.bin", name.as_ref())), bytes).expect("write seed");
    }
    total
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    let mut total = 0;
    total += write_dir(&root, "envelope_decode", envelope_seeds());
    total += write_dir(&root, "codec_reader", codec_seeds());
    total += write_dir(&root, "sealed_roundtrip", seal_seeds());
    total += write_dir(&root, "noise_handshake_read", noise_handshake_seeds());
    total += write_dir(&root, "noise_transport_read", noise_transport_seeds());
    total += write_dir(&root, "noise_datagram_open", noise_datagram_seeds());
    total += write_dir(&root, "noise_state_decode", noise_state_seeds());
    total += write_dir(&root, "ratchet_bundle_decode", ratchet_bundle_seeds());
    total += write_dir(&root, "ratchet_initial_message", ratchet_initial_seeds());
    total += write_dir(&root, "ratchet_decrypt", ratchet_decrypt_seeds(false));
    total += write_dir(&root, "ratchet_decrypt_he", ratchet_decrypt_seeds(true));
    total += write_dir(&root, "ratchet_state_decode", ratchet_state_seeds());
    total += write_dir(&root, "mls_message_decode", mls_decode_seeds());
    total += write_dir(&root, "mls_welcome", mls_welcome_seeds());
    total += write_dir(&root, "mls_commit", mls_commit_seeds());
    total += write_dir(&root, "mls_xwing_commit", mls_xwing_commit_seeds());
    total += write_dir(&root, "mls_application", mls_application_seeds());
    total += write_dir(&root, "mls_key_package", mls::key_package_seeds());
    total += write_dir(&root, "mls_proposal", mls::proposal_seeds());
    total += write_dir(&root, "mesh_envelope", mesh_envelope_seeds());
    total += write_dir(&root, "mesh_handle_input", mesh_handle_input_seeds());
    total += write_dir(&root, "mesh_record", mesh_record_seeds());
    total += write_dir(&root, "core_ml_kem_expanded_key", ml_kem_seeds());
    // 256 KiB since the ciphersuite 0x004D seeds of the MLS targets (X-Wing
    // keys are 1216 bytes: a KeyPackage is ~2.6 KiB, a Welcome with its
    // tree ~6 KiB) and the ML-KEM expanded keys (2400 and 3168 bytes, with
    // their ciphertexts); 144 KiB before, since the two hybrid bundles of
    // ratchet_bundle_decode (5.5 and 10 KiB).
    assert!(total < 256 * 1024, "seeds must stay under 256 KiB, not {total} bytes");
    println!("seeds written to {} ({total} bytes)", root.display());
}

//! Persistence, buffer and length limits, nonce exhaustion, the handshake's
//! turn, remote-static and completion rules, and `size_of` ceilings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Keys, TestRng, ours};
use securemesh_core::envelope::{HEADER_LEN, Persist, StorageKey};
use securemesh_noise::{
    Builder, DATAGRAM_OVERHEAD, DatagramTransport, Error, HandshakeState, MAX_DATAGRAM_PAYLOAD,
    MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN, OVERHEAD, Protocol, Role, Transport,
};

const XX: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
const XX512: &str = "Noise_XX_25519_ChaChaPoly_SHA512";
const NN: &str = "Noise_NN_25519_ChaChaPoly_SHA256";

fn encode<T: Persist>(t: &T) -> Vec<u8> {
    let mut buf = vec![0u8; T::MAX_ENCODED_LEN];
    let n = t.encode_state(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn seal<T: Persist>(t: &T, key: &StorageKey, generation: u64, rng: &mut TestRng) -> Vec<u8> {
    let mut buf = vec![0u8; T::MAX_SEALED_LEN];
    let n = t.seal_state(key, generation, rng, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn open<T: Persist>(
    key: &StorageKey,
    blob: &[u8],
    newest_seen: u64,
) -> Result<(T, u64), securemesh_core::Error> {
    let mut scratch = vec![0u8; T::MAX_BODY_LEN];
    T::open_state(key, blob, newest_seen, &mut scratch)
}

/// One message each way, checking the payloads.
fn exchange(a: &mut Transport, b: &mut Transport, tag: &str) {
    let (mut msg, mut out) = ([0u8; 128], [0u8; 128]);
    let n = a.write_message(tag.as_bytes(), &mut msg).unwrap();
    let m = b.read_message(&msg[..n], &mut out).unwrap();
    assert_eq!(&out[..m], tag.as_bytes());
    let n = b.write_message(tag.as_bytes(), &mut msg).unwrap();
    let m = a.read_message(&msg[..n], &mut out).unwrap();
    assert_eq!(&out[..m], tag.as_bytes());
}

fn exchange_datagrams(a: &mut DatagramTransport, b: &mut DatagramTransport, tag: &str) {
    let (mut msg, mut out) = ([0u8; 128], [0u8; 128]);
    let n = a.seal(tag.as_bytes(), &mut msg).unwrap();
    let m = b.open(&msg[..n], &mut out).unwrap();
    assert_eq!(&out[..m], tag.as_bytes());
    let n = b.seal(tag.as_bytes(), &mut msg).unwrap();
    let m = a.open(&msg[..n], &mut out).unwrap();
    assert_eq!(&out[..m], tag.as_bytes());
}

// ---------------------------------------------------------------- (a) persistence

#[test]
fn transport_survives_encode_decode_on_both_sides() {
    for name in [XX, XX512, NN] {
        let (mut a, mut b) = common::transports(name, 1);
        for round in 0..3 {
            exchange(&mut a, &mut b, &format!("before {round}"));
        }
        let (hash, rs_a, rs_b) =
            (a.handshake_hash().to_vec(), a.remote_static().copied(), b.remote_static().copied());
        assert_eq!((a.sending_nonce(), a.receiving_nonce()), (3, 3));

        // Restore a; the conversation goes on with the live b, both ways.
        let blob = encode(&a);
        assert!(blob.len() <= <Transport as Persist>::MAX_ENCODED_LEN);
        let mut a = Transport::decode_state(&blob).unwrap();
        assert_eq!(encode(&a), blob, "{name}: decode(encode(x)) re-encodes identically");
        assert_eq!((a.sending_nonce(), a.receiving_nonce()), (3, 3));
        assert_eq!(a.handshake_hash(), &hash[..]);
        assert_eq!(a.remote_static().copied(), rs_a);
        assert!(a.is_initiator());
        exchange(&mut a, &mut b, "a restored");

        // Restore b; on with the (restored) a.
        let blob = encode(&b);
        let mut b = Transport::decode_state(&blob).unwrap();
        assert_eq!(encode(&b), blob);
        assert_eq!((b.sending_nonce(), b.receiving_nonce()), (4, 4));
        assert_eq!(b.handshake_hash(), &hash[..]);
        assert_eq!(b.remote_static().copied(), rs_b);
        assert!(!b.is_initiator());
        for round in 0..3 {
            exchange(&mut a, &mut b, &format!("both restored {round}"));
        }

        // A rekeyed state persists too.
        a.rekey_outgoing().unwrap();
        let mut b = Transport::decode_state(&encode(&b)).unwrap();
        b.rekey_incoming().unwrap();
        let mut a = Transport::decode_state(&encode(&a)).unwrap();
        exchange(&mut a, &mut b, "after rekey");
    }
}

#[test]
fn sealed_transport_and_rollback() {
    let mut rng = TestRng(3);
    let key = StorageKey::new(rng.bytes());
    let (mut a, mut b) = common::transports(XX, 3);
    exchange(&mut a, &mut b, "first");
    let gen5 = seal(&a, &key, 5, &mut rng);
    exchange(&mut a, &mut b, "second");
    let gen6 = seal(&a, &key, 6, &mut rng);
    let sealed_b = seal(&b, &key, 9, &mut rng);

    let (mut a6, g) = open::<Transport>(&key, &gen6, 6).unwrap();
    assert_eq!(g, 6);
    assert_eq!(encode(&a6), encode(&a), "the sealed state is the state");
    let (mut b9, _) = open::<Transport>(&key, &sealed_b, 9).unwrap();
    exchange(&mut a6, &mut b9, "third");

    // A caller that has seen generation 6 refuses the older blob.
    assert_eq!(
        open::<Transport>(&key, &gen5, 6).unwrap_err(),
        securemesh_core::Error::Rollback { found: 5, newest: 6 }
    );
    assert!(open::<Transport>(&key, &gen5, 5).is_ok());
    // Wrong storage key, and a flipped byte: refused.
    let other = StorageKey::new([7u8; 32]);
    assert_eq!(open::<Transport>(&other, &gen6, 0).unwrap_err(), securemesh_core::Error::Decrypt);
    let mut bad = gen6.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(open::<Transport>(&key, &bad, 0).unwrap_err(), securemesh_core::Error::Decrypt);
}

#[test]
fn datagram_transport_survives_encode_decode_and_seal_open() {
    let mut rng = TestRng(4);
    let key = StorageKey::new(rng.bytes());
    let (a, b) = common::transports(XX, 4);
    let (mut a, mut b): (DatagramTransport, DatagramTransport) = (a.into_datagram(), b.into_datagram());
    // A non-trivial window on b: counters 0..10 sent, 3 and 7 lost so far.
    let mut packets = Vec::new();
    for i in 0..10u8 {
        let mut p = [0u8; 1 + DATAGRAM_OVERHEAD];
        a.seal(&[i], &mut p).unwrap();
        packets.push(p);
    }
    let mut out = [0u8; 64];
    for (i, p) in packets.iter().enumerate() {
        if i != 3 && i != 7 {
            b.open(p, &mut out).unwrap();
        }
    }
    exchange_datagrams(&mut a, &mut b, "live");

    let blob_b = encode(&b);
    assert!(blob_b.len() <= <DatagramTransport as Persist>::MAX_ENCODED_LEN);
    let mut b2 = DatagramTransport::<33>::decode_state(&blob_b).unwrap();
    assert_eq!(encode(&b2), blob_b, "decode(encode(x)) re-encodes identically");
    assert_eq!(b2.window(), b.window());
    assert_eq!(b2.next_counter(), b.next_counter());
    assert_eq!(b2.handshake_hash(), b.handshake_hash());
    assert_eq!(b2.remote_static(), b.remote_static());
    // The window came back: old packets are still replays, the lost ones
    // are still welcome.
    assert_eq!(b2.open(&packets[0], &mut out), Err(Error::Replay));
    assert_eq!(b2.open(&packets[7], &mut out), Ok(1));
    assert_eq!(out[0], 7);

    let sealed_a = seal(&a, &key, 1, &mut rng);
    let (mut a2, _) = open::<DatagramTransport>(&key, &sealed_a, 1).unwrap();
    assert_eq!(encode(&a2), encode(&a));
    exchange_datagrams(&mut a2, &mut b2, "restored both");
    assert_eq!(b2.open(&packets[3], &mut out), Ok(1));
    assert_eq!(
        open::<DatagramTransport>(&key, &sealed_a, 2).unwrap_err(),
        securemesh_core::Error::Rollback { found: 1, newest: 2 }
    );

    // A stream blob is not a datagram blob, and the window size must match.
    let (t, _) = common::transports(XX, 5);
    assert!(DatagramTransport::<33>::decode_state(&encode(&t)).is_err());
    assert!(Transport::decode_state(&blob_b).is_err());
    assert!(DatagramTransport::<3>::decode_state(&blob_b).is_err());
}

// ---------------------------------------------------------------- (b) BufferTooSmall

/// Run `name` with 40-byte payloads. With `probe`, every write is first
/// tried into buffers one byte too small (and empty), and every read into a
/// payload buffer one byte too small; each must fail with the exact size,
/// draw no randomness and change nothing. Returns every message and the
/// final handshake hash.
fn run_with_probes(name: &str, probe: bool) -> (Vec<Vec<u8>>, Vec<u8>) {
    let p = Protocol::parse(name).unwrap();
    let mut rng = TestRng(42);
    let k = Keys::new(&mut rng);
    let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
    let payload = [0x5au8; 40];
    let mut msgs = Vec::new();
    for m in 0..p.pattern().messages().len() {
        let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let needed = w.next_message_len(payload.len()).unwrap();
        if probe {
            let (h, rng_state) = (w.handshake_hash().to_vec(), rng.0);
            for size in [0, needed - 1] {
                let mut small = vec![0u8; size];
                assert_eq!(
                    w.write_message(&payload, &mut small, &mut rng),
                    Err(Error::BufferTooSmall { needed }),
                    "{name} message {m} into {size} bytes"
                );
            }
            assert_eq!(rng.0, rng_state, "no randomness drawn");
            assert_eq!(w.handshake_hash(), &h[..]);
            assert!(w.is_my_turn() && !w.is_poisoned());
        }
        let mut msg = vec![0u8; needed + 10];
        let n = w.write_message(&payload, &mut msg, &mut rng).unwrap();
        assert_eq!(n, needed);
        msg.truncate(n);
        if probe {
            let h = rd.handshake_hash().to_vec();
            let mut small = vec![0u8; payload.len() - 1];
            assert_eq!(
                rd.read_message(&msg, &mut small),
                Err(Error::BufferTooSmall { needed: payload.len() })
            );
            assert_eq!(rd.handshake_hash(), &h[..]);
            assert!(!rd.is_poisoned() && !rd.is_my_turn());
        }
        let mut pl = vec![0u8; payload.len()];
        assert_eq!(rd.read_message(&msg, &mut pl), Ok(payload.len()));
        assert_eq!(pl, payload);
        if rd.remote_static_pending() {
            rd.accept_remote_static();
        }
        msgs.push(msg);
    }
    assert_eq!(i.handshake_hash(), r.handshake_hash());
    (msgs, i.handshake_hash().to_vec())
}

#[test]
fn buffer_too_small_changes_nothing_in_the_handshake() {
    for name in [
        NN,
        XX,
        "Noise_IKpsk2_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk0+psk3_25519_ChaChaPoly_SHA512",
        "Noise_X1X1_25519_ChaChaPoly_SHA256",
        "Noise_K_25519_ChaChaPoly_SHA256",
    ] {
        let plain = run_with_probes(name, false);
        let probed = run_with_probes(name, true);
        assert_eq!(plain, probed, "{name}: the failed attempts left no trace");
    }
}

#[test]
fn buffer_too_small_changes_nothing_in_the_transports() {
    let (mut a, mut b) = common::transports(XX, 6);
    let payload = [1u8; 100];
    let mut small = [0u8; 115];
    assert_eq!(a.write_message(&payload, &mut small), Err(Error::BufferTooSmall { needed: 116 }));
    assert_eq!(a.sending_nonce(), 0);
    let mut inplace = [0u8; 115];
    assert_eq!(a.encrypt_in_place(&mut inplace, 100), Err(Error::BufferTooSmall { needed: 116 }));
    assert_eq!(a.sending_nonce(), 0);
    let mut msg = [0u8; 116];
    assert_eq!(a.write_message(&payload, &mut msg), Ok(116));
    // The stream reader needs room for the payload only, like the others.
    let mut short = [0u8; 99];
    assert_eq!(b.read_message(&msg, &mut short), Err(Error::BufferTooSmall { needed: 100 }));
    assert_eq!(b.receiving_nonce(), 0);
    let mut out = [0u8; 100];
    assert_eq!(b.read_message(&msg, &mut out), Ok(100));
    assert_eq!(&out[..100], &payload);

    let (a, b) = common::transports(XX, 7);
    let (mut a, mut b): (DatagramTransport, DatagramTransport) = (a.into_datagram(), b.into_datagram());
    let mut small = [0u8; 100 + DATAGRAM_OVERHEAD - 1];
    assert_eq!(a.seal(&payload, &mut small), Err(Error::BufferTooSmall { needed: 100 + DATAGRAM_OVERHEAD }));
    assert_eq!(a.next_counter(), 0);
    let mut packet = [0u8; 100 + DATAGRAM_OVERHEAD];
    a.seal(&payload, &mut packet).unwrap();
    let mut out = [0u8; 99];
    assert_eq!(b.open(&packet, &mut out), Err(Error::BufferTooSmall { needed: 100 }));
    assert_eq!(b.window().highest(), None);
    let mut out = [0u8; 100];
    assert_eq!(b.open(&packet, &mut out), Ok(100));
    assert_eq!(out, payload);
}

// ---------------------------------------------------------------- (c) 65535 limits

#[test]
fn handshake_messages_are_limited_to_65535_bytes() {
    let p = Protocol::parse(NN).unwrap();
    let mut rng = TestRng(8);
    let k = Keys::new(&mut rng);
    let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
    let big = vec![7u8; MAX_MESSAGE_LEN + 1];
    let mut msg = vec![0u8; MAX_MESSAGE_LEN + 100];
    let mut pl = vec![0u8; MAX_MESSAGE_LEN + 100];

    // Message 1 of NN: e (32 bytes) and a cleartext payload.
    assert_eq!(i.max_payload_len(), Some(MAX_MESSAGE_LEN - 32));
    let h = i.handshake_hash().to_vec();
    assert_eq!(i.write_message(&big[..MAX_MESSAGE_LEN - 31], &mut msg, &mut rng), Err(Error::MessageTooLong));
    assert_eq!(i.handshake_hash(), &h[..]);
    let n = i.write_message(&big[..MAX_MESSAGE_LEN - 32], &mut msg, &mut rng).unwrap();
    assert_eq!(n, MAX_MESSAGE_LEN);
    assert_eq!(r.read_message(&msg[..n], &mut pl), Ok(MAX_MESSAGE_LEN - 32));

    // Message 2: e, ee, and an encrypted payload (tag).
    assert_eq!(r.max_payload_len(), Some(MAX_MESSAGE_LEN - 48));
    assert_eq!(r.write_message(&big[..MAX_MESSAGE_LEN - 47], &mut msg, &mut rng), Err(Error::MessageTooLong));
    let n = r.write_message(&big[..MAX_MESSAGE_LEN - 48], &mut msg, &mut rng).unwrap();
    assert_eq!(n, MAX_MESSAGE_LEN);
    assert_eq!(i.read_message(&msg[..n], &mut pl), Ok(MAX_MESSAGE_LEN - 48));
    assert_eq!(i.handshake_hash(), r.handshake_hash());

    // Reading a message over the limit is a failed read: Decrypt, poisoned.
    let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
    let n = i.write_message(b"", &mut msg, &mut rng).unwrap();
    assert_eq!(n, 32);
    assert_eq!(r.read_message(&msg[..MAX_MESSAGE_LEN + 1], &mut pl), Err(Error::Decrypt));
    assert!(r.is_poisoned());
    // So is a message shorter than its tokens.
    let mut r = ours(&p, Role::Responder, &k);
    assert_eq!(r.read_message(&msg[..31], &mut pl), Err(Error::Decrypt));
    assert!(r.is_poisoned());
}

#[test]
fn transport_payload_limits() {
    assert_eq!(MAX_PAYLOAD_LEN, 65519);
    assert_eq!(MAX_DATAGRAM_PAYLOAD, 65511);
    let (mut a, mut b) = common::transports(XX, 9);
    let big = vec![3u8; MAX_MESSAGE_LEN + 1];
    let mut msg = vec![0u8; MAX_MESSAGE_LEN + 100];
    let mut out = vec![0u8; MAX_MESSAGE_LEN + 100];
    assert_eq!(a.write_message(&big[..65520], &mut msg), Err(Error::MessageTooLong));
    assert_eq!(a.encrypt_in_place(&mut msg, 65520), Err(Error::MessageTooLong));
    assert_eq!(a.sending_nonce(), 0);
    let n = a.write_message(&big[..65519], &mut msg).unwrap();
    assert_eq!(n, 65535);
    assert_eq!(n, 65519 + OVERHEAD);
    assert_eq!(b.read_message(&msg[..MAX_MESSAGE_LEN + 1], &mut out), Err(Error::MessageTooLong));
    assert_eq!(b.receiving_nonce(), 0);
    assert_eq!(b.read_message(&msg[..n], &mut out), Ok(65519));
    assert_eq!(&out[..65519], &big[..65519]);

    let (a, b) = common::transports(XX, 10);
    let (mut a, mut b): (DatagramTransport, DatagramTransport) = (a.into_datagram(), b.into_datagram());
    assert_eq!(a.seal(&big[..MAX_DATAGRAM_PAYLOAD + 1], &mut msg), Err(Error::MessageTooLong));
    assert_eq!(a.next_counter(), 0);
    let n = a.seal(&big[..MAX_DATAGRAM_PAYLOAD], &mut msg).unwrap();
    assert_eq!(n, MAX_MESSAGE_LEN);
    assert_eq!(b.open(&msg[..MAX_MESSAGE_LEN + 1], &mut out), Err(Error::MessageTooLong));
    assert_eq!(b.open(&msg[..n], &mut out), Ok(MAX_DATAGRAM_PAYLOAD));
}

// ---------------------------------------------------------------- (d) nonce exhaustion

/// Offsets of the sending and receiving nonces in a plain envelope of a
/// transport, from the body layout documented in `persist.rs`:
/// `header (13) | mode u8 | cipher u8 | initiator u8 | hash_len u8 | hash
/// | rs flag [+32] | send flag + key 32 + nonce u64 | recv flag + key 32 + nonce u64`.
fn nonce_offsets(hash_len: usize, has_rs: bool) -> (usize, usize) {
    let send = HEADER_LEN + 3 + 1 + hash_len + 1 + if has_rs { 32 } else { 0 } + 1 + 32;
    (send, send + 8 + 1 + 32)
}

fn patch_u64(blob: &mut [u8], at: usize, expect: u64, value: u64) {
    assert_eq!(u64::from_be_bytes(blob[at..at + 8].try_into().unwrap()), expect, "layout check at {at}");
    blob[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn stream_nonce_exhaustion() {
    assert_eq!(HEADER_LEN, 13);
    for name in [XX, XX512, NN] {
        let (mut a, mut b) = common::transports(name, 11);
        exchange(&mut a, &mut b, "warm up");
        let (send_at, recv_at) = nonce_offsets(a.handshake_hash().len(), a.remote_static().is_some());
        let mut blob_a = encode(&a);
        patch_u64(&mut blob_a, send_at, 1, u64::MAX - 1);
        let mut a = Transport::decode_state(&blob_a).unwrap();
        let mut blob_b = encode(&b);
        patch_u64(&mut blob_b, recv_at, 1, u64::MAX - 1);
        let mut b = Transport::decode_state(&blob_b).unwrap();
        assert_eq!((a.sending_nonce(), b.receiving_nonce()), (u64::MAX - 1, u64::MAX - 1));

        let (mut msg, mut out) = ([0u8; 64], [0u8; 64]);
        let n = a.write_message(b"last", &mut msg).unwrap();
        assert_eq!(a.sending_nonce(), u64::MAX);
        assert_eq!(b.read_message(&msg[..n], &mut out), Ok(4));
        assert_eq!(&out[..4], b"last");
        // 2^64 - 1 is reserved: never used, in either direction.
        assert_eq!(a.write_message(b"one too many", &mut msg), Err(Error::NonceExhausted));
        assert_eq!(a.encrypt_in_place(&mut msg, 4), Err(Error::NonceExhausted));
        assert_eq!(a.sending_nonce(), u64::MAX);
        assert_eq!(b.read_message(&msg[..n], &mut out), Err(Error::NonceExhausted));
        // The other direction is unaffected.
        let n = b.write_message(b"still fine", &mut msg).unwrap();
        assert_eq!(a.read_message(&msg[..n], &mut out), Ok(10));
        // Rekeying does not reset the nonce.
        a.rekey_outgoing().unwrap();
        assert_eq!(a.write_message(b"x", &mut msg), Err(Error::NonceExhausted));
    }
}

#[test]
fn datagram_counter_exhaustion() {
    let (a, b) = common::transports(XX, 12);
    let (a, mut b): (DatagramTransport, DatagramTransport) = (a.into_datagram(), b.into_datagram());
    let (send_at, _) = nonce_offsets(a.handshake_hash().len(), a.remote_static().is_some());
    let mut blob = encode(&a);
    patch_u64(&mut blob, send_at, 0, u64::MAX - 1);
    let mut a = DatagramTransport::<33>::decode_state(&blob).unwrap();
    assert_eq!(a.next_counter(), u64::MAX - 1);
    let (mut packet, mut out) = ([0u8; 64], [0u8; 64]);
    let n = a.seal(b"last", &mut packet).unwrap();
    assert_eq!(&packet[..8], &(u64::MAX - 1).to_be_bytes());
    // The counter is explicit: the receiver needs no patching.
    assert_eq!(b.open(&packet[..n], &mut out), Ok(4));
    assert_eq!(b.window().highest(), Some(u64::MAX - 1));
    assert_eq!(a.seal(b"one too many", &mut packet), Err(Error::NonceExhausted));
    assert_eq!(a.next_counter(), u64::MAX);
    // A packet claiming counter 2^64 - 1 is refused before decryption.
    let mut forged = packet;
    forged[..8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(b.open(&forged[..n], &mut out), Err(Error::Replay));
}

// ---------------------------------------------------------------- (e) remote static acceptance

/// XX up to the point where the initiator has read message 2.
fn xx_after_message_2(seed: u64) -> (HandshakeState, HandshakeState, Keys, TestRng) {
    let p = Protocol::parse(XX).unwrap();
    let mut rng = TestRng(seed);
    let k = Keys::new(&mut rng);
    let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
    let (mut msg, mut pl) = ([0u8; 256], [0u8; 256]);
    let n = i.write_message(b"", &mut msg, &mut rng).unwrap();
    r.read_message(&msg[..n], &mut pl).unwrap();
    assert!(!r.remote_static_pending(), "XX message 1 carries no static key");
    let n = r.write_message(b"", &mut msg, &mut rng).unwrap();
    i.read_message(&msg[..n], &mut pl).unwrap();
    (i, r, k, rng)
}

#[test]
fn initiator_must_accept_the_remote_static_key() {
    let (mut i, _r, k, mut rng) = xx_after_message_2(13);
    assert!(i.remote_static_pending());
    assert_eq!(i.remote_static(), Some(&common::public(&k.r_s)));
    assert!(!i.is_poisoned());
    let mut msg = [0u8; 256];
    let h = i.handshake_hash().to_vec();
    let rng_state = rng.0;
    assert_eq!(i.write_message(b"", &mut msg, &mut rng), Err(Error::RemoteStaticPending));
    assert_eq!((i.handshake_hash(), rng.0), (&h[..], rng_state));
    assert_eq!(i.finish().unwrap_err(), Error::RemoteStaticPending);

    let (mut i, mut r, _, mut rng) = xx_after_message_2(13);
    i.accept_remote_static();
    let mut pl = [0u8; 256];
    let n = i.write_message(b"", &mut msg, &mut rng).unwrap();
    r.read_message(&msg[..n], &mut pl).unwrap();
    assert!(r.remote_static_pending() && r.is_complete());
    assert_eq!(r.finish().unwrap_err(), Error::RemoteStaticPending);
}

#[test]
fn responder_must_accept_before_finishing() {
    let (mut i, mut r, k, mut rng) = xx_after_message_2(14);
    i.accept_remote_static();
    let (mut msg, mut pl) = ([0u8; 256], [0u8; 256]);
    let n = i.write_message(b"", &mut msg, &mut rng).unwrap();
    r.read_message(&msg[..n], &mut pl).unwrap();
    assert!(r.remote_static_pending());
    assert_eq!(r.remote_static(), Some(&common::public(&k.i_s)));
    r.accept_remote_static();
    assert!(!r.remote_static_pending());
    let (ti, tr) = (i.finish().unwrap(), r.finish().unwrap());
    assert_eq!(ti.handshake_hash(), tr.handshake_hash());
    assert_eq!(tr.remote_static(), Some(&common::public(&k.i_s)));
}

#[test]
fn responder_cannot_answer_before_accepting() {
    // IX: the initiator's static key arrives in message 1.
    let p = Protocol::parse("Noise_IX_25519_ChaChaPoly_SHA256").unwrap();
    let mut rng = TestRng(15);
    let k = Keys::new(&mut rng);
    let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
    let (mut msg, mut pl) = ([0u8; 256], [0u8; 256]);
    let n = i.write_message(b"", &mut msg, &mut rng).unwrap();
    r.read_message(&msg[..n], &mut pl).unwrap();
    assert!(r.remote_static_pending());
    assert_eq!(r.write_message(b"", &mut msg, &mut rng), Err(Error::RemoteStaticPending));
    r.accept_remote_static();
    let n = r.write_message(b"", &mut msg, &mut rng).unwrap();
    i.read_message(&msg[..n], &mut pl).unwrap();
    i.accept_remote_static();
    assert_eq!(i.finish().unwrap().handshake_hash(), r.finish().unwrap().handshake_hash());
}

// ---------------------------------------------------------------- (f) turns and completion

#[test]
fn wrong_turn_and_incomplete() {
    let p = Protocol::parse(XX).unwrap();
    let mut rng = TestRng(16);
    let k = Keys::new(&mut rng);
    let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
    let (mut msg, mut pl) = ([0u8; 256], [0u8; 256]);
    assert!(i.is_my_turn() && !r.is_my_turn());
    assert_eq!(r.write_message(b"", &mut msg, &mut rng), Err(Error::WrongTurn));
    assert_eq!(r.next_message_len(0), None);
    assert_eq!(i.read_message(&[0u8; 48], &mut pl), Err(Error::WrongTurn));
    assert!(!i.is_poisoned() && !r.is_poisoned(), "a wrong turn is a caller error, not a failed read");

    let n = i.write_message(b"", &mut msg, &mut rng).unwrap();
    assert_eq!(i.write_message(b"", &mut msg, &mut rng), Err(Error::WrongTurn));
    r.read_message(&msg[..n], &mut pl).unwrap();
    assert_eq!(r.read_message(&msg[..n], &mut pl), Err(Error::WrongTurn));
    let n = r.write_message(b"", &mut msg, &mut rng).unwrap();
    i.read_message(&msg[..n], &mut pl).unwrap();
    i.accept_remote_static();
    assert_eq!(r.finish().unwrap_err(), Error::Incomplete);

    let (mut i, mut r, _, mut rng) = xx_after_message_2(16);
    i.accept_remote_static();
    let n = i.write_message(b"", &mut msg, &mut rng).unwrap();
    r.read_message(&msg[..n], &mut pl).unwrap();
    r.accept_remote_static();
    // Complete: no more writes or reads.
    assert!(i.is_complete() && r.is_complete() && !i.is_my_turn() && !r.is_my_turn());
    assert_eq!(i.write_message(b"", &mut msg, &mut rng), Err(Error::WrongTurn));
    assert_eq!(r.write_message(b"", &mut msg, &mut rng), Err(Error::WrongTurn));
    assert_eq!(r.read_message(&msg[..n], &mut pl), Err(Error::WrongTurn));
    assert_eq!(i.max_payload_len(), None);
    i.finish().unwrap();
    r.finish().unwrap();

    // finish() right after building.
    let i = ours(&p, Role::Initiator, &k);
    assert_eq!(i.finish().unwrap_err(), Error::Incomplete);
}

#[test]
fn builder_checks_the_keys() {
    let ik = Protocol::parse("Noise_IK_25519_ChaChaPoly_SHA256").unwrap();
    let nn = Protocol::parse(NN).unwrap();
    let s = || securemesh_core::Secret::new([1u8; 32]);
    assert_eq!(Builder::new(&ik).build_initiator().unwrap_err(), Error::MissingKey);
    assert_eq!(Builder::new(&ik).local_static(s()).build_initiator().unwrap_err(), Error::MissingKey);
    assert!(Builder::new(&ik).local_static(s()).remote_static([9u8; 32]).build_initiator().is_ok());
    assert_eq!(Builder::new(&nn).local_static(s()).build_initiator().unwrap_err(), Error::UnexpectedKey);
    assert_eq!(Builder::new(&nn).psk(0, s()).build_initiator().unwrap_err(), Error::UnexpectedKey);
    assert_eq!(Builder::new(&nn).psk(5, s()).build_initiator().unwrap_err(), Error::UnexpectedKey);
    let nn0 = Protocol::parse("Noise_NNpsk0_25519_ChaChaPoly_SHA256").unwrap();
    assert_eq!(Builder::new(&nn0).build_responder().unwrap_err(), Error::MissingKey);
    assert_eq!(
        Builder::new(&nn0).psk(0, s()).psk(2, s()).build_responder().unwrap_err(),
        Error::UnexpectedKey
    );
}

// ---------------------------------------------------------------- (g) sizes

#[test]
fn size_of_ceilings() {
    let sizes = [
        // `hfs` adds the peer's KEM public key (1568 bytes at most) and our
        // KEM seed (64) to the keys a handshake holds.
        ("HandshakeState", size_of::<HandshakeState>(), if cfg!(feature = "hfs") { 2440 } else { 800 }),
        ("Transport", size_of::<Transport>(), 220),
        ("DatagramTransport (33 words)", size_of::<DatagramTransport>(), 528),
        ("Protocol", size_of::<Protocol>(), 160),
    ];
    for (name, size, ceiling) in sizes {
        println!("size_of {name}: {size} bytes (ceiling {ceiling})");
    }
    println!("Transport::MAX_ENCODED_LEN: {}", <Transport as Persist>::MAX_ENCODED_LEN);
    println!("DatagramTransport::MAX_ENCODED_LEN: {}", <DatagramTransport as Persist>::MAX_ENCODED_LEN);
    for (name, size, ceiling) in sizes {
        assert!(size <= ceiling, "{name}: {size} bytes > ceiling {ceiling}");
    }
}

#[test]
fn failed_sends_leave_no_plaintext_in_the_output() {
    // A one-way pattern's responder cannot send: the plaintext must not be
    // copied into `out` before that is known.
    let (_, mut responder) = common::transports("Noise_N_25519_ChaChaPoly_SHA256", 3);
    let mut out = [0u8; 64];
    assert_eq!(responder.write_message(b"secret plaintext", &mut out), Err(Error::OneWay));
    assert!(out.iter().all(|&b| b == 0));
}

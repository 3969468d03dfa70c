//! Transport properties after a real handshake:
//!
//! - datagrams delivered in any order, with duplicates and losses, are
//!   accepted exactly once while inside the replay window, and refused with
//!   `Replay` when duplicated or older than the window (checked against a
//!   model, for the default 2048-packet window and a 128-packet one);
//! - a tampered datagram is `Decrypt` (or `Replay` if the flip lands on an
//!   already seen counter), leaves no plaintext and does not move the window;
//! - a tampered stream message is `Decrypt` and does not consume the nonce.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use proptest::prelude::*;
use proptest::sample::Index;
use securemesh_core::envelope::Persist;
use securemesh_noise::{
    DATAGRAM_OVERHEAD, DEFAULT_WINDOW_WORDS, DatagramTransport, Error, OVERHEAD, ReplayWindow, Transport,
};
use std::collections::HashSet;

const XX: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
const NN: &str = "Noise_NN_25519_ChaChaPoly_SHA512";

fn datagrams<const W: usize>(name: &str, seed: u64) -> (DatagramTransport<W>, DatagramTransport<W>) {
    let (a, b) = common::transports(name, seed);
    (a.into_datagram_with_window(), b.into_datagram_with_window())
}

/// The payload of packet `i`: length and content depend on `i`.
fn payload(i: usize) -> Vec<u8> {
    (0..(i * 13) % 97).map(|j| (i ^ (j * 7)) as u8).collect()
}

/// A delivery schedule over `n` packets: a random permutation, some packets
/// dropped, some delivered again at random places.
fn schedule() -> impl Strategy<Value = (usize, Vec<usize>)> {
    (1usize..200).prop_flat_map(|n| {
        (
            Just(n),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            prop::collection::vec(prop::bool::weighted(0.1), n),
            prop::collection::vec((0..n, any::<Index>()), 0..n),
        )
            .prop_map(|(n, order, drop, dups)| {
                let mut s: Vec<usize> = order.into_iter().filter(|&p| !drop[p]).collect();
                for (packet, at) in dups {
                    let at = at.index(s.len() + 1);
                    s.insert(at, packet);
                }
                (n, s)
            })
    })
}

/// Seal `n` packets on a fresh session; returns them and the receiving
/// side as a persisted stream transport, so that several receivers (with
/// different windows) can be restored from it.
fn sealed(n: usize, seed: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
    let (a, b) = common::transports(XX, seed);
    let mut tx: DatagramTransport = a.into_datagram();
    let packets = (0..n)
        .map(|i| {
            let mut out = vec![0u8; payload(i).len() + DATAGRAM_OVERHEAD];
            assert_eq!(tx.next_counter(), i as u64);
            let len = tx.seal(&payload(i), &mut out).unwrap();
            assert_eq!(len, out.len());
            out
        })
        .collect();
    let mut blob = vec![0u8; <Transport as Persist>::MAX_ENCODED_LEN];
    let len = b.encode_state(&mut blob).unwrap();
    blob.truncate(len);
    (packets, blob)
}

/// Deliver `order` to a fresh receiver with a `W`-word window and compare
/// every outcome with the model: accepted iff not seen before and either
/// above the highest counter or less than `WINDOW` below it.
fn deliver<const W: usize>(packets: &[Vec<u8>], receiver: &[u8], order: &[usize]) {
    let mut rx: DatagramTransport<W> = Transport::decode_state(receiver).unwrap().into_datagram_with_window();
    let window = ReplayWindow::<W>::WINDOW;
    let mut seen = HashSet::new();
    let mut highest: Option<u64> = None;
    let mut out = [0u8; 256];
    for &p in order {
        let c = p as u64;
        let fresh = !seen.contains(&c) && highest.is_none_or(|h| c > h || h - c < window);
        let got = rx.open(&packets[p], &mut out);
        if fresh {
            let len = got.unwrap_or_else(|e| panic!("packet {p} (highest {highest:?}): {e:?}"));
            assert_eq!(&out[..len], &payload(p)[..], "packet {p}");
            seen.insert(c);
            highest = Some(highest.map_or(c, |h| h.max(c)));
        } else {
            assert_eq!(got, Err(Error::Replay), "packet {p} (highest {highest:?}, window {window})");
        }
        assert_eq!(rx.window().highest(), highest);
    }
}

// AEAD calls are slow in a debug build (the generic AEAD code is instantiated
// in securemesh-core, a workspace member built at opt-level 0), so the case
// count is modest: about 3 s in debug.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn every_datagram_in_the_window_is_accepted_exactly_once(
        (n, order) in schedule(),
        seed in any::<u64>(),
    ) {
        let (packets, receiver) = sealed(n, seed);
        deliver::<DEFAULT_WINDOW_WORDS>(&packets, &receiver, &order);
        deliver::<3>(&packets, &receiver, &order);
        deliver::<2>(&packets, &receiver, &order);
    }

    #[test]
    fn tampered_stream_message_keeps_the_nonce(
        seed in any::<u64>(),
        data in prop::collection::vec(any::<u8>(), 0..200),
        skip in 0usize..4,
        byte in any::<Index>(),
        bit in 0u8..8,
    ) {
        let (mut a, mut b) = common::transports(NN, seed);
        let mut msg = vec![0u8; data.len() + OVERHEAD];
        let mut out = vec![0u8; data.len() + OVERHEAD];
        for _ in 0..skip {
            let n = a.write_message(&data, &mut msg).unwrap();
            b.read_message(&msg[..n], &mut out).unwrap();
        }
        let n = a.write_message(&data, &mut msg).unwrap();
        let mut bad = msg[..n].to_vec();
        let at = byte.index(n);
        bad[at] ^= 1 << bit;
        let before = b.receiving_nonce();
        out.fill(0xAA);
        prop_assert_eq!(b.read_message(&bad, &mut out), Err(Error::Decrypt));
        prop_assert_eq!(b.receiving_nonce(), before);
        prop_assert!(out[..n - OVERHEAD].iter().all(|&x| x == 0), "plaintext left in the output buffer");
        prop_assert!(out[n - OVERHEAD..].iter().all(|&x| x == 0xAA), "read wrote past the payload");
        // In place: the buffer is left as it was.
        let mut inplace = bad.clone();
        prop_assert_eq!(b.decrypt_in_place(&mut inplace), Err(Error::Decrypt));
        prop_assert_eq!(&inplace, &bad);
        prop_assert_eq!(b.receiving_nonce(), before);
        // The genuine message still decrypts.
        let len = b.read_message(&msg[..n], &mut out).unwrap();
        prop_assert_eq!(&out[..len], &data[..]);
        prop_assert_eq!(b.receiving_nonce(), before + 1);
    }
}

#[test]
fn packet_older_than_the_window_is_replay() {
    assert_eq!(ReplayWindow::<DEFAULT_WINDOW_WORDS>::WINDOW, 2048);
    assert_eq!(ReplayWindow::<3>::WINDOW, 128);
    let (mut tx, mut rx) = datagrams::<3>(XX, 11);
    let packets: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let mut out = vec![0u8; 64];
            let n = tx.seal(&payload(i)[..payload(i).len().min(40)], &mut out).unwrap();
            out.truncate(n);
            out
        })
        .collect();
    let mut out = [0u8; 64];
    rx.open(&packets[199], &mut out).unwrap();
    assert_eq!(rx.open(&packets[71], &mut out), Err(Error::Replay), "199 - 71 = 128: outside");
    rx.open(&packets[72], &mut out).unwrap();
    assert_eq!(rx.open(&packets[72], &mut out), Err(Error::Replay));
    assert_eq!(rx.open(&packets[0], &mut out), Err(Error::Replay));
    // Moving the window forward by a whole window forgets everything older.
    rx.open(&packets[299], &mut out).unwrap();
    assert_eq!(rx.open(&packets[171], &mut out), Err(Error::Replay));
    rx.open(&packets[172], &mut out).unwrap();
    assert_eq!(rx.open(&packets[199], &mut out), Err(Error::Replay), "seen before the jump");
    assert_eq!(rx.window().highest(), Some(299));
}

#[test]
fn tampered_datagram_is_refused_and_not_marked_seen() {
    let (mut tx, mut rx) = datagrams::<DEFAULT_WINDOW_WORDS>(XX, 12);
    let mut out = [0u8; 128];
    let mut packets = Vec::new();
    for i in 0..7 {
        let mut p = vec![0u8; 20 + DATAGRAM_OVERHEAD];
        tx.seal(&[i as u8; 20], &mut p).unwrap();
        packets.push(p);
    }
    for p in &packets[..5] {
        rx.open(p, &mut out).unwrap();
    }
    let genuine = &packets[5];
    let mut outcomes = [0usize; 2];
    for at in 0..genuine.len() {
        for bit in 0..8 {
            let mut bad = genuine.clone();
            bad[at] ^= 1 << bit;
            out.fill(0xAA);
            let got = rx.open(&bad, &mut out);
            let counter = u64::from_be_bytes(bad[..8].try_into().unwrap());
            if at < 8 && counter < 5 {
                // The flip turned the counter into one already received.
                assert_eq!(got, Err(Error::Replay), "byte {at} bit {bit}");
                outcomes[1] += 1;
            } else {
                assert_eq!(got, Err(Error::Decrypt), "byte {at} bit {bit}");
                assert!(out[..20].iter().all(|&x| x == 0), "plaintext left (byte {at} bit {bit})");
                outcomes[0] += 1;
            }
            // Neither a forged far-future counter nor the forged packet's own
            // counter moved the window.
            assert_eq!(rx.window().highest(), Some(4), "byte {at} bit {bit}");
            assert!(rx.window().check(5));
        }
    }
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    let n = rx.open(genuine, &mut out).unwrap();
    assert_eq!(&out[..n], &[5u8; 20]);
    assert_eq!(rx.open(genuine, &mut out), Err(Error::Replay));
    // Truncated packets are forgeries too, and do not move the window.
    let next = &packets[6];
    for len in 0..next.len() {
        assert_eq!(rx.open(&next[..len], &mut out), Err(Error::Decrypt), "len {len}");
        assert_eq!(rx.window().highest(), Some(5));
    }
    assert_eq!(rx.open(next, &mut out), Ok(20));
}

#[test]
fn stream_messages_out_of_order_fail_without_consuming_nonces() {
    let (mut a, mut b): (Transport, Transport) = common::transports(XX, 13);
    let (mut m0, mut m1, mut out) = ([0u8; 64], [0u8; 64], [0u8; 64]);
    let n0 = a.write_message(b"zero", &mut m0).unwrap();
    let n1 = a.write_message(b"one", &mut m1).unwrap();
    assert_eq!(b.read_message(&m1[..n1], &mut out), Err(Error::Decrypt));
    assert_eq!(b.receiving_nonce(), 0);
    assert_eq!(b.read_message(&m0[..n0], &mut out), Ok(4));
    assert_eq!(&out[..4], b"zero");
    assert_eq!(b.read_message(&m0[..n0], &mut out), Err(Error::Decrypt), "a replayed stream message");
    assert_eq!(b.read_message(&m1[..n1], &mut out), Ok(3));
    assert_eq!(b.receiving_nonce(), 2);
    // Each direction has its own key: a's own message does not decrypt on a.
    let n = a.write_message(b"mine", &mut m0).unwrap();
    assert_eq!(a.read_message(&m0[..n], &mut out), Err(Error::Decrypt));
    assert_eq!(a.receiving_nonce(), 0);
}

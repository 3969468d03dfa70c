//! Zero heap allocations: a full XX handshake, stream transport both ways,
//! a rekey, and a datagram exchange (with the feature `hfs`, an XXhfs
//! ML-KEM-768 handshake too), counted by an instrumented global
//! allocator. The allocator counts every thread, so this binary runs
//! without the test harness (`harness = false`): one thread, and nothing
//! else allocates meanwhile (under libtest, its main thread once allocated
//! 900 bytes in 4 allocations during the measurement, on a fresh CI machine).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::Secret;
use securemesh_core::testing::TestRng;
use securemesh_noise::{Builder, DatagramTransport, HandshakeState, Protocol, Transport, protocol};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const XX: Protocol = protocol!("Noise_XX_25519_ChaChaPoly_SHA256");

/// The three XX messages (`m1`, `m2`, `m3`) between initiator `a` and
/// responder `b`, each accepting the other's static key, then both
/// transports.
fn xx(
    mut a: HandshakeState,
    mut b: HandshakeState,
    msg: &mut [u8],
    payload: &mut [u8],
    rng: &mut TestRng,
) -> (Transport, Transport) {
    let n = a.write_message(b"m1", msg, rng).unwrap();
    b.read_message(&msg[..n], payload).unwrap();
    let n = b.write_message(b"m2", msg, rng).unwrap();
    a.read_message(&msg[..n], payload).unwrap();
    a.accept_remote_static();
    let n = a.write_message(b"m3", msg, rng).unwrap();
    b.read_message(&msg[..n], payload).unwrap();
    b.accept_remote_static();
    (a.finish().unwrap(), b.finish().unwrap())
}

fn main() {
    let mut rng = TestRng::new(42);
    let (mut msg, mut payload) = ([0u8; 2048], [0u8; 2048]);
    let data = [7u8; 1024];
    let (a_s, b_s) = (Secret::new(rng.bytes::<32>()), Secret::new(rng.bytes::<32>()));

    let region = Region::new(GLOBAL);
    let a = Builder::new(&XX).prologue(b"p").local_static(a_s).build_initiator().unwrap();
    let b = Builder::new(&XX).prologue(b"p").local_static(b_s).build_responder().unwrap();
    let (mut ta, mut tb) = xx(a, b, &mut msg, &mut payload, &mut rng);
    for _ in 0..10 {
        let n = ta.write_message(&data, &mut msg).unwrap();
        assert_eq!(tb.read_message(&msg[..n], &mut payload).unwrap(), data.len());
        let n = tb.write_message(&data, &mut msg).unwrap();
        assert_eq!(ta.read_message(&msg[..n], &mut payload).unwrap(), data.len());
    }
    ta.rekey_outgoing().unwrap();
    tb.rekey_incoming().unwrap();
    let n = ta.write_message(&data, &mut msg).unwrap();
    tb.read_message(&msg[..n], &mut payload).unwrap();
    let (mut da, mut db): (DatagramTransport, DatagramTransport) = (ta.into_datagram(), tb.into_datagram());
    for _ in 0..10 {
        let n = da.seal(&data, &mut msg).unwrap();
        assert_eq!(db.open(&msg[..n], &mut payload).unwrap(), data.len());
    }
    #[cfg(feature = "hfs")]
    {
        const XXHFS: Protocol = protocol!("Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256");
        let (a_s, b_s) = (Secret::new(rng.bytes::<32>()), Secret::new(rng.bytes::<32>()));
        let a = Builder::new(&XXHFS).local_static(a_s).build_initiator().unwrap();
        let b = Builder::new(&XXHFS).local_static(b_s).build_responder().unwrap();
        let (mut ta, mut tb) = xx(a, b, &mut msg, &mut payload, &mut rng);
        let n = ta.write_message(&data, &mut msg).unwrap();
        assert_eq!(tb.read_message(&msg[..n], &mut payload).unwrap(), data.len());
    }
    let stats = region.change();
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
    println!("no_alloc: handshake, transport, rekey and datagrams allocate nothing");
}

//! What the mesh's integration tests share: message kinds, roles, times,
//! and an agent with the two roles defined.
#![allow(dead_code, clippy::unwrap_used)]

use securemesh::{Config, DefaultAgent, Delivery, Event, MessageKind, PeerId, Permissions, Received, Role};
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::Identity;

pub const TASK: MessageKind = MessageKind(1);
pub const TELEMETRY: MessageKind = MessageKind(2);
/// Tasks and telemetry.
pub const WORKER: Role = Role(0);
/// Telemetry only.
pub const SENSOR: Role = Role(1);
pub const T0: Instant = Instant(1_000);
pub const WALL: UnixTime = UnixTime(1_700_000_000);

/// Whether this build's MLS key room is X-Wing's: mls-lite's feature
/// `x-wing` is on (in the workspace's build test-vectors turns it on), so
/// each group slot holds 1216-byte HPKE keys (122 KB instead of 56 KB).
pub const XWING_KEY_ROOM: bool = securemesh_mls_lite::crypto::suite::MAX_HPKE_PUBLIC_LEN > 32;

/// The ceiling on `size_of::<DefaultAgent>()` (a ceiling so growth is a
/// decision): 96 KB, 120 KB with the feature `pq` (2 KB queue slots,
/// PQXDH bundles in the directory, the KEM ciphertext room of ratchet
/// sessions), plus 66 KB for X-Wing's key room.
pub const DEFAULT_AGENT_CEILING: usize =
    if cfg!(feature = "pq") { 120 * 1024 } else { 96 * 1024 } + if XWING_KEY_ROOM { 66 * 1024 } else { 0 };

/// An agent from `seed` with `WORKER` and `SENSOR` defined (granted to
/// nobody yet), and its random stream.
pub fn agent(seed: u64) -> (Box<DefaultAgent>, TestRng) {
    let mut rng = TestRng::new(seed);
    let identity = Identity::generate(&mut rng);
    let mut a = Box::new(DefaultAgent::new(identity, Config::default(), &mut rng, WALL));
    let p = a.policy_mut();
    p.define_role(WORKER, Permissions::of(&[TASK, TELEMETRY])).unwrap();
    p.define_role(SENSOR, Permissions::of(&[TELEMETRY])).unwrap();
    (a, rng)
}

/// The clear header at the start of ratchet message `m` (type byte,
/// ratchet key, `PN`, `N`): (ratchet key, `N`), the pair that names a
/// message key.
pub fn ratchet_key_and_n(m: &[u8]) -> ([u8; 32], u32) {
    assert_eq!(m.first(), Some(&securemesh_ratchet::MSG_RATCHET), "a ratchet message with a clear header");
    (
        m.get(1..33).unwrap().try_into().unwrap(),
        u32::from_be_bytes(m.get(37..41).unwrap().try_into().unwrap()),
    )
}

/// Every envelope `from` has ready, with its destination and delivery.
pub fn transmits(from: &mut DefaultAgent) -> Vec<(PeerId, Delivery, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(t) = from.poll_transmit(&mut buf).unwrap() {
        out.push((t.to, t.delivery, buf[..t.len].to_vec()));
    }
    out
}

/// Every pending event of `a`.
pub fn events(a: &mut DefaultAgent) -> Vec<Event> {
    core::iter::from_fn(|| a.poll_event()).collect()
}

/// Hand each envelope to `to`; returns the delivered messages.
pub fn feed(
    to: &mut DefaultAgent,
    envelopes: &[(PeerId, Delivery, Vec<u8>)],
    rng: &mut TestRng,
) -> Vec<(Received, Vec<u8>)> {
    let mut got = Vec::new();
    for (dest, _, bytes) in envelopes {
        assert_eq!(*dest, to.peer_id(), "envelope for another agent");
        let mut out = [0u8; 2048];
        if let Some(r) = to.handle_input(bytes, &mut out, T0, rng).unwrap() {
            got.push((r, out[..r.len].to_vec()));
        }
    }
    got
}

/// What each side of a [`pump`] received.
pub type Received2 = (Vec<(Received, Vec<u8>)>, Vec<(Received, Vec<u8>)>);

/// Carry envelopes both ways until neither side has any; returns what
/// each side received. With `direct_only`, a mailbox envelope fails the
/// test; otherwise the mailbox delivers at once too.
pub fn pump(
    a: &mut DefaultAgent,
    ra: &mut TestRng,
    b: &mut DefaultAgent,
    rb: &mut TestRng,
    direct_only: bool,
) -> Received2 {
    let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
    loop {
        let (ab, ba) = (transmits(a), transmits(b));
        if ab.is_empty() && ba.is_empty() {
            return (at_a, at_b);
        }
        if direct_only {
            assert!(ab.iter().chain(&ba).all(|(_, d, _)| *d == Delivery::Direct));
        }
        at_b.extend(feed(b, &ab, rb));
        at_a.extend(feed(a, &ba, ra));
    }
}

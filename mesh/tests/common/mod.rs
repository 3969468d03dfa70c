//! What the mesh's integration tests share: message kinds, roles, times,
//! and an agent with the two roles defined.
#![allow(dead_code, clippy::unwrap_used)]

use securemesh::{Config, DefaultAgent, MessageKind, Permissions, Role};
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

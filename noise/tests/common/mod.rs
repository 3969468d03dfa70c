//! Shared helpers for the Noise integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::Secret;
use securemesh_noise::{Builder, HandshakeState, Protocol, Role};

/// A deterministic, seedable test RNG (xorshift64*). Not for production.
pub struct TestRng(pub u64);

impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        Ok(x.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for TestRng {}

impl TestRng {
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        rand_core::TryRng::try_fill_bytes(self, &mut out).unwrap();
        out
    }
}

/// Every name of the protocols we test broadly: each base pattern, and each
/// PSK position valid for it, plus two multi-PSK names.
pub fn protocol_names(suite: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in securemesh_noise::pattern_names() {
        out.push(format!("Noise_{p}_{suite}"));
        let n = Protocol::parse(&format!("Noise_{p}_{suite}")).unwrap().pattern().messages().len();
        for k in 0..=n {
            out.push(format!("Noise_{p}psk{k}_{suite}"));
        }
    }
    out.push(format!("Noise_XXpsk0+psk3_{suite}"));
    out.push(format!("Noise_IKpsk1+psk2_{suite}"));
    out
}

/// Static keys and PSKs for both parties of `protocol`.
pub struct Keys {
    pub i_s: [u8; 32],
    pub r_s: [u8; 32],
    pub psks: [[u8; 32]; 5],
    pub prologue: Vec<u8>,
}

impl Keys {
    pub fn new(rng: &mut TestRng) -> Self {
        Keys {
            i_s: rng.bytes(),
            r_s: rng.bytes(),
            psks: [rng.bytes(), rng.bytes(), rng.bytes(), rng.bytes(), rng.bytes()],
            prologue: rng.bytes::<13>().to_vec(),
        }
    }
}

pub fn public(s: &[u8; 32]) -> [u8; 32] {
    use securemesh_core::crypto::{Dh, X25519};
    X25519::public_key(&Secret::new(*s))
}

/// Our handshake for `role` with exactly the keys the pattern needs.
pub fn ours(p: &Protocol, role: Role, k: &Keys) -> HandshakeState {
    builder(p, role, k).build(role).unwrap()
}

/// The builder of [`ours`], to add more before building.
pub fn builder<'a>(p: &Protocol, role: Role, k: &'a Keys) -> Builder<'a> {
    let hp = p.pattern();
    let initiator = role == Role::Initiator;
    let (my_s, their_s) = if initiator { (k.i_s, k.r_s) } else { (k.r_s, k.i_s) };
    let needs_s = if initiator { hp.initiator_has_static() } else { hp.responder_has_static() };
    let their_pre = if initiator { hp.pre_responder() } else { hp.pre_initiator() };
    let mut b = Builder::new(p).prologue(&k.prologue);
    if needs_s {
        b = b.local_static(Secret::new(my_s));
    }
    if their_pre.s {
        b = b.remote_static(public(&their_s));
    }
    for n in 0..5u8 {
        if p.has_psk(n) {
            b = b.psk(n, Secret::new(k.psks[n as usize]));
        }
    }
    b
}

/// Run every message of `p` between two of our parties built by [`ours`],
/// accepting each remote static key as soon as it is read; `payload(m)` is
/// sent in message `m`. Returns (initiator, responder), both complete, after
/// checking that every payload arrived and both handshake hashes agree.
pub fn complete_handshake(
    p: &Protocol,
    k: &Keys,
    rng: &mut TestRng,
    payload: impl Fn(usize) -> Vec<u8>,
) -> (HandshakeState, HandshakeState) {
    let (mut i, mut r) = (ours(p, Role::Initiator, k), ours(p, Role::Responder, k));
    let (mut msg, mut pl) = (vec![0u8; 65535], vec![0u8; 65535]);
    for m in 0..p.pattern().messages().len() {
        let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let sent = payload(m);
        let n = w.write_message(&sent, &mut msg, rng).unwrap();
        let got = rd.read_message(&msg[..n], &mut pl).unwrap();
        assert_eq!(&pl[..got], &sent[..], "{} message {m}", p.name());
        if rd.remote_static_pending() {
            rd.accept_remote_static();
        }
        assert_eq!(w.handshake_hash(), rd.handshake_hash(), "{} message {m}", p.name());
    }
    (i, r)
}

/// A completed session of the protocol `name` (keys and ephemerals drawn
/// from `seed`): (initiator's transport, responder's transport).
pub fn transports(name: &str, seed: u64) -> (securemesh_noise::Transport, securemesh_noise::Transport) {
    let p = Protocol::parse(name).unwrap();
    let mut rng = TestRng(seed);
    let k = Keys::new(&mut rng);
    let (i, r) = complete_handshake(&p, &k, &mut rng, |_| Vec::new());
    (i.finish().unwrap(), r.finish().unwrap())
}

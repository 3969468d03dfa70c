//! Interoperability with snow (an independent Noise implementation), both
//! directions, for every pattern and PSK placement snow supports, with
//! transport messages and rekey both ways.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Keys, TestRng, ours, protocol_names, public};
use securemesh_noise::{HandshakeState, Protocol, Role};

fn snow_party(name: &str, p: &Protocol, role: Role, k: &Keys) -> snow::HandshakeState {
    let hp = p.pattern();
    let initiator = role == Role::Initiator;
    let (my_s, their_s) = if initiator { (k.i_s, k.r_s) } else { (k.r_s, k.i_s) };
    let needs_s = if initiator { hp.initiator_has_static() } else { hp.responder_has_static() };
    let their_pre = if initiator { hp.pre_responder() } else { hp.pre_initiator() };
    let their_pub = public(&their_s);
    let mut b = snow::Builder::new(name.parse().unwrap()).prologue(&k.prologue).unwrap();
    if needs_s {
        b = b.local_private_key(&my_s).unwrap();
    }
    if their_pre.s {
        b = b.remote_public_key(&their_pub).unwrap();
    }
    for n in 0..5u8 {
        if p.has_psk(n) {
            b = b.psk(n, &k.psks[n as usize]).unwrap();
        }
    }
    if initiator { b.build_initiator().unwrap() } else { b.build_responder().unwrap() }
}

// With the `hfs` feature our HandshakeState holds the peer's KEM public key
// (up to 1568 bytes); boxing it here would only hide that.
#[allow(clippy::large_enum_variant)]
enum Party {
    Ours(HandshakeState),
    Snow(snow::HandshakeState),
}

impl Party {
    fn write(&mut self, payload: &[u8], out: &mut [u8], rng: &mut TestRng) -> usize {
        match self {
            Party::Ours(h) => h.write_message(payload, out, rng).unwrap(),
            Party::Snow(h) => h.write_message(payload, out).unwrap(),
        }
    }
    fn read(&mut self, msg: &[u8], out: &mut [u8]) -> usize {
        match self {
            Party::Ours(h) => {
                let n = h.read_message(msg, out).unwrap();
                if h.remote_static_pending() {
                    h.accept_remote_static();
                }
                n
            }
            Party::Snow(h) => h.read_message(msg, out).unwrap(),
        }
    }
    fn hash(&self) -> Vec<u8> {
        match self {
            Party::Ours(h) => h.handshake_hash().to_vec(),
            Party::Snow(h) => h.get_handshake_hash().to_vec(),
        }
    }
}

fn run(name: &str, ours_initiates: bool, rng: &mut TestRng) {
    let p = Protocol::parse(name).unwrap();
    let k = Keys::new(rng);
    let (mut i, mut r) = if ours_initiates {
        (Party::Ours(ours(&p, Role::Initiator, &k)), Party::Snow(snow_party(name, &p, Role::Responder, &k)))
    } else {
        (Party::Snow(snow_party(name, &p, Role::Initiator, &k)), Party::Ours(ours(&p, Role::Responder, &k)))
    };
    let (mut msg, mut pl) = (vec![0u8; 65535], vec![0u8; 65535]);
    let messages = p.pattern().messages().len();
    for m in 0..messages {
        let payload = format!("{name} message {m}");
        let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let n = w.write(payload.as_bytes(), &mut msg, rng);
        let got = rd.read(&msg[..n], &mut pl);
        assert_eq!(&pl[..got], payload.as_bytes(), "{name} message {m}");
    }
    assert_eq!(i.hash(), r.hash(), "{name}: handshake hash");
    let one_way = p.pattern().is_one_way();
    let (ours_hs, snow_hs) = match (i, r) {
        (Party::Ours(o), Party::Snow(s)) | (Party::Snow(s), Party::Ours(o)) => (o, s),
        _ => unreachable!(),
    };
    let ours_is_initiator = ours_hs.is_initiator();
    let mut ot = ours_hs.finish().unwrap();
    let mut st = snow_hs.into_transport_mode().unwrap();
    for round in 0..3 {
        let payload = vec![round as u8; 100 * round + 1];
        // ours -> snow (if this direction exists)
        if !one_way || ours_is_initiator {
            let n = ot.write_message(&payload, &mut msg).unwrap();
            let got = st.read_message(&msg[..n], &mut pl).unwrap();
            assert_eq!(&pl[..got], &payload[..], "{name} transport ours->snow");
        }
        if !one_way || !ours_is_initiator {
            let n = st.write_message(&payload, &mut msg).unwrap();
            let got = ot.read_message(&msg[..n], &mut pl).unwrap();
            assert_eq!(&pl[..got], &payload[..], "{name} transport snow->ours");
        }
        if round == 1 && !one_way {
            ot.rekey_outgoing().unwrap();
            st.rekey_incoming();
            st.rekey_outgoing();
            ot.rekey_incoming().unwrap();
        }
    }
}

fn suite(suite: &str) {
    let mut rng = TestRng(0x5eed_0000 ^ suite.len() as u64);
    let names = protocol_names(suite);
    for name in &names {
        run(name, true, &mut rng);
        run(name, false, &mut rng);
    }
    assert!(names.len() > 150, "{}", names.len());
}

#[test]
fn snow_25519_chachapoly_sha256() {
    suite("25519_ChaChaPoly_SHA256");
}

#[test]
fn snow_25519_chachapoly_sha512() {
    suite("25519_ChaChaPoly_SHA512");
}

#[cfg(all(feature = "aes-gcm", feature = "blake2"))]
#[test]
fn snow_25519_aesgcm_blake2s_and_blake2b() {
    suite("25519_AESGCM_BLAKE2s");
    suite("25519_ChaChaPoly_BLAKE2b");
}

//! One operation repeated `n` times, for instruction counting under
//! callgrind (`noise/benches/instructions.sh`): instructions per operation
//! are `(count(n) - count(0)) / n`, deterministic where wall time on a
//! shared machine is not. The same operations as `benches/noise.rs`.
//!
//! `cargo run --release -p securemesh-noise --example noise_cost -- <op> <n>` with
//! `<op>` one of `x25519-dh`, `x25519-base`, `{ours,snow}-{XX,IK,NN,XXpsk3}`,
//! `{ours,snow,raw}-transport-{64,1024,16384,65519}`; with `--features hfs`
//! also `ours-XXhfs` (ML-KEM-768), `ours-XXhfs1024` and
//! `mlkem768-{keygen,encaps,decaps}`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::Secret;
use securemesh_core::crypto::{Aead, ChaChaPoly, Dh, X25519};
use securemesh_core::testing::TestRng;
use securemesh_noise::{Builder, Protocol, Role};
use std::hint::black_box;

fn name(short: &str) -> String {
    match short.strip_suffix("1024") {
        Some(p) => format!("Noise_{p}_25519+MLKEM1024_ChaChaPoly_SHA256"),
        None if short.ends_with("hfs") => format!("Noise_{short}_25519+MLKEM768_ChaChaPoly_SHA256"),
        None => format!("Noise_{short}_25519_ChaChaPoly_SHA256"),
    }
}

fn ours(p: &Protocol, role: Role) -> securemesh_noise::HandshakeState {
    let hp = p.pattern();
    let init = role == Role::Initiator;
    let mut b = Builder::new(p);
    if (init && hp.initiator_has_static()) || (!init && hp.responder_has_static()) {
        b = b.local_static(Secret::new(if init { [0x11; 32] } else { [0x22; 32] }));
    }
    if init && hp.pre_responder().s {
        b = b.remote_static(X25519::public_key(&Secret::new([0x22; 32])));
    }
    if p.has_psk(3) {
        b = b.psk(3, Secret::new([0x33; 32]));
    }
    b.build(role).unwrap()
}

fn ours_handshake(
    p: &Protocol,
    rng: &mut TestRng,
) -> (securemesh_noise::Transport, securemesh_noise::Transport) {
    let (mut i, mut r) = (ours(p, Role::Initiator), ours(p, Role::Responder));
    // Room for hfs messages (ML-KEM-1024: 1600 and 1704 bytes).
    let (mut m, mut pl) = ([0u8; 2048], [0u8; 2048]);
    for k in 0..p.pattern().messages().len() {
        let (w, rd) = if k % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let n = w.write_message(&[], &mut m, rng).unwrap();
        rd.read_message(&m[..n], &mut pl).unwrap();
        rd.accept_remote_static();
    }
    (i.finish().unwrap(), r.finish().unwrap())
}

fn snow_handshake(p: &Protocol, short: &str) -> (snow::TransportState, snow::TransportState) {
    let hp = p.pattern();
    let (i_s, r_s, psk) = ([0x11u8; 32], [0x22u8; 32], [0x33u8; 32]);
    let rs = X25519::public_key(&Secret::new(r_s));
    let mk = |init: bool| {
        let mut b = snow::Builder::new(name(short).parse().unwrap());
        if (init && hp.initiator_has_static()) || (!init && hp.responder_has_static()) {
            b = b.local_private_key(if init { &i_s } else { &r_s }).unwrap();
        }
        if init && hp.pre_responder().s {
            b = b.remote_public_key(&rs).unwrap();
        }
        if p.has_psk(3) {
            b = b.psk(3, &psk).unwrap();
        }
        if init { b.build_initiator().unwrap() } else { b.build_responder().unwrap() }
    };
    let (mut i, mut r) = (mk(true), mk(false));
    let (mut m, mut pl) = ([0u8; 256], [0u8; 256]);
    for k in 0..p.pattern().messages().len() {
        let (w, rd) = if k % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let n = w.write_message(&[], &mut m).unwrap();
        rd.read_message(&m[..n], &mut pl).unwrap();
    }
    (i.into_transport_mode().unwrap(), r.into_transport_mode().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map(String::as_str).unwrap_or("x25519-dh");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = TestRng::new(1);
    let (who, what) = op.split_once('-').unwrap();
    // Transport setup happens before the loop (counted in n = 0 too).
    let nn = Protocol::parse(&name("NN")).unwrap();
    let size = what.strip_prefix("transport-").and_then(|s| s.parse::<usize>().ok());
    let payload = vec![0xa5u8; size.unwrap_or(0)];
    let (mut msg, mut out) = (vec![0u8; 65535], vec![0u8; 65535]);
    match (who, size) {
        ("x25519", _) if what == "dh" => {
            let (a, b) = (Secret::new([0x41u8; 32]), X25519::public_key(&Secret::new([0x42u8; 32])));
            for _ in 0..n {
                black_box(X25519::dh(black_box(&a), black_box(&b)));
            }
        }
        ("x25519", _) => {
            let a = Secret::new([0x41u8; 32]);
            for _ in 0..n {
                black_box(X25519::public_key(black_box(&a)));
            }
        }
        ("ours", Some(_)) => {
            let (mut a, mut b) = ours_handshake(&nn, &mut rng);
            for _ in 0..n {
                let k = a.write_message(&payload, &mut msg).unwrap();
                black_box(b.read_message(&msg[..k], &mut out).unwrap());
            }
        }
        ("snow", Some(_)) => {
            let (mut a, mut b) = snow_handshake(&nn, "NN");
            for _ in 0..n {
                let k = a.write_message(&payload, &mut msg).unwrap();
                black_box(b.read_message(&msg[..k], &mut out).unwrap());
            }
        }
        ("raw", Some(s)) => {
            let key = Secret::new([5u8; 32]);
            for i in 0..n {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
                msg[..s].copy_from_slice(&payload);
                let k = ChaChaPoly::seal(&key, &nonce, &[], &mut msg, s).unwrap();
                black_box(ChaChaPoly::open(&key, &nonce, &[], &mut msg[..k]).unwrap());
            }
        }
        #[cfg(feature = "hfs")]
        ("mlkem768", _) => {
            use securemesh_core::crypto::{Kem, MlKem768};
            let (dk, ek) = MlKem768::generate(&mut rng);
            let (ct, _) = MlKem768::encapsulate(&ek, &mut rng).unwrap();
            for _ in 0..n {
                match what {
                    "keygen" => drop(black_box(MlKem768::generate(&mut rng))),
                    "encaps" => drop(black_box(MlKem768::encapsulate(&ek, &mut rng).unwrap())),
                    _ => drop(black_box(MlKem768::decapsulate(&dk, &ct).unwrap())),
                }
            }
        }
        ("ours", None) => {
            let p = Protocol::parse(&name(what)).unwrap();
            for _ in 0..n {
                black_box(ours_handshake(&p, &mut rng));
            }
        }
        ("snow", None) => {
            let p = Protocol::parse(&name(what)).unwrap();
            for _ in 0..n {
                black_box(snow_handshake(&p, what));
            }
        }
        _ => panic!("unknown op {op}"),
    }
}

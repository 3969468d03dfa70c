//! Untrusted bytes into `HandshakeState::read_message`.
//!
//! Input: `situation u8 | message`. The first byte (modulo 7) selects one
//! of `securemesh_fuzz::noise::SITUATIONS`: XX responder before message 0,
//! XX initiator before message 1, XX responder before message 2, IK and NK
//! responder before message 0, IK and NK initiator before message 1. The
//! reader is brought there by an honest, deterministic handshake (fixed
//! static and ephemeral keys), so the genuine message the honest peer
//! writes at that point is known. For speed only the reader is built
//! before the read (it plays its side against the recorded genuine
//! messages); the honest peer is rebuilt when the read succeeds. The rest
//! of the input is read as that message, with a 65535-byte payload buffer
//! (so `BufferTooSmall` cannot happen).
//!
//! Properties checked:
//! - nothing panics;
//! - on `Err`, the error is `Decrypt`, the state is poisoned, the payload
//!   buffer is all zero, and every further call (`read_message` of the
//!   genuine message, `write_message`, `finish`) returns `Poisoned`, still
//!   leaving the buffer zero;
//! - on `Ok(n)`, `n` is the input length minus the message overhead and
//!   nothing beyond `payload[..n]` was written;
//! - keyed messages (every situation but XX message 0: a cipher key is set
//!   before the payload, and everything before the payload is in `h`, its
//!   associated data): `Ok` if and only if the input is the genuine message
//!   byte for byte (a mutation can only pass by forging a Poly1305 tag);
//!   then the payload is the genuine one, the handshake hashes of both
//!   parties agree, a static key carried by the message waits for
//!   `accept_remote_static` (`write_message` is refused meanwhile) and is
//!   the peer's, and the handshake completes into working transports;
//! - XX message 0 (`-> e`, no key): `Ok` exactly for inputs of at least 32
//!   bytes, the payload is the plaintext after the ephemeral key, and
//!   `remote_ephemeral` is the first 32 bytes. Unless the input is the
//!   genuine message (then the handshake completes), the honest initiator
//!   refuses the responder's answer (message 1) with `Decrypt`: tampering
//!   with the unauthenticated first message is caught one message later.
//!
//! ## hfs (KEM hybrid forward secrecy)
//!
//! A selector byte of `0xf0` or more picks one of [`HFS`]: the XXhfs
//! responder before message 0 (`-> e, e1`: ephemeral and ML-KEM-768 key in
//! clear), the XXhfs initiator before message 1 (`<- e, ee, ekem1, s, es`:
//! the KEM ciphertext sealed), the XXhfs responder before message 2 and the
//! NKhfs responder before message 0 (`-> e, es, e1`: the KEM key sealed), on
//! `Noise_{XX,NK}hfs_25519+MLKEM768_ChaChaPoly_SHA256` with fixed keys and
//! KEM randomness. `0xf0..=0xf3`: the rest of the input is the message;
//! `0xf4..=0xf7`: the genuine message with the edits `pos u16 BE | xor u8`
//! the rest of the input lists (none: the genuine message). These
//! situations need securemesh-noise's feature `hfs`; without it (the name
//! does not parse) the input is ignored. Properties: as above (typed
//! `Decrypt`, poisoned, `h` and payload buffer untouched, `Poisoned`
//! after); keyed situations accept only the genuine message, then complete
//! into transports; the unkeyed XXhfs message 0 is accepted from 1216
//! bytes on with the cleartext payload after the KEM key, and a changed
//! message 0 makes the responder's answer either refused at its write
//! (`InvalidKemKey`: the peer's ML-KEM key fails the FIPS 203 check, the
//! responder's state unchanged) or refused by the honest initiator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_fuzz::noise::{
    HANDSHAKE_PAYLOADS, Pair, SITUATIONS, all_zero, drive, exchange, initiator_public, reader_at,
    responder_public, rng, transcript,
};
use securemesh_noise::{DH_LEN, Error, HandshakeState, MAX_MESSAGE_LEN, Role};

/// Put `reader` in place of the reader of message `index` in `pair`.
fn install(pair: &mut Pair, index: usize, reader: HandshakeState) {
    *pair.reader(index) = reader;
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else { return };
    if selector >= 0xf0 {
        hfs::run(selector, message);
        return;
    }
    let situation = SITUATIONS[usize::from(selector) % SITUATIONS.len()];
    let index = situation.index;
    let pattern = situation.pattern;
    let genuine = &transcript(pattern)[index];
    let overhead = genuine.len() - HANDSHAKE_PAYLOADS[index].len();
    let is_genuine = message == genuine.as_slice();
    let mut reader = reader_at(&situation);

    let mut payload = vec![0u8; MAX_MESSAGE_LEN];
    match reader.read_message(message, &mut payload) {
        Err(e) => {
            assert_eq!(e, Error::Decrypt, "read_message failed with {e:?}");
            assert!(!is_genuine, "{situation:?}: the genuine message was refused");
            if !situation.keyed {
                assert!(message.len() < overhead, "unkeyed message of {} bytes refused", message.len());
            }
            assert!(reader.is_poisoned(), "a failed read did not poison the handshake");
            assert!(all_zero(&payload), "payload buffer not zero after a failed read");
            // Poisoned for good.
            assert_eq!(reader.read_message(genuine, &mut payload), Err(Error::Poisoned));
            let mut out = vec![0u8; MAX_MESSAGE_LEN];
            assert_eq!(reader.write_message(b"x", &mut out, &mut rng()), Err(Error::Poisoned));
            assert!(all_zero(&payload), "payload buffer not zero after reading while poisoned");
            assert!(all_zero(&out));
            assert_eq!(reader.finish().map(|_| ()), Err(Error::Poisoned));
        }
        Ok(n) => {
            assert!(message.len() >= overhead, "accepted a message shorter than its overhead");
            assert_eq!(n, message.len() - overhead, "payload length");
            assert!(all_zero(&payload[n..]), "read_message wrote beyond the payload");
            assert!(!reader.is_poisoned());
            if situation.keyed {
                assert!(is_genuine, "{situation:?}: accepted a message that is not the genuine one");
            } else {
                assert_eq!(&payload[..n], &message[overhead..], "unkeyed payload is the plaintext");
                assert_eq!(reader.remote_ephemeral().map(|k| &k[..]), Some(&message[..DH_LEN]));
            }
            if situation.carries_static {
                assert!(reader.remote_static_pending(), "static key read but not pending");
                let expected = if situation.reader_role() == Role::Initiator {
                    responder_public()
                } else {
                    initiator_public()
                };
                assert_eq!(reader.remote_static(), Some(&expected));
                let mut out = vec![0u8; MAX_MESSAGE_LEN];
                assert_eq!(
                    reader.write_message(b"", &mut out, &mut rng()),
                    Err(Error::RemoteStaticPending),
                    "went on before the remote static key was accepted"
                );
                reader.accept_remote_static();
            } else {
                assert!(!reader.remote_static_pending());
            }

            // The honest peer, right after writing the genuine message.
            let mut step = drive(pattern, index);
            assert_eq!(&step.genuine, genuine);
            install(&mut step.pair, index, reader);
            if is_genuine {
                assert_eq!(&payload[..n], HANDSHAKE_PAYLOADS[index]);
                let (writer, reader) = step.pair.parties(index);
                assert_eq!(reader.handshake_hash(), writer.handshake_hash(), "handshake hashes differ");
                step.pair.run(index + 1, pattern.messages());
                let (mut i, mut r) = step.pair.finish(pattern);
                exchange(&mut i, &mut r);
            } else {
                // Only the unauthenticated XX message 0 gets here. The
                // responder answers; the honest initiator must refuse.
                assert_eq!(index, 0);
                let (initiator, responder) = step.pair.parties(index);
                assert_ne!(initiator.handshake_hash(), responder.handshake_hash());
                let mut out = vec![0u8; MAX_MESSAGE_LEN];
                let m = responder
                    .write_message(HANDSHAKE_PAYLOADS[1], &mut out, &mut rng())
                    .expect("responder answers a well-sized message 0");
                let mut p = vec![0u8; MAX_MESSAGE_LEN];
                assert_eq!(
                    initiator.read_message(&out[..m], &mut p),
                    Err(Error::Decrypt),
                    "the initiator accepted an answer to a tampered message 0"
                );
                assert!(initiator.is_poisoned() && all_zero(&p));
            }
        }
    }
});

mod hfs {
    use securemesh_core::Secret;
    use securemesh_core::testing::ReplayRng;
    use securemesh_fuzz::noise::all_zero;
    use securemesh_noise::{Builder, Error, HandshakeState, MAX_MESSAGE_LEN, Protocol, Role};

    /// One hfs situation: the protocol and the message read.
    #[derive(Debug)]
    pub struct Situation {
        name: &'static str,
        index: usize,
        /// A cipher key is set before the payload: only the genuine
        /// message can pass.
        keyed: bool,
    }

    const XX: &str = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256";
    const NK: &str = "Noise_NKhfs_25519+MLKEM768_ChaChaPoly_SHA256";
    pub const HFS: [Situation; 4] = [
        Situation { name: XX, index: 0, keyed: false },
        Situation { name: XX, index: 1, keyed: true },
        Situation { name: XX, index: 2, keyed: true },
        Situation { name: NK, index: 0, keyed: true },
    ];
    const PAYLOADS: [&[u8]; 3] = [b"hfs zero", b"hfs one", b"hfs two"];
    /// ML-KEM `d || z` of the initiator's e1 key, and the responder's `m`.
    const KEM_SEED: [u8; 64] = [0x5a; 64];
    const KEM_M: [u8; 32] = [0x6b; 32];
    const I_S: [u8; 32] = [0x11; 32];
    const R_S: [u8; 32] = [0x22; 32];

    fn party(p: &Protocol, role: Role) -> HandshakeState {
        let init = role == Role::Initiator;
        let hp = p.pattern();
        let mut b =
            Builder::new(p).dangerous_with_ephemeral(Secret::new(if init { [0x33; 32] } else { [0x44; 32] }));
        if (init && hp.initiator_has_static()) || (!init && hp.responder_has_static()) {
            b = b.local_static(Secret::new(if init { I_S } else { R_S }));
        }
        if init && hp.pre_responder().s {
            b = b.remote_static(securemesh_noise::Keypair::from_secret(Secret::new(R_S)).public());
        }
        b.build(role).expect("hfs party")
    }

    /// The KEM randomness of whoever writes message `m`.
    fn rng(m: usize) -> ReplayRng<'static> {
        ReplayRng::new(if m % 2 == 0 { &KEM_SEED } else { &KEM_M })
    }

    /// (initiator, responder), honest up to (not including) the read of
    /// message `index`, and the genuine message `index`.
    fn drive(p: &Protocol, index: usize) -> (HandshakeState, HandshakeState, Vec<u8>) {
        let (mut i, mut r) = (party(p, Role::Initiator), party(p, Role::Responder));
        let (mut buf, mut pl) = (vec![0u8; MAX_MESSAGE_LEN], vec![0u8; MAX_MESSAGE_LEN]);
        for m in 0..=index {
            let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
            let n = w.write_message(PAYLOADS[m], &mut buf, &mut rng(m)).expect("honest write");
            if m == index {
                return (i, r, buf[..n].to_vec());
            }
            rd.read_message(&buf[..n], &mut pl).expect("honest read");
            rd.accept_remote_static();
        }
        unreachable!("index is below the message count")
    }

    /// Run the rest of the handshake from message `next`, then a transport
    /// message each way.
    fn complete(p: &Protocol, mut i: HandshakeState, mut r: HandshakeState, next: usize) {
        let (mut buf, mut pl) = (vec![0u8; MAX_MESSAGE_LEN], vec![0u8; MAX_MESSAGE_LEN]);
        for m in next..p.pattern().messages().len() {
            let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
            let n = w.write_message(PAYLOADS[m], &mut buf, &mut rng(m)).expect("honest write");
            let k = rd.read_message(&buf[..n], &mut pl).expect("honest read");
            assert_eq!(&pl[..k], PAYLOADS[m]);
            rd.accept_remote_static();
        }
        assert_eq!(i.handshake_hash(), r.handshake_hash());
        let (mut ti, mut tr) = (i.finish().expect("finish"), r.finish().expect("finish"));
        let n = ti.write_message(b"ping", &mut buf).expect("transport");
        assert_eq!(tr.read_message(&buf[..n], &mut pl), Ok(4));
        let n = tr.write_message(b"pong", &mut buf).expect("transport");
        assert_eq!(ti.read_message(&buf[..n], &mut pl), Ok(4));
    }

    pub fn run(selector: u8, input: &[u8]) {
        let situation = &HFS[usize::from(selector & 3)];
        // Without the feature `hfs` the name does not parse: nothing to do.
        let Ok(p) = Protocol::parse(situation.name) else { return };
        let index = situation.index;
        let (mut i, mut r, genuine) = drive(&p, index);
        let mut message = genuine.clone();
        if selector & 4 == 0 {
            message = input.to_vec();
        } else {
            for edit in input.chunks_exact(3) {
                let pos = usize::from(u16::from_be_bytes([edit[0], edit[1]]));
                if let Some(b) = message.get_mut(pos % genuine.len()) {
                    *b ^= edit[2];
                }
            }
        }
        let is_genuine = message == genuine;
        let overhead = genuine.len() - PAYLOADS[index].len();
        let reader = if index % 2 == 0 { &mut r } else { &mut i };
        let h_before = reader.handshake_hash().to_vec();
        let mut payload = vec![0u8; MAX_MESSAGE_LEN];
        match reader.read_message(&message, &mut payload) {
            Err(e) => {
                assert_eq!(e, Error::Decrypt, "{situation:?}: read failed with {e:?}");
                assert!(!is_genuine, "{situation:?}: the genuine message was refused");
                if !situation.keyed {
                    assert!(message.len() < overhead, "unkeyed message of {} bytes refused", message.len());
                }
                assert!(reader.is_poisoned());
                assert_eq!(reader.handshake_hash(), &h_before[..], "a failed read changed h");
                assert!(all_zero(&payload), "payload buffer not zero after a failed read");
                assert_eq!(reader.read_message(&genuine, &mut payload), Err(Error::Poisoned));
                assert!(all_zero(&payload));
            }
            Ok(n) => {
                assert_eq!(n, message.len() - overhead, "payload length");
                assert!(all_zero(&payload[n..]), "read_message wrote beyond the payload");
                if situation.keyed {
                    assert!(is_genuine, "{situation:?}: accepted a message that is not the genuine one");
                    assert_eq!(&payload[..n], PAYLOADS[index]);
                    reader.accept_remote_static();
                    complete(&p, i, r, index + 1);
                    return;
                }
                // XXhfs message 0 (`e, e1` in clear, payload in clear).
                assert_eq!(&payload[..n], &message[overhead..]);
                assert_eq!(r.remote_ephemeral().map(|k| &k[..]), Some(&message[..32]));
                if is_genuine {
                    complete(&p, i, r, 1);
                    return;
                }
                let mut out = vec![0u8; MAX_MESSAGE_LEN];
                let h = r.handshake_hash().to_vec();
                match r.write_message(PAYLOADS[1], &mut out, &mut rng(1)) {
                    Err(Error::InvalidKemKey) => {
                        // Refused at the write: nothing changed, and again.
                        assert_eq!(r.handshake_hash(), &h[..]);
                        assert!(!r.is_poisoned());
                        let again = r.write_message(PAYLOADS[1], &mut out, &mut rng(1));
                        assert_eq!(again, Err(Error::InvalidKemKey));
                    }
                    Ok(m) => {
                        let mut pl = vec![0u8; MAX_MESSAGE_LEN];
                        assert_eq!(
                            i.read_message(&out[..m], &mut pl),
                            Err(Error::Decrypt),
                            "the initiator accepted an answer to a changed message 0"
                        );
                        assert!(i.is_poisoned() && all_zero(&pl));
                    }
                    Err(e) => panic!("responder's answer failed with {e:?}"),
                }
            }
        }
    }
}

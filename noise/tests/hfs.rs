//! The `hfs` modifier (KEM-based hybrid forward secrecy): token placement
//! for every pattern, a complete handshake for every `hfs` protocol (each
//! KEM, with and without PSKs), message sizes, and tampered `e1` / `ekem1`
//! tokens refused with `Decrypt`, leaving the state as it was (poisoned).
//! Our deterministic vectors (`test-vectors/noise/securemesh-hfs.json`) are
//! written by the ignored test `write_securemesh_hfs_vectors`.
#![cfg(feature = "hfs")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Keys, TestRng, complete_handshake, ours};
use securemesh_noise::{
    DH_LEN, Error, HandshakeState, KemChoice, NameError, Protocol, Role, TAG_LEN, Token, pattern_names,
};

fn kems() -> Vec<KemChoice> {
    #[allow(unused_mut)]
    let mut v = vec![KemChoice::MlKem768, KemChoice::MlKem1024];
    #[cfg(feature = "hfs-x-wing")]
    v.push(KemChoice::XWing);
    v
}

/// Every interactive base pattern (the one-way N, K, X have no `ee`).
fn interactive() -> impl Iterator<Item = &'static str> {
    pattern_names().filter(|p| p.len() > 1)
}

fn hfs_name(pattern: &str, modifiers: &str, kem: KemChoice) -> String {
    format!("Noise_{pattern}{modifiers}_25519+{}_ChaChaPoly_SHA256", kem.name())
}

/// Every `hfs` protocol name we test: each interactive pattern with each
/// KEM, and PSK placements on a few.
fn hfs_names() -> Vec<String> {
    let mut out = Vec::new();
    for kem in kems() {
        for p in interactive() {
            out.push(hfs_name(p, "hfs", kem));
        }
        for (p, m) in [("XX", "hfs+psk3"), ("NN", "psk0+hfs"), ("IK", "psk1+hfs"), ("KK", "hfs+psk0+psk2")] {
            out.push(hfs_name(p, m, kem));
        }
    }
    out
}

/// Where `t` is: (message, position).
fn find(p: &Protocol, t: Token) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (m, mp) in p.pattern().messages().iter().enumerate() {
        for (i, x) in mp.tokens().iter().enumerate() {
            if *x == t {
                out.push((m, i));
            }
        }
    }
    out
}

#[test]
fn spec_table_patterns() {
    use Token::{E, E1, Ee, Ekem1, Es, S, Se, Ss};
    // HFS §5, the rule's result for each pattern of the spec's table
    // (KK follows the rule: e1 after the message's DH).
    let table: [(&str, &[&[Token]]); 12] = [
        ("NN", &[&[E, E1], &[E, Ee, Ekem1]]),
        ("NK", &[&[E, Es, E1], &[E, Ee, Ekem1]]),
        ("NX", &[&[E, E1], &[E, Ee, Ekem1, S, Es]]),
        ("XN", &[&[E, E1], &[E, Ee, Ekem1], &[S, Se]]),
        ("XK", &[&[E, Es, E1], &[E, Ee, Ekem1], &[S, Se]]),
        ("XX", &[&[E, E1], &[E, Ee, Ekem1, S, Es], &[S, Se]]),
        ("KN", &[&[E, E1], &[E, Ee, Ekem1, Se]]),
        ("KK", &[&[E, Es, E1, Ss], &[E, Ee, Ekem1, Se]]),
        ("KX", &[&[E, E1], &[E, Ee, Ekem1, Se, S, Es]]),
        ("IN", &[&[E, E1, S], &[E, Ee, Ekem1, Se]]),
        ("IK", &[&[E, Es, E1, S, Ss], &[E, Ee, Ekem1, Se]]),
        ("IX", &[&[E, E1, S], &[E, Ee, Ekem1, Se, S, Es]]),
    ];
    for (name, messages) in table {
        let p = Protocol::parse(&hfs_name(name, "hfs", KemChoice::MlKem768)).unwrap();
        let got: Vec<&[Token]> = p.pattern().messages().iter().map(|m| m.tokens()).collect();
        assert_eq!(got, messages.to_vec(), "{name}hfs");
    }
}

/// The rule on all 35 interactive patterns: one `e1` in the first message
/// with an `e`, right after `e` or after that message's first DH; one
/// `ekem1` right after the first `ee`, in a later message of the other
/// party; nothing else changed.
#[test]
fn every_interactive_pattern_gets_e1_and_ekem1() {
    let mut count = 0;
    for p in interactive() {
        let base = Protocol::parse(&format!("Noise_{p}_25519_ChaChaPoly_SHA256")).unwrap();
        let hfs = Protocol::parse(&hfs_name(p, "hfs", KemChoice::MlKem768)).unwrap();
        assert_eq!(hfs.kem(), Some(KemChoice::MlKem768));
        assert_eq!(base.kem(), None);
        let (e1, ekem1) = (find(&hfs, Token::E1), find(&hfs, Token::Ekem1));
        assert_eq!((e1.len(), ekem1.len()), (1, 1), "{p}");
        let ((m1, i1), (m2, i2)) = (e1[0], ekem1[0]);
        assert!(m2 > m1 && (m2 - m1) % 2 == 1, "{p}: ekem1 must answer e1");
        let first_e = find(&base, Token::E)[0];
        assert_eq!(m1, first_e.0, "{p}");
        let msg = base.pattern().messages()[m1].tokens();
        let dh = msg.iter().position(|t| matches!(t, Token::Ee | Token::Es | Token::Se | Token::Ss));
        assert_eq!(i1, dh.map_or(first_e.1 + 1, |d| d + 1), "{p}");
        let ee = find(&base, Token::Ee)[0];
        assert_eq!((m2, i2), (ee.0, ee.1 + 1), "{p}");
        // Removing e1 and ekem1 gives the base pattern back.
        for (a, b) in base.pattern().messages().iter().zip(hfs.pattern().messages()) {
            let stripped: Vec<Token> =
                b.tokens().iter().copied().filter(|t| !matches!(t, Token::E1 | Token::Ekem1)).collect();
            assert_eq!(a.tokens(), &stripped[..], "{p}");
        }
        count += 1;
    }
    assert_eq!(count, 35);
}

#[test]
fn hfs_names_refused() {
    for (n, e) in [
        ("Noise_XXhfs_25519_ChaChaPoly_SHA256", NameError::InvalidHfs),
        ("Noise_XX_25519+MLKEM768_ChaChaPoly_SHA256", NameError::InvalidHfs),
        ("Noise_XXhfs+hfs_25519+MLKEM768_ChaChaPoly_SHA256", NameError::InvalidHfs),
        ("Noise_Nhfs_25519+MLKEM768_ChaChaPoly_SHA256", NameError::InvalidHfs),
        ("Noise_Xhfs_25519+MLKEM768_ChaChaPoly_SHA256", NameError::InvalidHfs),
        ("Noise_XXfallback+hfs_25519+MLKEM768_ChaChaPoly_SHA256", NameError::InvalidHfs),
        ("Noise_XXhfs+fallback_25519+MLKEM768_ChaChaPoly_SHA256", NameError::InvalidModifier),
        ("Noise_XXhfs_25519+Kyber1024_ChaChaPoly_SHA256", NameError::UnknownKem),
        ("Noise_XXhfs_25519+ML-KEM-768_ChaChaPoly_SHA256", NameError::UnknownKem),
        ("Noise_XXhfs_25519+_ChaChaPoly_SHA256", NameError::UnknownKem),
        ("Noise_XXhfs_448+MLKEM768_ChaChaPoly_SHA256", NameError::UnknownDh),
    ] {
        assert_eq!(Protocol::parse(n), Err(e), "{n}");
    }
}

/// Every hfs protocol completes with both KEMs; both sides agree on `h`
/// after each message; the transports work both ways; each message has the
/// length `next_message_len` announced, with the KEM key and ciphertext in
/// it (sealed once a key is set).
#[test]
fn every_hfs_protocol_completes() {
    let mut rng = TestRng(0x5eed_4f5a_0000_0011);
    let names = hfs_names();
    for name in &names {
        let p = Protocol::parse(name).unwrap();
        let kem = p.kem().unwrap();
        let k = Keys::new(&mut rng);
        let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
        let (mut msg, mut pl) = (vec![0u8; 65535], vec![0u8; 65535]);
        let mut sizes = Vec::new();
        for m in 0..p.pattern().messages().len() {
            let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
            let payload = vec![m as u8; 7];
            let expected = w.next_message_len(payload.len()).unwrap();
            let n = w.write_message(&payload, &mut msg, &mut rng).unwrap();
            assert_eq!(n, expected, "{name} message {m}");
            let got = rd.read_message(&msg[..n], &mut pl).unwrap();
            assert_eq!(&pl[..got], &payload[..]);
            if rd.remote_static_pending() {
                rd.accept_remote_static();
            }
            assert_eq!(w.handshake_hash(), rd.handshake_hash(), "{name} message {m}");
            sizes.push(n);
        }
        // e1 and ekem1 add the KEM key and ciphertext (plus a tag when sealed).
        let (m1, m2) = (find(&p, Token::E1)[0].0, find(&p, Token::Ekem1)[0].0);
        assert!(sizes[m1] >= kem.public_key_len() + DH_LEN, "{name}");
        assert!(sizes[m2] >= kem.ciphertext_len() + TAG_LEN + DH_LEN, "{name}");
        let (mut ti, mut tr) = (i.finish().unwrap(), r.finish().unwrap());
        let mut buf = [0u8; 64];
        let mut out = [0u8; 64];
        let n = ti.write_message(b"task", &mut buf).unwrap();
        assert_eq!(tr.read_message(&buf[..n], &mut out).unwrap(), 4);
        let n = tr.write_message(b"done", &mut buf).unwrap();
        assert_eq!(ti.read_message(&buf[..n], &mut out).unwrap(), 4);
    }
    assert_eq!(names.len(), kems().len() * (35 + 4));
}

/// The XXhfs message sizes with ML-KEM-768 and empty payloads: 32 + 1184,
/// 32 + (1088 + 16) + (32 + 16) + 16, (32 + 16) + 16; against XX's 32, 96, 64.
#[test]
fn xxhfs_sizes() {
    let p = Protocol::parse("Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256").unwrap();
    let mut rng = TestRng(0x0bad_cafe_1234_5678);
    let k = Keys::new(&mut rng);
    let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
    let mut sizes = Vec::new();
    let (mut msg, mut pl) = (vec![0u8; 65535], vec![0u8; 65535]);
    for m in 0..3 {
        let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
        let n = w.write_message(b"", &mut msg, &mut rng).unwrap();
        rd.read_message(&msg[..n], &mut pl).unwrap();
        rd.accept_remote_static();
        sizes.push(n);
    }
    let ek = KemChoice::MlKem768.public_key_len();
    let ct = KemChoice::MlKem768.ciphertext_len();
    assert_eq!(
        sizes,
        [DH_LEN + ek, DH_LEN + ct + TAG_LEN + DH_LEN + TAG_LEN + TAG_LEN, DH_LEN + 2 * TAG_LEN]
    );
    assert_eq!(sizes, [1216, 1200, 64]);
}

/// The state a failed read must leave as it was: it only gets poisoned (and,
/// as documented for fallback, keeps a peer ephemeral key it had not had).
fn snapshot(h: &HandshakeState) -> (Vec<u8>, bool, bool, Option<[u8; 32]>) {
    (h.handshake_hash().to_vec(), h.is_complete(), h.is_my_turn(), h.remote_static().copied())
}

/// Byte ranges of the `e1` (message of e1) and `ekem1` tokens on the wire.
fn token_ranges(p: &Protocol) -> [(usize, std::ops::Range<usize>); 2] {
    let kem = p.kem().unwrap();
    let psk_mode = p.pattern().uses_psk();
    let mut keyed = false;
    let mut out = Vec::new();
    for (m, mp) in p.pattern().messages().iter().enumerate() {
        let mut pos = 0;
        for t in mp.tokens() {
            let sealed = |n: usize| if keyed { n + TAG_LEN } else { n };
            match t {
                Token::E => {
                    pos += DH_LEN;
                    keyed |= psk_mode;
                }
                Token::S => pos += sealed(DH_LEN),
                Token::E1 => {
                    let n = sealed(kem.public_key_len());
                    out.push((m, pos..pos + n));
                    pos += n;
                }
                Token::Ekem1 => {
                    let n = sealed(kem.ciphertext_len());
                    out.push((m, pos..pos + n));
                    pos += n;
                    keyed = true;
                }
                _ => keyed = true,
            }
        }
    }
    [out[0].clone(), out[1].clone()]
}

/// A flipped byte in `e1` or `ekem1`: the read fails with `Decrypt` (at
/// once when the token or the rest of the message is authenticated, else
/// one message later), leaves the reader's state as it was but poisoned, and
/// no payload; an untampered run still completes afterwards.
#[test]
fn tampered_e1_and_ekem1_are_refused() {
    let mut rng = TestRng(0x7a3e_91d0_5bc2_0042);
    for name in hfs_names() {
        let p = Protocol::parse(&name).unwrap();
        let k = Keys::new(&mut rng);
        for (target, (tm, range)) in token_ranges(&p).into_iter().enumerate() {
            let flip = range.start + (rng.bytes::<2>()[0] as usize * 7919) % range.len();
            let (mut i, mut r) = (ours(&p, Role::Initiator, &k), ours(&p, Role::Responder, &k));
            let (mut msg, mut pl) = (vec![0u8; 65535], vec![0u8; 65535]);
            let mut refused = false;
            for m in 0..p.pattern().messages().len() {
                let (w, rd) = if m % 2 == 0 { (&mut i, &mut r) } else { (&mut r, &mut i) };
                let n = match w.write_message(b"payload", &mut msg, &mut rng) {
                    Ok(n) => n,
                    // The responder found the tampered (cleartext) e1 key
                    // fails the ML-KEM key check: nothing written.
                    Err(Error::InvalidKemKey) => {
                        assert_eq!(m, tm + 1, "{name}");
                        refused = true;
                        break;
                    }
                    Err(e) => panic!("{name} message {m}: {e:?}"),
                };
                if m == tm {
                    msg[flip] ^= 0x20;
                }
                let before = snapshot(rd);
                pl.fill(0);
                match rd.read_message(&msg[..n], &mut pl) {
                    Ok(_) => {
                        // Only a cleartext e1 (no key yet) is read without
                        // error; the tamper shows one message later.
                        assert!(m < tm || (m == tm && target == 0), "{name}: tampered message {m} accepted");
                        if rd.remote_static_pending() {
                            rd.accept_remote_static();
                        }
                    }
                    Err(e) => {
                        assert_eq!(e, Error::Decrypt, "{name} message {m}");
                        assert!(rd.is_poisoned());
                        assert_eq!(snapshot(rd), before, "{name}: a failed read changed the state");
                        assert!(pl[..n].iter().all(|&b| b == 0), "{name}: plaintext left behind");
                        assert_eq!(rd.read_message(&msg[..n], &mut pl), Err(Error::Poisoned));
                        refused = true;
                        break;
                    }
                }
            }
            assert!(refused, "{name}: tampering with token {target} went unnoticed");
        }
        // Untampered, the same keys complete.
        complete_handshake(&p, &k, &mut rng, |m| vec![m as u8; 3]);
    }
}

#[cfg(feature = "dangerous-testing")]
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `test-vectors/noise/securemesh-hfs.json`, our deterministic hfs
/// vectors in the Cacophony format plus two fields: `init_kem_ephemeral`,
/// the 64 bytes `d || z` the initiator's `e1` key is generated from (ML-KEM
/// `KeyGen_internal(d, z)`), and `resp_kem_randomness`, the 32 bytes `m` of
/// the responder's encapsulation (`Encaps_internal(ek, m)`). Every key and
/// seed comes from `TestRng` with fixed seeds. Run once:
///
/// `cargo test -p securemesh-noise --features hfs,dangerous-testing --test hfs -- --ignored`
#[cfg(feature = "dangerous-testing")]
#[test]
#[ignore = "writes the published vector file"]
fn write_securemesh_hfs_vectors() {
    use securemesh_core::testing::ReplayRng;

    let mut names: Vec<String> =
        ["NN", "NK", "NX", "XN", "XK", "XX", "KN", "KK", "KX", "IN", "IK", "IX", "XK1", "I1X1"]
            .iter()
            .map(|p| hfs_name(p, "hfs", KemChoice::MlKem768))
            .collect();
    names.push(hfs_name("XX", "hfs+psk3", KemChoice::MlKem768));
    names.push(hfs_name("NN", "psk0+hfs", KemChoice::MlKem768));
    names.push(hfs_name("XX", "hfs", KemChoice::MlKem1024));
    names.push(hfs_name("IK", "hfs", KemChoice::MlKem1024));
    names.push("Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA512".to_string());
    let prologue = b"securemesh hfs vectors".to_vec();
    let payloads: [&[u8]; 6] =
        [b"", b"hello from the responder", b"third", b"transport 1", b"transport 2", b"transport 3"];

    let mut out = String::from("{\n  \"vectors\": [\n");
    for (v, name) in names.iter().enumerate() {
        let p = Protocol::parse(name).unwrap();
        let mut rng = TestRng(0x4f53_2026_0000_0000 ^ ((v as u64 + 1) << 20));
        let (i_s, r_s, i_e, r_e): ([u8; 32], [u8; 32], [u8; 32], [u8; 32]) =
            (rng.bytes(), rng.bytes(), rng.bytes(), rng.bytes());
        let kem_seed: [u8; 64] = rng.bytes();
        let kem_m: [u8; 32] = rng.bytes();
        let psks: Vec<[u8; 32]> = (0..5).map(|_| rng.bytes()).collect();
        let k = Keys {
            i_s,
            r_s,
            psks: [psks[0], psks[1], psks[2], psks[3], psks[4]],
            prologue: prologue.clone(),
        };
        let hp = p.pattern();
        let (mut i, mut r) =
            (ours_with_e(&p, Role::Initiator, &k, i_e), ours_with_e(&p, Role::Responder, &k, r_e));
        let (mut irng, mut rrng) = (ReplayRng::new(&kem_seed), ReplayRng::new(&kem_m));
        let (mut msg, mut pl) = (vec![0u8; 65535], vec![0u8; 65535]);
        let mut messages = Vec::new();
        let hs = hp.messages().len();
        for (m, payload) in payloads.iter().enumerate().take(hs) {
            let (w, rd, wr) =
                if m % 2 == 0 { (&mut i, &mut r, &mut irng) } else { (&mut r, &mut i, &mut rrng) };
            let n = w.write_message(payload, &mut msg, wr).unwrap();
            rd.read_message(&msg[..n], &mut pl).unwrap();
            if rd.remote_static_pending() {
                rd.accept_remote_static();
            }
            messages.push((payload.to_vec(), msg[..n].to_vec()));
        }
        assert_eq!((irng.drawn(), rrng.drawn()), (64, 32), "{name}: KEM randomness not all used");
        let hh = i.handshake_hash().to_vec();
        assert_eq!(hh, r.handshake_hash());
        let (mut ti, mut tr) = (i.finish().unwrap(), r.finish().unwrap());
        for (m, payload) in payloads.iter().enumerate().skip(hs) {
            let (w, rd) = if m % 2 == 0 { (&mut ti, &mut tr) } else { (&mut tr, &mut ti) };
            let n = w.write_message(payload, &mut msg).unwrap();
            rd.read_message(&msg[..n], &mut pl).unwrap();
            messages.push((payload.to_vec(), msg[..n].to_vec()));
        }
        let used: Vec<String> = (0..5u8).filter(|&n| p.has_psk(n)).map(|n| hex(&psks[n as usize])).collect();
        let list = |v: &[String]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        let opt = |field: &str, cond: bool, val: String| {
            if cond { format!("      \"{field}\": \"{val}\",\n") } else { String::new() }
        };
        let pub_of = |s: &[u8; 32]| hex(&common::public(s));
        out += "    {\n";
        out += &format!("      \"protocol_name\": \"{name}\",\n");
        out += &format!("      \"init_prologue\": \"{}\",\n", hex(&prologue));
        if !used.is_empty() {
            out += &format!("      \"init_psks\": [{}],\n", list(&used));
        }
        out += &opt("init_static", hp.initiator_has_static(), hex(&i_s));
        out += &format!("      \"init_ephemeral\": \"{}\",\n", hex(&i_e));
        out += &format!("      \"init_kem_ephemeral\": \"{}\",\n", hex(&kem_seed));
        out += &opt("init_remote_static", hp.pre_responder().s, pub_of(&r_s));
        out += &format!("      \"resp_prologue\": \"{}\",\n", hex(&prologue));
        if !used.is_empty() {
            out += &format!("      \"resp_psks\": [{}],\n", list(&used));
        }
        out += &opt("resp_static", hp.responder_has_static(), hex(&r_s));
        out += &format!("      \"resp_ephemeral\": \"{}\",\n", hex(&r_e));
        out += &format!("      \"resp_kem_randomness\": \"{}\",\n", hex(&kem_m));
        out += &opt("resp_remote_static", hp.pre_initiator().s, pub_of(&i_s));
        out += &format!("      \"handshake_hash\": \"{}\",\n", hex(&hh));
        out += "      \"messages\": [\n";
        let rows: Vec<String> = messages
            .iter()
            .map(|(pl, ct)| {
                format!("        {{ \"payload\": \"{}\", \"ciphertext\": \"{}\" }}", hex(pl), hex(ct))
            })
            .collect();
        out += &rows.join(",\n");
        out += "\n      ]\n    }";
        out += if v + 1 < names.len() { ",\n" } else { "\n" };
    }
    out += "  ]\n}\n";
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-vectors/noise/securemesh-hfs.json");
    std::fs::write(&path, out).unwrap();
    println!("wrote {} vectors to {}", names.len(), path.display());
}

/// [`ours`] with a fixed ephemeral key.
#[cfg(feature = "dangerous-testing")]
fn ours_with_e(p: &Protocol, role: Role, k: &Keys, e: [u8; 32]) -> HandshakeState {
    common::builder(p, role, k).dangerous_with_ephemeral(securemesh_core::Secret::new(e)).build(role).unwrap()
}

mod names {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn modifier() -> impl Strategy<Value = String> {
        select(vec!["hfs", "psk0", "psk1", "psk2", "psk3", "psk4", "fallback", "hfx"]).prop_map(String::from)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Adding `hfs` (anywhere in the modifier list) and a KEM to a name
        /// parses exactly when the name without them parses, the pattern
        /// is interactive and has no fallback; the result is that pattern
        /// with one `e1` and one `ekem1` added.
        #[test]
        fn hfs_name_parses_iff_base_does(
            pattern in select(pattern_names().collect::<Vec<_>>()),
            mods in prop::collection::vec(modifier(), 0..4),
            at in 0usize..4,
            kem in select(vec!["MLKEM768", "MLKEM1024"]),
        ) {
            let base_mods = mods.join("+");
            let mut with = mods.clone();
            with.insert(at.min(mods.len()), "hfs".to_string());
            let base = Protocol::parse(&format!("Noise_{pattern}{base_mods}_25519_ChaChaPoly_SHA256"));
            let name = format!("Noise_{pattern}{}_25519+{kem}_ChaChaPoly_SHA256", with.join("+"));
            let hfs = Protocol::parse(&name);
            let eligible = base.as_ref().is_ok_and(|b| !b.pattern().is_one_way() && !b.is_fallback());
            prop_assert_eq!(hfs.is_ok(), eligible && !mods.iter().any(|m| m == "hfs"), "{}", name);
            if let (Ok(b), Ok(h)) = (base, hfs) {
                prop_assert_eq!(h.kem().map(KemChoice::name), Some(kem));
                prop_assert_eq!((find(&h, Token::E1).len(), find(&h, Token::Ekem1).len()), (1, 1));
                for (a, x) in b.pattern().messages().iter().zip(h.pattern().messages()) {
                    let stripped: Vec<Token> =
                        x.tokens().iter().copied().filter(|t| !matches!(t, Token::E1 | Token::Ekem1)).collect();
                    prop_assert_eq!(a.tokens(), &stripped[..]);
                }
            }
        }

        /// Any string: no panic; a name that parses carries a KEM exactly
        /// when it has `e1` and `ekem1`.
        #[test]
        fn any_name_is_safe(s in "Noise_[A-Z0-9]{1,4}[a-z0-9+]{0,16}_25519(\\+[A-Z0-9]{0,10})?_ChaChaPoly_SHA256") {
            if let Ok(p) = Protocol::parse(&s) {
                let tokens = (find(&p, Token::E1).len(), find(&p, Token::Ekem1).len());
                prop_assert_eq!(tokens, if p.kem().is_some() { (1, 1) } else { (0, 0) });
            }
        }
    }
}

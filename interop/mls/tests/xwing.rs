//! Ciphersuite 0x004D (MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519)
//! against OpenMLS 0.9.2 with its `draft-ietf-mls-pq-ciphersuites`
//! feature (HPKE from hpke-rs 0.7 `XWingDraft06`, KEM id 0x647a, on
//! RustCrypto `x-wing` 0.1.1).
//!
//! What interoperates today is the suite's cryptography: X-Wing's HPKE
//! `DeriveKeyPair`, `EncryptWithLabel`/`DecryptWithLabel` both ways, and the
//! external-init export, checked against OpenMLS's crypto provider on our
//! published vectors (`test-vectors/mls/xwing-0x004d.json`) and on fresh
//! encryptions; and a mixed 0x004D group, OpenMLS's member and ours
//! (`openmls_and_ours_in_one_0x004d_group`). The group-level figures here
//! are OpenMLS's own, 0x004D against 0x0003.

use openmls::prelude::{tls_codec::*, *};
use openmls_basic_credential::SignatureKeyPair;
use openmls_libcrux_crypto::Provider as Libcrux;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::{HpkeCiphertext, HpkeKemType};
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::crypto::{Secret32, xwing};
use securemesh_mls_lite::mls_message::MlsMessage as OurMessage;
use serde_json::Value;
use std::time::Instant;

const XWING: Ciphersuite = Ciphersuite::MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519;
const SUITE3: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

fn h(v: &Value) -> Vec<u8> {
    hex_decode(v.as_str().unwrap())
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// RFC 9420 §5.1.3 EncryptContext, encoded with OpenMLS's tls_codec (not
/// our codec): `opaque label<V> = "MLS 1.0 " + label; opaque context<V>`.
fn encrypt_context(label: &str, context: &[u8]) -> Vec<u8> {
    let mut out = VLBytes::new(format!("MLS 1.0 {label}").into_bytes()).tls_serialize_detached().unwrap();
    out.extend(VLBytes::new(context.to_vec()).tls_serialize_detached().unwrap());
    out
}

fn vectors() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test-vectors/mls/xwing-0x004d.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_suite_is_what_openmls_calls_0x004d() {
    assert_eq!(u16::from(XWING), xwing::CIPHERSUITE);
    assert_eq!(XWING.hpke_kem_algorithm(), HpkeKemType::XWingKemDraft6);
    assert_eq!(XWING.hash_algorithm(), SUITE3.hash_algorithm());
    assert_eq!(XWING.hpke_kdf_algorithm(), SUITE3.hpke_kdf_algorithm());
    assert_eq!(XWING.hpke_aead_algorithm(), SUITE3.hpke_aead_algorithm());
    assert_eq!(XWING.aead_algorithm(), SUITE3.aead_algorithm());
    assert_eq!(XWING.signature_algorithm(), SUITE3.signature_algorithm());
}

/// Our published 0x004D vectors, checked by OpenMLS's two crypto
/// providers (RustCrypto's X-Wing and libcrux's).
#[test]
fn our_vectors_check_with_openmls() {
    check_vectors(OpenMlsRustCrypto::default().crypto());
    check_vectors(Libcrux::new().unwrap().crypto());
}

fn check_vectors(crypto: &impl OpenMlsCrypto) {
    let mut checked = [0usize; 3];
    for e in vectors() {
        match e["kind"].as_str().unwrap() {
            "derive_key_pair" => {
                let pair = crypto.derive_hpke_keypair(XWING.hpke_config(), &h(&e["ikm"])).unwrap();
                assert_eq!(&pair.private[..], &h(&e["priv"])[..]);
                assert_eq!(pair.public, h(&e["pub"]));
                checked[0] += 1;
            }
            "encrypt_with_label" => {
                let info = encrypt_context(e["label"].as_str().unwrap(), &h(&e["context"]));
                let input = HpkeCiphertext {
                    kem_output: h(&e["kem_output"]).into(),
                    ciphertext: h(&e["ciphertext"]).into(),
                };
                let plain =
                    crypto.hpke_open(XWING.hpke_config(), &input, &h(&e["priv"]), &info, &[]).unwrap();
                assert_eq!(plain, h(&e["plaintext"]));
                checked[1] += 1;
            }
            "external_init" => {
                let pair =
                    crypto.derive_hpke_keypair(XWING.hpke_config(), &h(&e["external_secret"])).unwrap();
                assert_eq!(pair.public, h(&e["external_pub"]));
                let init = crypto
                    .hpke_setup_receiver_and_export(
                        XWING.hpke_config(),
                        &h(&e["kem_output"]),
                        &pair.private,
                        &[],
                        b"MLS 1.0 external init secret",
                        32,
                    )
                    .unwrap();
                assert_eq!(&init[..], &h(&e["init_secret"])[..]);
                checked[2] += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, [3, 2, 1]);
}

/// Fresh encryptions both ways: OpenMLS seals to our derived key and we
/// open; we seal to OpenMLS's derived key and OpenMLS opens; an external
/// init secret sent by OpenMLS is received by us and the reverse.
#[test]
fn hpke_both_ways_with_openmls() {
    hpke_both_ways(OpenMlsRustCrypto::default().crypto());
    hpke_both_ways(Libcrux::new().unwrap().crypto());
}

fn hpke_both_ways(crypto: &impl OpenMlsCrypto) {
    let mut rng = TestRng::new(0x0bad_c0de_4d4d);
    for (i, (label, len)) in
        [("UpdatePathNode", 32), ("Welcome", 100), ("Welcome", 1)].into_iter().enumerate()
    {
        let ikm = [i as u8 + 1; 32];
        let (private, public) = xwing::derive_key_pair(&ikm);
        let context = vec![0xc0 ^ i as u8; 40];
        let plain: Vec<u8> = (0..len).map(|b| b as u8).collect();
        let info = encrypt_context(label, &context);

        let theirs = crypto.hpke_seal(XWING.hpke_config(), &public, &info, &[], &plain).unwrap();
        assert_eq!(theirs.kem_output.as_slice().len(), xwing::NENC);
        let ct = theirs.ciphertext.as_slice();
        let (body, tag) = ct.split_at(ct.len() - 16);
        let mut buf = body.to_vec();
        let mut scratch = vec![0u8; info.len()];
        xwing::decrypt_with_label(
            &private,
            label.as_bytes(),
            &context,
            theirs.kem_output.as_slice(),
            &mut buf,
            tag.try_into().unwrap(),
            &mut scratch,
        )
        .unwrap();
        assert_eq!(buf, plain);

        let pair = crypto.derive_hpke_keypair(XWING.hpke_config(), &ikm).unwrap();
        let mut buf = plain.clone();
        let (kem_output, tag) = xwing::encrypt_with_label(
            &pair.public,
            label.as_bytes(),
            &context,
            &mut buf,
            &mut scratch,
            &mut rng,
        )
        .unwrap();
        let input = HpkeCiphertext {
            kem_output: kem_output.to_vec().into(),
            ciphertext: [&buf[..], &tag].concat().into(),
        };
        assert_eq!(crypto.hpke_open(XWING.hpke_config(), &input, &pair.private, &info, &[]).unwrap(), plain);

        let external = Secret32::new([0x40 + i as u8; 32]);
        let (_, external_pub) = xwing::derive_key_pair(external.expose());
        let (kem_output, theirs) = crypto
            .hpke_setup_sender_and_export(
                XWING.hpke_config(),
                &external_pub,
                &[],
                b"MLS 1.0 external init secret",
                32,
            )
            .unwrap();
        assert_eq!(xwing::external_init_receive(&external, &kem_output).unwrap().expose()[..], theirs[..]);
        let (kem_output, ours) = xwing::external_init_send(&external_pub, &mut rng).unwrap();
        let pair = crypto.derive_hpke_keypair(XWING.hpke_config(), external.expose()).unwrap();
        let theirs = crypto
            .hpke_setup_receiver_and_export(
                XWING.hpke_config(),
                &kem_output,
                &pair.private,
                &[],
                b"MLS 1.0 external init secret",
                32,
            )
            .unwrap();
        assert_eq!(ours.expose()[..], theirs[..]);
    }
}

/// An OpenMLS client on the libcrux provider (the RustCrypto provider's
/// `supports()` refuses 0x004D: no KeyPackage, no group).
struct Client {
    provider: Libcrux,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn client(name: &str, suite: Ciphersuite) -> (Client, Vec<u8>) {
    let provider = Libcrux::new().unwrap();
    let signer = SignatureKeyPair::new(suite.signature_algorithm()).unwrap();
    signer.store(provider.storage()).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    };
    let kp = KeyPackage::builder().build(suite, &provider, &signer, credential.clone()).unwrap();
    let bytes = MlsMessageOut::from(kp.key_package().clone()).tls_serialize_detached().unwrap();
    (Client { provider, signer, credential }, bytes)
}

/// Sizes (bytes) and the commit time of an OpenMLS group of `suite`: the
/// creator adds `n` members one commit each (tree in the Welcome), then
/// commits an UpdatePath (`self_update`) that every member processes.
struct Figures {
    key_package: usize,
    welcome_first: usize,
    add_commit_last: usize,
    update_commit: usize,
    update_micros: u128,
}

fn openmls_group(suite: Ciphersuite, n: usize) -> Figures {
    let (alice, _) = client("alice", suite);
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(suite)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .build();
    let mut group = MlsGroup::new(&alice.provider, &alice.signer, &config, alice.credential.clone()).unwrap();
    let mut members: Vec<(Client, MlsGroup)> = Vec::new();
    let (mut key_package, mut welcome_first, mut add_commit_last) = (0, 0, 0);
    for i in 0..n {
        let (c, kp_bytes) = client(&format!("m{i}"), suite);
        key_package = kp_bytes.len();
        let MlsMessageBodyIn::KeyPackage(kp) =
            MlsMessageIn::tls_deserialize_exact(&kp_bytes).unwrap().extract()
        else {
            panic!("not a KeyPackage")
        };
        let kp = kp.validate(alice.provider.crypto(), ProtocolVersion::Mls10).unwrap();
        let (commit, welcome, _) = group.add_members(&alice.provider, &alice.signer, &[kp]).unwrap();
        group.merge_pending_commit(&alice.provider).unwrap();
        let commit = commit.tls_serialize_detached().unwrap();
        let welcome = welcome.tls_serialize_detached().unwrap();
        if i == 0 {
            welcome_first = welcome.len();
        }
        add_commit_last = commit.len();
        for (m, g) in members.iter_mut() {
            let msg =
                MlsMessageIn::tls_deserialize_exact(&commit).unwrap().try_into_protocol_message().unwrap();
            let ProcessedMessageContent::StagedCommitMessage(staged) =
                g.process_message(&m.provider, msg).unwrap().into_content()
            else {
                panic!("not a commit")
            };
            g.merge_staged_commit(&m.provider, *staged).unwrap();
        }
        let MlsMessageBodyIn::Welcome(w) = MlsMessageIn::tls_deserialize_exact(&welcome).unwrap().extract()
        else {
            panic!("not a Welcome")
        };
        let g = StagedWelcome::new_from_welcome(&c.provider, &MlsGroupJoinConfig::default(), w, None)
            .unwrap()
            .into_group(&c.provider)
            .unwrap();
        members.push((c, g));
    }
    // Five update commits, each sent and processed by every member: the
    // fastest one is the figure (the machine is shared).
    let (mut update, mut update_micros) = (Vec::new(), u128::MAX);
    for _ in 0..5 {
        let start = Instant::now();
        let bundle =
            group.self_update(&alice.provider, &alice.signer, LeafNodeParameters::default()).unwrap();
        group.merge_pending_commit(&alice.provider).unwrap();
        update = bundle.into_messages().0.tls_serialize_detached().unwrap();
        for (m, g) in members.iter_mut() {
            let msg =
                MlsMessageIn::tls_deserialize_exact(&update).unwrap().try_into_protocol_message().unwrap();
            let ProcessedMessageContent::StagedCommitMessage(staged) =
                g.process_message(&m.provider, msg).unwrap().into_content()
            else {
                panic!("not a commit")
            };
            g.merge_staged_commit(&m.provider, *staged).unwrap();
        }
        update_micros = update_micros.min(start.elapsed().as_micros());
    }
    // Everyone agrees, and application messages pass both ways.
    let want = group.export_secret(alice.provider.crypto(), "check", b"", 32).unwrap();
    let sealed = group
        .create_message(&alice.provider, &alice.signer, b"hello")
        .unwrap()
        .tls_serialize_detached()
        .unwrap();
    for (m, g) in members.iter_mut() {
        assert_eq!(g.export_secret(m.provider.crypto(), "check", b"", 32).unwrap(), want);
        let msg = MlsMessageIn::tls_deserialize_exact(&sealed).unwrap().try_into_protocol_message().unwrap();
        let ProcessedMessageContent::ApplicationMessage(app) =
            g.process_message(&m.provider, msg).unwrap().into_content()
        else {
            panic!("not an application message")
        };
        assert_eq!(app.into_bytes(), b"hello");
    }
    Figures { key_package, welcome_first, add_commit_last, update_commit: update.len(), update_micros }
}

/// OpenMLS runs 0x004D between its own members (so the feature builds and
/// works here); the figures printed are the size cost of X-Wing per
/// message against 0x0003 (`--nocapture` shows them).
#[test]
fn openmls_groups_of_both_suites_and_their_sizes() {
    let n = 7;
    let x = openmls_group(XWING, n);
    let c = openmls_group(SUITE3, n);
    println!("OpenMLS, creator + {n} members (tree in the Welcome), bytes 0x004D vs 0x0003:");
    println!("  KeyPackage (MLSMessage)     {:>6} vs {:>6}", x.key_package, c.key_package);
    println!("  Welcome of the first add    {:>6} vs {:>6}", x.welcome_first, c.welcome_first);
    println!("  add commit, 8th leaf        {:>6} vs {:>6}", x.add_commit_last, c.add_commit_last);
    println!("  update commit (UpdatePath)  {:>6} vs {:>6}", x.update_commit, c.update_commit);
    println!(
        "  update commit sent + processed by {n} (fastest of 5): {} us vs {} us = {:.2}x (dev profile, deps at opt-level 2)",
        x.update_micros,
        c.update_micros,
        x.update_micros as f64 / c.update_micros as f64
    );
    // An X-Wing KeyPackage carries two 1216-byte keys instead of two 32-byte ones.
    assert_eq!(x.key_package - c.key_package, 2 * (1216 - 32) + 2 * (2 - 1));
    assert!(x.update_commit > c.update_commit);
}

/// OpenMLS's RustCrypto provider builds no 0x004D KeyPackage.
#[test]
fn the_rust_crypto_provider_refuses_0x004d_groups() {
    let provider = OpenMlsRustCrypto::default();
    assert!(provider.crypto().supports(XWING).is_err());
    let signer = SignatureKeyPair::new(XWING.signature_algorithm()).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(b"carol".to_vec()).into(),
        signature_key: signer.public().into(),
    };
    let refused = KeyPackage::builder().build(XWING, &provider, &signer, credential).err();
    assert!(matches!(refused, Some(KeyPackageNewError::UnsupportedCiphersuite(s)) if s == XWING));
}

/// A mixed 0x004D group: our parser reads OpenMLS's X-Wing KeyPackage;
/// OpenMLS (libcrux) creates a group and adds our member from our
/// KeyPackage; we join from its Welcome (the tree in the extension),
/// open its application message, commit an UpdatePath that OpenMLS
/// processes, and OpenMLS opens ours: both agree on the epoch
/// authenticator after each step.
#[test]
fn openmls_and_ours_in_one_0x004d_group() {
    use securemesh_mls_lite::crypto::suite::Suite;
    use securemesh_mls_lite::key_package::KeyPackageParams;
    use securemesh_mls_lite::mls_message::MlsMessageBody as OurBody;
    use securemesh_mls_lite::pending_commit::CommitOptions;
    use securemesh_mls_lite::testing::Candidate;
    type G = securemesh_mls_lite::Group<8, 1536, 32, 64>;

    let (alice, alice_kp) = client("alice", XWING);
    let OurBody::KeyPackage(theirs) = OurMessage::from_bytes(&alice_kp).unwrap().body else {
        panic!("not a KeyPackage")
    };
    assert_eq!((theirs.cipher_suite, theirs.init_key.len()), (0x004D, 1216));

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let params = KeyPackageParams {
        identity: b"ours",
        not_before: now - 3600,
        not_after: now + 30 * 86_400,
        last_resort: false,
    };
    let mut rng = TestRng::new(0x4d0a_0b0c);
    let ours_kp = Candidate::new_in(Suite::Mls256XWing, &params, &mut rng).unwrap();
    let kp = KeyPackageIn::tls_deserialize_exact(ours_kp.key_package_bytes())
        .unwrap()
        .validate(alice.provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();

    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(XWING)
        .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .build();
    let mut group = MlsGroup::new(&alice.provider, &alice.signer, &config, alice.credential.clone()).unwrap();
    let (_commit, welcome, _) = group.add_members(&alice.provider, &alice.signer, &[kp]).unwrap();
    group.merge_pending_commit(&alice.provider).unwrap();
    let welcome = welcome.tls_serialize_detached().unwrap();
    let OurBody::Welcome(w) = OurMessage::from_bytes(&welcome).unwrap().body else { panic!("not a Welcome") };
    let mut ours: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::scratch_len(welcome.len())];
    ours.join_into(&w, &ours_kp.keys().unwrap(), None, &[], &mut scratch).unwrap();
    assert_eq!(ours.suite(), Suite::Mls256XWing);
    assert_eq!(ours.epoch(), group.epoch().as_u64());
    assert_eq!(ours.epoch_authenticator().expose(), group.epoch_authenticator().as_slice());

    // OpenMLS to ours.
    let msg = group.create_message(&alice.provider, &alice.signer, b"from openmls").unwrap();
    let msg = msg.tls_serialize_detached().unwrap();
    let mut scratch = vec![0u8; G::application_scratch_len(msg.len())];
    assert_eq!(ours.open_application(&msg, &mut scratch).unwrap().data, b"from openmls");

    // Our UpdatePath commit (PrivateMessage), processed by OpenMLS.
    let mut pending: Box<G> = Box::default();
    let mut commit = vec![0u8; 16 * 1024];
    let mut welcome_out = vec![0u8; G::welcome_len(0, false)];
    let mut scratch = vec![0u8; G::send_commit_scratch_len(0)];
    let options = CommitOptions { update_path: true, ..CommitOptions::default() };
    let out = ours
        .commit(&[], &[], &options, &mut rng, &mut pending, &mut commit, &mut welcome_out, &mut scratch)
        .unwrap();
    let message = MlsMessageIn::tls_deserialize_exact(&commit[..out.commit_len])
        .unwrap()
        .try_into_protocol_message()
        .unwrap();
    let ProcessedMessageContent::StagedCommitMessage(staged) =
        group.process_message(&alice.provider, message).unwrap().into_content()
    else {
        panic!("not a commit")
    };
    group.merge_staged_commit(&alice.provider, *staged).unwrap();
    ours.merge_pending_commit(&mut pending).unwrap();
    assert_eq!(ours.epoch(), 2);
    assert_eq!(ours.epoch_authenticator().expose(), group.epoch_authenticator().as_slice());

    // Ours to OpenMLS, in the new epoch.
    let mut sealed = vec![0u8; 512];
    let mut scratch = vec![0u8; G::seal_scratch_len(9, 0)];
    let n = ours.seal_application(b"from ours", &[], 0, &mut rng, &mut sealed, &mut scratch).unwrap();
    let message =
        MlsMessageIn::tls_deserialize_exact(&sealed[..n]).unwrap().try_into_protocol_message().unwrap();
    let ProcessedMessageContent::ApplicationMessage(app) =
        group.process_message(&alice.provider, message).unwrap().into_content()
    else {
        panic!("not an application message")
    };
    assert_eq!(app.into_bytes(), b"from ours");
}

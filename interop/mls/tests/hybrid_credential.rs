//! Hybrid credentials (securemesh-mls-lite feature `ml-dsa`) carried by
//! OpenMLS 0.9: our members' credential type 0xF0A5 (identity and
//! ML-DSA-65 key) and LeafNode extension 0xF0A6 (the leaf's ML-DSA-65
//! signature) are private-use code points, which OpenMLS accepts as
//! `CredentialType::Other` and `ExtensionType::Unknown` when the leaves
//! list them in their capabilities (RFC 9420 §7.2, §13). OpenMLS verifies
//! the Ed25519 signatures only; ours verify both.
//!
//! One mixed group, ciphersuite 0x0003: our hybrid member creates it and
//! adds an OpenMLS member (Welcome with the tree: OpenMLS imports our
//! hybrid leaf); OpenMLS adds a second hybrid member of ours (OpenMLS
//! validates our hybrid KeyPackage; we verify both signatures of every
//! leaf in its Welcome's tree); UpdatePaths from both sides (our leaf
//! re-signed with both keys); application messages every way.

use openmls::prelude::{tls_codec::*, *};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use securemesh_core::crypto::{Ed25519, MlDsa65, Signature};
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::crypto::suite::Suite;
use securemesh_mls_lite::hybrid_credential::{
    HYBRID_CREDENTIAL_TYPE, HYBRID_LEAF_BYTES, ML_DSA_LEAF_SIGNATURE_EXTENSION,
};
use securemesh_mls_lite::key_package::{
    KeyPackageParams, KeyPackageSecrets, create_hybrid_key_package_in, hybrid_key_package_len_in,
};
use securemesh_mls_lite::messages::KeyPackage as OurKeyPackage;
use securemesh_mls_lite::mls_message::{MlsMessage as OurMessage, MlsMessageBody as OurBody};
use securemesh_mls_lite::pending_commit::CommitOptions;
use securemesh_mls_lite::tree::node::Credential as OurCredential;
use securemesh_mls_lite::welcome::JoinKeys;
use securemesh_mls_lite::{CommitEvent, DefaultProposalCache, Group, PskStore};

type G = Group<8, HYBRID_LEAF_BYTES, 32, 64>;
const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

/// Capabilities that list our credential type and leaf extension.
fn hybrid_capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[SUITE]),
        Some(&[ExtensionType::Unknown(ML_DSA_LEAF_SIGNATURE_EXTENSION)]),
        None,
        Some(&[CredentialType::Basic, CredentialType::Other(HYBRID_CREDENTIAL_TYPE)]),
    )
}

/// Our hybrid member-to-be.
struct Ours {
    kp: Vec<u8>,
    secrets: KeyPackageSecrets,
    signature_priv: Secret32,
    ml_dsa: Secret32,
}

impl Ours {
    fn new(name: &[u8], rng: &mut TestRng) -> Ours {
        let params =
            KeyPackageParams { identity: name, not_before: 0, not_after: u64::MAX, last_resort: false };
        let (signature_priv, ml_dsa) = (Ed25519::generate(rng), MlDsa65::generate(rng));
        let suite = Suite::Mls128X25519;
        let mut kp = vec![0u8; hybrid_key_package_len_in(suite, name.len())];
        let mut scratch = vec![0u8; 2 * kp.len()];
        let (n, secrets) = create_hybrid_key_package_in(
            suite,
            &params,
            &signature_priv,
            &ml_dsa,
            rng,
            &mut kp,
            &mut scratch,
        )
        .unwrap();
        kp.truncate(n);
        Ours { kp, secrets, signature_priv, ml_dsa }
    }

    fn keys(&self) -> JoinKeys<'_> {
        JoinKeys {
            key_package: OurKeyPackage::from_bytes(&self.kp).unwrap(),
            init_priv: &self.secrets.init_priv,
            encryption_priv: &self.secrets.encryption_priv,
            signature_priv: &self.signature_priv,
        }
    }

    /// The KeyPackage as an `MLSMessage` (version, wire format 5).
    fn key_package_message(&self) -> Vec<u8> {
        let mut m = vec![0, 1, 0, 5];
        m.extend_from_slice(&self.kp);
        m
    }
}

fn our_commit(g: &mut G, adds: &[OurKeyPackage<'_>], path: bool, rng: &mut TestRng) -> (Vec<u8>, Vec<u8>) {
    let total: usize = adds.iter().map(|k| k.as_bytes().len()).sum();
    let options = CommitOptions { update_path: path, ..CommitOptions::default() };
    let mut pending: Box<G> = Box::default();
    let mut commit = vec![0u8; total + 16384];
    let mut welcome = vec![0u8; G::welcome_len(adds.len(), true)];
    let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
    let out =
        g.commit(adds, &[], &options, rng, &mut pending, &mut commit, &mut welcome, &mut scratch).unwrap();
    g.merge_pending_commit(&mut pending).unwrap();
    commit.truncate(out.commit_len);
    welcome.truncate(out.welcome_len);
    (commit, welcome)
}

fn our_process(g: &mut G, commit: &[u8]) {
    let mut cache: Box<DefaultProposalCache> = Box::default();
    let mut spare: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::commit_scratch_len(commit.len())];
    let event = g.process_commit(commit, &mut cache, &PskStore::default(), &mut spare, &mut scratch).unwrap();
    assert!(matches!(event, CommitEvent::NewEpoch { .. }));
}

fn our_seal(g: &mut G, data: &[u8], rng: &mut TestRng) -> Vec<u8> {
    let mut out = vec![0u8; data.len() + 256];
    let mut scratch = vec![0u8; G::seal_scratch_len(data.len(), 0)];
    let n = g.seal_application(data, &[], 0, rng, &mut out, &mut scratch).unwrap();
    out.truncate(n);
    out
}

fn our_open(g: &mut G, message: &[u8]) -> Vec<u8> {
    let mut scratch = vec![0u8; G::application_scratch_len(message.len())];
    g.open_application(message, &mut scratch).unwrap().data.to_vec()
}

/// OpenMLS processes a commit or an application message.
fn openmls_process(provider: &OpenMlsRustCrypto, g: &mut MlsGroup, bytes: &[u8]) -> Option<Vec<u8>> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).unwrap().try_into_protocol_message().unwrap();
    match g.process_message(provider, msg).unwrap().into_content() {
        ProcessedMessageContent::StagedCommitMessage(staged) => {
            g.merge_staged_commit(provider, *staged).unwrap();
            None
        }
        ProcessedMessageContent::ApplicationMessage(app) => Some(app.into_bytes()),
        _ => panic!("unexpected message"),
    }
}

fn exporter_ours(g: &G) -> Vec<u8> {
    let mut out = [0u8; 32];
    g.export_secret(b"check", b"", &mut out).unwrap();
    out.to_vec()
}

#[test]
fn openmls_carries_hybrid_credentials_in_a_mixed_group() {
    std::thread::Builder::new().stack_size(32 << 20).spawn(run).unwrap().join().unwrap();
}

fn run() {
    let mut rng = TestRng::new(0x4859_0e11_0001);

    // Our hybrid member creates the group.
    let alice = Ours::new(b"ours-alice", &mut rng);
    let mut a: Box<G> = Box::default();
    a.create_into(b"hybrid interop", &alice.keys(), &[], &mut rng).unwrap();
    a.set_ml_dsa_key(&alice.ml_dsa).unwrap();

    // OpenMLS's member, whose leaf lists our credential type and extension.
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SUITE.signature_algorithm()).unwrap();
    signer.store(provider.storage()).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(b"openmls-bob".to_vec()).into(),
        signature_key: signer.public().into(),
    };
    let bundle = KeyPackage::builder()
        .leaf_node_capabilities(hybrid_capabilities())
        .build(SUITE, &provider, &signer, credential)
        .unwrap();
    let bob_kp = MlsMessageOut::from(bundle.key_package().clone()).tls_serialize_detached().unwrap();

    // We add it; OpenMLS joins from the Welcome, importing our hybrid leaf.
    let OurBody::KeyPackage(kp) = OurMessage::from_bytes(&bob_kp).unwrap().body else { panic!() };
    let (_, welcome) = our_commit(&mut a, &[kp], false, &mut rng);
    let MlsMessageBodyIn::Welcome(w) = MlsMessageIn::tls_deserialize_exact(&welcome).unwrap().extract()
    else {
        panic!("not a Welcome")
    };
    let join_config = MlsGroupJoinConfig::builder().use_ratchet_tree_extension(true).build();
    let mut b = StagedWelcome::new_from_welcome(&provider, &join_config, w, None)
        .unwrap()
        .into_group(&provider)
        .unwrap();
    let ours_leaf = b.members().find(|m| m.index.u32() == 0).unwrap();
    assert_eq!(ours_leaf.credential.credential_type(), CredentialType::Other(HYBRID_CREDENTIAL_TYPE));
    assert_eq!(b.export_secret(provider.crypto(), "check", b"", 32).unwrap(), exporter_ours(&a));
    let sealed = our_seal(&mut a, b"hello openmls", &mut rng);
    assert_eq!(openmls_process(&provider, &mut b, &sealed).unwrap(), b"hello openmls");

    // OpenMLS adds a second hybrid member of ours: it validates our hybrid
    // KeyPackage; we verify both signatures of every leaf of its tree.
    let carol = Ours::new(b"ours-carol", &mut rng);
    let MlsMessageBodyIn::KeyPackage(kp) =
        MlsMessageIn::tls_deserialize_exact(&carol.key_package_message()).unwrap().extract()
    else {
        panic!("not a KeyPackage")
    };
    let kp = kp.validate(provider.crypto(), ProtocolVersion::Mls10).unwrap();
    let (commit, welcome, _) = b.add_members(&provider, &signer, &[kp]).unwrap();
    b.merge_pending_commit(&provider).unwrap();
    our_process(&mut a, &commit.tls_serialize_detached().unwrap());
    let welcome = welcome.tls_serialize_detached().unwrap();
    let OurBody::Welcome(w) = OurMessage::from_bytes(&welcome).unwrap().body else { panic!() };
    let mut c: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::scratch_len(welcome.len())];
    c.join_into(&w, &carol.keys(), None, &[], &mut scratch).unwrap();
    c.set_ml_dsa_key(&carol.ml_dsa).unwrap();
    assert!(matches!(c.tree().leaf(2).unwrap().credential, OurCredential::Hybrid(_)));

    // UpdatePaths: ours (the leaf re-signed with both keys), then OpenMLS's.
    let (commit, _) = our_commit(&mut c, &[], true, &mut rng);
    our_process(&mut a, &commit);
    assert!(openmls_process(&provider, &mut b, &commit).is_none());
    let update = b.self_update(&provider, &signer, LeafNodeParameters::default()).unwrap();
    b.merge_pending_commit(&provider).unwrap();
    let update = update.into_messages().0.tls_serialize_detached().unwrap();
    our_process(&mut a, &update);
    our_process(&mut c, &update);

    // Everyone agrees; messages every way.
    let want = exporter_ours(&a);
    assert_eq!(exporter_ours(&c), want);
    assert_eq!(b.export_secret(provider.crypto(), "check", b"", 32).unwrap(), want);
    let from_b =
        b.create_message(&provider, &signer, b"from openmls").unwrap().tls_serialize_detached().unwrap();
    assert_eq!(our_open(&mut a, &from_b), b"from openmls");
    assert_eq!(our_open(&mut c, &from_b), b"from openmls");
    let from_c = our_seal(&mut c, b"from ours", &mut rng);
    assert_eq!(our_open(&mut a, &from_c), b"from ours");
    assert_eq!(openmls_process(&provider, &mut b, &from_c).unwrap(), b"from ours");
}

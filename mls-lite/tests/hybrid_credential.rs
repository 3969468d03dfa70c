//! Hybrid credentials (feature `ml-dsa`): members whose credential
//! carries an ML-DSA-65 key and whose leaves carry an ML-DSA-65 signature
//! beside the Ed25519 one. A group of three through add, messages,
//! Update proposal, UpdatePath, remove and a persisted restore; leaves
//! whose ML-DSA signature is bad, missing or by another key refused with
//! the group unchanged; a classical member refused by a group that
//! requires hybrid credentials; the parsers fed arbitrary bytes.
//!
//! ML-DSA-65 keeps its matrix on the stack: the tests run on 32 MiB
//! threads.
#![cfg(feature = "ml-dsa")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use securemesh_core::crypto::{Ed25519, MlDsa65, Signature};
use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::crypto::suite::Suite;
use securemesh_mls_lite::crypto::{Secret32, sign_with_label};
use securemesh_mls_lite::hybrid_credential::{
    HYBRID_CREDENTIAL_TYPE, HYBRID_LEAF_BYTES, HYBRID_LEAF_CONTEXT, HybridCredential,
    ML_DSA_LEAF_SIGNATURE_EXTENSION, check_required_capabilities, parse_leaf_signature,
    require_hybrid_extension, requires_hybrid,
};
use securemesh_mls_lite::key_package::{
    KeyPackageParams, KeyPackageSecrets, create_hybrid_key_package_in, create_key_package_in,
    hybrid_key_package_len_in, key_package_len_in,
};
use securemesh_mls_lite::messages::{KeyPackage, WireFormat};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::{CommitOptions, CommitOutput, Proposals};
use securemesh_mls_lite::proposal::OutgoingProposal;
use securemesh_mls_lite::tree::node::{Credential, LeafNode};
use securemesh_mls_lite::welcome::JoinKeys;
use securemesh_mls_lite::{CommitEvent, Error, Group, ProposalCache, PskStore};

/// 8 members of hybrid leaves.
type G = Group<8, HYBRID_LEAF_BYTES, 32, 64>;
/// Room for a few hybrid Update or Add proposals.
type Cache = ProposalCache<4, 32768>;

const SUITE: Suite = Suite::Mls128X25519;

/// Run `f` on a thread with a 32 MiB stack (ML-DSA and by-value groups).
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(32 << 20).spawn(f).unwrap().join().unwrap();
}

/// A would-be member: its KeyPackage and keys.
struct Agent {
    kp: Vec<u8>,
    secrets: KeyPackageSecrets,
    signature_priv: Secret32,
    ml_dsa: Option<Secret32>,
}

impl Agent {
    fn hybrid(name: &[u8], rng: &mut TestRng) -> Self {
        let params =
            KeyPackageParams { identity: name, not_before: 0, not_after: u64::MAX, last_resort: false };
        let (signature_priv, ml_dsa) = (Ed25519::generate(rng), MlDsa65::generate(rng));
        let mut kp = vec![0u8; hybrid_key_package_len_in(SUITE, name.len())];
        let mut scratch = vec![0u8; 2 * kp.len()];
        let (n, secrets) = create_hybrid_key_package_in(
            SUITE,
            &params,
            &signature_priv,
            &ml_dsa,
            rng,
            &mut kp,
            &mut scratch,
        )
        .unwrap();
        kp.truncate(n);
        Agent { kp, secrets, signature_priv, ml_dsa: Some(ml_dsa) }
    }

    fn classical(name: &[u8], rng: &mut TestRng) -> Self {
        let params =
            KeyPackageParams { identity: name, not_before: 0, not_after: u64::MAX, last_resort: false };
        let signature_priv = Ed25519::generate(rng);
        let mut kp = vec![0u8; key_package_len_in(SUITE, name.len())];
        let mut scratch = vec![0u8; 2 * kp.len()];
        let (n, secrets) =
            create_key_package_in(SUITE, &params, &signature_priv, rng, &mut kp, &mut scratch).unwrap();
        kp.truncate(n);
        Agent { kp, secrets, signature_priv, ml_dsa: None }
    }

    fn key_package(&self) -> KeyPackage<'_> {
        KeyPackage::from_bytes(&self.kp).unwrap()
    }

    fn keys(&self) -> JoinKeys<'_> {
        JoinKeys {
            key_package: self.key_package(),
            init_priv: &self.secrets.init_priv,
            encryption_priv: &self.secrets.encryption_priv,
            signature_priv: &self.signature_priv,
        }
    }

    /// Create a group (with GroupContext `extensions`) as its first member.
    fn create(&self, extensions: &[u8], rng: &mut TestRng) -> Result<Box<G>, Error> {
        let mut g: Box<G> = Box::default();
        g.create_into(b"hybrid fleet", &self.keys(), extensions, rng)?;
        if let Some(seed) = &self.ml_dsa {
            g.set_ml_dsa_key(seed)?;
        }
        Ok(g)
    }

    fn join(&self, welcome: &[u8]) -> Result<Box<G>, Error> {
        let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(welcome)?.body else {
            return Err(Error::Malformed);
        };
        let mut g: Box<G> = Box::default();
        let mut scratch = vec![0u8; G::scratch_len(welcome.len())];
        g.join_into(&w, &self.keys(), None, &[], &mut scratch)?;
        if let Some(seed) = &self.ml_dsa {
            g.set_ml_dsa_key(seed)?;
        }
        Ok(g)
    }
}

struct Sent {
    commit: Vec<u8>,
    welcome: Vec<u8>,
    pending: Box<G>,
}

fn commit_with(
    g: &mut G,
    proposals: &Proposals<'_>,
    cache: &Cache,
    update_path: bool,
    rng: &mut TestRng,
) -> Result<Sent, Error> {
    let total: usize =
        proposals.adds.iter().map(|k| k.as_bytes().len()).sum::<usize>() + cache.encoded_len(g.epoch());
    let options = CommitOptions { update_path, ..CommitOptions::default() };
    let mut pending: Box<G> = Box::default();
    let mut commit = vec![0u8; total + 16384];
    let mut welcome = vec![0u8; G::welcome_len(proposals.adds.len(), true)];
    let mut scratch = vec![0u8; G::send_commit_scratch_len(total)];
    let store = PskStore::default();
    let CommitOutput { commit_len, welcome_len, epoch } = g.commit_with(
        proposals,
        cache,
        &store,
        &options,
        rng,
        &mut pending,
        &mut commit,
        &mut welcome,
        &mut scratch,
    )?;
    assert_eq!(epoch, g.epoch() + 1);
    commit.truncate(commit_len);
    welcome.truncate(welcome_len);
    Ok(Sent { commit, welcome, pending })
}

fn commit(
    g: &mut G,
    adds: &[KeyPackage<'_>],
    removes: &[u32],
    update_path: bool,
    rng: &mut TestRng,
) -> Result<Sent, Error> {
    let proposals = Proposals { adds, removes, ..Proposals::default() };
    commit_with(g, &proposals, &Cache::new(), update_path, rng)
}

fn process(g: &mut G, commit: &[u8], cache: &mut Cache) -> Result<CommitEvent, Error> {
    let mut spare: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::commit_scratch_len(commit.len())];
    g.process_commit(commit, cache, &PskStore::default(), &mut spare, &mut scratch)
}

use common::talk;

/// The ML-DSA public key of a member's hybrid leaf.
fn ml_dsa_key_of(g: &G, leaf: u32) -> [u8; 1952] {
    match g.tree().leaf(leaf).unwrap().credential {
        Credential::Hybrid(c) => *c.ml_dsa_public_key,
        other => panic!("not hybrid: {other:?}"),
    }
}

/// A snapshot of what a failed operation must leave as it was.
fn snapshot(g: &G) -> (u64, Vec<u8>, Vec<u8>) {
    let mut blob = vec![0u8; G::MAX_ENCODED_LEN];
    let n = g.encode_state(&mut blob).unwrap();
    blob.truncate(n);
    (g.epoch(), g.tree_hash().to_vec(), blob)
}

#[test]
fn a_hybrid_group_of_three_lives_add_talk_update_remove_restore() {
    big_stack(|| {
        let mut rng = TestRng::new(0x4859_4252_0001);
        let alice_agent = Agent::hybrid(b"alice", &mut rng);
        let kp = alice_agent.key_package();
        kp.validate(1, &mut vec![0u8; 4 * kp.as_bytes().len()]).unwrap();
        assert!(matches!(
            kp.leaf_node.credential,
            Credential::Hybrid(HybridCredential { identity: b"alice", .. })
        ));
        let mut alice = alice_agent.create(&require_hybrid_extension(), &mut rng).unwrap();
        assert!(alice.requires_hybrid_credentials().unwrap());
        let leaf_len = kp.leaf_node.as_bytes().len();
        println!("hybrid KeyPackage {} bytes, its leaf {leaf_len} bytes", alice_agent.kp.len());
        assert!(leaf_len <= HYBRID_LEAF_BYTES);
        assert!(alice.has_ml_dsa_key());

        // Alice adds Bob and Carol; they join from the Welcome (the tree's
        // hybrid leaves verified on import).
        let (bob_agent, carol_agent) = (Agent::hybrid(b"bob", &mut rng), Agent::hybrid(b"carol", &mut rng));
        let adds = [bob_agent.key_package(), carol_agent.key_package()];
        let mut sent = commit(&mut alice, &adds, &[], false, &mut rng).unwrap();
        alice.merge_pending_commit(&mut sent.pending).unwrap();
        println!("Welcome for 2 hybrid members (tree inside): {} bytes", sent.welcome.len());
        let mut bob = bob_agent.join(&sent.welcome).unwrap();
        let mut carol = carol_agent.join(&sent.welcome).unwrap();
        common::assert_agree(&[&*alice, &*bob, &*carol]);
        for leaf in 0..3 {
            assert!(matches!(alice.tree().leaf(leaf).unwrap().credential, Credential::Hybrid(_)));
        }
        talk(&mut alice, &mut [&mut bob, &mut carol], b"hello hybrid world", &mut rng);

        // Bob proposes an Update (his leaf re-signed with both keys); Carol
        // commits it by reference.
        let (mut cache_a, mut cache_b, mut cache_c) = (Cache::new(), Cache::new(), Cache::new());
        let mut msg = vec![0u8; 16384];
        let mut scratch = vec![0u8; G::propose_scratch_len(HYBRID_LEAF_BYTES)];
        let store = PskStore::default();
        let bob_key = ml_dsa_key_of(&bob, 1);
        let old_enc = bob.tree().leaf(1).unwrap().encryption_key.to_vec();
        let out = bob
            .propose(
                &OutgoingProposal::Update,
                WireFormat::PrivateMessage,
                &store,
                &mut cache_b,
                &mut rng,
                &mut msg,
                &mut scratch,
            )
            .unwrap();
        for (g, cache) in [(&mut alice, &mut cache_a), (&mut carol, &mut cache_c)] {
            let mut scratch = vec![0u8; G::commit_scratch_len(out.len)];
            assert_eq!(g.process_proposal(&msg[..out.len], cache, &mut scratch).unwrap(), out.reference);
        }
        let mut sent = commit_with(&mut carol, &Proposals::default(), &cache_c, false, &mut rng).unwrap();
        for (g, cache) in [(&mut alice, &mut cache_a), (&mut bob, &mut cache_b)] {
            assert_eq!(process(g, &sent.commit, cache).unwrap(), CommitEvent::NewEpoch { epoch: 2 });
        }
        carol.merge_pending_commit(&mut sent.pending).unwrap();
        common::assert_agree(&[&*alice, &*bob, &*carol]);
        assert_ne!(bob.tree().leaf(1).unwrap().encryption_key, &old_enc[..]);
        assert_eq!(ml_dsa_key_of(&alice, 1), bob_key);

        // Alice commits with an UpdatePath: her new leaf is re-signed.
        let old_enc = alice.tree().leaf(0).unwrap().encryption_key.to_vec();
        let mut sent = commit(&mut alice, &[], &[], true, &mut rng).unwrap();
        println!("UpdatePath commit (PrivateMessage) of 3 hybrid members: {} bytes", sent.commit.len());
        for g in [&mut bob, &mut carol] {
            assert_eq!(
                process(g, &sent.commit, &mut Cache::new()).unwrap(),
                CommitEvent::NewEpoch { epoch: 3 }
            );
        }
        alice.merge_pending_commit(&mut sent.pending).unwrap();
        common::assert_agree(&[&*alice, &*bob, &*carol]);
        assert_ne!(bob.tree().leaf(0).unwrap().encryption_key, &old_enc[..]);
        talk(&mut carol, &mut [&mut alice, &mut bob], b"after the updates", &mut rng);

        // Bob's state persists (version 4, with his ML-DSA key) and the
        // restored group commits an UpdatePath the others accept.
        let mut blob = vec![0u8; G::MAX_ENCODED_LEN];
        let n = bob.encode_state(&mut blob).unwrap();
        assert_eq!(u16::from_be_bytes([blob[5], blob[6]]), 4);
        println!("state of a hybrid member of 3: {n} bytes (MAX_ENCODED_LEN {})", G::MAX_ENCODED_LEN);
        let mut restored: Box<G> = Box::default();
        restored.decode_state_into(&blob[..n]).unwrap();
        assert!(restored.has_ml_dsa_key());
        common::assert_agree(&[&*alice, &*restored, &*carol]);
        let mut sent = commit(&mut restored, &[], &[], true, &mut rng).unwrap();
        for g in [&mut alice, &mut carol] {
            assert_eq!(
                process(g, &sent.commit, &mut Cache::new()).unwrap(),
                CommitEvent::NewEpoch { epoch: 4 }
            );
        }
        restored.merge_pending_commit(&mut sent.pending).unwrap();
        let mut bob = restored;
        common::assert_agree(&[&*alice, &*bob, &*carol]);

        // Carol removes Bob, who learns it.
        let mut sent = commit(&mut carol, &[], &[1], false, &mut rng).unwrap();
        assert_eq!(
            process(&mut alice, &sent.commit, &mut Cache::new()).unwrap(),
            CommitEvent::NewEpoch { epoch: 5 }
        );
        assert_eq!(process(&mut bob, &sent.commit, &mut Cache::new()).unwrap(), CommitEvent::Removed);
        carol.merge_pending_commit(&mut sent.pending).unwrap();
        common::assert_agree(&[&*alice, &*carol]);
        talk(&mut alice, &mut [&mut carol], b"two left", &mut rng);
    });
}

/// An MLS varint length prefix and `bytes`.
fn vec_v(bytes: &[u8]) -> Vec<u8> {
    let n = bytes.len();
    let mut v = match n {
        0..=63 => vec![n as u8],
        64..=16383 => vec![0x40 | (n >> 8) as u8, n as u8],
        _ => vec![0x80 | (n >> 24) as u8, (n >> 16) as u8, (n >> 8) as u8, n as u8],
    };
    v.extend_from_slice(bytes);
    v
}

/// One extension entry.
fn extension(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut e = ty.to_be_bytes().to_vec();
    e.extend(vec_v(data));
    e
}

/// The leaf's encoding up to its `extensions<V>`.
fn pre_extensions<'a>(leaf: &LeafNode<'a>) -> &'a [u8] {
    let tbs = leaf.tbs_prefix();
    &tbs[..tbs.len() - vec_v(leaf.extensions).len()]
}

/// `agent`'s KeyPackage with its leaf rebuilt from `pre` (the fields up to
/// the extensions) and the extensions `ext`, both Ed25519 signatures made
/// again with the agent's key (so only the ML-DSA part can be wrong).
fn forge(agent: &Agent, pre: &[u8], ext: &[u8]) -> Vec<u8> {
    let kp = agent.key_package();
    let signing = Ed25519::signing_key(&agent.signature_priv);
    let mut scratch = vec![0u8; 32768];
    let mut leaf = pre.to_vec();
    leaf.extend(vec_v(ext));
    let sig = sign_with_label(&signing, b"LeafNodeTBS", &leaf, &mut scratch).unwrap();
    leaf.extend(vec_v(&sig));
    let mut out = kp.version.to_be_bytes().to_vec();
    out.extend(kp.cipher_suite.to_be_bytes());
    out.extend(vec_v(kp.init_key));
    out.extend(leaf);
    out.extend(vec_v(kp.extensions));
    let sig = sign_with_label(&signing, b"KeyPackageTBS", &out, &mut scratch).unwrap();
    out.extend(vec_v(&sig));
    out
}

/// `HybridLeafTBS` of a KeyPackage leaf: its fields, and its extensions
/// other than the ML-DSA signature (here: none).
fn hybrid_tbs(pre: &[u8]) -> Vec<u8> {
    let mut tbs = pre.to_vec();
    tbs.extend(vec_v(&[]));
    tbs
}

#[test]
fn leaves_whose_ml_dsa_signature_is_bad_missing_or_by_another_key_are_refused() {
    big_stack(|| {
        let mut rng = TestRng::new(0x4859_4252_0002);
        let alice_agent = Agent::hybrid(b"alice", &mut rng);
        let mut alice = alice_agent.create(&[], &mut rng).unwrap();
        let bob = Agent::hybrid(b"bob", &mut rng);
        let kp = bob.key_package();
        let pre = pre_extensions(&kp.leaf_node);
        let Credential::Hybrid(cred) = kp.leaf_node.credential else { panic!() };
        let good_sig = *parse_leaf_signature(&kp.leaf_node.extensions[4..]).unwrap();
        assert_eq!(kp.leaf_node.extensions, &extension(ML_DSA_LEAF_SIGNATURE_EXTENSION, &good_sig)[..]);

        // The rebuilt original is accepted: the forgery helper is faithful.
        let same = forge(&bob, pre, kp.leaf_node.extensions);
        assert_eq!(same, bob.kp);

        let mut bad_sig = good_sig;
        bad_sig[100] ^= 1;
        let other = MlDsa65::generate(&mut rng);
        let by_other = MlDsa65::sign(&other, &hybrid_tbs(pre), HYBRID_LEAF_CONTEXT, &mut rng).unwrap();
        // The credential names another key; the signature is the original's.
        let mut pre_other_key = pre.to_vec();
        let at = pre.windows(1952).position(|w| w == cred.ml_dsa_public_key).unwrap();
        pre_other_key[at..at + 1952].copy_from_slice(&MlDsa65::public_key(&other));
        let unsigned_ext = extension(0xF0F0, b"x");
        let cases: [(&str, Vec<u8>, Error); 5] = [
            (
                "a flipped bit",
                forge(&bob, pre, &extension(ML_DSA_LEAF_SIGNATURE_EXTENSION, &bad_sig)),
                Error::BadSignature,
            ),
            ("no signature", forge(&bob, pre, &[]), Error::BadSignature),
            (
                "by another key",
                forge(&bob, pre, &extension(ML_DSA_LEAF_SIGNATURE_EXTENSION, &by_other)),
                Error::BadSignature,
            ),
            (
                "for another credential key",
                forge(&bob, &pre_other_key, &extension(ML_DSA_LEAF_SIGNATURE_EXTENSION, &good_sig)),
                Error::BadSignature,
            ),
            (
                "an extension added after signing",
                forge(
                    &bob,
                    pre,
                    &[unsigned_ext, extension(ML_DSA_LEAF_SIGNATURE_EXTENSION, &good_sig)].concat(),
                ),
                Error::BadSignature,
            ),
        ];
        for (what, bytes, want) in cases {
            let kp = KeyPackage::from_bytes(&bytes).unwrap();
            // Ed25519 holds: only the ML-DSA part is wrong.
            assert_eq!(kp.validate(1, &mut vec![0u8; 4 * bytes.len()]), Err(want), "{what}");
            let before = snapshot(&alice);
            assert_eq!(commit(&mut alice, &[kp], &[], false, &mut rng).err(), Some(want), "{what}");
            assert_eq!(snapshot(&alice), before, "{what}: the group changed");
        }

        // A hybrid leaf whose capabilities do not list the types is refused.
        let listed = ML_DSA_LEAF_SIGNATURE_EXTENSION.to_be_bytes();
        let at = pre.windows(3).position(|w| w == [2, listed[0], listed[1]]).unwrap();
        let mut unlisted = pre.to_vec();
        unlisted[at + 1..at + 3].copy_from_slice(&0xF0F1u16.to_be_bytes());
        let sig = MlDsa65::sign(
            bob.ml_dsa.as_ref().unwrap(),
            &hybrid_tbs(&unlisted),
            HYBRID_LEAF_CONTEXT,
            &mut rng,
        )
        .unwrap();
        let bytes = forge(&bob, &unlisted, &extension(ML_DSA_LEAF_SIGNATURE_EXTENSION, &sig));
        let kp = KeyPackage::from_bytes(&bytes).unwrap();
        assert_eq!(kp.validate(1, &mut vec![0u8; 4 * bytes.len()]), Err(Error::Unsupported));

        // And the genuine one still goes in.
        let mut sent = commit(&mut alice, &[bob.key_package()], &[], false, &mut rng).unwrap();
        alice.merge_pending_commit(&mut sent.pending).unwrap();
        let joined = bob.join(&sent.welcome).unwrap();
        common::assert_agree(&[&*alice, &*joined]);
    });
}

#[test]
fn a_group_that_requires_hybrid_credentials_refuses_a_classical_member() {
    big_stack(|| {
        let mut rng = TestRng::new(0x4859_4252_0003);
        let alice_agent = Agent::hybrid(b"alice", &mut rng);
        let classical = Agent::classical(b"mallory", &mut rng);
        classical.key_package().validate(1, &mut vec![0u8; 4096]).unwrap();

        // Required from the start: the Add is refused, the group unchanged.
        let mut strict = alice_agent.create(&require_hybrid_extension(), &mut rng).unwrap();
        let before = snapshot(&strict);
        let refused = commit(&mut strict, &[classical.key_package()], &[], false, &mut rng);
        assert_eq!(refused.err(), Some(Error::Unsupported));
        assert_eq!(snapshot(&strict), before);
        // A classical member cannot found such a group either.
        assert_eq!(classical.create(&require_hybrid_extension(), &mut rng).err(), Some(Error::Unsupported));

        // A mixed group (no requirement) takes the classical member; then
        // requiring hybrid credentials is refused while they are in.
        let mut mixed = alice_agent.create(&[], &mut rng).unwrap();
        let mut sent = commit(&mut mixed, &[classical.key_package()], &[], false, &mut rng).unwrap();
        mixed.merge_pending_commit(&mut sent.pending).unwrap();
        let mut mallory = classical.join(&sent.welcome).unwrap();
        assert!(!mallory.requires_hybrid_credentials().unwrap());
        let ext = require_hybrid_extension();
        let proposals = Proposals { group_context_extensions: Some(&ext), ..Proposals::default() };
        let before = snapshot(&mixed);
        assert_eq!(
            commit_with(&mut mixed, &proposals, &Cache::new(), false, &mut rng).err(),
            Some(Error::Unsupported)
        );
        assert_eq!(snapshot(&mixed), before);
        // Once the classical member is removed, the requirement goes in.
        let proposals =
            Proposals { group_context_extensions: Some(&ext), removes: &[1], ..Proposals::default() };
        let mut sent = commit_with(&mut mixed, &proposals, &Cache::new(), false, &mut rng).unwrap();
        assert_eq!(process(&mut mallory, &sent.commit, &mut Cache::new()).unwrap(), CommitEvent::Removed);
        mixed.merge_pending_commit(&mut sent.pending).unwrap();
        assert!(mixed.requires_hybrid_credentials().unwrap());
    });
}

#[test]
fn the_ml_dsa_key_must_be_the_credentials_and_is_needed_to_resign() {
    big_stack(|| {
        let mut rng = TestRng::new(0x4859_4252_0004);
        let alice_agent = Agent::hybrid(b"alice", &mut rng);
        let mut alice: Box<G> = Box::default();
        alice.create_into(b"hybrid fleet", &alice_agent.keys(), &[], &mut rng).unwrap();
        assert!(!alice.has_ml_dsa_key());
        // Without it our hybrid leaf cannot be re-signed.
        let before = snapshot(&alice);
        assert_eq!(commit(&mut alice, &[], &[], true, &mut rng).err(), Some(Error::Unsupported));
        assert_eq!(snapshot(&alice), before);
        // Another key is refused.
        assert_eq!(alice.set_ml_dsa_key(&MlDsa65::generate(&mut rng)), Err(Error::Malformed));
        assert!(!alice.has_ml_dsa_key());
        alice.set_ml_dsa_key(alice_agent.ml_dsa.as_ref().unwrap()).unwrap();
        let mut sent = commit(&mut alice, &[], &[], true, &mut rng).unwrap();
        alice.merge_pending_commit(&mut sent.pending).unwrap();
        // A classical member has no hybrid credential to key.
        let mut classical = Agent::classical(b"bob", &mut rng).create(&[], &mut rng).unwrap();
        assert_eq!(classical.set_ml_dsa_key(&MlDsa65::generate(&mut rng)), Err(Error::Unsupported));
    });
}

#[test]
fn hybrid_slot_sizes() {
    let default = core::mem::size_of::<securemesh_mls_lite::DefaultGroup>();
    let hybrid = core::mem::size_of::<G>();
    println!("DefaultGroup: {default} bytes; Group<8, {HYBRID_LEAF_BYTES}, 32, 64>: {hybrid} bytes");
    assert!(hybrid <= 8 * (HYBRID_LEAF_BYTES + 256) + 32 * 1024, "{hybrid}");
    assert_eq!(requires_hybrid(&require_hybrid_extension()), Ok(true));
}

mod parsers {
    use super::*;
    use proptest::prelude::*;
    use securemesh_core::codec::Reader;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes into the hybrid credential, the signature
        /// extension, a leaf with the hybrid credential type and the
        /// required-capabilities check: typed errors, no panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), cut in 0usize..4096) {
            let _ = HybridCredential::parse(&mut Reader::new(&bytes));
            let _ = parse_leaf_signature(&bytes);
            let _ = requires_hybrid(&bytes);
            // A leaf: X25519 key, Ed25519 key, then the hybrid credential
            // type followed by the arbitrary bytes.
            let mut leaf = vec_v(&[1; 32]);
            leaf.extend(vec_v(&[2; 32]));
            leaf.extend(HYBRID_CREDENTIAL_TYPE.to_be_bytes());
            leaf.extend(&bytes[..cut.min(bytes.len())]);
            if let Ok(l) = LeafNode::from_bytes(&leaf) {
                let _ = check_required_capabilities(&l, &bytes);
                let _ = l.verify(b"g", 0, &mut vec![0u8; 4 * leaf.len() + 256]);
            }
        }

        /// A credential parses exactly when the identity's length prefix
        /// and the 1952-byte key fit.
        #[test]
        fn a_credential_parses_iff_complete(identity in proptest::collection::vec(any::<u8>(), 0..100), cut in 0usize..2100) {
            let mut data = vec_v(&identity);
            data.extend([9u8; 1952]);
            let bytes = vec_v(&data);
            let whole = bytes.len();
            let n = cut.min(whole);
            let parsed = HybridCredential::parse(&mut Reader::new(&bytes[..n]));
            prop_assert_eq!(parsed.is_ok(), n == whole);
            if let Ok(c) = parsed {
                prop_assert_eq!(c.identity, &identity[..]);
            }
        }
    }
}

#[test]
fn a_hybrid_member_joins_a_hybrid_only_group_by_an_external_commit() {
    use securemesh_mls_lite::external_commit::ExternalJoin;
    big_stack(|| {
        let mut rng = TestRng::new(0x4859_4252_0005);
        let alice_agent = Agent::hybrid(b"alice", &mut rng);
        let mut alice = alice_agent.create(&require_hybrid_extension(), &mut rng).unwrap();
        let mut info = vec![0u8; G::MAX_GROUP_INFO_LEN];
        let mut scratch = vec![0u8; G::MAX_GROUP_INFO_LEN];
        let n = alice.export_group_info(true, &mut info, &mut scratch).unwrap();
        info.truncate(n);
        let MlsMessageBody::GroupInfo(group_info) = MlsMessage::from_bytes(&info).unwrap().body else {
            panic!()
        };
        let (seed, ml_dsa) = (Ed25519::generate(&mut rng), MlDsa65::generate(&mut rng));
        let join = ExternalJoin { group_info, ratchet_tree: None, identity: b"erin", signature_priv: &seed };
        let options = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
        let (mut erin, mut spare): (Box<G>, Box<G>) = (Box::default(), Box::default());
        let mut out = vec![0u8; 64 * 1024];
        let mut scratch = vec![0u8; G::external_commit_scratch_len(info.len())];
        let store = PskStore::default();

        // A classical joiner is refused by the group's requirement.
        let refused = erin.join_by_external_commit(
            &join,
            &Proposals::default(),
            &store,
            &options,
            &mut rng,
            &mut spare,
            &mut out,
            &mut scratch,
        );
        assert_eq!(refused.err(), Some(Error::Unsupported));
        assert!(!erin.is_joined());

        let done = erin
            .join_by_external_commit_hybrid(
                &join,
                &ml_dsa,
                &Proposals::default(),
                &store,
                &options,
                &mut rng,
                &mut spare,
                &mut out,
                &mut scratch,
            )
            .unwrap();
        out.truncate(done.commit_len);
        assert_eq!(process(&mut alice, &out, &mut Cache::new()).unwrap(), CommitEvent::NewEpoch { epoch: 1 });
        common::assert_agree(&[&*alice, &*erin]);
        assert_eq!(ml_dsa_key_of(&alice, 1), MlDsa65::public_key(&ml_dsa));
        assert!(erin.has_ml_dsa_key());
        // Erin's leaf is re-signed in her next UpdatePath.
        let mut sent = commit(&mut erin, &[], &[], true, &mut rng).unwrap();
        assert_eq!(
            process(&mut alice, &sent.commit, &mut Cache::new()).unwrap(),
            CommitEvent::NewEpoch { epoch: 2 }
        );
        erin.merge_pending_commit(&mut sent.pending).unwrap();
        common::assert_agree(&[&*alice, &*erin]);
    });
}

#[test]
fn a_ratchet_tree_with_a_bad_ml_dsa_signature_is_refused() {
    use securemesh_mls_lite::tree::RatchetTree;
    big_stack(|| {
        let mut rng = TestRng::new(0x4859_4252_0006);
        let alice_agent = Agent::hybrid(b"alice", &mut rng);
        let mut alice = alice_agent.create(&[], &mut rng).unwrap();
        let bob = Agent::hybrid(b"bob", &mut rng);
        let mut sent = commit(&mut alice, &[bob.key_package()], &[], false, &mut rng).unwrap();
        alice.merge_pending_commit(&mut sent.pending).unwrap();
        let mut tree_bytes = vec![0u8; G::MAX_TREE_LEN];
        let n = alice.export_ratchet_tree(&mut tree_bytes).unwrap();
        tree_bytes.truncate(n);
        let mut scratch = vec![0u8; 4 * HYBRID_LEAF_BYTES];
        let mut tree: Box<RatchetTree<8, HYBRID_LEAF_BYTES>> = Box::default();
        tree.decode(&tree_bytes).unwrap();
        tree.validate(b"hybrid fleet", &mut scratch).unwrap();

        // Bob's leaf (still its KeyPackage's) with one bit of the ML-DSA
        // signature flipped and Ed25519 signed again: the same length.
        let kp = bob.key_package();
        let pre = pre_extensions(&kp.leaf_node);
        let mut bad = *parse_leaf_signature(&kp.leaf_node.extensions[4..]).unwrap();
        bad[7] ^= 0x80;
        let forged = forge(&bob, pre, &extension(ML_DSA_LEAF_SIGNATURE_EXTENSION, &bad));
        let forged_leaf = KeyPackage::from_bytes(&forged).unwrap().leaf_node.as_bytes().to_vec();
        let original = kp.leaf_node.as_bytes();
        let at = tree_bytes.windows(original.len()).position(|w| w == original).unwrap();
        tree_bytes[at..at + original.len()].copy_from_slice(&forged_leaf);
        tree.decode(&tree_bytes).unwrap();
        assert_eq!(tree.validate(b"hybrid fleet", &mut scratch), Err(Error::BadSignature));
    });
}

//! Untrusted KeyPackages: `KeyPackage::from_bytes`, `validate`,
//! `is_last_resort`, and adding a validated one with `Group::commit`.
//!
//! Setup: two creators' KeyPackages, built once: ciphersuite 0x0003
//! (`securemesh_fuzz::mls::key_package_creator`) and 0x004D, X-Wing
//! (`key_package_creator_xwing`); every run that gets a valid KeyPackage
//! makes a fresh one-member group of each (`Group<4, 256, 16, 16>` and
//! `Group<4, 1536, 16, 16>`, `create_into`, `TestRng`) and adds the
//! KeyPackage to both.
//!
//! Input: the bytes of one KeyPackage (bare, not in an `MLSMessage`).
//!
//! Properties checked:
//! - nothing panics;
//! - `validate(now)` at `KEY_PACKAGE_NOW`, 0 and `u64::MAX`: the error of
//!   `verify` when that fails; otherwise `Expired` exactly when the leaf's
//!   lifetime does not hold `now`, and within it `Ok` or `Unsupported`
//!   (credential, capabilities);
//! - a KeyPackage that validates at some `now` is added by each creator
//!   with `commit` (no removes), as a PublicMessage and as a
//!   PrivateMessage:
//!   - on `Err`, the creator's `encode_state` is unchanged byte for byte
//!     and the pending slot is empty;
//!   - `Ok` exactly when the KeyPackage's ciphersuite is the group's, the
//!     leaf fits the group's leaf bytes (256; 1536 for 0x004D) and its
//!     encryption and signature keys differ from the creator's; then the
//!     output is for epoch 1, the pending slot holds epoch 1 with two
//!     members, the commit parses as an `MLSMessage`, and the Welcome
//!     parses as an `MLSMessage` holding a Welcome of the group's
//!     ciphersuite.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_core::testing::TestRng;
use securemesh_fuzz::mls::{KEY_PACKAGE_NOW, key_package_creator, key_package_creator_xwing};
use securemesh_fuzz::noise::encode_state;
use securemesh_mls_lite::Error;
use securemesh_mls_lite::messages::{KeyPackage, WireFormat};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::CommitOptions;
use securemesh_mls_lite::testing::Candidate;
use securemesh_mls_lite::tree::node::LeafNodeSource;

/// The creators' groups: `B` leaf bytes.
type Creator<const B: usize> = securemesh_mls_lite::Group<4, B, 16, 16>;

/// Leaf bytes a member of the 0x0003 creator's group may have.
const LEAF_BYTES: usize = 256;

/// Leaf bytes a member of the 0x004D creator's group may have (an X-Wing
/// leaf is about 1.4 KB).
const XWING_LEAF_BYTES: usize = 1536;

/// The creators of the 0x0003 and the 0x004D group.
fn creators() -> &'static [Candidate; 2] {
    static C: OnceLock<[Candidate; 2]> = OnceLock::new();
    C.get_or_init(|| [key_package_creator(), key_package_creator_xwing()])
}

fuzz_target!(|data: &[u8]| {
    let Ok(kp) = KeyPackage::from_bytes(data) else { return };
    let _ = kp.is_last_resort();

    let mut scratch = vec![0u8; data.len().saturating_mul(2).saturating_add(100)];
    let verified = kp.verify(&mut scratch);
    let mut valid = false;
    for now in [KEY_PACKAGE_NOW, 0, u64::MAX] {
        let got = kp.validate(now, &mut scratch);
        match verified {
            Err(e) => assert_eq!(got, Err(e), "validate({now}) disagrees with verify"),
            Ok(()) => {
                let LeafNodeSource::KeyPackage { not_before, not_after } = kp.leaf_node.source else {
                    panic!("verify accepted a leaf whose source is not key_package");
                };
                if now < not_before || now > not_after {
                    assert_eq!(
                        got,
                        Err(Error::Expired),
                        "validate({now}), lifetime {not_before}..={not_after}"
                    );
                } else {
                    assert!(
                        matches!(got, Ok(()) | Err(Error::Unsupported)),
                        "validate({now}) within the lifetime: {got:?}"
                    );
                }
            }
        }
        valid |= got.is_ok();
    }
    if !valid {
        return;
    }

    add::<LEAF_BYTES>(&creators()[0], &kp, data.len());
    add::<XWING_LEAF_BYTES>(&creators()[1], &kp, data.len());
});

/// The creator `c` makes a fresh group (`Group<4, B, 16, 16>`) and adds `kp`
/// with `commit`, as a PublicMessage and as a PrivateMessage.
fn add<const B: usize>(c: &Candidate, kp: &KeyPackage<'_>, data_len: usize) {
    let own = c.keys().expect("the creator's keys");
    let mut rng = TestRng::new(0x6bc0_3317);
    let mut group: Box<Creator<B>> = Box::default();
    group.create_into(b"kp-fuzz", &own, &[], &mut rng).expect("the creator's group");
    let addable = kp.cipher_suite == own.key_package.cipher_suite
        && kp.leaf_node.as_bytes().len() <= B
        && kp.leaf_node.encryption_key != own.key_package.leaf_node.encryption_key
        && kp.leaf_node.signature_key != own.key_package.leaf_node.signature_key;
    let suite = own.key_package.cipher_suite;

    for wire_format in [WireFormat::PublicMessage, WireFormat::PrivateMessage] {
        let options = CommitOptions { wire_format, ..CommitOptions::default() };
        let mut pending: Box<Creator<B>> = Box::default();
        let mut commit = vec![0u8; data_len + 1024];
        let mut welcome = vec![0u8; Creator::<B>::welcome_len(1, options.ratchet_tree_in_welcome)];
        let mut scratch = vec![0u8; Creator::<B>::send_commit_scratch_len(data_len)];
        let before = encode_state(&*group);
        let result = group.commit(
            &[*kp],
            &[],
            &options,
            &mut rng,
            &mut pending,
            &mut commit,
            &mut welcome,
            &mut scratch,
        );
        match result {
            Ok(out) => {
                assert!(addable, "{suite:#06x} {wire_format:?}: added a KeyPackage that cannot be a member");
                assert_eq!(out.epoch, 1);
                assert!(pending.is_joined(), "{wire_format:?}: Ok without a pending epoch");
                assert_eq!((pending.epoch(), pending.members().count()), (1, 2));
                let m = MlsMessage::from_bytes(&commit[..out.commit_len]);
                assert!(m.is_ok(), "{wire_format:?}: the commit does not parse: {m:?}");
                let w = MlsMessage::from_bytes(&welcome[..out.welcome_len]);
                match w {
                    Ok(MlsMessage { body: MlsMessageBody::Welcome(w), .. }) => {
                        assert_eq!(w.cipher_suite, suite, "{wire_format:?}: the Welcome's ciphersuite")
                    }
                    other => panic!("{wire_format:?}: the Welcome does not parse as one: {other:?}"),
                }
            }
            Err(e) => {
                assert!(!addable, "{suite:#06x} {wire_format:?}: a valid KeyPackage was refused: {e:?}");
                assert!(
                    encode_state(&*group) == before,
                    "{suite:#06x} {wire_format:?}: a refused commit changed the group ({e:?})"
                );
                assert!(
                    !pending.is_joined(),
                    "{suite:#06x} {wire_format:?}: a refused commit left a pending epoch ({e:?})"
                );
            }
        }
    }
}

//! Joining from a Welcome (`Group::join_into`) on the
//! first entry of the mlswg `passive-client-welcome.json` vector (whose
//! GroupInfo carries the ratchet tree and whose GroupSecrets carries a path
//! secret):
//!
//! - the join succeeds and gives the published epoch authenticator;
//! - every single flipped byte of the Welcome makes the join fail, without
//!   panicking, and leaves the slot empty;
//! - a too-small scratch buffer or wrong private keys fail and leave the
//!   slot as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use securemesh_core::Secret;
use securemesh_mls_lite::Error;
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::messages::{KeyPackage, Welcome};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::welcome::JoinKeys;
use securemesh_mls_lite::{DefaultGroup, Group};

const VECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../test-vectors/mls/passive-client-welcome.json");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The first string value of `field` in the file (that of entry 0; no JSON
/// parser needed).
fn field(text: &str, name: &str) -> Vec<u8> {
    let key = format!("\"{name}\": \"");
    let start = text.find(&key).unwrap_or_else(|| panic!("no {name}")) + key.len();
    let len = text[start..].find('"').unwrap();
    unhex(&text[start..start + len])
}

fn secret(bytes: &[u8]) -> Secret32 {
    Secret::new(bytes.try_into().unwrap())
}

struct Entry {
    key_package: Vec<u8>,
    welcome: Vec<u8>,
    init_priv: Secret32,
    encryption_priv: Secret32,
    signature_priv: Secret32,
    epoch_authenticator: Vec<u8>,
}

fn entry() -> Entry {
    let text = std::fs::read_to_string(VECTOR).unwrap();
    Entry {
        key_package: field(&text, "key_package"),
        welcome: field(&text, "welcome"),
        init_priv: secret(&field(&text, "init_priv")),
        encryption_priv: secret(&field(&text, "encryption_priv")),
        signature_priv: secret(&field(&text, "signature_priv")),
        epoch_authenticator: field(&text, "initial_epoch_authenticator"),
    }
}

fn key_package(bytes: &[u8]) -> KeyPackage<'_> {
    match MlsMessage::from_bytes(bytes).unwrap().body {
        MlsMessageBody::KeyPackage(k) => k,
        _ => panic!("not a KeyPackage"),
    }
}

fn welcome(bytes: &[u8]) -> Result<Welcome<'_>, Error> {
    match MlsMessage::from_bytes(bytes)?.body {
        MlsMessageBody::Welcome(w) => Ok(w),
        _ => Err(Error::Malformed),
    }
}

fn keys(e: &Entry) -> JoinKeys<'_> {
    JoinKeys {
        key_package: key_package(&e.key_package),
        init_priv: &e.init_priv,
        encryption_priv: &e.encryption_priv,
        signature_priv: &e.signature_priv,
    }
}

fn join(slot: &mut Group, e: &Entry, welcome_bytes: &[u8]) -> Result<(), Error> {
    let w = welcome(welcome_bytes)?;
    let mut scratch = vec![0u8; DefaultGroup::scratch_len(welcome_bytes.len())];
    slot.join_into(&w, &keys(e), None, &[], &mut scratch)
}

#[test]
fn joins_the_vector_group() {
    let e = entry();
    let mut slot: Box<Group> = Box::default();
    join(&mut slot, &e, &e.welcome).unwrap();
    assert!(slot.is_joined());
    assert_eq!(slot.epoch_authenticator().expose(), &e.epoch_authenticator[..]);
    // The GroupSecrets carried a path secret: we hold keys above our leaf,
    // each matching the tree.
    assert!(!slot.path_keys().is_empty());
    for k in slot.path_keys() {
        assert!(slot.private_key(k.node).is_some());
    }
    assert!(slot.private_key(2 * slot.own_leaf()).is_some());
    let gc = slot.group_context();
    assert_eq!(gc.tree_hash, slot.tree().tree_hash(slot.tree().root()).unwrap());
}

#[test]
fn every_flipped_welcome_byte_fails_to_join() {
    let e = entry();
    let mut slot: Box<Group> = Box::default();
    let mut failed = 0usize;
    for i in 0..e.welcome.len() {
        for mask in [0x01u8, 0xff] {
            let mut bad = e.welcome.clone();
            bad[i] ^= mask;
            let r = join(&mut slot, &e, &bad);
            assert!(r.is_err(), "byte {i} ^ {mask:#04x} joined");
            assert!(!slot.is_joined(), "byte {i}: slot left joined");
            failed += 1;
        }
    }
    assert_eq!(failed, 2 * e.welcome.len());
    // The same slot still joins from the intact Welcome.
    join(&mut slot, &e, &e.welcome).unwrap();
    assert_eq!(slot.epoch_authenticator().expose(), &e.epoch_authenticator[..]);
}

#[test]
fn small_scratch_or_wrong_keys_change_nothing() {
    let e = entry();
    let w = welcome(&e.welcome).unwrap();
    let mut slot: Box<Group> = Box::default();
    let mut tiny = [0u8; 64];
    let needed = match slot.join_into(&w, &keys(&e), None, &[], &mut tiny) {
        Err(Error::BufferTooSmall { needed }) => needed,
        other => panic!("{other:?}"),
    };
    assert!(!slot.is_joined());
    assert!(needed <= DefaultGroup::scratch_len(e.welcome.len()));
    let mut scratch = vec![0u8; needed];
    slot.join_into(&w, &keys(&e), None, &[], &mut scratch).unwrap();
    let auth = slot.epoch_authenticator().expose().to_vec();

    // Wrong init key: the GroupSecrets do not open; the joined slot stays as it was.
    let wrong = secret(&[7u8; 32]);
    let bad = JoinKeys { init_priv: &wrong, ..keys(&e) };
    assert_eq!(slot.join_into(&w, &bad, None, &[], &mut scratch), Err(Error::Decrypt));
    assert!(slot.is_joined());
    assert_eq!(slot.epoch_authenticator().expose(), &auth[..]);

    // Wrong leaf keys are refused before the slot is touched.
    let bad = JoinKeys { encryption_priv: &wrong, ..keys(&e) };
    assert!(slot.join_into(&w, &bad, None, &[], &mut scratch).is_err());
    let bad = JoinKeys { signature_priv: &wrong, ..keys(&e) };
    assert!(slot.join_into(&w, &bad, None, &[], &mut scratch).is_err());
    assert!(slot.is_joined());
    assert_eq!(slot.epoch_authenticator().expose(), &auth[..]);
}

#[test]
fn state_size_ceiling_and_static_slot() {
    // The tree dominates; the ceilings keep the static reservation honest.
    // (64 KiB since the parents' tree hashes are cached: 33 bytes a slot.)
    // With feature `x-wing` each parent has room for an X-Wing key (1216
    // bytes and its length) instead of 32 bytes.
    let per_parent = core::mem::size_of::<securemesh_mls_lite::crypto::suite::HpkePublicKey>() - 32;
    let size = core::mem::size_of::<Group>();
    println!("Group<64, 384, 64, 256>: {size} bytes");
    assert!(size <= 64 * 1024 + 64 * per_parent, "{size}");
    // The secret-tree state (node secrets, ratchets, 32 skipped keys).
    let ratchets = core::mem::size_of::<securemesh_mls_lite::sender_ratchets::SenderRatchets>();
    println!("SenderRatchets<64, 32>: {ratchets} bytes");
    assert!(ratchets <= 12 * 1024, "{ratchets}");
    let small = core::mem::size_of::<Group<8, 384, 32, 64>>();
    println!("Group<8, 384, 32, 64>: {small} bytes");
    assert!(small <= 12 * 1024 + 8 * per_parent, "{small}");
    // `new` is const: a slot can live in a static.
    static SLOT: std::sync::Mutex<Group<8, 384, 32, 64>> = std::sync::Mutex::new(Group::new());
    assert!(!SLOT.lock().unwrap().is_joined());
}

#[test]
#[allow(deprecated)]
fn the_former_name_still_compiles() {
    use securemesh_mls_lite::welcome::JoinedGroup;
    let slot: Box<JoinedGroup> = Box::default();
    let group: &Group = &slot;
    assert!(!group.is_joined());
    assert_eq!(JoinedGroup::<8>::scratch_len(10), Group::<8>::scratch_len(10));
}

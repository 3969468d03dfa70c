//! OpenMLS 0.9 creates a group (suite 0x0003, ratchet tree in the
//! Welcome) and adds a member whose KeyPackage securemesh-mls-lite made;
//! our member joins from OpenMLS's Welcome; both must agree on the epoch
//! authenticator and an exporter value. Exits non-zero on any failure.

use openmls::prelude::{tls_codec::*, *};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use securemesh_core::crypto::{Ed25519, Signature};
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package, key_package_len};
use securemesh_mls_lite::messages::{KeyPackage as LKp, MlsMessage, MlsMessageBody};
use securemesh_mls_lite::{Group, JoinKeys};
type G = Group<8, 384, 32, 64>;

fn main() {
    let mut rng = TestRng::new(7);
    let sig = Ed25519::generate(&mut rng);
    let params =
        KeyPackageParams { identity: b"ours", not_before: 0, not_after: u64::MAX, last_resort: false };
    let mut kpb = vec![0u8; key_package_len(4)];
    let (n, secrets) = create_key_package(&params, &sig, &mut rng, &mut kpb, &mut vec![0u8; 1024]).unwrap();
    kpb.truncate(n);

    let provider = OpenMlsRustCrypto::default();
    let cs = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
    let signer = SignatureKeyPair::new(cs.signature_algorithm()).unwrap();
    signer.store(provider.storage()).unwrap();
    let cwk = CredentialWithKey {
        credential: BasicCredential::new(b"openmls".to_vec()).into(),
        signature_key: signer.public().into(),
    };
    let cfg = MlsGroupCreateConfig::builder().ciphersuite(cs).use_ratchet_tree_extension(true).build();
    let mut group = MlsGroup::new(&provider, &signer, &cfg, cwk).unwrap();

    let kpin = KeyPackageIn::tls_deserialize(&mut kpb.as_slice()).expect("OpenMLS parses our KeyPackage");
    let kp =
        kpin.validate(provider.crypto(), ProtocolVersion::Mls10).expect("OpenMLS validates our KeyPackage");
    println!("OK KeyPackage validated");
    let (_commit, welcome, _gi) =
        group.add_members(&provider, &signer, &[kp]).expect("OpenMLS adds our member");
    group.merge_pending_commit(&provider).unwrap();
    let wb = welcome.tls_serialize_detached().unwrap();
    println!("OK Welcome {} bytes", wb.len());

    let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(&wb).unwrap().body else { panic!("not welcome") };
    let keys = JoinKeys {
        key_package: LKp::from_bytes(&kpb).unwrap(),
        init_priv: &secrets.init_priv,
        encryption_priv: &secrets.encryption_priv,
        signature_priv: &sig,
    };
    let mut g: Box<G> = Box::default();
    let mut scratch = vec![0u8; G::scratch_len(wb.len())];
    g.join_into(&w, &keys, None, &[], &mut scratch).expect("we join from OpenMLS's Welcome");
    println!("OK joined epoch {}", g.epoch());
    let ea = group.epoch_authenticator().as_slice().to_vec();
    assert_eq!(&ea[..], &g.epoch_authenticator().expose()[..], "epoch authenticator");
    println!("OK epoch authenticator equal");
    let theirs = group.export_secret(provider.crypto(), "test", b"ctx", 32).unwrap();
    let mut ours = [0u8; 32];
    g.export_secret(b"test", b"ctx", &mut ours).unwrap();
    assert_eq!(theirs, ours, "exporter");
    println!("OK exporter equal");
}

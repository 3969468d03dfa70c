//! Robustness of the message parsers and of framing:
//!
//! - random bytes and single bit flips of the mlswg vectors (seeds) into
//!   every parser never panic, and whatever parses re-encodes to exactly
//!   its input;
//! - every single bit flip of a published PublicMessage or PrivateMessage
//!   (`message-protection.json`) is rejected by parsing, decryption or
//!   verification.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use securemesh_core::Secret;
use securemesh_core::codec::{Reader, Writer};
use securemesh_mls_lite::Error;
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::framing::{
    AuthenticatedContent, FramedContent, FramedContentAuthData, PrivateMessage, PublicMessage,
    SecretTreeKeys, Sender,
};
use securemesh_mls_lite::key_schedule::GroupContext;
use securemesh_mls_lite::messages::{
    Commit, EncryptedGroupSecrets, GroupInfo, GroupSecrets, KeyPackage, PreSharedKeyId, Proposal,
    ProposalBody, ProposalOrRef, ReInit, Welcome, parse_group_context,
};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use std::sync::OnceLock;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../test-vectors/mls/");

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Every hex string value of a JSON file (no JSON parser needed).
fn hex_values(text: &str) -> Vec<Vec<u8>> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.len() >= 2 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .filter_map(unhex)
        .collect()
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut all = Vec::new();
        for f in ["message-protection.json", "transcript-hashes.json", "messages.json"] {
            let text = std::fs::read_to_string(format!("{VECTORS}{f}")).expect("vector file");
            all.extend(hex_values(&text));
        }
        assert!(all.len() > 1500, "seeds: {}", all.len());
        all
    })
}

/// Whatever parses whole must write back exactly its input.
fn same(bytes: &[u8], raw: &[u8], write: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>) {
    assert_eq!(raw, bytes);
    let mut out = vec![0u8; bytes.len() + 16];
    let mut w = Writer::new(&mut out);
    write(&mut w).unwrap();
    let n = w.finish().unwrap();
    assert_eq!(&out[..n], bytes);
}

/// Run `bytes` through every parser (and the accessors and verifiers of
/// what parses). Must not panic.
fn every_parser(bytes: &[u8]) {
    let key = Secret32::new([7u8; 32]);
    let gc = GroupContext {
        cipher_suite: 3,
        group_id: b"g",
        epoch: 0,
        tree_hash: &[0; 32],
        confirmed_transcript_hash: &[],
        extensions: &[],
    };
    let mut scratch = vec![0u8; 2 * bytes.len() + 1024];
    let mut plaintext = vec![0u8; bytes.len()];

    if let Ok(m) = MlsMessage::from_bytes(bytes) {
        same(bytes, m.as_bytes(), |w| m.write_to(w));
        match m.body {
            MlsMessageBody::PublicMessage(p) => {
                let _ = p.verify(&[1; 32], &gc, &key, &mut scratch);
            }
            MlsMessageBody::PrivateMessage(p) => {
                let keys = SecretTreeKeys::new(&key, 4, 8);
                let _ = p.open(&key, &keys, &mut plaintext).map(|o| o.verify(&[1; 32], &gc, &mut scratch));
            }
            MlsMessageBody::Welcome(wl) => {
                let _ = wl.secrets_for(&[0; 32]);
            }
            MlsMessageBody::GroupInfo(g) => {
                let _ = g.verify(&[1; 32], &mut scratch);
            }
            MlsMessageBody::KeyPackage(k) => {
                let _ = k.verify(&mut scratch);
                let _ = k.reference();
            }
        }
    }
    if let Ok(k) = KeyPackage::from_bytes(bytes) {
        same(bytes, k.as_bytes(), |w| k.write_to(w));
        let _ = k.verify(&mut scratch);
    }
    if let Ok(p) = Proposal::from_bytes(bytes) {
        same(bytes, p.as_bytes(), |w| p.write_to(w));
    }
    for ty in 0..9u16 {
        if let Ok(b) = ProposalBody::from_bytes(ty, bytes) {
            same(bytes, bytes, |w| b.write_to(w));
        }
    }
    if let Ok(c) = Commit::from_bytes(bytes) {
        same(bytes, c.as_bytes(), |w| c.write_to(w));
        for p in c.proposals() {
            p.unwrap();
        }
    }
    if let Ok(p) = PreSharedKeyId::from_bytes(bytes) {
        same(bytes, p.as_bytes(), |w| p.write_to(w));
    }
    if let Ok(g) = GroupInfo::from_bytes(bytes) {
        same(bytes, g.as_bytes(), |w| g.write_to(w));
    }
    if let Ok(g) = GroupSecrets::from_bytes(bytes) {
        same(bytes, g.as_bytes(), |w| g.write_to(w));
    }
    if let Ok(wl) = Welcome::from_bytes(bytes) {
        same(bytes, wl.as_bytes(), |w| wl.write_to(w));
    }
    if let Ok(p) = PublicMessage::from_bytes(bytes) {
        same(bytes, p.as_bytes(), |w| p.write_to(w));
        let _ = p.verify(&[1; 32], &gc, &key, &mut scratch);
    }
    if let Ok(p) = PrivateMessage::from_bytes(bytes) {
        same(bytes, p.as_bytes(), |w| p.write_to(w));
        let _ = p.sender_data(&key);
    }
    if let Ok(a) = AuthenticatedContent::from_bytes(bytes) {
        same(bytes, bytes, |w| a.write_to(w));
        let _ = a.proposal_ref();
        let _ = securemesh_mls_lite::transcript::TranscriptHashes::after_commit(&[], &a);
    }
    // Parsers from a reader (prefix parses): must not panic, and a failed
    // parse consumes nothing.
    macro_rules! prefix {
        ($($parse:expr),* $(,)?) => {$(
            let mut r = Reader::new(bytes);
            if $parse(&mut r).is_err() {
                assert_eq!(r.position(), 0);
            }
        )*};
    }
    prefix!(
        ProposalOrRef::parse,
        ReInit::parse,
        EncryptedGroupSecrets::parse,
        FramedContent::parse,
        Sender::parse,
        parse_group_context,
        MlsMessage::parse,
        Commit::parse,
        KeyPackage::parse,
        GroupInfo::parse,
        PrivateMessage::parse,
        PublicMessage::parse,
    );
}

#[test]
fn vectors_parse_and_survive_every_parser() {
    let mut parsed = 0;
    for s in seeds() {
        every_parser(s);
        parsed += usize::from(MlsMessage::from_bytes(s).is_ok());
    }
    // 7 MLSMessages per messages.json entry are well above this.
    assert!(parsed >= 500, "{parsed}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        every_parser(&bytes);
    }

    #[test]
    fn bit_flips_of_vectors_never_panic(
        index in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let seed = index.get(seeds());
        let mut bytes = seed.clone();
        if !bytes.is_empty() {
            let i = bit.index(bytes.len() * 8);
            bytes[i / 8] ^= 1 << (i % 8);
        }
        every_parser(&bytes);
    }

    #[test]
    fn truncations_of_vectors_never_panic(
        index in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let seed = index.get(seeds());
        let n = cut.index(seed.len() + 1);
        every_parser(&seed[..n]);
        every_parser(&seed[seed.len() - n..]);
    }
}

/// `message-protection.json`'s one entry, read by hand.
struct Protection {
    group_id: Vec<u8>,
    epoch: u64,
    tree_hash: Vec<u8>,
    cth: Vec<u8>,
    signature_pub: [u8; 32],
    signature_priv: [u8; 32],
    encryption_secret: Secret32,
    sender_data_secret: Secret32,
    membership_key: Secret32,
    text: String,
}

fn field<'t>(text: &'t str, name: &str) -> &'t str {
    let at = text.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
    let rest = text[at..].trim_start();
    let end = rest.find([',', '\n', '}']).unwrap();
    rest[..end].trim().trim_matches('"')
}

impl Protection {
    fn load() -> Self {
        let text = std::fs::read_to_string(format!("{VECTORS}message-protection.json")).unwrap();
        let b = |n: &str| unhex(field(&text, n)).unwrap();
        let s = |n: &str| Secret::new(<[u8; 32]>::try_from(b(n)).unwrap());
        Protection {
            group_id: b("group_id"),
            epoch: field(&text, "epoch").parse().unwrap(),
            tree_hash: b("tree_hash"),
            cth: b("confirmed_transcript_hash"),
            signature_pub: b("signature_pub").try_into().unwrap(),
            signature_priv: b("signature_priv").try_into().unwrap(),
            encryption_secret: s("encryption_secret"),
            sender_data_secret: s("sender_data_secret"),
            membership_key: s("membership_key"),
            text: text.clone(),
        }
    }

    fn gc(&self) -> GroupContext<'_> {
        GroupContext {
            cipher_suite: 3,
            group_id: &self.group_id,
            epoch: self.epoch,
            tree_hash: &self.tree_hash,
            confirmed_transcript_hash: &self.cth,
            extensions: &[],
        }
    }

    /// Parse and authenticate one MLSMessage as the vector says.
    fn accept(&self, bytes: &[u8]) -> Result<(), Error> {
        let mut scratch = vec![0u8; 4096];
        let mut plaintext = vec![0u8; bytes.len()];
        match MlsMessage::from_bytes(bytes)?.body {
            MlsMessageBody::PublicMessage(p) => {
                p.verify(&self.signature_pub, &self.gc(), &self.membership_key, &mut scratch).map(|_| ())
            }
            MlsMessageBody::PrivateMessage(p) => {
                let keys = SecretTreeKeys::new(&self.encryption_secret, 2, 64);
                p.unprotect(
                    &self.sender_data_secret,
                    &keys,
                    |l| (l == 1).then_some(self.signature_pub),
                    &self.gc(),
                    &mut plaintext,
                    &mut scratch,
                )
                .map(|_| ())
            }
            _ => Err(Error::Malformed),
        }
    }
}

#[test]
fn every_bit_flip_of_a_protected_message_is_rejected() {
    let v = Protection::load();
    let mut flips = 0;
    for name in ["proposal_pub", "commit_pub", "proposal_priv", "commit_priv", "application_priv"] {
        let good = unhex(field(&v.text, name)).unwrap();
        v.accept(&good).unwrap_or_else(|e| panic!("{name}: {e}"));
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(v.accept(&bad).is_err(), "{name}: flip of bit {i} accepted");
            flips += 1;
        }
        // Truncated or extended: rejected too.
        assert!(v.accept(&good[..good.len() - 1]).is_err());
        let mut longer = good.clone();
        longer.push(0);
        assert!(v.accept(&longer).is_err());
    }
    assert!(flips > 5000);
}

#[test]
fn a_wrong_epoch_or_group_is_rejected_before_crypto() {
    let v = Protection::load();
    let good = unhex(field(&v.text, "proposal_pub")).unwrap();
    let MlsMessageBody::PublicMessage(p) = MlsMessage::from_bytes(&good).unwrap().body else { panic!() };
    let mut scratch = vec![0u8; 4096];
    let mut gc = v.gc();
    gc.epoch += 1;
    assert_eq!(p.verify(&v.signature_pub, &gc, &v.membership_key, &mut scratch), Err(Error::Malformed));
    let mut gc = v.gc();
    gc.group_id = b"other";
    assert_eq!(p.verify(&v.signature_pub, &gc, &v.membership_key, &mut scratch), Err(Error::Malformed));
    // Exactly `sign_scratch_len` bytes of scratch are enough; one less is a
    // typed error.
    let need = securemesh_mls_lite::framing::sign_scratch_len(
        securemesh_mls_lite::messages::WireFormat::PublicMessage,
        &p.content,
        &v.gc(),
    )
    .unwrap();
    let mut exact = vec![0u8; need];
    p.verify(&v.signature_pub, &v.gc(), &v.membership_key, &mut exact).unwrap();
    assert_eq!(
        p.verify(&v.signature_pub, &v.gc(), &v.membership_key, &mut exact[..need - 1]),
        Err(Error::BufferTooSmall { needed: need })
    );
    // Too little scratch for the signature input: a typed error, no panic.
    let mut small = [0u8; 16];
    assert!(matches!(
        p.verify(&v.signature_pub, &v.gc(), &v.membership_key, &mut small),
        Err(Error::BufferTooSmall { .. })
    ));
}

#[test]
fn protect_reports_the_size_it_needs_and_writes_nothing() {
    let v = Protection::load();
    let good = unhex(field(&v.text, "commit_pub")).unwrap();
    let MlsMessageBody::PublicMessage(p) = MlsMessage::from_bytes(&good).unwrap().body else { panic!() };
    let ac = AuthenticatedContent {
        wire_format: securemesh_mls_lite::messages::WireFormat::PublicMessage,
        content: p.content,
        auth: FramedContentAuthData {
            signature: p.auth.signature,
            confirmation_tag: p.auth.confirmation_tag,
        },
    };
    let mut out = vec![0xaau8; good.len() - 1];
    assert_eq!(
        securemesh_mls_lite::framing::protect_public(&ac, &v.gc(), &v.membership_key, &mut out),
        Err(Error::BufferTooSmall { needed: good.len() })
    );
    assert!(out.iter().all(|b| *b == 0xaa));
    let mut out = vec![0u8; good.len()];
    let n = securemesh_mls_lite::framing::protect_public(&ac, &v.gc(), &v.membership_key, &mut out).unwrap();
    assert_eq!(&out[..n], &good[..]);

    // The private framing of the same content, too small by one byte.
    let keys = SecretTreeKeys::new(&v.encryption_secret, 2, 64);
    let kn = securemesh_mls_lite::framing::SenderKeys::key_nonce(
        &keys,
        1,
        0,
        securemesh_mls_lite::secret_tree::RatchetKind::Handshake,
    )
    .unwrap();
    let private =
        AuthenticatedContent { wire_format: securemesh_mls_lite::messages::WireFormat::PrivateMessage, ..ac };
    let mut rng = securemesh_core::testing::TestRng::new(1);
    let Err(Error::BufferTooSmall { needed }) = securemesh_mls_lite::framing::protect_private(
        &private,
        &v.sender_data_secret,
        &kn,
        0,
        0,
        &mut rng,
        &mut [0u8; 8],
    ) else {
        panic!("expected BufferTooSmall")
    };
    let mut out = vec![0x55u8; needed - 1];
    assert_eq!(
        securemesh_mls_lite::framing::protect_private(
            &private,
            &v.sender_data_secret,
            &kn,
            0,
            0,
            &mut rng,
            &mut out
        ),
        Err(Error::BufferTooSmall { needed })
    );
    assert!(out.iter().all(|b| *b == 0x55));
    let mut out = vec![0u8; needed];
    let protect =
        |ac: &AuthenticatedContent<'_>, rng: &mut securemesh_core::testing::TestRng, out: &mut [u8]| {
            securemesh_mls_lite::framing::protect_private(ac, &v.sender_data_secret, &kn, 0, 0, rng, out)
        };
    assert_eq!(protect(&private, &mut rng, &mut out), Ok(needed));
    // The PublicMessage's signature does not carry over: the wire format is
    // signed.
    assert_eq!(v.accept(&out), Err(Error::BadSignature));
    use securemesh_core::crypto::{Ed25519, Signature};
    let key = Ed25519::signing_key(&Secret::new(v.signature_priv));
    let mut scratch = vec![0u8; 4096];
    let sig = securemesh_mls_lite::framing::sign(
        securemesh_mls_lite::messages::WireFormat::PrivateMessage,
        &private.content,
        &key,
        &v.gc(),
        &mut scratch,
    )
    .unwrap();
    let private =
        AuthenticatedContent { auth: FramedContentAuthData { signature: &sig, ..private.auth }, ..private };
    let n = protect(&private, &mut rng, &mut out).unwrap();
    v.accept(&out[..n]).unwrap();
}

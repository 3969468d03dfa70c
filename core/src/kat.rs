//! Known-answer self tests of the default suite against published RFC
//! vectors, run through the suite traits (so they test our wiring, not only
//! the underlying crates).
//!
//! The same functions run in `cargo test`, in the conformance run
//! (`securemesh-test-vectors`) and on Cortex-M firmware under QEMU, so a
//! device can also run them as power-on self tests. Each returns a
//! [`KatResult`]: a vector passes only if every check of it passes.
//!
//! Sources (test vectors are facts taken from the RFCs, IETF Trust):
//! RFC 7748 §5.2 and §6.1 (X25519), RFC 8439 §2.8.2 (ChaCha20-Poly1305),
//! RFC 5869 Appendix A.1–A.3 (HKDF-SHA256), RFC 8032 §7.1 TEST 1–3 (Ed25519).
//!
//! ```
//! for r in securemesh_core::kat::all() {
//!     assert!(r.is_ok(), "{} {}/{}", r.name, r.passed, r.total);
//! }
//! ```

use crate::crypto::{Aead, ChaChaPoly, Dh, Ed25519, Hash, Sha256, Signature, X25519};
use crate::{Secret, ct_eq};

/// Outcome of one family of known-answer tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KatResult {
    /// Source and primitive, e.g. `"rfc7748 x25519"`.
    pub name: &'static str,
    /// Vectors that passed.
    pub passed: u32,
    /// Vectors run.
    pub total: u32,
}

impl KatResult {
    /// Whether every vector passed (and there was at least one).
    pub const fn is_ok(&self) -> bool {
        self.total > 0 && self.passed == self.total
    }
}

/// Decode hex at compile time. Only used in `const` items, where bad input
/// (or an overflow) is a compile error, never a runtime panic.
#[allow(clippy::panic, clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn hex<const N: usize>(s: &str) -> [u8; N] {
    const fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex digit"),
        }
    }
    let b = s.as_bytes();
    if b.len() != 2 * N {
        panic!("hex length");
    }
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

struct Tally {
    name: &'static str,
    passed: u32,
    total: u32,
}

impl Tally {
    const fn new(name: &'static str) -> Self {
        Tally { name, passed: 0, total: 0 }
    }
    fn check(&mut self, ok: bool) {
        // A suite checks a fixed handful of vectors, far from `u32::MAX`;
        // saturating only removes the panic path.
        self.total = self.total.saturating_add(1);
        self.passed = self.passed.saturating_add(u32::from(ok));
    }
    const fn done(self) -> KatResult {
        KatResult { name: self.name, passed: self.passed, total: self.total }
    }
}

// RFC 7748 §5.2: (scalar, u-coordinate, output).
const X25519_52: [([u8; 32], [u8; 32], [u8; 32]); 2] = [
    (
        hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
        hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
        hex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ),
    (
        hex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
        hex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"),
        hex("95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
    ),
];
/// RFC 7748 §5.2: k = u = 9, after one iteration.
const X25519_ITER1: [u8; 32] = hex("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
/// RFC 7748 §5.2: after 1,000 iterations (host tests only: 1.7 G
/// instructions on a Cortex-M4).
pub const X25519_ITER1000: [u8; 32] = hex("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
const ALICE_SK: [u8; 32] = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
const ALICE_PK: [u8; 32] = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
const BOB_SK: [u8; 32] = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
const BOB_PK: [u8; 32] = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
const SHARED: [u8; 32] = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

/// `X25519(k, u)` iterated `n` times from `k = u = 9` (RFC 7748 §5.2).
pub fn x25519_iterate(n: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    for _ in 0..n {
        let r = X25519::dh(&Secret::new(k), &u).into_secret();
        u = k;
        k = *r.expose();
    }
    k
}

/// RFC 7748 X25519: §5.2 vectors 1–2, §5.2 one iteration, §6.1 key
/// agreement (both public keys and the shared secret from both sides).
pub fn x25519_rfc7748() -> KatResult {
    let mut t = Tally::new("rfc7748 x25519");
    for (k, u, out) in &X25519_52 {
        let r = X25519::dh(&Secret::new(*k), u);
        t.check(r.is_contributory() && ct_eq(r.into_secret().expose(), out));
    }
    t.check(x25519_iterate(1) == X25519_ITER1);
    let (a, b) = (Secret::new(ALICE_SK), Secret::new(BOB_SK));
    let ab = X25519::dh(&a, &BOB_PK).into_secret();
    let ba = X25519::dh(&b, &ALICE_PK).into_secret();
    t.check(
        X25519::public_key(&a) == ALICE_PK
            && X25519::public_key(&b) == BOB_PK
            && ct_eq(ab.expose(), &SHARED)
            && ct_eq(ba.expose(), &SHARED),
    );
    t.done()
}

// RFC 8439 §2.8.2.
const AEAD_KEY: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
const AEAD_NONCE: [u8; 12] = hex("070000004041424344454647");
const AEAD_AAD: [u8; 12] = hex("50515253c0c1c2c3c4c5c6c7");
const AEAD_PT: &[u8; 114] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
const AEAD_CT: [u8; 114] = hex(concat!(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6",
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36",
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc",
    "3ff4def08e4b7a9de576d26586cec64b6116"
));
const AEAD_TAG: [u8; 16] = hex("1ae10b594f09e26a7e902ecbd0600691");

/// RFC 8439 §2.8.2 ChaCha20-Poly1305: seal gives the published ciphertext
/// and tag, open recovers the plaintext, and a flipped tag or AAD bit is
/// rejected leaving the buffer unchanged.
pub fn chacha20poly1305_rfc8439() -> KatResult {
    let mut t = Tally::new("rfc8439 chacha20poly1305");
    let key = Secret::new(AEAD_KEY);
    let mut buf = [0u8; 114 + 16];
    let (msg, tag) = buf.split_at_mut(114);
    msg.copy_from_slice(AEAD_PT);
    tag.fill(0);
    let sealed = ChaChaPoly::seal(&key, &AEAD_NONCE, &AEAD_AAD, &mut buf, 114);
    let mut ok = sealed == Ok(130) && buf.starts_with(&AEAD_CT) && buf.ends_with(&AEAD_TAG);
    let mut bad_tag = buf;
    if let Some(last) = bad_tag.last_mut() {
        *last ^= 1;
    }
    let before = bad_tag;
    ok &= ChaChaPoly::open(&key, &AEAD_NONCE, &AEAD_AAD, &mut bad_tag).is_err() && bad_tag == before;
    let mut bad_aad = AEAD_AAD;
    bad_aad[0] ^= 0x80;
    ok &= ChaChaPoly::open(&key, &AEAD_NONCE, &bad_aad, &mut buf.clone()).is_err();
    ok &= ChaChaPoly::open(&key, &AEAD_NONCE, &AEAD_AAD, &mut buf) == Ok(114) && buf.starts_with(AEAD_PT);
    t.check(ok);
    t.done()
}

/// One RFC 5869 case: (IKM, salt, info, PRK, OKM).
type HkdfCase = (&'static [u8], &'static [u8], &'static [u8], [u8; 32], &'static [u8]);

/// `start, start+1, ...` at compile time (the RFC 5869 A.2 inputs). Only
/// used in `const` items: `i < N` bounds the index, and an overflow would be
/// a compile error.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn seq<const N: usize>(start: u8) -> [u8; N] {
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = start.wrapping_add(i as u8);
        i += 1;
    }
    out
}

const IKM_0B: [u8; 22] = [0x0b; 22];
const SALT_1: [u8; 13] = seq(0x00);
const INFO_1: [u8; 10] = seq(0xf0);
const IKM_2: [u8; 80] = seq(0x00);
const SALT_2: [u8; 80] = seq(0x60);
const INFO_2: [u8; 80] = seq(0xb0);
const OKM_1: [u8; 42] =
    hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
const OKM_2: [u8; 82] = hex(concat!(
    "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c",
    "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71",
    "cc30c58179ec3e87c14c01d5c1f3434f1d87"
));
const OKM_3: [u8; 42] =
    hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
const HKDF_CASES: [HkdfCase; 3] = [
    (
        &IKM_0B,
        &SALT_1,
        &INFO_1,
        hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"),
        &OKM_1,
    ),
    (
        &IKM_2,
        &SALT_2,
        &INFO_2,
        hex("06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244"),
        &OKM_2,
    ),
    (&IKM_0B, &[], &[], hex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"), &OKM_3),
];

/// RFC 5869 Appendix A.1–A.3: HKDF-SHA256 extract (PRK) and expand (OKM).
pub fn hkdf_sha256_rfc5869() -> KatResult {
    let mut t = Tally::new("rfc5869 hkdf-sha256");
    for (ikm, salt, info, prk, okm) in &HKDF_CASES {
        let got_prk = Sha256::hkdf_extract(salt, ikm);
        let mut out = [0u8; 82];
        let ok = match out.get_mut(..okm.len()) {
            Some(dst) => Sha256::hkdf_expand(got_prk.expose(), &[info], dst).is_ok() && ct_eq(dst, okm),
            None => false,
        };
        t.check(ok && ct_eq(got_prk.expose(), prk));
    }
    t.done()
}

/// One RFC 8032 case: (secret seed, public key, message, signature).
type Ed25519Case = ([u8; 32], [u8; 32], &'static [u8], [u8; 64]);

const ED25519_CASES: [Ed25519Case; 3] = [
    (
        hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
        hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
        &[],
        hex(concat!(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )),
    ),
    (
        hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
        hex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
        &[0x72],
        hex(concat!(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da",
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        )),
    ),
    (
        hex("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"),
        hex("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
        &[0xaf, 0x82],
        hex(concat!(
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac",
            "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        )),
    ),
];

/// RFC 8032 §7.1 TEST 1–3 (Ed25519): public key from seed, deterministic
/// signature, strict verification, and rejection of a flipped signature bit.
pub fn ed25519_rfc8032() -> KatResult {
    let mut t = Tally::new("rfc8032 ed25519");
    for (seed, public, msg, sig) in &ED25519_CASES {
        let key = Ed25519::signing_key(&Secret::new(*seed));
        let mut bad = *sig;
        bad[0] ^= 1;
        t.check(
            Ed25519::verifying_key(&key) == *public
                && Ed25519::sign(&key, msg) == *sig
                && Ed25519::verify(public, msg, sig).is_ok()
                && Ed25519::verify(public, msg, &bad).is_err(),
        );
    }
    t.done()
}

/// Every known-answer family of the default suite.
pub fn all() -> [KatResult; 4] {
    [x25519_rfc7748(), chacha20poly1305_rfc8439(), hkdf_sha256_rfc5869(), ed25519_rfc8032()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7748_x25519() {
        assert_eq!(x25519_rfc7748(), KatResult { name: "rfc7748 x25519", passed: 4, total: 4 });
    }

    #[test]
    fn rfc7748_x25519_1000_iterations() {
        assert_eq!(x25519_iterate(1000), X25519_ITER1000);
    }

    #[test]
    fn rfc8439_chacha20poly1305() {
        assert_eq!(
            chacha20poly1305_rfc8439(),
            KatResult { name: "rfc8439 chacha20poly1305", passed: 1, total: 1 }
        );
    }

    #[test]
    fn rfc5869_hkdf_sha256() {
        assert_eq!(hkdf_sha256_rfc5869(), KatResult { name: "rfc5869 hkdf-sha256", passed: 3, total: 3 });
    }

    #[test]
    fn rfc8032_ed25519() {
        assert_eq!(ed25519_rfc8032(), KatResult { name: "rfc8032 ed25519", passed: 3, total: 3 });
    }

    #[test]
    fn a_wrong_vector_is_caught() {
        // The checks must be able to fail: a corrupted expected value does.
        let mut wrong = SHARED;
        wrong[5] ^= 1;
        let ab = X25519::dh(&Secret::new(ALICE_SK), &BOB_PK).into_secret();
        assert!(!ct_eq(ab.expose(), &wrong));
        assert!(!KatResult { name: "x", passed: 0, total: 0 }.is_ok());
    }
}

//! Ciphersuite 0x004D, `MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519`
//! (feature `x-wing`): the suite of OpenMLS's `draft-ietf-mls-pq-ciphersuites`
//! feature. Everything but the HPKE KEM is suite 3's: KDF HKDF-SHA256, hash
//! SHA-256 (`Nh` = 32), AEAD ChaCha20-Poly1305 (`Nk` = 32, `Nn` = 12),
//! signatures Ed25519, so the labelled derivations, signatures and the key
//! schedule of [`crate::crypto`] serve both suites.
//!
//! The HPKE KEM is X-Wing (ML-KEM-768 + X25519) as
//! draft-connolly-cfrg-xwing-kem §5.6 "Use in HPKE" defines it: KEM id
//! `0x647a`, `Nsecret` 32, `Nenc` 1120, `Npk` 1216, `Nsk` 32 (the seed),
//! `DeriveKeyPair(ikm) = GenerateKeyPairDerand(SHAKE256(ikm, 32))`, no
//! authenticated mode. Drafts -06 (what OpenMLS's hpke-rs 0.7 names
//! `XWingDraft06`) and -10 (our `core` KEM's known-answer tests) agree on
//! all of it: the same key expansion (`SHAKE256(seed, 96)` into ML-KEM's
//! `d`, `z` and the X25519 secret), the same combiner
//! `SHA3-256(ss_M | ss_X | ct_X | pk_X | "\./" "/^\")`, the same KEM id
//! and `DeriveKeyPair`. The KEM itself is `core`'s [`XWing`] (RustCrypto
//! `x-wing` 0.1.1, the crate hpke-rs uses too), put behind the `hpke`
//! crate's [`hpke::Kem`] trait, so HPKE (RFC 9180 base mode: key schedule,
//! AEAD, exporter) is the `hpke` crate's, as for suite 3.
//!
//! Note: the `hpke` crate's own `XWing` (its `mlkem` feature) is not used:
//! its `derive_keypair` follows draft-ietf-hpke-pq-03 (a labelled SHAKE256
//! derivation), which gives other key pairs from the same path secret than
//! the X-Wing draft and OpenMLS, so an UpdatePath would not interoperate.
//!
//! ```
//! use securemesh_core::testing::TestRng;
//! use securemesh_mls_lite::crypto::xwing;
//!
//! let (private, public) = xwing::derive_key_pair(b"node secret");
//! assert_eq!(public.len(), xwing::NPK);
//! let mut buf = *b"path secret";
//! let mut scratch = [0u8; 64];
//! let (kem_output, tag) =
//!     xwing::encrypt_with_label(&public, b"UpdatePathNode", b"ctx", &mut buf, &mut scratch, &mut TestRng::new(7))?;
//! assert_ne!(&buf, b"path secret");
//! xwing::decrypt_with_label(&private, b"UpdatePathNode", b"ctx", &kem_output, &mut buf, &tag, &mut scratch)?;
//! assert_eq!(&buf, b"path secret");
//! # Ok::<(), securemesh_mls_lite::Error>(())
//! ```

use super::{
    Secret32, external_init_receive_with, external_init_send_with, open_with_label, seal_with_label,
};
use crate::error::Error;
use hpke::hybrid_array::Array;
use hpke::hybrid_array::typenum::{Prod, Sum, U3, U32, U64, U1024};
use hpke::kem::SharedSecret;
use hpke::{Deserializable, HpkeError, Serializable};
use securemesh_core::CryptoRng;
use securemesh_core::crypto::{Kem, XWing};
use shake::{ExtendableOutput, Shake256, Update, XofReader};
use subtle::{Choice, ConstantTimeEq};

/// The ciphersuite: MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519.
pub const CIPHERSUITE: u16 = 0x004D;
/// The HPKE KEM id of X-Wing (draft-connolly-cfrg-xwing-kem §7).
pub const KEM_ID: u16 = 0x647a;
/// `Npk`: an HPKE public key (X-Wing encapsulation key).
pub const NPK: usize = 1216;
/// `Nenc`: a `kem_output` (X-Wing ciphertext).
pub const NENC: usize = 1120;
/// `Nsk`: an HPKE private key (the X-Wing seed).
pub const NSK: usize = 32;

type U1216 = Sum<U1024, Prod<U64, U3>>;
type U1120 = Sum<Sum<U1024, U64>, U32>;

/// Core's X-Wing as an HPKE KEM of the `hpke` crate.
struct XWingKem;

/// A fixed-length byte string as the `hpke` crate (de)serializes it: a
/// wrong length is an error, never a panic.
macro_rules! fixed_bytes {
    ($(#[$doc:meta])* $name:ident, $len:expr, $size:ty) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        struct $name([u8; $len]);

        impl Serializable for $name {
            type OutputSize = $size;
            fn write_exact(&self, buf: &mut [u8]) {
                if let Some(out) = buf.get_mut(..$len) {
                    out.copy_from_slice(&self.0);
                }
            }
        }

        impl Deserializable for $name {
            fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
                let bytes = encoded.try_into().map_err(|_| HpkeError::IncorrectInputLength($len, encoded.len()))?;
                Ok($name(bytes))
            }
        }
    };
}

fixed_bytes!(
    /// An X-Wing public key as HPKE holds it; checked (FIPS 203 §7.2) when
    /// encapsulated to.
    PublicKey,
    NPK,
    U1216
);
fixed_bytes!(
    /// An X-Wing ciphertext.
    EncappedKey,
    NENC,
    U1120
);

/// An X-Wing private key (its 32-byte seed).
struct PrivateKey(Secret32);

impl Clone for PrivateKey {
    fn clone(&self) -> Self {
        PrivateKey(self.0.duplicate())
    }
}

impl ConstantTimeEq for PrivateKey {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl Serializable for PrivateKey {
    type OutputSize = U32;
    fn write_exact(&self, buf: &mut [u8]) {
        if let Some(out) = buf.get_mut(..NSK) {
            out.copy_from_slice(self.0.expose());
        }
    }
}

impl Deserializable for PrivateKey {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        Secret32::from_slice(encoded)
            .map(PrivateKey)
            .ok_or(HpkeError::IncorrectInputLength(NSK, encoded.len()))
    }
}

impl hpke::Kem for XWingKem {
    type PublicKey = PublicKey;
    type PrivateKey = PrivateKey;
    type EncappedKey = EncappedKey;
    type NSecret = U32;
    const KEM_ID: u16 = KEM_ID;

    fn sk_to_pk(sk: &PrivateKey) -> PublicKey {
        PublicKey(XWing::encapsulation_key(&sk.0))
    }

    fn derive_keypair(ikm: &[u8]) -> (PrivateKey, PublicKey) {
        let (sk, pk) = derive_key_pair(ikm);
        (PrivateKey(sk), PublicKey(pk))
    }

    fn decap(
        sk_recip: &PrivateKey,
        pk_sender_id: Option<&PublicKey>,
        encapped_key: &EncappedKey,
    ) -> Result<SharedSecret<Self>, HpkeError> {
        if pk_sender_id.is_some() {
            // X-Wing is not an authenticated KEM.
            return Err(HpkeError::DecapError);
        }
        let ss = XWing::decapsulate(&sk_recip.0, &encapped_key.0).map_err(|_| HpkeError::DecapError)?;
        Ok(SharedSecret(Array::from(*ss.expose())))
    }

    fn encap_with_rng(
        pk_recip: &PublicKey,
        sender_id_keypair: Option<(&PrivateKey, &PublicKey)>,
        csprng: &mut impl hpke::rand_core::CryptoRng,
    ) -> Result<(SharedSecret<Self>, EncappedKey), HpkeError> {
        if sender_id_keypair.is_some() {
            return Err(HpkeError::EncapError);
        }
        let (ct, ss) = XWing::encapsulate(&pk_recip.0, csprng).map_err(|_| HpkeError::EncapError)?;
        Ok((SharedSecret(Array::from(*ss.expose())), EncappedKey(ct)))
    }
}

/// `DeriveKeyPair(ikm)` of X-Wing in HPKE: the seed
/// `SHAKE256(ikm, 32)` and its encapsulation key.
pub fn derive_key_pair(ikm: &[u8]) -> (Secret32, [u8; NPK]) {
    let mut shake = Shake256::default();
    shake.update(ikm);
    let mut seed = Secret32::zeroed();
    shake.finalize_xof().read(seed.expose_mut());
    let public = XWing::encapsulation_key(&seed);
    (seed, public)
}

/// `EncryptWithLabel(public, label, context, plaintext)` of suite 0x004D:
/// HPKE SealBase to an X-Wing key with `info = EncryptContext`, empty AAD.
/// Encrypts `buf` in place and returns `(kem_output, tag)`; `scratch`
/// holds the EncryptContext. [`Error::Malformed`] if `public` is not
/// `Npk` bytes, [`Error::Decrypt`] if it fails the ML-KEM key check.
pub fn encrypt_with_label<R: CryptoRng + ?Sized>(
    public: &[u8],
    label: &[u8],
    context: &[u8],
    buf: &mut [u8],
    scratch: &mut [u8],
    rng: &mut R,
) -> Result<([u8; NENC], [u8; 16]), Error> {
    seal_with_label::<XWingKem, NENC, R>(public, label, context, buf, scratch, rng)
}

/// `DecryptWithLabel(private, label, context, kem_output, ciphertext)` of
/// suite 0x004D: decrypts `buf` (ciphertext without its 16-byte tag) in
/// place; one opaque [`Error::Decrypt`] for any failure.
pub fn decrypt_with_label(
    private: &Secret32,
    label: &[u8],
    context: &[u8],
    kem_output: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
    scratch: &mut [u8],
) -> Result<(), Error> {
    open_with_label::<XWingKem>(private, label, context, kem_output, buf, tag, scratch)
}

/// `init_secret` of an external commit (RFC 9420 §8.3) in suite 0x004D,
/// the joiner's side: `SetupBaseS(external_pub, "")`, then
/// `export("MLS 1.0 external init secret", Nh)`.
pub fn external_init_send<R: CryptoRng + ?Sized>(
    external_pub: &[u8],
    rng: &mut R,
) -> Result<([u8; NENC], Secret32), Error> {
    external_init_send_with::<XWingKem, NENC, R>(external_pub, rng)
}

/// `init_secret` of an external commit in suite 0x004D, a member's side,
/// with the epoch's `external_secret`.
pub fn external_init_receive(external_secret: &Secret32, kem_output: &[u8]) -> Result<Secret32, Error> {
    let (private, _) = derive_key_pair(external_secret.expose());
    external_init_receive_with::<XWingKem>(&private, kem_output)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use securemesh_core::testing::TestRng;

    #[test]
    fn derive_key_pair_is_shake_then_the_drafts_keygen() {
        let (sk, pk) = derive_key_pair(b"ikm");
        let mut seed = [0u8; 32];
        let mut shake = Shake256::default();
        shake.update(b"ikm");
        shake.finalize_xof().read(&mut seed);
        assert_eq!(sk.expose(), &seed);
        assert_eq!(XWing::dangerous_keygen_from_seed(seed).1, pk);
        assert_ne!(derive_key_pair(b"ikn").1, pk);
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let (sk, pk) = derive_key_pair(&[3; 32]);
        let mut scratch = [0u8; 64];
        let mut buf = [0x42u8; 40];
        let (enc, tag) =
            encrypt_with_label(&pk, b"Welcome", b"egi", &mut buf, &mut scratch, &mut TestRng::new(0x5151))
                .unwrap();
        let sealed = buf;
        decrypt_with_label(&sk, b"Welcome", b"egi", &enc, &mut buf, &tag, &mut scratch).unwrap();
        assert_eq!(buf, [0x42u8; 40]);
        // Another label, a flipped kem_output byte, another key: refused.
        for case in 0..3 {
            let mut b = sealed;
            let mut e = enc;
            let mut key = sk.duplicate();
            let label: &[u8] = if case == 0 { b"Welcomf" } else { b"Welcome" };
            if case == 1 {
                e[1119] ^= 1;
            }
            if case == 2 {
                key = derive_key_pair(&[4; 32]).0;
            }
            assert_eq!(
                decrypt_with_label(&key, label, b"egi", &e, &mut b, &tag, &mut scratch),
                Err(Error::Decrypt)
            );
        }
        // Wrong lengths are errors, not panics.
        assert_eq!(
            decrypt_with_label(&sk, b"Welcome", b"egi", &enc[..1119], &mut buf, &tag, &mut scratch),
            Err(Error::Decrypt)
        );
        assert_eq!(
            encrypt_with_label(&pk[..32], b"Welcome", b"", &mut buf, &mut scratch, &mut TestRng::new(1)),
            Err(Error::Malformed)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Any plaintext, label and context round-trip; one changed byte
        /// anywhere in `kem_output | ciphertext | tag` is refused with
        /// `Decrypt` and leaves the buffer as it was.
        #[test]
        fn round_trip_and_any_changed_byte_is_refused(
            ikm in proptest::collection::vec(0u8..=255, 0..=48),
            plaintext in proptest::collection::vec(0u8..=255, 0..=80),
            context in proptest::collection::vec(0u8..=255, 0..=40),
            label in "[a-zA-Z ]{0,20}",
            seed: u64,
            at: usize,
            flip in 1u8..=255,
        ) {
            let (sk, pk) = derive_key_pair(&ikm);
            let mut scratch = [0u8; 128];
            let mut buf = plaintext.clone();
            let (enc, tag) =
                encrypt_with_label(&pk, label.as_bytes(), &context, &mut buf, &mut scratch, &mut TestRng::new(seed))
                    .unwrap();
            let mut bytes = [&enc[..], &buf, &tag].concat();
            let i = at % bytes.len();
            bytes[i] ^= flip;
            let (e, rest) = bytes.split_at(NENC);
            let (ct, t) = rest.split_at(rest.len() - 16);
            let mut tampered = ct.to_vec();
            let got = decrypt_with_label(&sk, label.as_bytes(), &context, e, &mut tampered, t.try_into().unwrap(), &mut scratch);
            proptest::prop_assert_eq!(got, Err(Error::Decrypt));
            proptest::prop_assert_eq!(&tampered[..], ct);
            decrypt_with_label(&sk, label.as_bytes(), &context, &enc, &mut buf, &tag, &mut scratch).unwrap();
            proptest::prop_assert_eq!(buf, plaintext);
        }
    }

    #[test]
    fn a_key_failing_the_ml_kem_check_is_refused() {
        // Every coefficient 0xFFF > q: the FIPS 203 §7.2 modulus check fails.
        let mut pk = [0xFFu8; NPK];
        pk[1184..].copy_from_slice(&[9; 32]);
        let mut buf = [0u8; 8];
        let mut scratch = [0u8; 64];
        assert_eq!(
            encrypt_with_label(&pk, b"Welcome", b"", &mut buf, &mut scratch, &mut TestRng::new(1)),
            Err(Error::Decrypt)
        );
        assert_eq!(buf, [0u8; 8]);
    }

    #[test]
    fn external_init_agrees() {
        let external = Secret32::new([9; 32]);
        let (_, public) = derive_key_pair(external.expose());
        let (kem_output, sent) = external_init_send(&public, &mut TestRng::new(0x77aa)).unwrap();
        let received = external_init_receive(&external, &kem_output).unwrap();
        assert_eq!(sent.expose(), received.expose());
        assert_eq!(external_init_receive(&external, &kem_output[..100]).err(), Some(Error::Decrypt));
    }
}

//! Ciphersuite 0x0003 with the MLS labels (RFC 9420 §5): RefHash,
//! ExpandWithLabel, DeriveSecret, DeriveTreeSecret, Sign/VerifyWithLabel
//! and Encrypt/DecryptWithLabel (HPKE base mode through the `hpke` crate:
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305).
//!
//! Every label is prefixed with `"MLS 1.0 "` where the RFC says so; every
//! variable-length field uses the MLS varint length.

use crate::error::Error;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use securemesh_core::codec::{Writer, varint_len};
use securemesh_core::crypto::{Ed25519, Hash, Sha256, Signature};
use securemesh_core::{CryptoRng, Secret};

pub mod suite;
#[cfg(feature = "x-wing")]
pub mod xwing;

/// The ciphersuite: MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519.
pub const CIPHERSUITE: u16 = 0x0003;
/// `Nh`: hash and KDF output length.
pub const NH: usize = 32;
/// `Nk`: AEAD key length.
pub const NK: usize = 32;
/// `Nn`: AEAD nonce length.
pub const NN: usize = 12;
/// The label prefix of MLS 1.0.
pub const LABEL_PREFIX: &[u8] = b"MLS 1.0 ";

type HpkeKem = hpke::kem::X25519HkdfSha256;
/// KDF and AEAD of HPKE in every suite here (0x0003 and 0x004D).
type HpkeKdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::ChaCha20Poly1305;

/// An `Nh`-byte secret.
pub type Secret32 = Secret<[u8; NH]>;

/// The length of `"MLS 1.0 " + label`, the labelled string of the
/// `*WithLabel` functions.
pub(crate) fn full_label_len(label: &[u8]) -> Result<usize, Error> {
    LABEL_PREFIX.len().checked_add(label.len()).ok_or(Error::Capacity)
}

/// The minimal MLS varint of `n` as bytes.
pub(crate) fn varint(n: usize) -> Result<([u8; 4], usize), Error> {
    let len = varint_len(n as u64)?;
    let mut buf = [0u8; 4];
    let mut w = Writer::new(&mut buf);
    w.write_varint(u32::try_from(n).map_err(|_| Error::Capacity)?)?;
    Ok((buf, len))
}

/// `ExpandWithLabel(secret, label, context, out.len())`.
pub fn expand_with_label(secret: &[u8], label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let length = u16::try_from(out.len()).map_err(|_| Error::InvalidLength)?.to_be_bytes();
    let (ll, lln) = varint(full_label_len(label)?)?;
    let (cl, cln) = varint(context.len())?;
    let info: [&[u8]; 6] =
        [&length, ll.get(..lln).unwrap_or(&[]), LABEL_PREFIX, label, cl.get(..cln).unwrap_or(&[]), context];
    Sha256::hkdf_expand(secret, &info, out).map_err(|_| Error::InvalidLength)
}

/// `DeriveSecret(secret, label) = ExpandWithLabel(secret, label, "", Nh)`.
pub fn derive_secret(secret: &[u8], label: &[u8]) -> Result<Secret32, Error> {
    let mut out = Secret32::zeroed();
    expand_with_label(secret, label, &[], out.expose_mut())?;
    Ok(out)
}

/// `DeriveTreeSecret(secret, label, generation, length)`.
pub fn derive_tree_secret(secret: &[u8], label: &[u8], generation: u32, out: &mut [u8]) -> Result<(), Error> {
    expand_with_label(secret, label, &generation.to_be_bytes(), out)
}

/// `KDF.Extract(salt, ikm)`.
pub fn extract(salt: &[u8], ikm: &[u8]) -> Secret32 {
    Sha256::hkdf_extract(salt, ikm)
}

/// `RefHash(label, value) = Hash(RefHashInput { label<V>, value<V> })`.
/// The label is used as given (callers pass e.g. `"MLS 1.0 KeyPackage Reference"`).
pub fn ref_hash(label: &[u8], value: &[u8]) -> Result<[u8; NH], Error> {
    let (ll, lln) = varint(label.len())?;
    let (vl, vln) = varint(value.len())?;
    Ok(Sha256::digest(&[ll.get(..lln).unwrap_or(&[]), label, vl.get(..vln).unwrap_or(&[]), value]))
}

/// `MAC(key, data)`: HMAC-SHA256.
pub fn mac(key: &[u8], data: &[&[u8]]) -> [u8; NH] {
    Sha256::hmac(key, data)
}

/// Write `label<V> || content<V>` (SignContent / EncryptContext) into `scratch`.
fn labeled<'a>(scratch: &'a mut [u8], label: &[u8], content: &[u8]) -> Result<&'a [u8], Error> {
    let mut w = Writer::new(scratch);
    let n = u32::try_from(full_label_len(label)?).map_err(|_| Error::Capacity)?;
    w.write_varint(n)?;
    w.write_bytes(LABEL_PREFIX)?;
    w.write_bytes(label)?;
    w.write_vec_varint(content)?;
    let len = w.finish()?;
    scratch.get(..len).ok_or(Error::Capacity)
}

/// `SignWithLabel(key, label, content)`; `scratch` holds the SignContent
/// (label and content plus 8 bytes).
pub fn sign_with_label(
    key: &<Ed25519 as Signature>::SigningKey,
    label: &[u8],
    content: &[u8],
    scratch: &mut [u8],
) -> Result<[u8; 64], Error> {
    Ok(Ed25519::sign(key, labeled(scratch, label, content)?))
}

/// `VerifyWithLabel(public, label, content, signature)` (strict Ed25519).
pub fn verify_with_label(
    public: &[u8; 32],
    label: &[u8],
    content: &[u8],
    signature: &[u8; 64],
    scratch: &mut [u8],
) -> Result<(), Error> {
    Ed25519::verify(public, labeled(scratch, label, content)?, signature).map_err(|_| Error::BadSignature)
}

/// `EncryptWithLabel(public, label, context, plaintext)`: HPKE SealBase
/// with `info = EncryptContext`, empty AAD. Encrypts `buf` in place and
/// returns `(kem_output, tag)`; `scratch` holds the EncryptContext.
pub fn encrypt_with_label<R: CryptoRng + ?Sized>(
    public: &[u8; 32],
    label: &[u8],
    context: &[u8],
    buf: &mut [u8],
    scratch: &mut [u8],
    rng: &mut R,
) -> Result<([u8; 32], [u8; 16]), Error> {
    seal_with_label::<HpkeKem, 32, R>(public, label, context, buf, scratch, rng)
}

/// `EncryptWithLabel` with the HPKE KEM `K` of a suite whose `kem_output`
/// is `NENC` bytes (KDF HKDF-SHA256 and AEAD ChaCha20-Poly1305 in every
/// suite this crate has).
pub(crate) fn seal_with_label<K: hpke::Kem, const NENC: usize, R: CryptoRng + ?Sized>(
    public: &[u8],
    label: &[u8],
    context: &[u8],
    buf: &mut [u8],
    scratch: &mut [u8],
    rng: &mut R,
) -> Result<([u8; NENC], [u8; 16]), Error> {
    let info = labeled(scratch, label, context)?;
    let pk = K::PublicKey::from_bytes(public).map_err(|_| Error::Malformed)?;
    let mut rng = RngRef(rng);
    let (enc, tag) = hpke::single_shot_seal_inout_detached_with_rng::<HpkeAead, HpkeKdf, K>(
        &OpModeS::Base,
        &pk,
        info,
        buf.into(),
        &[],
        &mut rng,
    )
    .map_err(|_| Error::Decrypt)?;
    let kem_output = <[u8; NENC]>::try_from(enc.to_bytes().as_slice()).map_err(|_| Error::Capacity)?;
    let mut t = [0u8; 16];
    t.copy_from_slice(&tag.to_bytes());
    Ok((kem_output, t))
}

/// `DecryptWithLabel(private, label, context, kem_output, ciphertext)`:
/// decrypts `buf` (ciphertext without its 16-byte tag) in place.
pub fn decrypt_with_label(
    private: &Secret32,
    label: &[u8],
    context: &[u8],
    kem_output: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
    scratch: &mut [u8],
) -> Result<(), Error> {
    open_with_label::<HpkeKem>(private, label, context, kem_output, buf, tag, scratch)
}

/// `DecryptWithLabel` with the HPKE KEM `K` (whose private key is
/// `Nsk = 32` bytes).
pub(crate) fn open_with_label<K: hpke::Kem>(
    private: &Secret32,
    label: &[u8],
    context: &[u8],
    kem_output: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
    scratch: &mut [u8],
) -> Result<(), Error> {
    let info = labeled(scratch, label, context)?;
    let sk = K::PrivateKey::from_bytes(private.expose()).map_err(|_| Error::Decrypt)?;
    let enc = K::EncappedKey::from_bytes(kem_output).map_err(|_| Error::Decrypt)?;
    let tag = hpke::aead::AeadTag::<HpkeAead>::from_bytes(tag).map_err(|_| Error::Decrypt)?;
    hpke::single_shot_open_inout_detached::<HpkeAead, HpkeKdf, K>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        buf.into(),
        &[],
        &tag,
    )
    .map_err(|_| Error::Decrypt)
}

/// Label of the HPKE export that gives an external commit's `init_secret`.
const EXTERNAL_INIT_LABEL: &[u8] = b"MLS 1.0 external init secret";

/// `init_secret` of an external commit (§8.3), the joiner's side:
/// `SetupBaseS(external_pub, "")`, then
/// `export("MLS 1.0 external init secret", Nh)`. Returns the `kem_output`
/// for the ExternalInit proposal and the `init_secret`.
pub fn external_init_send<R: CryptoRng + ?Sized>(
    external_pub: &[u8; 32],
    rng: &mut R,
) -> Result<([u8; 32], Secret32), Error> {
    external_init_send_with::<HpkeKem, 32, R>(external_pub, rng)
}

/// [`external_init_send`] with the HPKE KEM `K`.
pub(crate) fn external_init_send_with<K: hpke::Kem, const NENC: usize, R: CryptoRng + ?Sized>(
    external_pub: &[u8],
    rng: &mut R,
) -> Result<([u8; NENC], Secret32), Error> {
    let pk = K::PublicKey::from_bytes(external_pub).map_err(|_| Error::Malformed)?;
    let (enc, ctx) =
        hpke::setup_sender_with_rng::<HpkeAead, HpkeKdf, K>(&OpModeS::Base, &pk, &[], &mut RngRef(rng))
            .map_err(|_| Error::Malformed)?;
    let mut init_secret = Secret32::zeroed();
    ctx.export(EXTERNAL_INIT_LABEL, init_secret.expose_mut()).map_err(|_| Error::InvalidLength)?;
    let kem_output = <[u8; NENC]>::try_from(enc.to_bytes().as_slice()).map_err(|_| Error::Capacity)?;
    Ok((kem_output, init_secret))
}

/// `init_secret` of an external commit (§8.3), a member's side: the
/// receiver of `SetupBaseS(external_pub, "")` with the epoch's external
/// key pair (derived from `external_secret`), then the same export.
pub fn external_init_receive(external_secret: &Secret32, kem_output: &[u8]) -> Result<Secret32, Error> {
    let (private, _) = derive_key_pair(external_secret.expose());
    external_init_receive_with::<HpkeKem>(&private, kem_output)
}

/// The receiver's side of [`external_init_send_with`], with the external
/// private key.
pub(crate) fn external_init_receive_with<K: hpke::Kem>(
    private: &Secret32,
    kem_output: &[u8],
) -> Result<Secret32, Error> {
    let sk = K::PrivateKey::from_bytes(private.expose()).map_err(|_| Error::Decrypt)?;
    let enc = K::EncappedKey::from_bytes(kem_output).map_err(|_| Error::Decrypt)?;
    let ctx = hpke::setup_receiver::<HpkeAead, HpkeKdf, K>(&OpModeR::Base, &sk, &enc, &[])
        .map_err(|_| Error::Decrypt)?;
    let mut out = Secret32::zeroed();
    ctx.export(EXTERNAL_INIT_LABEL, out.expose_mut()).map_err(|_| Error::Decrypt)?;
    Ok(out)
}

/// `DeriveKeyPair(ikm)` of the HPKE KEM (RFC 9180 §7.1.3): the X25519
/// private key and its public key.
pub fn derive_key_pair(ikm: &[u8]) -> (Secret32, [u8; 32]) {
    let (sk, pk) = HpkeKem::derive_keypair(ikm);
    let mut s = Secret32::zeroed();
    s.expose_mut().copy_from_slice(&sk.to_bytes());
    let mut p = [0u8; 32];
    p.copy_from_slice(&pk.to_bytes());
    (s, p)
}

/// Adapts `&mut R` (possibly unsized) to the sized RNG the hpke crate takes.
struct RngRef<'a, R: ?Sized>(&'a mut R);

impl<R: CryptoRng + ?Sized> rand_core::TryRng for RngRef<'_, R> {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}
impl<R: CryptoRng + ?Sized> rand_core::TryCryptoRng for RngRef<'_, R> {}

#[cfg(test)]
mod tests {
    use super::*;
    use securemesh_core::Secret;

    #[test]
    fn sign_with_label_refuses_a_short_scratch() {
        let key = Ed25519::signing_key(&Secret::new([7u8; 32]));
        let public = Ed25519::verifying_key(&key);
        let content = [0x5au8; 40];
        // varint(8 + 4) | "MLS 1.0 " | "Test" | varint(40) | content
        let needed = 1 + LABEL_PREFIX.len() + 4 + 1 + content.len();
        for short in [0, 1, needed - content.len(), needed - 1] {
            let mut scratch = std::vec![0u8; short];
            assert_eq!(
                sign_with_label(&key, b"Test", &content, &mut scratch),
                Err(Error::BufferTooSmall { needed })
            );
            assert_eq!(
                verify_with_label(&public, b"Test", &content, &[0; 64], &mut scratch),
                Err(Error::BufferTooSmall { needed })
            );
        }
        let mut scratch = std::vec![0u8; needed];
        let sig = sign_with_label(&key, b"Test", &content, &mut scratch).unwrap();
        // Not a signature of the empty message.
        assert_ne!(sig, Ed25519::sign(&key, &[]));
        verify_with_label(&public, b"Test", &content, &sig, &mut scratch).unwrap();
    }
}

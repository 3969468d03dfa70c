//! Crypto suite traits and the default suite.
//!
//! Protocols are written against the traits ([`Dh`], [`Aead`], [`Hash`],
//! [`Signature`], [`Kem`]) and a [`Suite`] that bundles them; the default
//! suite is X25519 / ChaCha20-Poly1305 / SHA-256 / Ed25519 ([`DefaultSuite`],
//! the primitives of MLS ciphersuite 0x0003). Keys, nonces and digests are
//! plain `[u8; N]` arrays (see [`ByteArray`]); secret ones are wrapped in
//! [`Secret`]. Randomness is lent per call as `&mut impl CryptoRng`.

mod chachapoly;
mod ed25519;
#[cfg(feature = "ml-dsa")]
mod hybrid_signature;
#[cfg(feature = "ml-dsa")]
mod mldsa;
#[cfg(feature = "ml-kem")]
mod mlkem;
mod sha2;
mod x25519;
#[cfg(feature = "x-wing")]
mod xwing;

#[cfg(feature = "aes-gcm")]
pub use self::chachapoly::Aes256Gcm;
pub use self::chachapoly::{ChaChaPoly, XChaChaPoly};
pub use self::ed25519::{Ed25519, Ed25519SigningKey};
#[cfg(feature = "ml-dsa")]
pub use self::hybrid_signature::{HybridEd25519MlDsa65, HybridPublicKey, HybridSignature, HybridSigningKey};
#[cfg(feature = "ml-dsa")]
pub use self::mldsa::MlDsa65;
#[cfg(feature = "ml-kem")]
pub use self::mlkem::{MlKem768, MlKem768ExpandedKey, MlKem1024, MlKem1024ExpandedKey};
#[cfg(feature = "blake2")]
pub use self::sha2::{Blake2b, Blake2s};
pub use self::sha2::{Sha256, Sha512};
pub use self::x25519::X25519;
#[cfg(feature = "x-wing")]
pub use self::xwing::XWing;

use crate::{ByteArray, Error, Secret};
use rand_core::CryptoRng;

/// The result of a Diffie-Hellman operation.
///
/// It records whether the result was *contributory* (not all zero); a
/// protocol that requires contributory behaviour calls
/// [`DhOutput::require_contributory`].
pub struct DhOutput<A: ByteArray> {
    secret: Secret<A>,
    contributory: bool,
}

impl<A: ByteArray> DhOutput<A> {
    /// Wrap a raw DH result; `contributory` is computed in constant time.
    pub fn new(secret: Secret<A>) -> Self {
        let zero = A::zeroed();
        let contributory = !crate::ct_eq(secret.expose().as_ref(), zero.as_ref());
        DhOutput { secret, contributory }
    }

    /// Whether the shared secret is not all zero.
    pub const fn is_contributory(&self) -> bool {
        self.contributory
    }

    /// The shared secret, whatever its value (Noise allows this).
    pub fn into_secret(self) -> Secret<A> {
        self.secret
    }

    /// The shared secret, or [`Error::NonContributory`] if it is all zero.
    pub fn require_contributory(self) -> Result<Secret<A>, Error> {
        if self.contributory { Ok(self.secret) } else { Err(Error::NonContributory) }
    }
}

/// A Diffie-Hellman function (Noise `DH`, X3DH `DH`).
pub trait Dh {
    /// Name as in Noise protocol names, e.g. `"25519"`.
    const NAME: &'static str;
    /// Encoded public key.
    type PublicKey: ByteArray;
    /// Private key bytes.
    type SecretKey: ByteArray;
    /// Shared secret bytes.
    type SharedSecret: ByteArray;

    /// A fresh private key from the caller's CSPRNG.
    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Secret<Self::SecretKey>;
    /// The public key of `secret`.
    fn public_key(secret: &Secret<Self::SecretKey>) -> Self::PublicKey;
    /// `DH(secret, public)`.
    fn dh(secret: &Secret<Self::SecretKey>, public: &Self::PublicKey) -> DhOutput<Self::SharedSecret>;
}

/// An AEAD with a 16-byte tag, used in place with a detached tag.
pub trait Aead {
    /// Name as in Noise protocol names, e.g. `"ChaChaPoly"`.
    const NAME: &'static str;
    /// Tag length in bytes.
    const TAG_LEN: usize;
    /// Key bytes.
    type Key: ByteArray;
    /// Nonce bytes.
    type Nonce: ByteArray;
    /// Authentication tag bytes.
    type Tag: ByteArray;

    /// Encrypt `buf` in place and return the tag.
    fn seal_detached(
        key: &Secret<Self::Key>,
        nonce: &Self::Nonce,
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<Self::Tag, Error>;

    /// Check `tag` and decrypt `buf` in place. On failure `buf` is unchanged
    /// and the error is the opaque [`Error::Decrypt`].
    fn open_detached(
        key: &Secret<Self::Key>,
        nonce: &Self::Nonce,
        ad: &[u8],
        buf: &mut [u8],
        tag: &Self::Tag,
    ) -> Result<(), Error>;

    /// Encrypt the first `plaintext_len` bytes of `buf` in place and append
    /// the tag; returns the ciphertext length. [`Error::BufferTooSmall`]
    /// (nothing written) if `buf` has no room for the tag.
    fn seal(
        key: &Secret<Self::Key>,
        nonce: &Self::Nonce,
        ad: &[u8],
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, Error> {
        let needed = plaintext_len.checked_add(Self::TAG_LEN).ok_or(Error::LengthOverflow)?;
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let (msg, rest) = buf.split_at_mut(plaintext_len);
        let tag = Self::seal_detached(key, nonce, ad, msg)?;
        rest.get_mut(..Self::TAG_LEN).ok_or(Error::BufferTooSmall { needed })?.copy_from_slice(tag.as_ref());
        Ok(needed)
    }

    /// Decrypt `ciphertext || tag` in place; returns the plaintext length
    /// (the plaintext is `buf[..len]`). On failure `buf` is unchanged.
    fn open(key: &Secret<Self::Key>, nonce: &Self::Nonce, ad: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        let len = buf.len().checked_sub(Self::TAG_LEN).ok_or(Error::Decrypt)?;
        let (msg, tag) = buf.split_at_mut(len);
        let tag = Self::Tag::from_slice(tag).ok_or(Error::Decrypt)?;
        Self::open_detached(key, nonce, ad, msg, &tag)?;
        Ok(len)
    }
}

/// A hash function with HMAC (RFC 2104) and HKDF (RFC 5869) built on it.
///
/// The hasher itself is incremental (`Default` + [`Hash::update`] +
/// [`Hash::finalize`]) for transcript hashes.
pub trait Hash: Default + Clone {
    /// Name as in Noise protocol names, e.g. `"SHA256"`.
    const NAME: &'static str;
    /// Internal block length in bytes (Noise `BLOCKLEN`).
    const BLOCK_LEN: usize;
    /// Digest bytes (Noise `HASHLEN`).
    type Output: ByteArray;

    /// Absorb `data`.
    fn update(&mut self, data: &[u8]);
    /// The digest of everything absorbed.
    fn finalize(self) -> Self::Output;

    /// The digest of the concatenation of `parts`.
    fn digest(parts: &[&[u8]]) -> Self::Output {
        let mut h = Self::default();
        for p in parts {
            h.update(p);
        }
        h.finalize()
    }

    /// `HMAC(key, parts[0] || parts[1] || ...)`.
    fn hmac(key: &[u8], parts: &[&[u8]]) -> Self::Output {
        let all = Self::hmac_with(key, |sink| {
            parts.iter().for_each(|p| sink(p));
            Ok::<(), core::convert::Infallible>(())
        });
        match all {
            Ok(tag) => tag,
            Err(never) => match never {},
        }
    }

    /// `HMAC(key, m)` of a message `m` produced in pieces (an encoding
    /// streamed field by field): `feed` gets a sink that absorbs each piece
    /// in order. Equal to [`Hash::hmac`] over the pieces; an error of `feed`
    /// is returned as it is.
    fn hmac_with<E>(
        key: &[u8],
        feed: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), E>,
    ) -> Result<Self::Output, E>;

    /// `HKDF-Extract(salt, ikm)`; an empty `salt` means `HashLen` zero bytes.
    fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> Secret<Self::Output>;

    /// `HKDF-Expand(prk, info, L)` with `info` the concatenation of `info`
    /// and `L = okm.len()`; [`Error::InvalidLength`] beyond 255 blocks.
    fn hkdf_expand(prk: &[u8], info: &[&[u8]], okm: &mut [u8]) -> Result<(), Error>;
}

/// A signature scheme with strict verification.
pub trait Signature {
    /// Name, e.g. `"Ed25519"`.
    const NAME: &'static str;
    /// Encoded public (verifying) key.
    type PublicKey: ByteArray;
    /// Private key seed bytes (what is stored).
    type Seed: ByteArray;
    /// Encoded signature.
    type Sig: ByteArray;
    /// A loaded signing key (expanded once, zeroized on drop).
    type SigningKey;

    /// A fresh seed from the caller's CSPRNG.
    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Secret<Self::Seed> {
        Secret::random(rng)
    }
    /// Load a signing key from its seed (costs one base-point multiplication).
    fn signing_key(seed: &Secret<Self::Seed>) -> Self::SigningKey;
    /// The public key of a signing key.
    fn verifying_key(key: &Self::SigningKey) -> Self::PublicKey;
    /// Sign `msg`.
    fn sign(key: &Self::SigningKey, msg: &[u8]) -> Self::Sig;
    /// Verify strictly; the error is the opaque [`Error::BadSignature`] (or
    /// [`Error::InvalidKey`] for a key that does not decode).
    fn verify(public: &Self::PublicKey, msg: &[u8], sig: &Self::Sig) -> Result<(), Error>;
}

/// A key-encapsulation mechanism. The post-quantum suites fill it behind
/// features: [`MlKem768`] and [`MlKem1024`] (FIPS 203, feature `ml-kem`)
/// and [`XWing`] (ML-KEM-768 + X25519, feature `x-wing`). The default suite
/// has no KEM; its protocols use [`Dh`].
///
/// Decapsulation keys are stored as seeds (64 bytes `d || z` for ML-KEM,
/// 32 bytes for X-Wing, as FIPS 203 §3.3 and the X-Wing draft recommend) and
/// expanded on each use. Decapsulation never fails on a well-sized
/// ciphertext: a malformed one gives a pseudo-random secret (FIPS 203
/// implicit rejection), so that the caller learns nothing before its
/// protocol's key confirmation. The `_slice` entries take wire bytes and
/// refuse a wrong length with a typed error.
///
/// ```
/// use securemesh_core::crypto::Kem;
/// // Code generic over a KEM, as PQXDH will be:
/// fn ciphertext_len<K: Kem>() -> usize {
///     <K::Ciphertext as securemesh_core::ByteArray>::LEN
/// }
/// ```
pub trait Kem {
    /// Name, e.g. `"ML-KEM-768"`.
    const NAME: &'static str;
    /// Encoded encapsulation (public) key.
    type EncapsulationKey: ByteArray;
    /// Decapsulation (private) key bytes: the seed the key pair is derived from.
    type DecapsulationKey: ByteArray;
    /// Ciphertext bytes.
    type Ciphertext: ByteArray;
    /// Shared secret bytes.
    type SharedSecret: ByteArray;

    /// A fresh key pair.
    fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
    ) -> (Secret<Self::DecapsulationKey>, Self::EncapsulationKey);
    /// The encapsulation key of a stored decapsulation key (its seed expanded).
    fn encapsulation_key(dk: &Secret<Self::DecapsulationKey>) -> Self::EncapsulationKey;
    /// Encapsulate to `ek`: a ciphertext and the shared secret.
    /// [`Error::InvalidKey`] if `ek` fails the scheme's key check (FIPS 203
    /// §7.2 for ML-KEM).
    fn encapsulate<R: CryptoRng + ?Sized>(
        ek: &Self::EncapsulationKey,
        rng: &mut R,
    ) -> Result<(Self::Ciphertext, Secret<Self::SharedSecret>), Error>;
    /// Decapsulate `ct` with `dk`. A ciphertext that was not made for `dk`
    /// gives an unrelated pseudo-random secret, not an error (implicit
    /// rejection).
    fn decapsulate(
        dk: &Secret<Self::DecapsulationKey>,
        ct: &Self::Ciphertext,
    ) -> Result<Secret<Self::SharedSecret>, Error>;

    /// [`Kem::encapsulate`] to an encapsulation key received as bytes:
    /// [`Error::InvalidKey`] if it has the wrong length or fails the key check.
    fn encapsulate_slice<R: CryptoRng + ?Sized>(
        ek: &[u8],
        rng: &mut R,
    ) -> Result<(Self::Ciphertext, Secret<Self::SharedSecret>), Error> {
        let ek = Self::EncapsulationKey::from_slice(ek).ok_or(Error::InvalidKey)?;
        Self::encapsulate(&ek, rng)
    }

    /// [`Kem::decapsulate`] of a ciphertext received as bytes:
    /// [`Error::Truncated`] if it is shorter than the ciphertext length,
    /// [`Error::TrailingBytes`] if longer (the length is public; only a
    /// well-sized ciphertext is decapsulated, with implicit rejection).
    fn decapsulate_slice(
        dk: &Secret<Self::DecapsulationKey>,
        ct: &[u8],
    ) -> Result<Secret<Self::SharedSecret>, Error> {
        let want = <Self::Ciphertext as ByteArray>::LEN;
        if ct.len() < want {
            return Err(Error::Truncated);
        }
        let ct = Self::Ciphertext::from_slice(ct).ok_or(Error::TrailingBytes)?;
        Self::decapsulate(dk, &ct)
    }
}

/// Identifier of a crypto suite in persisted state. Where an MLS
/// ciphersuite with the same primitives exists, the number is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SuiteId(pub u16);

impl SuiteId {
    /// X25519 / ChaCha20-Poly1305 / SHA-256 / Ed25519 (MLS 0x0003).
    pub const DEFAULT: SuiteId = SuiteId(0x0003);
}

/// A bundle of primitives that protocols are generic over.
pub trait Suite {
    /// Identifier written into persisted state.
    const ID: SuiteId;
    /// Key agreement.
    type Dh: Dh;
    /// Authenticated encryption.
    type Aead: Aead;
    /// Hash, HMAC and HKDF.
    type Hash: Hash;
    /// Signatures.
    type Signature: Signature;
}

/// The default suite: X25519, ChaCha20-Poly1305, SHA-256, Ed25519.
///
/// ```
/// use securemesh_core::crypto::{DefaultSuite, Suite, SuiteId, Dh, Aead, Hash, Signature};
/// assert_eq!(DefaultSuite::ID, SuiteId(3));
/// assert_eq!(<DefaultSuite as Suite>::Dh::NAME, "25519");
/// assert_eq!(<DefaultSuite as Suite>::Aead::NAME, "ChaChaPoly");
/// assert_eq!(<DefaultSuite as Suite>::Hash::NAME, "SHA256");
/// assert_eq!(<DefaultSuite as Suite>::Signature::NAME, "Ed25519");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultSuite;

impl Suite for DefaultSuite {
    const ID: SuiteId = SuiteId::DEFAULT;
    type Dh = X25519;
    type Aead = ChaChaPoly;
    type Hash = Sha256;
    type Signature = Ed25519;
}

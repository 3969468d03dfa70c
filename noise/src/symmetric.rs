//! `SymmetricState` (§5.2): chaining key `ck`, handshake hash `h`, and a
//! `CipherState`, with Noise's HKDF (RFC 5869 with `ck` as salt).

use crate::cipher::{CipherState, Key, TAG_LEN};
use crate::error::Error;
use crate::pattern::{CipherChoice, HashChoice, Protocol};
use securemesh_core::Secret;
use securemesh_core::crypto::{Hash, Sha256, Sha512};

/// Largest `HASHLEN`.
pub const MAX_HASH_LEN: usize = 64;

fn hash_parts<H: Hash>(parts: &[&[u8]], out: &mut [u8; MAX_HASH_LEN]) {
    let d = H::digest(parts);
    let d = d.as_ref();
    if let Some(dst) = out.get_mut(..d.len()) {
        dst.copy_from_slice(d);
    }
}

fn hkdf<H: Hash>(ck: &[u8], ikm: &[u8], out: &mut [u8]) -> Result<(), Error> {
    let prk = H::hkdf_extract(ck, ikm);
    H::hkdf_expand(prk.expose().as_ref(), &[], out).map_err(Error::from)
}

impl HashChoice {
    pub(crate) fn hash(self, parts: &[&[u8]], out: &mut [u8; MAX_HASH_LEN]) {
        match self {
            HashChoice::Sha256 => hash_parts::<Sha256>(parts, out),
            HashChoice::Sha512 => hash_parts::<Sha512>(parts, out),
            #[cfg(feature = "blake2")]
            HashChoice::Blake2s => hash_parts::<securemesh_core::crypto::Blake2s>(parts, out),
            #[cfg(feature = "blake2")]
            HashChoice::Blake2b => hash_parts::<securemesh_core::crypto::Blake2b>(parts, out),
        }
    }

    /// Noise `HKDF(ck, ikm, n)` with `out.len() = n * HASHLEN`.
    pub(crate) fn hkdf(self, ck: &[u8], ikm: &[u8], out: &mut [u8]) -> Result<(), Error> {
        match self {
            HashChoice::Sha256 => hkdf::<Sha256>(ck, ikm, out),
            HashChoice::Sha512 => hkdf::<Sha512>(ck, ikm, out),
            #[cfg(feature = "blake2")]
            HashChoice::Blake2s => hkdf::<securemesh_core::crypto::Blake2s>(ck, ikm, out),
            #[cfg(feature = "blake2")]
            HashChoice::Blake2b => hkdf::<securemesh_core::crypto::Blake2b>(ck, ikm, out),
        }
    }
}

/// The first 32 bytes of an HKDF output block, as a cipher key.
fn key_from(block: &[u8]) -> Key {
    let mut k = Key::zeroed();
    if let Some(src) = block.get(..32) {
        k.expose_mut().copy_from_slice(src);
    }
    k
}

pub(crate) struct SymmetricState {
    ck: Secret<[u8; MAX_HASH_LEN]>,
    h: [u8; MAX_HASH_LEN],
    hash: HashChoice,
    pub(crate) cs: CipherState,
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)`.
    pub(crate) fn new(protocol: &Protocol) -> Self {
        let hash = protocol.hash();
        let name = protocol.name_bytes();
        let mut h = [0u8; MAX_HASH_LEN];
        if name.len() <= hash.hash_len() {
            if let Some(dst) = h.get_mut(..name.len()) {
                dst.copy_from_slice(name);
            }
        } else {
            hash.hash(&[name], &mut h);
        }
        SymmetricState { ck: Secret::new(h), h, hash, cs: CipherState::empty(protocol.cipher()) }
    }

    pub(crate) fn duplicate(&self) -> Self {
        SymmetricState { ck: self.ck.duplicate(), h: self.h, hash: self.hash, cs: self.cs.duplicate() }
    }

    pub(crate) fn hash_len(&self) -> usize {
        self.hash.hash_len()
    }

    /// The handshake hash `h`.
    pub(crate) fn h(&self) -> &[u8] {
        self.h.get(..self.hash.hash_len()).unwrap_or(&[])
    }

    fn ck(&self) -> &[u8] {
        self.ck.expose().get(..self.hash.hash_len()).unwrap_or(&[])
    }

    pub(crate) fn cipher(&self) -> CipherChoice {
        self.cs.cipher
    }

    /// `MixKey(ikm)`.
    pub(crate) fn mix_key(&mut self, ikm: &[u8]) -> Result<(), Error> {
        let n = self.hash.hash_len();
        let mut out = Secret::new([0u8; 2 * MAX_HASH_LEN]);
        let out =
            n.checked_mul(2).and_then(|len| out.expose_mut().get_mut(..len)).ok_or(Error::MessageTooLong)?;
        self.hash.hkdf(self.ck(), ikm, out)?;
        let (ck, k) = out.split_at(n);
        self.ck.expose_mut().get_mut(..n).ok_or(Error::MessageTooLong)?.copy_from_slice(ck);
        self.cs = CipherState::with_key(self.cs.cipher, key_from(k));
        Ok(())
    }

    /// `MixHash(data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        let mut h = [0u8; MAX_HASH_LEN];
        self.hash.hash(&[self.h(), data], &mut h);
        self.h = h;
    }

    /// `MixKeyAndHash(ikm)`.
    pub(crate) fn mix_key_and_hash(&mut self, ikm: &[u8]) -> Result<(), Error> {
        let n = self.hash.hash_len();
        let mut out = Secret::new([0u8; 3 * MAX_HASH_LEN]);
        let out =
            n.checked_mul(3).and_then(|len| out.expose_mut().get_mut(..len)).ok_or(Error::MessageTooLong)?;
        self.hash.hkdf(self.ck(), ikm, out)?;
        let (ck, rest) = out.split_at(n);
        let (temp_h, k) = rest.split_at(n);
        self.ck.expose_mut().get_mut(..n).ok_or(Error::MessageTooLong)?.copy_from_slice(ck);
        self.mix_hash(temp_h);
        self.cs = CipherState::with_key(self.cs.cipher, key_from(k));
        Ok(())
    }

    /// `EncryptAndHash` of `buf[..len]` in place (tag appended when keyed).
    pub(crate) fn encrypt_and_hash(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let mut h = [0u8; MAX_HASH_LEN];
        h.copy_from_slice(&self.h);
        let n = self.hash.hash_len();
        let out = self.cs.encrypt_with_ad(h.get(..n).unwrap_or(&[]), buf, len)?;
        self.mix_hash(buf.get(..out).ok_or(Error::BufferTooSmall { needed: out })?);
        Ok(out)
    }

    /// `DecryptAndHash(ciphertext)` into `out` (which gets the plaintext).
    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let keyed = self.cs.has_key();
        let pt_len = if keyed {
            ciphertext.len().checked_sub(TAG_LEN).ok_or(Error::Decrypt)?
        } else {
            ciphertext.len()
        };
        let dst = out.get_mut(..pt_len).ok_or(Error::BufferTooSmall { needed: pt_len })?;
        let (ct, tag) = ciphertext.split_at(pt_len);
        dst.copy_from_slice(ct);
        if let Some(k) = &self.cs.k {
            let next = CipherState::next_nonce(self.cs.n)?;
            let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Decrypt)?;
            if let Err(e) = crate::cipher::open(self.cs.cipher, k, self.cs.n, self.h(), dst, &tag) {
                dst.fill(0);
                return Err(e);
            }
            self.cs.n = next;
        }
        self.mix_hash(ciphertext);
        Ok(pt_len)
    }

    /// `Split()`: the initiator-to-responder and responder-to-initiator keys.
    pub(crate) fn split(&self) -> Result<(Key, Key), Error> {
        let n = self.hash.hash_len();
        let mut out = Secret::new([0u8; 2 * MAX_HASH_LEN]);
        let out =
            n.checked_mul(2).and_then(|len| out.expose_mut().get_mut(..len)).ok_or(Error::MessageTooLong)?;
        self.hash.hkdf(self.ck(), &[], out)?;
        let (k1, k2) = out.split_at(n);
        Ok((key_from(k1), key_from(k2)))
    }
}

//! `CipherState` (§5.1): a key and a 64-bit nonce counter, with the
//! reserved nonce 2^64-1 refused before use.

use crate::error::Error;
use crate::pattern::CipherChoice;
use securemesh_core::Secret;
use securemesh_core::crypto::{Aead, ChaChaPoly};

/// Tag length of every Noise cipher.
pub const TAG_LEN: usize = 16;

/// A Noise cipher key.
pub(crate) type Key = Secret<[u8; 32]>;

/// The nonce encoding of a Noise cipher for counter `n` (§12.3, §12.4).
pub(crate) fn nonce(cipher: CipherChoice, n: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    let (_, tail) = out.split_at_mut(4);
    match cipher {
        CipherChoice::ChaChaPoly => tail.copy_from_slice(&n.to_le_bytes()),
        #[cfg(feature = "aes-gcm")]
        CipherChoice::AesGcm => tail.copy_from_slice(&n.to_be_bytes()),
    }
    out
}

/// `ENCRYPT(k, n, ad, buf)` in place; returns the tag.
pub(crate) fn seal(
    cipher: CipherChoice,
    k: &Key,
    n: u64,
    ad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; 16], Error> {
    let nonce = nonce(cipher, n);
    Ok(match cipher {
        CipherChoice::ChaChaPoly => ChaChaPoly::seal_detached(k, &nonce, ad, buf)?,
        #[cfg(feature = "aes-gcm")]
        CipherChoice::AesGcm => securemesh_core::crypto::Aes256Gcm::seal_detached(k, &nonce, ad, buf)?,
    })
}

/// `DECRYPT(k, n, ad, buf)` in place; `buf` is unchanged on failure.
pub(crate) fn open(
    cipher: CipherChoice,
    k: &Key,
    n: u64,
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> Result<(), Error> {
    let nonce = nonce(cipher, n);
    match cipher {
        CipherChoice::ChaChaPoly => ChaChaPoly::open_detached(k, &nonce, ad, buf, tag),
        #[cfg(feature = "aes-gcm")]
        CipherChoice::AesGcm => securemesh_core::crypto::Aes256Gcm::open_detached(k, &nonce, ad, buf, tag),
    }
    .map_err(|_| Error::Decrypt)
}

/// `REKEY(k)` (§4.2): the first 32 bytes of `ENCRYPT(k, 2^64-1, "", zeros)`.
pub(crate) fn rekey(cipher: CipherChoice, k: &Key) -> Result<Key, Error> {
    let mut next = Key::zeroed();
    seal(cipher, k, u64::MAX, &[], next.expose_mut())?;
    Ok(next)
}

/// A `CipherState`: optional key `k` and nonce `n`.
pub(crate) struct CipherState {
    pub(crate) k: Option<Key>,
    pub(crate) n: u64,
    pub(crate) cipher: CipherChoice,
}

impl CipherState {
    pub(crate) const fn empty(cipher: CipherChoice) -> Self {
        CipherState { k: None, n: 0, cipher }
    }

    pub(crate) fn with_key(cipher: CipherChoice, k: Key) -> Self {
        CipherState { k: Some(k), n: 0, cipher }
    }

    /// The nonce after `n`, or [`Error::NonceExhausted`] when `n` is the
    /// reserved 2^64-1 (§5.1), which is exactly where `checked_add` fails:
    /// a caller that gets `Ok` may use `n`, then store the result.
    pub(crate) const fn next_nonce(n: u64) -> Result<u64, Error> {
        match n.checked_add(1) {
            Some(next) => Ok(next),
            None => Err(Error::NonceExhausted),
        }
    }

    /// A copy for transactional work (never handed out).
    pub(crate) fn duplicate(&self) -> Self {
        CipherState { k: self.k.as_ref().map(Secret::duplicate), n: self.n, cipher: self.cipher }
    }

    pub(crate) const fn has_key(&self) -> bool {
        self.k.is_some()
    }

    /// Encrypt `buf[..len]` in place and append the tag if a key is set;
    /// returns the output length. `buf` must have room for the tag.
    pub(crate) fn encrypt_with_ad(&mut self, ad: &[u8], buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let Some(k) = &self.k else { return Ok(len) };
        let next = Self::next_nonce(self.n)?;
        let out_len = len.checked_add(TAG_LEN).ok_or(Error::MessageTooLong)?;
        let (msg, rest) = buf.split_at_mut_checked(len).ok_or(Error::BufferTooSmall { needed: out_len })?;
        let tag_dst = rest.get_mut(..TAG_LEN).ok_or(Error::BufferTooSmall { needed: out_len })?;
        let tag = seal(self.cipher, k, self.n, ad, msg)?;
        tag_dst.copy_from_slice(&tag);
        self.n = next;
        Ok(out_len)
    }

    /// Decrypt `buf` (ciphertext and tag) in place if a key is set; returns
    /// the plaintext length. On failure `buf` and `n` are unchanged.
    pub(crate) fn decrypt_with_ad(&mut self, ad: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        let Some(k) = &self.k else { return Ok(buf.len()) };
        let next = Self::next_nonce(self.n)?;
        let len = buf.len().checked_sub(TAG_LEN).ok_or(Error::Decrypt)?;
        let (msg, tag) = buf.split_at_mut(len);
        let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::Decrypt)?;
        open(self.cipher, k, self.n, ad, msg, &tag)?;
        self.n = next;
        Ok(len)
    }

    pub(crate) fn rekey(&mut self) -> Result<(), Error> {
        if let Some(k) = &self.k {
            self.k = Some(rekey(self.cipher, k)?);
        }
        Ok(())
    }
}

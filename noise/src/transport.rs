//! Stream transport (§5.1, §11): implicit nonces, the reserved nonce
//! 2^64-1 refused before use, rekey, in-place encryption.

use crate::cipher::{CipherState, Key, TAG_LEN};
use crate::error::Error;
use crate::message::MAX_MESSAGE_LEN;
use crate::pattern::CipherChoice;
use crate::symmetric::MAX_HASH_LEN;

/// Bytes a transport message adds to its payload.
pub const OVERHEAD: usize = TAG_LEN;
/// Largest transport payload (65535 minus the tag).
pub const MAX_PAYLOAD_LEN: usize = MAX_MESSAGE_LEN - TAG_LEN;

/// A completed Noise session for a reliable, ordered stream: one cipher
/// state per direction with implicit nonces.
///
/// Not `Clone`: two copies would encrypt different messages under the same
/// nonce. Persist it through [`securemesh_core::envelope::Persist`].
pub struct Transport {
    pub(crate) send: CipherState,
    pub(crate) recv: CipherState,
    pub(crate) handshake_hash: [u8; MAX_HASH_LEN],
    pub(crate) hash_len: u8,
    pub(crate) initiator: bool,
    pub(crate) remote_static: Option<[u8; 32]>,
}

impl core::fmt::Debug for Transport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transport")
            .field("initiator", &self.initiator)
            .field("sending_nonce", &self.send.n)
            .field("receiving_nonce", &self.recv.n)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(
        cipher: CipherChoice,
        send: Option<Key>,
        recv: Option<Key>,
        handshake_hash: [u8; MAX_HASH_LEN],
        hash_len: usize,
        initiator: bool,
        remote_static: Option<[u8; 32]>,
    ) -> Self {
        let cs = |k: Option<Key>| match k {
            Some(k) => CipherState::with_key(cipher, k),
            None => CipherState::empty(cipher),
        };
        Transport {
            send: cs(send),
            recv: cs(recv),
            handshake_hash,
            hash_len: hash_len as u8,
            initiator,
            remote_static,
        }
    }

    /// The handshake hash: a channel binding both parties share.
    pub fn handshake_hash(&self) -> &[u8] {
        self.handshake_hash.get(..usize::from(self.hash_len)).unwrap_or(&[])
    }

    /// The peer's static public key, if the pattern had one.
    pub fn remote_static(&self) -> Option<&[u8; 32]> {
        self.remote_static.as_ref()
    }

    /// Whether this side was the handshake initiator.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// The nonce the next sent message uses.
    pub fn sending_nonce(&self) -> u64 {
        self.send.n
    }

    /// The nonce the next received message must use.
    pub fn receiving_nonce(&self) -> u64 {
        self.recv.n
    }

    /// Encrypt `payload` into `out`; returns the message length.
    pub fn write_message(&mut self, payload: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let needed = payload.len().checked_add(TAG_LEN).ok_or(Error::MessageTooLong)?;
        if needed > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLong);
        }
        // Check everything that can fail before the plaintext touches `out`.
        self.check_send()?;
        let dst = out.get_mut(..needed).ok_or(Error::BufferTooSmall { needed })?;
        dst.get_mut(..payload.len()).ok_or(Error::BufferTooSmall { needed })?.copy_from_slice(payload);
        self.encrypt_in_place(dst, payload.len())
    }

    /// Encrypt `buf[..len]` in place and append the tag (`buf` needs
    /// `len + 16` bytes); returns the message length.
    pub fn encrypt_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        self.check_send()?;
        let needed = len.checked_add(TAG_LEN).ok_or(Error::MessageTooLong)?;
        if needed > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLong);
        }
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        self.send.encrypt_with_ad(&[], buf, len)
    }

    fn check_send(&self) -> Result<(), Error> {
        if !self.send.has_key() {
            return Err(Error::OneWay);
        }
        if self.send.n == u64::MAX {
            return Err(Error::NonceExhausted);
        }
        Ok(())
    }

    /// Decrypt `message` into `out` (which needs only the payload length,
    /// `message.len() - 16`); returns the payload length. On failure nothing
    /// changes (the nonce is not consumed) and `out` holds no plaintext.
    pub fn read_message(&mut self, message: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLong);
        }
        let Some(k) = &self.recv.k else { return Err(Error::OneWay) };
        let next = CipherState::next_nonce(self.recv.n)?;
        let len = message.len().checked_sub(TAG_LEN).ok_or(Error::Decrypt)?;
        let (ct, tag) = message.split_at(len);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Decrypt)?;
        let dst = out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len })?;
        dst.copy_from_slice(ct);
        if let Err(e) = crate::cipher::open(self.recv.cipher, k, self.recv.n, &[], dst, &tag) {
            dst.fill(0);
            return Err(e);
        }
        self.recv.n = next;
        Ok(len)
    }

    /// Decrypt `buf` (ciphertext and tag) in place; returns the payload
    /// length (`buf[..len]`). On failure `buf` and the nonce are unchanged.
    pub fn decrypt_in_place(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if !self.recv.has_key() {
            return Err(Error::OneWay);
        }
        if buf.len() > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLong);
        }
        self.recv.decrypt_with_ad(&[], buf)
    }

    /// `Rekey()` the sending direction (§11.3); the peer calls
    /// [`rekey_incoming`](Self::rekey_incoming) at the same point.
    pub fn rekey_outgoing(&mut self) -> Result<(), Error> {
        self.send.rekey()
    }

    /// `Rekey()` the receiving direction.
    pub fn rekey_incoming(&mut self) -> Result<(), Error> {
        self.recv.rekey()
    }
}

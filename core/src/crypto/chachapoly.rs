//! ChaCha20-Poly1305 (RFC 8439) on the RustCrypto crate, in place with
//! detached tags (`encrypt_inout_detached`).

use super::Aead;
use crate::{Error, Secret};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

/// ChaCha20-Poly1305 with a 96-bit nonce (RFC 8439).
///
/// ```
/// use securemesh_core::{Secret, crypto::{Aead, ChaChaPoly}};
/// let key = Secret::new([0x42u8; 32]);
/// let nonce = [0u8; 12];
/// let mut buf = [0u8; 5 + 16];
/// buf[..5].copy_from_slice(b"hello");
/// let n = ChaChaPoly::seal(&key, &nonce, b"ad", &mut buf, 5).unwrap();
/// let m = ChaChaPoly::open(&key, &nonce, b"ad", &mut buf[..n]).unwrap();
/// assert_eq!(&buf[..m], b"hello");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ChaChaPoly;

fn cipher(key: &Secret<[u8; 32]>) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&Key::from(*key.expose()))
}

impl Aead for ChaChaPoly {
    const NAME: &'static str = "ChaChaPoly";
    const TAG_LEN: usize = 16;
    type Key = [u8; 32];
    type Nonce = [u8; 12];
    type Tag = [u8; 16];

    fn seal_detached(
        key: &Secret<[u8; 32]>,
        nonce: &[u8; 12],
        ad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; 16], Error> {
        let tag = cipher(key)
            .encrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into())
            .map_err(|_| Error::LengthOverflow)?;
        Ok(tag.into())
    }

    fn open_detached(
        key: &Secret<[u8; 32]>,
        nonce: &[u8; 12],
        ad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), Error> {
        cipher(key)
            .decrypt_inout_detached(&Nonce::from(*nonce), ad, buf.into(), &Tag::from(*tag))
            .map_err(|_| Error::Decrypt)
    }
}

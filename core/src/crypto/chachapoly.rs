//! AEADs on the RustCrypto crates, in place with detached tags
//! (`encrypt_inout_detached` / `decrypt_inout_detached`, aead 0.6):
//! ChaCha20-Poly1305 (RFC 8439), XChaCha20-Poly1305, and with feature
//! `aes-gcm`, AES-256-GCM.

use super::Aead;
use crate::{Error, Secret};
use chacha20poly1305::aead::{AeadInOut, KeyInit};

macro_rules! rustcrypto_aead {
    ($(#[$meta:meta])* $name:ident, $inner:ty, $noise:literal, $nonce:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Aead for $name {
            const NAME: &'static str = $noise;
            const TAG_LEN: usize = 16;
            type Key = [u8; 32];
            type Nonce = [u8; $nonce];
            type Tag = [u8; 16];

            fn seal_detached(
                key: &Secret<[u8; 32]>,
                nonce: &[u8; $nonce],
                ad: &[u8],
                buf: &mut [u8],
            ) -> Result<[u8; 16], Error> {
                let c = <$inner>::new(&(*key.expose()).into());
                let tag = c.encrypt_inout_detached(&(*nonce).into(), ad, buf.into()).map_err(|_| Error::LengthOverflow)?;
                Ok(tag.into())
            }

            fn open_detached(
                key: &Secret<[u8; 32]>,
                nonce: &[u8; $nonce],
                ad: &[u8],
                buf: &mut [u8],
                tag: &[u8; 16],
            ) -> Result<(), Error> {
                let c = <$inner>::new(&(*key.expose()).into());
                c.decrypt_inout_detached(&(*nonce).into(), ad, buf.into(), &(*tag).into()).map_err(|_| Error::Decrypt)
            }
        }
    };
}

rustcrypto_aead!(
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
    ChaChaPoly,
    chacha20poly1305::ChaCha20Poly1305,
    "ChaChaPoly",
    12
);

rustcrypto_aead!(
    /// XChaCha20-Poly1305 with a 192-bit nonce, so nonces may be drawn at
    /// random (used for Double Ratchet header encryption).
    ///
    /// ```
    /// use securemesh_core::{Secret, crypto::{Aead, XChaChaPoly}};
    /// let key = Secret::new([9u8; 32]);
    /// let mut buf = [0u8; 2 + 16];
    /// buf[..2].copy_from_slice(b"hi");
    /// let n = XChaChaPoly::seal(&key, &[3u8; 24], b"", &mut buf, 2).unwrap();
    /// assert_eq!(XChaChaPoly::open(&key, &[3u8; 24], b"", &mut buf[..n]), Ok(2));
    /// ```
    XChaChaPoly,
    chacha20poly1305::XChaCha20Poly1305,
    "XChaChaPoly",
    24
);

#[cfg(feature = "aes-gcm")]
rustcrypto_aead!(
    /// AES-256-GCM with a 96-bit nonce (NIST SP 800-38D), feature `aes-gcm`.
    ///
    /// ```
    /// use securemesh_core::{Secret, crypto::{Aead, Aes256Gcm}};
    /// let key = Secret::new([7u8; 32]);
    /// let mut buf = [0u8; 3 + 16];
    /// buf[..3].copy_from_slice(b"abc");
    /// let n = Aes256Gcm::seal(&key, &[1u8; 12], b"", &mut buf, 3).unwrap();
    /// assert_eq!(Aes256Gcm::open(&key, &[1u8; 12], b"", &mut buf[..n]), Ok(3));
    /// ```
    Aes256Gcm,
    aes_gcm::Aes256Gcm,
    "AESGCM",
    12
);

//! Ciphersuite 0x004D's HPKE (`securemesh_mls_lite::crypto::xwing`, X-Wing
//! KEM): untrusted `kem_output`, ciphertext, tag and public keys.
//!
//! Setup (once): the key pair `xwing::derive_key_pair(IKM)` and a genuine
//! `EncryptWithLabel` of `PLAINTEXT` to it (label `"Welcome"`, context
//! `CONTEXT`, `TestRng`): its `kem_output (1120) | ciphertext | tag (16)`.
//!
//! Input: `mode u8 | rest`; `mode % 4` selects:
//! - 0, open arbitrary bytes: `rest = kem_len u16 | kem_output | tag (16) |
//!   ciphertext`, opened with the fixed private key;
//! - 1, a mutated genuine encryption: `rest` is a list of `pos u16 | xor u8`
//!   applied to the genuine `kem_output | ciphertext | tag` (positions
//!   modulo its length), then opened;
//! - 2, encrypt to a mutated public key: `rest` is a list of
//!   `pos u16 | xor u8` applied to the fixed public key (1216 bytes);
//! - 3, encrypt to `rest` as a public key.
//!
//! Properties checked:
//! - nothing panics;
//! - a failed open is `Error::Decrypt` and leaves the buffer as it was;
//! - an open succeeds exactly when the bytes are the genuine encryption,
//!   and then gives `PLAINTEXT` (any change to the X-Wing ciphertext
//!   changes the shared secret: ML-KEM's implicit rejection, `ct_X` in the
//!   combiner; a forged ChaCha20-Poly1305 tag is infeasible);
//! - encrypting to a key that is not 1216 bytes is `Error::Malformed`; to a
//!   1216-byte key it succeeds exactly when `core`'s X-Wing encapsulation
//!   accepts the key (the FIPS 203 §7.2 modulus check), and otherwise
//!   fails with `Error::Decrypt`, leaving the plaintext buffer as it was.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use securemesh_core::crypto::{Kem, XWing};
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::Error;
use securemesh_mls_lite::crypto::{Secret32, xwing};

const IKM: &[u8] = b"securemesh fuzz x-wing";
const CONTEXT: &[u8] = b"encrypted group info";
const PLAINTEXT: &[u8] = b"joiner secret and path secret";
const LABEL: &[u8] = b"Welcome";

struct Fixture {
    private: Secret32,
    public: [u8; xwing::NPK],
    /// `kem_output | ciphertext | tag`.
    genuine: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (private, public) = xwing::derive_key_pair(IKM);
        let mut buf = PLAINTEXT.to_vec();
        let mut scratch = [0u8; 64];
        let (kem_output, tag) = xwing::encrypt_with_label(
            &public,
            LABEL,
            CONTEXT,
            &mut buf,
            &mut scratch,
            &mut TestRng::new(0x4d_f022),
        )
        .expect("the genuine encryption");
        Fixture { private, public, genuine: [&kem_output[..], &buf, &tag].concat() }
    })
}

/// Open `kem_output`, `ciphertext`, `tag`; check the properties; true if opened.
fn open(kem_output: &[u8], ciphertext: &[u8], tag: &[u8; 16]) -> bool {
    let f = fixture();
    let mut buf = ciphertext.to_vec();
    let mut scratch = [0u8; 64];
    match xwing::decrypt_with_label(&f.private, LABEL, CONTEXT, kem_output, &mut buf, tag, &mut scratch) {
        Ok(()) => {
            let bytes = [kem_output, ciphertext, tag].concat();
            assert!(bytes == f.genuine, "opened bytes that are not the genuine encryption");
            assert_eq!(buf, PLAINTEXT);
            true
        }
        Err(e) => {
            assert_eq!(e, Error::Decrypt);
            assert_eq!(buf, ciphertext, "a failed open changed the buffer");
            false
        }
    }
}

/// Encrypt `PLAINTEXT` to `public`; check the properties.
fn encrypt_to(public: &[u8]) {
    let mut buf = PLAINTEXT.to_vec();
    let mut scratch = [0u8; 64];
    let got = xwing::encrypt_with_label(public, LABEL, CONTEXT, &mut buf, &mut scratch, &mut TestRng::new(7));
    if public.len() != xwing::NPK {
        assert_eq!(got.err(), Some(Error::Malformed));
        assert_eq!(buf, PLAINTEXT);
        return;
    }
    let accepted = XWing::encapsulate_slice(public, &mut TestRng::new(7)).is_ok();
    match got {
        Ok(_) => assert!(accepted, "encrypted to a key X-Wing refuses"),
        Err(e) => {
            assert!(!accepted, "refused a key X-Wing accepts: {e:?}");
            assert_eq!(e, Error::Decrypt);
            assert_eq!(buf, PLAINTEXT, "a failed encryption changed the buffer");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let Some((len, rest)) = rest.split_first_chunk::<2>() else { return };
            let len = usize::from(u16::from_be_bytes(*len));
            if rest.len() < len + 16 {
                return;
            }
            let (kem_output, rest) = rest.split_at(len);
            let (tag, ciphertext) = rest.split_at(16);
            open(kem_output, ciphertext, tag.try_into().expect("16 bytes"));
        }
        1 => {
            let f = fixture();
            let mut bytes = f.genuine.clone();
            let n = bytes.len();
            for op in rest.chunks_exact(3) {
                let pos = usize::from(u16::from_be_bytes([op[0], op[1]])) % n;
                bytes[pos] ^= op[2];
            }
            let (kem_output, rest) = bytes.split_at(xwing::NENC);
            let (ciphertext, tag) = rest.split_at(rest.len() - 16);
            let opened = open(kem_output, ciphertext, tag.try_into().expect("16 bytes"));
            assert_eq!(opened, bytes == f.genuine);
        }
        2 => {
            let mut key = fixture().public;
            for op in rest.chunks_exact(3) {
                key[usize::from(u16::from_be_bytes([op[0], op[1]])) % xwing::NPK] ^= op[2];
            }
            encrypt_to(&key);
        }
        _ => encrypt_to(rest),
    }
});

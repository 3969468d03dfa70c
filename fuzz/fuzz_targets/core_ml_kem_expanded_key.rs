//! Untrusted FIPS 203 expanded decapsulation keys into
//! `MlKem768ExpandedKey::from_bytes` and `MlKem1024ExpandedKey::from_bytes`
//! (`securemesh_core::crypto`, feature `ml-kem`), and decapsulation with a
//! key so loaded.
//!
//! Input: `mode u8 | body`. Bit 0 of `mode` picks ML-KEM-768 (0) or
//! ML-KEM-1024 (1). Bit 2 set: the whole body is `dk` (any length, no
//! ciphertext). Bit 2 clear: `dk` is the first `DK_EXPANDED_LEN` bytes of
//! the body (all of it if shorter) and the ciphertext is the rest (any
//! length). Bit 1 set and `dk` of the right length: `H(ek)` inside `dk` is
//! overwritten with SHA3-256 of the `ek` inside it before loading, so the
//! hash check passes and the mutations reach the `ek` decoding and the
//! loaded key (mutation alone cannot recompute a SHA3 hash).
//!
//! `dk` is `dk_PKE (384k) | ek (384k + 32) | H(ek) (32) | z (32)`
//! (`k` = 3 or 4).
//!
//! Properties checked:
//! - nothing panics;
//! - `from_bytes` is `Err(InvalidLength)` exactly when `dk` is not
//!   `DK_EXPANDED_LEN` bytes; otherwise it is `Ok` exactly when the `H(ek)`
//!   inside is SHA3-256 of the `ek` inside and every 12-bit coefficient of
//!   `ek`'s `t_hat` is below q = 3329 (FIPS 203 §7.2 and §7.3, reference
//!   computed here), and `Err(InvalidKey)` otherwise;
//! - a loaded key: `encapsulation_key` is the `ek` inside `dk`; `to_bytes`
//!   reproduces `ek | H(ek) | z` byte for byte, and `dk_PKE` byte for byte
//!   when its coefficients are below q (else as given or reduced modulo
//!   q); `to_bytes` loads again into a key with the same encoding;
//! - the ciphertext: `decapsulate_expanded_slice` is `Err(Truncated)` if it
//!   is shorter than `CT_LEN`, `Err(TrailingBytes)` if longer, and
//!   otherwise the secret `decapsulate_expanded` gives, with the first key
//!   and with the reloaded one (decapsulation is deterministic: implicit
//!   rejection gives a pseudo-random secret, never an error);
//! - a ciphertext encapsulated to the loaded key's `ek` (deterministic,
//!   `m` from the input) decapsulates without panic, and to the sender's
//!   secret when `dk` is the genuine expansion of one of
//!   `securemesh_fuzz::ML_KEM_SEEDS` (the keys of the committed seeds:
//!   checked only when `z` is theirs, so it costs no expansion otherwise).
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_core::crypto::{MlKem768, MlKem768ExpandedKey, MlKem1024, MlKem1024ExpandedKey};
use securemesh_core::{Error, Secret};
use securemesh_fuzz::ML_KEM_SEEDS;
use sha3::{Digest, Sha3_256};

/// ML-KEM's modulus q.
const Q: u16 = 3329;

/// Whether every 12-bit coefficient encoded in `bytes` (ByteEncode_12) is
/// below q.
fn reduced(bytes: &[u8]) -> bool {
    bytes.chunks_exact(3).all(|c| {
        let (a, b) = coefficients(c);
        a < Q && b < Q
    })
}

fn coefficients(c: &[u8]) -> (u16, u16) {
    let a = u16::from(c[0]) | (u16::from(c[1] & 0x0f) << 8);
    let b = u16::from(c[1] >> 4) | (u16::from(c[2]) << 4);
    (a, b)
}

/// `bytes` (ByteEncode_12) with every coefficient reduced modulo q.
fn reduce(bytes: &[u8]) -> Vec<u8> {
    bytes
        .chunks_exact(3)
        .flat_map(|c| {
            let (a, b) = coefficients(c);
            let (a, b) = (a % Q, b % Q);
            [a as u8, ((a >> 8) as u8) | ((b << 4) as u8), (b >> 4) as u8]
        })
        .collect()
}

macro_rules! check {
    ($name:ident, $kem:ident, $key:ident, $k:literal) => {
        fn $name(mode: u8, body: &[u8]) {
            const DK: usize = $kem::DK_EXPANDED_LEN;
            const CT: usize = $kem::CT_LEN;
            const PKE: usize = 384 * $k;
            const EK: usize = $kem::EK_LEN;
            let (dk, ct) = if mode & 4 != 0 {
                (body, None)
            } else {
                let (dk, ct) = body.split_at(body.len().min(DK));
                (dk, Some(ct))
            };
            let mut dk = dk.to_vec();
            if mode & 2 != 0 && dk.len() == DK {
                let h = Sha3_256::digest(&dk[PKE..PKE + EK]);
                dk[PKE + EK..DK - 32].copy_from_slice(&h);
            }

            let loaded = $key::from_bytes(&dk);
            let key = match loaded {
                Err(e) if dk.len() != DK => {
                    assert_eq!(e, Error::InvalidLength, "{} bytes", dk.len());
                    return;
                }
                Ok(_) if dk.len() != DK => panic!("a {}-byte dk loaded", dk.len()),
                other => {
                    let ek = &dk[PKE..PKE + EK];
                    let hash_ok = Sha3_256::digest(ek)[..] == dk[PKE + EK..DK - 32];
                    let ek_ok = reduced(&ek[..PKE]);
                    match other {
                        Ok(key) => {
                            assert!(hash_ok, "loaded with a wrong H(ek)");
                            assert!(ek_ok, "loaded with an ek coefficient >= q");
                            key
                        }
                        Err(e) => {
                            assert_eq!(e, Error::InvalidKey);
                            assert!(!(hash_ok && ek_ok), "a well-formed dk was refused");
                            return;
                        }
                    }
                }
            };

            assert_eq!(&key.encapsulation_key()[..], &dk[PKE..PKE + EK], "encapsulation_key");
            let enc = key.to_bytes();
            let enc = enc.expose();
            assert_eq!(&enc[PKE..], &dk[PKE..], "to_bytes: ek | H(ek) | z");
            if reduced(&dk[..PKE]) {
                assert_eq!(&enc[..PKE], &dk[..PKE], "to_bytes: dk_PKE");
            } else {
                assert!(
                    enc[..PKE] == dk[..PKE] || enc[..PKE] == reduce(&dk[..PKE])[..],
                    "to_bytes: dk_PKE neither as given nor reduced"
                );
            }
            let again = $key::from_bytes(enc).expect("to_bytes loads again");
            assert_eq!(again.to_bytes().expose(), enc, "to_bytes of the reloaded key");

            if let Some(ct) = ct {
                let got = $kem::decapsulate_expanded_slice(&key, ct);
                match <&[u8; CT]>::try_from(ct) {
                    Ok(arr) => {
                        let ss = got.expect("a CT_LEN ciphertext decapsulates");
                        assert_eq!(ss.expose(), $kem::decapsulate_expanded(&key, arr).expose());
                        assert_eq!(ss.expose(), $kem::decapsulate_expanded(&again, arr).expose());
                    }
                    Err(_) if ct.len() < CT => assert_eq!(got.err(), Some(Error::Truncated)),
                    Err(_) => assert_eq!(got.err(), Some(Error::TrailingBytes)),
                }
            }

            // A genuine encapsulation to the loaded key's ek (m from the input).
            let mut m = [0u8; 32];
            for (i, b) in body.iter().rev().take(32).enumerate() {
                m[i] = *b;
            }
            let ek: [u8; EK] = key.encapsulation_key();
            let (ct, sent) =
                $kem::dangerous_encapsulate_deterministic(&ek, &m).expect("a loaded key's ek encapsulates");
            let got = $kem::decapsulate_expanded(&key, &ct);
            let genuine = ML_KEM_SEEDS.iter().any(|s| {
                s[32..] == dk[DK - 32..]
                    && $kem::dangerous_expanded_decapsulation_key(&Secret::new(*s)).expose()[..] == dk[..]
            });
            if genuine {
                assert_eq!(got.expose(), sent.expose(), "the genuine key decapsulates its own ciphertext");
            }
        }
    };
}

check!(check_768, MlKem768, MlKem768ExpandedKey, 3);
check!(check_1024, MlKem1024, MlKem1024ExpandedKey, 4);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    if mode & 1 == 0 {
        check_768(mode, body);
    } else {
        check_1024(mode, body);
    }
});

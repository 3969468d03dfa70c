//! The key derivations of X3DH and the Double Ratchet (all HKDF-SHA256 /
//! HMAC-SHA256; labels are part of the wire specification in
//! [`crate::spec`]).

use securemesh_core::Secret;
use securemesh_core::crypto::{Hash, Sha256};

/// `info` of the X3DH KDF.
pub const X3DH_INFO: &[u8] = b"securemesh-x3dh-v1";
/// `info` of the X3DH KDF when the session encrypts headers (96 bytes out).
pub const X3DH_HE_INFO: &[u8] = b"securemesh-x3dh-he-v1";
/// `info` of KDF_RK.
pub const ROOT_INFO: &[u8] = b"securemesh-ratchet-root-v1";
/// `info` of KDF_RK when headers are encrypted (96 bytes out).
pub const ROOT_HE_INFO: &[u8] = b"securemesh-ratchet-root-he-v1";
/// `info` of the message-key expansion.
pub const MESSAGE_INFO: &[u8] = b"securemesh-ratchet-message-v1";

/// A 32-byte secret.
pub type Key32 = Secret<[u8; 32]>;

/// The X3DH `F` prefix for X25519: 32 bytes of 0xFF (X3DH §2.2).
pub const X3DH_F: [u8; 32] = [0xff; 32];

/// X3DH `KDF(KM)`: HKDF-SHA256 with a zero salt over `F || KM`; fills `out`
/// (32 bytes: SK; 96 bytes with header encryption: SK, HKa, NHKb).
pub fn x3dh(dhs: &[&Key32], info: &[u8], out: &mut [u8]) {
    let mut ikm = Secret::new([0u8; 32 * 5]);
    let buf = ikm.expose_mut();
    let mut n = 0;
    for part in core::iter::once(&X3DH_F).chain(dhs.iter().map(|k| k.expose())) {
        if let Some(dst) = buf.get_mut(n..n + 32) {
            dst.copy_from_slice(part);
            n += 32;
        }
    }
    let prk = Sha256::hkdf_extract(&[0u8; 32], buf.get(..n).unwrap_or(&[]));
    // At most 96 bytes out of HKDF-SHA256: cannot exceed 255 blocks.
    let _ = Sha256::hkdf_expand(prk.expose(), &[info], out);
}

/// `KDF_RK(rk, dh_out)` (Double Ratchet §5.2): HKDF-SHA256 with `rk` as
/// salt; the new root key and a chain key (and, with header encryption, a
/// next header key).
pub fn root(rk: &Key32, dh_out: &Key32, header_keys: bool) -> (Key32, Key32, Option<Key32>) {
    let mut out = Secret::new([0u8; 96]);
    let prk = Sha256::hkdf_extract(rk.expose(), dh_out.expose());
    let (info, len) = if header_keys { (ROOT_HE_INFO, 96) } else { (ROOT_INFO, 64) };
    let buf = out.expose_mut();
    let _ = Sha256::hkdf_expand(prk.expose(), &[info], buf.get_mut(..len).unwrap_or(&mut []));
    let take = |i: usize| {
        Key32::from_slice(buf.get(i * 32..i * 32 + 32).unwrap_or(&[0u8; 32])).unwrap_or(Key32::zeroed())
    };
    (take(0), take(1), header_keys.then(|| take(2)))
}

/// `KDF_CK(ck)` (Double Ratchet §5.2): HMAC-SHA256 keyed by `ck` of the byte
/// 0x01 gives the message key, of 0x02 the next chain key.
pub fn chain(ck: &Key32) -> (Key32, Key32) {
    let mk = Key32::new(Sha256::hmac(ck.expose(), &[&[0x01]]));
    let next = Key32::new(Sha256::hmac(ck.expose(), &[&[0x02]]));
    (next, mk)
}

/// Expand a message key into a ChaCha20-Poly1305 key and nonce:
/// HKDF-SHA256(salt = 32 zero bytes, ikm = mk, info = MESSAGE_INFO, 44 bytes).
pub fn message_keys(mk: &Key32) -> (Key32, [u8; 12]) {
    let mut out = Secret::new([0u8; 44]);
    let prk = Sha256::hkdf_extract(&[0u8; 32], mk.expose());
    let _ = Sha256::hkdf_expand(prk.expose(), &[MESSAGE_INFO], out.expose_mut());
    let (k, n) = out.expose().split_at(32);
    let key = Key32::from_slice(k).unwrap_or(Key32::zeroed());
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(n);
    (key, nonce)
}

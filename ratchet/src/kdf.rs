//! The key derivations of X3DH and the Double Ratchet (all HKDF-SHA256 /
//! HMAC-SHA256; labels are part of the wire specification in
//! [`crate::spec`]).

use crate::error::Error;
use securemesh_core::Secret;
use securemesh_core::crypto::{Hash, Sha256};

/// Label of the X3DH KDF `info` (followed by the initial message's X3DH
/// prefix, see [`x3dh`]).
pub const X3DH_INFO: &[u8] = b"securemesh-x3dh-v2";
/// Label of the X3DH KDF `info` when the session encrypts headers (96
/// bytes out).
pub const X3DH_HE_INFO: &[u8] = b"securemesh-x3dh-he-v2";
/// Most DH outputs X3DH feeds its KDF (DH1..DH4).
pub const X3DH_MAX_DH: usize = 4;
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

/// X3DH `KDF(KM)`: HKDF-SHA256 with a zero salt over `F || KM`, with
/// `info = label || prefix` where `prefix` is the initial message's X3DH
/// prefix byte for byte (type byte through the header-encryption flag), so
/// every prefix field, `ek_pub` above all, is bound into `SK`. Fills `out`
/// (32 bytes: SK; 96 bytes with header encryption: SK, HKa, NHKb).
///
/// More than [`X3DH_MAX_DH`] DH outputs is [`Error::Malformed`] and an
/// output longer than HKDF allows is [`Error::InvalidLength`]; on error
/// `out` is zeroed.
///
/// ```
/// use securemesh_ratchet::kdf::{self, Key32};
/// let dhs = [Key32::new([1; 32]), Key32::new([2; 32]), Key32::new([3; 32])];
/// let mut sk = [0u8; 32];
/// kdf::x3dh(&[&dhs[0], &dhs[1], &dhs[2]], kdf::X3DH_INFO, b"prefix bytes", &mut sk)?;
/// let mut other = [0u8; 32];
/// kdf::x3dh(&[&dhs[0], &dhs[1], &dhs[2]], kdf::X3DH_INFO, b"prefix byteS", &mut other)?;
/// assert_ne!(sk, other); // one changed prefix byte, another SK
/// # Ok::<(), securemesh_ratchet::Error>(())
/// ```
pub fn x3dh(dhs: &[&Key32], label: &[u8], prefix: &[u8], out: &mut [u8]) -> Result<(), Error> {
    agreement(dhs, None, label, &[prefix], out)
}

/// PQXDH `KDF(KM)` (PQXDH §2.2, §3.3): as [`x3dh`] with the KEM shared
/// secret after the DH outputs, `ikm = F || DH1 || DH2 || DH3 [|| DH4] ||
/// SS`, and `info = label || prefix` where the label names the protocol,
/// curve, hash and KEM (e.g. [`PQXDH_INFO_768`](crate::pqxdh::PQXDH_INFO_768))
/// and the prefix (which carries the KEM ciphertext) is the initial
/// message's, byte for byte. Same errors as [`x3dh`].
///
/// ```
/// use securemesh_ratchet::kdf::{self, Key32};
/// let dhs = [Key32::new([1; 32]), Key32::new([2; 32]), Key32::new([3; 32])];
/// let (ss, label) = (Key32::new([4; 32]), securemesh_ratchet::pqxdh::PQXDH_INFO_768);
/// let (mut pq, mut classic) = ([0u8; 32], [0u8; 32]);
/// kdf::pqxdh(&[&dhs[0], &dhs[1], &dhs[2]], &ss, label, b"prefix", &mut pq)?;
/// kdf::x3dh(&[&dhs[0], &dhs[1], &dhs[2]], label, b"prefix", &mut classic)?;
/// assert_ne!(pq, classic); // SS is an input
/// # Ok::<(), securemesh_ratchet::Error>(())
/// ```
pub fn pqxdh(dhs: &[&Key32], ss: &Key32, label: &[u8], prefix: &[u8], out: &mut [u8]) -> Result<(), Error> {
    agreement(dhs, Some(ss), label, &[prefix], out)
}

/// Most parts a prefix is passed in (its head, the KEM ciphertext, the
/// header-encryption flag), so the initiator need not copy the ciphertext.
pub(crate) const MAX_PREFIX_PARTS: usize = 3;

/// `HKDF(salt = 0^32, ikm = F || dhs [|| ss], info = label || prefix)`,
/// the prefix given as the concatenation of `prefix` (at most
/// [`MAX_PREFIX_PARTS`] parts, else [`Error::Malformed`]).
pub(crate) fn agreement(
    dhs: &[&Key32],
    ss: Option<&Key32>,
    label: &[u8],
    prefix: &[&[u8]],
    out: &mut [u8],
) -> Result<(), Error> {
    out.fill(0);
    if dhs.len() > X3DH_MAX_DH || prefix.len() > MAX_PREFIX_PARTS {
        return Err(Error::Malformed);
    }
    let mut info: [&[u8]; 1 + MAX_PREFIX_PARTS] = [&[]; 1 + MAX_PREFIX_PARTS];
    for (dst, part) in info.iter_mut().zip(core::iter::once(label).chain(prefix.iter().copied())) {
        *dst = part;
    }
    let mut ikm = Secret::new([0u8; 32 * (2 + X3DH_MAX_DH)]);
    let buf = ikm.expose_mut();
    let parts = core::iter::once(&X3DH_F).chain(dhs.iter().map(|k| k.expose())).chain(ss.map(|k| k.expose()));
    let mut n = 0usize;
    for (dst, part) in buf.chunks_exact_mut(32).zip(parts) {
        dst.copy_from_slice(part);
        // At most 2 + X3DH_MAX_DH chunks of 32.
        n = n.saturating_add(32);
    }
    let prk = Sha256::hkdf_extract(&[0u8; 32], buf.get(..n).unwrap_or(&[]));
    Sha256::hkdf_expand(prk.expose(), &info, out).map_err(|_| {
        out.fill(0);
        Error::InvalidLength
    })
}

/// `KDF_RK(rk, dh_out)` (Double Ratchet §5.2): HKDF-SHA256 with `rk` as
/// salt; the new root key and a chain key (and, with header encryption, a
/// next header key). HKDF gives these 64 or 96 bytes always; its error
/// would be [`Error::InvalidLength`], never keys of zeros.
pub fn root(rk: &Key32, dh_out: &Key32, header_keys: bool) -> Result<(Key32, Key32, Option<Key32>), Error> {
    let mut out = Secret::new([0u8; 96]);
    let prk = Sha256::hkdf_extract(rk.expose(), dh_out.expose());
    let (info, len) = if header_keys { (ROOT_HE_INFO, 96) } else { (ROOT_INFO, 64) };
    let buf = out.expose_mut();
    Sha256::hkdf_expand(prk.expose(), &[info], buf.get_mut(..len).ok_or(Error::InvalidLength)?)
        .map_err(|_| Error::InvalidLength)?;
    let (rk, rest) = buf.split_first_chunk::<32>().ok_or(Error::InvalidLength)?;
    let (ck, nhk) = rest.split_first_chunk::<32>().ok_or(Error::InvalidLength)?;
    let nhk = nhk.first_chunk::<32>().ok_or(Error::InvalidLength)?;
    Ok((Key32::new(*rk), Key32::new(*ck), header_keys.then(|| Key32::new(*nhk))))
}

/// `KDF_CK(ck)` (Double Ratchet §5.2): HMAC-SHA256 keyed by `ck` of the byte
/// 0x01 gives the message key, of 0x02 the next chain key.
pub fn chain(ck: &Key32) -> (Key32, Key32) {
    let mk = Key32::new(Sha256::hmac(ck.expose(), &[&[0x01]]));
    let next = Key32::new(Sha256::hmac(ck.expose(), &[&[0x02]]));
    (next, mk)
}

/// Expand a message key into a ChaCha20-Poly1305 key and nonce:
/// HKDF-SHA256(salt = 32 zero bytes, ikm = mk, info = MESSAGE_INFO, 44
/// bytes). HKDF gives 44 bytes always; its error would be
/// [`Error::InvalidLength`], never a key of zeros.
pub fn message_keys(mk: &Key32) -> Result<(Key32, [u8; 12]), Error> {
    let mut out = Secret::new([0u8; 44]);
    let prk = Sha256::hkdf_extract(&[0u8; 32], mk.expose());
    Sha256::hkdf_expand(prk.expose(), &[MESSAGE_INFO], out.expose_mut()).map_err(|_| Error::InvalidLength)?;
    let (k, n) = out.expose().split_first_chunk::<32>().ok_or(Error::InvalidLength)?;
    let nonce: [u8; 12] = n.try_into().map_err(|_| Error::InvalidLength)?;
    Ok((Key32::new(*k), nonce))
}

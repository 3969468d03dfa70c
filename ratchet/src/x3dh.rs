//! X3DH (Signal, revision 1): the shared secret and associated data of a
//! new session, for the initiator (from a bundle) and the responder (from
//! the initial message).
//!
//! `SK = HKDF-SHA256(salt = 32 zero bytes, ikm = F || DH1 || DH2 || DH3 [|| DH4],
//! info = "securemesh-x3dh-v2" || prefix, 32)` with `F = 0xFF * 32`, the
//! initial message's X3DH prefix byte for byte, and
//! `DH1 = DH(IK_A, SPK_B)`, `DH2 = DH(EK_A, IK_B)`, `DH3 = DH(EK_A, SPK_B)`,
//! `DH4 = DH(EK_A, OPK_B)`. `AD = Encode(IK_A) || Encode(IK_B)` with
//! `Encode(IK) = sign_pub || dh_pub`. An all-zero DH result is refused.
//!
//! PQXDH (see [`crate::pqxdh`]) is the same with the KEM shared secret
//! `SS` appended to the KDF input and its own `info` label.

use crate::error::Error;
use crate::identity::{Identity, PublicIdentity};
use crate::kdf::{self, Key32, X3DH_HE_INFO, X3DH_INFO};
use crate::pqxdh::KemAlgorithm;
use securemesh_core::Secret;
use securemesh_core::crypto::{Dh, X25519};

/// The result of X3DH on either side.
pub(crate) struct Agreement {
    pub(crate) sk: Key32,
    /// With header encryption: (shared HKa, shared NHKb).
    pub(crate) header_keys: Option<(Key32, Key32)>,
    pub(crate) ad: [u8; 128],
}

fn dh(sk: &Key32, pk: &[u8; 32]) -> Result<Key32, Error> {
    X25519::dh(sk, pk).require_contributory().map_err(|_| Error::NonContributory)
}

/// The KEM shared secret of PQXDH and its algorithm (`None`: X3DH).
pub(crate) type KemSecret<'a> = Option<(&'a Key32, KemAlgorithm)>;

fn kdf(dhs: &[&Key32], kem: KemSecret<'_>, he: bool, prefix: &[&[u8]], out: &mut [u8]) -> Result<(), Error> {
    match kem {
        Some((ss, alg)) => kdf::agreement(dhs, Some(ss), alg.info(he), prefix, out),
        None => kdf::agreement(dhs, None, if he { X3DH_HE_INFO } else { X3DH_INFO }, prefix, out),
    }
}

/// What the KDF takes besides the DH outputs: the KEM secret (PQXDH),
/// the initial message's prefix (in parts, concatenated) and the header mode.
pub(crate) struct Context<'a> {
    pub(crate) kem: KemSecret<'a>,
    pub(crate) prefix: &'a [&'a [u8]],
    pub(crate) he: bool,
}

fn derive(
    dhs: &[&Key32],
    alice: &PublicIdentity,
    bob: &PublicIdentity,
    c: &Context<'_>,
) -> Result<Agreement, Error> {
    let (kem, prefix, he) = (c.kem, c.prefix, c.he);
    let mut ad = [0u8; 128];
    let (a, b) = ad.split_at_mut(64);
    a.copy_from_slice(&alice.ad_bytes());
    b.copy_from_slice(&bob.ad_bytes());
    if he {
        let mut out = Secret::new([0u8; 96]);
        kdf(dhs, kem, true, prefix, out.expose_mut())?;
        let (sk, rest) = out.expose().split_first_chunk::<32>().ok_or(Error::InvalidLength)?;
        let (hka, nhkb) = rest.split_first_chunk::<32>().ok_or(Error::InvalidLength)?;
        let nhkb: &[u8; 32] = nhkb.try_into().map_err(|_| Error::InvalidLength)?;
        Ok(Agreement { sk: Key32::new(*sk), header_keys: Some((Key32::new(*hka), Key32::new(*nhkb))), ad })
    } else {
        let mut sk = Key32::zeroed();
        kdf(dhs, kem, false, prefix, sk.expose_mut())?;
        Ok(Agreement { sk, header_keys: None, ad })
    }
}

/// Alice's side: `ek` is her fresh ephemeral secret, `prefix` the X3DH
/// prefix her initial messages will carry.
pub(crate) fn initiator(
    alice: &Identity,
    bob: &PublicIdentity,
    spk: &[u8; 32],
    opk: Option<&[u8; 32]>,
    ek: &Key32,
    context: &Context<'_>,
) -> Result<Agreement, Error> {
    let dh1 = dh(alice.dh_secret(), spk)?;
    let dh2 = dh(ek, &bob.dh)?;
    let dh3 = dh(ek, spk)?;
    match opk {
        Some(opk) => {
            let dh4 = dh(ek, opk)?;
            derive(&[&dh1, &dh2, &dh3, &dh4], alice.public(), bob, context)
        }
        None => derive(&[&dh1, &dh2, &dh3], alice.public(), bob, context),
    }
}

/// Bob's side: `prefix` is the received initial message's X3DH prefix.
pub(crate) fn responder(
    bob: &Identity,
    alice: &PublicIdentity,
    spk: &Key32,
    opk: Option<&Key32>,
    ek_a: &[u8; 32],
    context: &Context<'_>,
) -> Result<Agreement, Error> {
    let dh1 = dh(spk, &alice.dh)?;
    let dh2 = dh(bob.dh_secret(), ek_a)?;
    let dh3 = dh(spk, ek_a)?;
    match opk {
        Some(opk) => {
            let dh4 = dh(opk, ek_a)?;
            derive(&[&dh1, &dh2, &dh3, &dh4], alice, bob.public(), context)
        }
        None => derive(&[&dh1, &dh2, &dh3], alice, bob.public(), context),
    }
}

//! X3DH (Signal, revision 1): the shared secret and associated data of a
//! new session, for the initiator (from a bundle) and the responder (from
//! the initial message).
//!
//! `SK = HKDF-SHA256(salt = 32 zero bytes, ikm = F || DH1 || DH2 || DH3 [|| DH4],
//! info = "securemesh-x3dh-v1", 32)` with `F = 0xFF * 32`, and
//! `DH1 = DH(IK_A, SPK_B)`, `DH2 = DH(EK_A, IK_B)`, `DH3 = DH(EK_A, SPK_B)`,
//! `DH4 = DH(EK_A, OPK_B)`. `AD = Encode(IK_A) || Encode(IK_B)` with
//! `Encode(IK) = sign_pub || dh_pub`. An all-zero DH result is refused.

use crate::error::Error;
use crate::identity::{Identity, PublicIdentity};
use crate::kdf::{self, Key32, X3DH_HE_INFO, X3DH_INFO};
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

fn derive(dhs: &[&Key32], alice: &PublicIdentity, bob: &PublicIdentity, he: bool) -> Agreement {
    let mut ad = [0u8; 128];
    let (a, b) = ad.split_at_mut(64);
    a.copy_from_slice(&alice.ad_bytes());
    b.copy_from_slice(&bob.ad_bytes());
    if he {
        let mut out = Secret::new([0u8; 96]);
        kdf::x3dh(dhs, X3DH_HE_INFO, out.expose_mut());
        let o = out.expose();
        let k = |i: usize| {
            Key32::from_slice(o.get(i * 32..i * 32 + 32).unwrap_or(&[0u8; 32])).unwrap_or(Key32::zeroed())
        };
        Agreement { sk: k(0), header_keys: Some((k(1), k(2))), ad }
    } else {
        let mut sk = Key32::zeroed();
        kdf::x3dh(dhs, X3DH_INFO, sk.expose_mut());
        Agreement { sk, header_keys: None, ad }
    }
}

/// Alice's side: `ek` is her fresh ephemeral secret.
pub(crate) fn initiator(
    alice: &Identity,
    bob: &PublicIdentity,
    spk: &[u8; 32],
    opk: Option<&[u8; 32]>,
    ek: &Key32,
    he: bool,
) -> Result<Agreement, Error> {
    let dh1 = dh(alice.dh_secret(), spk)?;
    let dh2 = dh(ek, &bob.dh)?;
    let dh3 = dh(ek, spk)?;
    match opk {
        Some(opk) => {
            let dh4 = dh(ek, opk)?;
            Ok(derive(&[&dh1, &dh2, &dh3, &dh4], alice.public(), bob, he))
        }
        None => Ok(derive(&[&dh1, &dh2, &dh3], alice.public(), bob, he)),
    }
}

/// Bob's side.
pub(crate) fn responder(
    bob: &Identity,
    alice: &PublicIdentity,
    spk: &Key32,
    opk: Option<&Key32>,
    ek_a: &[u8; 32],
    he: bool,
) -> Result<Agreement, Error> {
    let dh1 = dh(spk, &alice.dh)?;
    let dh2 = dh(bob.dh_secret(), ek_a)?;
    let dh3 = dh(spk, ek_a)?;
    match opk {
        Some(opk) => {
            let dh4 = dh(opk, ek_a)?;
            Ok(derive(&[&dh1, &dh2, &dh3, &dh4], alice, bob.public(), he))
        }
        None => Ok(derive(&[&dh1, &dh2, &dh3], alice, bob.public(), he)),
    }
}

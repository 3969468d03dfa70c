//! The key schedule (RFC 9420 §8): epoch secrets from the previous init
//! secret, the commit secret, the PSK secret and the GroupContext; the PSK
//! secret (§8.4); the exporter (§8.5); the confirmation tag (§6.1).

use crate::crypto::{NH, Secret32, derive_key_pair, derive_secret, expand_with_label, extract, mac};
use crate::error::Error;
use securemesh_core::codec::Writer;
use securemesh_core::crypto::{Hash, Sha256};

/// The GroupContext of an epoch (RFC 9420 §8.1), borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupContext<'a> {
    /// The ciphersuite (0x0003; 0x004D with feature `x-wing`).
    pub cipher_suite: u16,
    /// Group identifier.
    pub group_id: &'a [u8],
    /// Epoch number.
    pub epoch: u64,
    /// Tree hash of the ratchet tree.
    pub tree_hash: &'a [u8],
    /// Confirmed transcript hash.
    pub confirmed_transcript_hash: &'a [u8],
    /// Encoded extensions vector contents (without its length).
    pub extensions: &'a [u8],
}

impl GroupContext<'_> {
    /// TLS encoding: version 1 (mls10), the ciphersuite and the fields.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        self.encode_for_suite(self.cipher_suite, out)
    }

    /// TLS encoding with another `cipher_suite` field, for the suites that
    /// share suite 3's key schedule (KDF HKDF-SHA256, `Nh` = 32), e.g.
    /// 0x004D (`crypto::xwing`, feature `x-wing`).
    ///
    /// ```
    /// use securemesh_mls_lite::key_schedule::GroupContext;
    /// let gc = GroupContext { cipher_suite: 3, group_id: b"g", epoch: 1, tree_hash: &[1; 32], confirmed_transcript_hash: &[2; 32], extensions: &[] };
    /// let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
    /// let n = gc.encode(&mut a)?;
    /// assert_eq!(gc.encode_for_suite(0x004D, &mut b)?, n);
    /// assert_eq!((&a[2..4], &b[2..4], &a[4..n]), (&[0, 3][..], &[0, 0x4D][..], &b[4..n]));
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn encode_for_suite(&self, cipher_suite: u16, out: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(out);
        w.write_u16(1)?;
        w.write_u16(cipher_suite)?;
        w.write_vec_varint(self.group_id)?;
        w.write_u64(self.epoch)?;
        w.write_vec_varint(self.tree_hash)?;
        w.write_vec_varint(self.confirmed_transcript_hash)?;
        w.write_vec_varint(self.extensions)?;
        Ok(w.finish()?)
    }
}

/// The secrets of one epoch.
pub struct EpochSecrets {
    /// `joiner_secret` (goes into Welcome).
    pub joiner: Secret32,
    /// `welcome_secret`.
    pub welcome: Secret32,
    /// `sender_data_secret`.
    pub sender_data: Secret32,
    /// `encryption_secret` (root of the secret tree).
    pub encryption: Secret32,
    /// `exporter_secret`.
    pub exporter: Secret32,
    /// `external_secret`.
    pub external: Secret32,
    /// `confirmation_key`.
    pub confirmation_key: Secret32,
    /// `membership_key`.
    pub membership_key: Secret32,
    /// `resumption_psk`.
    pub resumption_psk: Secret32,
    /// `epoch_authenticator`.
    pub epoch_authenticator: Secret32,
    /// `init_secret` of the next epoch.
    pub init: Secret32,
}

impl EpochSecrets {
    /// Run the key schedule. `commit_secret` and `psk_secret` are all-zero
    /// `Nh` bytes when absent; `group_context` is the encoded GroupContext
    /// of the new epoch.
    pub fn derive(
        init_secret: &[u8],
        commit_secret: &[u8],
        psk_secret: &[u8],
        group_context: &[u8],
    ) -> Result<Self, Error> {
        let pre_joiner = extract(init_secret, commit_secret);
        let mut joiner = Secret32::zeroed();
        expand_with_label(pre_joiner.expose(), b"joiner", group_context, joiner.expose_mut())?;
        Self::from_joiner(joiner, psk_secret, group_context)
    }

    /// The schedule from `joiner_secret` on (what a Welcome gives a joiner).
    pub fn from_joiner(joiner: Secret32, psk_secret: &[u8], group_context: &[u8]) -> Result<Self, Error> {
        let member = extract(joiner.expose(), psk_secret);
        let welcome = derive_secret(member.expose(), b"welcome")?;
        let mut epoch = Secret32::zeroed();
        expand_with_label(member.expose(), b"epoch", group_context, epoch.expose_mut())?;
        let e = epoch.expose();
        Ok(EpochSecrets {
            welcome,
            sender_data: derive_secret(e, b"sender data")?,
            encryption: derive_secret(e, b"encryption")?,
            exporter: derive_secret(e, b"exporter")?,
            external: derive_secret(e, b"external")?,
            confirmation_key: derive_secret(e, b"confirm")?,
            membership_key: derive_secret(e, b"membership")?,
            resumption_psk: derive_secret(e, b"resumption")?,
            epoch_authenticator: derive_secret(e, b"authentication")?,
            init: derive_secret(e, b"init")?,
            joiner,
        })
    }

    /// `MLS-Exporter(label, context, out.len())`.
    pub fn export(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), Error> {
        mls_exporter(&self.exporter, label, context, out)
    }

    /// The external public key (HPKE `DeriveKeyPair(external_secret)`).
    pub fn external_public(&self) -> [u8; 32] {
        derive_key_pair(self.external.expose()).1
    }

    /// `confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash)`.
    pub fn confirmation_tag(&self, confirmed_transcript_hash: &[u8]) -> [u8; NH] {
        mac(self.confirmation_key.expose(), &[confirmed_transcript_hash])
    }
}

/// `MLS-Exporter(label, context, out.len())` (§8.5) from an epoch's
/// `exporter_secret`:
/// `ExpandWithLabel(DeriveSecret(exporter_secret, label), "exported", Hash(context), length)`.
pub fn mls_exporter(
    exporter_secret: &Secret32,
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Result<(), Error> {
    let derived = derive_secret(exporter_secret.expose(), label)?;
    let h = Sha256::digest(&[context]);
    expand_with_label(derived.expose(), b"exported", &h, out)
}

/// A pre-shared key to mix into the schedule (§8.4): its encoded
/// `PreSharedKeyID` and its value. `Debug` shows the id only, never the
/// PSK value.
#[derive(Clone, Copy)]
pub struct PskInput<'a> {
    /// Encoded `PreSharedKeyID` (type, id fields, nonce).
    pub id: &'a [u8],
    /// The PSK value.
    pub psk: &'a [u8],
}

impl core::fmt::Debug for PskInput<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PskInput").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Encode an external `PreSharedKeyID` (psktype 1): `1 | psk_id<V> | psk_nonce<V>`.
pub fn external_psk_id(psk_id: &[u8], psk_nonce: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let mut w = Writer::new(out);
    w.write_u8(1)?;
    w.write_vec_varint(psk_id)?;
    w.write_vec_varint(psk_nonce)?;
    Ok(w.finish()?)
}

/// The PSK secret of a list of PSKs (§8.4); all-zero `Nh` bytes for none.
pub fn psk_secret(psks: &[PskInput<'_>]) -> Result<Secret32, Error> {
    let count = u16::try_from(psks.len()).map_err(|_| Error::Capacity)?;
    let mut secret = Secret32::zeroed();
    for (i, p) in psks.iter().enumerate() {
        let extracted = extract(&[0u8; NH], p.psk);
        // PSKLabel = id || index u16 || count u16.
        let mut label = [0u8; 512];
        let mut w = Writer::new(&mut label);
        w.write_bytes(p.id)?;
        w.write_u16(i as u16)?;
        w.write_u16(count)?;
        let n = w.finish()?;
        let mut input = Secret32::zeroed();
        expand_with_label(
            extracted.expose(),
            b"derived psk",
            label.get(..n).unwrap_or(&[]),
            input.expose_mut(),
        )?;
        secret = extract(input.expose(), secret.expose());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::PskInput;
    use std::format;

    #[test]
    fn psk_input_debug_hides_the_psk() {
        let psk = [0xa5u8, 0x5a, 0xc3, 0x3c, 0x99];
        let p = PskInput { id: &[1, 2, 3], psk: &psk };
        for s in [format!("{p:?}"), format!("{p:#?}")] {
            assert!(s.contains("PskInput"), "{s}");
            assert!(!s.contains("psk:"), "{s}");
            // Neither the decimal nor the hex spelling of the PSK bytes.
            assert!(!s.contains("165"), "{s}");
            assert!(!s.contains("90, 195"), "{s}");
            assert!(!s.to_lowercase().contains("a5"), "{s}");
        }
    }
}

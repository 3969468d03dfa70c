//! Group creation (RFC 9420 §11): a one-member group at epoch 0.
//!
//! The creator's leaf is the leaf node of a KeyPackage of its own (made
//! with [`create_key_package`](crate::key_package::create_key_package) for
//! this group and not published: its encryption key becomes the leaf key).
//! The epoch-0 state is what §11 lists: a tree of that one leaf, the
//! caller's group id and GroupContext extensions, an empty confirmed
//! transcript hash, and a fresh random epoch secret. The epoch secret comes
//! out of the regular key schedule (§8) from a fresh random `init_secret`
//! with no commit secret and no PSK, as OpenMLS and mls-rs do; the interim
//! transcript hash covers the confirmation tag of that epoch (§8.2). Members
//! are then added by commits ([`pending_commit`](crate::pending_commit)).

use crate::crypto::suite::Suite;
use crate::crypto::{NH, Secret32};
use crate::error::Error;
use crate::group::Group;
use crate::welcome::JoinKeys;
use securemesh_core::CryptoRng;
use securemesh_core::crypto::{Ed25519, Signature};

/// What a hybrid credential adds to our KeyPackage (feature `ml-dsa`).
#[cfg(feature = "ml-dsa")]
const HYBRID_EXTRA: usize = crate::hybrid_credential::HYBRID_LEAF_OVERHEAD;
#[cfg(not(feature = "ml-dsa"))]
const HYBRID_EXTRA: usize = 0;

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Make this slot a new group `group_id` at epoch 0 whose only member
    /// (leaf 0) is the owner of `keys` (its KeyPackage, leaf encryption
    /// private key and signature seed; `init_priv` is not used), with the
    /// GroupContext `extensions` (an `Extension extensions<V>` body, often
    /// empty). The KeyPackage is validated as a received one would be,
    /// except its lifetime; the private keys must match its leaf. Secrets
    /// come from `rng`. On error the slot is left empty.
    ///
    /// ```
    /// use securemesh_core::crypto::{Ed25519, Signature};
    /// use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package, key_package_len};
    /// use securemesh_mls_lite::messages::KeyPackage;
    /// use securemesh_mls_lite::{DefaultGroup, JoinKeys};
    /// let mut rng = TestRng::new(1);
    /// let identity_key = Ed25519::generate(&mut rng);
    /// let params = KeyPackageParams { identity: b"alice", not_before: 0, not_after: u64::MAX, last_resort: false };
    /// let (mut kp, mut scratch) = (vec![0u8; key_package_len(5)], vec![0u8; 1024]);
    /// let (n, secrets) = create_key_package(&params, &identity_key, &mut rng, &mut kp, &mut scratch)?;
    /// let keys = JoinKeys {
    ///     key_package: KeyPackage::from_bytes(&kp[..n])?,
    ///     init_priv: &secrets.init_priv,
    ///     encryption_priv: &secrets.encryption_priv,
    ///     signature_priv: &identity_key,
    /// };
    /// let mut group: Box<DefaultGroup> = Box::default();
    /// group.create_into(b"fleet-7", &keys, &[], &mut rng)?;
    /// assert_eq!((group.epoch(), group.members().count(), group.own_leaf()), (0, 1, 0));
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn create_into<R: CryptoRng + ?Sized>(
        &mut self,
        group_id: &[u8],
        keys: &JoinKeys<'_>,
        extensions: &[u8],
        rng: &mut R,
    ) -> Result<(), Error> {
        self.clear();
        // Built in place; on error the slot is emptied again.
        let mut fill = || -> Result<(), Error> {
            let kp = &keys.key_package;
            let suite = Suite::from_id(kp.cipher_suite)?;
            let mut work = [0u8; 2 * (2048 + crate::crypto::suite::MAX_HPKE_PUBLIC_LEN - 32 + HYBRID_EXTRA)];
            let needed = kp.as_bytes().len().saturating_mul(2).saturating_add(100);
            kp.verify(work.get_mut(..needed).ok_or(Error::Capacity)?)?;
            let leaf = &kp.leaf_node;
            if suite.public_key(keys.encryption_priv)?[..] != *leaf.encryption_key
                || Ed25519::verifying_key(&Ed25519::signing_key(keys.signature_priv)) != *leaf.signature_key
            {
                return Err(Error::Malformed);
            }
            // The extensions body must be well formed.
            crate::tree::node::check_extensions(extensions)?;
            self.suite = suite;
            self.group_id = heapless::Vec::from_slice(group_id).map_err(|_| Error::Capacity)?;
            self.extensions = heapless::Vec::from_slice(extensions).map_err(|_| Error::Capacity)?;
            self.tree.extend()?;
            self.tree.set_leaf(0, Some(leaf.as_bytes()))?;
            self.tree_hash = self.tree.tree_hash(self.tree.root())?;
            #[cfg(feature = "ml-dsa")]
            self.check_required_capabilities()?;
            self.epoch = 0;
            self.confirmed_transcript_hash.clear();
            self.own_leaf = 0;
            self.leaf_private_key = keys.encryption_priv.duplicate();
            self.signature_private_key = keys.signature_priv.duplicate();
            self.start_epoch(&Secret32::random(rng), &[0u8; NH], &mut work)
        };
        let made = fill();
        if made.is_err() {
            self.clear();
        }
        made
    }
}

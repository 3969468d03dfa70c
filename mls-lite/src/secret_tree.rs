//! The secret tree (RFC 9420 §9): a secret per node derived from the
//! epoch's `encryption_secret`, and per leaf a handshake and an application
//! ratchet of keys and nonces. Also the sender-data key and nonce (§6.3.2).

use crate::crypto::{NH, NK, NN, Secret32, derive_tree_secret, expand_with_label};
use crate::error::Error;
use crate::tree_math::{self, NodeIndex};
use securemesh_core::Secret;

/// An AEAD key and nonce of one generation (not `Clone`: a copy of a key
/// is made on purpose, [`KeyNonce::duplicate`]).
pub struct KeyNonce {
    /// Key.
    pub key: Secret<[u8; NK]>,
    /// Nonce (before the reuse guard is applied).
    pub nonce: [u8; NN],
}

impl KeyNonce {
    /// A second copy of the key, made on purpose (both zeroize on drop).
    pub fn duplicate(&self) -> Self {
        KeyNonce { key: self.key.duplicate(), nonce: self.nonce }
    }
}

/// The secret of `leaf` in a tree of `n_leaves`, walked down from the root
/// (`tree_node_[root]_secret = encryption_secret`; left/right children by
/// `ExpandWithLabel(secret, "tree", "left"/"right", Nh)`).
pub fn leaf_secret(encryption_secret: &Secret32, leaf: u32, n_leaves: u32) -> Result<Secret32, Error> {
    if leaf >= n_leaves {
        return Err(Error::Malformed);
    }
    let target: NodeIndex = tree_math::leaf_to_node(leaf).ok_or(Error::Malformed)?;
    let mut node = tree_math::root(n_leaves).ok_or(Error::Malformed)?;
    let mut secret = encryption_secret.duplicate();
    while node != target {
        let (side, child): (&[u8], _) =
            if target < node { (b"left", tree_math::left(node)) } else { (b"right", tree_math::right(node)) };
        let mut next = Secret32::zeroed();
        expand_with_label(secret.expose(), b"tree", side, next.expose_mut())?;
        secret = next;
        node = child.ok_or(Error::Malformed)?;
    }
    Ok(secret)
}

/// Which of a leaf's two ratchets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RatchetKind {
    /// Handshake messages (proposals, commits).
    Handshake,
    /// Application messages.
    Application,
}

/// One sender's ratchet: the secret of the next generation.
pub struct Ratchet {
    pub(crate) secret: Secret32,
    pub(crate) generation: u32,
}

impl Ratchet {
    /// The ratchet of `kind` rooted at a leaf secret.
    pub fn new(leaf_secret: &Secret32, kind: RatchetKind) -> Result<Self, Error> {
        let label: &[u8] = match kind {
            RatchetKind::Handshake => b"handshake",
            RatchetKind::Application => b"application",
        };
        let mut secret = Secret32::zeroed();
        expand_with_label(leaf_secret.expose(), label, &[], secret.expose_mut())?;
        Ok(Ratchet { secret, generation: 0 })
    }

    /// A copy for computing ahead without changing this ratchet.
    pub(crate) fn duplicate(&self) -> Self {
        Ratchet { secret: self.secret.duplicate(), generation: self.generation }
    }

    /// The generation whose key [`Ratchet::current`] gives.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Key and nonce of the current generation.
    pub fn current(&self) -> Result<KeyNonce, Error> {
        let mut key = Secret::new([0u8; NK]);
        derive_tree_secret(self.secret.expose(), b"key", self.generation, key.expose_mut())?;
        let mut nonce = [0u8; NN];
        derive_tree_secret(self.secret.expose(), b"nonce", self.generation, &mut nonce)?;
        Ok(KeyNonce { key, nonce })
    }

    /// Move to the next generation, erasing the current secret.
    pub fn advance(&mut self) -> Result<(), Error> {
        let next_gen = self.generation.checked_add(1).ok_or(Error::Capacity)?;
        let mut next = Secret32::zeroed();
        derive_tree_secret(self.secret.expose(), b"secret", self.generation, next.expose_mut())?;
        self.secret = next;
        self.generation = next_gen;
        Ok(())
    }

    /// Advance to `generation` (not backwards).
    pub fn advance_to(&mut self, generation: u32) -> Result<(), Error> {
        if generation < self.generation {
            return Err(Error::Malformed);
        }
        while self.generation < generation {
            self.advance()?;
        }
        Ok(())
    }
}

/// The sender-data key and nonce for a PrivateMessage whose ciphertext
/// starts with `ciphertext` (the sample is its first `Nh` bytes).
pub fn sender_data_key_nonce(sender_data_secret: &Secret32, ciphertext: &[u8]) -> Result<KeyNonce, Error> {
    let sample = ciphertext.get(..NH).unwrap_or(ciphertext);
    let mut key = Secret::new([0u8; NK]);
    expand_with_label(sender_data_secret.expose(), b"key", sample, key.expose_mut())?;
    let mut nonce = [0u8; NN];
    expand_with_label(sender_data_secret.expose(), b"nonce", sample, &mut nonce)?;
    Ok(KeyNonce { key, nonce })
}

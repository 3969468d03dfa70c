//! Test support (feature `testing`): two members of one group, built
//! without a Welcome, for tests of message handling (application messages,
//! persistence) in this crate, in fuzz targets and in the crates above.
//!
//! Nothing here is a shortcut around the protocol's cryptography: the
//! members' keys come from the caller's RNG, their leaves carry real
//! `LeafNodeTBS` signatures (source `key_package`), the tree hash is
//! computed, and the epoch's secrets come from the RFC 9420 key schedule
//! (§8) with `init_secret` and `commit_secret` drawn from the RNG and no
//! PSK, over the real GroupContext. What is skipped is how the group came
//! to be (no Welcome, no commit): the state is epoch 1 of a two-member
//! group whose history nobody can replay.

use crate::crypto::{NH, Secret32};
use crate::error::Error;
use crate::group::Group;
use crate::tree::node::{LeafNodeParams, LeafNodeSource, write_leaf_node};
use securemesh_core::CryptoRng;
use securemesh_core::crypto::{Dh, Ed25519, Signature, X25519};

/// Build the two members of a fresh group `group_id` into `members`
/// (leaf 0, leaf 1), each holding its own private keys and the same
/// epoch-1 state; keys and secrets from `rng` (see the module
/// documentation). Their application messages
/// ([`Group::seal_application`]) open at the other member.
///
/// ```
/// use securemesh_core::testing::TestRng;
/// use securemesh_mls_lite::testing::member_pair;
/// use securemesh_mls_lite::Group;
/// let mut a: Box<Group<4, 256, 16, 16>> = Box::default();
/// let mut b: Box<Group<4, 256, 16, 16>> = Box::default();
/// member_pair(b"agents", &mut TestRng::new(1), [&mut *a, &mut *b])?;
/// assert_eq!((a.own_leaf(), b.own_leaf()), (0, 1));
/// assert_eq!(a.epoch_authenticator().expose(), b.epoch_authenticator().expose());
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub fn member_pair<R: CryptoRng + ?Sized, const L: usize, const B: usize, const G: usize, const E: usize>(
    group_id: &[u8],
    rng: &mut R,
    members: [&mut Group<L, B, G, E>; 2],
) -> Result<(), Error> {
    let [a, b] = members;
    let keys: [(Secret32, Secret32); 2] =
        core::array::from_fn(|_| (X25519::generate(rng), Secret32::random(rng)));
    let init_secret = Secret32::random(rng);
    let commit_secret = Secret32::random(rng);

    a.clear();
    a.tree.extend()?;
    a.tree.extend()?;
    let mut leaf = [0u8; 256];
    let mut scratch = [0u8; 512];
    for (i, (enc, sig)) in keys.iter().enumerate() {
        let signing = Ed25519::signing_key(sig);
        let identity: &[u8] = if i == 0 { b"member-0" } else { b"member-1" };
        let params = LeafNodeParams {
            encryption_key: &X25519::public_key(enc),
            identity,
            // An unbounded lifetime.
            source: LeafNodeSource::KeyPackage { not_before: 0, not_after: u64::MAX },
            extensions: &[],
        };
        let n = write_leaf_node(&mut leaf, &params, &signing, &[], 0, &mut scratch)?;
        a.tree.set_leaf(i as u32, Some(leaf.get(..n).ok_or(Error::Capacity)?))?;
    }
    a.tree_hash = a.tree.tree_hash(a.tree.root())?;
    a.group_id = heapless::Vec::from_slice(group_id).map_err(|_| Error::Capacity)?;
    a.epoch = 1;
    let confirmed = Secret32::random(rng);
    a.confirmed_transcript_hash =
        heapless::Vec::from_slice(confirmed.expose()).map_err(|_| Error::Capacity)?;
    // (Drawn and unused since the interim hash is derived below: the
    // generator's stream, and every seed and vector made from it, stay as
    // they were.)
    let _ = Secret32::random(rng);
    // The interim transcript hash follows from the epoch's confirmation
    // tag (§8.2), as in a group made by commits: an exported GroupInfo
    // then lets a joiner reproduce it.
    a.start_epoch(&init_secret, commit_secret.expose(), &mut [0u8; 512])?;
    b.copy_from(a)?;
    b.ratchets.copy_from(&a.ratchets);
    for (i, (g, (enc, sig))) in [a, b].into_iter().zip(keys).enumerate() {
        g.own_leaf = i as u32;
        g.leaf_private_key = enc;
        g.signature_private_key = sig;
    }
    Ok(())
}

/// Room for a KeyPackage of [`Candidate`] (identities up to 212 bytes).
pub const CANDIDATE_KEY_PACKAGE_BYTES: usize = 512 + 2 * (crate::crypto::suite::MAX_HPKE_PUBLIC_LEN - 32);

/// A would-be member for tests: a KeyPackage made with
/// [`create_key_package`](crate::key_package::create_key_package) and the
/// private keys to join (or create a group) with it.
///
/// ```
/// use securemesh_core::testing::TestRng;
/// use securemesh_mls_lite::key_package::KeyPackageParams;
/// use securemesh_mls_lite::testing::Candidate;
/// use securemesh_mls_lite::DefaultGroup;
/// let params = KeyPackageParams { identity: b"alice", not_before: 0, not_after: u64::MAX, last_resort: false };
/// let alice = Candidate::new(&params, &mut TestRng::new(1))?;
/// let mut group: Box<DefaultGroup> = Box::default();
/// group.create_into(b"fleet", &alice.keys()?, &[], &mut TestRng::new(2))?;
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub struct Candidate {
    bytes: [u8; CANDIDATE_KEY_PACKAGE_BYTES],
    len: usize,
    /// The KeyPackage's HPKE private keys.
    pub secrets: crate::key_package::KeyPackageSecrets,
    /// The Ed25519 seed of its leaf's signature key.
    pub signature_priv: Secret32,
}

impl Candidate {
    /// A KeyPackage of `params`, signature seed and keys from `rng`.
    pub fn new<R: CryptoRng + ?Sized>(
        params: &crate::key_package::KeyPackageParams<'_>,
        rng: &mut R,
    ) -> Result<Self, Error> {
        Self::new_in(crate::crypto::suite::Suite::Mls128X25519, params, rng)
    }

    /// A KeyPackage of `params` in ciphersuite `suite`.
    pub fn new_in<R: CryptoRng + ?Sized>(
        suite: crate::crypto::suite::Suite,
        params: &crate::key_package::KeyPackageParams<'_>,
        rng: &mut R,
    ) -> Result<Self, Error> {
        let signature_priv = Ed25519::generate(rng);
        let mut bytes = [0u8; CANDIDATE_KEY_PACKAGE_BYTES];
        let mut scratch = [0u8; 2 * CANDIDATE_KEY_PACKAGE_BYTES];
        let (len, secrets) = crate::key_package::create_key_package_in(
            suite,
            params,
            &signature_priv,
            rng,
            &mut bytes,
            &mut scratch,
        )?;
        Ok(Candidate { bytes, len, secrets, signature_priv })
    }

    /// The KeyPackage (bare, not in an `MLSMessage`).
    pub fn key_package_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }

    /// The KeyPackage, mutable (for tests that tamper with it).
    pub fn key_package_bytes_mut(&mut self) -> &mut [u8] {
        self.bytes.get_mut(..self.len).unwrap_or(&mut [])
    }

    /// The parsed KeyPackage.
    pub fn key_package(&self) -> Result<crate::messages::KeyPackage<'_>, Error> {
        crate::messages::KeyPackage::from_bytes(self.key_package_bytes())
    }

    /// What [`Group::join_into`] and [`Group::create_into`] take.
    pub fn keys(&self) -> Result<crate::welcome::JoinKeys<'_>, Error> {
        Ok(crate::welcome::JoinKeys {
            key_package: self.key_package()?,
            init_priv: &self.secrets.init_priv,
            encryption_priv: &self.secrets.encryption_priv,
            signature_priv: &self.signature_priv,
        })
    }
}

/// One member of a published tree, for driving our committer against the
/// trees of the mlswg vectors (`treekem.json`, where each member's private
/// keys are given): what a member of that tree holds.
#[derive(Clone, Copy, Debug)]
pub struct TreeMember<'a> {
    /// The group id.
    pub group_id: &'a [u8],
    /// The epoch.
    pub epoch: u64,
    /// The confirmed transcript hash of the epoch.
    pub confirmed_transcript_hash: &'a [u8],
    /// The encoded ratchet tree (`ratchet_tree` extension data).
    pub tree: &'a [u8],
    /// Our leaf.
    pub leaf: u32,
    /// Our leaf's HPKE private key.
    pub encryption_priv: &'a Secret32,
    /// Our Ed25519 signing seed.
    pub signature_priv: &'a Secret32,
    /// The path secrets of the parents we hold keys for, by node.
    pub path_secrets: &'a [(u32, Secret32)],
}

/// Build `member` of a published tree into `slot`: the tree (validated,
/// as a joiner does), our keys (each checked against the tree: our leaf's
/// keys, each path node's public key), and epoch secrets from the key
/// schedule with `init_secret` (the same for every member built with it),
/// no commit secret and no PSK over the real GroupContext. What is skipped
/// is how the members came to share the epoch (the vector gives no
/// Welcome): every member built from the same tree and `init_secret`
/// shares it, so their commits and application messages are
/// interchangeable.
pub fn member_of_tree<const L: usize, const B: usize, const G: usize, const E: usize>(
    member: &TreeMember<'_>,
    init_secret: &Secret32,
    slot: &mut Group<L, B, G, E>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    use crate::tree::Node;
    use crate::welcome::PathKey;
    let built = (|| {
        slot.clear();
        slot.tree.decode(member.tree)?;
        slot.tree.validate(member.group_id, scratch)?;
        slot.tree_hash = slot.tree.tree_hash(slot.tree.root())?;
        slot.group_id = heapless::Vec::from_slice(member.group_id).map_err(|_| Error::Capacity)?;
        slot.epoch = member.epoch;
        slot.confirmed_transcript_hash =
            heapless::Vec::from_slice(member.confirmed_transcript_hash).map_err(|_| Error::Capacity)?;
        let own = slot.tree.leaf(member.leaf).ok_or(Error::Malformed)?;
        let signing = Ed25519::signing_key(member.signature_priv);
        if X25519::public_key(member.encryption_priv) != *own.encryption_key
            || Ed25519::verifying_key(&signing) != *own.signature_key
        {
            return Err(Error::Malformed);
        }
        slot.own_leaf = member.leaf;
        slot.leaf_private_key = member.encryption_priv.duplicate();
        slot.signature_private_key = member.signature_priv.duplicate();
        for (node, secret) in member.path_secrets {
            let (private_key, public_key) = crate::treekem::node_key_pair(secret)?;
            match slot.tree.node(*node) {
                Node::Parent(p) if p.encryption_key[..] == public_key[..] => {}
                _ => return Err(Error::Malformed),
            }
            slot.path_keys.push(PathKey { node: *node, private_key }).map_err(|_| Error::Capacity)?;
        }
        slot.path_keys.sort_unstable_by_key(|k| k.node);
        slot.start_epoch(init_secret, &[0u8; NH], scratch)?;
        Ok(())
    })();
    if built.is_err() {
        slot.clear();
    }
    built
}

//! Joining a group by an external commit (RFC 9420 §12.4.3.2), the
//! joiner's side: from a GroupInfo that carries `external_pub` (what
//! [`Group::export_group_info`] publishes), without a Welcome.
//!
//! [`Group::join_by_external_commit`] checks the GroupInfo as a joiner
//! checks a Welcome's (the tree, its hash, its validity and the signer's
//! signature), encapsulates to `external_pub` for the new epoch's
//! `init_secret` (§8.3), and commits an ExternalInit proposal (with
//! optional Removes, e.g. of our own old leaf when we rejoin, and PSKs)
//! with an UpdatePath from the leaf we take (the leftmost blank one), as
//! a PublicMessage signed by us as `new_member_commit`. The commit is made
//! by the same code as a member's ([`Group::commit_with`]); the members
//! process it with [`Group::process_commit`].
//!
//! The new epoch goes into the slot the call is made on: like a member's
//! pending commit, it is ours only once the delivery service has ordered
//! the commit first for its epoch. If another commit won, empty the slot
//! ([`Group::clear`]) and try again from the new epoch's GroupInfo.

use crate::commit::{ProposalCache, PskStore};
use crate::crypto::Secret32;
use crate::error::Error;
use crate::group::Group;
use crate::messages::GroupInfo;
use crate::pending_commit::{CommitOptions, CommitOutput, EXTERNAL_PUB_EXTENSION, ExternalInit, Proposals};
use crate::tree::node::{LeafNodeParams, LeafNodeSource, write_leaf};
use crate::welcome::{EpochSecretsKept, RATCHET_TREE_EXTENSION, find_extension};
use securemesh_core::CryptoRng;
use securemesh_core::codec::Reader;
use securemesh_core::crypto::{Ed25519, Signature};

/// Who joins by an external commit, and from what.
#[derive(Clone, Copy, Debug)]
pub struct ExternalJoin<'a> {
    /// The GroupInfo of the epoch to join (verified here).
    pub group_info: GroupInfo<'a>,
    /// The encoded ratchet tree (`ratchet_tree` extension data) when the
    /// GroupInfo does not carry it; the extension wins when both are
    /// present.
    pub ratchet_tree: Option<&'a [u8]>,
    /// The identity of our credential (basic, or hybrid with
    /// `join_by_external_commit_hybrid`).
    pub identity: &'a [u8],
    /// Our Ed25519 signing seed.
    pub signature_priv: &'a Secret32,
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Scratch bytes [`join_by_external_commit`](Self::join_by_external_commit)
    /// needs at most for a GroupInfo of `group_info_len` bytes (and a tree
    /// of as many, if it comes separately).
    pub const fn external_commit_scratch_len(group_info_len: usize) -> usize {
        Self::send_commit_scratch_len(group_info_len.saturating_mul(2))
    }

    /// Join the group of `join.group_info` by an external commit (module
    /// documentation): the commit `MLSMessage` (a PublicMessage) goes to
    /// `commit_out`, and `self` becomes our state in the new epoch.
    /// `proposals` may hold Removes (e.g. our old leaf) and PSKs, nothing
    /// else (§12.4.3.2: [`Error::Malformed`] otherwise); `options` gives
    /// the authenticated data and whether the path is forced (it always is
    /// here); its wire format must be PublicMessage. `spare` holds the
    /// group as the GroupInfo shows it while the commit is made, and is
    /// emptied. `scratch`:
    /// [`external_commit_scratch_len`](Self::external_commit_scratch_len).
    /// On error `self` and `spare` are empty.
    ///
    /// ```
    /// # use securemesh_core::crypto::{Ed25519, Signature};
    /// # use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::external_commit::ExternalJoin;
    /// use securemesh_mls_lite::messages::{WireFormat};
    /// use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
    /// use securemesh_mls_lite::pending_commit::{CommitOptions, Proposals};
    /// use securemesh_mls_lite::testing::member_pair;
    /// use securemesh_mls_lite::{DefaultGroup, DefaultProposalCache, Error, PskStore};
    /// let mut rng = TestRng::new(1);
    /// let (mut a, mut b): (Box<DefaultGroup>, Box<DefaultGroup>) = (Box::default(), Box::default());
    /// member_pair(b"agents", &mut rng, [&mut *a, &mut *b])?;
    ///
    /// // A publishes the epoch's GroupInfo (with the tree).
    /// let mut info = vec![0u8; DefaultGroup::MAX_GROUP_INFO_LEN];
    /// let mut scratch = vec![0u8; DefaultGroup::MAX_GROUP_INFO_LEN];
    /// let n = a.export_group_info(true, &mut info, &mut scratch)?;
    /// let MlsMessageBody::GroupInfo(group_info) = MlsMessage::from_bytes(&info[..n])?.body else {
    ///     return Err(Error::Malformed);
    /// };
    ///
    /// // C joins from it, without a Welcome.
    /// let seed = Ed25519::generate(&mut rng);
    /// let join = ExternalJoin { group_info, ratchet_tree: None, identity: b"carol", signature_priv: &seed };
    /// let public = CommitOptions { wire_format: WireFormat::PublicMessage, ..CommitOptions::default() };
    /// let (mut c, mut spare): (Box<DefaultGroup>, Box<DefaultGroup>) = (Box::default(), Box::default());
    /// let mut commit = vec![0u8; 4096];
    /// let mut scratch = vec![0u8; DefaultGroup::external_commit_scratch_len(n)];
    /// let out = c.join_by_external_commit(
    ///     &join, &Proposals::default(), &PskStore::default(), &public, &mut rng,
    ///     &mut spare, &mut commit, &mut scratch,
    /// )?;
    ///
    /// // The members follow the commit.
    /// let mut cache: Box<DefaultProposalCache> = Box::default();
    /// for m in [&mut a, &mut b] {
    ///     let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(out.commit_len)];
    ///     m.process_commit(&commit[..out.commit_len], &mut cache, &PskStore::default(), &mut spare, &mut scratch)?;
    ///     assert_eq!(m.epoch_authenticator().expose(), c.epoch_authenticator().expose());
    /// }
    /// assert_eq!(c.members().count(), 3);
    /// # Ok::<(), Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn join_by_external_commit<R: CryptoRng + ?Sized>(
        &mut self,
        join: &ExternalJoin<'_>,
        proposals: &Proposals<'_>,
        psk_store: &PskStore<'_>,
        options: &CommitOptions<'_>,
        rng: &mut R,
        spare: &mut Self,
        commit_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        self.external_join(join, None, proposals, psk_store, options, rng, spare, commit_out, scratch)
    }

    /// [`join_by_external_commit`](Self::join_by_external_commit) with a
    /// hybrid credential (`hybrid_credential`): our leaf carries the
    /// ML-DSA-65 key of `ml_dsa_seed` and is signed with it too, and the
    /// group keeps the seed to re-sign it ([`Group::set_ml_dsa_key`]).
    /// Feature `ml-dsa`.
    #[cfg(feature = "ml-dsa")]
    #[allow(clippy::too_many_arguments)]
    pub fn join_by_external_commit_hybrid<R: CryptoRng + ?Sized>(
        &mut self,
        join: &ExternalJoin<'_>,
        ml_dsa_seed: &Secret32,
        proposals: &Proposals<'_>,
        psk_store: &PskStore<'_>,
        options: &CommitOptions<'_>,
        rng: &mut R,
        spare: &mut Self,
        commit_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        self.external_join(
            join,
            Some(ml_dsa_seed),
            proposals,
            psk_store,
            options,
            rng,
            spare,
            commit_out,
            scratch,
        )
    }

    /// The external join, with a hybrid credential if `ml_dsa_seed` is given.
    #[allow(clippy::too_many_arguments)]
    fn external_join<R: CryptoRng + ?Sized>(
        &mut self,
        join: &ExternalJoin<'_>,
        ml_dsa_seed: Option<&Secret32>,
        proposals: &Proposals<'_>,
        psk_store: &PskStore<'_>,
        options: &CommitOptions<'_>,
        rng: &mut R,
        spare: &mut Self,
        commit_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        let mut run = || -> Result<CommitOutput, Error> {
            if !proposals.adds.is_empty() || proposals.group_context_extensions.is_some() {
                return Err(Error::Malformed);
            }
            let gi = &join.group_info;
            let external_pub =
                find_extension(gi.extensions, EXTERNAL_PUB_EXTENSION)?.ok_or(Error::Malformed)?;
            let mut r = Reader::new(external_pub);
            let external_pub = r.read_vec_varint()?;
            r.finish()?;
            let tree = match find_extension(gi.extensions, RATCHET_TREE_EXTENSION)? {
                Some(t) => t,
                None => join.ratchet_tree.ok_or(Error::Malformed)?,
            };
            let (leaf_buf, work) = scratch.split_at_mut_checked(B).ok_or(Error::BufferTooSmall {
                needed: Self::external_commit_scratch_len(gi.as_bytes().len()),
            })?;

            // The group as the GroupInfo shows it, with our signing key and
            // no epoch secrets: what the commit is made from.
            spare.adopt_group_info(gi, tree, work)?;
            spare.own_leaf = u32::MAX; // none yet: the commit gives us one
            spare.signature_private_key = join.signature_priv.duplicate();
            spare.secrets = EpochSecretsKept::zeroed();
            spare.joined = true;
            spare.ready_to_sign()?;

            // Our provisional leaf: the credential and extensions the
            // path's leaf will carry (its key is replaced there).
            let signing = Ed25519::signing_key(join.signature_priv);
            let params = LeafNodeParams {
                encryption_key: &spare.suite.public_key(&spare.suite.generate(rng))?,
                identity: join.identity,
                source: LeafNodeSource::Update,
                extensions: &[],
            };
            let group_id = gi.group_context.group_id;
            let leaf_len = match ml_dsa_seed {
                #[cfg(feature = "ml-dsa")]
                Some(seed) => {
                    spare.ml_dsa_private_key = Some(seed.duplicate());
                    let mut signer = crate::hybrid_credential::MlDsaLeafSigner::new(seed, rng);
                    write_leaf(leaf_buf, &params, &signing, Some(&mut signer), group_id, 0, work)?
                }
                #[cfg(not(feature = "ml-dsa"))]
                Some(_) => return Err(Error::Unsupported),
                None => write_leaf(leaf_buf, &params, &signing, None, group_id, 0, work)?,
            };
            let (kem_output, init_secret) = spare.suite.external_init_send(external_pub, rng)?;
            let external = ExternalInit {
                kem_output,
                init_secret,
                leaf: leaf_buf.get(..leaf_len).ok_or(Error::Capacity)?,
            };
            let no_cache = ProposalCache::<0, 0>::new();
            spare.stage(
                Some(&external),
                proposals,
                &no_cache,
                psk_store,
                options,
                rng,
                self,
                commit_out,
                &mut [],
                work,
            )
        };
        let result = run();
        scratch.fill(0);
        spare.clear();
        if result.is_err() {
            self.clear();
        }
        result
    }
}

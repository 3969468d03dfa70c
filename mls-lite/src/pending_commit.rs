//! Sending commits (RFC 9420 §12.4) as a pending commit, and the Welcome
//! for the members they add (§12.4.3.1).
//!
//! [`Group::commit`] follows the pending-commit discipline of mls-rs:
//! it writes the commit message (PublicMessage or PrivateMessage) and the
//! Welcome, and stages the next epoch in a caller-lent slot (`pending`,
//! the same kind of spare slot [`Group::process_commit`] takes) without
//! touching the current one. The caller sends the commit to the delivery
//! service; when the service confirms it was ordered first for this
//! epoch, [`Group::merge_pending_commit`] swaps the staged epoch in (and
//! the Welcome may go out); when another member's commit for the same epoch
//! won (§14: the first commit the service orders wins), the caller empties
//! `pending` ([`Group::clear`]) and processes the winning commit instead.
//! The current epoch stays usable until then.
//!
//! [`Group::commit`] carries Removes and Adds by value;
//! [`Group::commit_with`] adds PSK and GroupContextExtensions proposals by
//! value ([`Proposals`]) and every valid proposal of the caller's
//! [`ProposalCache`] by reference (ours, sent with
//! [`Group::propose`](crate::proposal), and the other members'). The
//! proposals are checked and applied to the provisional state by the same
//! code that processes a received commit
//! ([`Group::process_commit`]). A commit has an UpdatePath (§7.4–7.9: a
//! new leaf key, path secrets up our filtered direct path encrypted to the
//! copath resolutions, new members left out, parent hashes, commit secret)
//! when RFC 9420 §12.4 requires one (an Update, Remove or
//! GroupContextExtensions, or no proposal at all) or when asked
//! ([`CommitOptions::update_path`]). A new member whose lowest common
//! ancestor with us is on the path gets its path secret in the Welcome,
//! and the Welcome lists the commit's PSKs.
//! The same code makes an external commit for a joiner
//! ([`external_commit`](crate::external_commit)). A commit that removes
//! everyone else leaves us alone in a group of one: its path holds our new
//! leaf and no node, and we can add members again.
//!
//! The Welcome carries the `ratchet_tree` extension in its GroupInfo when
//! asked (`CommitOptions::ratchet_tree_in_welcome`); otherwise the joiner
//! needs the tree out of band ([`Group::export_ratchet_tree`]).

use crate::commit::{
    MAX_COMMIT_PROPOSALS, ProposalCache, PskStore, add_leaf, filtered_path, resolve, set_path_keys,
};
use crate::crypto::suite::{HpkePublicKey, KemOutput, MAX_HPKE_PUBLIC_LEN, MAX_KEM_OUTPUT_LEN, Suite};
use crate::crypto::{NH, Secret32, sign_with_label};
use crate::error::Error;
use crate::framing::{
    AuthenticatedContent, Content, FramedContent, FramedContentAuthData, Sender, sign, sign_scratch_len,
};
use crate::group::Group;
use crate::key_schedule;
use crate::key_schedule::{EpochSecrets, GroupContext};
use crate::messages::{
    Commit, KeyPackage, MLS10, Proposal, ProposalBody, ProposalOrRef, Psk, WireFormat, encoded_len, items,
    proposal_type,
};
use crate::secret_tree::RatchetKind;
use crate::transcript::{ConfirmedTranscriptHashInput, InterimTranscriptHashInput};
use crate::tree::Node;
use crate::tree::node::{LeafNode, LeafNodeSource};
use crate::tree_math::{self, NodeIndex};
use crate::treekem::{next_path_secret, node_key_pair_in};
use crate::welcome::{
    MAX_PATH_KEYS, MAX_PSKS, PathKey, RATCHET_TREE_EXTENSION, welcome_key_nonce, welcome_secret,
};
use securemesh_core::CryptoRng;
use securemesh_core::codec::Writer;
use securemesh_core::crypto::{Aead, ChaChaPoly};

/// Extension type of `external_pub` (RFC 9420 §12.4.3.2).
pub const EXTERNAL_PUB_EXTENSION: u16 = 0x0004;

/// GroupInfo bytes besides the GroupContext and the tree: extension
/// headers, `external_pub`, confirmation tag, signer, signature, AEAD tag
/// (256 bytes with a 32-byte `external_pub`).
const GROUP_INFO_OVERHEAD: usize = 256 + (MAX_HPKE_PUBLIC_LEN - 32);

/// Most members one commit adds (and most it removes).
pub const MAX_ADDS: usize = 16;

/// The longest `HPKECiphertext` of a path secret: `kem_output<V>` (32
/// bytes in suite 3, 1120 in X-Wing's) and `ciphertext<V>` (the 32-byte
/// secret and the 16-byte tag).
const HPKE_CIPHERTEXT_LEN: usize =
    (if MAX_KEM_OUTPUT_LEN < 64 { 1 } else { 2 }) + MAX_KEM_OUTPUT_LEN + (1 + 48);

/// An `HPKECiphertext` of a path secret in `suite`.
fn hpke_ciphertext_len(suite: Suite) -> Result<usize, Error> {
    let kem = suite.kem_output_len();
    Ok(varint_len(kem)?.saturating_add(kem).saturating_add(1 + 48))
}

/// An `HPKEPublicKey encryption_key<V>` in `suite`.
fn hpke_public_field_len(suite: Suite) -> Result<usize, Error> {
    let n = suite.hpke_public_len();
    Ok(varint_len(n)?.saturating_add(n))
}

/// Bytes of the QUIC-style varint length prefix of `n`.
fn varint_len(n: usize) -> Result<usize, Error> {
    crate::crypto::varint(n).map(|(_, l)| l)
}

/// How a commit is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitOptions<'a> {
    /// PublicMessage or PrivateMessage (OpenMLS's default is
    /// PrivateMessage).
    pub wire_format: WireFormat,
    /// Put the ratchet tree in the Welcome's GroupInfo.
    pub ratchet_tree_in_welcome: bool,
    /// Authenticated, unencrypted data of the commit.
    pub authenticated_data: &'a [u8],
    /// Zero bytes of padding in a PrivateMessage.
    pub padding: usize,
    /// Include an UpdatePath even where none is required (it refreshes
    /// our leaf and path keys: post-compromise security). A commit with a
    /// Remove, or with no proposal, always has one.
    pub update_path: bool,
}

impl Default for CommitOptions<'_> {
    fn default() -> Self {
        CommitOptions {
            wire_format: WireFormat::PrivateMessage,
            ratchet_tree_in_welcome: true,
            authenticated_data: &[],
            padding: 0,
            update_path: false,
        }
    }
}

/// What [`Group::commit`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitOutput {
    /// Length of the commit `MLSMessage` in `commit_out`.
    pub commit_len: usize,
    /// Length of the Welcome `MLSMessage` in `welcome_out`.
    pub welcome_len: usize,
    /// The epoch the pending commit moves to.
    pub epoch: u64,
}

/// The proposals a commit carries by value ([`Group::commit_with`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Proposals<'a> {
    /// Members to add, by their KeyPackages (each verified at commit time;
    /// lifetimes and credentials are the caller's policy).
    pub adds: &'a [KeyPackage<'a>],
    /// Leaves of the members to remove (not our own).
    pub removes: &'a [u32],
    /// PSKs to inject into the key schedule (§8.4), each proposed with a
    /// fresh `psk_nonce`.
    pub psks: &'a [Psk<'a>],
    /// New GroupContext extensions (an `extensions<V>` body) replacing the
    /// group's.
    pub group_context_extensions: Option<&'a [u8]>,
}

/// What an external commit adds to [`Group::stage`]: the ExternalInit
/// proposal's `kem_output`, the `init_secret` it gives, and the joiner's
/// provisional LeafNode (credential and extensions; replaced by the one
/// the path carries).
pub(crate) struct ExternalInit<'a> {
    pub(crate) kem_output: KemOutput,
    pub(crate) init_secret: Secret32,
    pub(crate) leaf: &'a [u8],
}

/// Split `n` bytes off the front of `buf`.
fn take<'b>(buf: &mut &'b mut [u8], n: usize) -> Result<&'b mut [u8], Error> {
    let (head, tail) =
        core::mem::take(buf).split_at_mut_checked(n).ok_or(Error::BufferTooSmall { needed: n })?;
    *buf = tail;
    Ok(head)
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Scratch bytes [`commit`](Self::commit) needs at most when
    /// the KeyPackages it adds total `key_packages_len` bytes.
    pub const fn send_commit_scratch_len(key_packages_len: usize) -> usize {
        key_packages_len
            .saturating_mul(3)
            .saturating_add(Self::max_update_path_len().saturating_mul(2))
            .saturating_add(Self::MAX_TREE_LEN.saturating_mul(3))
            .saturating_add(G.saturating_add(E).saturating_mul(4))
            .saturating_add(4096)
    }

    /// Most bytes of an UpdatePath we send: our leaf, then per filtered
    /// path node its key and a ciphertext per resolution member.
    const fn max_update_path_len() -> usize {
        B.saturating_add(
            MAX_PATH_KEYS
                .saturating_mul(MAX_HPKE_PUBLIC_LEN.saturating_add(8))
                .saturating_add(L.saturating_mul(HPKE_CIPHERTEXT_LEN).saturating_mul(2))
                .saturating_add(16),
        )
    }

    /// Most bytes of the encoded ratchet tree.
    pub const MAX_TREE_LEN: usize = L
        .saturating_mul(B.saturating_add(8))
        .saturating_add(L.saturating_mul(L.saturating_mul(4).saturating_add(80)));

    /// Bytes of a Welcome for `n_adds` members (`ratchet_tree`: with the tree).
    pub const fn welcome_len(n_adds: usize, ratchet_tree: bool) -> usize {
        let tree = if ratchet_tree { Self::MAX_TREE_LEN } else { 0 };
        // Per new member 140 bytes with a 32-byte kem_output (X-Wing's: 1120).
        let per_add = 140 + (MAX_KEM_OUTPUT_LEN - 32) + if MAX_KEM_OUTPUT_LEN > 63 { 1 } else { 0 };
        n_adds
            .saturating_mul(per_add)
            .saturating_add(tree)
            .saturating_add(G.saturating_add(E))
            .saturating_add(400)
    }

    /// The ratchet tree of the epoch, encoded as the `ratchet_tree`
    /// extension's data (`optional<Node> ratchet_tree<V>`), for a joiner
    /// whose Welcome does not carry it. Returns the length written.
    pub fn export_ratchet_tree(&self, out: &mut [u8]) -> Result<usize, Error> {
        if !self.joined {
            return Err(Error::Malformed);
        }
        self.tree.encode(out)
    }

    /// Commit the removal of the members at the leaves `removes` and the
    /// addition of the members of `adds` (each KeyPackage verified here;
    /// lifetimes and credentials are the caller's policy, see
    /// [`KeyPackage::validate`]), with an UpdatePath where one is required
    /// or asked for, as a pending commit (module documentation): the commit
    /// `MLSMessage` goes to `commit_out`, the Welcome `MLSMessage` (none,
    /// length 0, when nobody is added) to `welcome_out`
    /// ([`welcome_len`](Self::welcome_len) bytes), and the next epoch is
    /// staged in `pending`. `scratch`:
    /// [`send_commit_scratch_len`](Self::send_commit_scratch_len). On
    /// error `self` is unchanged and `pending` empty; on success a
    /// PrivateMessage commit used up one handshake generation of ours.
    ///
    /// ```
    /// # use securemesh_core::crypto::{Ed25519, Signature};
    /// # use securemesh_core::testing::TestRng;
    /// # use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package, key_package_len};
    /// # use securemesh_mls_lite::messages::{KeyPackage};
    /// # use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
    /// # use securemesh_mls_lite::pending_commit::CommitOptions;
    /// # use securemesh_mls_lite::{DefaultGroup, Error, JoinKeys};
    /// # let mut rng = TestRng::new(1);
    /// # let mut new_kp = |name: &[u8], rng: &mut TestRng| {
    /// #     let sig = Ed25519::generate(rng);
    /// #     let p = KeyPackageParams { identity: name, not_before: 0, not_after: u64::MAX, last_resort: false };
    /// #     let mut kp = vec![0u8; key_package_len(name.len())];
    /// #     let (n, secrets) = create_key_package(&p, &sig, rng, &mut kp, &mut vec![0u8; 1024]).unwrap();
    /// #     kp.truncate(n);
    /// #     (kp, secrets, sig)
    /// # };
    /// let (alice_kp, alice_secrets, alice_sig) = new_kp(b"alice", &mut rng);
    /// let (bob_kp, bob_secrets, bob_sig) = new_kp(b"bob", &mut rng);
    /// let mut alice: Box<DefaultGroup> = Box::default();
    /// let alice_keys = JoinKeys {
    ///     key_package: KeyPackage::from_bytes(&alice_kp)?,
    ///     init_priv: &alice_secrets.init_priv,
    ///     encryption_priv: &alice_secrets.encryption_priv,
    ///     signature_priv: &alice_sig,
    /// };
    /// alice.create_into(b"fleet", &alice_keys, &[], &mut rng)?;
    ///
    /// // Alice adds Bob: a pending commit and a Welcome.
    /// let mut pending: Box<DefaultGroup> = Box::default();
    /// let (mut commit, mut welcome) = (vec![0u8; 4096], vec![0u8; DefaultGroup::welcome_len(1, true)]);
    /// let mut scratch = vec![0u8; DefaultGroup::send_commit_scratch_len(bob_kp.len())];
    /// let out = alice.commit(
    ///     &[KeyPackage::from_bytes(&bob_kp)?],
    ///     &[], // nobody removed
    ///     &CommitOptions::default(),
    ///     &mut rng,
    ///     &mut pending,
    ///     &mut commit,
    ///     &mut welcome,
    ///     &mut scratch,
    /// )?;
    /// // The delivery service ordered it: merge.
    /// alice.merge_pending_commit(&mut pending)?;
    /// assert_eq!((alice.epoch(), alice.members().count()), (1, 2));
    ///
    /// // Bob joins from the Welcome.
    /// let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(&welcome[..out.welcome_len])?.body else {
    ///     return Err(Error::Malformed);
    /// };
    /// let bob_keys = JoinKeys {
    ///     key_package: KeyPackage::from_bytes(&bob_kp)?,
    ///     init_priv: &bob_secrets.init_priv,
    ///     encryption_priv: &bob_secrets.encryption_priv,
    ///     signature_priv: &bob_sig,
    /// };
    /// let mut bob: Box<DefaultGroup> = Box::default();
    /// let mut scratch = vec![0u8; DefaultGroup::scratch_len(out.welcome_len)];
    /// bob.join_into(&w, &bob_keys, None, &[], &mut scratch)?;
    /// assert_eq!(bob.epoch_authenticator().expose(), alice.epoch_authenticator().expose());
    /// # Ok::<(), Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn commit<R: CryptoRng + ?Sized>(
        &mut self,
        adds: &[KeyPackage<'_>],
        removes: &[u32],
        options: &CommitOptions<'_>,
        rng: &mut R,
        pending: &mut Self,
        commit_out: &mut [u8],
        welcome_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        let proposals = Proposals { adds, removes, ..Proposals::default() };
        let no_cache = ProposalCache::<0, 0>::new();
        let no_psk = PskStore::default();
        let (commit, welcome) = (commit_out, welcome_out);
        self.commit_with(&proposals, &no_cache, &no_psk, options, rng, pending, commit, welcome, scratch)
    }

    /// Commit the proposals of `cache` by reference and those of
    /// `proposals` by value, as a pending commit, like
    /// [`commit`](Self::commit) (same buffers, same transaction, same
    /// Welcome for the members added, by value or by reference).
    ///
    /// - Every proposal cached for the current epoch
    ///   ([`process_proposal`](Self::process_proposal), or
    ///   [`propose`](Self::propose) for our own) is committed by reference
    ///   if it is valid together with those before it; an invalid one (a
    ///   Remove of ourselves, of a blank leaf or of a leaf already touched,
    ///   a second GroupContextExtensions, an unknown PSK, ...) is left out,
    ///   as RFC 9420 §12.2 lets a committer do.
    /// - By value: the GroupContextExtensions (replacing the group's), the
    ///   PSKs (each with a fresh `psk_nonce`; values from `psk_store`, or
    ///   the current epoch's resumption PSK), the Removes and the Adds. These
    ///   must be valid together with the referenced ones (otherwise the
    ///   error, e.g. [`Error::Malformed`] or [`Error::Unsupported`] for an
    ///   unknown PSK, and nothing changed).
    ///
    /// An UpdatePath is included when §12.4 requires one (an Update,
    /// Remove or GroupContextExtensions, or no proposal at all) or when
    /// asked. New members must know the external PSKs a commit that adds
    /// them injects (they join with them: [`Group::join_into`]); resumption
    /// PSKs other than the group's own cannot be given to a joiner.
    /// `scratch`: [`send_commit_scratch_len`](Self::send_commit_scratch_len)
    /// of the by-value KeyPackages' length plus
    /// [`ProposalCache::encoded_len`] of the epoch.
    ///
    /// ```
    /// # use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::messages::Psk;
    /// use securemesh_mls_lite::pending_commit::{CommitOptions, Proposals};
    /// use securemesh_mls_lite::testing::member_pair;
    /// use securemesh_mls_lite::{DefaultGroup, DefaultProposalCache, Error, ExternalPsk, PskStore};
    /// let mut rng = TestRng::new(1);
    /// let (mut a, mut b): (Box<DefaultGroup>, Box<DefaultGroup>) = (Box::default(), Box::default());
    /// member_pair(b"agents", &mut rng, [&mut *a, &mut *b])?;
    /// let (mut cache, mut spare) = (Box::<DefaultProposalCache>::default(), Box::<DefaultGroup>::default());
    ///
    /// // A commits new GroupContext extensions (none) and an external PSK both know.
    /// let external = [ExternalPsk { id: b"fleet psk", psk: &[9; 32] }];
    /// let store = PskStore { external: &external, resumption: &[] };
    /// let proposals = Proposals {
    ///     psks: &[Psk::External { psk_id: b"fleet psk" }],
    ///     group_context_extensions: Some(&[]),
    ///     ..Proposals::default()
    /// };
    /// let mut commit = vec![0u8; 4096];
    /// let mut scratch = vec![0u8; DefaultGroup::send_commit_scratch_len(0)];
    /// let out = a.commit_with(
    ///     &proposals, &cache, &store, &CommitOptions::default(), &mut rng,
    ///     &mut spare, &mut commit, &mut [], &mut scratch,
    /// )?;
    /// a.merge_pending_commit(&mut spare)?;
    ///
    /// // B follows it with the same PSK.
    /// let mut scratch = vec![0u8; DefaultGroup::commit_scratch_len(out.commit_len)];
    /// b.process_commit(&commit[..out.commit_len], &mut cache, &store, &mut spare, &mut scratch)?;
    /// assert_eq!(a.epoch_authenticator().expose(), b.epoch_authenticator().expose());
    /// # Ok::<(), Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn commit_with<R: CryptoRng + ?Sized, const N: usize, const PB: usize>(
        &mut self,
        proposals: &Proposals<'_>,
        cache: &ProposalCache<N, PB>,
        psk_store: &PskStore<'_>,
        options: &CommitOptions<'_>,
        rng: &mut R,
        pending: &mut Self,
        commit_out: &mut [u8],
        welcome_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        let result = self.stage(
            None,
            proposals,
            cache,
            psk_store,
            options,
            rng,
            pending,
            commit_out,
            welcome_out,
            scratch,
        );
        scratch.fill(0);
        if result.is_err() {
            pending.clear();
        }
        result
    }

    /// Make the pending commit in `pending` ([`commit`](Self::commit))
    /// the current epoch: the two slots are swapped and `pending` emptied
    /// (the old epoch's secrets are zeroized). `pending` must hold the next
    /// epoch of this group ([`Error::Malformed`] otherwise, nothing changed).
    pub fn merge_pending_commit(&mut self, pending: &mut Self) -> Result<(), Error> {
        if !self.joined
            || !pending.joined
            || pending.group_id != self.group_id
            || Some(pending.epoch) != self.epoch.checked_add(1)
        {
            return Err(Error::Malformed);
        }
        core::mem::swap(self, pending);
        pending.clear();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stage<R: CryptoRng + ?Sized, const N: usize, const PB: usize>(
        &mut self,
        external: Option<&ExternalInit<'_>>,
        by_value: &Proposals<'_>,
        cache: &ProposalCache<N, PB>,
        psk_store: &PskStore<'_>,
        options: &CommitOptions<'_>,
        rng: &mut R,
        next: &mut Self,
        commit_out: &mut [u8],
        welcome_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        self.ready_to_sign()?;
        if external.is_some() && options.wire_format != WireFormat::PublicMessage {
            return Err(Error::Malformed); // §12.4.3.2: a PublicMessage
        }
        if by_value.adds.len() > MAX_ADDS
            || by_value.removes.len() > MAX_ADDS
            || by_value.psks.len() > MAX_PSKS
        {
            return Err(Error::Capacity);
        }
        let kp_total = by_value.adds.iter().try_fold(0usize, |n, kp| n.checked_add(kp.as_bytes().len()));
        let kp_total =
            kp_total.and_then(|n| n.checked_add(cache.encoded_len(self.epoch))).ok_or(Error::Capacity)?;
        let needed = Self::send_commit_scratch_len(kp_total);
        if scratch.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let mut rest = &mut scratch[..];
        // (Room to sign our new leaf too: twice its bytes and the label.)
        let work_len = 2048usize.max(B.saturating_mul(2).saturating_add(256));
        let work = take(&mut rest, work_len.max(kp_total.saturating_mul(2).saturating_add(100)))?;
        let epoch_now = self.epoch;
        let epoch = epoch_now.checked_add(1).ok_or(Error::Capacity)?;

        // The cached proposals go by reference (§12.4), each that is valid
        // with those before it; the others are left out (§12.2).
        let mut refs: heapless::Vec<[u8; NH], N> = heapless::Vec::new();
        for reference in cache.references(epoch_now) {
            refs.push(reference).map_err(|_| Error::Capacity)?;
            let so_far = || {
                refs.iter().map(|r| {
                    let (sender, p) = cache.get(epoch_now, r).ok_or(Error::Malformed)?;
                    Ok((p.as_bytes(), sender))
                })
            };
            if self.check_proposals(&so_far, Some(self.own_leaf), false, psk_store, work).is_err() {
                refs.pop();
            }
        }

        // The proposals<V> of the Commit: the references, then by value the
        // GroupContextExtensions, PSKs (fresh nonces), Removes and Adds.
        let mut nonces: heapless::Vec<[u8; NH], MAX_PSKS> = heapless::Vec::new();
        for _ in by_value.psks {
            let mut nonce = [0u8; NH];
            rng.fill_bytes(&mut nonce);
            nonces.push(nonce).map_err(|_| Error::Capacity)?;
        }
        let write_list = |w: &mut Writer<'_>| -> Result<(), Error> {
            if let Some(x) = external {
                w.write_u8(1)?; // ProposalOrRefType proposal
                w.write_u16(proposal_type::EXTERNAL_INIT)?;
                w.write_vec_varint(&x.kem_output)?;
            }
            for r in &refs {
                w.write_u8(2)?; // ProposalOrRefType reference
                w.write_vec_varint(r)?;
            }
            if let Some(extensions) = by_value.group_context_extensions {
                w.write_u8(1)?; // ProposalOrRefType proposal
                w.write_u16(proposal_type::GROUP_CONTEXT_EXTENSIONS)?;
                w.write_vec_varint(extensions)?;
            }
            for (psk, nonce) in by_value.psks.iter().zip(&nonces) {
                w.write_u8(1)?;
                w.write_u16(proposal_type::PSK)?;
                psk.write_to(w, nonce)?;
            }
            for r in by_value.removes {
                w.write_u8(1)?;
                w.write_u16(proposal_type::REMOVE)?;
                w.write_u32(*r)?;
            }
            for kp in by_value.adds {
                w.write_u8(1)?;
                w.write_u16(proposal_type::ADD)?;
                w.write_bytes(kp.as_bytes())?;
            }
            Ok(())
        };
        let list_buf = take(&mut rest, encoded_len(write_list)?)?;
        let mut w = Writer::new(list_buf);
        write_list(&mut w)?;
        w.finish()?;
        let list: &[u8] = list_buf;

        // Checked and applied as a receiver does (§12.2), into `next`.
        let (sender, committer) = match external {
            None => (Sender::Member(self.own_leaf), Some(self.own_leaf)),
            Some(_) => (Sender::NewMemberCommit, None),
        };
        let proposals = || resolve(items(list, ProposalOrRef::parse), cache, epoch_now, sender);
        let checked = self.check_proposals(&proposals, committer, external.is_some(), psk_store, work)?;
        let with_path = options.update_path || checked.path_required || external.is_some();
        let psk_secret = key_schedule::psk_secret(&checked.psks)?;
        let added = self.apply_proposals(next, &proposals, checked.gce)?;
        if let Some(x) = external {
            // The joiner takes the leftmost blank leaf, as if added
            // (§12.4.3.2); its final LeafNode comes with the path.
            next.own_leaf = add_leaf(&mut next.tree, &LeafNode::from_bytes(x.leaf)?)?;
        }
        // (The PSK values may borrow our state, which changes below.)
        drop(checked);
        // An Update we proposed is void in the new epoch (a committer
        // cannot cover its own).
        next.pending_update = None;
        // For the Welcome: the new members' KeyPackages (their encodings:
        // a list of views would cost this frame 32 x 272 bytes) and the PSK
        // ids.
        let mut adds: heapless::Vec<&[u8], MAX_COMMIT_PROPOSALS> = heapless::Vec::new();
        let mut psk_ids: heapless::Vec<&[u8], MAX_PSKS> = heapless::Vec::new();
        for item in proposals() {
            match Proposal::from_bytes(item?.0)?.body {
                ProposalBody::Add(kp) => adds.push(kp.as_bytes()).map_err(|_| Error::Capacity)?,
                ProposalBody::PreSharedKey(id) => psk_ids.push(id.as_bytes()).map_err(|_| Error::Capacity)?,
                _ => {}
            }
        }

        // The UpdatePath (§7.4, §7.5, §7.9): path secrets up our filtered
        // direct path, a new leaf key, parent hashes, and each path secret
        // encrypted to the copath resolution (new members left out) under
        // the provisional GroupContext.
        let path_buf_len = if with_path { Self::max_update_path_len() } else { 0 };
        let path_buf = take(&mut rest, path_buf_len)?;
        let mut path_len = 0usize;
        let mut path_secrets: heapless::Vec<(NodeIndex, Secret32), MAX_PATH_KEYS> = heapless::Vec::new();
        let mut commit_secret = Secret32::zeroed();
        let mut new_leaf_key: Option<Secret32> = None;
        let mut provisional_tree_hash: Option<[u8; NH]> = None;
        let gc_cap = G.saturating_add(E).saturating_add(160);
        if with_path {
            let own = next.own_leaf;
            // (Empty when the commit leaves us alone in the group: the
            // path is then our new leaf only, and nobody else derives the
            // commit secret.)
            let filtered = filtered_path(&next.tree, own)?;
            let mut secret = Secret32::random(rng);
            next.path_keys.clear();
            // Each node's key pair is derived as the tree takes its public
            // key (the private one kept): no list of public keys on the
            // stack (X-Wing's are 1216 bytes each).
            let suite = self.suite;
            let path_keys = &mut next.path_keys;
            let mut derive = filtered.iter().enumerate().map(|(i, (p, _))| -> Result<HpkePublicKey, Error> {
                if i > 0 {
                    secret = next_path_secret(&secret)?;
                }
                let (private_key, public_key) = node_key_pair_in(suite, &secret)?;
                path_keys.push(PathKey { node: *p, private_key }).map_err(|_| Error::Capacity)?;
                path_secrets.push((*p, secret.duplicate())).map_err(|_| Error::Capacity)?;
                Ok(public_key)
            });
            let parent_hash = set_path_keys(&mut next.tree, own, &filtered, &mut derive)?;
            drop(derive);
            commit_secret = next_path_secret(&secret)?;
            let leaf_key = self.suite.generate(rng);
            let source = LeafNodeSource::Commit { parent_hash: parent_hash.as_ref().map_or(&[], |h| &h[..]) };
            let leaf_len =
                next.write_own_leaf(&self.suite.public_key(&leaf_key)?, source, rng, path_buf, work)?;
            next.tree.set_leaf(own, Some(path_buf.get(..leaf_len).ok_or(Error::Capacity)?))?;
            new_leaf_key = Some(leaf_key);

            let tree_hash = next.tree.tree_hash(next.tree.root())?;
            provisional_tree_hash = Some(tree_hash);
            let provisional = GroupContext {
                cipher_suite: self.suite.id(),
                group_id: &self.group_id,
                epoch,
                tree_hash: &tree_hash,
                confirmed_transcript_hash: &self.confirmed_transcript_hash,
                extensions: &next.extensions,
            };
            let gc_buf = take(&mut rest, gc_cap)?;
            let n = provisional.encode(gc_buf)?;
            let gc_bytes = gc_buf.get(..n).ok_or(Error::Capacity)?;

            // nodes<V>: the exact length first (each HPKECiphertext is
            // kem_output<V> of the suite's `Nenc` bytes and ciphertext<V> of 48).
            let excluded = |d: NodeIndex| d.is_multiple_of(2) && added.contains(&(d / 2));
            let mut nodes_len = 0usize;
            for (_, copath) in &filtered {
                let mut count = 0usize;
                next.tree.resolution(*copath, &mut |d| {
                    if !excluded(d) {
                        count = count.saturating_add(1);
                    }
                });
                let list = count.saturating_mul(hpke_ciphertext_len(self.suite)?);
                nodes_len = nodes_len
                    .saturating_add(hpke_public_field_len(self.suite)?)
                    .saturating_add(varint_len(list)?)
                    .saturating_add(list);
            }
            let mut w = Writer::new(path_buf.get_mut(leaf_len..).ok_or(Error::Capacity)?);
            w.write_varint(u32::try_from(nodes_len).map_err(|_| Error::Capacity)?)?;
            for ((p, copath), (_, secret)) in filtered.iter().zip(path_secrets.iter()) {
                // The node's public key, as the tree now holds it.
                let Node::Parent(parent) = next.tree.node(*p) else { return Err(Error::Malformed) };
                w.write_vec_varint(&parent.encryption_key)?;
                // The resolution's nodes (not their keys: an X-Wing key is
                // 1216 bytes, too many to hold on the stack).
                let mut targets: heapless::Vec<NodeIndex, L> = heapless::Vec::new();
                let mut overflow = false;
                let tree = &next.tree;
                tree.resolution(*copath, &mut |d| {
                    if !excluded(d) {
                        overflow |= targets.push(d).is_err();
                    }
                });
                if overflow {
                    return Err(Error::Capacity);
                }
                let list = targets.len().saturating_mul(hpke_ciphertext_len(self.suite)?);
                w.write_varint(u32::try_from(list).map_err(|_| Error::Capacity)?)?;
                for d in &targets {
                    let target = match tree.node(*d) {
                        Node::Leaf(l) => l.encryption_key,
                        Node::Parent(p) => &p.encryption_key[..],
                        Node::Blank => return Err(Error::Malformed),
                    };
                    let mut buf = *secret.expose();
                    let (kem_output, tag) = self.suite.encrypt_with_label(
                        target,
                        b"UpdatePathNode",
                        gc_bytes,
                        &mut buf,
                        work,
                        rng,
                    )?;
                    w.write_vec_varint(&kem_output)?;
                    w.write_varint(48)?;
                    w.write_bytes(&buf)?;
                    w.write_bytes(&tag)?;
                }
            }
            path_len = leaf_len.checked_add(w.finish()?).ok_or(Error::Capacity)?;
        }
        next.path_keys.sort_unstable_by_key(|k| k.node);

        // The Commit: the proposals, then the path.
        let commit_buf_len = list.len().saturating_add(path_len).saturating_add(8);
        let commit_buf = take(&mut rest, commit_buf_len)?;
        let mut w = Writer::new(commit_buf);
        w.write_vec_varint(list)?;
        if with_path {
            w.write_u8(1)?;
            w.write_bytes(path_buf.get(..path_len).ok_or(Error::Capacity)?)?;
        } else {
            w.write_u8(0)?;
        }
        let n = w.finish()?;
        let commit = Commit::from_bytes(commit_buf.get(..n).ok_or(Error::Capacity)?)?;

        // Sign it in the current epoch.
        let gc_now = self.group_context();
        let content = FramedContent {
            group_id: &self.group_id,
            epoch: epoch_now,
            sender,
            authenticated_data: options.authenticated_data,
            content: Content::Commit(commit),
        };
        let sign_len = sign_scratch_len(options.wire_format, &content, &gc_now)?;
        let sign_buf = take(&mut rest, sign_len)?;
        let key = self.signing_key.as_ref().ok_or(Error::Malformed)?;
        let signature = sign(options.wire_format, &content, key, &gc_now, sign_buf)?;

        // The new epoch: transcript, GroupContext, key schedule (no PSK),
        // confirmation tag.
        let confirmed =
            ConfirmedTranscriptHashInput { wire_format: options.wire_format, content, signature: &signature }
                .confirmed_transcript_hash(&self.interim_transcript_hash)?;
        // The tree is final once the path is in: the provisional context's
        // tree hash is the new epoch's.
        #[cfg(feature = "ml-dsa")]
        next.check_required_capabilities()?;
        let tree_hash = match provisional_tree_hash {
            Some(h) => h,
            None => next.tree.tree_hash(next.tree.root())?,
        };
        let gc = GroupContext {
            cipher_suite: self.suite.id(),
            group_id: &self.group_id,
            epoch,
            tree_hash: &tree_hash,
            confirmed_transcript_hash: &confirmed,
            extensions: &next.extensions,
        };
        let gc_buf = take(&mut rest, gc_cap)?;
        let gc_len = gc.encode(gc_buf)?;
        let gc_bytes = gc_buf.get(..gc_len).ok_or(Error::Capacity)?;
        let init_secret = external.map_or(&self.secrets.init, |x| &x.init_secret);
        let secrets = EpochSecrets::derive(
            init_secret.expose(),
            commit_secret.expose(),
            psk_secret.expose(),
            gc_bytes,
        )?;
        let tag = secrets.confirmation_tag(&confirmed);
        let interim =
            InterimTranscriptHashInput { confirmation_tag: &tag }.interim_transcript_hash(&confirmed)?;

        // The commit message.
        let ac = AuthenticatedContent {
            wire_format: options.wire_format,
            content,
            auth: FramedContentAuthData { signature: &signature, confirmation_tag: Some(&tag) },
        };
        if !matches!(options.wire_format, WireFormat::PublicMessage | WireFormat::PrivateMessage) {
            return Err(Error::Malformed);
        }

        // The Welcome (before anything is committed to our state), with
        // each new member's path secret: the one of its lowest common
        // ancestor with us.
        let own_node = tree_math::leaf_to_node(next.own_leaf).ok_or(Error::Malformed)?;
        let width = next.tree.leaf_count();
        let path_secret_for = |leaf: u32| -> Option<&Secret32> {
            let node = tree_math::leaf_to_node(leaf)?;
            let lca = tree_math::direct_path(node, width).find(|p| tree_math::is_in_subtree(own_node, *p))?;
            path_secrets.iter().find(|(p, _)| *p == lca).map(|(_, s)| s)
        };
        let welcome_len = if adds.is_empty() {
            0
        } else {
            self.write_welcome(
                &adds,
                &added,
                &path_secret_for,
                (&psk_ids, &psk_secret),
                next,
                &secrets,
                gc_bytes,
                &tag,
                options,
                rng,
                welcome_out,
                rest,
            )?
        };

        let (commit_len, generation) = self.protect_own(&ac, options.padding, rng, commit_out)?;
        if let Some(generation) = generation {
            // Cannot fail: `protect_own` just derived this key.
            self.ratchets.consume(self.own_leaf, generation, RatchetKind::Handshake)?;
        }

        next.epoch = epoch;
        next.tree_hash = tree_hash;
        next.confirmed_transcript_hash =
            heapless::Vec::from_slice(&confirmed).map_err(|_| Error::Capacity)?;
        next.interim_transcript_hash = interim;
        if let Some(k) = new_leaf_key {
            next.leaf_private_key = k;
        }
        next.ratchets.reset(&secrets.encryption, next.tree.leaf_count())?;
        next.secrets = secrets.into();
        Ok(CommitOutput { commit_len, welcome_len, epoch })
    }

    /// Write a GroupInfo (§12.4.3) signed by us into `gi` and return its
    /// length: the encoded GroupContext `gc_bytes`, the extensions
    /// (`external_pub` if given, then `ratchet_tree` if given),
    /// `confirmation_tag`, our leaf index and the signature. The signed
    /// bytes are copied into space taken from `rest`.
    fn write_group_info(
        &self,
        gc_bytes: &[u8],
        confirmation_tag: &[u8; NH],
        tree: Option<&crate::tree::RatchetTree<L, B>>,
        external_pub: Option<&[u8]>,
        gi: &mut [u8],
        rest: &mut &mut [u8],
    ) -> Result<usize, Error> {
        let mut w = Writer::new(gi);
        w.write_bytes(gc_bytes)?;
        let head = w.finish()?;
        // extensions<V>. external_pub: type, data<V> holding
        // `HPKEPublicKey external_pub<V>` (2 + 1 + 33 bytes for a
        // 32-byte key, 2 + 2 + 1218 for X-Wing's).
        const EXTERNAL_PUB_LEN: usize = if MAX_HPKE_PUBLIC_LEN < 63 {
            2 + 1 + 1 + MAX_HPKE_PUBLIC_LEN
        } else {
            2 + 2 + 2 + MAX_HPKE_PUBLIC_LEN
        };
        let mut ext = [0u8; EXTERNAL_PUB_LEN];
        let ext_pub: &[u8] = match external_pub {
            Some(key) => {
                let inner = varint_len(key.len())?.checked_add(key.len()).ok_or(Error::Capacity)?;
                let mut w = Writer::new(&mut ext);
                w.write_u16(EXTERNAL_PUB_EXTENSION)?;
                w.write_varint(u32::try_from(inner).map_err(|_| Error::Capacity)?)?;
                w.write_vec_varint(key)?;
                let n = w.finish()?;
                ext.get(..n).ok_or(Error::Capacity)?
            }
            None => &[],
        };
        // The tree is encoded in place, after room for the lengths, the
        // extension types and external_pub, then moved down to follow them.
        const ROOM: usize = 10 + EXTERNAL_PUB_LEN;
        let from = head.checked_add(ROOM).ok_or(Error::Capacity)?;
        let (n, v_tree, v_tree_len) = match tree {
            Some(t) => {
                let n = t.encode(gi.get_mut(from..).ok_or(Error::Capacity)?)?;
                let (v, l) = crate::crypto::varint(n)?;
                (n, v, l)
            }
            None => (0, [0; 4], 0),
        };
        let tree_ext_len = if tree.is_some() { n.saturating_add(2).saturating_add(v_tree_len) } else { 0 };
        let body_len = ext_pub.len().checked_add(tree_ext_len).ok_or(Error::Capacity)?;
        let (v_body, v_body_len) = crate::crypto::varint(body_len)?;
        let hdr_len = v_body_len.saturating_add(ext_pub.len()).saturating_add(if tree.is_some() {
            v_tree_len.saturating_add(2)
        } else {
            0
        });
        let to = head.checked_add(hdr_len).ok_or(Error::Capacity)?;
        let end = from.checked_add(n).ok_or(Error::Capacity)?;
        gi.copy_within(from..end, to);
        let mut w = Writer::new(gi.get_mut(head..to).ok_or(Error::Capacity)?);
        w.write_bytes(v_body.get(..v_body_len).ok_or(Error::Capacity)?)?;
        w.write_bytes(ext_pub)?;
        if tree.is_some() {
            w.write_u16(RATCHET_TREE_EXTENSION)?;
            w.write_bytes(v_tree.get(..v_tree_len).ok_or(Error::Capacity)?)?;
        }
        w.finish()?;
        let at = to.checked_add(n).ok_or(Error::Capacity)?;
        let mut w = Writer::new(gi.get_mut(at..).ok_or(Error::Capacity)?);
        w.write_vec_varint(confirmation_tag)?;
        w.write_u32(self.own_leaf)?;
        let tbs_len = at.checked_add(w.finish()?).ok_or(Error::Capacity)?;
        let sign_buf = take(rest, tbs_len.saturating_add(64))?;
        let key = self.signing_key.as_ref().ok_or(Error::Malformed)?;
        let signature =
            sign_with_label(key, b"GroupInfoTBS", gi.get(..tbs_len).ok_or(Error::Capacity)?, sign_buf)?;
        let mut w = Writer::new(gi.get_mut(tbs_len..).ok_or(Error::Capacity)?);
        w.write_vec_varint(&signature)?;
        tbs_len.checked_add(w.finish()?).ok_or(Error::Capacity)
    }

    /// Bytes of the GroupInfo [`export_group_info`](Self::export_group_info)
    /// writes at most (with the tree).
    pub const MAX_GROUP_INFO_LEN: usize =
        Self::MAX_TREE_LEN.saturating_add(G.saturating_add(E)).saturating_add(GROUP_INFO_OVERHEAD);

    /// Export the GroupInfo of the current epoch (§12.4.3), signed by us,
    /// with the `external_pub` extension (for external joins, §12.4.3.2)
    /// and, if `with_tree`, the `ratchet_tree` extension. Written into
    /// `out` ([`MAX_GROUP_INFO_LEN`](Self::MAX_GROUP_INFO_LEN) bytes are
    /// enough) as an `MLSMessage`; returns its length. `scratch`:
    /// [`MAX_GROUP_INFO_LEN`](Self::MAX_GROUP_INFO_LEN) bytes.
    ///
    /// ```
    /// # use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
    /// use securemesh_mls_lite::testing::member_pair;
    /// use securemesh_mls_lite::DefaultGroup;
    /// let (mut a, mut b): (Box<DefaultGroup>, Box<DefaultGroup>) = (Box::default(), Box::default());
    /// member_pair(b"agents", &mut TestRng::new(1), [&mut *a, &mut *b])?;
    /// let mut out = vec![0u8; DefaultGroup::MAX_GROUP_INFO_LEN];
    /// let mut scratch = vec![0u8; DefaultGroup::MAX_GROUP_INFO_LEN];
    /// let n = a.export_group_info(true, &mut out, &mut scratch)?;
    /// let MlsMessageBody::GroupInfo(gi) = MlsMessage::from_bytes(&out[..n])?.body else {
    ///     return Err(securemesh_mls_lite::Error::Malformed);
    /// };
    /// gi.verify(a.tree().leaf(0).unwrap().signature_key, &mut scratch)?;
    /// assert_eq!(gi.group_context.epoch, a.epoch());
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    pub fn export_group_info(
        &mut self,
        with_tree: bool,
        out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<usize, Error> {
        self.ready_to_sign()?;
        let mut rest = &mut scratch[..];
        let gc_buf = take(&mut rest, G.saturating_add(E).saturating_add(160))?;
        let n = self.group_context().encode(gc_buf)?;
        let gc_bytes = gc_buf.get(..n).ok_or(Error::Capacity)?;
        let tag = crate::transcript::confirmation_tag(
            self.secrets.confirmation_key.expose(),
            &self.confirmed_transcript_hash,
        );
        let external_pub = self.suite.external_public(&self.secrets.external)?;
        let (header, body) = out.split_at_mut_checked(4).ok_or(Error::BufferTooSmall { needed: 4 })?;
        let mut w = Writer::new(header);
        w.write_u16(MLS10)?;
        w.write_u16(WireFormat::GroupInfo.to_u16())?;
        w.finish()?;
        let tree = with_tree.then_some(&self.tree);
        let len = self.write_group_info(gc_bytes, &tag, tree, Some(&external_pub), body, &mut rest);
        scratch.fill(0);
        len?.checked_add(4).ok_or(Error::Capacity)
    }

    /// Write the Welcome `MLSMessage` for `key_packages` (their encodings,
    /// added at the leaves `added`) into `out`: the GroupInfo of the new
    /// epoch (`next`, whose encoded GroupContext is `gc_bytes`) signed by
    /// us and sealed under the welcome secret (with the PSK secret), and one
    /// `GroupSecrets` (joiner secret, the member's path secret if any, the
    /// commit's PSK ids) sealed to each KeyPackage's `init_key`.
    #[allow(clippy::too_many_arguments)]
    fn write_welcome<'p, R: CryptoRng + ?Sized>(
        &self,
        key_packages: &[&[u8]],
        added: &[u32],
        path_secret_for: &dyn Fn(u32) -> Option<&'p Secret32>,
        (psk_ids, psk_secret): (&[&[u8]], &Secret32),
        next: &Self,
        secrets: &EpochSecrets,
        gc_bytes: &[u8],
        tag: &[u8; NH],
        options: &CommitOptions<'_>,
        rng: &mut R,
        out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<usize, Error> {
        let mut rest = scratch;
        // The GroupInfo, with room for the AEAD tag.
        let tree_len = if options.ratchet_tree_in_welcome { Self::MAX_TREE_LEN } else { 0 };
        let gi_cap = gc_bytes.len().saturating_add(tree_len).saturating_add(GROUP_INFO_OVERHEAD);
        let gi = take(&mut rest, gi_cap)?;
        let tree = options.ratchet_tree_in_welcome.then_some(&next.tree);
        let gi_len = self.write_group_info(gc_bytes, tag, tree, None, gi, &mut rest)?;

        // encrypted_group_info.
        let ws = welcome_secret(secrets.joiner.expose(), psk_secret)?;
        let (wkey, wnonce) = welcome_key_nonce(&ws)?;
        let egi_len = gi_len.checked_add(16).ok_or(Error::Capacity)?;
        let egi = gi.get_mut(..egi_len).ok_or(Error::Capacity)?;
        let (body, tag_out) = egi.split_at_mut_checked(gi_len).ok_or(Error::Capacity)?;
        let t = ChaChaPoly::seal_detached(&wkey, &wnonce, &[], body)?;
        tag_out.copy_from_slice(&t);
        let egi: &[u8] = egi;

        // GroupSecrets: joiner_secret<V>, the path secret if any, the
        // commit's PreSharedKeyIDs.
        let psks_len = psk_ids.iter().try_fold(0usize, |n, id| n.checked_add(id.len()));
        let psks_len = psks_len.ok_or(Error::Capacity)?;
        let gs_cap = psks_len.saturating_add(2 * NH + 8);
        let group_secrets = |leaf: u32, out: &mut [u8]| -> Result<usize, Error> {
            let mut w = Writer::new(out);
            w.write_vec_varint(secrets.joiner.expose())?;
            match path_secret_for(leaf) {
                Some(s) => {
                    w.write_u8(1)?;
                    w.write_vec_varint(s.expose())?;
                }
                None => w.write_u8(0)?,
            }
            w.write_varint(u32::try_from(psks_len).map_err(|_| Error::Capacity)?)?;
            for id in psk_ids {
                w.write_bytes(id)?;
            }
            Ok(w.finish()?)
        };
        let ctx_buf = take(&mut rest, egi_len.saturating_add(64))?;
        let gs = take(&mut rest, gs_cap)?;

        // Each EncryptedGroupSecrets: new_member<V>, kem_output<V>,
        // ciphertext<V> (the GroupSecrets and the AEAD tag).
        let mut secrets_len = 0usize;
        for leaf in added {
            let gs_len = group_secrets(*leaf, gs)?;
            let ct_len = gs_len.saturating_add(16);
            let kem = self.suite.kem_output_len();
            let entry = ct_len
                .saturating_add(varint_len(ct_len)?)
                .saturating_add(1 + NH)
                .saturating_add(varint_len(kem)?)
                .saturating_add(kem);
            secrets_len = secrets_len.saturating_add(entry);
        }
        let mut w = Writer::new(out);
        w.write_u16(MLS10)?;
        w.write_u16(WireFormat::Welcome.to_u16())?;
        w.write_u16(self.suite.id())?;
        w.write_varint(u32::try_from(secrets_len).map_err(|_| Error::Capacity)?)?;
        let sealed = (|| {
            for (kp, leaf) in key_packages.iter().zip(added) {
                let kp = KeyPackage::from_bytes(kp)?;
                let gs_len = group_secrets(*leaf, gs)?;
                let buf = gs.get_mut(..gs_len).ok_or(Error::Capacity)?;
                let (kem_output, t) =
                    self.suite.encrypt_with_label(kp.init_key, b"Welcome", egi, buf, ctx_buf, rng)?;
                w.write_vec_varint(&kp.reference()?)?;
                w.write_vec_varint(&kem_output)?;
                w.write_varint(u32::try_from(gs_len.saturating_add(16)).map_err(|_| Error::Capacity)?)?;
                w.write_bytes(buf)?;
                w.write_bytes(&t)?;
            }
            w.write_vec_varint(egi)?;
            Ok::<(), Error>(())
        })();
        gs.fill(0);
        sealed?;
        Ok(w.finish()?)
    }
}

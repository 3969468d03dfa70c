//! Sending commits (RFC 9420 §12.4) as a pending commit, and the Welcome
//! for the members they add (§12.4.3.1).
//!
//! [`Group::commit_adds`] follows the pending-commit discipline of mls-rs:
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
//! This part makes commits that add members by value without an
//! UpdatePath (RFC 9420 §12.4: a commit whose proposals are all Adds needs
//! none). Commits that need a path (Update, Remove, an empty commit,
//! GroupContextExtensions) are [`Error::Unsupported`] here for now.
//!
//! The Welcome carries the `ratchet_tree` extension in its GroupInfo when
//! asked (`CommitOptions::ratchet_tree_in_welcome`); otherwise the joiner
//! needs the tree out of band ([`Group::export_ratchet_tree`]).

use crate::commit::add_leaf;
use crate::crypto::{NH, Secret32, encrypt_with_label, sign_with_label};
use crate::error::Error;
use crate::framing::{
    AuthenticatedContent, Content, FramedContentAuthData, protect_private, protect_public, sign,
    sign_scratch_len,
};
use crate::group::Group;
use crate::key_schedule::{EpochSecrets, GroupContext};
use crate::messages::{Commit, KeyPackage, MLS10, WireFormat, write_vec_with};
use crate::secret_tree::RatchetKind;
use crate::transcript::{ConfirmedTranscriptHashInput, InterimTranscriptHashInput};
use crate::welcome::{RATCHET_TREE_EXTENSION, welcome_key_nonce, welcome_secret};
use securemesh_core::CryptoRng;
use securemesh_core::codec::Writer;
use securemesh_core::crypto::{Aead, ChaChaPoly};

/// Most members one commit adds.
pub const MAX_ADDS: usize = 16;

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
}

impl Default for CommitOptions<'_> {
    fn default() -> Self {
        CommitOptions {
            wire_format: WireFormat::PrivateMessage,
            ratchet_tree_in_welcome: true,
            authenticated_data: &[],
            padding: 0,
        }
    }
}

/// What [`Group::commit_adds`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitOutput {
    /// Length of the commit `MLSMessage` in `commit_out`.
    pub commit_len: usize,
    /// Length of the Welcome `MLSMessage` in `welcome_out`.
    pub welcome_len: usize,
    /// The epoch the pending commit moves to.
    pub epoch: u64,
}

/// Split `n` bytes off the front of `buf`.
fn take<'b>(buf: &mut &'b mut [u8], n: usize) -> Result<&'b mut [u8], Error> {
    let (head, tail) =
        core::mem::take(buf).split_at_mut_checked(n).ok_or(Error::BufferTooSmall { needed: n })?;
    *buf = tail;
    Ok(head)
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Scratch bytes [`commit_adds`](Self::commit_adds) needs at most when
    /// the KeyPackages it adds total `key_packages_len` bytes.
    pub const fn send_commit_scratch_len(key_packages_len: usize) -> usize {
        key_packages_len
            .saturating_mul(3)
            .saturating_add(Self::MAX_TREE_LEN.saturating_mul(3))
            .saturating_add(G.saturating_add(E).saturating_mul(4))
            .saturating_add(4096)
    }

    /// Most bytes of the encoded ratchet tree.
    pub const MAX_TREE_LEN: usize = L
        .saturating_mul(B.saturating_add(8))
        .saturating_add(L.saturating_mul(L.saturating_mul(4).saturating_add(80)));

    /// Bytes of a Welcome for `n_adds` members (`ratchet_tree`: with the tree).
    pub const fn welcome_len(n_adds: usize, ratchet_tree: bool) -> usize {
        let tree = if ratchet_tree { Self::MAX_TREE_LEN } else { 0 };
        n_adds
            .saturating_mul(140)
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

    /// Commit the addition of the members of `key_packages` (each verified
    /// here; their lifetimes and credentials are the caller's policy, see
    /// [`KeyPackage::validate`]) without an UpdatePath, as a pending commit
    /// (module documentation): the commit `MLSMessage` goes to
    /// `commit_out`, the Welcome `MLSMessage` to `welcome_out`
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
    /// # use securemesh_mls_lite::messages::{KeyPackage, MlsMessage, MlsMessageBody};
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
    /// let out = alice.commit_adds(
    ///     &[KeyPackage::from_bytes(&bob_kp)?],
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
    pub fn commit_adds<R: CryptoRng + ?Sized>(
        &mut self,
        key_packages: &[KeyPackage<'_>],
        options: &CommitOptions<'_>,
        rng: &mut R,
        pending: &mut Self,
        commit_out: &mut [u8],
        welcome_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        let result = self.stage_adds(key_packages, options, rng, pending, commit_out, welcome_out, scratch);
        scratch.fill(0);
        if result.is_err() {
            pending.clear();
        }
        result
    }

    /// Make the pending commit in `pending` ([`commit_adds`](Self::commit_adds))
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
    fn stage_adds<R: CryptoRng + ?Sized>(
        &mut self,
        key_packages: &[KeyPackage<'_>],
        options: &CommitOptions<'_>,
        rng: &mut R,
        next: &mut Self,
        commit_out: &mut [u8],
        welcome_out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<CommitOutput, Error> {
        if !self.joined {
            return Err(Error::Malformed);
        }
        if key_packages.is_empty() {
            // An empty commit needs an UpdatePath.
            return Err(Error::Unsupported);
        }
        if key_packages.len() > MAX_ADDS {
            return Err(Error::Capacity);
        }
        let kp_total = key_packages.iter().try_fold(0usize, |n, kp| n.checked_add(kp.as_bytes().len()));
        let needed = Self::send_commit_scratch_len(kp_total.ok_or(Error::Capacity)?);
        if scratch.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let mut rest = &mut scratch[..];
        let work = take(&mut rest, 2048.max(kp_total.unwrap_or(0).saturating_mul(2).saturating_add(100)))?;
        for kp in key_packages {
            kp.verify(work)?;
        }
        let epoch = self.epoch.checked_add(1).ok_or(Error::Capacity)?;

        // The provisional tree: each Add at the leftmost blank leaf.
        next.copy_from(self)?;
        let mut added: heapless::Vec<u32, MAX_ADDS> = heapless::Vec::new();
        for kp in key_packages {
            let leaf = add_leaf(&mut next.tree, &kp.leaf_node)?;
            added.push(leaf).map_err(|_| Error::Capacity)?;
        }

        // The Commit: the Adds by value, no path.
        let commit_buf_len =
            kp_total.unwrap_or(0).saturating_add(key_packages.len().saturating_mul(8)).saturating_add(16);
        let commit_buf = take(&mut rest, commit_buf_len)?;
        let mut w = Writer::new(commit_buf);
        write_vec_with(&mut w, |w| {
            for kp in key_packages {
                w.write_u8(1)?; // ProposalOrRefType proposal
                w.write_u16(1)?; // ProposalType add
                w.write_bytes(kp.as_bytes())?;
            }
            Ok(())
        })?;
        w.write_u8(0)?; // optional<UpdatePath>: absent
        let n = w.finish()?;
        let commit = Commit::from_bytes(commit_buf.get(..n).ok_or(Error::Capacity)?)?;

        // Sign it in the current epoch.
        self.load_signing_key();
        let gc_now = self.group_context();
        let content = self.own_content(options.authenticated_data, Content::Commit(commit));
        let sign_len = sign_scratch_len(options.wire_format, &content, &gc_now)?;
        let sign_buf = take(&mut rest, sign_len)?;
        let key = self.signing_key.as_ref().ok_or(Error::Malformed)?;
        let signature = sign(options.wire_format, &content, key, &gc_now, sign_buf)?;

        // The new epoch: transcript, GroupContext, key schedule (no
        // commit secret, no PSK), confirmation tag.
        let confirmed =
            ConfirmedTranscriptHashInput { wire_format: options.wire_format, content, signature: &signature }
                .confirmed_transcript_hash(&self.interim_transcript_hash)?;
        let tree_hash = next.tree.tree_hash(next.tree.root())?;
        let gc = GroupContext {
            group_id: &self.group_id,
            epoch,
            tree_hash: &tree_hash,
            confirmed_transcript_hash: &confirmed,
            extensions: &next.extensions,
        };
        let gc_buf = take(&mut rest, G.saturating_add(E).saturating_add(160))?;
        let gc_len = gc.encode(gc_buf)?;
        let gc_bytes = gc_buf.get(..gc_len).ok_or(Error::Capacity)?;
        let secrets = EpochSecrets::derive(self.secrets.init.expose(), &[0u8; NH], &[0u8; NH], gc_bytes)?;
        let tag = secrets.confirmation_tag(&confirmed);
        let interim =
            InterimTranscriptHashInput { confirmation_tag: &tag }.interim_transcript_hash(&confirmed)?;

        // The commit message.
        let ac = AuthenticatedContent {
            wire_format: options.wire_format,
            content,
            auth: FramedContentAuthData { signature: &signature, confirmation_tag: Some(&tag) },
        };
        let handshake = match options.wire_format {
            WireFormat::PublicMessage => None,
            WireFormat::PrivateMessage => {
                let kind = RatchetKind::Handshake;
                Some((self.ratchets.next_generation(self.own_leaf, kind)?, kind))
            }
            _ => return Err(Error::Malformed),
        };

        // The Welcome (before anything is committed to our state).
        let welcome_len = self.write_welcome(
            key_packages,
            next,
            &secrets,
            gc_bytes,
            &tag,
            options,
            rng,
            welcome_out,
            rest,
        )?;

        let commit_len = match handshake {
            None => protect_public(&ac, &gc_now, &self.secrets.membership_key, commit_out)?,
            Some((generation, kind)) => {
                let kn = self.ratchets.key_nonce(self.own_leaf, generation, kind)?;
                let n = protect_private(
                    &ac,
                    &self.secrets.sender_data,
                    &kn,
                    generation,
                    options.padding,
                    rng,
                    commit_out,
                )?;
                self.ratchets.consume(self.own_leaf, generation, kind)?;
                n
            }
        };

        next.epoch = epoch;
        next.tree_hash = tree_hash;
        next.confirmed_transcript_hash =
            heapless::Vec::from_slice(&confirmed).map_err(|_| Error::Capacity)?;
        next.interim_transcript_hash = interim;
        next.ratchets.reset(&secrets.encryption, next.tree.leaf_count())?;
        next.secrets = secrets.into();
        Ok(CommitOutput { commit_len, welcome_len, epoch })
    }

    /// Write the Welcome `MLSMessage` for `key_packages` into `out`: the
    /// GroupInfo of the new epoch (`next`, whose encoded GroupContext is
    /// `gc_bytes`) signed by us and sealed under the welcome secret, and
    /// one `GroupSecrets` (joiner secret, no path secret, no PSK) sealed to
    /// each KeyPackage's `init_key`.
    #[allow(clippy::too_many_arguments)]
    fn write_welcome<R: CryptoRng + ?Sized>(
        &self,
        key_packages: &[KeyPackage<'_>],
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
        // GroupInfoTBS, then its signature, in one buffer with room for the
        // AEAD tag.
        let tree_len = if options.ratchet_tree_in_welcome { Self::MAX_TREE_LEN } else { 0 };
        let gi_cap = gc_bytes.len().saturating_add(tree_len).saturating_add(200);
        let gi = take(&mut rest, gi_cap)?;
        let mut w = Writer::new(gi);
        w.write_bytes(gc_bytes)?;
        let head = w.finish()?;
        // extensions<V>: the ratchet tree, if asked.
        let ext_len = if options.ratchet_tree_in_welcome {
            // The tree is encoded in place, after room for the two lengths
            // and the extension type, then moved down to follow them.
            const ROOM: usize = 10;
            let from = head.checked_add(ROOM).ok_or(Error::Capacity)?;
            let n = next.tree.encode(gi.get_mut(from..).ok_or(Error::Capacity)?)?;
            let (v_tree, v_tree_len) = crate::crypto::varint(n)?;
            let body_len = n.checked_add(2).and_then(|b| b.checked_add(v_tree_len)).ok_or(Error::Capacity)?;
            let (v_body, v_body_len) = crate::crypto::varint(body_len)?;
            let hdr =
                v_body_len.checked_add(2).and_then(|h| h.checked_add(v_tree_len)).ok_or(Error::Capacity)?;
            let to = head.checked_add(hdr).ok_or(Error::Capacity)?;
            let end = from.checked_add(n).ok_or(Error::Capacity)?;
            gi.copy_within(from..end, to);
            let mut w = Writer::new(gi.get_mut(head..to).ok_or(Error::Capacity)?);
            w.write_bytes(v_body.get(..v_body_len).ok_or(Error::Capacity)?)?;
            w.write_u16(RATCHET_TREE_EXTENSION)?;
            w.write_bytes(v_tree.get(..v_tree_len).ok_or(Error::Capacity)?)?;
            w.finish()?;
            hdr.checked_add(n).ok_or(Error::Capacity)?
        } else {
            let mut w = Writer::new(gi.get_mut(head..).ok_or(Error::Capacity)?);
            w.write_vec_varint(&[])?;
            w.finish()?
        };
        let at = head.checked_add(ext_len).ok_or(Error::Capacity)?;
        let mut w = Writer::new(gi.get_mut(at..).ok_or(Error::Capacity)?);
        w.write_vec_varint(tag)?;
        w.write_u32(self.own_leaf)?;
        let tbs_len = at.checked_add(w.finish()?).ok_or(Error::Capacity)?;
        let sign_buf = take(&mut rest, tbs_len.saturating_add(64))?;
        let key = self.signing_key.as_ref().ok_or(Error::Malformed)?;
        let signature =
            sign_with_label(key, b"GroupInfoTBS", gi.get(..tbs_len).ok_or(Error::Capacity)?, sign_buf)?;
        let mut w = Writer::new(gi.get_mut(tbs_len..).ok_or(Error::Capacity)?);
        w.write_vec_varint(&signature)?;
        let gi_len = tbs_len.checked_add(w.finish()?).ok_or(Error::Capacity)?;

        // encrypted_group_info.
        let ws = welcome_secret(secrets.joiner.expose(), &Secret32::zeroed())?;
        let (wkey, wnonce) = welcome_key_nonce(&ws)?;
        let egi_len = gi_len.checked_add(16).ok_or(Error::Capacity)?;
        let egi = gi.get_mut(..egi_len).ok_or(Error::Capacity)?;
        let (body, tag_out) = egi.split_at_mut_checked(gi_len).ok_or(Error::Capacity)?;
        let t = ChaChaPoly::seal_detached(&wkey, &wnonce, &[], body)?;
        tag_out.copy_from_slice(&t);
        let egi: &[u8] = egi;

        // GroupSecrets: joiner_secret<V>, no path secret, no PSKs.
        let mut gs = [0u8; NH + 3];
        let mut w = Writer::new(&mut gs);
        w.write_vec_varint(secrets.joiner.expose())?;
        w.write_u8(0)?;
        w.write_vec_varint(&[])?;
        let gs_len = w.finish()?;
        let ctx_buf = take(&mut rest, egi_len.saturating_add(64))?;

        // Each EncryptedGroupSecrets: new_member<V>, kem_output<V>,
        // ciphertext<V> (the GroupSecrets and the AEAD tag).
        let ct_len = gs_len.checked_add(16).ok_or(Error::Capacity)?;
        let entry_len = ct_len.checked_add(2 * (1 + 32) + 1).ok_or(Error::Capacity)?;
        let secrets_len = entry_len.checked_mul(key_packages.len()).ok_or(Error::Capacity)?;
        let mut w = Writer::new(out);
        w.write_u16(MLS10)?;
        w.write_u16(WireFormat::Welcome.to_u16())?;
        w.write_u16(crate::crypto::CIPHERSUITE)?;
        w.write_varint(u32::try_from(secrets_len).map_err(|_| Error::Capacity)?)?;
        let mut pt = gs;
        let sealed = (|| {
            for kp in key_packages {
                pt = gs;
                let buf = pt.get_mut(..gs_len).ok_or(Error::Capacity)?;
                let (kem_output, t) = encrypt_with_label(kp.init_key, b"Welcome", egi, buf, ctx_buf, rng)?;
                w.write_vec_varint(&kp.reference()?)?;
                w.write_vec_varint(&kem_output)?;
                w.write_varint(u32::try_from(ct_len).map_err(|_| Error::Capacity)?)?;
                w.write_bytes(buf)?;
                w.write_bytes(&t)?;
            }
            w.write_vec_varint(egi)?;
            Ok::<(), Error>(())
        })();
        gs.fill(0);
        pt.fill(0);
        sealed?;
        Ok(w.finish()?)
    }
}

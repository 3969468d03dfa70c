//! The agent's MLS groups: KeyPackages, creating a group, commits with the
//! pending-commit discipline, Welcomes, application messages and their
//! policy check (see [`crate::group`] for the design).

use super::{Agent, AuthFailure, Delivery, Event, Received, Transmit, add as sum};
use crate::envelope::{ChannelKind, Envelope, HEADER_LEN, SessionId, write_header};
use crate::error::Error;
use crate::group::{
    GroupId, GroupInfo, KEY_PACKAGE_LIFETIME_SECS, MAX_GROUP_CHANGES, MAX_KEY_PACKAGE_LEN, MLS_MEMBERS,
    MlsGroup, OUTBOX_BYTES, Outgoing, OwnKeyPackage, PeerKeyPackage, Pending, Release, SEAL_SCRATCH_LEN,
    WELCOME_AT, claimed_peer,
};
use crate::peer::PeerId;
use crate::persist::{self, KeyPackageState, RecordId};
use crate::policy::{DenyReason, MessageKind};
use crate::route::{Channel, Reason, Route};
use securemesh_core::codec::Reader;
use securemesh_core::crypto::{Hash, Sha256};
use securemesh_core::{CryptoRng, UnixTime};
use securemesh_mls_lite::framing::ContentType;
use securemesh_mls_lite::key_package::{KeyPackageParams, create_key_package};
use securemesh_mls_lite::messages::KeyPackage;
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::CommitOptions;
use securemesh_mls_lite::tree::node::LeafNode;
use securemesh_mls_lite::{CommitEvent, JoinKeys, ProposalCache, PskStore};

/// Bytes an MLS application message adds to `kind | payload` at most
/// (PrivateMessage framing with our 32-byte authenticated data, encrypted
/// sender data, the Ed25519 signature and the AEAD tag).
const GROUP_MESSAGE_OVERHEAD: usize = 192;

/// Scratch for verifying a KeyPackage (twice its size plus 100).
const KEY_PACKAGE_SCRATCH: usize = 2 * MAX_KEY_PACKAGE_LEN + 100;

/// The members of a group, by their claimed peer ids.
struct Roster {
    peers: [PeerId; MLS_MEMBERS],
    len: usize,
}

impl Roster {
    fn of(group: &MlsGroup) -> Self {
        let mut r = Roster { peers: [PeerId([0; 32]); MLS_MEMBERS], len: 0 };
        for (_, leaf) in group.members() {
            if let (Some(p), Some(slot)) = (claimed_peer(&leaf), r.peers.get_mut(r.len)) {
                *slot = p;
                r.len = r.len.saturating_add(1);
            }
        }
        r
    }

    fn as_slice(&self) -> &[PeerId] {
        self.peers.get(..self.len).unwrap_or_default()
    }

    fn contains(&self, p: &PeerId) -> bool {
        self.as_slice().contains(p)
    }
}

/// The members' identities by leaf index: the credential's claimed peer
/// id and the signature key, to tell the leaves a commit adds or changes.
struct Leaves {
    leaves: [Option<(PeerId, [u8; 32])>; MLS_MEMBERS],
}

impl Leaves {
    fn of(group: &MlsGroup) -> Self {
        let mut l = Leaves { leaves: [None; MLS_MEMBERS] };
        for (i, leaf) in group.members() {
            let at = usize::try_from(i).ok().and_then(|i| l.leaves.get_mut(i));
            if let (Some(at), Some(p)) = (at, claimed_peer(&leaf)) {
                *at = Some((p, *leaf.signature_key));
            }
        }
        l
    }

    /// Whether leaf `i` held `leaf`'s identity before.
    fn holds(&self, i: u32, leaf: &LeafNode<'_>) -> bool {
        let had = usize::try_from(i).ok().and_then(|i| self.leaves.get(i)).copied().flatten();
        had.is_some() && had == claimed_peer(leaf).map(|p| (p, *leaf.signature_key))
    }
}

impl<
    const PEERS: usize,
    const SESSIONS: usize,
    const QUEUE: usize,
    const BYTES: usize,
    const PREKEYS: usize,
    const GROUPS: usize,
> Agent<PEERS, SESSIONS, QUEUE, BYTES, PREKEYS, GROUPS>
{
    /// Largest payload [`send`](Self::send) takes for a group.
    pub const MAX_GROUP_PAYLOAD: usize = {
        let a = BYTES.saturating_sub(HEADER_LEN + GROUP_MESSAGE_OVERHEAD + 1);
        let b = SEAL_SCRATCH_LEN - 512;
        if a < b { a } else { b }
    };

    /// Largest sealed group record.
    pub const MAX_GROUP_RECORD_LEN: usize = persist::GROUP_RECORD;
    /// Largest sealed KeyPackage record.
    pub const MAX_KEY_PACKAGE_RECORD_LEN: usize = persist::KEY_PACKAGE_RECORD;

    /// Bytes the `out` buffer of [`handle_input`](Self::handle_input)
    /// needs for an MLS envelope of `envelope_len` bytes: MLS processing
    /// works in it (commit processing, Welcome join, decryption), so it
    /// needs more than the plaintext; a commit also keeps the group's
    /// current state there until its members' identities are checked.
    /// Enough for every envelope kind.
    pub const fn input_buffer_len(envelope_len: usize) -> usize {
        let commit = MlsGroup::commit_scratch_len(envelope_len).saturating_add(persist::GROUP_STATE_LEN);
        let welcome = MlsGroup::scratch_len(envelope_len);
        if commit > welcome { commit } else { welcome }
    }

    /// Make a KeyPackage for others to add this agent to their groups:
    /// its credential is our peer id, it is signed with our identity's
    /// Ed25519 key, valid from an hour before `now` for
    /// [`KEY_PACKAGE_LIFETIME_SECS`]. The private keys stay in one of the
    /// agent's [`KEY_PACKAGE_SLOTS`](crate::group::KEY_PACKAGE_SLOTS)
    /// slots (persisted) until a Welcome uses it; the KeyPackage is
    /// written to `out` ([`MAX_KEY_PACKAGE_LEN`] bytes are enough) for the
    /// host to publish. Every slot taken: [`Error::KeyPackagesFull`]. On
    /// error nothing changed.
    pub fn publish_key_package<R: CryptoRng + ?Sized>(
        &mut self,
        now: UnixTime,
        out: &mut [u8],
        rng: &mut R,
    ) -> Result<usize, Error> {
        if out.len() < MAX_KEY_PACKAGE_LEN {
            return Err(Error::BufferTooSmall { needed: MAX_KEY_PACKAGE_LEN });
        }
        let slot = self.own_key_packages.iter().position(Option::is_none).ok_or(Error::KeyPackagesFull)?;
        let params = KeyPackageParams {
            identity: &self.id.0,
            not_before: now.0.saturating_sub(3600),
            not_after: now.0.saturating_add(KEY_PACKAGE_LIFETIME_SECS),
            last_resort: false,
        };
        let mut bytes = [0u8; MAX_KEY_PACKAGE_LEN];
        let mut scratch = [0u8; 2 * MAX_KEY_PACKAGE_LEN];
        let made = create_key_package(&params, self.identity.signing_seed(), rng, &mut bytes, &mut scratch);
        scratch.fill(0);
        let (len, secrets) = made?;
        let kp = bytes.get(..len).ok_or(Error::BufferTooSmall { needed: len })?;
        out.get_mut(..len).ok_or(Error::BufferTooSmall { needed: len })?.copy_from_slice(kp);
        let own = OwnKeyPackage {
            bytes,
            len,
            init_priv: secrets.init_priv.duplicate(),
            encryption_priv: secrets.encryption_priv.duplicate(),
        };
        if let Some(s) = self.own_key_packages.get_mut(slot) {
            *s = Some(own);
        }
        self.mark_key_packages();
        Ok(len)
    }

    /// Our KeyPackages waiting for a Welcome.
    pub fn key_packages_available(&self) -> usize {
        self.own_key_packages.iter().flatten().count()
    }

    /// Learn a peer's KeyPackage (its encoding, as
    /// [`publish_key_package`](Self::publish_key_package) wrote it), to
    /// add the peer to a group later. Accepted only if it verifies (both
    /// signatures, `init_key` distinct from the leaf key), holds at `now`,
    /// and its credential is the peer id of a directory entry whose
    /// identity is known and whose Ed25519 key is the KeyPackage's
    /// signature key ([`Error::KeyPackageIdentity`] otherwise,
    /// [`Error::UnknownPeer`] for a peer not in the directory). It
    /// replaces an earlier one of that peer; returns the peer. On error
    /// nothing changed.
    pub fn set_peer_key_package(&mut self, key_package: &[u8], now: UnixTime) -> Result<PeerId, Error> {
        if key_package.len() > MAX_KEY_PACKAGE_LEN {
            return Err(Error::Mls(securemesh_mls_lite::Error::Capacity));
        }
        let kp = KeyPackage::from_bytes(key_package)?;
        let mut scratch = [0u8; KEY_PACKAGE_SCRATCH];
        kp.validate(now.0, &mut scratch)?;
        let peer = claimed_peer(&kp.leaf_node).ok_or(Error::KeyPackageIdentity)?;
        if peer == self.id {
            return Err(Error::KeyPackageIdentity);
        }
        let identity = self.directory.get(&peer).ok_or(Error::UnknownPeer)?.identity();
        if identity.map(|i| i.sign_public()) != Some(kp.leaf_node.signature_key) {
            return Err(Error::KeyPackageIdentity);
        }
        let slot = self
            .peer_key_packages
            .iter()
            .position(|k| k.is_some_and(|k| k.peer == peer))
            .or_else(|| self.peer_key_packages.iter().position(Option::is_none))
            .ok_or(Error::KeyPackagesFull)?;
        let mut bytes = [0u8; MAX_KEY_PACKAGE_LEN];
        bytes.get_mut(..key_package.len()).ok_or(Error::KeyPackagesFull)?.copy_from_slice(key_package);
        if let Some(s) = self.peer_key_packages.get_mut(slot) {
            *s = Some(PeerKeyPackage { peer, bytes, len: key_package.len() });
        }
        self.mark_key_packages();
        Ok(peer)
    }

    /// Whether a KeyPackage of `peer` is held (to add it to a group).
    pub fn has_peer_key_package(&self, peer: &PeerId) -> bool {
        self.peer_key_packages.iter().flatten().any(|k| k.peer == *peer)
    }

    /// The groups the agent is a member of.
    pub fn groups(&self) -> impl Iterator<Item = GroupInfo> + '_ {
        self.groups.iter().filter(|g| g.is_used()).map(|g| GroupInfo {
            id: g.id,
            epoch: g.group.epoch(),
            members: u32::try_from(g.group.members().count()).unwrap_or(u32::MAX),
            commit_pending: g.pending.is_some(),
        })
    }

    /// The members of `group` (the agent included) by the peer ids their
    /// credentials claim, in leaf order; none for a group the agent is not
    /// a member of. What the delivery service fans
    /// [`Delivery::Group`] envelopes out to.
    pub fn group_members(&self, group: GroupId) -> impl Iterator<Item = PeerId> + '_ {
        self.groups
            .iter()
            .filter(move |g| g.is_used() && g.id == group)
            .flat_map(|g| g.group.members().filter_map(|(_, leaf)| claimed_peer(&leaf)))
    }

    /// The epoch authenticator of `group` (compare it out of band: equal
    /// values mean the same group state).
    pub fn group_epoch_authenticator(&self, group: GroupId) -> Result<[u8; 32], Error> {
        let g = self.group_slot(group).and_then(|i| self.groups.get(i)).ok_or(Error::UnknownGroup)?;
        Ok(*g.group.epoch_authenticator().expose())
    }

    fn group_slot(&self, group: GroupId) -> Option<usize> {
        self.groups.iter().position(|g| g.is_used() && g.id == group)
    }

    /// Create a group with this agent as its only member (epoch 0, a fresh
    /// random [`GroupId`]); [`Event::GroupJoined`]. Add members with
    /// [`add_members`](Self::add_members). On error nothing changed.
    pub fn create_group<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> Result<GroupId, Error> {
        let i = self.groups.iter().position(|g| !g.is_used()).ok_or(Error::GroupTableFull)?;
        let id = loop {
            let id = GroupId(rng.next_u64());
            if self.group_slot(id).is_none() {
                break id;
            }
        };
        // The creator's leaf comes from a KeyPackage made for the purpose.
        let params =
            KeyPackageParams { identity: &self.id.0, not_before: 0, not_after: u64::MAX, last_resort: false };
        let mut bytes = [0u8; MAX_KEY_PACKAGE_LEN];
        let mut scratch = [0u8; 2 * MAX_KEY_PACKAGE_LEN];
        let made = create_key_package(&params, self.identity.signing_seed(), rng, &mut bytes, &mut scratch);
        scratch.fill(0);
        let (len, secrets) = made?;
        let keys = JoinKeys {
            key_package: KeyPackage::from_bytes(bytes.get(..len).unwrap_or_default())?,
            init_priv: &secrets.init_priv,
            encryption_priv: &secrets.encryption_priv,
            signature_priv: self.identity.signing_seed(),
        };
        let slot = self.groups.get_mut(i).ok_or(Error::GroupTableFull)?;
        slot.group.create_into(&id.to_bytes(), &keys, &[], rng)?;
        slot.id = id;
        self.mark_group(i);
        self.events.push(Event::GroupJoined { group: id, epoch: 0, members: 1 });
        Ok(id)
    }

    /// Add `peers` to `group` (their KeyPackages must have been learned,
    /// [`set_peer_key_package`](Self::set_peer_key_package)): a commit,
    /// pending until the delivery order confirms it. See
    /// [`commit_members`](Self::commit_members).
    pub fn add_members<R: CryptoRng + ?Sized>(
        &mut self,
        group: GroupId,
        peers: &[PeerId],
        rng: &mut R,
        scratch: &mut [u8],
    ) -> Result<u64, Error> {
        self.commit_members(group, peers, &[], rng, scratch)
    }

    /// Remove `peers` from `group`: a commit, pending until the delivery
    /// order confirms it. See [`commit_members`](Self::commit_members).
    pub fn remove_members<R: CryptoRng + ?Sized>(
        &mut self,
        group: GroupId,
        peers: &[PeerId],
        rng: &mut R,
        scratch: &mut [u8],
    ) -> Result<u64, Error> {
        self.commit_members(group, &[], peers, rng, scratch)
    }

    /// Commit to `group` the addition of `add` (by their learned
    /// KeyPackages, each used once) and the removal of `remove` (at most
    /// [`MAX_GROUP_CHANGES`] together; none at all refreshes our leaf and
    /// path keys: post-compromise security). The commit (a PrivateMessage
    /// whose authenticated data is our peer id, with an UpdatePath where
    /// required) is queued for the group's fan-out ([`Delivery::Group`]);
    /// the next epoch is staged and returned, but the group stays in its
    /// epoch until the commit comes back through
    /// [`handle_input`](Self::handle_input) in the delivery order. Then it
    /// is merged and the Welcome (with the ratchet tree) is released to
    /// each added peer ([`Delivery::Mailbox`]); if another member's commit
    /// of this epoch comes first, ours is discarded
    /// ([`Event::CommitDiscarded`]). `scratch`:
    /// [`COMMIT_SCRATCH_LEN`](crate::group::COMMIT_SCRATCH_LEN) bytes are
    /// enough. On error nothing changed.
    pub fn commit_members<R: CryptoRng + ?Sized>(
        &mut self,
        group: GroupId,
        add: &[PeerId],
        remove: &[PeerId],
        rng: &mut R,
        scratch: &mut [u8],
    ) -> Result<u64, Error> {
        if add.len().saturating_add(remove.len()) > MAX_GROUP_CHANGES {
            return Err(Error::TooManyChanges);
        }
        let gi = self.group_slot(group).ok_or(Error::UnknownGroup)?;
        let sender = self.id;
        let kps_src = &self.peer_key_packages;
        let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        if slot.pending.is_some() {
            return Err(Error::CommitPending);
        }
        if slot.commit_out.is_some() || slot.welcome_out.is_some() {
            return Err(Error::QueueFull);
        }
        let roster = Roster::of(&slot.group);
        let mut kps: heapless::Vec<KeyPackage<'_>, MAX_GROUP_CHANGES> = heapless::Vec::new();
        let mut joiners = [PeerId([0; 32]); MAX_GROUP_CHANGES];
        for (n, p) in add.iter().enumerate() {
            if roster.contains(p) || add.get(..n).is_some_and(|a| a.contains(p)) {
                return Err(Error::AlreadyMember);
            }
            let stored = kps_src.iter().flatten().find(|k| k.peer == *p).ok_or(Error::NoKeyPackage)?;
            kps.push(KeyPackage::from_bytes(stored.as_bytes())?).map_err(|_| Error::TooManyChanges)?;
            if let Some(j) = joiners.get_mut(n) {
                *j = *p;
            }
        }
        let mut leaves = [0u32; MAX_GROUP_CHANGES];
        for (n, p) in remove.iter().enumerate() {
            let leaf = slot
                .group
                .members()
                .find(|(i, leaf)| *i != slot.group.own_leaf() && claimed_peer(leaf) == Some(*p))
                .map(|(i, _)| i)
                .ok_or(Error::NotAMember)?;
            if leaves.get(..n).is_some_and(|l| l.contains(&leaf)) {
                return Err(Error::NotAMember);
            }
            if let Some(l) = leaves.get_mut(n) {
                *l = leaf;
            }
        }
        let options = CommitOptions { authenticated_data: &sender.0, ..CommitOptions::default() };
        let (commit_buf, welcome_buf) = slot.buf.split_at_mut(WELCOME_AT);
        let commit_body = commit_buf.get_mut(HEADER_LEN..).unwrap_or_default();
        let welcome_body = welcome_buf.get_mut(HEADER_LEN..).unwrap_or_default();
        let out = slot.group.commit(
            &kps,
            leaves.get(..remove.len()).unwrap_or_default(),
            &options,
            rng,
            &mut slot.next,
            commit_body,
            welcome_body,
            scratch,
        );
        scratch.fill(0);
        drop(kps);
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                slot.buf.fill(0);
                return Err(e.into());
            }
        };
        let commit_msg = slot.buf.get(HEADER_LEN..sum(HEADER_LEN, out.commit_len)?).unwrap_or_default();
        let hash = Sha256::digest(&[commit_msg]);
        // Lengths bounded by the buffer (< 65536): the headers fit.
        write_header(&mut slot.buf, ChannelKind::MlsMessage, &sender, SessionId(group.0), out.commit_len)?;
        let welcome_len = if out.welcome_len > 0 {
            let w = slot.buf.get_mut(WELCOME_AT..).unwrap_or_default();
            write_header(w, ChannelKind::MlsWelcome, &sender, SessionId(group.0), out.welcome_len)?;
            sum(HEADER_LEN, out.welcome_len)?
        } else {
            0
        };
        slot.pending = Some(Pending { hash, joiners, joiner_count: add.len(), welcome_len });
        let len = sum(HEADER_LEN, out.commit_len)?;
        let seq = self.take_seq();
        if let Some(slot) = self.groups.get_mut(gi) {
            slot.commit_out = Some(Outgoing { seq, len });
        }
        // The KeyPackages are spent.
        for k in self.peer_key_packages.iter_mut() {
            if k.is_some_and(|k| add.contains(&k.peer)) {
                *k = None;
            }
        }
        if !add.is_empty() {
            self.mark_key_packages();
        }
        self.mark_group(gi);
        self.metrics.group_commits_sent = self.metrics.group_commits_sent.saturating_add(1);
        Ok(out.epoch)
    }

    /// Give up our pending commit in `group`: its Welcome is dropped and
    /// the group stays in its epoch. If the commit was sent and is ordered
    /// later, the group can no longer follow it: discard only a commit
    /// known not to have been sent. (A restart needs none of this: the
    /// group record keeps the commit envelope with the pending state, and
    /// a restored agent queues it again; a second copy is harmless, the
    /// delivery order admits one commit per epoch.)
    pub fn discard_pending_commit(&mut self, group: GroupId) -> Result<(), Error> {
        let gi = self.group_slot(group).ok_or(Error::UnknownGroup)?;
        let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        if slot.pending.is_none() {
            return Ok(());
        }
        slot.drop_pending();
        self.mark_group(gi);
        Ok(())
    }

    /// An application message to `group`.
    pub(super) fn send_group<R: CryptoRng + ?Sized>(
        &mut self,
        group: GroupId,
        kind: MessageKind,
        payload: &[u8],
        rng: &mut R,
    ) -> Result<Route, Error> {
        let gi = self.group_slot(group).ok_or(Error::UnknownGroup)?;
        // A message of this epoch sent after our commit would be ordered
        // after it, and nobody could read it any more.
        if self.groups.get(gi).is_some_and(|g| g.pending.is_some()) {
            return Err(Error::CommitPending);
        }
        if payload.len() > Self::MAX_GROUP_PAYLOAD {
            return Err(Error::PayloadTooLong { max: Self::MAX_GROUP_PAYLOAD });
        }
        let [qi] = self.free_slots::<1>()?;
        let plain = sum(payload.len(), 1)?;
        let staged =
            self.scratch.get_mut(..plain).ok_or(Error::PayloadTooLong { max: Self::MAX_GROUP_PAYLOAD })?;
        let (k, rest) = staged.split_first_mut().ok_or(Error::PayloadTooLong { max: 0 })?;
        *k = kind.0;
        rest.copy_from_slice(payload);
        let sender = self.id;
        let mut sign = [0u8; SEAL_SCRATCH_LEN];
        let sealed = match (self.groups.get_mut(gi), self.queue.get_mut(qi)) {
            (Some(g), Some(q)) => {
                let data = self.scratch.get(..plain).unwrap_or_default();
                let body = q.buf.get_mut(HEADER_LEN..).unwrap_or_default();
                g.group.seal_application(data, &sender.0, 0, rng, body, &mut sign).map_err(|e| match e {
                    securemesh_mls_lite::Error::BufferTooSmall { .. } => {
                        Error::PayloadTooLong { max: Self::MAX_GROUP_PAYLOAD }
                    }
                    e => Error::Mls(e),
                })
            }
            _ => Err(Error::UnknownGroup),
        };
        sign.fill(0);
        self.scratch.fill(0);
        let n = match sealed {
            Ok(n) => n,
            Err(e) => {
                if let Some(q) = self.queue.get_mut(qi) {
                    q.clear();
                }
                return Err(e);
            }
        };
        if let Some(q) = self.queue.get_mut(qi) {
            write_header(&mut q.buf, ChannelKind::MlsMessage, &sender, SessionId(group.0), n)?;
        }
        self.commit_slot(qi, sender, Delivery::Group(group), sum(HEADER_LEN, n)?);
        self.mark_group(gi);
        self.counters.sent = self.counters.sent.saturating_add(1);
        self.metrics.mls.sent = self.metrics.mls.sent.saturating_add(1);
        Ok(Route { channel: Channel::Mls, reason: Reason::Group })
    }

    /// Whether `leaf` is bound to `peer`: its credential names `peer`, and
    /// the directory knows `peer`'s identity with the leaf's signature key.
    fn leaf_bound(&self, leaf: &LeafNode<'_>, peer: &PeerId) -> bool {
        claimed_peer(leaf) == Some(*peer)
            && self
                .directory
                .get(peer)
                .and_then(|p| p.identity())
                .is_some_and(|i| i.sign_public() == leaf.signature_key)
    }

    /// An MLS message (commit or application message) of a group.
    pub(super) fn handle_group_message<R: CryptoRng + ?Sized>(
        &mut self,
        env: &Envelope<'_>,
        out: &mut [u8],
        _rng: &mut R,
    ) -> Result<Option<Received>, Error> {
        let group = GroupId(env.session.0);
        let gi = self.group_slot(group).ok_or(Error::UnknownGroup)?;
        let msg = MlsMessage::from_bytes(env.body)?;
        let MlsMessageBody::PrivateMessage(pm) = msg.body else {
            return Err(Error::Mls(securemesh_mls_lite::Error::Unsupported));
        };
        if pm.group_id != group.to_bytes() {
            return Err(Error::ChannelMismatch);
        }
        let slot = self.groups.get(gi).ok_or(Error::UnknownGroup)?;
        if env.sender == self.id {
            // Our own message, back from the fan-out: a commit of ours is
            // confirmed by it; anything else needs nothing.
            let confirms = pm.content_type == ContentType::Commit
                && slot.pending.is_some_and(|p| p.hash == Sha256::digest(&[env.body]));
            if confirms {
                self.merge_own_commit(gi)?;
            }
            return Ok(None);
        }
        if pm.authenticated_data != env.sender.0 {
            return Err(Error::SenderMismatch);
        }
        let current = slot.group.epoch();
        if pm.epoch != current {
            return Err(Error::GroupEpoch { message: pm.epoch, current });
        }
        match pm.content_type {
            ContentType::Commit => self.follow_commit(gi, &env.sender, env.body, out).map(|()| None),
            ContentType::Application => self.open_group_message(gi, env, out),
            ContentType::Proposal => Err(Error::Mls(securemesh_mls_lite::Error::Unsupported)),
        }
    }

    /// Our pending commit came back in the delivery order: merge it and
    /// release its Welcome.
    fn merge_own_commit(&mut self, gi: usize) -> Result<(), Error> {
        let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        let pending = slot.pending.ok_or(Error::UnknownGroup)?;
        let before = Roster::of(&slot.group);
        slot.group.merge_pending_commit(&mut slot.next)?;
        // Only once merged: a failed merge leaves the sequence as it was.
        let seq = self.take_seq();
        let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        slot.pending = None;
        if pending.welcome_len > 0 && pending.joiner_count > 0 {
            slot.welcome_out = Some(Release {
                seq,
                len: pending.welcome_len,
                joiners: pending.joiners,
                left: pending.joiner_count,
            });
        } else {
            slot.buf.fill(0);
        }
        self.entered_epoch(gi, &before);
        Ok(())
    }

    /// Report the epoch `groups[gi]` entered and its member changes
    /// against `before`; mark its record.
    fn entered_epoch(&mut self, gi: usize, before: &Roster) {
        self.mark_group(gi);
        let Some(slot) = self.groups.get(gi) else { return };
        let (group, epoch) = (slot.id, slot.group.epoch());
        let after = Roster::of(&slot.group);
        self.metrics.group_epoch_changes = self.metrics.group_epoch_changes.saturating_add(1);
        self.events.push(Event::EpochChanged { group, epoch });
        for p in before.as_slice().iter().filter(|p| !after.contains(p)) {
            self.events.push(Event::MemberRemoved { group, peer: *p });
        }
        for p in after.as_slice().iter().filter(|p| !before.contains(p)) {
            self.events.push(Event::MemberAdded { group, peer: *p });
        }
    }

    /// Another member's commit of the current epoch (authenticated by
    /// MLS), sent by `sender`: follow it. If one of ours is pending, it
    /// lost: the received commit is computed in the slot's spare, so a
    /// refused one leaves ours in place.
    ///
    /// The identity binding is checked before the new epoch is adopted:
    /// the committer's leaf (from the decrypted sender data) must be bound
    /// to `sender`, and every leaf the commit adds or changes (a leaf whose
    /// credential or signature key differs from the old one at its index)
    /// must be bound to the peer id its credential claims
    /// ([`leaf_bound`](Self::leaf_bound)). A peer the directory does not
    /// know (or knows without an identity) is refused like a wrong key:
    /// the group cannot tell an impostor from a stranger, and the host
    /// fans group envelopes out to claimed peer ids. A refused commit is
    /// [`Error::UnboundMember`] with the group exactly as before (the old
    /// state is kept in `out` behind the commit scratch and put back).
    fn follow_commit(
        &mut self,
        gi: usize,
        sender: &PeerId,
        message: &[u8],
        out: &mut [u8],
    ) -> Result<(), Error> {
        let needed = MlsGroup::commit_scratch_len(message.len());
        let total = sum(needed, persist::GROUP_STATE_LEN)?;
        let (scratch, saved) =
            out.get_mut(..total).ok_or(Error::BufferTooSmall { needed: total })?.split_at_mut(needed);
        let slot = self.groups.get(gi).ok_or(Error::UnknownGroup)?;
        // The committer: its leaf in the current epoch must be the sender's.
        let committer = match MlsMessage::from_bytes(message)?.body {
            MlsMessageBody::PrivateMessage(pm) => {
                pm.sender_data(&slot.group.secrets().sender_data)?.leaf_index
            }
            _ => return Err(Error::Mls(securemesh_mls_lite::Error::Unsupported)),
        };
        if !slot.group.tree().leaf(committer).is_some_and(|leaf| self.leaf_bound(&leaf, sender)) {
            return Err(Error::UnboundMember);
        }
        let old = Leaves::of(&slot.group);
        let saved_len = match persist::save_group_state(&slot.group, saved) {
            Ok(n) => n,
            Err(e) => {
                saved.fill(0);
                return Err(e.into());
            }
        };
        let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        let before = Roster::of(&slot.group);
        let had_pending = slot.pending.is_some();
        let mut cache = ProposalCache::<0, 0>::new();
        let psks = PskStore::default();
        let spare = if had_pending { &mut slot.spare } else { &mut slot.next };
        let result = slot.group.process_commit(message, &mut cache, &psks, spare, scratch);
        scratch.fill(0);
        let result = match result {
            Ok(CommitEvent::NewEpoch { epoch }) => {
                let bound = self.groups.get(gi).is_some_and(|g| {
                    g.group.members().all(|(i, leaf)| {
                        i == g.group.own_leaf() || old.holds(i, &leaf) || self.bound_to_claim(&leaf)
                    })
                });
                let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
                if bound {
                    Ok(CommitEvent::NewEpoch { epoch })
                } else {
                    // Put the old epoch back, exactly as it was saved.
                    slot.group.clear();
                    let restored = persist::load_group_state(
                        saved.get(..saved_len).unwrap_or_default(),
                        &mut slot.group,
                    );
                    saved.fill(0);
                    restored?;
                    return Err(Error::UnboundMember);
                }
            }
            other => other.map_err(Error::from),
        };
        saved.fill(0);
        let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        let (group, old_epoch) = (slot.id, slot.group.epoch());
        match result? {
            CommitEvent::Removed => {
                slot.clear();
                self.mark_group(gi);
                self.metrics.group_epoch_changes = self.metrics.group_epoch_changes.saturating_add(1);
                self.events.push(Event::GroupLeft { group });
            }
            CommitEvent::NewEpoch { .. } => {
                if had_pending {
                    slot.drop_pending();
                    self.metrics.group_commits_discarded =
                        self.metrics.group_commits_discarded.saturating_add(1);
                    self.events.push(Event::CommitDiscarded { group, epoch: old_epoch.saturating_sub(1) });
                }
                self.entered_epoch(gi, &before);
            }
        }
        Ok(())
    }

    /// Whether `leaf` is bound to the peer id its credential claims
    /// ([`leaf_bound`](Self::leaf_bound)); a leaf claiming our own peer id
    /// is not (ours is checked by its index).
    fn bound_to_claim(&self, leaf: &LeafNode<'_>) -> bool {
        claimed_peer(leaf).is_some_and(|p| p != self.id && self.leaf_bound(leaf, &p))
    }

    /// An application message: open it, check the sender's binding and
    /// the policy, deliver.
    fn open_group_message(
        &mut self,
        gi: usize,
        env: &Envelope<'_>,
        out: &mut [u8],
    ) -> Result<Option<Received>, Error> {
        let needed = MlsGroup::application_scratch_len(env.body.len());
        if out.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let slot = self.groups.get_mut(gi).ok_or(Error::UnknownGroup)?;
        let group = slot.id;
        let (sender, len) = {
            let opened = slot.group.open_application(env.body, out)?;
            (opened.sender, opened.data.len())
        };
        // The data follows its varint length at the start of `out`.
        let start = {
            let mut r = Reader::new(out.get(..env.body.len()).unwrap_or_default());
            let _ = r.read_vec_varint();
            env.body.len().saturating_sub(r.remaining()).saturating_sub(len)
        };
        self.mark_group(gi);
        let bound = self
            .groups
            .get(gi)
            .and_then(|g| g.group.tree().leaf(sender))
            .is_some_and(|leaf| self.leaf_bound(&leaf, &env.sender));
        if !bound {
            out.get_mut(..needed).unwrap_or_default().fill(0);
            self.auth_failed(env.sender, AuthFailure::IdentityMismatch, ChannelKind::MlsMessage);
            return Ok(None);
        }
        if !self.policy.is_known(&env.sender) {
            out.get_mut(..needed).unwrap_or_default().fill(0);
            self.deny(env.sender, DenyReason::UnknownPeer, ChannelKind::MlsMessage);
            return Ok(None);
        }
        out.copy_within(start..start.saturating_add(len), 0);
        out.get_mut(len..needed).unwrap_or_default().fill(0);
        Ok(self
            .deliver(env.sender, ChannelKind::MlsMessage, out, len)
            .map(|r| Received { group: Some(group), ..r }))
    }

    /// A Welcome: join the group with the KeyPackage it was made for.
    pub(super) fn handle_welcome(&mut self, env: &Envelope<'_>, out: &mut [u8]) -> Result<(), Error> {
        let msg = MlsMessage::from_bytes(env.body)?;
        let MlsMessageBody::Welcome(welcome) = msg.body else {
            return Err(Error::Mls(securemesh_mls_lite::Error::Malformed));
        };
        let group = GroupId(env.session.0);
        let mut found = None;
        for (k, own) in self.own_key_packages.iter().enumerate() {
            let Some(own) = own else { continue };
            let reference = KeyPackage::from_bytes(own.as_bytes())?.reference()?;
            if welcome.secrets_for(&reference)?.is_some() {
                found = Some(k);
                break;
            }
        }
        let k = found.ok_or(Error::NoKeyPackage)?;
        if self.group_slot(group).is_some() {
            return Err(Error::GroupExists);
        }
        if !self.may_open(&env.sender) {
            self.deny(env.sender, DenyReason::UnknownPeer, ChannelKind::MlsWelcome);
            return Ok(());
        }
        let gi = self.groups.iter().position(|g| !g.is_used()).ok_or(Error::GroupTableFull)?;
        let needed = MlsGroup::scratch_len(env.body.len());
        let scratch = out.get_mut(..needed).ok_or(Error::BufferTooSmall { needed })?;
        let own = self.own_key_packages.get(k).and_then(Option::as_ref).ok_or(Error::NoKeyPackage)?;
        let keys = JoinKeys {
            key_package: KeyPackage::from_bytes(own.as_bytes())?,
            init_priv: &own.init_priv,
            encryption_priv: &own.encryption_priv,
            signature_priv: self.identity.signing_seed(),
        };
        let slot = self.groups.get_mut(gi).ok_or(Error::GroupTableFull)?;
        let joined = slot.group.join_into(&welcome, &keys, None, &[], scratch);
        scratch.fill(0);
        joined?;
        if slot.group.group_id() != group.to_bytes() {
            slot.clear();
            return Err(Error::ChannelMismatch);
        }
        // Every other member must be bound to its identity (a stranger's
        // leaf too is refused, see `follow_commit`), the inviter among
        // them.
        let roster = self.groups.get(gi).is_some_and(|g| {
            g.group.members().all(|(i, leaf)| i == g.group.own_leaf() || self.bound_to_claim(&leaf))
        });
        if !roster {
            if let Some(slot) = self.groups.get_mut(gi) {
                slot.clear();
            }
            return Err(Error::UnboundMember);
        }
        let inviter = self
            .groups
            .get(gi)
            .is_some_and(|g| g.group.members().any(|(_, leaf)| self.leaf_bound(&leaf, &env.sender)));
        if !inviter {
            if let Some(slot) = self.groups.get_mut(gi) {
                slot.clear();
            }
            self.auth_failed(env.sender, AuthFailure::IdentityMismatch, ChannelKind::MlsWelcome);
            return Ok(());
        }
        let Some(slot) = self.groups.get_mut(gi) else { return Err(Error::GroupTableFull) };
        slot.id = group;
        let (epoch, members) = (slot.group.epoch(), slot.group.members().count());
        if let Some(own) = self.own_key_packages.get_mut(k) {
            *own = None;
        }
        self.mark_key_packages();
        self.mark_group(gi);
        self.events.push(Event::GroupJoined {
            group,
            epoch,
            members: u32::try_from(members).unwrap_or(u32::MAX),
        });
        Ok(())
    }

    /// The oldest group envelope if it is older than the queue's oldest
    /// (`queued`), copied into `buf`.
    pub(super) fn poll_group_transmit(
        &mut self,
        queued: Option<u64>,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, Error> {
        let me = self.id;
        let mut best: Option<(usize, bool, u64)> = None;
        for (i, g) in self.groups.iter().enumerate() {
            let items = [g.commit_out.map(|o| (true, o.seq)), g.welcome_out.map(|w| (false, w.seq))];
            for (commit, seq) in items.into_iter().flatten() {
                if best.is_none_or(|(_, _, s)| seq < s) {
                    best = Some((i, commit, seq));
                }
            }
        }
        let Some((i, commit, seq)) = best else { return Ok(None) };
        if queued.is_some_and(|q| q < seq) {
            return Ok(None);
        }
        let Some(slot) = self.groups.get_mut(i) else { return Ok(None) };
        if commit {
            let Some(o) = slot.commit_out else { return Ok(None) };
            let src = slot.buf.get(..o.len).unwrap_or_default();
            buf.get_mut(..o.len).ok_or(Error::BufferTooSmall { needed: o.len })?.copy_from_slice(src);
            slot.commit_out = None;
            return Ok(Some(Transmit { to: me, delivery: Delivery::Group(slot.id), len: o.len }));
        }
        let Some(mut w) = slot.welcome_out else { return Ok(None) };
        let end = sum(WELCOME_AT, w.len)?.min(OUTBOX_BYTES);
        let src = slot.buf.get(WELCOME_AT..end).unwrap_or_default();
        buf.get_mut(..src.len()).ok_or(Error::BufferTooSmall { needed: src.len() })?.copy_from_slice(src);
        let len = src.len();
        let n = w.joiners.len().min(w.left);
        let to = w.joiners.get(n.saturating_sub(1)).copied().unwrap_or(me);
        w.left = w.left.saturating_sub(1);
        if w.left == 0 {
            slot.welcome_out = None;
            slot.buf.fill(0);
        } else {
            slot.welcome_out = Some(w);
        }
        // Handed out: a restart must not send it again (the record changes
        // after the transmit, so a crash in between sends it twice; the
        // joiner refuses the copy).
        self.mark_group(i);
        Ok(Some(Transmit { to, delivery: Delivery::Mailbox, len }))
    }

    /// Put the KeyPackage record back (after [`Agent::restore`]): ours
    /// must carry our credential, the peers' theirs; the agent must hold
    /// none yet.
    pub(super) fn restore_key_packages(
        &mut self,
        owner: PeerId,
        state: KeyPackageState,
    ) -> Result<(), Error> {
        if owner != self.id
            || self.own_key_packages.iter().any(Option::is_some)
            || self.peer_key_packages.iter().any(Option::is_some)
        {
            return Err(Error::WrongRecord);
        }
        for own in state.own.iter().flatten() {
            let kp = KeyPackage::from_bytes(own.as_bytes()).map_err(|_| Error::WrongRecord)?;
            if claimed_peer(&kp.leaf_node) != Some(owner)
                || kp.leaf_node.signature_key != self.identity.public().sign_public()
            {
                return Err(Error::WrongRecord);
            }
        }
        for k in state.peers.iter().flatten() {
            let kp = KeyPackage::from_bytes(k.as_bytes()).map_err(|_| Error::WrongRecord)?;
            if claimed_peer(&kp.leaf_node) != Some(k.peer) {
                return Err(Error::WrongRecord);
            }
        }
        self.own_key_packages = state.own;
        self.peer_key_packages = state.peers;
        Ok(())
    }

    /// Group slot `gi`'s record changed.
    pub(super) fn mark_group(&mut self, gi: usize) {
        if self.storage.is_none() {
            return;
        }
        let (Some(g), Ok(n)) = (self.group_records.get_mut(gi), u16::try_from(gi)) else { return };
        if let Some(generation) = g.mark() {
            self.events.push(Event::Persist { record: RecordId::Group(n), generation });
        }
    }

    /// The KeyPackage record changed.
    pub(super) fn mark_key_packages(&mut self) {
        if self.storage.is_some()
            && let Some(generation) = self.key_package_record.mark()
        {
            self.events.push(Event::Persist { record: RecordId::KeyPackages, generation });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::{Config, DefaultAgent};
    use securemesh_core::testing::TestRng;
    use securemesh_ratchet::Identity;
    use std::boxed::Box;

    /// A merge that fails takes no sequence number.
    #[test]
    fn a_failed_merge_keeps_the_sequence() {
        let mut rng = TestRng::new(0x6A35_0101);
        let mut a = Box::new(DefaultAgent::new(
            Identity::generate(&mut rng),
            Config::default(),
            &mut rng,
            UnixTime(1),
        ));
        let group = a.create_group(&mut rng).unwrap();
        let gi = a.group_slot(group).unwrap();
        // A pending commit whose next epoch is missing: the merge fails.
        a.groups[gi].pending = Some(Pending {
            hash: [1; 32],
            joiners: [PeerId([2; 32]); MAX_GROUP_CHANGES],
            joiner_count: 1,
            welcome_len: 9,
        });
        let seq = a.next_seq;
        assert!(a.merge_own_commit(gi).is_err());
        assert_eq!(a.next_seq, seq);
        assert_eq!(a.groups[gi].group.epoch(), 0);
        assert!(a.groups[gi].welcome_out.is_none());
    }
}

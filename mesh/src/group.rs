//! MLS groups in the mesh: the types and capacities of the group channel.
//!
//! An agent is a member of at most `GROUPS` groups (the last const
//! parameter of [`Agent`](crate::Agent)), each a member state of
//! `securemesh-mls-lite` ([`MlsGroup`]: RFC 9420, ciphersuite 0x0003, at
//! most [`MLS_MEMBERS`] members). What the agent adds to MLS is the mesh's
//! identity binding, its policy, its envelopes and its persistence.
//!
//! # Identity binding
//!
//! Every leaf of a mesh group carries a basic credential whose identity is
//! the member's [`PeerId`] (32 bytes), and whose signature key must be the
//! Ed25519 key of the identity that peer id names (the key the directory
//! and the Noise and ratchet channels authenticate). So:
//!
//! - [`Agent::publish_key_package`](crate::Agent::publish_key_package)
//!   makes KeyPackages signed with the agent's identity key, its private
//!   keys kept in one of [`KEY_PACKAGE_SLOTS`] fixed slots, consumed by the
//!   Welcome that uses it and persisted;
//! - [`Agent::set_peer_key_package`](crate::Agent::set_peer_key_package)
//!   accepts a peer's KeyPackage only if it verifies, holds at `now`, and
//!   its credential names a peer of the directory whose identity's Ed25519
//!   key is the KeyPackage's signature key;
//! - an application message is delivered only if the leaf that sent it
//!   (authenticated by MLS) passes the same check against the directory
//!   *at delivery*, and then the policy decides on that peer id, as for
//!   the pairwise channels ([`Event::Denied`](crate::Event::Denied)
//!   otherwise). A removed member has no leaf, so nothing of it is ever
//!   delivered; a member whose identity the directory does not know (or
//!   knows with another key) is [`Event::AuthFailed`](crate::Event::AuthFailed);
//! - a received commit is followed only if the leaf that committed it is
//!   bound to the envelope's sender and every leaf it adds or changes is
//!   bound to the peer id its credential claims, and a Welcome is taken
//!   only if every leaf of its roster is: a leaf claiming a peer the
//!   directory does not know is refused too (the host fans the group out
//!   to claimed peer ids, so an unchecked leaf would read as that peer).
//!   Refused: [`Error::UnboundMember`](crate::Error::UnboundMember), the
//!   group as it was.
//!
//! The envelope's sender field is bound too: an agent puts its peer id in
//! the `authenticated_data` of every MLS message it sends, and a receiver
//! refuses a message whose authenticated data is not the envelope's sender
//! before anything is decrypted (so a changed header changes nothing).
//!
//! # Delivery
//!
//! Group envelopes leave [`poll_transmit`](crate::Agent::poll_transmit)
//! with [`Delivery::Group`](crate::Delivery::Group): the host (or its
//! delivery service) hands them to **every** member of the group,
//! *including the sender*, in **one order for all members** (the MLS
//! delivery service's job). A Welcome goes to each new member with
//! [`Delivery::Mailbox`](crate::Delivery::Mailbox).
//!
//! # Commits: the pending-commit discipline
//!
//! [`Agent::commit_members`](crate::Agent::commit_members) (and its short
//! forms [`add_members`](crate::Agent::add_members),
//! [`remove_members`](crate::Agent::remove_members)) stages the next epoch
//! in the group's spare slot and queues the commit; the agent stays in its
//! epoch until the delivery order confirms the commit: when its own commit
//! comes back through [`handle_input`](crate::Agent::handle_input) it is
//! merged ([`Event::EpochChanged`](crate::Event::EpochChanged), members
//! added or removed) and only **then** is the Welcome released to the new
//! members (a Welcome of a commit that lost would make them join a fork).
//! If another member's commit of the same epoch arrives first, it wins: the
//! pending commit is discarded ([`Event::CommitDiscarded`](crate::Event::CommitDiscarded),
//! Welcome dropped, the KeyPackages it used are spent) and the other commit
//! is followed. One pending commit per group at a time
//! ([`Error::CommitPending`](crate::Error::CommitPending)).
//!
//! # Memory
//!
//! A group slot holds the group, a second state for the pending commit (or
//! for processing a received one), a third where a commit received while
//! one of ours is pending is computed (so a forged one cannot cost us
//! ours), and the outgoing commit and Welcome: [`GROUP_SLOT_BYTES`] bytes
//! each (three states of [`MLS_GROUP_BYTES`] and the buffer). An agent
//! without groups (`GROUPS = 0`) pays nothing for them.

//!
//! # Three agents
//!
//! Alice creates a group and adds Bob and Carol from their KeyPackages;
//! the host plays the delivery service (one order for everyone).
//!
//! ```
//! use securemesh::group::{COMMIT_SCRATCH_LEN, MAX_KEY_PACKAGE_LEN};
//! use securemesh::{Config, DefaultAgent, Delivery, Event, MessageKind, Permissions, PeerId, Role, Roles};
//! use securemesh_core::{Instant, UnixTime};
//! use securemesh_ratchet::Identity;
//! # fn main() -> Result<(), securemesh::Error> {
//! let (mut rng, now, wall) = (rand::rng(), Instant::from_millis(0), UnixTime(1_700_000_000));
//! const TASK: MessageKind = MessageKind(1);
//! let mut agents: Vec<Box<DefaultAgent>> = (0..3)
//!     .map(|_| Box::new(DefaultAgent::new(Identity::generate(&mut rng), Config::default(), &mut rng, wall)))
//!     .collect();
//! // Everyone knows everyone's identity and lets them send tasks.
//! let identities: Vec<_> = agents.iter().map(|a| *a.public_identity()).collect();
//! for a in agents.iter_mut() {
//!     a.policy_mut().define_role(Role(0), Permissions::of(&[TASK]))?;
//!     let me = a.peer_id();
//!     for id in identities.iter().filter(|id| PeerId::of(id) != me) {
//!         let p = a.add_peer_identity(id)?;
//!         a.policy_mut().grant(p, Roles::of(&[Role(0)]))?;
//!     }
//! }
//! // Bob and Carol publish KeyPackages; Alice learns them and adds both.
//! let (bob, carol) = (agents[1].peer_id(), agents[2].peer_id());
//! for i in [1, 2] {
//!     let mut kp = [0u8; MAX_KEY_PACKAGE_LEN];
//!     let n = agents[i].publish_key_package(wall, &mut kp, &mut rng)?;
//!     agents[0].set_peer_key_package(&kp[..n], wall)?;
//! }
//! let group = agents[0].create_group(&mut rng)?;
//! let mut scratch = vec![0u8; COMMIT_SCRATCH_LEN];
//! agents[0].add_members(group, &[bob, carol], &mut rng, &mut scratch)?;
//!
//! // The host's loop: a group envelope goes to every member (the sender
//! // too: that confirms its commit), anything else to its addressee.
//! let ids: Vec<PeerId> = agents.iter().map(|a| a.peer_id()).collect();
//! let mut delivered = Vec::new();
//! let mut run = |agents: &mut Vec<Box<DefaultAgent>>, rng: &mut _| -> Result<(), securemesh::Error> {
//!     let mut wire = vec![0u8; 65_536];
//!     loop {
//!         let mut queue = Vec::new();
//!         for a in agents.iter_mut() {
//!             while let Some(t) = a.poll_transmit(&mut wire)? {
//!                 let to: Vec<PeerId> = match t.delivery {
//!                     Delivery::Group(g) => a.group_members(g).collect(),
//!                     _ => vec![t.to],
//!                 };
//!                 queue.extend(to.into_iter().map(|p| (p, wire[..t.len].to_vec())));
//!             }
//!         }
//!         if queue.is_empty() { return Ok(()); }
//!         for (to, bytes) in queue {
//!             let a = &mut agents[ids.iter().position(|p| *p == to).unwrap()];
//!             let mut out = vec![0u8; DefaultAgent::input_buffer_len(bytes.len())];
//!             if let Some(r) = a.handle_input(&bytes, &mut out, now, rng)? {
//!                 delivered.push((to, r.from, out[..r.len].to_vec()));
//!             }
//!         }
//!     }
//! };
//! run(&mut agents, &mut rng)?; // the commit, confirmed; then the Welcomes
//! assert!(agents.iter().all(|a| a.groups().next().map(|g| (g.epoch, g.members)) == Some((1, 3))));
//! assert!(core::iter::from_fn(|| agents[1].poll_event()).any(|e| matches!(e, Event::GroupJoined { .. })));
//!
//! agents[1].send(&group, TASK, b"inspect pump 2", now, &mut rng)?;
//! run(&mut agents, &mut rng)?;
//! assert_eq!(delivered.len(), 2); // Alice and Carol, once each
//! assert!(delivered.iter().all(|(to, from, m)| *to != bob && *from == bob && m == b"inspect pump 2"));
//! # Ok(())
//! # }
//! ```

use crate::envelope::HEADER_LEN;
use crate::peer::PeerId;
use securemesh_mls_lite::Group;
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::key_package::key_package_len;
use securemesh_mls_lite::tree::node::{Credential, LeafNode};

/// Most members of a mesh group (leaves of its ratchet tree).
pub const MLS_MEMBERS: usize = 16;
/// Most bytes of a member's leaf node.
pub const MLS_LEAF_BYTES: usize = 256;
/// Most bytes of an MLS group id (the mesh uses the 8 bytes of [`GroupId`]).
pub const MLS_GROUP_ID_BYTES: usize = 16;
/// Most bytes of GroupContext extensions.
pub const MLS_EXTENSION_BYTES: usize = 16;

/// One member's state of one group, with the mesh's capacities.
pub type MlsGroup = Group<MLS_MEMBERS, MLS_LEAF_BYTES, MLS_GROUP_ID_BYTES, MLS_EXTENSION_BYTES>;

/// Bytes of one [`MlsGroup`] state.
pub const MLS_GROUP_BYTES: usize = core::mem::size_of::<MlsGroup>();

/// Own KeyPackages whose private keys the agent keeps (each consumed by the
/// Welcome that uses it).
pub const KEY_PACKAGE_SLOTS: usize = 4;
/// Peers' KeyPackages the agent keeps for adding them (each used once).
pub const PEER_KEY_PACKAGES: usize = 8;
/// Most bytes of a mesh KeyPackage (its credential identity is a 32-byte
/// peer id).
pub const MAX_KEY_PACKAGE_LEN: usize = key_package_len(32);
/// How long a KeyPackage the agent publishes is valid (30 days); the
/// agent's KeyPackages start one hour before `now` to allow for clock
/// skew.
pub const KEY_PACKAGE_LIFETIME_SECS: u64 = 30 * 86_400;
/// Most members one commit adds and removes together.
pub const MAX_GROUP_CHANGES: usize = 8;

/// Most bytes of a commit the agent sends (with an UpdatePath over a full
/// tree and [`MAX_GROUP_CHANGES`] KeyPackages).
pub const MAX_COMMIT_LEN: usize =
    1024 + MAX_GROUP_CHANGES * (MAX_KEY_PACKAGE_LEN + 16) + MLS_LEAF_BYTES + MLS_MEMBERS * 124;
/// Most bytes of a Welcome the agent sends (with the ratchet tree).
pub const MAX_WELCOME_LEN: usize = MlsGroup::welcome_len(MAX_GROUP_CHANGES, true);
/// Bytes of a group slot's outgoing buffer: the commit envelope, then the
/// Welcome envelope.
pub(crate) const OUTBOX_BYTES: usize = 2 * HEADER_LEN + MAX_COMMIT_LEN + MAX_WELCOME_LEN;
/// Where the Welcome envelope starts in the outgoing buffer.
pub(crate) const WELCOME_AT: usize = HEADER_LEN + MAX_COMMIT_LEN;

/// Scratch bytes [`Agent::commit_members`](crate::Agent::commit_members)
/// needs at most (adding [`MAX_GROUP_CHANGES`] members).
pub const COMMIT_SCRATCH_LEN: usize =
    MlsGroup::send_commit_scratch_len(MAX_GROUP_CHANGES * MAX_KEY_PACKAGE_LEN);

/// Stack bytes the agent lends `seal_application` (the signed content:
/// the payload, the GroupContext and the labels).
pub(crate) const SEAL_SCRATCH_LEN: usize = 4096;

/// Identifies a group: 64 bits drawn at random by its creator, carried in
/// the envelope's session field and, as 8 big-endian bytes, the MLS
/// `group_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The MLS `group_id`.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

/// Where [`Agent::send`](crate::Agent::send) sends: a peer or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A peer, by the decision matrix.
    Peer(PeerId),
    /// A group of which the agent is a member (MLS).
    Group(GroupId),
}

/// What [`Agent::send`](crate::Agent::send) takes by reference: a
/// [`PeerId`], a [`GroupId`] or a [`Destination`], so that
/// `agent.send(&bob, ..)` and `agent.send(&group, ..)` both read
/// naturally.
pub trait Recipient {
    /// The destination it names.
    fn destination(&self) -> Destination;
}

impl Recipient for PeerId {
    fn destination(&self) -> Destination {
        Destination::Peer(*self)
    }
}

impl Recipient for GroupId {
    fn destination(&self) -> Destination {
        Destination::Group(*self)
    }
}

impl Recipient for Destination {
    fn destination(&self) -> Destination {
        *self
    }
}

/// A group as [`Agent::groups`](crate::Agent::groups) shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub id: GroupId,
    /// Its current epoch (a pending commit of ours is not merged yet).
    pub epoch: u64,
    /// Members, the agent included.
    pub members: u32,
    /// A commit of ours waits for the delivery order.
    pub commit_pending: bool,
}

/// The peer id a leaf's credential claims (a basic credential of 32
/// bytes), whether or not the binding holds.
pub(crate) fn claimed_peer(leaf: &LeafNode<'_>) -> Option<PeerId> {
    match leaf.credential {
        Credential::Basic { identity } => <[u8; 32]>::try_from(identity).ok().map(PeerId),
        // X.509, and the hybrid credential of mls-lite's `ml-dsa` (the
        // mesh's groups do not use it): no claim, so such a leaf is
        // refused as unbound.
        _ => None,
    }
}

/// One of our KeyPackages and its private keys.
pub(crate) struct OwnKeyPackage {
    pub(crate) bytes: [u8; MAX_KEY_PACKAGE_LEN],
    pub(crate) len: usize,
    pub(crate) init_priv: Secret32,
    pub(crate) encryption_priv: Secret32,
}

impl OwnKeyPackage {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl Drop for OwnKeyPackage {
    fn drop(&mut self) {
        // The secrets zeroize themselves; the KeyPackage is public.
        self.bytes.fill(0);
    }
}

/// A peer's KeyPackage, checked against its identity when learned.
#[derive(Clone, Copy)]
pub(crate) struct PeerKeyPackage {
    pub(crate) peer: PeerId,
    pub(crate) bytes: [u8; MAX_KEY_PACKAGE_LEN],
    pub(crate) len: usize,
}

impl PeerKeyPackage {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// A commit of ours waiting for the delivery order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    /// SHA-256 of the commit `MLSMessage`: its return through the delivery
    /// order confirms it.
    pub(crate) hash: [u8; 32],
    /// The members its Welcome goes to once confirmed.
    pub(crate) joiners: [PeerId; MAX_GROUP_CHANGES],
    pub(crate) joiner_count: usize,
    /// Bytes of the Welcome envelope (at [`WELCOME_AT`]); 0 for none.
    pub(crate) welcome_len: usize,
}

impl Pending {
    pub(crate) fn joiners(&self) -> &[PeerId] {
        self.joiners.get(..self.joiner_count).unwrap_or_default()
    }
}

/// An envelope of the outgoing buffer waiting for `poll_transmit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) seq: u64,
    pub(crate) len: usize,
}

/// A Welcome released after its commit was confirmed: handed out once per
/// joiner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) seq: u64,
    pub(crate) len: usize,
    pub(crate) joiners: [PeerId; MAX_GROUP_CHANGES],
    /// Joiners not handed out yet (the last ones of `joiners`).
    pub(crate) left: usize,
}

/// One group slot of the agent.
pub(crate) struct GroupSlot {
    /// The group's id (meaningful while `group` is joined).
    pub(crate) id: GroupId,
    pub(crate) group: MlsGroup,
    /// The next epoch of our pending commit, or a spare for processing.
    pub(crate) next: MlsGroup,
    /// Where a commit received while ours is pending is computed (so a
    /// forged one cannot cost us ours); empty between calls.
    pub(crate) spare: MlsGroup,
    pub(crate) pending: Option<Pending>,
    /// The commit envelope, until `poll_transmit` hands it out.
    pub(crate) commit_out: Option<Outgoing>,
    /// The Welcome envelope, once its commit is confirmed.
    pub(crate) welcome_out: Option<Release>,
    pub(crate) buf: [u8; OUTBOX_BYTES],
}

impl GroupSlot {
    pub(crate) const fn empty() -> Self {
        GroupSlot {
            id: GroupId(0),
            group: MlsGroup::new(),
            next: MlsGroup::new(),
            spare: MlsGroup::new(),
            pending: None,
            commit_out: None,
            welcome_out: None,
            buf: [0; OUTBOX_BYTES],
        }
    }

    pub(crate) fn is_used(&self) -> bool {
        self.group.is_joined()
    }

    /// Drop the pending commit, its envelopes and the spare state.
    pub(crate) fn drop_pending(&mut self) {
        self.pending = None;
        self.commit_out = None;
        self.welcome_out = None;
        self.next.clear();
        self.buf.fill(0);
    }

    pub(crate) fn clear(&mut self) {
        self.drop_pending();
        self.group.clear();
        self.id = GroupId(0);
    }
}

/// Bytes of one group slot of an [`Agent`](crate::Agent): the group, the
/// pending and spare states and the outgoing commit and Welcome (about
/// 56 KB with these capacities).
pub const GROUP_SLOT_BYTES: usize = core::mem::size_of::<GroupSlot>();

//! The delivery service: what agents use when they cannot reach each
//! other directly.
//!
//! - **Mailboxes**: envelopes for an agent that is offline (the ratchet
//!   channel, [`Delivery::Mailbox`](securemesh::Delivery::Mailbox)). A
//!   message stays in the mailbox until its owner acknowledges it, which
//!   the host does only after the agent handled it and its state was
//!   stored: a crash before that re-delivers it, and the ratchet (whose
//!   state was not stored either) opens it again, so nothing is lost and
//!   nothing is delivered twice.
//! - **Prekey bundles**: each agent publishes one bundle per one-time
//!   prekey and a last-resort bundle without one; a one-time bundle is
//!   handed out exactly once, ever (a republished id is not handed out
//!   again). A publish replaces the one-time set: ids the agent no longer
//!   gives are dropped and a republished id carries its new bytes (after
//!   a signed-prekey rotation no bundle naming the retired key is left).
//! - **Group fan-out**: a group envelope goes to every member's mailbox,
//!   the sender's included, in one order for all members
//!   ([`DeliveryService::deposit_group`]); that order is what confirms a
//!   member's commit (the mesh merges its own commit when it comes back).
//!   A member whose mailbox is full misses that envelope (counted, see
//!   [`InProcess::full_mailbox_skips`]); the others still get it, so one
//!   full mailbox does not stall the group. The member catches up on the
//!   group's commits through [`DeliveryService::commits_since`].
//! - **MLS commit ordering** by epoch: one commit per group epoch is
//!   accepted, in order; a commit for an epoch already taken is refused
//!   so its sender merges the winner first (for a back end that orders
//!   commits apart from the fan-out).
//!
//! [`InProcess`] is the embedded default; [`nats::JetStream`] puts the
//! same trait on a NATS JetStream server shared by several hosts (which
//! is why the methods are async).

use securemesh::PeerId;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::{Future, ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

pub mod nats;

/// A mailbox message's number (per mailbox, increasing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// One message in a mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// Its number, to acknowledge it.
    pub id: MessageId,
    /// The envelope, for the owner's `handle_input`.
    pub envelope: Vec<u8>,
}

/// An MLS group's id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub Vec<u8>);

/// What the delivery service refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// The mailbox holds its maximum of unacknowledged messages.
    MailboxFull {
        /// The maximum.
        max: usize,
    },
    /// A commit for an epoch that is not the group's next one.
    EpochTaken {
        /// The epoch the next commit must be made on.
        current: u64,
    },
    /// The service failed (a lock poisoned by a panic, a stored entry
    /// that does not decode).
    Unavailable,
    /// The service's server does not answer, or failed the request (down,
    /// restarting, unreachable, timed out): nothing was done; try again.
    Unreachable {
        /// The server (its URL).
        server: String,
        /// What the client saw.
        reason: String,
    },
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::MailboxFull { max } => write!(f, "mailbox full ({max} messages)"),
            DeliveryError::EpochTaken { current } => {
                write!(f, "epoch already committed: the group is at epoch {current}")
            }
            DeliveryError::Unavailable => write!(f, "delivery service unavailable"),
            DeliveryError::Unreachable { server, reason } => {
                write!(f, "delivery service at {server} unreachable: {reason}")
            }
        }
    }
}

impl std::error::Error for DeliveryError {}

/// What a delivery service does for the agents.
pub trait DeliveryService: Send + Sync + 'static {
    /// Put `envelope` into `to`'s mailbox.
    fn deposit(
        &self,
        to: PeerId,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<MessageId, DeliveryError>> + Send;

    /// Up to `max` unacknowledged messages of `owner`'s mailbox, oldest
    /// first; they stay until [`ack`](Self::ack)ed.
    fn fetch(
        &self,
        owner: PeerId,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Mail>, DeliveryError>> + Send;

    /// Put `envelope` into the mailbox of every one of `members` (a group
    /// message: the sender is among them), in one order for every member:
    /// of two group messages, each member's mailbox holds them in the
    /// order this service accepted them. A member whose mailbox is full is
    /// skipped (and counted): it misses this envelope, the others get it;
    /// [`DeliveryError::MailboxFull`] is not returned for a group.
    fn deposit_group(
        &self,
        members: Vec<PeerId>,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// `owner` handled message `id` and stored the state it left: remove it.
    fn ack(&self, owner: PeerId, id: MessageId) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// Publish `owner`'s bundles: a last-resort bundle (no one-time
    /// prekey) and one bundle per one-time prekey id. The stored one-time
    /// set becomes exactly `one_time` minus the ids handed out before: a
    /// stored id gets the new bytes, a stored id not in `one_time` is
    /// dropped. (Ids handed out are remembered only while `one_time`
    /// still names them: an agent's prekey ids only increase.)
    fn publish_bundles(
        &self,
        owner: PeerId,
        last_resort: Vec<u8>,
        one_time: Vec<(u32, Vec<u8>)>,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// A bundle of `owner`: one with a one-time prekey, which is never
    /// handed out again, while any is left, else the last-resort one.
    fn take_bundle(
        &self,
        owner: PeerId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, DeliveryError>> + Send;

    /// Order `commit` as the commit of `group`'s `epoch`: accepted (and
    /// numbered `epoch + 1`, the epoch it starts) only if `epoch` is the
    /// group's current one; the first commit of a group fixes its epoch.
    /// A retry of the commit that won `epoch` (byte-equal) is accepted
    /// again with the same number, so a lost answer is safe to retry.
    fn order_commit(
        &self,
        group: GroupId,
        epoch: u64,
        commit: Vec<u8>,
    ) -> impl Future<Output = Result<u64, DeliveryError>> + Send;

    /// The commits of `group` that start epochs after `epoch`, in order.
    fn commits_since(
        &self,
        group: GroupId,
        epoch: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, DeliveryError>> + Send;

    /// Messages waiting (not acknowledged) in `owner`'s mailbox.
    fn pending_count(&self, owner: PeerId) -> impl Future<Output = Result<usize, DeliveryError>> + Send;

    /// One-time bundles of `owner` not handed out yet.
    fn one_time_count(&self, owner: PeerId) -> impl Future<Output = Result<usize, DeliveryError>> + Send;
}

#[derive(Default)]
struct Mailbox {
    next: u64,
    messages: VecDeque<Mail>,
}

#[derive(Default)]
struct Bundles {
    last_resort: Option<Vec<u8>>,
    one_time: VecDeque<(u32, Vec<u8>)>,
    handed_out: HashSet<u32>,
}

#[derive(Default)]
struct Group {
    /// Epoch -> the commit that ended it.
    commits: BTreeMap<u64, Vec<u8>>,
    current: u64,
}

#[derive(Default)]
struct Inner {
    mailboxes: HashMap<PeerId, Mailbox>,
    bundles: HashMap<PeerId, Bundles>,
    groups: HashMap<GroupId, Group>,
}

/// The embedded delivery service: everything in this process's memory.
#[derive(Default)]
pub struct InProcess {
    inner: Mutex<Inner>,
    max_mailbox: usize,
    full_skips: AtomicU64,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess").field("max_mailbox", &self.max_mailbox).finish_non_exhaustive()
    }
}

impl InProcess {
    /// A service whose mailboxes hold up to `max_mailbox` messages each.
    pub fn new(max_mailbox: usize) -> Self {
        InProcess { inner: Mutex::new(Inner::default()), max_mailbox, full_skips: AtomicU64::new(0) }
    }

    /// Group envelopes not put into a member's mailbox because it was
    /// full (one per member and envelope).
    pub fn full_mailbox_skips(&self) -> u64 {
        self.full_skips.load(Ordering::Relaxed)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, DeliveryError> {
        self.inner.lock().map_err(|_| DeliveryError::Unavailable)
    }

    /// Messages waiting in `owner`'s mailbox.
    pub fn pending(&self, owner: &PeerId) -> usize {
        self.lock().map_or(0, |i| i.mailboxes.get(owner).map_or(0, |m| m.messages.len()))
    }

    /// One-time bundles of `owner` not handed out yet.
    pub fn one_time_available(&self, owner: &PeerId) -> usize {
        self.lock().map_or(0, |i| i.bundles.get(owner).map_or(0, |b| b.one_time.len()))
    }

    fn deposit_now(&self, to: PeerId, envelope: Vec<u8>) -> Result<MessageId, DeliveryError> {
        let mut inner = self.lock()?;
        let mb = inner.mailboxes.entry(to).or_default();
        if mb.messages.len() >= self.max_mailbox {
            return Err(DeliveryError::MailboxFull { max: self.max_mailbox });
        }
        let id = MessageId(mb.next);
        mb.next = mb.next.saturating_add(1);
        mb.messages.push_back(Mail { id, envelope });
        Ok(id)
    }

    fn deposit_group_now(&self, members: Vec<PeerId>, envelope: Vec<u8>) -> Result<(), DeliveryError> {
        let mut inner = self.lock()?;
        for m in members {
            let mb = inner.mailboxes.entry(m).or_default();
            if mb.messages.len() >= self.max_mailbox {
                self.full_skips.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(member = %crate::runtime::short(&m), "member's mailbox full; group envelope skipped for it");
                continue;
            }
            let id = MessageId(mb.next);
            mb.next = mb.next.saturating_add(1);
            mb.messages.push_back(Mail { id, envelope: envelope.clone() });
        }
        Ok(())
    }

    fn fetch_now(&self, owner: PeerId, max: usize) -> Result<Vec<Mail>, DeliveryError> {
        let inner = self.lock()?;
        Ok(inner
            .mailboxes
            .get(&owner)
            .map_or_else(Vec::new, |m| m.messages.iter().take(max).cloned().collect()))
    }

    fn ack_now(&self, owner: PeerId, id: MessageId) -> Result<(), DeliveryError> {
        let mut inner = self.lock()?;
        if let Some(m) = inner.mailboxes.get_mut(&owner) {
            m.messages.retain(|mail| mail.id != id);
        }
        Ok(())
    }

    fn publish_now(
        &self,
        owner: PeerId,
        last_resort: Vec<u8>,
        one_time: Vec<(u32, Vec<u8>)>,
    ) -> Result<(), DeliveryError> {
        let mut inner = self.lock()?;
        let b = inner.bundles.entry(owner).or_default();
        b.last_resort = Some(last_resort);
        b.handed_out.retain(|id| one_time.iter().any(|(q, _)| q == id));
        let mut stored = VecDeque::with_capacity(one_time.len());
        for (id, bundle) in one_time {
            if !b.handed_out.contains(&id) && !stored.iter().any(|(q, _)| *q == id) {
                stored.push_back((id, bundle));
            }
        }
        b.one_time = stored;
        Ok(())
    }

    fn take_now(&self, owner: PeerId) -> Result<Option<Vec<u8>>, DeliveryError> {
        let mut inner = self.lock()?;
        let Some(b) = inner.bundles.get_mut(&owner) else { return Ok(None) };
        if let Some((id, bundle)) = b.one_time.pop_front() {
            b.handed_out.insert(id);
            return Ok(Some(bundle));
        }
        Ok(b.last_resort.clone())
    }

    fn order_now(&self, group: GroupId, epoch: u64, commit: Vec<u8>) -> Result<u64, DeliveryError> {
        let mut inner = self.lock()?;
        let g = inner.groups.entry(group).or_default();
        if g.commits.is_empty() && g.current == 0 {
            g.current = epoch;
        }
        if epoch != g.current {
            // A retry of the winner (its answer was lost) wins again.
            if g.commits.get(&epoch).is_some_and(|c| *c == commit) {
                return epoch.checked_add(1).ok_or(DeliveryError::EpochTaken { current: g.current });
            }
            return Err(DeliveryError::EpochTaken { current: g.current });
        }
        let next = epoch.checked_add(1).ok_or(DeliveryError::EpochTaken { current: g.current })?;
        g.commits.insert(epoch, commit);
        g.current = next;
        Ok(next)
    }

    fn since_now(&self, group: GroupId, epoch: u64) -> Result<Vec<(u64, Vec<u8>)>, DeliveryError> {
        let inner = self.lock()?;
        Ok(inner.groups.get(&group).map_or_else(Vec::new, |g| {
            g.commits.range(epoch..).map(|(e, c)| (e.saturating_add(1), c.clone())).collect()
        }))
    }
}

impl DeliveryService for InProcess {
    fn deposit_group(
        &self,
        members: Vec<PeerId>,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        ready(self.deposit_group_now(members, envelope))
    }
    fn deposit(
        &self,
        to: PeerId,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<MessageId, DeliveryError>> + Send {
        ready(self.deposit_now(to, envelope))
    }
    fn fetch(
        &self,
        owner: PeerId,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Mail>, DeliveryError>> + Send {
        ready(self.fetch_now(owner, max))
    }
    fn ack(&self, owner: PeerId, id: MessageId) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        ready(self.ack_now(owner, id))
    }
    fn publish_bundles(
        &self,
        owner: PeerId,
        last_resort: Vec<u8>,
        one_time: Vec<(u32, Vec<u8>)>,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        ready(self.publish_now(owner, last_resort, one_time))
    }
    fn take_bundle(
        &self,
        owner: PeerId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, DeliveryError>> + Send {
        ready(self.take_now(owner))
    }
    fn order_commit(
        &self,
        group: GroupId,
        epoch: u64,
        commit: Vec<u8>,
    ) -> impl Future<Output = Result<u64, DeliveryError>> + Send {
        ready(self.order_now(group, epoch, commit))
    }
    fn commits_since(
        &self,
        group: GroupId,
        epoch: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, DeliveryError>> + Send {
        ready(self.since_now(group, epoch))
    }
    fn pending_count(&self, owner: PeerId) -> impl Future<Output = Result<usize, DeliveryError>> + Send {
        ready(Ok(self.pending(&owner)))
    }
    fn one_time_count(&self, owner: PeerId) -> impl Future<Output = Result<usize, DeliveryError>> + Send {
        ready(Ok(self.one_time_available(&owner)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn mail_stays_until_acknowledged() {
        let s = InProcess::new(4);
        let bob = PeerId([2; 32]);
        block(async {
            let a = s.deposit(bob, b"one".to_vec()).await.unwrap();
            let b = s.deposit(bob, b"two".to_vec()).await.unwrap();
            let first = s.fetch(bob, 10).await.unwrap();
            assert_eq!(first.iter().map(|m| m.envelope.as_slice()).collect::<Vec<_>>(), [b"one", b"two"]);
            // Not acknowledged (the owner crashed): fetched again.
            assert_eq!(s.fetch(bob, 10).await.unwrap(), first);
            s.ack(bob, a).await.unwrap();
            assert_eq!(s.fetch(bob, 10).await.unwrap(), [Mail { id: b, envelope: b"two".to_vec() }]);
            for _ in 0..3 {
                s.deposit(bob, vec![0]).await.unwrap();
            }
            assert_eq!(s.deposit(bob, vec![0]).await, Err(DeliveryError::MailboxFull { max: 4 }));
            assert_eq!(s.pending(&bob), 4);
        });
    }

    #[test]
    fn group_messages_reach_every_member_in_one_order() {
        let s = InProcess::new(2);
        let (a, b) = (PeerId([1; 32]), PeerId([2; 32]));
        block(async {
            s.deposit_group(vec![a, b], b"c1".to_vec()).await.unwrap();
            s.deposit(b, b"direct".to_vec()).await.unwrap();
            // b's mailbox is full: b misses the next one, a still gets it.
            s.deposit_group(vec![a, b], b"c2".to_vec()).await.unwrap();
            assert_eq!(s.full_mailbox_skips(), 1);
            let seen = |p| s.fetch_now(p, 9).unwrap().into_iter().map(|m| m.envelope).collect::<Vec<_>>();
            assert_eq!(seen(a), [b"c1".to_vec(), b"c2".to_vec()]);
            assert_eq!(seen(b), [b"c1".to_vec(), b"direct".to_vec()]);
        });
    }

    #[test]
    fn one_time_bundles_are_handed_out_once() {
        let s = InProcess::new(4);
        let carol = PeerId([3; 32]);
        block(async {
            assert_eq!(s.take_bundle(carol).await.unwrap(), None);
            let otk = |i: u32| (i, vec![u8::try_from(i).unwrap()]);
            s.publish_bundles(carol, b"last".to_vec(), vec![otk(1), otk(2)]).await.unwrap();
            assert_eq!(s.take_bundle(carol).await.unwrap(), Some(vec![1]));
            // Republishing the same ids (after a refill) hands out only new ones.
            s.publish_bundles(carol, b"last".to_vec(), vec![otk(1), otk(2), otk(3)]).await.unwrap();
            assert_eq!(s.one_time_available(&carol), 2);
            assert_eq!(s.take_bundle(carol).await.unwrap(), Some(vec![2]));
            assert_eq!(s.take_bundle(carol).await.unwrap(), Some(vec![3]));
            assert_eq!(s.take_bundle(carol).await.unwrap(), Some(b"last".to_vec()));
        });
    }

    #[test]
    fn a_publish_replaces_the_one_time_bundles() {
        let s = InProcess::new(4);
        let erin = PeerId([5; 32]);
        block(async {
            let old = |i: u32| (i, format!("old {i}").into_bytes());
            let new = |i: u32| (i, format!("new {i}").into_bytes());
            s.publish_bundles(erin, b"last".to_vec(), vec![old(1), old(2), old(3)]).await.unwrap();
            assert_eq!(s.take_bundle(erin).await.unwrap(), Some(b"old 1".to_vec()));
            // A signed-prekey rotation: new bytes for 2 and 4, 3 dropped,
            // 1 (handed out) named again.
            s.publish_bundles(erin, b"last".to_vec(), vec![new(1), new(2), new(4)]).await.unwrap();
            assert_eq!(s.one_time_available(&erin), 2);
            assert_eq!(s.take_bundle(erin).await.unwrap(), Some(b"new 2".to_vec()));
            assert_eq!(s.take_bundle(erin).await.unwrap(), Some(b"new 4".to_vec()));
            assert_eq!(s.take_bundle(erin).await.unwrap(), Some(b"last".to_vec()));
            // Handed-out ids are remembered only while the agent names them.
            for round in 5..105u32 {
                s.publish_bundles(erin, b"last".to_vec(), vec![new(round)]).await.unwrap();
                assert_eq!(s.take_bundle(erin).await.unwrap(), Some(new(round).1));
            }
            assert_eq!(s.lock().unwrap().bundles[&erin].handed_out.len(), 1);
        });
    }

    #[test]
    fn one_commit_per_epoch_in_order() {
        let s = InProcess::new(4);
        let g = GroupId(b"ops".to_vec());
        block(async {
            assert_eq!(s.order_commit(g.clone(), 5, b"c5".to_vec()).await, Ok(6));
            assert_eq!(
                s.order_commit(g.clone(), 5, b"rival".to_vec()).await,
                Err(DeliveryError::EpochTaken { current: 6 })
            );
            assert_eq!(s.order_commit(g.clone(), 6, b"c6".to_vec()).await, Ok(7));
            // A retry of a winner (its answer lost) wins again; a rival does not.
            assert_eq!(s.order_commit(g.clone(), 5, b"c5".to_vec()).await, Ok(6));
            assert_eq!(
                s.order_commit(g.clone(), 6, b"rival".to_vec()).await,
                Err(DeliveryError::EpochTaken { current: 7 })
            );
            assert_eq!(
                s.commits_since(g.clone(), 5).await.unwrap(),
                [(6, b"c5".to_vec()), (7, b"c6".to_vec())]
            );
            assert_eq!(s.commits_since(g, 6).await.unwrap(), [(7, b"c6".to_vec())]);
        });
    }
}

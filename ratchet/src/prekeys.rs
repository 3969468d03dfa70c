//! The prekey lifecycle as a state machine driven by wall-clock `now`
//! ([`UnixTime`]): a pool of one-time prekeys, each consumed exactly once;
//! an event when the pool runs low; signed-prekey rotation on an interval
//! with the previous signed prekey kept for a grace period; metrics.
//!
//! PQXDH adds signed KEM prekeys: up to `KEM` one-time ones, each consumed
//! exactly once like the one-time prekeys, and a last-resort one that
//! belongs to the signed prekey (created, rotated, kept for the grace
//! period and erased with it) and is never consumed. A signed prekey with
//! a last-resort KEM prekey is published only in bundles with a KEM prekey
//! ([`PrekeyPool::bundle_pq`]), so an initial message that names it without
//! a KEM ciphertext is a downgrade and is refused.

use crate::bundle::{Bundle, KemPrekey, OneTimePrekeyPublic, SignedPrekeyPublic};
use crate::error::Error;
use crate::identity::{Identity, PublicIdentity};
use crate::kdf::Key32;
use crate::pqxdh::{self, KemAlgorithm, KemSeed};
use securemesh_core::crypto::{Dh, X25519};
use securemesh_core::events::EventQueue;
use securemesh_core::{CryptoRng, UnixTime};

/// Policy of a prekey pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrekeyConfig {
    /// Raise [`PrekeyEvent::PoolLow`] once this percentage of the pool is used (default 70).
    pub refill_threshold_percent: u8,
    /// Rotate the signed prekey after this many seconds (default 720 h).
    pub rotation_interval_secs: u64,
    /// Keep the previous signed prekey this long after rotation (default 168 h),
    /// so initial messages sent to the old bundle still open.
    pub grace_period_secs: u64,
}

impl Default for PrekeyConfig {
    fn default() -> Self {
        PrekeyConfig {
            refill_threshold_percent: 70,
            rotation_interval_secs: 720 * 3600,
            grace_period_secs: 168 * 3600,
        }
    }
}

/// What the pool tells its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrekeyEvent {
    /// The pool fell below the refill threshold: call [`PrekeyPool::refill`]
    /// and publish the new one-time prekeys.
    PoolLow {
        /// One-time prekeys left.
        available: u32,
        /// Pool capacity.
        capacity: u32,
    },
    /// A new signed prekey replaced the current one: publish a new bundle.
    SignedPrekeyRotated {
        /// Identifier of the new signed prekey.
        id: u32,
    },
    /// The previous signed prekey passed its grace period and was erased.
    PreviousSignedPrekeyErased {
        /// Its identifier.
        id: u32,
    },
}

/// Pool metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrekeyMetrics {
    /// One-time prekeys available.
    pub available: u32,
    /// Capacity.
    pub capacity: u32,
    /// Percentage of the pool used (0..=100).
    pub utilization_percent: u8,
    /// One-time prekeys consumed since the pool was created.
    pub consumed_total: u64,
    /// Age of the current signed prekey in seconds.
    pub signed_prekey_age_secs: u64,
}

pub(crate) struct OneTime {
    pub(crate) id: u32,
    pub(crate) secret: Key32,
    pub(crate) public: [u8; 32],
}

pub(crate) struct Signed {
    pub(crate) secret: Key32,
    pub(crate) public: SignedPrekeyPublic,
    pub(crate) created: UnixTime,
    /// The last-resort KEM prekey published with this signed prekey.
    pub(crate) kem: Option<KemKey>,
}

/// A signed KEM prekey: the seed of its decapsulation key and the
/// signature over its public key (recomputed from the seed to publish).
pub(crate) struct KemKey {
    pub(crate) id: u32,
    pub(crate) alg: KemAlgorithm,
    pub(crate) seed: KemSeed,
    pub(crate) sig: [u8; 64],
}

impl KemKey {
    /// A fresh KEM prekey `id` signed by `identity`.
    #[cfg(feature = "pq")]
    fn generate<R: CryptoRng + ?Sized>(
        identity: &Identity,
        id: u32,
        alg: KemAlgorithm,
        rng: &mut R,
    ) -> Result<Self, Error> {
        let seed = pqxdh::generate(alg, rng);
        let mut buf = [0u8; crate::MAX_KEM_PUBLIC_LEN];
        let n = pqxdh::public(alg, &seed, &mut buf)?;
        let sig = KemPrekey::sign(identity, id, alg.code(), buf.get(..n).ok_or(Error::Malformed)?)?.sig;
        Ok(KemKey { id, alg, seed, sig })
    }

    /// The public prekey, its key written into `buf`.
    pub(crate) fn public<'b>(&self, buf: &'b mut [u8]) -> Result<KemPrekey<'b>, Error> {
        let n = pqxdh::public(self.alg, &self.seed, buf)?;
        let public = buf.get(..n).ok_or(Error::Malformed)?;
        Ok(KemPrekey { id: self.id, alg: self.alg.code(), public, sig: self.sig })
    }
}

/// Pending pool events kept (oldest dropped first).
pub(crate) const POOL_EVENT_SLOTS: usize = 4;

/// [`PrekeyPool`] with its default capacity (200 one-time prekeys), named
/// so that `DefaultPrekeyPool::new(..)` needs no annotation (see
/// [`DefaultSession`](crate::DefaultSession)).
pub type DefaultPrekeyPool = PrekeyPool;

/// A prekey pool of `CAP` one-time prekeys (default 200) and `KEM`
/// one-time KEM prekeys (default 0: an X3DH pool), owned by the
/// identity it was created with: that identity signs its prekeys and is
/// the one its bundles carry; the calls that sign new prekeys refuse any
/// other ([`Error::WrongIdentity`]).
pub struct PrekeyPool<const CAP: usize = 200, const KEM: usize = 0> {
    pub(crate) owner: PublicIdentity,
    pub(crate) one_time: [Option<OneTime>; CAP],
    /// One-time KEM prekeys (PQXDH).
    pub(crate) kem_one_time: [Option<KemKey>; KEM],
    /// The next identifier to issue; 0 once `u32::MAX` has been issued
    /// (identifiers are never reused).
    pub(crate) next_id: u32,
    pub(crate) consumed_total: u64,
    pub(crate) signed: Signed,
    pub(crate) previous: Option<(Signed, UnixTime)>,
    pub(crate) config: PrekeyConfig,
    pub(crate) low_reported: bool,
    pub(crate) events: EventQueue<PrekeyEvent, POOL_EVENT_SLOTS>,
}

impl<const CAP: usize, const KEM: usize> core::fmt::Debug for PrekeyPool<CAP, KEM> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PrekeyPool")
            .field("available", &self.available())
            .field("capacity", &CAP)
            .field("signed_prekey_id", &self.signed.public.id)
            .field("kem_available", &self.kem_available())
            .finish_non_exhaustive()
    }
}

impl<const CAP: usize, const KEM: usize> PrekeyPool<CAP, KEM> {
    /// A pool with a fresh signed prekey and every one-time slot filled.
    pub fn new<R: CryptoRng + ?Sized>(
        identity: &Identity,
        rng: &mut R,
        now: UnixTime,
        config: PrekeyConfig,
    ) -> Self {
        let mut pool = PrekeyPool {
            owner: *identity.public(),
            one_time: [const { None }; CAP],
            kem_one_time: [const { None }; KEM],
            next_id: 1,
            consumed_total: 0,
            signed: Self::new_signed(identity, 1, rng, now),
            previous: None,
            config,
            low_reported: false,
            events: EventQueue::new(),
        };
        pool.next_id = 2;
        pool.refill(rng);
        pool
    }

    fn new_signed<R: CryptoRng + ?Sized>(identity: &Identity, id: u32, rng: &mut R, now: UnixTime) -> Signed {
        let secret = X25519::generate(rng);
        let public = SignedPrekeyPublic::sign(identity, id, X25519::public_key(&secret));
        Signed { secret, public, created: now, kem: None }
    }

    /// A PQXDH pool: [`new`](Self::new), then a last-resort KEM prekey of
    /// `alg` for the signed prekey and every one-time KEM slot filled
    /// (feature `pq`). Publish its bundles with [`bundle_pq`](Self::bundle_pq).
    ///
    /// ```
    /// use securemesh_ratchet::{Identity, KemAlgorithm, PrekeyConfig, PrekeyPool};
    /// use securemesh_core::UnixTime;
    /// # let mut rng = securemesh_core::testing::TestRng::new(1);
    /// let bob = Identity::generate(&mut rng);
    /// let pool: PrekeyPool<8, 4> =
    ///     PrekeyPool::new_pq(&bob, &mut rng, UnixTime(1_700_000_000), PrekeyConfig::default(), KemAlgorithm::MlKem768)?;
    /// assert_eq!(pool.kem_available(), 4);
    /// assert!(pool.last_resort_kem_id().is_some());
    /// # Ok::<(), securemesh_ratchet::Error>(())
    /// ```
    #[cfg(feature = "pq")]
    pub fn new_pq<R: CryptoRng + ?Sized>(
        identity: &Identity,
        rng: &mut R,
        now: UnixTime,
        config: PrekeyConfig,
        alg: KemAlgorithm,
    ) -> Result<Self, Error> {
        let mut pool = Self::new(identity, rng, now, config);
        let id = pool.take_id().ok_or(Error::CounterExhausted)?;
        pool.signed.kem = Some(KemKey::generate(identity, id, alg, rng)?);
        pool.refill_kem(identity, rng)?;
        Ok(pool)
    }

    /// Fill every empty one-time KEM slot with a KEM prekey of the
    /// last-resort prekey's algorithm, signed by `identity` (the owner, else
    /// [`Error::WrongIdentity`]); returns how many were added (0 for an
    /// X3DH pool). Feature `pq`.
    #[cfg(feature = "pq")]
    pub fn refill_kem<R: CryptoRng + ?Sized>(
        &mut self,
        identity: &Identity,
        rng: &mut R,
    ) -> Result<usize, Error> {
        self.check_owner(identity)?;
        let Some(alg) = self.signed.kem.as_ref().map(|k| k.alg) else { return Ok(0) };
        // Every new key is made before any slot or the id counter changes,
        // so a failure leaves the pool exactly as it was.
        let mut fresh: [Option<KemKey>; KEM] = core::array::from_fn(|_| None);
        let mut next_id = self.next_id;
        for (slot, new) in self.kem_one_time.iter().zip(fresh.iter_mut()) {
            if slot.is_some() || next_id == 0 {
                continue;
            }
            *new = Some(KemKey::generate(identity, next_id, alg, rng)?);
            next_id = next_id.checked_add(1).unwrap_or(0);
        }
        self.next_id = next_id;
        let mut added = 0usize;
        for (slot, new) in self.kem_one_time.iter_mut().zip(fresh) {
            if new.is_some() {
                *slot = new;
                added = added.saturating_add(1); // at most KEM
            }
        }
        Ok(added)
    }

    /// Whether the pool holds KEM prekeys (a PQXDH pool).
    pub(crate) fn has_kem(&self) -> bool {
        self.signed.kem.is_some()
            || self.previous.as_ref().is_some_and(|(p, _)| p.kem.is_some())
            || self.kem_one_time.iter().any(Option::is_some)
    }

    /// One-time KEM prekeys left.
    pub fn kem_available(&self) -> u32 {
        self.kem_one_time.iter().filter(|s| s.is_some()).count() as u32
    }

    /// The identifiers of the available one-time KEM prekeys.
    pub fn kem_one_time_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.kem_one_time.iter().flatten().map(|k| k.id)
    }

    /// The identifier of the current last-resort KEM prekey (`None` in an
    /// X3DH pool).
    pub fn last_resort_kem_id(&self) -> Option<u32> {
        self.signed.kem.as_ref().map(|k| k.id)
    }

    /// A PQXDH bundle: as [`bundle`](Self::bundle), with the one-time KEM
    /// prekey `kem_one_time_id` if given and available, else the
    /// last-resort KEM prekey, in its KEM slot. The KEM public key is
    /// recomputed into `buf` (at least the algorithm's key length, else
    /// [`Error::BufferTooSmall`]). An X3DH pool has no KEM prekey:
    /// [`Error::UnsupportedKem`].
    ///
    /// ```
    /// # use securemesh_ratchet::{Bundle, Identity, KemAlgorithm, PrekeyConfig, PrekeyPool, MAX_BUNDLE_LEN, MAX_KEM_PUBLIC_LEN};
    /// # use securemesh_core::UnixTime;
    /// # let mut rng = securemesh_core::testing::TestRng::new(1);
    /// # let bob = Identity::generate(&mut rng);
    /// let pool: PrekeyPool<8, 4> =
    ///     PrekeyPool::new_pq(&bob, &mut rng, UnixTime(1), PrekeyConfig::default(), KemAlgorithm::MlKem768)?;
    /// let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    /// let bundle = pool.bundle_pq(pool.one_time_ids().next(), pool.kem_one_time_ids().next(), &mut kem_buf)?;
    /// let mut wire = [0u8; MAX_BUNDLE_LEN];
    /// let n = bundle.encode(&mut wire)?;
    /// assert_eq!(Bundle::decode(&wire[..n])?.kem().map(|k| k.public.len()), Some(1184));
    /// # Ok::<(), securemesh_ratchet::Error>(())
    /// ```
    #[cfg(feature = "pq")]
    pub fn bundle_pq<'b>(
        &self,
        one_time_id: Option<u32>,
        kem_one_time_id: Option<u32>,
        buf: &'b mut [u8],
    ) -> Result<Bundle<'b>, Error> {
        let key = kem_one_time_id
            .and_then(|id| self.kem_one_time.iter().flatten().find(|k| k.id == id))
            .or(self.signed.kem.as_ref())
            .ok_or(Error::UnsupportedKem)?;
        let kem = key.public(buf)?;
        let b = self.bundle(one_time_id);
        Ok(Bundle {
            identity: b.identity,
            signed: b.signed,
            one_time: b.one_time,
            kem: Some(kem),
            #[cfg(feature = "ml-dsa")]
            pq: None,
        })
    }

    /// The KEM prekey `id` (one-time, or the last-resort one of the current
    /// or previous signed prekey) and whether it is one-time.
    pub(crate) fn kem_secret(&self, id: u32) -> Option<(&KemKey, bool)> {
        if let Some(k) = self.kem_one_time.iter().flatten().find(|k| k.id == id) {
            return Some((k, true));
        }
        core::iter::once(&self.signed)
            .chain(self.previous.as_ref().map(|(p, _)| p))
            .filter_map(|s| s.kem.as_ref())
            .find(|k| k.id == id)
            .map(|k| (k, false))
    }

    /// Whether signed prekey `spk_id` was published only with KEM prekeys
    /// (it has a last-resort KEM prekey).
    pub(crate) fn requires_kem(&self, spk_id: u32) -> bool {
        core::iter::once(&self.signed)
            .chain(self.previous.as_ref().map(|(p, _)| p))
            .any(|s| s.public.id == spk_id && s.kem.is_some())
    }

    /// Erase one-time KEM prekey `id` (exactly once).
    pub(crate) fn consume_kem_one_time(&mut self, id: u32) -> bool {
        let Some(slot) = self.kem_one_time.iter_mut().find(|s| s.as_ref().is_some_and(|k| k.id == id)) else {
            return false;
        };
        *slot = None;
        self.consumed_total = self.consumed_total.saturating_add(1);
        true
    }

    /// The next identifier, or `None` once all `2^32 - 1` are issued:
    /// identifiers are never reused and 0 is never issued.
    fn take_id(&mut self) -> Option<u32> {
        let id = self.next_id;
        if id == 0 {
            return None;
        }
        self.next_id = id.checked_add(1).unwrap_or(0);
        Some(id)
    }

    /// Fill every empty one-time slot; returns how many were added (fewer
    /// than the empty slots only once every identifier has been issued).
    pub fn refill<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> usize {
        let mut added = 0usize;
        for i in 0..CAP {
            if self.one_time.get(i).is_some_and(Option::is_none) {
                let Some(id) = self.take_id() else { break };
                let secret = X25519::generate(rng);
                let public = X25519::public_key(&secret);
                if let Some(slot) = self.one_time.get_mut(i) {
                    *slot = Some(OneTime { id, secret, public });
                    added = added.saturating_add(1); // at most CAP
                }
            }
        }
        self.low_reported = false;
        added
    }

    /// One-time prekeys left.
    pub fn available(&self) -> u32 {
        self.one_time.iter().filter(|s| s.is_some()).count() as u32
    }

    /// The identifiers of the available one-time prekeys.
    pub fn one_time_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.one_time.iter().flatten().map(|o| o.id)
    }

    /// The public halves of the available one-time prekeys, to publish.
    pub fn one_time_publics(&self) -> impl Iterator<Item = OneTimePrekeyPublic> + '_ {
        self.one_time.iter().flatten().map(|o| OneTimePrekeyPublic { id: o.id, public: o.public })
    }

    /// The current signed prekey, as published.
    pub fn signed_public(&self) -> SignedPrekeyPublic {
        self.signed.public
    }

    /// The identity that owns the pool.
    pub fn owner(&self) -> &PublicIdentity {
        &self.owner
    }

    /// A bundle of the pool's owner with the current signed prekey and, if
    /// given and available, the one-time prekey `one_time_id`.
    pub fn bundle(&self, one_time_id: Option<u32>) -> Bundle<'static> {
        let one_time = one_time_id
            .and_then(|id| self.one_time.iter().flatten().find(|o| o.id == id))
            .map(|o| OneTimePrekeyPublic { id: o.id, public: o.public });
        Bundle {
            identity: self.owner,
            signed: self.signed.public,
            one_time,
            kem: None,
            #[cfg(feature = "ml-dsa")]
            pq: None,
        }
    }

    fn check_owner(&self, identity: &Identity) -> Result<(), Error> {
        if *identity.public() == self.owner { Ok(()) } else { Err(Error::WrongIdentity) }
    }

    /// The secret of signed prekey `id` (current, or previous within its grace period).
    pub(crate) fn signed_secret(&self, id: u32) -> Option<(&Key32, [u8; 32])> {
        if self.signed.public.id == id {
            return Some((&self.signed.secret, self.signed.public.public));
        }
        self.previous.as_ref().filter(|(p, _)| p.public.id == id).map(|(p, _)| (&p.secret, p.public.public))
    }

    /// The secret of one-time prekey `id`, without consuming it.
    pub(crate) fn one_time_secret(&self, id: u32) -> Option<&Key32> {
        self.one_time.iter().flatten().find(|o| o.id == id).map(|o| &o.secret)
    }

    /// Erase one-time prekey `id` (exactly once); raises
    /// [`PrekeyEvent::PoolLow`] when the threshold is crossed.
    pub(crate) fn consume_one_time(&mut self, id: u32) -> bool {
        let Some(slot) = self.one_time.iter_mut().find(|s| s.as_ref().is_some_and(|o| o.id == id)) else {
            return false;
        };
        *slot = None;
        self.consumed_total = self.consumed_total.saturating_add(1);
        let used = (CAP as u64).saturating_sub(u64::from(self.available()));
        if !self.low_reported
            && CAP > 0
            && used.saturating_mul(100)
                >= u64::from(self.config.refill_threshold_percent).saturating_mul(CAP as u64)
        {
            self.low_reported = true;
            self.push_event(PrekeyEvent::PoolLow { available: self.available(), capacity: CAP as u32 });
        }
        true
    }

    fn push_event(&mut self, e: PrekeyEvent) {
        self.events.push(e);
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<PrekeyEvent> {
        self.events.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called:
    /// the rotation time, or the end of the previous key's grace period.
    /// Always `Some` (a pool always has a rotation ahead); an `Option` like
    /// every `poll_timeout` of securemesh.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        let rotate = self.signed.created.as_secs().saturating_add(self.config.rotation_interval_secs);
        let erase = self
            .previous
            .as_ref()
            .map(|(_, retired)| retired.as_secs().saturating_add(self.config.grace_period_secs));
        Some(UnixTime(erase.map_or(rotate, |e| e.min(rotate))))
    }

    /// Rotate the signed prekey when due and erase the previous one after
    /// its grace period. Events report what happened. `identity` must be
    /// the pool's owner (else [`Error::WrongIdentity`], nothing changed);
    /// a due rotation with every identifier issued is
    /// [`Error::CounterExhausted`], also with nothing changed.
    pub fn handle_timeout<R: CryptoRng + ?Sized>(
        &mut self,
        identity: &Identity,
        rng: &mut R,
        now: UnixTime,
    ) -> Result<(), Error> {
        self.check_owner(identity)?;
        let rotate = now.saturating_secs_since(self.signed.created) >= self.config.rotation_interval_secs;
        if rotate && !self.can_rotate() {
            return Err(Error::CounterExhausted);
        }
        if let Some((p, retired)) = &self.previous
            && now.saturating_secs_since(*retired) >= self.config.grace_period_secs
        {
            let id = p.public.id;
            self.previous = None;
            self.push_event(PrekeyEvent::PreviousSignedPrekeyErased { id });
        }
        if rotate {
            self.rotate(identity, rng, now)?;
        }
        Ok(())
    }

    /// Rotate the signed prekey now (e.g. on suspected compromise).
    /// `identity` must be the pool's owner ([`Error::WrongIdentity`]); with
    /// every identifier issued, [`Error::CounterExhausted`]. On error
    /// nothing changed.
    pub fn rotate<R: CryptoRng + ?Sized>(
        &mut self,
        identity: &Identity,
        rng: &mut R,
        now: UnixTime,
    ) -> Result<(), Error> {
        self.check_owner(identity)?;
        if !self.can_rotate() {
            return Err(Error::CounterExhausted);
        }
        let saved_next_id = self.next_id;
        let new = self.next_signed(identity, rng, now);
        let new = match new {
            Ok(new) => new,
            Err(e) => {
                self.next_id = saved_next_id;
                return Err(e);
            }
        };
        let id = new.public.id;
        let old = core::mem::replace(&mut self.signed, new);
        if let Some((p, _)) = self.previous.replace((old, now)) {
            self.push_event(PrekeyEvent::PreviousSignedPrekeyErased { id: p.public.id });
        }
        self.push_event(PrekeyEvent::SignedPrekeyRotated { id });
        Ok(())
    }

    /// Whether the identifiers a rotation takes are left (two when a
    /// last-resort KEM prekey rotates with the signed prekey).
    fn can_rotate(&self) -> bool {
        match self.signed.kem {
            Some(_) => self.next_id != 0 && self.next_id != u32::MAX,
            None => self.next_id != 0,
        }
    }

    /// The signed prekey that replaces the current one, with a new
    /// last-resort KEM prekey if the current one has one.
    fn next_signed<R: CryptoRng + ?Sized>(
        &mut self,
        identity: &Identity,
        rng: &mut R,
        now: UnixTime,
    ) -> Result<Signed, Error> {
        let id = self.take_id().ok_or(Error::CounterExhausted)?;
        let kem_alg = self.signed.kem.as_ref().map(|k| k.alg);
        let mut new = Self::new_signed(identity, id, rng, now);
        if let Some(alg) = kem_alg {
            let kid = self.take_id().ok_or(Error::CounterExhausted)?;
            new.kem = Some(Self::new_kem(identity, kid, alg, rng)?);
        }
        Ok(new)
    }

    /// A last-resort KEM prekey for a rotation (only a pool made by
    /// `new_pq` has one, which needs the feature `pq`).
    fn new_kem<R: CryptoRng + ?Sized>(
        identity: &Identity,
        id: u32,
        alg: KemAlgorithm,
        rng: &mut R,
    ) -> Result<KemKey, Error> {
        #[cfg(feature = "pq")]
        return KemKey::generate(identity, id, alg, rng);
        #[cfg(not(feature = "pq"))]
        {
            let _ = (identity, id, alg, rng);
            Err(Error::UnsupportedKem)
        }
    }

    /// Utilization and signed-prekey age.
    pub fn metrics(&self, now: UnixTime) -> PrekeyMetrics {
        let available = self.available();
        let used = (CAP as u32).saturating_sub(available);
        // used <= CAP, so the percentage is at most 100.
        let utilization_percent =
            u64::from(used).saturating_mul(100).checked_div(CAP as u64).map_or(100, |p| p.min(100) as u8);
        PrekeyMetrics {
            available,
            capacity: CAP as u32,
            utilization_percent,
            consumed_total: self.consumed_total,
            signed_prekey_age_secs: now.saturating_secs_since(self.signed.created),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use securemesh_core::envelope::Persist;
    use securemesh_core::testing::TestRng;
    use std::vec::Vec;

    fn state<const CAP: usize>(p: &PrekeyPool<CAP>) -> Vec<u8> {
        let mut buf = std::vec![0u8; PrekeyPool::<CAP>::MAX_ENCODED_LEN];
        let n = p.encode_state(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// Only the owner signs new prekeys; any other identity is refused and
    /// changes nothing (it used to sign prekeys the owner's bundles then
    /// carried, which no peer could verify).
    #[test]
    fn only_the_owner_rotates() {
        let mut rng = TestRng::new(7);
        let (bob, mallory) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
        let mut pool: PrekeyPool<2> = PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
        assert_eq!(pool.owner(), bob.public());
        assert_eq!(pool.bundle(None).identity(), bob.public());
        let before = state(&pool);
        assert_eq!(pool.rotate(&mallory, &mut rng, UnixTime(2)), Err(Error::WrongIdentity));
        let due = pool.poll_timeout().unwrap();
        assert_eq!(pool.handle_timeout(&mallory, &mut rng, due), Err(Error::WrongIdentity));
        assert_eq!(state(&pool), before);
        assert!(pool.poll_event().is_none());
        pool.handle_timeout(&bob, &mut rng, due).unwrap();
        assert!(matches!(pool.poll_event(), Some(PrekeyEvent::SignedPrekeyRotated { .. })));
        // The rotated prekey verifies under the owner, in a bundle.
        let mut buf = [0u8; crate::MAX_BUNDLE_LEN];
        let n = pool.bundle(pool.one_time_ids().next()).encode(&mut buf).unwrap();
        assert!(Bundle::decode(buf.get(..n).unwrap()).is_ok());
    }

    /// Identifiers are never reused: once `u32::MAX` is issued, refills
    /// add nothing and a rotation is `CounterExhausted`, state unchanged
    /// (they used to wrap to 1).
    #[test]
    fn identifiers_are_never_reused() {
        let mut rng = TestRng::new(8);
        let bob = Identity::generate(&mut rng);
        let mut pool: PrekeyPool<4> = PrekeyPool::new(&bob, &mut rng, UnixTime(1), PrekeyConfig::default());
        for id in pool.one_time_ids().collect::<Vec<_>>() {
            pool.consume_one_time(id);
        }
        pool.next_id = u32::MAX - 1;
        assert_eq!(pool.refill(&mut rng), 2);
        let mut ids: Vec<u32> = pool.one_time_ids().collect();
        ids.sort_unstable();
        assert_eq!(ids, [u32::MAX - 1, u32::MAX]);
        assert_eq!(pool.next_id, 0);
        let before = state(&pool);
        assert_eq!(pool.rotate(&bob, &mut rng, UnixTime(2)), Err(Error::CounterExhausted));
        let due = pool.poll_timeout().unwrap();
        assert_eq!(pool.handle_timeout(&bob, &mut rng, due), Err(Error::CounterExhausted));
        assert_eq!(state(&pool), before);
        pool.consume_one_time(u32::MAX);
        assert_eq!(pool.refill(&mut rng), 0);
        // The exhausted pool persists and restores as such.
        let back = PrekeyPool::<4>::decode_state(&state(&pool)).unwrap();
        assert_eq!(back.next_id, 0);
    }
}

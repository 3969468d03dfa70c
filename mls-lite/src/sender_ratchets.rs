//! Per-sender ratchet state of one epoch's secret tree (RFC 9420 §9.1,
//! §9.2): keys are derived lazily per sender and kind, each generation's
//! key is used at most once and erased after use (forward secrecy within
//! the epoch), and a bounded window keeps the keys of generations skipped
//! over, for messages that arrive out of order.
//!
//! Reading is split from consuming so decryption stays a transaction:
//! [`SenderRatchets::key_nonce`] (also the [`crate::framing::SenderKeys`]
//! implementation) changes nothing; call [`SenderRatchets::consume`] only
//! after the whole message authenticated.

use crate::crypto::Secret32;
use crate::error::Error;
use crate::secret_tree::{KeyNonce, Ratchet, RatchetKind, leaf_secret};

struct Kept {
    generation: u32,
    key: KeyNonce,
    seq: u64,
}

struct SenderState<const WINDOW: usize> {
    next: Ratchet,
    window: [Option<Kept>; WINDOW],
    seq: u64,
}

/// Ratchet state for up to `MAX_LEAVES` senders, each with a window of
/// `WINDOW` skipped keys per kind (defaults 64 and 4).
///
/// ```
/// use securemesh_core::Secret;
/// use securemesh_mls_lite::secret_tree::RatchetKind;
/// use securemesh_mls_lite::sender_ratchets::SenderRatchets;
/// let mut r: SenderRatchets<4, 4> = SenderRatchets::new(&Secret::new([7u8; 32]), 4, 100);
/// let k2 = r.key_nonce(1, 2, RatchetKind::Application)?; // out of order: 2 before 0
/// r.consume(1, 2, RatchetKind::Application)?;
/// assert!(r.key_nonce(1, 0, RatchetKind::Application).is_ok()); // kept in the window
/// assert!(r.consume(1, 2, RatchetKind::Application).is_err()); // used once only
/// # let _ = k2;
/// # Ok::<(), securemesh_mls_lite::Error>(())
/// ```
pub struct SenderRatchets<const MAX_LEAVES: usize = 64, const WINDOW: usize = 4> {
    encryption_secret: Secret32,
    n_leaves: u32,
    max_ahead: u32,
    slots: [[Option<SenderState<WINDOW>>; 2]; MAX_LEAVES],
}

fn kind_index(kind: RatchetKind) -> usize {
    match kind {
        RatchetKind::Handshake => 0,
        RatchetKind::Application => 1,
    }
}

impl<const MAX_LEAVES: usize, const WINDOW: usize> SenderRatchets<MAX_LEAVES, WINDOW> {
    /// The state of an epoch whose secret tree is rooted at
    /// `encryption_secret` over `n_leaves` leaves. A message may be at most
    /// `max_ahead` generations beyond the next expected one (bounding the
    /// work a forged generation can cause).
    pub fn new(encryption_secret: &Secret32, n_leaves: u32, max_ahead: u32) -> Self {
        SenderRatchets {
            encryption_secret: encryption_secret.clone(),
            n_leaves,
            max_ahead,
            slots: [const { [const { None }, const { None }] }; MAX_LEAVES],
        }
    }

    fn fresh(&self, leaf: u32, kind: RatchetKind) -> Result<Ratchet, Error> {
        if leaf as usize >= MAX_LEAVES {
            return Err(Error::Capacity);
        }
        Ratchet::new(&leaf_secret(&self.encryption_secret, leaf, self.n_leaves)?, kind)
    }

    fn state(&self, leaf: u32, kind: RatchetKind) -> Option<&SenderState<WINDOW>> {
        self.slots.get(leaf as usize).and_then(|s| s.get(kind_index(kind))).and_then(Option::as_ref)
    }

    /// The key and nonce of `(leaf, generation, kind)`, without using it:
    /// from the window for an earlier generation (an error if it was used or
    /// evicted), or derived ahead on a copy of the ratchet.
    pub fn key_nonce(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<KeyNonce, Error> {
        let fresh;
        let (next, window) = match self.state(leaf, kind) {
            Some(s) => (&s.next, Some(&s.window)),
            None => {
                fresh = self.fresh(leaf, kind)?;
                (&fresh, None)
            }
        };
        if generation < next.generation() {
            return window
                .and_then(|w| w.iter().flatten().find(|k| k.generation == generation))
                .map(|k| k.key.clone())
                .ok_or(Error::Decrypt);
        }
        if generation - next.generation() > self.max_ahead {
            return Err(Error::Capacity);
        }
        let mut r = next.duplicate();
        r.advance_to(generation)?;
        r.current()
    }

    /// Mark `(leaf, generation, kind)` used, after its message
    /// authenticated: its key is erased; keys of generations skipped over
    /// are kept in the window (the oldest evicted when it is full).
    pub fn consume(&mut self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<(), Error> {
        if self.state(leaf, kind).is_none() {
            let next = self.fresh(leaf, kind)?;
            let slot = self
                .slots
                .get_mut(leaf as usize)
                .and_then(|s| s.get_mut(kind_index(kind)))
                .ok_or(Error::Capacity)?;
            *slot = Some(SenderState { next, window: [const { None }; WINDOW], seq: 0 });
        }
        let max_ahead = self.max_ahead;
        let s = self
            .slots
            .get_mut(leaf as usize)
            .and_then(|s| s.get_mut(kind_index(kind)))
            .and_then(Option::as_mut)
            .ok_or(Error::Capacity)?;
        if generation < s.next.generation() {
            let slot = s.window.iter_mut().find(|k| k.as_ref().is_some_and(|k| k.generation == generation));
            return match slot {
                Some(k) => {
                    *k = None;
                    Ok(())
                }
                None => Err(Error::Decrypt),
            };
        }
        if generation - s.next.generation() > max_ahead {
            return Err(Error::Capacity);
        }
        while s.next.generation() < generation {
            let key = s.next.current()?;
            let kept = Kept { generation: s.next.generation(), key, seq: s.seq };
            s.seq += 1;
            let slot = match s.window.iter().position(Option::is_none) {
                Some(free) => free,
                None => s
                    .window
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, k)| k.as_ref().map_or(0, |k| k.seq))
                    .map_or(0, |(i, _)| i),
            };
            if let Some(w) = s.window.get_mut(slot) {
                *w = Some(kept);
            }
            s.next.advance()?;
        }
        // Erase the key just used.
        s.next.advance()
    }
}

impl<const MAX_LEAVES: usize, const WINDOW: usize> crate::framing::SenderKeys
    for SenderRatchets<MAX_LEAVES, WINDOW>
{
    fn key_nonce(&self, leaf: u32, generation: u32, kind: RatchetKind) -> Result<KeyNonce, Error> {
        SenderRatchets::key_nonce(self, leaf, generation, kind)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::framing::{SecretTreeKeys, SenderKeys};
    use securemesh_core::Secret;

    fn same(a: &KeyNonce, b: &KeyNonce) -> bool {
        a.key.expose() == b.key.expose() && a.nonce == b.nonce
    }

    #[test]
    fn matches_the_stateless_derivation_in_any_order_and_uses_each_key_once() {
        let secret = Secret::new([0x5au8; 32]);
        let stateless = SecretTreeKeys::new(&secret, 8, 1000);
        let mut r: SenderRatchets<8, 4> = SenderRatchets::new(&secret, 8, 1000);
        let kind = RatchetKind::Application;
        // Generations 3, 0, 2, 1 of leaf 5: a window of 4 keeps them all.
        for g in [3u32, 0, 2, 1] {
            let k = r.key_nonce(5, g, kind).unwrap();
            assert!(same(&k, &stateless.key_nonce(5, g, kind).unwrap()), "generation {g}");
            r.consume(5, g, kind).unwrap();
            assert_eq!(r.consume(5, g, kind), Err(Error::Decrypt), "generation {g} used twice");
            assert!(r.key_nonce(5, g, kind).is_err());
        }
        // The other kind and other leaves are independent.
        let h = r.key_nonce(5, 0, RatchetKind::Handshake).unwrap();
        assert!(same(&h, &stateless.key_nonce(5, 0, RatchetKind::Handshake).unwrap()));
    }

    #[test]
    fn window_evicts_the_oldest_and_bounds_the_look_ahead() {
        let secret = Secret::new([1u8; 32]);
        let mut r: SenderRatchets<2, 2> = SenderRatchets::new(&secret, 2, 10);
        let kind = RatchetKind::Handshake;
        r.consume(0, 4, kind).unwrap(); // skips 0..4: the window keeps 2 and 3
        assert!(r.key_nonce(0, 0, kind).is_err());
        assert!(r.key_nonce(0, 1, kind).is_err());
        assert!(r.key_nonce(0, 2, kind).is_ok());
        assert!(r.key_nonce(0, 3, kind).is_ok());
        assert_eq!(r.key_nonce(0, 16, kind).err(), Some(Error::Capacity));
        assert!(r.key_nonce(0, 15, kind).is_ok());
        // Reading changes nothing: generation 3 is still there after reads.
        assert!(r.key_nonce(0, 3, kind).is_ok());
        r.consume(0, 3, kind).unwrap();
        assert!(r.key_nonce(0, 3, kind).is_err());
        assert_eq!(r.key_nonce(2, 0, kind).err(), Some(Error::Capacity));
    }
}

//! Skipped message keys in fixed-capacity storage (Double Ratchet §3.2,
//! §6.1): at most `CAP` keys in all, the oldest evicted first.

use crate::kdf::Key32;

/// One stored key: the chain it belongs to (the sender's ratchet public key,
/// or its header key with header encryption), the message number, the key.
pub(crate) struct Entry {
    pub(crate) chain: Key32,
    pub(crate) n: u32,
    pub(crate) mk: Key32,
    /// Insertion order, for oldest-first eviction.
    pub(crate) seq: u64,
}

/// Fixed-capacity store of skipped message keys.
pub struct SkippedKeys<const CAP: usize> {
    pub(crate) entries: [Option<Entry>; CAP],
    pub(crate) next_seq: u64,
}

impl<const CAP: usize> Default for SkippedKeys<CAP> {
    fn default() -> Self {
        SkippedKeys { entries: [const { None }; CAP], next_seq: 0 }
    }
}

impl<const CAP: usize> SkippedKeys<CAP> {
    /// Number of stored keys.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn find(&self, chain: &[u8; 32], n: u32) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.as_ref().is_some_and(|e| e.n == n && securemesh_core::ct_eq(e.chain.expose(), chain))
        })
    }

    /// The chain of the key in slot `i`.
    pub(crate) fn chain(&self, i: usize) -> Option<&Key32> {
        self.entries.get(i).and_then(|e| e.as_ref()).map(|e| &e.chain)
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Key32> {
        self.entries.get(i).and_then(|e| e.as_ref()).map(|e| &e.mk)
    }

    pub(crate) fn remove(&mut self, i: usize) {
        if let Some(slot) = self.entries.get_mut(i) {
            *slot = None;
        }
    }

    /// The stored entries (for header-encrypted lookups and persistence).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (i, e)))
    }

    /// Store a key, evicting the oldest when full.
    pub(crate) fn insert(&mut self, chain: &[u8; 32], n: u32, mk: Key32) {
        if CAP == 0 {
            return;
        }
        let seq = self.next_seq;
        // 2^64 insertions never happen; saturating keeps it panic-free.
        self.next_seq = self.next_seq.saturating_add(1);
        let slot = match self.entries.iter().position(Option::is_none) {
            Some(free) => free,
            None => self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.as_ref().map_or(0, |e| e.seq))
                .map_or(0, |(i, _)| i),
        };
        if let Some(s) = self.entries.get_mut(slot) {
            *s = Some(Entry { chain: Key32::new(*chain), n, mk, seq });
        }
    }
}

//! [`Slot`]: an `Option` for the big statics of the ratchet and mesh runs.

/// A value or nothing, like `Option`, but an empty slot is all zero
/// bytes (`Empty` = 0): `None` of an `Option` of these types is a niche
/// value instead, which puts the statics that hold them in `.data` (6 KB
/// of flash for the ratchet's initial value) rather than `.bss`. The tag
/// is 8 bytes, not 1: with a 1-byte tag LLVM builds `Full(session)` in a
/// stack temporary, a second copy of the session (2.3 KB) under
/// `respond`.
#[repr(C, u64)]
pub enum Slot<T> {
    /// Nothing (all zero bytes).
    Empty = 0,
    /// A value.
    Full(T),
}

impl<T> Slot<T> {
    /// The value, if any.
    pub fn get(&self) -> Option<&T> {
        match self {
            Slot::Full(t) => Some(t),
            Slot::Empty => None,
        }
    }

    /// The value, if any, mutably.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        match self {
            Slot::Full(t) => Some(t),
            Slot::Empty => None,
        }
    }
}

//! A fixed-capacity event queue for the `poll_event()` side of the state
//! machines: oldest first; when full, the oldest event is dropped so the
//! newest is never lost.

/// Up to `N` pending events of type `E`.
///
/// ```
/// use securemesh_core::events::EventQueue;
/// let mut q: EventQueue<u8, 2> = EventQueue::new();
/// q.push(1);
/// q.push(2);
/// q.push(3); // full: 1 is dropped
/// assert_eq!((q.pop(), q.pop(), q.pop()), (Some(2), Some(3), None));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventQueue<E: Copy, const N: usize> {
    slots: [Option<E>; N],
}

impl<E: Copy, const N: usize> Default for EventQueue<E, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Copy, const N: usize> EventQueue<E, N> {
    /// How many events the queue holds at most.
    pub const CAPACITY: usize = N;

    /// An empty queue.
    pub const fn new() -> Self {
        EventQueue { slots: [None; N] }
    }

    /// Append `e`, dropping the oldest event if the queue is full.
    pub fn push(&mut self, e: E) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.is_none()) {
            *slot = Some(e);
        } else if N > 0 {
            self.slots.rotate_left(1);
            if let Some(last) = self.slots.last_mut() {
                *last = Some(e);
            }
        }
    }

    /// Remove and return the oldest event.
    pub fn pop(&mut self) -> Option<E> {
        let first = self.slots.first_mut()?.take();
        self.slots.rotate_left(1);
        first
    }

    /// The pending events, oldest first (for persistence).
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.slots.iter().flatten()
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

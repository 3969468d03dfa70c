//! Envelopes handed out by the agent for the delivery service and not
//! yet accepted by it.
//!
//! Once [`poll_transmit`](securemesh::Agent::poll_transmit) hands an
//! envelope out, the stored state counts it as sent: if the deposit
//! then fails, or the host crashes before it, the message would be lost
//! for good. So a mailbox or group envelope is written here (one file,
//! `outbox` in the state directory, replaced atomically) before the
//! deposit is tried, and removed once the service accepted it; what is
//! left is tried again, in order, later and at the next start.
//!
//! File format: per entry, a kind byte (0 mailbox, 1 group), the number
//! of recipients (u16 big-endian), their 32-byte peer ids, the
//! envelope's length (u32 big-endian) and the envelope.

use crate::store::{StoreError, write_atomic};
use securemesh::PeerId;
use securemesh::envelope::MAX_ENVELOPE_LEN;
use std::path::{Path, PathBuf};

/// At most this many envelopes wait (beyond it a deposit that fails is
/// dropped and counted as a send failure).
pub const MAX_OUTBOX: usize = 256;

/// One envelope waiting for the delivery service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// A group envelope ([`deposit_group`](crate::delivery::DeliveryService::deposit_group))
    /// or a mailbox one ([`deposit`](crate::delivery::DeliveryService::deposit)).
    pub group: bool,
    /// Its recipients (one for a mailbox envelope).
    pub to: Vec<PeerId>,
    /// The envelope.
    pub envelope: Vec<u8>,
}

/// The outbox file and what it holds.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    entries: Vec<Pending>,
}

impl Outbox {
    /// The outbox at `path` (empty when the file does not exist).
    ///
    /// ```
    /// use securemesh_host::outbox::{Outbox, Pending};
    /// let dir = std::env::temp_dir().join(format!("outbox-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let mut o = Outbox::open(&dir.join("outbox"))?;
    /// o.push(Pending { group: false, to: vec![securemesh::PeerId([7; 32])], envelope: b"env".to_vec() })?;
    /// assert_eq!(Outbox::open(&dir.join("outbox"))?.entries(), o.entries());
    /// o.pop_front()?;
    /// assert!(Outbox::open(&dir.join("outbox"))?.entries().is_empty());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(StoreError::Io { path: path.into(), error }),
        };
        let entries = decode(&bytes).ok_or_else(|| StoreError::BadOutbox(path.into()))?;
        Ok(Outbox { path: path.into(), entries })
    }

    /// What waits, oldest first.
    pub fn entries(&self) -> &[Pending] {
        &self.entries
    }

    /// Add `p` at the end and store the outbox; refused (nothing
    /// changed) when [`MAX_OUTBOX`] wait already.
    pub fn push(&mut self, p: Pending) -> Result<(), StoreError> {
        if self.entries.len() >= MAX_OUTBOX {
            return Err(StoreError::OutboxFull(self.path.clone()));
        }
        self.entries.push(p);
        if let Err(e) = write_atomic(&self.path, &encode(&self.entries)) {
            self.entries.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Remove the oldest entry (the service accepted it) and store the
    /// outbox.
    pub fn pop_front(&mut self) -> Result<(), StoreError> {
        self.remove(0)
    }

    /// Remove entry `i` (the service accepted it; nothing if there is no
    /// such entry) and store the outbox; on a failed store nothing
    /// changed.
    ///
    /// ```
    /// use securemesh_host::outbox::{Outbox, Pending};
    /// let dir = std::env::temp_dir().join(format!("outbox-remove-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let mut o = Outbox::open(&dir.join("outbox"))?;
    /// for e in [b"a", b"b", b"c"] {
    ///     o.push(Pending { group: false, to: vec![securemesh::PeerId([7; 32])], envelope: e.to_vec() })?;
    /// }
    /// o.remove(1)?;
    /// let left: Vec<_> = Outbox::open(&dir.join("outbox"))?.entries().iter().map(|p| p.envelope.clone()).collect();
    /// assert_eq!(left, [b"a".to_vec(), b"c".to_vec()]);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&mut self, i: usize) -> Result<(), StoreError> {
        if i >= self.entries.len() {
            return Ok(());
        }
        let entry = self.entries.remove(i);
        if let Err(e) = write_atomic(&self.path, &encode(&self.entries)) {
            self.entries.insert(i, entry);
            return Err(e);
        }
        Ok(())
    }
}

fn encode(entries: &[Pending]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in entries {
        out.push(u8::from(p.group));
        out.extend_from_slice(&u16::try_from(p.to.len()).unwrap_or(u16::MAX).to_be_bytes());
        for id in p.to.iter().take(usize::from(u16::MAX)) {
            out.extend_from_slice(&id.0);
        }
        out.extend_from_slice(&u32::try_from(p.envelope.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&p.envelope);
    }
    out
}

fn decode(mut bytes: &[u8]) -> Option<Vec<Pending>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = b.split_at_checked(n)?;
        *b = rest;
        Some(head)
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let group = match take(&mut bytes, 1)? {
            [0] => false,
            [1] => true,
            _ => return None,
        };
        let n = u16::from_be_bytes(take(&mut bytes, 2)?.try_into().ok()?);
        let mut to = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            to.push(PeerId(take(&mut bytes, 32)?.try_into().ok()?));
        }
        let len = usize::try_from(u32::from_be_bytes(take(&mut bytes, 4)?.try_into().ok()?)).ok()?;
        if len > MAX_ENVELOPE_LEN || out.len() >= MAX_OUTBOX {
            return None;
        }
        out.push(Pending { group, to, envelope: take(&mut bytes, len)?.to_vec() });
    }
    Some(out)
}

//! Authorization bound to transport identity: peer id -> roles ->
//! permitted message kinds.
//!
//! A peer is named by its [`PeerId`], the hash of the identity key that
//! its channel authenticated (the Noise static key checked against the
//! identity, or the X3DH identity). The policy never sees a bearer token
//! or API key: what a peer may do follows from who the channel proved it
//! is.
//!
//! **Default deny.** A peer without an entry is refused
//! ([`DenyReason::UnknownPeer`]); a peer whose roles do not permit a
//! message kind is refused ([`DenyReason::NotPermitted`]); kinds 64 and
//! above are reserved and never permitted.

use crate::peer::PeerId;
use securemesh_core::Error as CoreError;
use securemesh_core::codec::{Reader, Writer};

/// The kind (or topic) of an application message: the first byte of every
/// decrypted payload. Kinds `0..=63` can be permitted; `64..=255` are
/// reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKind(pub u8);

impl MessageKind {
    /// Number of kinds a [`Permissions`] set can hold.
    pub const COUNT: u8 = 64;

    /// Whether the kind is outside the reserved range.
    pub const fn is_valid(self) -> bool {
        self.0 < Self::COUNT
    }
}

/// Bit `n` of a 64-bit mask, 0 for `n >= 64`.
const fn bit64(n: u8) -> u64 {
    match 1u64.checked_shl(n as u32) {
        Some(b) => b,
        None => 0,
    }
}

/// Bit `n` of a 32-bit mask, 0 for `n >= 32`.
const fn bit32(n: u8) -> u32 {
    match 1u32.checked_shl(n as u32) {
        Some(b) => b,
        None => 0,
    }
}

/// A set of message kinds, as a 64-bit mask (bit `k` permits kind `k`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Permissions(pub u64);

impl Permissions {
    /// No kind.
    pub const NONE: Permissions = Permissions(0);
    /// Every valid kind.
    pub const ALL: Permissions = Permissions(u64::MAX);

    /// The set of `kinds` (reserved kinds are left out).
    pub const fn of(kinds: &[MessageKind]) -> Self {
        let mut mask = 0u64;
        let mut rest = kinds;
        while let [k, tail @ ..] = rest {
            mask |= bit64(k.0);
            rest = tail;
        }
        Permissions(mask)
    }

    /// Whether `kind` is in the set.
    pub const fn allows(self, kind: MessageKind) -> bool {
        self.0 & bit64(kind.0) != 0
    }

    /// The union of two sets.
    pub const fn union(self, other: Permissions) -> Self {
        Permissions(self.0 | other.0)
    }
}

/// A role: an index into the policy's role table, `0..MAX_ROLES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Role(pub u8);

/// Number of roles a policy defines.
pub const MAX_ROLES: usize = 32;

/// A set of roles, as a 32-bit mask (bit `r` is role `r`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Roles(pub u32);

impl Roles {
    /// The set of `roles` (roles out of range are left out).
    pub const fn of(roles: &[Role]) -> Self {
        let mut mask = 0u32;
        let mut rest = roles;
        while let [r, tail @ ..] = rest {
            mask |= bit32(r.0);
            rest = tail;
        }
        Roles(mask)
    }

    /// Whether `role` is in the set.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & bit32(role.0) != 0
    }
}

/// Why a message (or a session) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The peer has no entry in the policy (default deny), or is not in
    /// the directory.
    UnknownPeer,
    /// None of the peer's roles permits this kind.
    NotPermitted {
        /// The refused kind.
        kind: MessageKind,
    },
    /// The payload authenticated but carries no kind byte.
    Malformed,
}

impl core::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DenyReason::UnknownPeer => f.write_str("peer unknown to the policy (default deny)"),
            DenyReason::NotPermitted { kind } => {
                write!(f, "no role of the peer permits message kind {}", kind.0)
            }
            DenyReason::Malformed => f.write_str("authenticated payload without a message kind"),
        }
    }
}

/// A refusal by the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    /// Why.
    pub reason: DenyReason,
}

impl core::fmt::Display for Denied {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "denied: {}", self.reason)
    }
}

impl core::error::Error for Denied {}

/// Why a policy change was refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// Every entry holds another peer.
    Full,
    /// The role is not below [`MAX_ROLES`].
    RoleOutOfRange,
}

impl core::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PolicyError::Full => f.write_str("policy table full"),
            PolicyError::RoleOutOfRange => write!(f, "role not below {MAX_ROLES}"),
        }
    }
}

impl core::error::Error for PolicyError {}

/// The authorization table: up to `N` peers with their roles, and what
/// each of [`MAX_ROLES`] roles permits.
///
/// ```
/// use securemesh::policy::{DenyReason, MessageKind, Permissions, Policy, Role, Roles};
/// use securemesh::PeerId;
/// const TASK: MessageKind = MessageKind(1);
/// const TELEMETRY: MessageKind = MessageKind(2);
/// const OPERATOR: Role = Role(0);
/// const SENSOR: Role = Role(1);
///
/// let mut policy: Policy<4> = Policy::new();
/// policy.define_role(OPERATOR, Permissions::of(&[TASK, TELEMETRY]))?;
/// policy.define_role(SENSOR, Permissions::of(&[TELEMETRY]))?;
/// let (op, sensor) = (PeerId([1; 32]), PeerId([2; 32]));
/// policy.grant(op, Roles::of(&[OPERATOR]))?;
/// policy.grant(sensor, Roles::of(&[SENSOR]))?;
///
/// assert!(policy.check(&op, TASK).is_ok());
/// assert_eq!(policy.check(&sensor, TASK).unwrap_err().reason, DenyReason::NotPermitted { kind: TASK });
/// assert_eq!(policy.check(&PeerId([3; 32]), TELEMETRY).unwrap_err().reason, DenyReason::UnknownPeer);
/// # Ok::<(), securemesh::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Policy<const N: usize> {
    roles: [Permissions; MAX_ROLES],
    grants: [Option<(PeerId, Roles)>; N],
}

impl<const N: usize> Default for Policy<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Policy<N> {
    /// A policy that denies everything.
    pub const fn new() -> Self {
        Policy { roles: [Permissions::NONE; MAX_ROLES], grants: [None; N] }
    }

    /// Set what `role` permits (replacing its previous permissions).
    pub fn define_role(&mut self, role: Role, permits: Permissions) -> Result<(), PolicyError> {
        *self.roles.get_mut(usize::from(role.0)).ok_or(PolicyError::RoleOutOfRange)? = permits;
        Ok(())
    }

    /// What `role` permits.
    pub fn role(&self, role: Role) -> Permissions {
        self.roles.get(usize::from(role.0)).copied().unwrap_or(Permissions::NONE)
    }

    /// Give `peer` exactly `roles` (replacing its previous roles). An
    /// empty set keeps the entry: the peer is known, and may open a
    /// session, but every message kind is denied.
    pub fn grant(&mut self, peer: PeerId, roles: Roles) -> Result<(), PolicyError> {
        if let Some(entry) = self.grants.iter_mut().flatten().find(|(p, _)| *p == peer) {
            entry.1 = roles;
            return Ok(());
        }
        let slot = self.grants.iter_mut().find(|s| s.is_none()).ok_or(PolicyError::Full)?;
        *slot = Some((peer, roles));
        Ok(())
    }

    /// Remove `peer`'s entry (it is then denied everything); returns
    /// whether it had one.
    pub fn revoke(&mut self, peer: &PeerId) -> bool {
        match self.grants.iter_mut().find(|s| s.is_some_and(|(p, _)| p == *peer)) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    /// The roles of `peer`, if it has an entry.
    pub fn roles_of(&self, peer: &PeerId) -> Option<Roles> {
        self.grants.iter().flatten().find(|(p, _)| p == peer).map(|(_, r)| *r)
    }

    /// Whether `peer` has an entry (it may open sessions).
    pub fn is_known(&self, peer: &PeerId) -> bool {
        self.roles_of(peer).is_some()
    }

    /// The kinds `peer` may send: the union over its roles.
    pub fn permissions_of(&self, peer: &PeerId) -> Permissions {
        let Some(roles) = self.roles_of(peer) else { return Permissions::NONE };
        self.roles
            .iter()
            .zip(0u8..)
            .filter(|(_, r)| roles.contains(Role(*r)))
            .fold(Permissions::NONE, |acc, (p, _)| acc.union(*p))
    }

    /// May `peer` send a message of `kind`? Unknown peers and reserved
    /// kinds are denied.
    pub fn check(&self, peer: &PeerId, kind: MessageKind) -> Result<(), Denied> {
        if !self.is_known(peer) {
            return Err(Denied { reason: DenyReason::UnknownPeer });
        }
        if self.permissions_of(peer).allows(kind) {
            Ok(())
        } else {
            Err(Denied { reason: DenyReason::NotPermitted { kind } })
        }
    }
}

/// Persisted form of the policy (inside the agent record, see
/// [`crate::persist`]): `roles 32 * u64 | count u16 | count * (peer [32] | roles u32)`.
impl<const N: usize> Policy<N> {
    /// Largest encoding.
    pub(crate) const MAX_ENCODED_LEN: usize = MAX_ROLES * 8 + 2 + N * (32 + 4);

    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Result<(), CoreError> {
        for p in &self.roles {
            w.write_u64(p.0)?;
        }
        let count = self.grants.iter().flatten().count();
        w.write_u16(u16::try_from(count).map_err(|_| CoreError::LengthOverflow)?)?;
        for (peer, roles) in self.grants.iter().flatten() {
            w.write_bytes(&peer.0)?;
            w.write_u32(roles.0)?;
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, CoreError> {
        let mut policy = Policy::new();
        for p in policy.roles.iter_mut() {
            *p = Permissions(r.read_u64()?);
        }
        let count = usize::from(r.read_u16()?);
        if count > N {
            return Err(CoreError::LengthOverflow);
        }
        for slot in policy.grants.iter_mut().take(count) {
            *slot = Some((PeerId(r.read_array()?), Roles(r.read_u32()?)));
        }
        for (i, (p, _)) in policy.grants.iter().flatten().enumerate() {
            if policy.grants.iter().flatten().skip(i.saturating_add(1)).any(|(q, _)| q == p) {
                return Err(CoreError::InvalidValue);
            }
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_deny_and_union_of_roles() {
        let mut p: Policy<2> = Policy::new();
        let a = PeerId([1; 32]);
        assert_eq!(p.check(&a, MessageKind(0)), Err(Denied { reason: DenyReason::UnknownPeer }));
        p.grant(a, Roles(0)).unwrap();
        assert!(p.is_known(&a));
        assert_eq!(
            p.check(&a, MessageKind(0)),
            Err(Denied { reason: DenyReason::NotPermitted { kind: MessageKind(0) } })
        );
        p.define_role(Role(3), Permissions::of(&[MessageKind(5)])).unwrap();
        p.define_role(Role(31), Permissions::of(&[MessageKind(63)])).unwrap();
        p.grant(a, Roles::of(&[Role(3), Role(31)])).unwrap();
        assert!(p.check(&a, MessageKind(5)).is_ok());
        assert!(p.check(&a, MessageKind(63)).is_ok());
        assert!(p.check(&a, MessageKind(6)).is_err());
        assert_eq!(p.define_role(Role(32), Permissions::ALL), Err(PolicyError::RoleOutOfRange));
        // Reserved kinds are never permitted, even by ALL.
        p.define_role(Role(3), Permissions::ALL).unwrap();
        assert!(p.check(&a, MessageKind(64)).is_err());
        assert!(p.check(&a, MessageKind(255)).is_err());
        assert_eq!(Permissions::of(&[MessageKind(64)]), Permissions::NONE);
        assert_eq!(Roles::of(&[Role(40)]), Roles(0));
    }

    #[test]
    fn bounded_and_revocable() {
        let mut p: Policy<1> = Policy::new();
        p.grant(PeerId([1; 32]), Roles(1)).unwrap();
        assert_eq!(p.grant(PeerId([2; 32]), Roles(1)), Err(PolicyError::Full));
        p.grant(PeerId([1; 32]), Roles(2)).unwrap();
        assert_eq!(p.roles_of(&PeerId([1; 32])), Some(Roles(2)));
        assert!(p.revoke(&PeerId([1; 32])));
        assert!(!p.revoke(&PeerId([1; 32])));
        assert!(!p.is_known(&PeerId([1; 32])));
    }
}

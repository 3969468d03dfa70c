//! The product's metrics, as a plain `Copy` struct read with
//! [`Agent::metrics`](crate::Agent::metrics).
//!
//! Counters live as long as the process (they are not persisted) and
//! saturate. Failure counters count refused *inputs*: a tampered or
//! replayed envelope is an error that leaves the protocol state
//! unchanged, but it is counted here, since counting failures is what a
//! failure counter is for.

use crate::envelope::ChannelKind;

/// Whether a channel's key agreement resists a quantum adversary (the
/// product's "post-quantum status" of a channel; see [`crate::pq`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PqStatus {
    /// Classical key agreement only (X25519: X3DH, Noise IK or XX).
    #[default]
    Classical,
    /// A hybrid of X25519 and ML-KEM-768: a ratchet session opened with
    /// PQXDH, a Noise transport of an `hfs` handshake.
    Hybrid,
}

impl PqStatus {
    /// The status as a lower-case label (`"classical"`, `"hybrid"`), e.g.
    /// for a metrics exporter.
    ///
    /// ```
    /// use securemesh::PqStatus;
    /// assert_eq!(PqStatus::Hybrid.as_str(), "hybrid");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            PqStatus::Classical => "classical",
            PqStatus::Hybrid => "hybrid",
        }
    }
}

/// Live channels of one kind by post-quantum status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PqCounts {
    /// Channels with a classical key agreement.
    pub classical: u32,
    /// Channels with a hybrid key agreement.
    pub hybrid: u32,
}

impl PqCounts {
    /// Count one channel of `status`.
    pub(crate) fn add(&mut self, status: PqStatus) {
        let c = match status {
            PqStatus::Classical => &mut self.classical,
            PqStatus::Hybrid => &mut self.hybrid,
        };
        *c = c.saturating_add(1);
    }

    /// The weakest status among the channels: `Hybrid` only if there is
    /// at least one and all are hybrid.
    ///
    /// ```
    /// use securemesh::metrics::{PqCounts, PqStatus};
    /// assert_eq!(PqCounts { classical: 0, hybrid: 2 }.weakest(), PqStatus::Hybrid);
    /// assert_eq!(PqCounts { classical: 1, hybrid: 2 }.weakest(), PqStatus::Classical);
    /// assert_eq!(PqCounts::default().weakest(), PqStatus::Classical);
    /// ```
    pub const fn weakest(&self) -> PqStatus {
        if self.hybrid > 0 && self.classical == 0 { PqStatus::Hybrid } else { PqStatus::Classical }
    }
}

/// Counters of one channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelMetrics {
    /// Application messages encrypted and queued (Noise: sealed when its
    /// transport exists, so a message waiting for a handshake counts when
    /// the handshake completes).
    pub sent: u64,
    /// Application messages delivered.
    pub received: u64,
    /// Inputs refused: failed decryption, unknown session, handshakes
    /// failed or timed out, refused identities.
    pub failures: u64,
    /// Messages and sessions refused by the policy.
    pub denied: u64,
    /// Ratchet heartbeats (empty messages) sent by the agent.
    pub heartbeats_sent: u64,
    /// Ratchet heartbeats received (authenticated, never delivered).
    pub heartbeats_received: u64,
}

/// Everything the agent measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Noise channels (handshakes and transports).
    pub noise: ChannelMetrics,
    /// Ratchet channels.
    pub ratchet: ChannelMetrics,
    /// MLS groups (application messages; failures and denials of every
    /// group envelope).
    pub mls: ChannelMetrics,
    /// Groups the agent is a member of.
    pub groups: u32,
    /// Commits the agent sent (merged or not).
    pub group_commits_sent: u64,
    /// Commits of ours discarded because another one of the same epoch
    /// was ordered first.
    pub group_commits_discarded: u64,
    /// Epochs entered (commits merged or followed, over all groups).
    pub group_epoch_changes: u64,
    /// KeyPackages of ours waiting for a Welcome.
    pub key_packages_available: u32,
    /// Noise handshakes completed.
    pub handshakes_completed: u64,
    /// Duration of the last completed handshake, from its first message
    /// (sent or received) to completion, in ms of the caller's clock.
    pub handshake_latency_last_ms: Option<u64>,
    /// The longest such duration.
    pub handshake_latency_max_ms: u64,
    /// Ratchet sessions in the table.
    pub ratchet_sessions: u32,
    /// Age of the oldest ratchet state: the longest time since a
    /// session's last DH ratchet step (at the latest `now` it saw), in ms.
    /// The longer, the longer a stolen state would stay useful; the
    /// heartbeat bounds it.
    pub ratchet_state_age_max_ms: Option<u64>,
    /// DH ratchet steps over all sessions.
    pub ratchet_steps: u64,
    /// One-time prekeys available.
    pub prekeys_available: u32,
    /// One-time prekey capacity of the pool.
    pub prekeys_capacity: u32,
    /// One-time prekeys consumed since the pool was created.
    pub prekeys_consumed_total: u64,
    /// Pool refills done by the agent.
    pub prekey_refills: u64,
    /// One-time ML-KEM-768 prekeys available (a PQXDH pool; 0 otherwise).
    pub kem_prekeys_available: u32,
    /// Refills of the one-time KEM prekeys.
    pub kem_prekey_refills: u64,
    /// Signed prekey rotations.
    pub signed_prekey_rotations: u64,
    /// Ratchet sessions this agent opened because a peer sent on a
    /// session it had lost ([`Event::ReestablishRequested`](crate::Event::ReestablishRequested)).
    pub reestablish_requested: u64,
    /// Ratchet sessions a peer opened to replace one it had lost
    /// ([`Event::SessionReestablished`](crate::Event::SessionReestablished)).
    pub reestablish_accepted: u64,
    /// Records handed out by `poll_persist`.
    pub records_persisted: u64,
    /// Post-quantum status of the Noise channel: the weakest of its live
    /// transports ([`PqCounts::weakest`] of
    /// [`noise_channels`](Self::noise_channels)).
    pub noise_pq: PqStatus,
    /// Post-quantum status of the ratchet channel: the weakest of its
    /// sessions.
    pub ratchet_pq: PqStatus,
    /// Live Noise transports (stream and datagram) by status; each
    /// session's own status is [`SessionInfo::pq`](crate::SessionInfo::pq).
    pub noise_channels: PqCounts,
    /// Ratchet sessions by status.
    pub ratchet_channels: PqCounts,
    /// Noise handshakes completed as `hfs` (hybrid).
    pub hybrid_handshakes: u64,
    /// Ratchet sessions opened with PQXDH (as initiator or responder).
    pub pqxdh_sessions: u64,
    /// Channels refused for their post-quantum status: a classical bundle,
    /// handshake or initial message under [`PqMode::Require`](crate::PqMode::Require),
    /// a hybrid one the agent does not run
    /// ([`Error::PqRequired`](crate::Error::PqRequired),
    /// [`Error::PqUnavailable`](crate::Error::PqUnavailable)), and PQXDH
    /// downgrades the ratchet refused; with the feature `ml-dsa`, a
    /// pinned peer's classical bundle or one with another ML-DSA-65 key.
    pub pq_refused: u64,
    /// Peers' hybrid bundles accepted (feature `ml-dsa`): version-3
    /// bundles whose Ed25519 and ML-DSA-65 signatures both verified, by
    /// the peer's pinned ML-DSA key ([`crate::peer`]). A stored bundle's
    /// own mark is [`StoredBundle::is_hybrid_signed`](crate::peer::StoredBundle::is_hybrid_signed).
    pub hybrid_bundles: u64,
    /// Peers whose ML-DSA-65 key is pinned (feature `ml-dsa`).
    pub ml_dsa_pinned: u32,
}

impl Metrics {
    /// The counters of the channel an envelope of `channel` belongs to.
    pub(crate) fn channel_mut(&mut self, channel: ChannelKind) -> Option<&mut ChannelMetrics> {
        match channel {
            ChannelKind::NoiseIk
            | ChannelKind::NoiseXx
            | ChannelKind::NoiseIkHfs
            | ChannelKind::NoiseXxHfs
            | ChannelKind::NoiseTransport
            | ChannelKind::NoiseDatagram => Some(&mut self.noise),
            ChannelKind::RatchetInitial | ChannelKind::RatchetMessage => Some(&mut self.ratchet),
            ChannelKind::MlsMessage | ChannelKind::MlsWelcome => Some(&mut self.mls),
        }
    }

    /// Count one of `field` on `channel`.
    pub(crate) fn count(&mut self, channel: ChannelKind, field: fn(&mut ChannelMetrics) -> &mut u64) {
        if let Some(c) = self.channel_mut(channel) {
            let f = field(c);
            *f = f.saturating_add(1);
        }
    }
}

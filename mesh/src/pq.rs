//! Post-quantum hybrid channels: which channels are hybrid, and how two
//! agents agree on it.
//!
//! With the feature `pq` the agent runs the hybrid modes of its protocol
//! crates, as its [`PqMode`] says ([`Agent::new_pq`](crate::Agent::new_pq),
//! [`Agent::set_pq_mode`](crate::Agent::set_pq_mode)):
//!
//! - **Ratchet sessions: PQXDH** (`securemesh-ratchet`, ML-KEM-768). The
//!   agent's pool holds signed ML-KEM-768 prekeys ([`KEM_PREKEYS`]
//!   one-time ones, refilled with the one-time prekeys, and a last-resort
//!   one that rotates with the signed prekey), and its
//!   [`bundle`](crate::Agent::bundle) carries one. A session to a peer
//!   whose bundle carries a KEM prekey is opened with PQXDH. The ratchet
//!   refuses an X3DH initial message to a signed prekey published with a
//!   KEM prekey (`Ratchet(Downgrade)`), so a PQXDH-publishing agent is
//!   never reached classically.
//! - **Noise: `hfs`** (`Noise_IKhfs_25519+MLKEM768_ChaChaPoly_SHA256`,
//!   `Noise_XXhfs_..`). The envelope's channel tag of a handshake message
//!   names its protocol ([`ChannelKind::NoiseIkHfs`](crate::ChannelKind::NoiseIkHfs),
//!   [`NoiseXxHfs`](crate::ChannelKind::NoiseXxHfs)) and the prologue
//!   binds the tag, so the responder runs the protocol the initiator chose,
//!   and a tag changed on the way (a downgrade to IK) fails the handshake.
//!
//! # How both sides agree
//!
//! The initiator decides; the responder accepts or refuses.
//!
//! - The ratchet follows the peer's bundle: a KEM prekey in it is the
//!   peer's statement that it runs PQXDH (the bundle is signed by its
//!   identity, so nobody strips it without breaking the signature).
//! - Noise follows the directory: a peer is known to run `hfs`
//!   ([`PeerInfo::is_hybrid`](crate::peer::PeerInfo::is_hybrid)) once the
//!   agent stored a bundle of it with a KEM prekey, or once the peer
//!   opened an `hfs` handshake or a PQXDH session with it (the knowledge
//!   is persisted in the agent record). Under [`PqMode::Prefer`] an
//!   agent opens `hfs` handshakes with peers known to run them, classical
//!   ones with the others; under [`PqMode::Require`] it opens only `hfs`
//!   handshakes.
//! - **A peer known to run the hybrid channels must use them.** Under
//!   [`PqMode::Prefer`] the classical fallback is for peers not known to
//!   run them: with a peer known to (as above) the agent refuses a
//!   classical IK / XX handshake and refuses to run X3DH on a classical
//!   bundle ([`Error::PqRequired`](crate::Error::PqRequired), state
//!   unchanged, counted in [`Metrics::pq_refused`](crate::Metrics::pq_refused)),
//!   as [`PqMode::Require`] does with every peer. Otherwise a peer's old
//!   X3DH bundle replayed from a directory, or a handshake that never
//!   learned what the peer runs, would give a harvest-now-decrypt-later
//!   attacker a classical channel between two hybrid agents. The
//!   knowledge is never forgotten (a later classical bundle does not
//!   clear it). The peer that lost its state and re-establishes still
//!   runs hybrid (its mode and directory are in its agent record,
//!   [`crate::persist`]; its new bundle carries a KEM prekey), so it is
//!   not affected. Who is: a peer that does not know that *this* agent
//!   runs the hybrid channels (it learned our identity only from a
//!   classical handshake, or knows only our peer id and opens XX, which
//!   under `Prefer` is classical since nothing is known of the
//!   responder): its classical handshake is refused until it learns,
//!   from our bundle or from an `hfs` handshake we open with it.
//!
//! The mode is persisted in the agent record, so a restored agent runs
//! the mode it ran ([`crate::persist`]).
//!
//! | | [`Off`](PqMode::Off) | [`Prefer`](PqMode::Prefer) | [`Require`](PqMode::Require) |
//! |---|---|---|---|
//! | its bundle | X3DH | PQXDH | PQXDH |
//! | a peer's bundle with a KEM prekey | refused ([`Error::PqUnavailable`](crate::Error::PqUnavailable)) | PQXDH | PQXDH |
//! | a peer's bundle without | X3DH | X3DH, refused at `send` if the peer is known to run hybrid ([`Error::PqRequired`](crate::Error::PqRequired)) | refused at `send` ([`Error::PqRequired`](crate::Error::PqRequired)) |
//! | it opens | IK / XX | IKhfs / XXhfs with a peer known to run them, else IK / XX | IKhfs / XXhfs |
//! | a peer opens IK / XX | accepted | accepted, refused if the peer is known to run hybrid ([`Error::PqRequired`](crate::Error::PqRequired)) | refused ([`Error::PqRequired`](crate::Error::PqRequired)) |
//! | a peer opens IKhfs / XXhfs | refused ([`Error::PqUnavailable`](crate::Error::PqUnavailable)) | accepted | accepted |
//!
//! [`PqMode::Off`] behaves as a build without the feature, which refuses
//! every hybrid input the same way. An agent whose `BYTES` is below
//! [`MIN_PQ_BYTES`] cannot hold an `hfs` handshake message nor a PQXDH
//! initial message: it runs as `Off` (and refuses everything under
//! `Require`). Each live channel's status is in
//! [`SessionInfo::pq`](crate::SessionInfo::pq) and counted in
//! [`Metrics::noise_channels`](crate::Metrics::noise_channels) and
//! [`Metrics::ratchet_channels`](crate::Metrics::ratchet_channels).
//!
//! # Hybrid identities (feature `ml-dsa`)
//!
//! PQXDH and `hfs` protect the key agreement against a quantum adversary,
//! but a bundle signed by Ed25519 alone could be forged by one: its
//! prekeys (the KEM prekey included) would then be the forger's. With the
//! feature `ml-dsa` every agent has an ML-DSA-65 key beside its Ed25519
//! identity key (its 32-byte seed drawn from the caller's RNG and sealed
//! in the agent record, [`crate::persist`]), and in a hybrid mode
//! `Agent::bundle_hybrid` publishes a
//! version-3 bundle whose signed prekey and KEM prekey are signed by both
//! keys (`securemesh-ratchet`'s hybrid bundles: 5.6 KB, 10.2 KB with the
//! ML-KEM-768 prekey). The directory pins each peer's ML-DSA key
//! ([`crate::peer`]):
//!
//! | a peer's bundle | [`Off`](PqMode::Off) | [`Prefer`](PqMode::Prefer) | [`Require`](PqMode::Require) |
//! |---|---|---|---|
//! | hybrid, key not pinned | refused ([`Error::PqUnavailable`](crate::Error::PqUnavailable)) | accepted, key pinned | accepted, key pinned |
//! | hybrid, the pinned key | refused ([`Error::PqUnavailable`](crate::Error::PqUnavailable)) | accepted | accepted |
//! | hybrid, another key | refused ([`Error::PqUnavailable`](crate::Error::PqUnavailable)) | refused (`BadBundle(WrongIdentity)`) | refused (`BadBundle(WrongIdentity)`) |
//! | classical, key not pinned | as without the feature | as without the feature | refused ([`Error::PqRequired`](crate::Error::PqRequired)) |
//! | classical, key pinned | refused (`BadBundle(Downgrade)`) | refused (`BadBundle(Downgrade)`) | refused ([`Error::PqRequired`](crate::Error::PqRequired)) |
//!
//! Every refusal leaves the agent as it was and is counted in
//! [`Metrics::pq_refused`](crate::Metrics::pq_refused); accepted hybrid
//! bundles in [`Metrics::hybrid_bundles`](crate::Metrics::hybrid_bundles).
//! A pinned key is never unpinned (only with the peer), so stripping the
//! ML-DSA section off a later bundle, or replaying an older classical one,
//! does not work. The bundles of [`Agent::bundle`](crate::Agent::bundle)
//! stay classical (signing needs randomness, which `bundle` does not
//! take): an agent whose peers pin its key publishes
//! `Agent::bundle_hybrid`'s.

use crate::envelope::HEADER_LEN;
use securemesh_noise::TAG_LEN;
use securemesh_ratchet::PublicIdentity;

/// Whether (and how strictly) an agent runs hybrid post-quantum channels.
/// Without the feature `pq` only [`Off`](Self::Off) can be met:
/// [`Prefer`](Self::Prefer) runs as `Off`, and [`Require`](Self::Require)
/// refuses every channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PqMode {
    /// Classical channels only (X3DH bundles, IK and XX); a peer's hybrid
    /// bundle or handshake is refused. The default.
    #[default]
    Off,
    /// Hybrid where the peer runs it (PQXDH bundle, `hfs` handshakes with
    /// peers known to run them), classical with the others; a peer known
    /// to run the hybrid channels must use them
    /// ([`Error::PqRequired`](crate::Error::PqRequired) otherwise).
    Prefer,
    /// Hybrid only: a classical bundle, handshake or initial message is
    /// refused ([`Error::PqRequired`](crate::Error::PqRequired)).
    Require,
}

impl PqMode {
    /// Whether this mode runs hybrid channels in this build (the feature
    /// `pq` is on and the mode is not [`Off`](Self::Off)).
    ///
    /// ```
    /// use securemesh::PqMode;
    /// assert!(!PqMode::Off.hybrid());
    /// assert_eq!(PqMode::Prefer.hybrid(), cfg!(feature = "pq"));
    /// ```
    pub const fn hybrid(self) -> bool {
        cfg!(feature = "pq") && !matches!(self, PqMode::Off)
    }

    /// Whether this mode refuses classical channels.
    ///
    /// ```
    /// use securemesh::PqMode;
    /// assert!(PqMode::Require.requires());
    /// assert!(!PqMode::Prefer.requires());
    /// ```
    pub const fn requires(self) -> bool {
        matches!(self, PqMode::Require)
    }
}

/// One-time ML-KEM-768 prekeys of the agent's pool (PQXDH; 0 without the
/// feature `pq`). Each is 136 bytes of state (its seed and signature);
/// the last-resort KEM prekey serves when they are spent.
pub const KEM_PREKEYS: usize = if cfg!(feature = "pq") { 4 } else { 0 };

/// Room for the KEM ciphertext a PQXDH initiator's session repeats in its
/// initial messages (ML-KEM-768: 1088 bytes; 0 without the feature `pq`).
pub const RATCHET_KEM_CT: usize = if cfg!(feature = "pq") { 1088 } else { 0 };

/// The smallest `BYTES` of an agent that runs the hybrid channels: the
/// largest `hfs` handshake message in its envelope, IKhfs message 1
/// (ephemeral 32, ML-KEM-768 key 1184, encrypted static 48, encrypted
/// 128-byte identity 144), 1453 bytes. A PQXDH initial message (a 1268-byte
/// prefix, the ratchet header and the payload) fits with payloads up to
/// 83 bytes (43 with header encryption); longer first messages need a
/// larger `BYTES` ([`Error::PayloadTooLong`](crate::Error::PayloadTooLong)).
/// An agent with a smaller `BYTES` runs classical channels only.
pub const MIN_PQ_BYTES: usize = HEADER_LEN + 32 + 1184 + (32 + TAG_LEN) + (PublicIdentity::LEN + TAG_LEN);

/// The `BYTES` of [`DefaultAgent`](crate::DefaultAgent): 1024, or 2048
/// with the feature `pq` (an `hfs` handshake message is 1.45 KB, a PQXDH
/// initial message 1.3 KB before its payload).
pub const DEFAULT_BYTES: usize = if cfg!(feature = "pq") { 2048 } else { 1024 };

/// The Noise protocol of `hfs` handshakes with a peer whose static key is
/// known (feature `pq`).
#[cfg(feature = "pq")]
pub const NOISE_IK_HFS: securemesh_noise::Protocol =
    securemesh_noise::protocol!("Noise_IKhfs_25519+MLKEM768_ChaChaPoly_SHA256");
/// The Noise protocol of `hfs` handshakes with a peer whose static key is
/// not known (feature `pq`).
#[cfg(feature = "pq")]
pub const NOISE_XX_HFS: securemesh_noise::Protocol =
    securemesh_noise::protocol!("Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256");

//! The decision matrix: which channel carries a message, and why.
//!
//! [`route`] is a pure function of what the agent knows about the target
//! at the moment of sending ([`Target`], [`PeerView`]) and of what the
//! message is for ([`Purpose`]). The agent reports every decision as an
//! [`Event::RouteChosen`](crate::Event::RouteChosen), so the route taken
//! and the reason are observable.
//!
//! | target | purpose | peer reachable | Noise session | static key | ratchet session | bundle | channel | reason |
//! |---|---|---|---|---|---|---|---|---|
//! | external endpoint | any | | | | | | [`Channel::UseTls`] | [`Reason::External`] |
//! | group | any | | | | | | [`Channel::Mls`] | [`Reason::Group`] |
//! | peer | telemetry | yes | | | | | [`Channel::NoiseDatagram`] | [`Reason::LossTolerant`] |
//! | peer | telemetry | no | | | | | none: [`NoRoute::TelemetryNeedsOnline`] | |
//! | peer | message | yes | established | | | | [`Channel::NoiseSession`] | [`Reason::SessionEstablished`] |
//! | peer | message | yes | handshaking | | | | [`Channel::NoiseSession`] | [`Reason::HandshakeInProgress`] |
//! | peer | message | yes | none | known | yes | | [`Channel::NoiseIk`] | [`Reason::OnlineUpgrade`] |
//! | peer | message | yes | none | known | no | | [`Channel::NoiseIk`] | [`Reason::OnlineStaticKnown`] |
//! | peer | message | yes | none | unknown | | | [`Channel::NoiseXx`] | [`Reason::OnlineStaticUnknown`] |
//! | peer | message | no | | | yes | | [`Channel::RatchetSession`] | [`Reason::OfflineSession`] |
//! | peer | message | no | | | no | yes | [`Channel::RatchetX3dh`] | [`Reason::OfflineBundle`] |
//! | peer | message | no | | | no | no | none: [`NoRoute::OfflineWithoutBundle`] | |
//!
//! Reachability comes first: a peer that is not reachable gets its
//! messages through a mailbox even if a Noise session with it exists (the
//! session's link is gone). A peer that comes back online is reached over
//! Noise again, which upgrades the asynchronous conversation: the ratchet
//! session stays for the next time the peer is offline.

/// What a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A message that must arrive (tasks, replies): a reliable channel.
    Message,
    /// Loss-tolerant, latest-wins data (telemetry): a datagram channel.
    Telemetry,
}

/// The state of the Noise channel with a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoiseStatus {
    /// No Noise session.
    None,
    /// A handshake is under way (messages wait for it).
    Handshaking,
    /// A transport is established.
    Established,
}

/// What the agent knows about a peer when it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerView {
    /// The host reports the peer reachable now.
    pub reachable: bool,
    /// The Noise channel with the peer.
    pub noise: NoiseStatus,
    /// The peer's static key (its identity) is known.
    pub static_known: bool,
    /// A ratchet session with the peer exists.
    pub ratchet_session: bool,
    /// An unused prekey bundle of the peer is stored.
    pub bundle_known: bool,
}

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A peer of the mesh.
    Peer(PeerView),
    /// An MLS group of the mesh.
    Group,
    /// Something outside the mesh (an HTTPS API, a broker): the host uses
    /// TLS, the mesh carries nothing.
    External,
}

/// The channel chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The existing (or pending) Noise stream session.
    NoiseSession,
    /// A new Noise IK handshake (the peer's static key is known).
    NoiseIk,
    /// A new Noise XX handshake (the peer's static key is learned in it).
    NoiseXx,
    /// The Noise datagram transport ([`Agent::send_telemetry`](crate::Agent::send_telemetry)).
    NoiseDatagram,
    /// The existing Double Ratchet session, through the peer's mailbox.
    RatchetSession,
    /// A new ratchet session from the peer's bundle (X3DH), through its mailbox.
    RatchetX3dh,
    /// The group's MLS channel ([`crate::group`]).
    Mls,
    /// Not a mesh channel: the host should use TLS.
    UseTls,
}

/// Why the channel was chosen: the row of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The target is outside the mesh.
    External,
    /// The target is a group.
    Group,
    /// Telemetry to a reachable peer.
    LossTolerant,
    /// A Noise transport with the reachable peer exists.
    SessionEstablished,
    /// A Noise handshake with the reachable peer is under way.
    HandshakeInProgress,
    /// The peer is reachable again and a ratchet session exists: Noise
    /// takes over the conversation.
    OnlineUpgrade,
    /// The peer is reachable and its static key is known.
    OnlineStaticKnown,
    /// The peer is reachable and its static key is not known.
    OnlineStaticUnknown,
    /// The peer is not reachable and a ratchet session exists.
    OfflineSession,
    /// The peer is not reachable; a session is started from its bundle.
    OfflineBundle,
}

/// A routing decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The channel.
    pub channel: Channel,
    /// The row of the matrix that chose it.
    pub reason: Reason,
}

/// Why no channel can carry the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoRoute {
    /// Telemetry is not stored in mailboxes: the peer must be reachable.
    TelemetryNeedsOnline,
    /// The peer is not reachable and neither a ratchet session nor a
    /// bundle exists.
    OfflineWithoutBundle,
}

impl core::fmt::Display for NoRoute {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NoRoute::TelemetryNeedsOnline => f.write_str("telemetry needs the peer online"),
            NoRoute::OfflineWithoutBundle => {
                f.write_str("peer offline with neither a ratchet session nor a prekey bundle")
            }
        }
    }
}

/// The decision matrix (see the [module docs](self)).
///
/// ```
/// use securemesh::route::{route, Channel, NoiseStatus, PeerView, Purpose, Reason, Target};
/// let bob = PeerView { reachable: true, noise: NoiseStatus::None, static_known: false,
///                      ratchet_session: false, bundle_known: false };
/// let r = route(Target::Peer(bob), Purpose::Message)?;
/// assert_eq!((r.channel, r.reason), (Channel::NoiseXx, Reason::OnlineStaticUnknown));
/// # Ok::<(), securemesh::route::NoRoute>(())
/// ```
pub const fn route(target: Target, purpose: Purpose) -> Result<Route, NoRoute> {
    let (channel, reason) = match target {
        Target::External => (Channel::UseTls, Reason::External),
        Target::Group => (Channel::Mls, Reason::Group),
        Target::Peer(p) => match (purpose, p.reachable) {
            (Purpose::Telemetry, true) => (Channel::NoiseDatagram, Reason::LossTolerant),
            (Purpose::Telemetry, false) => return Err(NoRoute::TelemetryNeedsOnline),
            (Purpose::Message, true) => match (p.noise, p.static_known) {
                (NoiseStatus::Established, _) => (Channel::NoiseSession, Reason::SessionEstablished),
                (NoiseStatus::Handshaking, _) => (Channel::NoiseSession, Reason::HandshakeInProgress),
                (NoiseStatus::None, true) if p.ratchet_session => (Channel::NoiseIk, Reason::OnlineUpgrade),
                (NoiseStatus::None, true) => (Channel::NoiseIk, Reason::OnlineStaticKnown),
                (NoiseStatus::None, false) => (Channel::NoiseXx, Reason::OnlineStaticUnknown),
            },
            (Purpose::Message, false) => {
                if p.ratchet_session {
                    (Channel::RatchetSession, Reason::OfflineSession)
                } else if p.bundle_known {
                    (Channel::RatchetX3dh, Reason::OfflineBundle)
                } else {
                    return Err(NoRoute::OfflineWithoutBundle);
                }
            }
        },
    };
    Ok(Route { channel, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(reachable: bool, noise: NoiseStatus, static_known: bool, ratchet: bool, bundle: bool) -> Target {
        Target::Peer(PeerView {
            reachable,
            noise,
            static_known,
            ratchet_session: ratchet,
            bundle_known: bundle,
        })
    }

    fn ok(channel: Channel, reason: Reason) -> Result<Route, NoRoute> {
        Ok(Route { channel, reason })
    }

    use NoiseStatus::{Established as Est, Handshaking as Hs, None as NoNoise};
    use Purpose::{Message as Msg, Telemetry as Tel};

    /// Every row of the matrix, in the order of the module docs.
    #[test]
    fn every_row() {
        let rows: [(Target, Purpose, Result<Route, NoRoute>); 12] = [
            (Target::External, Msg, ok(Channel::UseTls, Reason::External)),
            (Target::Group, Msg, ok(Channel::Mls, Reason::Group)),
            (peer(true, NoNoise, false, false, false), Tel, ok(Channel::NoiseDatagram, Reason::LossTolerant)),
            (peer(false, Est, true, true, true), Tel, Err(NoRoute::TelemetryNeedsOnline)),
            (peer(true, Est, true, true, true), Msg, ok(Channel::NoiseSession, Reason::SessionEstablished)),
            (
                peer(true, Hs, false, false, false),
                Msg,
                ok(Channel::NoiseSession, Reason::HandshakeInProgress),
            ),
            (peer(true, NoNoise, true, true, false), Msg, ok(Channel::NoiseIk, Reason::OnlineUpgrade)),
            (peer(true, NoNoise, true, false, true), Msg, ok(Channel::NoiseIk, Reason::OnlineStaticKnown)),
            (
                peer(true, NoNoise, false, false, false),
                Msg,
                ok(Channel::NoiseXx, Reason::OnlineStaticUnknown),
            ),
            (peer(false, Est, true, true, true), Msg, ok(Channel::RatchetSession, Reason::OfflineSession)),
            (peer(false, NoNoise, true, false, true), Msg, ok(Channel::RatchetX3dh, Reason::OfflineBundle)),
            (peer(false, Est, true, false, false), Msg, Err(NoRoute::OfflineWithoutBundle)),
        ];
        for (i, (target, purpose, want)) in rows.into_iter().enumerate() {
            assert_eq!(route(target, purpose), want, "row {i}");
        }
    }

    /// Exhaustively: external and group targets ignore the purpose;
    /// reachability alone separates Noise from the ratchet; a reliable
    /// message is never routed to the datagram transport.
    #[test]
    fn invariants_over_every_view() {
        for purpose in [Msg, Tel] {
            assert_eq!(route(Target::External, purpose), ok(Channel::UseTls, Reason::External));
            assert_eq!(route(Target::Group, purpose), ok(Channel::Mls, Reason::Group));
        }
        for bits in 0u8..32 {
            for noise in [NoNoise, Hs, Est] {
                let b = |i: u8| bits & (1 << i) != 0;
                let t = peer(b(0), noise, b(1), b(2), b(3));
                for purpose in [Msg, Tel] {
                    match route(t, purpose) {
                        Ok(r) => {
                            let noise_channel = matches!(
                                r.channel,
                                Channel::NoiseSession
                                    | Channel::NoiseIk
                                    | Channel::NoiseXx
                                    | Channel::NoiseDatagram
                            );
                            assert_eq!(noise_channel, b(0), "{t:?} {purpose:?} {r:?}");
                            assert_eq!(r.channel == Channel::NoiseDatagram, purpose == Tel);
                        }
                        Err(_) => assert!(!b(0)),
                    }
                }
            }
        }
    }
}

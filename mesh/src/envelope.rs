//! The wire envelope: the one frame around everything an agent sends.
//!
//! # Format (version 1)
//!
//! All integers are big-endian. The header is [`HEADER_LEN`] = 45 bytes:
//!
//! ```text
//! offset size field
//!      0    1 magic        0x6D ('m'); anything else is BadMagic
//!      1    1 version      1 (VERSION); anything else is UnsupportedVersion
//!      2    1 channel      ChannelKind tag (table below)
//!      3   32 sender       PeerId of the sending agent: SHA-256 of its identity key
//!     35    8 session      SessionId: chosen at random by the side that opened the
//!                          session (Noise initiator, X3DH initiator); for MLS the
//!                          group's id (GroupId); a Noise session opened for the
//!                          datagram transport has its top bit set (DATAGRAM_SESSION)
//!     43    2 body_len     bytes of body, 0..=65535
//!     45    n body         the channel's own message, opaque to the envelope
//! ```
//!
//! The envelope is exactly `45 + body_len` bytes: a shorter input is
//! [`EnvelopeError::Truncated`], a longer one [`EnvelopeError::TrailingBytes`]
//! (one envelope per datagram or per stream frame; the host frames streams).
//!
//! Channel tags. A tag is never reused for another meaning; `0x00` is
//! reserved and never valid; unknown tags are
//! [`EnvelopeError::UnknownChannel`].
//!
//! | tag | channel | body |
//! |---|---|---|
//! | `0x01` | [`ChannelKind::NoiseIk`] | a message of `Noise_IK_25519_ChaChaPoly_SHA256` |
//! | `0x02` | [`ChannelKind::NoiseXx`] | a message of `Noise_XX_25519_ChaChaPoly_SHA256` |
//! | `0x03` | [`ChannelKind::NoiseTransport`] | a Noise stream transport message |
//! | `0x04` | [`ChannelKind::NoiseDatagram`] | a Noise datagram (counter and message) |
//! | `0x05` | [`ChannelKind::RatchetInitial`] | a ratchet initial message (X3DH prefix, type `0x04`) |
//! | `0x06` | [`ChannelKind::RatchetMessage`] | a Double Ratchet message (type `0x02` or `0x03`) |
//! | `0x07` | [`ChannelKind::MlsMessage`] | an MLS `PublicMessage` or `PrivateMessage` |
//! | `0x08` | [`ChannelKind::MlsWelcome`] | an MLS `Welcome` |
//! | `0x09` | [`ChannelKind::NoiseIkHfs`] | a message of `Noise_IKhfs_25519+MLKEM768_ChaChaPoly_SHA256` |
//! | `0x0A` | [`ChannelKind::NoiseXxHfs`] | a message of `Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256` |
//!
//! The tag of a handshake message names its protocol, and the handshake's
//! prologue ([`handshake_prologue`]) binds the tag, so both ends run the
//! same protocol and a changed tag fails the handshake. Every build parses
//! the `hfs` tags; an agent built without the feature `pq` refuses their
//! handshakes.
//!
//! # What the header does and does not protect
//!
//! The header travels in clear. It is not covered by the channels' AEADs
//! (neither the Noise transport nor the ratchet takes associated data), but
//! every field selects state: a changed `sender`, `session` or `channel`
//! selects no session or the wrong one, whose keys then fail to decrypt; a
//! changed `magic`, `version` or `body_len` does not parse. Noise
//! handshakes bind the header fields that open a session into the
//! prologue ([`handshake_prologue`]). Inside every channel, the decrypted
//! plaintext starts with one byte, the application's message kind, that
//! the receiving agent checks against its policy.

use crate::peer::PeerId;
use securemesh_core::codec::{Reader, Writer};

/// First byte of every envelope.
pub const MAGIC: u8 = 0x6D;
/// The envelope version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 45;
/// Largest body (the Noise message limit, and the `u16` length field).
pub const MAX_BODY_LEN: usize = 65535;
/// Largest envelope.
pub const MAX_ENVELOPE_LEN: usize = HEADER_LEN + MAX_BODY_LEN;

/// Which channel a body belongs to. The tags are part of the wire format
/// and never change meaning (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChannelKind {
    /// A Noise IK handshake message (the sender knew the peer's static key).
    NoiseIk = 0x01,
    /// A Noise XX handshake message (static keys learned in the handshake).
    NoiseXx = 0x02,
    /// A Noise stream transport message of an established session.
    NoiseTransport = 0x03,
    /// A Noise datagram transport message (telemetry over UDP): the
    /// counter, the ciphertext and its tag.
    NoiseDatagram = 0x04,
    /// A ratchet initial message (carries the X3DH prefix).
    RatchetInitial = 0x05,
    /// A Double Ratchet message of an established session.
    RatchetMessage = 0x06,
    /// An MLS commit or application message (a PrivateMessage `MLSMessage`).
    MlsMessage = 0x07,
    /// An MLS Welcome (`MLSMessage`).
    MlsWelcome = 0x08,
    /// A Noise IKhfs handshake message: IK with the hybrid forward
    /// secrecy of ML-KEM-768 (`e1`, `ekem1`).
    NoiseIkHfs = 0x09,
    /// A Noise XXhfs handshake message: XX with ML-KEM-768.
    NoiseXxHfs = 0x0A,
}

impl ChannelKind {
    /// The wire tag.
    pub const fn tag(self) -> u8 {
        self as u8
    }

    /// The kind of a wire tag, or `None` for `0x00` and unknown tags.
    pub const fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            0x01 => ChannelKind::NoiseIk,
            0x02 => ChannelKind::NoiseXx,
            0x03 => ChannelKind::NoiseTransport,
            0x04 => ChannelKind::NoiseDatagram,
            0x05 => ChannelKind::RatchetInitial,
            0x06 => ChannelKind::RatchetMessage,
            0x07 => ChannelKind::MlsMessage,
            0x08 => ChannelKind::MlsWelcome,
            0x09 => ChannelKind::NoiseIkHfs,
            0x0A => ChannelKind::NoiseXxHfs,
            _ => return None,
        })
    }

    /// Whether this is a Noise handshake message (IK, XX, or their `hfs`
    /// variants).
    ///
    /// ```
    /// use securemesh::ChannelKind;
    /// assert!(ChannelKind::NoiseXxHfs.is_handshake());
    /// assert!(!ChannelKind::NoiseTransport.is_handshake());
    /// ```
    pub const fn is_handshake(self) -> bool {
        matches!(
            self,
            ChannelKind::NoiseIk | ChannelKind::NoiseXx | ChannelKind::NoiseIkHfs | ChannelKind::NoiseXxHfs
        )
    }

    /// Whether this is a handshake of the IK pattern (plain or `hfs`).
    ///
    /// ```
    /// use securemesh::ChannelKind;
    /// assert!(ChannelKind::NoiseIkHfs.is_ik());
    /// assert!(!ChannelKind::NoiseXx.is_ik());
    /// ```
    pub const fn is_ik(self) -> bool {
        matches!(self, ChannelKind::NoiseIk | ChannelKind::NoiseIkHfs)
    }

    /// Whether this is a handshake of the XX pattern (plain or `hfs`).
    ///
    /// ```
    /// use securemesh::ChannelKind;
    /// assert!(ChannelKind::NoiseXxHfs.is_xx());
    /// assert!(!ChannelKind::NoiseIk.is_xx());
    /// ```
    pub const fn is_xx(self) -> bool {
        matches!(self, ChannelKind::NoiseXx | ChannelKind::NoiseXxHfs)
    }

    /// Whether this is a hybrid post-quantum (`hfs`) handshake.
    ///
    /// ```
    /// use securemesh::ChannelKind;
    /// assert!(ChannelKind::NoiseIkHfs.is_hfs());
    /// assert!(!ChannelKind::NoiseIk.is_hfs());
    /// ```
    pub const fn is_hfs(self) -> bool {
        matches!(self, ChannelKind::NoiseIkHfs | ChannelKind::NoiseXxHfs)
    }
}

/// Identifies a session between two agents (or a
/// group): 64 bits drawn at random by the agent that opens it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// Why bytes are not an envelope, or an envelope does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The output buffer is too small; nothing was written.
    BufferTooSmall {
        /// Bytes the envelope needs.
        needed: usize,
    },
    /// The input ended before the header or the body did.
    Truncated,
    /// Bytes follow the body.
    TrailingBytes,
    /// The first byte is not [`MAGIC`].
    BadMagic,
    /// A version this crate does not read.
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// A channel tag that is reserved (`0x00`) or unknown.
    UnknownChannel {
        /// The tag found.
        tag: u8,
    },
    /// A body longer than [`MAX_BODY_LEN`] (encoding only).
    BodyTooLong {
        /// The body's length.
        len: usize,
    },
}

impl core::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EnvelopeError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed; nothing written")
            }
            EnvelopeError::Truncated => f.write_str("envelope truncated"),
            EnvelopeError::TrailingBytes => f.write_str("bytes after the envelope body"),
            EnvelopeError::BadMagic => f.write_str("not a securemesh envelope (bad magic)"),
            EnvelopeError::UnsupportedVersion { found } => write!(f, "unsupported envelope version {found}"),
            EnvelopeError::UnknownChannel { tag } => write!(f, "unknown channel tag {tag:#04x}"),
            EnvelopeError::BodyTooLong { len } => {
                write!(f, "body of {len} bytes exceeds {MAX_BODY_LEN}")
            }
        }
    }
}

impl core::error::Error for EnvelopeError {}

/// A parsed envelope: the header fields and a borrowed body.
///
/// ```
/// use securemesh::envelope::{ChannelKind, Envelope, EnvelopeError, SessionId, HEADER_LEN};
/// use securemesh::PeerId;
/// let env = Envelope {
///     channel: ChannelKind::NoiseTransport,
///     sender: PeerId([7; 32]),
///     session: SessionId(42),
///     body: b"ciphertext",
/// };
/// let mut buf = [0u8; 64];
/// let n = env.encode(&mut buf)?;
/// assert_eq!(n, HEADER_LEN + 10);
/// assert_eq!(Envelope::parse(&buf[..n])?, env);
/// assert_eq!(Envelope::parse(&buf[..n - 1]), Err(EnvelopeError::Truncated));
/// assert_eq!(env.encode(&mut buf[..20]), Err(EnvelopeError::BufferTooSmall { needed: n }));
/// # Ok::<(), EnvelopeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The channel the body belongs to.
    pub channel: ChannelKind,
    /// The sending agent.
    pub sender: PeerId,
    /// The session (or group) within the channel.
    pub session: SessionId,
    /// The channel's message.
    pub body: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Bytes [`encode`](Self::encode) writes (saturating for absurd bodies,
    /// which `encode` refuses).
    pub const fn encoded_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.body.len())
    }

    /// Write the envelope into `out`; returns its length. On error nothing
    /// is written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EnvelopeError> {
        let len = self.body.len();
        let needed = encoded_len_checked(len)?;
        let out = out.get_mut(..needed).ok_or(EnvelopeError::BufferTooSmall { needed })?;
        let (head, body) = out.split_at_mut(HEADER_LEN);
        write_header(head, self.channel, &self.sender, self.session, len)?;
        body.copy_from_slice(self.body);
        Ok(needed)
    }

    /// Parse one envelope that fills `bytes` exactly. Never panics; every
    /// malformed input is a typed error.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut r = Reader::new(bytes);
        let magic = r.read_u8().map_err(|_| EnvelopeError::Truncated)?;
        if magic != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let version = r.read_u8().map_err(|_| EnvelopeError::Truncated)?;
        if version != VERSION {
            return Err(EnvelopeError::UnsupportedVersion { found: version });
        }
        let tag = r.read_u8().map_err(|_| EnvelopeError::Truncated)?;
        let channel = ChannelKind::from_tag(tag).ok_or(EnvelopeError::UnknownChannel { tag })?;
        let sender = PeerId(r.read_array().map_err(|_| EnvelopeError::Truncated)?);
        let session = SessionId(r.read_u64().map_err(|_| EnvelopeError::Truncated)?);
        let body = r.read_vec16().map_err(|_| EnvelopeError::Truncated)?;
        r.finish().map_err(|_| EnvelopeError::TrailingBytes)?;
        Ok(Envelope { channel, sender, session, body })
    }
}

/// `HEADER_LEN + body_len`, or `BodyTooLong`.
pub(crate) const fn encoded_len_checked(body_len: usize) -> Result<usize, EnvelopeError> {
    if body_len > MAX_BODY_LEN {
        return Err(EnvelopeError::BodyTooLong { len: body_len });
    }
    // body_len <= 65535: no overflow.
    Ok(HEADER_LEN.saturating_add(body_len))
}

/// Write a header announcing a body of `body_len` bytes into the first
/// [`HEADER_LEN`] bytes of `out` (the body is written, or encrypted in
/// place, after it by the caller). Nothing is written on error.
pub(crate) fn write_header(
    out: &mut [u8],
    channel: ChannelKind,
    sender: &PeerId,
    session: SessionId,
    body_len: usize,
) -> Result<(), EnvelopeError> {
    let len = u16::try_from(body_len).map_err(|_| EnvelopeError::BodyTooLong { len: body_len })?;
    let head = out.get_mut(..HEADER_LEN).ok_or(EnvelopeError::BufferTooSmall { needed: HEADER_LEN })?;
    let mut w = Writer::new(head);
    // The writer cannot overflow: `head` is exactly HEADER_LEN bytes.
    let written = (|| {
        w.write_u8(MAGIC)?;
        w.write_u8(VERSION)?;
        w.write_u8(channel.tag())?;
        w.write_bytes(&sender.0)?;
        w.write_u64(session.0)?;
        w.write_u16(len)?;
        w.finish()
    })();
    match written {
        Ok(HEADER_LEN) => Ok(()),
        _ => Err(EnvelopeError::BufferTooSmall { needed: HEADER_LEN }),
    }
}

/// Label that starts every Noise prologue of the mesh.
pub const PROLOGUE_LABEL: &[u8; 18] = b"securemesh-mesh-v1";
/// Bytes of a [`handshake_prologue`].
pub const PROLOGUE_LEN: usize = PROLOGUE_LABEL.len() + 1 + 32 + 32 + 8;

/// The Noise prologue both sides of a mesh handshake use:
///
/// ```text
/// "securemesh-mesh-v1" | channel tag u8 | initiator PeerId 32 | responder PeerId 32 | session u64
/// ```
///
/// It binds the clear envelope fields that open the session (and the
/// responder the initiator meant to reach) into the handshake hash: a
/// changed field makes the handshake fail at the next authenticated
/// message.
pub fn handshake_prologue(
    channel: ChannelKind,
    initiator: &PeerId,
    responder: &PeerId,
    session: SessionId,
) -> [u8; PROLOGUE_LEN] {
    let mut out = [0u8; PROLOGUE_LEN];
    let parts: [&[u8]; 5] =
        [PROLOGUE_LABEL, &[channel.tag()], &initiator.0, &responder.0, &session.0.to_be_bytes()];
    for (d, s) in out.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
        *d = *s;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    const KINDS: [ChannelKind; 10] = [
        ChannelKind::NoiseIk,
        ChannelKind::NoiseXx,
        ChannelKind::NoiseTransport,
        ChannelKind::NoiseDatagram,
        ChannelKind::RatchetInitial,
        ChannelKind::RatchetMessage,
        ChannelKind::MlsMessage,
        ChannelKind::MlsWelcome,
        ChannelKind::NoiseIkHfs,
        ChannelKind::NoiseXxHfs,
    ];

    /// The tags are the wire format: pinned here so a change is a test
    /// failure, not a silent reuse.
    #[test]
    fn tags_are_pinned() {
        let tags: [u8; 10] = KINDS.map(ChannelKind::tag);
        assert_eq!(tags, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        for t in 0..=255u8 {
            match ChannelKind::from_tag(t) {
                Some(k) => assert_eq!(k.tag(), t),
                None => assert!(t == 0 || t > 8),
            }
        }
    }

    #[test]
    fn header_layout() {
        let env = Envelope {
            channel: ChannelKind::RatchetMessage,
            sender: PeerId([0xAB; 32]),
            session: SessionId(0x0102_0304_0506_0708),
            body: &[0xEE; 3],
        };
        let mut buf = [0u8; 48];
        assert_eq!(env.encode(&mut buf), Ok(48));
        assert_eq!(&buf[..3], &[0x6D, 1, 6]);
        assert_eq!(&buf[3..35], &[0xAB; 32]);
        assert_eq!(&buf[35..43], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&buf[43..45], &[0, 3]);
        assert_eq!(&buf[45..], &[0xEE; 3]);
    }

    #[test]
    fn typed_errors() {
        let env = Envelope {
            channel: ChannelKind::NoiseXx,
            sender: PeerId([1; 32]),
            session: SessionId(9),
            body: b"abc",
        };
        let mut buf = [0u8; 64];
        let n = env.encode(&mut buf).unwrap();
        let mut b = buf;
        b[0] = 0;
        assert_eq!(Envelope::parse(&b[..n]), Err(EnvelopeError::BadMagic));
        let mut b = buf;
        b[1] = 2;
        assert_eq!(Envelope::parse(&b[..n]), Err(EnvelopeError::UnsupportedVersion { found: 2 }));
        for tag in [0u8, 11, 0xFF] {
            let mut b = buf;
            b[2] = tag;
            assert_eq!(Envelope::parse(&b[..n]), Err(EnvelopeError::UnknownChannel { tag }));
        }
        assert_eq!(Envelope::parse(&buf[..n + 1]), Err(EnvelopeError::TrailingBytes));
        assert_eq!(Envelope::parse(&[]), Err(EnvelopeError::Truncated));
        let big = [0u8; MAX_BODY_LEN + 1];
        let e = Envelope { body: &big, ..env };
        let mut out = [0u8; 8];
        assert_eq!(e.encode(&mut out), Err(EnvelopeError::BodyTooLong { len: MAX_BODY_LEN + 1 }));
    }

    #[test]
    fn largest_body_round_trips() {
        let body = [0x5A; MAX_BODY_LEN];
        let env = Envelope {
            channel: ChannelKind::NoiseTransport,
            sender: PeerId([3; 32]),
            session: SessionId(u64::MAX),
            body: &body,
        };
        let mut buf = std::vec![0u8; MAX_ENVELOPE_LEN];
        assert_eq!(env.encode(&mut buf), Ok(MAX_ENVELOPE_LEN));
        assert_eq!(Envelope::parse(&buf).unwrap(), env);
    }

    #[test]
    fn prologue_layout() {
        let p = handshake_prologue(ChannelKind::NoiseIk, &PeerId([1; 32]), &PeerId([2; 32]), SessionId(3));
        assert_eq!(&p[..18], b"securemesh-mesh-v1");
        assert_eq!(p[18], 1);
        assert_eq!(&p[19..51], &[1; 32]);
        assert_eq!(&p[51..83], &[2; 32]);
        assert_eq!(&p[83..], &3u64.to_be_bytes());
    }

    fn arb_env() -> impl Strategy<Value = (usize, [u8; 32], u64, std::vec::Vec<u8>)> {
        (0..KINDS.len(), any::<[u8; 32]>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..600))
    }

    proptest! {
        /// parse(encode(x)) == x; every truncation is an error; every
        /// trailing byte is an error; a too-small buffer is untouched.
        #[test]
        fn round_trip_truncation_trailing((k, sender, session, body) in arb_env(), extra in 1usize..8, cut in any::<prop::sample::Index>()) {
            let env = Envelope { channel: KINDS[k], sender: PeerId(sender), session: SessionId(session), body: &body };
            let mut buf = std::vec![0u8; env.encoded_len() + extra];
            let n = env.encode(&mut buf).unwrap();
            prop_assert_eq!(n, HEADER_LEN + body.len());
            prop_assert_eq!(Envelope::parse(&buf[..n]).unwrap(), env);
            let short = cut.index(n);
            prop_assert!(Envelope::parse(&buf[..short]).is_err());
            prop_assert_eq!(Envelope::parse(&buf[..n + extra]), Err(EnvelopeError::TrailingBytes));
            let mut small = std::vec![0xC3u8; short];
            prop_assert_eq!(env.encode(&mut small), Err(EnvelopeError::BufferTooSmall { needed: n }));
            prop_assert!(small.iter().all(|&b| b == 0xC3));
        }

        /// Arbitrary bytes never panic, and whatever parses re-encodes to
        /// the same bytes (one encoding per envelope).
        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(env) = Envelope::parse(&bytes) {
                let mut out = std::vec![0u8; bytes.len()];
                prop_assert_eq!(env.encode(&mut out), Ok(bytes.len()));
                prop_assert_eq!(out, bytes);
            }
        }
    }
}

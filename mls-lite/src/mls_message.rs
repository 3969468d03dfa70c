//! The `MLSMessage` envelope (RFC 9420 §6): one protocol version, one
//! wire format, and the message it selects, parsed as the zero-copy views of
//! [`crate::framing`] (`PublicMessage`, `PrivateMessage`) and
//! [`crate::messages`] (`Welcome`, `GroupInfo`, `KeyPackage`). It sits above
//! both, so neither depends on the other's envelope.

use crate::error::Error;
use crate::framing::{PrivateMessage, PublicMessage};
use crate::messages::{GroupInfo, KeyPackage, MLS10, Welcome, WireFormat, parse_all, parse_raw};
use securemesh_core::codec::{Reader, Writer};

/// The body of an `MLSMessage`, by wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlsMessageBody<'a> {
    /// A PublicMessage.
    PublicMessage(PublicMessage<'a>),
    /// A PrivateMessage.
    PrivateMessage(PrivateMessage<'a>),
    /// A Welcome.
    Welcome(Welcome<'a>),
    /// A GroupInfo.
    GroupInfo(GroupInfo<'a>),
    /// A KeyPackage.
    KeyPackage(KeyPackage<'a>),
}

/// A parsed `MLSMessage`:
///
/// ```text
/// struct {
///     ProtocolVersion version = mls10;
///     WireFormat wire_format;
///     select (MLSMessage.wire_format) { ... };
/// } MLSMessage;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlsMessage<'a> {
    raw: &'a [u8],
    /// The message.
    pub body: MlsMessageBody<'a>,
}

impl<'a> MlsMessage<'a> {
    /// Parse one `MLSMessage`; another protocol version is
    /// [`Error::Unsupported`].
    pub fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let (raw, body) = parse_raw(r, |r| {
            if r.read_u16()? != MLS10 {
                return Err(Error::Unsupported);
            }
            Ok(match WireFormat::from_u16(r.read_u16()?)? {
                WireFormat::PublicMessage => MlsMessageBody::PublicMessage(PublicMessage::parse(r)?),
                WireFormat::PrivateMessage => MlsMessageBody::PrivateMessage(PrivateMessage::parse(r)?),
                WireFormat::Welcome => MlsMessageBody::Welcome(Welcome::parse(r)?),
                WireFormat::GroupInfo => MlsMessageBody::GroupInfo(GroupInfo::parse(r)?),
                WireFormat::KeyPackage => MlsMessageBody::KeyPackage(KeyPackage::parse(r)?),
            })
        })?;
        Ok(MlsMessage { raw, body })
    }

    /// Parse a whole buffer.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        parse_all(bytes, Self::parse)
    }

    /// The exact encoding.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The wire format.
    pub fn wire_format(&self) -> WireFormat {
        match self.body {
            MlsMessageBody::PublicMessage(_) => WireFormat::PublicMessage,
            MlsMessageBody::PrivateMessage(_) => WireFormat::PrivateMessage,
            MlsMessageBody::Welcome(_) => WireFormat::Welcome,
            MlsMessageBody::GroupInfo(_) => WireFormat::GroupInfo,
            MlsMessageBody::KeyPackage(_) => WireFormat::KeyPackage,
        }
    }

    /// Write the encoding field by field.
    pub fn write_to(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.write_u16(MLS10)?;
        w.write_u16(self.wire_format().to_u16())?;
        match &self.body {
            MlsMessageBody::PublicMessage(m) => m.write_to(w),
            MlsMessageBody::PrivateMessage(m) => m.write_to(w),
            MlsMessageBody::Welcome(m) => m.write_to(w),
            MlsMessageBody::GroupInfo(m) => m.write_to(w),
            MlsMessageBody::KeyPackage(m) => m.write_to(w),
        }
    }
}

//! Transcript hashes (RFC 9420 §8.2) and the confirmation tag (§6.1).
//!
//! ```text
//! struct {
//!     WireFormat wire_format;
//!     FramedContent content; /* with content_type == commit */
//!     opaque signature<V>;
//! } ConfirmedTranscriptHashInput;
//!
//! struct {
//!     MAC confirmation_tag;
//! } InterimTranscriptHashInput;
//!
//! confirmed_transcript_hash_[n] = Hash(interim_transcript_hash_[n-1] || ConfirmedTranscriptHashInput_[n])
//! interim_transcript_hash_[n]   = Hash(confirmed_transcript_hash_[n] || InterimTranscriptHashInput_[n])
//! ```
//!
//! Both hashes are streamed into SHA-256 from the borrowed content: no
//! buffer is needed.

use crate::crypto::{self, NH};
use crate::error::Error;
use crate::framing::{AuthenticatedContent, ContentType, FramedContent};
use crate::messages::{WireFormat, vec_part};
use securemesh_core::crypto::{Hash, Sha256};
use securemesh_core::ct_eq;

/// The input of the confirmed transcript hash: a commit's wire format,
/// content and signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfirmedTranscriptHashInput<'a> {
    /// Wire format the commit was sent in.
    pub wire_format: WireFormat,
    /// The commit's content.
    pub content: FramedContent<'a>,
    /// The commit's signature.
    pub signature: &'a [u8],
}

impl<'a> ConfirmedTranscriptHashInput<'a> {
    /// The input of a commit's authenticated content; other content is
    /// [`Error::Malformed`].
    pub fn from_commit(ac: &AuthenticatedContent<'a>) -> Result<Self, Error> {
        if ac.content.content_type() != ContentType::Commit {
            return Err(Error::Malformed);
        }
        Ok(ConfirmedTranscriptHashInput {
            wire_format: ac.wire_format,
            content: ac.content,
            signature: ac.auth.signature,
        })
    }

    /// `Hash(interim_transcript_hash_before || self)`.
    pub fn confirmed_transcript_hash(&self, interim_before: &[u8]) -> Result<[u8; NH], Error> {
        let mut h = Sha256::default();
        let mut feed = |p: &[u8]| {
            h.update(p);
            Ok(())
        };
        feed(interim_before)?;
        feed(&self.wire_format.to_u16().to_be_bytes())?;
        self.content.parts(&mut feed)?;
        vec_part(self.signature, &mut feed)?;
        Ok(h.finalize())
    }
}

/// The input of the interim transcript hash: a commit's confirmation tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterimTranscriptHashInput<'a> {
    /// `confirmation_tag<V>`.
    pub confirmation_tag: &'a [u8],
}

impl InterimTranscriptHashInput<'_> {
    /// `Hash(confirmed_transcript_hash || self)`.
    pub fn interim_transcript_hash(&self, confirmed: &[u8]) -> Result<[u8; NH], Error> {
        let mut h = Sha256::default();
        h.update(confirmed);
        vec_part(self.confirmation_tag, &mut |p| {
            h.update(p);
            Ok(())
        })?;
        Ok(h.finalize())
    }
}

/// The transcript hashes after a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TranscriptHashes {
    /// `confirmed_transcript_hash` of the new epoch.
    pub confirmed: [u8; NH],
    /// `interim_transcript_hash` of the new epoch.
    pub interim: [u8; NH],
}

impl TranscriptHashes {
    /// Both hashes after the commit `ac` (which must carry its
    /// confirmation tag), from the interim hash before it.
    pub fn after_commit(interim_before: &[u8], ac: &AuthenticatedContent<'_>) -> Result<Self, Error> {
        let confirmed =
            ConfirmedTranscriptHashInput::from_commit(ac)?.confirmed_transcript_hash(interim_before)?;
        let tag = ac.auth.confirmation_tag.ok_or(Error::Malformed)?;
        let interim =
            InterimTranscriptHashInput { confirmation_tag: tag }.interim_transcript_hash(&confirmed)?;
        Ok(TranscriptHashes { confirmed, interim })
    }
}

/// `confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash)`.
pub fn confirmation_tag(confirmation_key: &[u8], confirmed_transcript_hash: &[u8]) -> [u8; NH] {
    crypto::mac(confirmation_key, &[confirmed_transcript_hash])
}

/// Check a received confirmation tag in constant time
/// ([`Error::BadSignature`] if it differs).
pub fn verify_confirmation_tag(
    confirmation_key: &[u8],
    confirmed_transcript_hash: &[u8],
    tag: &[u8],
) -> Result<(), Error> {
    if ct_eq(&confirmation_tag(confirmation_key, confirmed_transcript_hash), tag) {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

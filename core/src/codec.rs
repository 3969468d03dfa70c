//! A bounded, panic-free codec for the wire and state formats of securemesh.
//!
//! [`Reader`] walks a borrowed `&[u8]`; [`Writer`] fills a borrowed
//! `&mut [u8]`. Integers are big-endian (network order, as in TLS, Noise
//! lengths and MLS). Every overrun is an [`Error`], never a panic.
//!
//! Every read is all-or-nothing: on error the reader has consumed nothing.
//!
//! Variable-length integers follow RFC 9000 §16 as profiled by RFC 9420
//! §2.1.2: a two-bit prefix gives the length (1, 2 or 4 bytes), the `0b11`
//! prefix is invalid, and the value MUST use the shortest encoding, so the
//! largest value is `2^30 - 1`.
//!
//! The writer is *sticky*: once a write does not fit, it keeps counting the
//! bytes that would have been written and [`Writer::finish`] reports
//! [`Error::BufferTooSmall`] with the exact total size needed.

use crate::Error;

/// Largest value a variable-length integer can carry (RFC 9420 §2.1.2).
pub const VARINT_MAX: u32 = (1 << 30) - 1;

/// Number of bytes the minimal varint encoding of `v` takes, or an error if
/// `v` exceeds [`VARINT_MAX`].
///
/// ```
/// use securemesh_core::codec::varint_len;
/// assert_eq!(varint_len(63), Ok(1));
/// assert_eq!(varint_len(64), Ok(2));
/// assert_eq!(varint_len(16_384), Ok(4));
/// assert!(varint_len(1 << 30).is_err());
/// ```
pub const fn varint_len(v: u64) -> Result<usize, Error> {
    if v < (1 << 6) {
        Ok(1)
    } else if v < (1 << 14) {
        Ok(2)
    } else if v <= VARINT_MAX as u64 {
        Ok(4)
    } else {
        Err(Error::VarintOutOfRange)
    }
}

/// A cursor over untrusted bytes. Every read is bounds-checked. `Debug`
/// shows the position and length only, never the bytes (they may be
/// secrets).
///
/// ```
/// use securemesh_core::codec::Reader;
/// let bytes = [0x00, 0x2a, 0x02, 0xaa, 0xbb, 0x40, 0x40];
/// let mut r = Reader::new(&bytes);
/// assert_eq!(r.read_u16(), Ok(42));
/// assert_eq!(r.read_vec8(), Ok(&[0xaa, 0xbb][..]));
/// assert_eq!(r.read_varint(), Ok(64));
/// assert!(r.finish().is_ok());
/// ```
#[derive(Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl core::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reader").field("pos", &self.pos).field("len", &self.buf.len()).finish()
    }
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Bytes consumed so far.
    pub const fn position(&self) -> usize {
        self.pos
    }

    /// The unread rest of the input, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(&self) -> Result<(), Error> {
        if self.is_empty() { Ok(()) } else { Err(Error::TrailingBytes) }
    }

    /// Take the next `n` bytes.
    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// Take the next `N` bytes as an array.
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.read_bytes(N)?);
        Ok(out)
    }

    /// Read one byte.
    pub fn read_u8(&mut self) -> Result<u8, Error> {
        Ok(u8::from_be_bytes(self.read_array()?))
    }

    /// Read a big-endian `u16`.
    pub fn read_u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }

    /// Read a big-endian `u32`.
    pub fn read_u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.read_array()?))
    }

    /// Read a big-endian `u64`.
    pub fn read_u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.read_array()?))
    }

    /// Read a byte string with a one-byte length prefix.
    pub fn read_vec8(&mut self) -> Result<&'a [u8], Error> {
        self.atomic(|r| {
            let n = r.read_u8()?;
            r.read_bytes(usize::from(n))
        })
    }

    /// Read a byte string with a big-endian two-byte length prefix.
    pub fn read_vec16(&mut self) -> Result<&'a [u8], Error> {
        self.atomic(|r| {
            let n = r.read_u16()?;
            r.read_bytes(usize::from(n))
        })
    }

    /// Read a byte string with a big-endian four-byte length prefix.
    pub fn read_vec32(&mut self) -> Result<&'a [u8], Error> {
        self.atomic(|r| {
            let n = usize::try_from(r.read_u32()?).map_err(|_| Error::LengthOverflow)?;
            r.read_bytes(n)
        })
    }

    /// Read a variable-length integer (RFC 9420 §2.1.2): 1, 2 or 4 bytes,
    /// minimal encoding required, `0b11` prefix rejected.
    pub fn read_varint(&mut self) -> Result<u32, Error> {
        let first = *self.rest().first().ok_or(Error::Truncated)?;
        let (len, min) = match first >> 6 {
            0 => (1usize, 0u32),
            1 => (2, 1 << 6),
            2 => (4, 1 << 14),
            _ => return Err(Error::VarintOutOfRange),
        };
        let bytes = self.rest().get(..len).ok_or(Error::Truncated)?;
        let mut v = u32::from(first & 0x3f);
        for b in bytes.iter().skip(1) {
            v = (v << 8) | u32::from(*b);
        }
        if v < min {
            return Err(Error::NonMinimalVarint);
        }
        self.pos = self.pos.saturating_add(len);
        Ok(v)
    }

    /// Read a byte string with a variable-length-integer length prefix
    /// (the MLS `opaque data<V>`).
    pub fn read_vec_varint(&mut self) -> Result<&'a [u8], Error> {
        self.atomic(|r| {
            let n = usize::try_from(r.read_varint()?).map_err(|_| Error::LengthOverflow)?;
            r.read_bytes(n)
        })
    }

    /// Run `f`; if it fails, rewind to where it started, so every read is
    /// all-or-nothing.
    pub fn atomic<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        let start = self.pos;
        let out = f(self);
        if out.is_err() {
            self.pos = start;
        }
        out
    }
}

/// A cursor that writes into a caller-lent buffer.
///
/// Writes that do not fit are counted but not stored; [`Writer::finish`]
/// then reports [`Error::BufferTooSmall`] with the exact size needed, so a
/// caller can retry with a large enough buffer. `Debug` shows the
/// position, buffer length and overflow flag only, never the bytes (they
/// may be secrets).
///
/// ```
/// use securemesh_core::{Error, codec::Writer};
/// let mut buf = [0u8; 8];
/// let mut w = Writer::new(&mut buf);
/// w.write_u16(0x0102)?;
/// w.write_vec8(b"hi")?;
/// w.write_varint(300)?;
/// assert_eq!(w.finish(), Ok(7));
/// assert_eq!(&buf[..7], &[0x01, 0x02, 0x02, b'h', b'i', 0x41, 0x2c]);
///
/// let mut small = [0u8; 2];
/// let mut w = Writer::new(&mut small);
/// w.write_u32(7)?;
/// assert_eq!(w.finish(), Err(Error::BufferTooSmall { needed: 4 }));
/// # Ok::<(), Error>(())
/// ```
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl core::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Writer")
            .field("pos", &self.pos)
            .field("len", &self.buf.len())
            .field("overflow", &self.overflow)
            .finish()
    }
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0, overflow: false }
    }

    /// Bytes written (or, after an overflow, that would have been written).
    pub const fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written yet.
    pub const fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Whether a write did not fit.
    pub const fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The number of bytes written, or [`Error::BufferTooSmall`] with the
    /// total size needed if anything did not fit.
    pub fn finish(self) -> Result<usize, Error> {
        if self.overflow { Err(Error::BufferTooSmall { needed: self.pos }) } else { Ok(self.pos) }
    }

    /// Append raw bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.pos.checked_add(bytes.len()).ok_or(Error::LengthOverflow)?;
        if !self.overflow {
            match self.buf.get_mut(self.pos..end) {
                Some(dst) => dst.copy_from_slice(bytes),
                None => self.overflow = true,
            }
        }
        self.pos = end;
        Ok(())
    }

    /// Reserve `n` bytes and return them for the caller to fill (for
    /// in-place encryption), or `None` if they do not fit (the writer then
    /// counts them and overflows).
    pub fn reserve(&mut self, n: usize) -> Result<Option<&mut [u8]>, Error> {
        let start = self.pos;
        let end = start.checked_add(n).ok_or(Error::LengthOverflow)?;
        self.pos = end;
        if self.overflow || end > self.buf.len() {
            self.overflow = true;
            return Ok(None);
        }
        Ok(self.buf.get_mut(start..end))
    }

    /// Append one byte.
    pub fn write_u8(&mut self, v: u8) -> Result<(), Error> {
        self.write_bytes(&[v])
    }

    /// Append a big-endian `u16`.
    pub fn write_u16(&mut self, v: u16) -> Result<(), Error> {
        self.write_bytes(&v.to_be_bytes())
    }

    /// Append a big-endian `u32`.
    pub fn write_u32(&mut self, v: u32) -> Result<(), Error> {
        self.write_bytes(&v.to_be_bytes())
    }

    /// Append a big-endian `u64`.
    pub fn write_u64(&mut self, v: u64) -> Result<(), Error> {
        self.write_bytes(&v.to_be_bytes())
    }

    /// Append a byte string with a one-byte length prefix.
    pub fn write_vec8(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let n = u8::try_from(bytes.len()).map_err(|_| Error::LengthOverflow)?;
        self.write_u8(n)?;
        self.write_bytes(bytes)
    }

    /// Append a byte string with a two-byte length prefix.
    pub fn write_vec16(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let n = u16::try_from(bytes.len()).map_err(|_| Error::LengthOverflow)?;
        self.write_u16(n)?;
        self.write_bytes(bytes)
    }

    /// Append a byte string with a four-byte length prefix.
    pub fn write_vec32(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let n = u32::try_from(bytes.len()).map_err(|_| Error::LengthOverflow)?;
        self.write_u32(n)?;
        self.write_bytes(bytes)
    }

    /// Append a variable-length integer in its minimal encoding.
    pub fn write_varint(&mut self, v: u32) -> Result<(), Error> {
        match varint_len(u64::from(v))? {
            1 => self.write_u8(v as u8),
            2 => self.write_u16(0x4000 | v as u16),
            _ => self.write_u32(0x8000_0000 | v),
        }
    }

    /// Append a byte string with a varint length prefix (MLS `opaque<V>`).
    pub fn write_vec_varint(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let n = u32::try_from(bytes.len()).map_err(|_| Error::VarintOutOfRange)?;
        self.write_varint(n)?;
        self.write_bytes(bytes)
    }

    /// Write a nested structure behind a two-byte length prefix that is
    /// filled in after `f` has written the body.
    ///
    /// ```
    /// use securemesh_core::codec::Writer;
    /// let mut buf = [0u8; 8];
    /// let mut w = Writer::new(&mut buf);
    /// w.write_nested16(|w| { w.write_u8(1)?; w.write_u8(2) })?;
    /// assert_eq!(w.finish()?, 4);
    /// assert_eq!(&buf[..4], &[0, 2, 1, 2]);
    /// # Ok::<(), securemesh_core::Error>(())
    /// ```
    pub fn write_nested16(
        &mut self,
        f: impl FnOnce(&mut Writer<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = self.pos;
        self.write_u16(0)?;
        f(self)?;
        let body = self.pos.saturating_sub(start).saturating_sub(2);
        let n = u16::try_from(body).map_err(|_| Error::LengthOverflow)?;
        self.patch(start, &n.to_be_bytes());
        Ok(())
    }

    /// Write a nested structure behind a four-byte length prefix.
    pub fn write_nested32(
        &mut self,
        f: impl FnOnce(&mut Writer<'a>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = self.pos;
        self.write_u32(0)?;
        f(self)?;
        let body = self.pos.saturating_sub(start).saturating_sub(4);
        let n = u32::try_from(body).map_err(|_| Error::LengthOverflow)?;
        self.patch(start, &n.to_be_bytes());
        Ok(())
    }

    fn patch(&mut self, at: usize, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if let Some(dst) = at.checked_add(bytes.len()).and_then(|end| self.buf.get_mut(at..end)) {
            dst.copy_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn debug_shows_positions_not_bytes() {
        let secret = [0xa5u8, 0x5a, 0xc3, 0x3c, 0x99, 0x66];
        let mut r = Reader::new(&secret);
        r.read_u8().unwrap();
        let mut buf = secret;
        let mut w = Writer::new(&mut buf);
        w.write_u16(0x1234).unwrap();
        for s in
            [std::format!("{r:?}"), std::format!("{r:#?}"), std::format!("{w:?}"), std::format!("{w:#?}")]
        {
            // Neither the bytes (decimal or hex) nor a slice of them.
            for b in secret {
                assert!(!s.contains(&std::format!("{b}")), "{s}");
                assert!(!s.to_lowercase().contains(&std::format!("{b:x}")), "{s}");
            }
            assert!(!s.contains('['), "{s}");
        }
        assert_eq!(std::format!("{r:?}"), "Reader { pos: 1, len: 6 }");
        assert_eq!(std::format!("{w:?}"), "Writer { pos: 2, len: 6, overflow: false }");
    }

    #[test]
    fn varint_rfc9000_examples_within_mls_range() {
        // RFC 9000 §A.1 examples that fit the MLS profile.
        let mut r = Reader::new(&[0x7b, 0xbd]);
        assert_eq!(r.read_varint(), Ok(15_293));
        let mut r = Reader::new(&[0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(r.read_varint(), Ok(494_878_333));
        let mut r = Reader::new(&[0x25]);
        assert_eq!(r.read_varint(), Ok(37));
        // RFC 9000 allows 0x4025 for 37; RFC 9420 requires minimal encoding.
        let mut r = Reader::new(&[0x40, 0x25]);
        assert_eq!(r.read_varint(), Err(Error::NonMinimalVarint));
        assert_eq!(r.position(), 0);
        // The 8-byte form is invalid in MLS.
        let mut r = Reader::new(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]);
        assert_eq!(r.read_varint(), Err(Error::VarintOutOfRange));
    }

    #[test]
    fn varint_boundaries() {
        for (v, enc) in [
            (0u32, &[0x00][..]),
            (63, &[0x3f]),
            (64, &[0x40, 0x40]),
            (16_383, &[0x7f, 0xff]),
            (16_384, &[0x80, 0x00, 0x40, 0x00]),
            (VARINT_MAX, &[0xbf, 0xff, 0xff, 0xff]),
        ] {
            let mut buf = [0u8; 4];
            let mut w = Writer::new(&mut buf);
            w.write_varint(v).unwrap();
            let n = w.finish().unwrap();
            assert_eq!(&buf[..n], enc);
            let mut r = Reader::new(enc);
            assert_eq!(r.read_varint(), Ok(v));
            assert!(r.finish().is_ok());
        }
        let mut buf = [0u8; 4];
        assert_eq!(Writer::new(&mut buf).write_varint(VARINT_MAX + 1), Err(Error::VarintOutOfRange));
    }

    #[test]
    fn truncation_is_an_error_and_consumes_nothing() {
        let mut r = Reader::new(&[0x00, 0x05, 1, 2]);
        assert_eq!(r.read_vec16(), Err(Error::Truncated));
        assert_eq!(r.position(), 0, "a failed vec read consumes nothing, not even its prefix");
        let mut r = Reader::new(&[0x09, 0x01]);
        assert_eq!(r.read_vec8(), Err(Error::Truncated));
        assert_eq!(r.position(), 0);
        let mut r = Reader::new(&[0x80, 0x00]);
        assert_eq!(r.read_varint(), Err(Error::Truncated));
        assert_eq!(r.position(), 0);
        let mut r = Reader::new(&[]);
        assert_eq!(r.read_u8(), Err(Error::Truncated));
        assert_eq!(r.read_bytes(usize::MAX), Err(Error::Truncated));
    }

    #[test]
    fn length_prefix_overflow() {
        let big = [0u8; 256];
        let mut buf = [0u8; 300];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.write_vec8(&big), Err(Error::LengthOverflow));
    }

    #[test]
    fn sticky_overflow_reports_exact_size() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.write_nested16(|w| {
            w.write_u32(1)?;
            w.write_vec8(b"abc")
        })
        .unwrap();
        assert_eq!(w.finish(), Err(Error::BufferTooSmall { needed: 10 }));
    }

    proptest! {
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            while !r.is_empty() {
                let before = r.position();
                let ok = r.read_varint().is_ok() | r.read_vec8().is_ok() | r.read_vec16().is_ok()
                    | r.read_vec_varint().is_ok() | r.read_u32().is_ok();
                if !ok && r.position() == before { break; }
            }
        }

        #[test]
        fn roundtrip(a in any::<u8>(), b in any::<u16>(), c in any::<u32>(), d in any::<u64>(),
                     v in 0..=VARINT_MAX, s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = [0u8; 1024];
            let mut w = Writer::new(&mut buf);
            w.write_u8(a).unwrap(); w.write_u16(b).unwrap(); w.write_u32(c).unwrap();
            w.write_u64(d).unwrap(); w.write_varint(v).unwrap(); w.write_vec_varint(&s).unwrap();
            w.write_vec16(&s).unwrap(); w.write_vec32(&s).unwrap();
            let n = w.finish().unwrap();
            let mut r = Reader::new(&buf[..n]);
            prop_assert_eq!(r.read_u8().unwrap(), a);
            prop_assert_eq!(r.read_u16().unwrap(), b);
            prop_assert_eq!(r.read_u32().unwrap(), c);
            prop_assert_eq!(r.read_u64().unwrap(), d);
            prop_assert_eq!(r.read_varint().unwrap(), v);
            prop_assert_eq!(r.read_vec_varint().unwrap(), &s[..]);
            prop_assert_eq!(r.read_vec16().unwrap(), &s[..]);
            prop_assert_eq!(r.read_vec32().unwrap(), &s[..]);
            prop_assert!(r.finish().is_ok());
        }
    }
}

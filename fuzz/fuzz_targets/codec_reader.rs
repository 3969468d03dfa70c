//! A program of `codec::Reader` operations over untrusted bytes.
//!
//! Input: `n_ops u8 | ops [n_ops] | cap u16 | data` (see
//! `securemesh_fuzz::codec_ops`). The ops run in order on one `Reader` over
//! `data`; a failed op does not stop the program.
//!
//! Properties checked:
//! - nothing panics; after every op `position() <= data.len()`,
//!   `remaining() == data.len() - position()` and `rest()` is exactly the
//!   unread tail;
//! - fixed-width reads and `read_varint` consume nothing on error, and give
//!   exactly the result of an independent reference decoder (value or error);
//! - a successful `read_varint` re-encodes with `Writer::write_varint` to
//!   exactly the bytes it consumed (so only minimal encodings are accepted),
//!   and `varint_len` of the value equals that length;
//! - `read_vec8/16/32/vec_varint` return exactly the bytes after their
//!   prefix, re-encode byte-exactly with `write_vec8/16/32/vec_varint`
//!   (and `write_nested16/32`), and on error consume nothing, not even
//!   their length prefix;
//! - `read_array::<N>` / `read_bytes(n)` succeed iff `n <= remaining()`;
//! - replaying every consumed piece through one `Writer` rebuilds the
//!   consumed prefix of `data` exactly, and a `Writer` over a buffer of
//!   `cap` bytes reports `BufferTooSmall { needed }` with the exact total
//!   (sticky overflow) and keeps the bytes written before the overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_core::Error;
use securemesh_core::codec::{Reader, VARINT_MAX, Writer, varint_len};
use securemesh_fuzz::codec_ops::*;

/// One piece of output that re-encodes what an op consumed.
#[derive(Debug)]
enum Piece<'a> {
    Raw(&'a [u8]),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    Varint(u32),
    Vec8(&'a [u8]),
    Vec16(&'a [u8]),
    Vec32(&'a [u8]),
    VecVarint(&'a [u8]),
    Nested16(&'a [u8]),
    Nested32(&'a [u8]),
}

fn write_piece(w: &mut Writer<'_>, p: &Piece<'_>) -> Result<(), Error> {
    match *p {
        Piece::Raw(b) => w.write_bytes(b),
        Piece::U8(v) => w.write_u8(v),
        Piece::U16(v) => w.write_u16(v),
        Piece::U32(v) => w.write_u32(v),
        Piece::U64(v) => w.write_u64(v),
        Piece::Varint(v) => w.write_varint(v),
        Piece::Vec8(b) => w.write_vec8(b),
        Piece::Vec16(b) => w.write_vec16(b),
        Piece::Vec32(b) => w.write_vec32(b),
        Piece::VecVarint(b) => w.write_vec_varint(b),
        Piece::Nested16(b) => w.write_nested16(|w| w.write_bytes(b)),
        Piece::Nested32(b) => w.write_nested32(|w| w.write_bytes(b)),
    }
}

/// Encode `pieces` into a buffer of `cap` bytes: (result of finish, buffer).
fn encode_all(pieces: &[(Piece<'_>, usize)], cap: usize) -> (Result<usize, Error>, Vec<u8>) {
    let mut buf = vec![0u8; cap];
    let mut w = Writer::new(&mut buf);
    for (p, _) in pieces {
        write_piece(&mut w, p).expect("re-encoding a value that was just read");
    }
    let r = w.finish();
    (r, buf)
}

/// Encode one piece alone.
fn encode_one(p: &Piece<'_>, expected_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; expected_len];
    let mut w = Writer::new(&mut buf);
    write_piece(&mut w, p).expect("re-encoding a value that was just read");
    let r = w.finish();
    assert_eq!(r, Ok(expected_len), "re-encoding {p:?} has a different length");
    buf
}

/// Reference varint decoder (RFC 9000 §16 as profiled by RFC 9420 §2.1.2).
fn ref_varint(d: &[u8]) -> Result<(u32, usize), Error> {
    let first = *d.first().ok_or(Error::Truncated)?;
    let len = match first >> 6 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => return Err(Error::VarintOutOfRange),
    };
    let bytes = d.get(..len).ok_or(Error::Truncated)?;
    let mut v: u64 = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = v * 256 + u64::from(*b);
    }
    let min = match len {
        1 => 0,
        2 => 64,
        _ => 16_384,
    };
    if v < min {
        return Err(Error::NonMinimalVarint);
    }
    assert!(v <= u64::from(VARINT_MAX));
    Ok((v as u32, len))
}

fn ref_fixed(d: &[u8], n: usize) -> Result<&[u8], Error> {
    d.get(..n).ok_or(Error::Truncated)
}

fn check_invariants(r: &Reader<'_>, data: &[u8]) {
    let pos = r.position();
    assert!(pos <= data.len(), "position {pos} beyond input length {}", data.len());
    assert_eq!(r.remaining(), data.len() - pos);
    assert_eq!(r.rest(), &data[pos..]);
    assert_eq!(r.is_empty(), pos == data.len());
}

/// Push a piece that re-encodes `len` consumed bytes.
fn push<'a>(pieces: &mut Vec<(Piece<'a>, usize)>, p: Piece<'a>, len: usize) {
    pieces.push((p, len));
}

fuzz_target!(|input: &[u8]| {
    let Some((&n_ops, rest)) = input.split_first() else { return };
    let n_ops = usize::from(n_ops).min(rest.len());
    let (ops, rest) = rest.split_at(n_ops);
    let cap = match rest.get(..2) {
        Some(c) => usize::from(u16::from_be_bytes([c[0], c[1]])),
        None => 0,
    };
    let data = rest.get(2..).unwrap_or(&[]);

    let mut r = Reader::new(data);
    let mut pieces: Vec<(Piece<'_>, usize)> = Vec::new();

    for &op in ops {
        let before = r.position();
        let tail = &data[before..];
        let arg = op >> 4;
        // Bytes this op must consume (checked after it), where that is exact.
        let mut expect_used: Option<usize> = Some(0);
        match op & 0x0f {
            U8 => {
                let got = r.read_u8();
                assert_eq!(got, ref_fixed(tail, 1).map(|b| b[0]));
                if let Ok(v) = got {
                    push(&mut pieces, Piece::U8(v), 1);
                    expect_used = Some(1);
                }
            }
            U16 => {
                let got = r.read_u16();
                assert_eq!(got, ref_fixed(tail, 2).map(|b| u16::from_be_bytes([b[0], b[1]])));
                if let Ok(v) = got {
                    push(&mut pieces, Piece::U16(v), 2);
                    expect_used = Some(2);
                }
            }
            U32 => {
                let got = r.read_u32();
                assert_eq!(got, ref_fixed(tail, 4).map(|b| u32::from_be_bytes(b.try_into().unwrap())));
                if let Ok(v) = got {
                    push(&mut pieces, Piece::U32(v), 4);
                    expect_used = Some(4);
                }
            }
            U64 => {
                let got = r.read_u64();
                assert_eq!(got, ref_fixed(tail, 8).map(|b| u64::from_be_bytes(b.try_into().unwrap())));
                if let Ok(v) = got {
                    push(&mut pieces, Piece::U64(v), 8);
                    expect_used = Some(8);
                }
            }
            VARINT => {
                let got = r.read_varint();
                let reference = ref_varint(tail);
                assert_eq!(got, reference.map(|(v, _)| v), "read_varint disagrees with the reference");
                if let (Ok(v), Ok((_, len))) = (got, reference) {
                    assert_eq!(
                        varint_len(u64::from(v)),
                        Ok(len),
                        "varint_len disagrees with the encoding read"
                    );
                    let p = Piece::Varint(v);
                    assert_eq!(encode_one(&p, len), &tail[..len], "varint not minimal / not byte-exact");
                    push(&mut pieces, p, len);
                    expect_used = Some(len);
                }
            }
            k @ (VEC8 | VEC16 | VEC32 | VEC_VARINT) => {
                expect_used = None;
                let (got, prefix) = match k {
                    VEC8 => (r.read_vec8(), ref_fixed(tail, 1).map(|b| (usize::from(b[0]), 1))),
                    VEC16 => (
                        r.read_vec16(),
                        ref_fixed(tail, 2).map(|b| (usize::from(u16::from_be_bytes([b[0], b[1]])), 2)),
                    ),
                    VEC32 => (
                        r.read_vec32(),
                        ref_fixed(tail, 4).map(|b| (u32::from_be_bytes(b.try_into().unwrap()) as usize, 4)),
                    ),
                    _ => (r.read_vec_varint(), ref_varint(tail).map(|(v, l)| (v as usize, l))),
                };
                let used = r.position() - before;
                match (got, prefix) {
                    (Ok(s), Ok((n, plen))) => {
                        assert_eq!(s.len(), n);
                        assert_eq!(used, plen + n);
                        assert_eq!(s, &tail[plen..plen + n], "vec read returned the wrong bytes");
                        let p = match k {
                            VEC8 => Piece::Vec8(s),
                            VEC16 => Piece::Vec16(s),
                            VEC32 => Piece::Vec32(s),
                            _ => Piece::VecVarint(s),
                        };
                        assert_eq!(encode_one(&p, used), &tail[..used], "vec re-encode not byte-exact");
                        // The nested writers give the same bytes for 16/32-bit prefixes.
                        let nested = match k {
                            VEC16 => Some(Piece::Nested16(s)),
                            VEC32 => Some(Piece::Nested32(s)),
                            _ => None,
                        };
                        if let Some(np) = nested {
                            assert_eq!(
                                encode_one(&np, used),
                                &tail[..used],
                                "nested re-encode not byte-exact"
                            );
                            // Alternate the writer used for the replay below.
                            if op & 0x10 != 0 {
                                push(&mut pieces, np, used);
                                continue_checks(&r, data, &pieces);
                                continue;
                            }
                        }
                        push(&mut pieces, p, used);
                    }
                    (Ok(_), Err(e)) => panic!("vec read succeeded where the prefix is unreadable ({e:?})"),
                    (Err(e), Err(re)) => {
                        assert_eq!(e, re, "vec prefix error differs from the reference");
                        assert_eq!(used, 0, "failed prefix read consumed input");
                    }
                    (Err(e), Ok((n, plen))) => {
                        assert_eq!(e, Error::Truncated);
                        assert!(tail.len() - plen < n, "vec read failed although the bytes are there");
                        // Every read is all-or-nothing, the prefix included.
                        let _ = plen;
                        assert_eq!(used, 0, "failed vec read consumed {used} bytes");
                    }
                }
            }
            ARRAY => {
                let n = ARRAY_SIZES[usize::from(arg % 8)];
                let got: Result<Vec<u8>, Error> = match n {
                    0 => r.read_array::<0>().map(|a| a.to_vec()),
                    1 => r.read_array::<1>().map(|a| a.to_vec()),
                    2 => r.read_array::<2>().map(|a| a.to_vec()),
                    3 => r.read_array::<3>().map(|a| a.to_vec()),
                    4 => r.read_array::<4>().map(|a| a.to_vec()),
                    12 => r.read_array::<12>().map(|a| a.to_vec()),
                    16 => r.read_array::<16>().map(|a| a.to_vec()),
                    _ => r.read_array::<32>().map(|a| a.to_vec()),
                };
                assert_eq!(got.as_deref().map_err(|e| *e), ref_fixed(tail, n));
                if got.is_ok() {
                    push(&mut pieces, Piece::Raw(&tail[..n]), n);
                    expect_used = Some(n);
                }
            }
            BYTES => {
                let n = usize::from(arg) * 3;
                let got = r.read_bytes(n);
                assert_eq!(got, ref_fixed(tail, n));
                if let Ok(s) = got {
                    push(&mut pieces, Piece::Raw(s), n);
                    expect_used = Some(n);
                }
                // Absurd lengths are an error, never an overflow or a panic.
                let mut probe = r.clone();
                assert_eq!(probe.read_bytes(usize::MAX - usize::from(arg)), Err(Error::Truncated));
                assert_eq!(probe.position(), r.position());
            }
            FINISH => {
                let f = r.finish();
                if tail.is_empty() {
                    assert_eq!(f, Ok(()));
                } else {
                    assert_eq!(f, Err(Error::TrailingBytes));
                }
            }
            _ => {
                // Unassigned op codes: two clones read the same as each other
                // and leave the original untouched.
                let mut a = r.clone();
                let mut b = r.clone();
                assert_eq!(a.read_varint(), b.read_varint());
                assert_eq!(a.read_vec16(), b.read_vec16());
                assert_eq!(a.position(), b.position());
            }
        }
        if let Some(n) = expect_used {
            assert_eq!(r.position() - before, n, "op {op:#04x} consumed the wrong number of bytes");
        }
        continue_checks(&r, data, &pieces);
    }

    // Replay: the pieces rebuild the consumed prefix exactly.
    let consumed = r.position();
    let (full, buf) = encode_all(&pieces, consumed);
    assert_eq!(full, Ok(consumed), "replay length differs from bytes consumed");
    assert_eq!(&buf[..consumed], &data[..consumed], "replay differs from the consumed input");

    // Sticky overflow: exact size needed, and the pieces that fit completely
    // before the first overflow are stored.
    let (small, sbuf) = encode_all(&pieces, cap);
    if cap >= consumed {
        assert_eq!(small, Ok(consumed));
        assert_eq!(&sbuf[..consumed], &data[..consumed]);
    } else {
        assert_eq!(small, Err(Error::BufferTooSmall { needed: consumed }), "sticky overflow lost the count");
        let mut fit = 0usize;
        for (_, len) in &pieces {
            if fit + len > cap {
                break;
            }
            fit += len;
        }
        assert_eq!(&sbuf[..fit], &data[..fit], "bytes written before the overflow were lost");
    }
});

/// Reader invariants after every op, and piece lengths add up to the position.
fn continue_checks(r: &Reader<'_>, data: &[u8], pieces: &[(Piece<'_>, usize)]) {
    check_invariants(r, data);
    let total: usize = pieces.iter().map(|(_, l)| l).sum();
    assert_eq!(total, r.position(), "consumed bytes not accounted for");
}

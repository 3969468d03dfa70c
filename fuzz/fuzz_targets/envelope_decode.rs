//! Untrusted bytes into every envelope entry point of `securemesh-core`.
//!
//! Properties checked on every input:
//! - nothing panics;
//! - `envelope::decode` and `envelope::peek_sealed` give exactly the result
//!   (value or error) of an independent reference parser written here from
//!   the format in the module docs;
//! - on `Ok` from `decode`, `envelope::encode` of the decoded header + body
//!   reproduces the input byte for byte, and a buffer one byte short gives
//!   `BufferTooSmall` with the exact size;
//! - `Sample::decode_state` (a `Persist` type, version 2 that migrates
//!   version 1) is `Ok` only for its kind and versions 1..=2; a version-2
//!   value re-encodes with `encode_state` to the input byte for byte, a
//!   migrated version-1 value re-encodes to a version-2 envelope that
//!   decodes to the same value, and its old body re-encodes to the input;
//! - `envelope::open` under the fixed key: its structural errors equal the
//!   reference parser's; any other failure leaves the scratch all zero; a
//!   success (only inputs produced by `seal` under the fixed key, as the
//!   seeds are: forging a Poly1305 tag is infeasible) re-seals with the same
//!   nonce to the input byte for byte, agrees with `peek_sealed`, reports
//!   rollback for `newest_seen = generation + 1` and `BufferTooSmall` for a
//!   scratch one byte short, both with a zero scratch;
//! - `Sample::open_state` agrees with `Sample::decode_state` of the same
//!   header and body, and always leaves the scratch zeroed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_core::Error;
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{
    self, HEADER_LEN, Header, MAX_ENCODED_LEN, Persist, SEALED_HEADER_LEN, StateKind,
};
use securemesh_fuzz::{FuzzRng, Sample, fuzz_key};

/// Reference parse of the 5 header fields after the magic.
fn ref_fields(d: &[u8]) -> Result<Header, Error> {
    let kind = *d.get(4).ok_or(Error::Truncated)?;
    let v = d.get(5..7).ok_or(Error::Truncated)?;
    let version = u16::from_be_bytes([v[0], v[1]]);
    if version == 0 {
        return Err(Error::UnknownVersion { found: 0 });
    }
    let s = d.get(7..9).ok_or(Error::Truncated)?;
    Ok(Header { kind: StateKind(kind), version, suite: SuiteId(u16::from_be_bytes([s[0], s[1]])) })
}

fn ref_magic(d: &[u8], magic: &[u8; 4]) -> Result<(), Error> {
    match d.get(..4) {
        None => Err(Error::Truncated),
        Some(m) if m != magic => Err(Error::BadMagic),
        Some(_) => Ok(()),
    }
}

fn be_u32(d: &[u8], at: usize) -> Option<usize> {
    let b = d.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Reference plain-envelope decoder.
fn ref_decode(d: &[u8]) -> Result<(Header, &[u8]), Error> {
    ref_magic(d, &envelope::MAGIC)?;
    let h = ref_fields(d)?;
    let len = be_u32(d, 9).ok_or(Error::Truncated)?;
    let body = d.get(HEADER_LEN..).ok_or(Error::Truncated)?;
    if body.len() < len {
        return Err(Error::Truncated);
    }
    if len > MAX_ENCODED_LEN {
        return Err(Error::LengthOverflow);
    }
    if body.len() > len {
        return Err(Error::TrailingBytes);
    }
    Ok((h, body))
}

/// Reference `peek_sealed`.
fn ref_peek(d: &[u8]) -> Result<(Header, u64), Error> {
    ref_magic(d, &envelope::SEALED_MAGIC)?;
    let h = ref_fields(d)?;
    let g = d.get(9..17).ok_or(Error::Truncated)?;
    let mut gen_bytes = [0u8; 8];
    gen_bytes.copy_from_slice(g);
    Ok((h, u64::from_be_bytes(gen_bytes)))
}

/// Header, generation, nonce and ciphertext of a well-formed sealed blob.
type SealedParts<'a> = (Header, u64, [u8; 12], &'a [u8]);

/// Reference structural parse of a sealed blob (everything `open` checks
/// before it touches the scratch): header, generation, nonce, ciphertext.
fn ref_sealed_structure(d: &[u8]) -> Result<SealedParts<'_>, Error> {
    let (h, generation) = ref_peek(d)?;
    let n = d.get(17..29).ok_or(Error::Truncated)?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(n);
    let len = be_u32(d, 29).ok_or(Error::Truncated)?;
    let rest = d.get(SEALED_HEADER_LEN..).ok_or(Error::Truncated)?;
    if rest.len() < len {
        return Err(Error::Truncated);
    }
    if len > MAX_ENCODED_LEN {
        return Err(Error::LengthOverflow);
    }
    if rest.len() < len + 16 {
        return Err(Error::Truncated);
    }
    if rest.len() > len + 16 {
        return Err(Error::TrailingBytes);
    }
    Ok((h, generation, nonce, &rest[..len]))
}

fn check_plain(data: &[u8]) {
    let got = envelope::decode(data);
    assert_eq!(got, ref_decode(data), "decode disagrees with the reference parser");
    let Ok((header, body)) = got else { return };

    // Byte-exact round trip through encode.
    let mut buf = vec![0u8; data.len()];
    let n = envelope::encode(&header, &mut buf, |w| w.write_bytes(body))
        .expect("re-encode of a decoded envelope");
    assert_eq!(&buf[..n], data, "encode(decode(x)) != x");
    // Exact size on a short buffer.
    let mut short = vec![0u8; data.len() - 1];
    assert_eq!(
        envelope::encode(&header, &mut short, |w| w.write_bytes(body)),
        Err(Error::BufferTooSmall { needed: data.len() })
    );
}

fn check_persist(data: &[u8]) {
    let got = Sample::decode_state(data);
    let Ok(sample) = got else {
        return;
    };
    let (header, body) = envelope::decode(data).expect("decode_state Ok implies decode Ok");
    assert_eq!(header.kind, Sample::KIND);
    assert!((1..=Sample::VERSION).contains(&header.version));
    assert!(body.len() <= Sample::MAX_BODY_LEN);
    assert_eq!(sample.suite, header.suite);

    let mut buf = vec![0u8; Sample::MAX_ENCODED_LEN];
    let n = sample.encode_state(&mut buf).expect("encode_state of a decoded state");
    match header.version {
        2 => assert_eq!(&buf[..n], data, "encode_state(decode_state(x)) != x"),
        1 => {
            // Migrated: the new encoding is version 2 and decodes to the same value.
            assert!(sample.label.is_empty() && sample.counter <= u64::from(u32::MAX));
            let (h2, _) = envelope::decode(&buf[..n]).expect("migrated re-encode decodes");
            assert_eq!(h2.version, Sample::VERSION);
            assert_eq!(Sample::decode_state(&buf[..n]).as_ref(), Ok(&sample), "migration not stable");
            // And the old body re-encodes byte-exactly with the old code.
            let mut old = vec![0u8; data.len()];
            let m = envelope::encode(&header, &mut old, |w| Sample::encode_v1_body(sample.counter as u32, w))
                .expect("v1 re-encode");
            assert_eq!(&old[..m], data, "v1 body does not round-trip");
        }
        v => panic!("decode_state accepted version {v}"),
    }
}

fn check_sealed(data: &[u8]) {
    let key = fuzz_key();
    let peek = envelope::peek_sealed(data);
    assert_eq!(peek, ref_peek(data), "peek_sealed disagrees with the reference parser");
    if peek.is_ok() {
        assert!(envelope::decode(data).is_err(), "both plain and sealed");
    }

    let structure = ref_sealed_structure(data);
    let mut scratch = vec![0u8; data.len()];
    let opened =
        envelope::open(&key, data, 0, &mut scratch).map(|o| (o.header, o.generation, o.body.to_vec()));
    let (header, generation, body) = match (opened, structure) {
        (Err(e), Err(r)) => {
            assert_eq!(e, r, "open structural error differs from the reference");
            assert!(scratch.iter().all(|b| *b == 0), "scratch written on a structural error");
            check_open_state_err(data);
            return;
        }
        (Err(e), Ok(_)) => {
            assert_eq!(e, Error::Decrypt, "well-formed blob failed with a non-AEAD error");
            assert!(scratch.iter().all(|b| *b == 0), "scratch holds plaintext after a failed open");
            check_open_state_err(data);
            return;
        }
        (Ok(_), Err(r)) => panic!("open accepted a blob the reference parser refuses ({r:?})"),
        (Ok(o), Ok((rh, rg, nonce, ct))) => {
            assert_eq!((o.0, o.1), (rh, rg));
            assert_eq!(o.2.len(), ct.len());
            // A success means the input is a real seal: re-sealing the same
            // header, generation and body with the same nonce gives the input.
            let mut resealed = vec![0u8; data.len()];
            let mut rng = FuzzRng::new(nonce);
            let n = envelope::seal(&key, &o.0, o.1, &mut rng, &mut resealed, |w| w.write_bytes(&o.2))
                .expect("re-seal of an opened blob");
            assert_eq!(&resealed[..n], data, "seal(open(x)) != x");
            assert_eq!(rng.drawn(), 12, "seal draws exactly one nonce");
            o
        }
    };
    assert_eq!(peek, Ok((header, generation)), "peek_sealed disagrees with open");

    // Rollback: refused, scratch zero.
    if let Some(newer) = generation.checked_add(1) {
        let mut s = vec![0u8; data.len()];
        let r = envelope::open(&key, data, newer, &mut s).map(|_| ());
        assert_eq!(r, Err(Error::Rollback { found: generation, newest: newer }));
        assert!(s.iter().all(|b| *b == 0), "scratch holds plaintext after a rollback");
    }
    // Scratch one byte short.
    if !body.is_empty() {
        let mut s = vec![0u8; body.len() - 1];
        let r = envelope::open(&key, data, generation, &mut s).map(|_| ());
        assert_eq!(r, Err(Error::BufferTooSmall { needed: body.len() }));
        assert!(s.iter().all(|b| *b == 0));
    }

    // open_state agrees with decode_state of the same header and body.
    let mut plain = vec![0u8; HEADER_LEN + body.len()];
    let n = envelope::encode(&header, &mut plain, |w| w.write_bytes(&body)).expect("plain re-encode");
    let expected = Sample::decode_state(&plain[..n]).map(|s| (s, generation));
    let mut s = vec![0u8; data.len()];
    assert_eq!(Sample::open_state(&key, data, 0, &mut s), expected, "open_state != decode_state");
    assert!(s.iter().all(|b| *b == 0), "open_state left plaintext in the scratch");
}

/// `open_state` of a blob `open` refused: an error, and a zero scratch.
fn check_open_state_err(data: &[u8]) {
    let mut s = vec![0u8; data.len()];
    assert!(Sample::open_state(&fuzz_key(), data, 0, &mut s).is_err());
    assert!(s.iter().all(|b| *b == 0));
}

fuzz_target!(|data: &[u8]| {
    check_plain(data);
    check_persist(data);
    check_sealed(data);
});

//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`,
//! produced by the real encoders of `securemesh-core`:
//!
//! ```text
//! cd fuzz && cargo +nightly run --example gen_seeds [-- OUT_DIR]
//! ```
//!
//! The files are small (a few KiB in all) and committed, so `fuzz/run.sh`
//! needs no extra build to seed the targets.

use std::fs;
use std::path::{Path, PathBuf};

use securemesh_core::Error;
use securemesh_core::codec::{VARINT_MAX, Writer};
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{self, Header, Persist, StateKind};
use securemesh_fuzz::codec_ops::*;
use securemesh_fuzz::{FuzzRng, Sample, SealInput, fuzz_key};

fn write_with(cap: usize, f: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>) -> Vec<u8> {
    let mut buf = vec![0u8; cap];
    let mut w = Writer::new(&mut buf);
    f(&mut w).expect("seed write");
    let n = w.finish().expect("seed fits");
    buf.truncate(n);
    buf
}

fn plain(h: &Header, f: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = envelope::encode(h, &mut buf, f).expect("encode seed");
    buf.truncate(n);
    buf
}

fn sealed(
    h: &Header,
    generation: u64,
    nonce: u8,
    f: impl FnOnce(&mut Writer<'_>) -> Result<(), Error>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut rng = FuzzRng::new([nonce; 12]);
    let n = envelope::seal(&fuzz_key(), h, generation, &mut rng, &mut buf, f).expect("seal seed");
    buf.truncate(n);
    buf
}

fn envelope_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sample =
        Sample { suite: SuiteId::DEFAULT, counter: 0x0102_0304_0506_0708, label: b"peer-7".to_vec() };
    let mut v = Vec::new();

    let mut buf = vec![0u8; Sample::MAX_ENCODED_LEN];
    let n = sample.encode_state(&mut buf).expect("encode_state");
    v.push(("plain_sample_v2", buf[..n].to_vec()));

    let empty = Sample { suite: SuiteId(0x7777), counter: 0, label: Vec::new() };
    let n = empty.encode_state(&mut buf).expect("encode_state");
    v.push(("plain_sample_v2_empty_label", buf[..n].to_vec()));

    let v1 = Header { kind: Sample::KIND, version: 1, suite: SuiteId::DEFAULT };
    v.push(("plain_sample_v1", plain(&v1, |w| Sample::encode_v1_body(9, w))));

    let v3 = Header { kind: Sample::KIND, version: 3, suite: SuiteId::DEFAULT };
    v.push(("plain_sample_v3_unknown", plain(&v3, |w| w.write_u64(1))));

    let other = Header { kind: StateKind::MLS_GROUP, version: 1, suite: SuiteId::DEFAULT };
    v.push(("plain_other_kind", plain(&other, |w| w.write_vec8(b"group"))));
    v.push(("plain_empty_body", plain(&other, |_| Ok(()))));

    let mut out = vec![0u8; Sample::MAX_SEALED_LEN];
    let n = sample.seal_state(&fuzz_key(), 41, &mut FuzzRng::new([7; 12]), &mut out).expect("seal_state");
    v.push(("sealed_sample_v2_gen41", out[..n].to_vec()));

    v.push(("sealed_sample_v1_gen0", sealed(&v1, 0, 1, |w| Sample::encode_v1_body(3, w))));
    let ratchet = Header { kind: StateKind::RATCHET_SESSION, version: 1, suite: SuiteId::DEFAULT };
    v.push(("sealed_raw_gen_max", sealed(&ratchet, u64::MAX, 2, |w| w.write_bytes(b"ratchet state bytes"))));
    v.push(("sealed_empty_body", sealed(&ratchet, 5, 3, |_| Ok(()))));
    v
}

fn codec_program(ops: &[u8], cap: u16, data: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(ops.len()).expect("at most 255 ops")];
    v.extend_from_slice(ops);
    v.extend_from_slice(&cap.to_be_bytes());
    v.extend_from_slice(data);
    v
}

fn codec_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    // Every op once, over data written by the Writer.
    let data = write_with(1024, |w| {
        w.write_u8(0xab)?;
        w.write_u16(0x0102)?;
        w.write_u32(0xdead_beef)?;
        w.write_u64(u64::MAX - 1)?;
        w.write_varint(37)?;
        w.write_varint(15_293)?;
        w.write_varint(494_878_333)?;
        w.write_vec8(b"vec8")?;
        w.write_vec16(b"vec16")?;
        w.write_vec32(b"vec32")?;
        w.write_vec_varint(&[0x55; 70])?;
        w.write_bytes(&[0x11; 12])?;
        w.write_bytes(&[0x22; 6])
    });
    let ops = [
        op(U8, 0),
        op(U16, 0),
        op(U32, 0),
        op(U64, 0),
        op(VARINT, 0),
        op(VARINT, 0),
        op(VARINT, 0),
        op(VEC8, 0),
        op(VEC16, 1),
        op(VEC32, 0),
        op(VEC_VARINT, 0),
        op(ARRAY, 5),
        op(BYTES, 2),
        op(FINISH, 0),
    ];
    v.push(("all_ops", codec_program(&ops, 4096, &data)));
    v.push(("all_ops_small_writer", codec_program(&ops, 40, &data)));

    // Varint boundaries, then the non-minimal and reserved forms.
    let varints = write_with(64, |w| {
        for x in [0, 63, 64, 16_383, 16_384, VARINT_MAX] {
            w.write_varint(x)?;
        }
        w.write_bytes(&[0x40, 0x25, 0x80, 0x00, 0x00, 0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0])
    });
    v.push(("varints", codec_program(&[op(VARINT, 0); 10], 64, &varints)));

    // Truncated vec bodies (prefix claims more than is there).
    let short = [0x00, 0x05, 1, 2, 0x09, 1];
    v.push((
        "truncated_vecs",
        codec_program(&[op(VEC16, 0), op(VEC8, 0), op(VEC_VARINT, 0), op(FINISH, 0)], 8, &short),
    ));

    // A plain envelope walked field by field.
    let sample = Sample { suite: SuiteId::DEFAULT, counter: 9, label: b"label".to_vec() };
    let mut buf = vec![0u8; Sample::MAX_ENCODED_LEN];
    let n = sample.encode_state(&mut buf).expect("encode_state");
    let ops = [op(ARRAY, 4), op(U8, 0), op(U16, 0), op(U16, 0), op(VEC32, 0), op(FINISH, 0)];
    v.push(("envelope_walk", codec_program(&ops, 256, &buf[..n])));
    v
}

fn seal_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let base = SealInput {
        key: [0x5a; 32],
        kind: StateKind::RATCHET_SESSION.0,
        version: 2,
        suite: SuiteId::DEFAULT.0,
        generation: 41,
        newest_mode: 0,
        newest_delta: 0,
        nonce: *b"nonce-nonce!",
        flip_index: 40,
        flip_mask: 0x01,
        shortfall: 1,
        cut: 33,
        body: b"state".to_vec(),
    };
    let mut v = vec![("small_body", base.to_bytes())];
    let empty = SealInput { body: Vec::new(), flip_index: 0, ..base.clone() };
    v.push(("empty_body", empty.to_bytes()));
    let long: Vec<u8> = (0..300u16).map(|i| (i % 251) as u8).collect();
    let rollback = SealInput {
        newest_mode: 1,
        newest_delta: 3,
        body: long,
        flip_index: 500,
        flip_mask: 0x80,
        ..base.clone()
    };
    v.push(("long_body_rollback", rollback.to_bytes()));
    let max_gen = SealInput { generation: u64::MAX, newest_mode: 1, shortfall: 200, ..base.clone() };
    v.push(("generation_max", max_gen.to_bytes()));
    let v0 = SealInput { version: 0, ..base.clone() };
    v.push(("version_zero", v0.to_bytes()));
    v
}

fn write_dir(root: &Path, target: &str, seeds: Vec<(&'static str, Vec<u8>)>) -> usize {
    let dir = root.join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("remove old seeds");
    }
    fs::create_dir_all(&dir).expect("create seed dir");
    let mut total = 0;
    for (name, bytes) in seeds {
        total += bytes.len();
        fs::write(dir.join(format!("{name}.bin")), bytes).expect("write seed");
    }
    total
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    let mut total = 0;
    total += write_dir(&root, "envelope_decode", envelope_seeds());
    total += write_dir(&root, "codec_reader", codec_seeds());
    total += write_dir(&root, "sealed_roundtrip", seal_seeds());
    println!("seeds written to {} ({total} bytes)", root.display());
}

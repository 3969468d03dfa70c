#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]
use securemesh_core::testing::TestRng;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::*;

#[test]
fn scratch() {
    for he in [false, true] {
        let mut rng = TestRng::new(5);
        let alice = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let mut pool: PrekeyPool<2> = PrekeyPool::new(&bob, &mut rng, UnixTime(0), PrekeyConfig::default());
        let mut buf = [0u8; MAX_BUNDLE_LEN];
        let n = pool.bundle(&bob, None).encode(&mut buf).unwrap();
        let bundle = Bundle::decode(&buf[..n]).unwrap();
        let cfg = SessionConfig { header_encryption: he, ..Default::default() };
        let mut a: Session = Session::initiate(&alice, &bundle, cfg, &mut rng, Instant(0)).unwrap();
        println!("encrypted_len(5) = {}", a.encrypted_len(5));
        let mut w = [0u8; 512];
        let m0 = a.encrypt(b"hello", &mut w, &mut rng, Instant(0)).unwrap();
        println!("actual = {m0}");
        let first = w[..m0].to_vec();
        let m1 = a.encrypt(b"again", &mut w, &mut rng, Instant(0)).unwrap();
        let second = w[..m1].to_vec();
        let mut out = [0u8; 512];
        let (mut b, _): (Session, usize) =
            Session::respond(&bob, &mut pool, &first, &mut out, SessionConfig::default(), Instant(0))
                .unwrap();
        let mut bad2 = second.clone();
        bad2[1 + 128 + 32 + 4 + 2] ^= 0x01;
        println!(
            "he={he} flipped he flag first: {:?}",
            b.decrypt(&bad2, &mut out, Instant(0)).map(|k| out[..k].to_vec())
        );
        let mut bad3 = second.clone();
        bad3[1 + 128 + 32 + 4] = 0x01;
        bad3.splice(1 + 128 + 32 + 5..1 + 128 + 32 + 5, [0u8, 0, 0, 9]);
        println!(
            "he={he} added opk id: {:?}",
            b.decrypt(&bad3, &mut out, Instant(0)).map(|k| out[..k].to_vec())
        );
        // flip spk_id in the repeated initial message (offset 1+128+32 .. +4)
        let mut bad = second.clone();
        bad[1 + 128 + 32 + 3] ^= 0x01;
        println!(
            "he={he} flipped spk_id: {:?}",
            b.decrypt(&bad, &mut out, Instant(0)).map(|k| out[..k].to_vec())
        );
        let mut bad = second.clone();
        bad[1 + 128 + 32 + 4 + 1] ^= 0x01; // he flag (no opk: flag at +4, kem at +5, he at +6)
        println!(
            "he={he} flipped he flag: {:?}",
            b.decrypt(&bad2, &mut out, Instant(0)).map(|k| out[..k].to_vec())
        );
        println!(
            "he={he} flipped kem: {:?}",
            b.decrypt(&bad, &mut out, Instant(0)).map(|k| out[..k].to_vec())
        );
        println!(
            "he={he} genuine: {:?}",
            b.decrypt(&second, &mut out, Instant(0)).map(|k| out[..k].to_vec())
        );
    }
}

//! SHA-256 and SHA-512 (FIPS 180-4), and with feature `blake2` BLAKE2s-256
//! and BLAKE2b-512 (RFC 7693), each with HMAC and HKDF, on RustCrypto.

use super::Hash;
use crate::{Error, Secret};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Digest;

macro_rules! rustcrypto_hash {
    ($name:ident, $inner:ty, $hmac:ident, $hkdf:ident, $noise:literal, $len:literal, $block:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Default)]
        pub struct $name($inner);

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(stringify!($name))
            }
        }

        impl Hash for $name {
            const NAME: &'static str = $noise;
            const BLOCK_LEN: usize = $block;
            type Output = [u8; $len];

            fn update(&mut self, data: &[u8]) {
                Digest::update(&mut self.0, data);
            }

            fn finalize(self) -> [u8; $len] {
                Digest::finalize(self.0).into()
            }

            fn hmac_with<E>(
                key: &[u8],
                feed: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), E>,
            ) -> Result<[u8; $len], E> {
                // HMAC accepts keys of any length (RFC 2104 §2), so this
                // constructor cannot fail; an empty MAC keyed by nothing is
                // still a correct HMAC of the empty key.
                let mut mac = match <$hmac<$inner> as KeyInit>::new_from_slice(key) {
                    Ok(mac) => mac,
                    Err(_) => <$hmac<$inner> as KeyInit>::new(&Default::default()),
                };
                feed(&mut |p| mac.update(p))?;
                Ok(mac.finalize().into_bytes().into())
            }

            fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> Secret<[u8; $len]> {
                let (prk, _) = $hkdf::<$inner>::extract(Some(salt), ikm);
                Secret::new(prk.into())
            }

            fn hkdf_expand(prk: &[u8], info: &[&[u8]], okm: &mut [u8]) -> Result<(), Error> {
                let hk = $hkdf::<$inner>::from_prk(prk).map_err(|_| Error::InvalidLength)?;
                hk.expand_multi_info(info, okm).map_err(|_| Error::InvalidLength)
            }
        }
    };
}

rustcrypto_hash!(
    Sha256,
    sha2::Sha256,
    Hmac,
    Hkdf,
    "SHA256",
    32,
    64,
    "SHA-256, HMAC-SHA256 and HKDF-SHA256.\n\n```\nuse securemesh_core::crypto::{Hash, Sha256};\nlet d = Sha256::digest(&[b\"ab\", b\"c\"]);\nassert_eq!(d[..4], [0xba, 0x78, 0x16, 0xbf]); // FIPS 180-2 \"abc\"\n```"
);
rustcrypto_hash!(
    Sha512,
    sha2::Sha512,
    Hmac,
    Hkdf,
    "SHA512",
    64,
    128,
    "SHA-512, HMAC-SHA512 and HKDF-SHA512.\n\n```\nuse securemesh_core::crypto::{Hash, Sha512};\nlet d = Sha512::digest(&[b\"abc\"]);\nassert_eq!(d[..4], [0xdd, 0xaf, 0x35, 0xa1]); // FIPS 180-2 \"abc\"\n```"
);

#[cfg(feature = "blake2")]
use hkdf::SimpleHkdf;
#[cfg(feature = "blake2")]
use hmac::SimpleHmac;

#[cfg(feature = "blake2")]
rustcrypto_hash!(
    Blake2s,
    blake2::Blake2s256,
    SimpleHmac,
    SimpleHkdf,
    "BLAKE2s",
    32,
    64,
    "BLAKE2s-256 (RFC 7693) with HMAC and HKDF (feature `blake2`).\n\n```\nuse securemesh_core::crypto::{Hash, Blake2s};\nlet d = Blake2s::digest(&[b\"abc\"]);\nassert_eq!(d[..4], [0x50, 0x8c, 0x5e, 0x8c]); // RFC 7693 Appendix B\n```"
);
#[cfg(feature = "blake2")]
rustcrypto_hash!(
    Blake2b,
    blake2::Blake2b512,
    SimpleHmac,
    SimpleHkdf,
    "BLAKE2b",
    64,
    128,
    "BLAKE2b-512 (RFC 7693) with HMAC and HKDF (feature `blake2`).\n\n```\nuse securemesh_core::crypto::{Hash, Blake2b};\nlet d = Blake2b::digest(&[b\"abc\"]);\nassert_eq!(d[..4], [0xba, 0x80, 0xa5, 0x3f]); // RFC 7693 Appendix A\n```"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_hmac_matches_one_shot() {
        // RFC 4231 test case 2 (key "Jefe"), fed in pieces.
        let tag = Sha256::hmac_with(b"Jefe", |sink| {
            for p in [&b"what do ya want "[..], b"", b"for nothing?"] {
                sink(p);
            }
            Ok::<(), ()>(())
        });
        assert_eq!(
            tag.map(|t| t[..8].to_vec()),
            Ok(std::vec![0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e])
        );
        // Keys shorter than, equal to and longer than the block, in chunks.
        for key_len in [0usize, 1, 32, 64, 65, 100, 200] {
            let key: std::vec::Vec<u8> = (0..key_len).map(|i| i as u8).collect();
            let data: std::vec::Vec<u8> = (0..200u8).map(|b| b.wrapping_mul(7)).collect();
            let streamed = Sha256::hmac_with(&key, |sink| {
                data.chunks(13).for_each(sink);
                Ok::<(), ()>(())
            });
            assert_eq!(streamed, Ok(Sha256::hmac(&key, &[&data])));
            let streamed512 = Sha512::hmac_with(&key, |sink| {
                data.chunks(13).for_each(sink);
                Ok::<(), ()>(())
            });
            assert_eq!(streamed512, Ok(Sha512::hmac(&key, &[&data[..100], &data[100..]])));
        }
        // The feeder's error comes back as is.
        assert_eq!(Sha256::hmac_with(b"k", |_| Err(7u8)), Err(7));
    }
}

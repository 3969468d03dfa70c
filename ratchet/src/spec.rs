//! # The securemesh ratchet wire specification, version 2
//!
//! This module is documentation only. It specifies every byte that
//! `securemesh-ratchet` puts on the wire or signs, and every key it
//! derives, precisely enough to build a compatible implementation without
//! reading the code. Published test vectors that exercise every rule below
//! live in `test-vectors/ratchet/v2/` of the repository (`x3dh.json`,
//! `double-ratchet.json`, `double-ratchet-he.json`) and, for PQXDH, in
//! `test-vectors/ratchet/v3/pqxdh.json` (see the `README.md` of
//! `test-vectors/ratchet/`).
//!
//! **PQXDH.** Wire version 2 has a KEM slot in the bundle (§3) and in the
//! initial message (§6.4). With a KEM prekey in the bundle, Alice may run
//! PQXDH (§4.1) instead of X3DH: she encapsulates to the KEM prekey, the
//! KEM shared secret joins the KDF input, and her initial message carries
//! the ciphertext. A responder that published a KEM prekey with a signed
//! prekey refuses any initial message to that signed prekey without one
//! (a downgrade, §7.2). Version-2 peers without PQXDH never send a
//! non-zero `kem_count`, so X3DH sessions are unchanged byte for byte.
//!
//! **Changes from version 1.** Version 1 did not bind the X3DH prefix of
//! the initial message to the session: X25519 clamps private keys to
//! multiples of the cofactor 8, so `ek_pub` plus any of the 7 points of
//! small order gives canonical encodings with the same `DH2..DH4`, and
//! each was accepted as a different initial message (one recorded message
//! without a one-time prekey opened 8 sessions, and an altered copy that
//! arrived first made the genuine repeat refused). Version 2:
//!
//! - gives the initial message the type `0x04` and refuses the version-1
//!   type `0x01` with `UnknownVersion` (§6);
//! - puts the whole X3DH prefix, byte for byte, into the `info` of the
//!   X3DH KDF, with new labels (§4), so a change of any prefix byte gives
//!   another `SK` and the first message fails to authenticate;
//! - erases the signed prekey's private key from Bob's session once
//!   `respond` has used it (§7.2);
//! - says in MUST words that state is persisted before a message is sent
//!   (§8), and closes the gaps listed in §7.8 and §9.
//!
//! Bundles (§3) and ratchet messages (§6.1-§6.3) are unchanged. Hybrid
//! bundles (§3.1, bundle version 3) add an ML-DSA-65 identity key and
//! hybrid signatures beside the classical ones.
//!
//! The protocol is Signal's, with a few deliberate, listed departures:
//!
//! - **\[X3DH\]** *The X3DH Key Agreement Protocol*, revision 1
//!   (2016-11-04), Moxie Marlinspike and Trevor Perrin.
//! - **\[DR\]** *The Double Ratchet Algorithm*, revision 1 (2016-11-20),
//!   Trevor Perrin and Moxie Marlinspike.
//! - **\[PQXDH\]** *The PQXDH Key Agreement Protocol*, revision 3
//!   (2024-01-23), Ehren Kret and Rolfe Schmidt.
//!
//! A bare §n refers to a section of this document; \[X3DH\] §n and
//! \[DR\] §n to sections of those.
//!
//! ## 1. Conventions and primitives
//!
//! - `a || b` is concatenation. `x[i..j]` are bytes `i` (inclusive) to `j`
//!   (exclusive). Lengths are in bytes.
//! - Integers (`u8`, `u16`, `u32`) are unsigned and **big-endian**.
//! - Labels are ASCII strings without terminator or length prefix; their
//!   exact bytes are listed in the table at the end of this section.
//! - Every decoder is strict: a field with a value outside its listed range,
//!   a truncated input or trailing bytes is refused.
//!
//! | Name | Primitive | Notes |
//! |---|---|---|
//! | `DH(sk, pk)` | X25519 (RFC 7748) | 32-byte private keys (any 32 bytes; clamped inside the scalar multiplication), 32-byte public keys, which must be **canonical** on the wire: bit 255 clear and `u < 2^255 - 19` (X25519 itself ignores bit 255 and reduces, so other encodings would give the same result unnoticed); any other encoding in a bundle, identity, initial message or ratchet header is `Malformed`. An **all-zero result is refused** everywhere (§4, §7). |
//! | `Sig` | Ed25519 (RFC 8032, pure) | 32-byte seed, 32-byte public key, 64-byte signature. Signing is deterministic. Verification is **strict** (rejects non-canonical `S`, non-canonical or small-order `A` and `R`), e.g. ed25519-dalek `verify_strict`. |
//! | `SHA-256`, `HMAC(k, m)` | SHA-256, HMAC-SHA256 (RFC 2104) | |
//! | `HKDF(salt, ikm, info, L)` | HKDF-SHA256 (RFC 5869) | `HKDF-Expand(HKDF-Extract(salt, ikm), info, L)`. |
//! | `AEAD` | ChaCha20-Poly1305 (RFC 8439) | 32-byte key, 12-byte nonce, 16-byte tag appended. Message bodies. |
//! | `HAEAD` | XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03, the construction of RustCrypto's `chacha20poly1305::XChaCha20Poly1305`: HChaCha20 over the first 16 nonce bytes, then ChaCha20-Poly1305 with the nonce `0x00000000 \|\| nonce[16..24]`) | 32-byte key, 24-byte nonce, 16-byte tag. Encrypted headers. |
//!
//! | Label | Length | Used in |
//! |---|---|---|
//! | `securemesh-identity-v1` | 22 | identity binding signature (§2) |
//! | `securemesh-spk-v1` | 17 | signed-prekey signature (§3) |
//! | `securemesh-kem-prekey-v1` | 24 | KEM-prekey signature (§3) |
//! | `securemesh-x3dh-v2` | 18 | X3DH KDF `info` label, clear headers (§4) |
//! | `securemesh-x3dh-he-v2` | 21 | X3DH KDF `info` label, encrypted headers (§4) |
//! | `securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-768` | 46 | PQXDH KDF `info` label, ML-KEM-768, clear headers (§4.1) |
//! | `securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-1024` | 47 | PQXDH KDF `info` label, ML-KEM-1024, clear headers (§4.1) |
//! | `securemesh-PQXDH-HE_CURVE25519_SHA-256_ML-KEM-768` | 49 | PQXDH KDF `info` label, ML-KEM-768, encrypted headers (§4.1) |
//! | `securemesh-PQXDH-HE_CURVE25519_SHA-256_ML-KEM-1024` | 50 | PQXDH KDF `info` label, ML-KEM-1024, encrypted headers (§4.1) |
//! | `securemesh-ratchet-root-v1` | 26 | `KDF_RK` `info`, clear headers (§5) |
//! | `securemesh-ratchet-root-he-v1` | 29 | `KDF_RK` `info`, encrypted headers (§5) |
//! | `securemesh-ratchet-message-v1` | 29 | message-key expansion `info` (§5) |
//!
//! ## 2. Identities
//!
//! An identity is **two** key pairs: an Ed25519 signing key and an X25519
//! key-agreement key, bound by a signature. This replaces XEdDSA (\[X3DH\]
//! §2.2, §3.2 sign with the X25519 identity key converted to Edwards form;
//! securemesh does not convert keys). The
//! private identity is persisted as the two 32-byte secrets (Ed25519 seed,
//! X25519 private key); everything else is derived from them.
//!
//! ```text
//! identity (128 bytes) = sign_pub 32 | dh_pub 32 | binding_sig 64
//! binding_sig          = Sig(sign_seed, "securemesh-identity-v1" || dh_pub)     (54 signed bytes)
//! Encode(IK)  (64 bytes) = sign_pub || dh_pub                                   (used in the X3DH AD)
//! ```
//!
//! A decoder first requires `dh_pub` to be canonical (§1, else
//! `Malformed`), then verifies `binding_sig` strictly and refuses the
//! identity with `BadSignature` otherwise. A valid `sign_pub` is exactly
//! what strict verification accepts: the canonical encoding of a point on
//! edwards25519 that is not of small order (RFC 8032 §5.1.3 decoding, plus
//! ed25519-dalek's `verify_strict` rules: `S < L`, `A` and `R` not of small
//! order); anything else fails verification and is `BadSignature`.
//! Two identities are equal only if all 128 bytes are equal.
//!
//! ## 3. Prekey bundle
//!
//! What Bob publishes (\[X3DH\] §3.2): his identity, a signed prekey,
//! at most one one-time prekey and at most one KEM prekey (for PQXDH, §4.1:
//! a one-time KEM prekey, or the last-resort one when none is left).
//!
//! | Offset | Field | Size | Value |
//! |---|---|---|---|
//! | 0 | `version` | u8 | `0x01` (else `UnknownVersion`) |
//! | 1 | `identity` | 128 | §2, binding signature verified |
//! | 129 | `spk_id` | u32 | signed-prekey identifier |
//! | 133 | `spk_pub` | 32 | X25519 public key |
//! | 165 | `spk_sig` | 64 | see below, verified |
//! | 229 | `opk_count` | u8 | `0` or `1` (else `Malformed`) |
//! | 230 | `opk_id` | u32 | only if `opk_count = 1` |
//! | 234 | `opk_pub` | 32 | only if `opk_count = 1` |
//! | next | `kem_count` | u8 | `0` or `1` (else `Malformed`) |
//! | | `kem_id` | u32 | only if `kem_count = 1` |
//! | | `kem_alg` | u16 | any value (see below) |
//! | | `kem_pub_len` | u16 | at most 1568 (else `Malformed`) |
//! | | `kem_pub` | `kem_pub_len` | encapsulation key |
//! | | `kem_sig` | 64 | see below, verified |
//!
//! ```text
//! spk_sig = Sig(identity.sign_seed, "securemesh-spk-v1" || u32(spk_id) || spk_pub)                    (53 signed bytes)
//! kem_sig = Sig(identity.sign_seed, "securemesh-kem-prekey-v1" || u32(kem_id) || u16(kem_alg)
//!               || SHA-256(kem_pub))                                                               (62 signed bytes)
//! ```
//!
//! The one-time prekey is not signed (as in \[X3DH\]). A bundle is 231
//! bytes without one-time and KEM prekey, 267 with a one-time prekey, and at
//! most 1907 bytes (`MAX_BUNDLE_LEN`). Nothing may follow the last field.
//! Decoding checks, in this order: version, identity signature, `spk_sig`,
//! `opk_count`, `kem_count`, `kem_pub_len`, `kem_sig`, end of input.
//!
//! **The KEM slot.** `kem_alg` is the KEM's type, explicit and signed: it
//! plays the role of the type byte of \[PQXDH\]'s `EncodeKEM`, and
//! `kem_sig` is \[PQXDH\]'s `Sig(IK_B, EncodeKEM(PQPK_B))` with the key
//! hashed, the identifier bound and a label (so a signature over one KEM
//! key can never be read as one over another type, another identifier or
//! a signed prekey). The registry: `1` = ML-KEM-768 (1184-byte key,
//! 1088-byte ciphertext), `2` = X-Wing (1216, reserved: not a PQXDH KEM
//! here), `3` = ML-KEM-1024 (1568 and 1568, the largest, hence the
//! bound); `0` and everything above `3` are reserved. A bundle decoder
//! accepts **every** `kem_alg` value and every `kem_pub_len` up to 1568
//! (a peer may carry keys it cannot use); Alice refuses to run PQXDH with
//! an algorithm outside `{1, 3}` (`UnsupportedKem`) or a key whose length
//! is not the algorithm's or that fails the FIPS 203 §7.2 modulus check
//! (`Malformed`).
//!
//! **The last-resort KEM prekey.** \[PQXDH\] §3.2: Bob publishes signed
//! one-time KEM prekeys and one signed last-resort KEM prekey, used when no
//! one-time one is left. In the reference pool the last-resort KEM prekey
//! belongs to the signed prekey: created, rotated and, after the grace
//! period, erased with it. A one-time KEM prekey is consumed by the first
//! initial message that authenticates; the last-resort one is never
//! consumed.
//!
//! Prekey identifiers are chosen by Bob; the reference pool issues them from
//! 1 upward and never reuses one (not a wire rule).
//!
//! ### 3.1 Hybrid bundle (bundle version 3, ML-DSA-65)
//!
//! An identity may add an ML-DSA-65 (FIPS 204) key to its Ed25519 key
//! (`PqIdentity`, feature `ml-dsa`). Its bundles are then **bundle version
//! 3**: a version-1 bundle whose first byte is `0x03`, followed by the
//! post-quantum section. (Bundle version 2 stays unknown: the vectors of
//! §10 refuse it with `UnknownVersion`.)
//!
//! | Offset | Field | Size | Value |
//! |---|---|---|---|
//! | 0 | `version` | u8 | `0x03` |
//! | 1 | the fields of §3 after `version` | | as in §3, every check of §3 |
//! | next | `pq_pub` | 1952 | ML-DSA-65 public key (`pkEncode`) |
//! | | `spk_pq_sig` | 3373 | hybrid signature of the signed prekey, verified |
//! | | `kem_pq_sig` | 3373 | only if `kem_count = 1`: hybrid signature of the KEM prekey, verified |
//!
//! ```text
//! spk_pq_sig = Hybrid((sign_pub, pq_pub), "securemesh-bundle-v2",
//!                     dh_pub || "securemesh-spk-v1" || u32(spk_id) || spk_pub)              (85 bytes)
//! kem_pq_sig = Hybrid((sign_pub, pq_pub), "securemesh-bundle-v2",
//!                     dh_pub || "securemesh-kem-prekey-v1" || u32(kem_id) || u16(kem_alg)
//!                     || SHA-256(kem_pub))                                                   (94 bytes)
//!
//! Hybrid((ed, pq), ctx, msg) = Ed25519(ed, M') 64 || ML-DSA-65.Sign(pq, M', ctx = LABEL) 3309
//! M'    = LABEL || SHA-512(ed_pub 32 || pq_pub 1952 || u8(len(ctx)) || ctx || msg)          (106 bytes)
//! LABEL = "securemesh-hybrid-sig-v1/Ed25519+ML-DSA-65"
//! ```
//!
//! `Hybrid` is `securemesh_core::crypto::HybridEd25519MlDsa65`: both halves
//! sign the same `M'`, and a hybrid signature verifies only if **both**
//! verify (Ed25519 strictly, ML-DSA-65 as FIPS 204 `ML-DSA.Verify` with the
//! context `LABEL`); the signer's ML-DSA half is hedged (fresh randomness),
//! so two signatures of the same bytes differ. `M'` hashes the whole hybrid
//! key, so the Ed25519 half commits to `pq_pub` (a swapped ML-DSA key with
//! its own valid ML-DSA halves fails the Ed25519 halves), and neither half
//! signs `msg` itself (the Ed25519 half is not a valid `spk_sig`). The
//! signed messages start with `dh_pub`, so the hybrid signatures also bind
//! the identity's X25519 key. The section keeps the classical `spk_sig` and
//! `kem_sig` of §3 (checked first, as in §3) so that the rest of the
//! protocol reads a version-3 bundle as a version-1 one: X3DH and PQXDH
//! (§4) are unchanged by it.
//!
//! Decoding a version-3 bundle checks the fields of §3 in the order of §3,
//! then reads `pq_pub`, `spk_pq_sig` and, if `kem_count = 1`, `kem_pq_sig`
//! (truncated: `Malformed`), requires the end of input (`Malformed`), then
//! verifies `spk_pq_sig` and `kem_pq_sig` (`BadSignature` if either half of
//! either fails). A version-3 bundle is 231 + 1952 + 3373 = 5556 bytes
//! without one-time and KEM prekeys, and at most `MAX_HYBRID_BUNDLE_LEN` =
//! 1907 + 1952 + 2 x 3373 = 10605 bytes. A build without the feature
//! `ml-dsa` refuses version 3 with `UnknownVersion` (it does not verify it
//! classically).
//!
//! **Downgrade.** Removing the section and setting `version` to `0x01`
//! gives a valid version-1 bundle (the classical signatures are genuine).
//! Only the caller can know that a peer's identity is hybrid: a caller that
//! has pinned a peer's ML-DSA-65 key MUST check every bundle of that peer
//! with `Bundle::require_pq(pinned)`, which refuses a version-1 bundle
//! (`Downgrade`) and a version-3 bundle with another ML-DSA key
//! (`WrongIdentity`).
//!
//! Vectors: `test-vectors/pq/hybrid-ed25519-mldsa65.json` gives hybrid
//! signatures (seeds, context, message, `M'`, public key and the signature
//! with the deterministic ML-DSA variant) and two version-3 bundles with
//! mutations that decoding must refuse, each with its error.
//!
//! ## 4. X3DH (\[X3DH\] §3, with the departures noted)
//!
//! Alice decodes and verifies Bob's bundle (§3) and draws a fresh ephemeral
//! X25519 private key `EK_A` (32 random bytes, the first randomness a session
//! consumes). `IK_A`, `IK_B` below are the **X25519** (`dh`) keys of the
//! identities; `SPK_B` and `OPK_B` the prekeys of the bundle.
//!
//! | | Alice computes | Bob computes |
//! |---|---|---|
//! | `DH1` | `DH(IK_A.priv, SPK_B.pub)` | `DH(SPK_B.priv, IK_A.pub)` |
//! | `DH2` | `DH(EK_A.priv, IK_B.pub)` | `DH(IK_B.priv, EK_A.pub)` |
//! | `DH3` | `DH(EK_A.priv, SPK_B.pub)` | `DH(SPK_B.priv, EK_A.pub)` |
//! | `DH4` | `DH(EK_A.priv, OPK_B.pub)` | `DH(OPK_B.priv, EK_A.pub)` (only with a one-time prekey) |
//!
//! Every DH output is checked: an all-zero output aborts with
//! `NonContributory`. Then (\[X3DH\] §2.2 `KDF`):
//!
//! ```text
//! F   = 0xFF * 32
//! KM  = DH1 || DH2 || DH3 [|| DH4]
//! P   = the X3DH prefix of the initial message (§6.4), byte for byte:
//!       0x04 | Alice's identity | ek_pub | spk_id | opk_count [| opk_id] | kem_count | header_encryption
//!       (168 bytes without a one-time prekey, 172 with one)
//! clear headers:     SK                = HKDF(salt = 0x00 * 32, ikm = F || KM, info = "securemesh-x3dh-v2" || P,    L = 32)
//! encrypted headers: SK || HKa || NHKb = HKDF(salt = 0x00 * 32, ikm = F || KM, info = "securemesh-x3dh-he-v2" || P, L = 96)
//!                    (SK = out[0..32], HKa = out[32..64], NHKb = out[64..96])
//! AD  = Encode(IK_A) || Encode(IK_B)     (128 bytes: A.sign_pub | A.dh_pub | B.sign_pub | B.dh_pub)
//! ```
//!
//! Alice knows `P` before she sends anything (it holds only her identity,
//! her ephemeral key, the bundle's identifiers and her header mode); Bob
//! takes it from the received message. Binding `P` makes the initial
//! message non-malleable: Bob's DH outputs cannot tell `ek_pub` from
//! `ek_pub` plus a point of small order (X25519 clamps private keys to
//! multiples of 8), but the KDF can.
//!
//! Departures from \[X3DH\]: two-key identities instead of XEdDSA (§2);
//! the prefix `P` in the KDF `info` (\[X3DH\] has a constant `info`);
//! `Encode(IK)` is 64 bytes (both public keys), so `AD` is 128 bytes; the
//! header-encryption mode takes 96 bytes from the same KDF with its own
//! `info`. `HKa` is the header key of Alice's first sending chain and
//! `NHKb` the next header key for Bob's first sending chain (\[DR\] §4.3,
//! §4.4). The two modes give unrelated `SK`s, so the mode cannot be changed
//! by an attacker without breaking the session.
//!
//! ### 4.1 PQXDH (\[PQXDH\] §3.3, with the same departures)
//!
//! With a KEM prekey `PQPK_B` (id `kem_id`, algorithm `kem_alg` ∈ `{1, 3}`)
//! in the bundle, Alice draws `EK_A` as above and then encapsulates:
//! `(CT, SS) = ML-KEM.Encaps(PQPK_B)` (FIPS 203; 32 random bytes `m`, the
//! second randomness the session consumes; `SS` is 32 bytes). `DH1..DH4`
//! are those of §4, then
//!
//! ```text
//! KM  = DH1 || DH2 || DH3 [|| DH4] || SS
//! P   = the prefix of the initial message (§6.4), byte for byte, now with the KEM slot:
//!       0x04 | Alice's identity | ek_pub | spk_id | opk_count [| opk_id]
//!            | 0x01 | kem_id | kem_alg | ct_len | CT | header_encryption
//! clear headers:     SK                = HKDF(salt = 0x00 * 32, ikm = F || KM, info = L_PQ || P,    L = 32)
//! encrypted headers: SK || HKa || NHKb = HKDF(salt = 0x00 * 32, ikm = F || KM, info = L_PQHE || P, L = 96)
//! L_PQ   = "securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-768"  or  "..._ML-KEM-1024"
//! L_PQHE = "securemesh-PQXDH-HE_CURVE25519_SHA-256_ML-KEM-768" or "..._ML-KEM-1024"
//! AD  = as in §4
//! ```
//!
//! `F || KM` is \[PQXDH\]'s KDF input exactly (`SS` last); its `info`
//! parameter names the curve, hash and KEM as \[PQXDH\] §2.1 asks, and
//! the prefix follows it as in §4, so the ciphertext, `kem_id` and
//! `kem_alg` are bound into `SK` as well. Bob decapsulates `CT` with the
//! named KEM prekey (implicit rejection: a changed ciphertext gives an
//! unrelated `SS`, so the first message fails to authenticate, `Decrypt`)
//! and derives the same. The clear-header and header-encrypting labels and
//! the two KEMs give unrelated `SK`s, as do X3DH and PQXDH.
//!
//! `SK` and `AD` start the Double Ratchet as in \[DR\] §5.1: `SK` is the
//! first root key, `SPK_B` is Bob's first ratchet key pair and `AD` is the
//! associated-data prefix of every message of the session (§6.5).
//!
//! ## 5. Key derivations of the Double Ratchet (\[DR\] §5.2)
//!
//! ```text
//! KDF_RK(RK, dh_out):
//!   clear headers:     out = HKDF(salt = RK, ikm = dh_out, info = "securemesh-ratchet-root-v1",    L = 64)
//!                      RK' = out[0..32], CK = out[32..64]
//!   encrypted headers: out = HKDF(salt = RK, ikm = dh_out, info = "securemesh-ratchet-root-he-v1", L = 96)
//!                      RK' = out[0..32], CK = out[32..64], NHK = out[64..96]
//!
//! KDF_CK(CK):
//!   MK  = HMAC(CK, 0x01)        (one byte 0x01)
//!   CK' = HMAC(CK, 0x02)        (one byte 0x02)
//!
//! message-key expansion (replaces the recommendation of [DR] §5.2 for ENCRYPT):
//!   out = HKDF(salt = 0x00 * 32, ikm = MK, info = "securemesh-ratchet-message-v1", L = 44)
//!   key = out[0..32], nonce = out[32..44]        (ChaCha20-Poly1305 key and 12-byte nonce)
//! ```
//!
//! The AEAD nonce is derived from the message key; every message key is used
//! for exactly one message, so no (key, nonce) pair repeats.
//!
//! ## 6. Messages
//!
//! The first byte of every message is its type:
//!
//! | Type | Name | Carried |
//! |---|---|---|
//! | `0x04` | initial | X3DH prefix followed by a complete `0x02` or `0x03` message |
//! | `0x02` | ratchet | clear header |
//! | `0x03` | ratchet, header-encrypted | encrypted header |
//! | `0x01` | version-1 initial (retired) | refused with `UnknownVersion` |
//!
//! Any other first byte is `Malformed`. A session runs in exactly one mode,
//! fixed when it starts (§8): a clear-header session refuses `0x03` and a
//! header-encrypting session refuses `0x02` (`Malformed`).
//!
//! ### 6.1 The ratchet header (40 bytes)
//!
//! ```text
//! header = dh 32 | pn u32 | n u32
//! ```
//!
//! `dh` is the sender's current ratchet public key, `pn` the number of
//! messages in the sender's previous sending chain, `n` the number of this
//! message in the current sending chain (from 0) (\[DR\] §3.1 `HEADER`).
//!
//! ### 6.2 Type `0x02`: ratchet message, clear header (57 + `len` bytes)
//!
//! | Offset | Field | Size |
//! |---|---|---|
//! | 0 | type `0x02` | 1 |
//! | 1 | `header` | 40 |
//! | 41 | `ciphertext` | `len` (the payload length; 0 is allowed: a heartbeat) |
//! | 41 + `len` | `tag` | 16 |
//!
//! ### 6.3 Type `0x03`: ratchet message, encrypted header (97 + `len` bytes)
//!
//! | Offset | Field | Size |
//! |---|---|---|
//! | 0 | type `0x03` | 1 |
//! | 1 | `header_nonce` | 24, fresh random bytes per message |
//! | 25 | `header_ciphertext` | 40 |
//! | 65 | `header_tag` | 16 |
//! | 81 | `ciphertext` | `len` |
//! | 81 + `len` | `tag` | 16 |
//!
//! ```text
//! header_ciphertext || header_tag = HAEAD-Seal(key = HKs, nonce = header_nonce, ad = empty, header)
//! ```
//!
//! The 80 bytes `header_nonce | header_ciphertext | header_tag` are
//! `enc_header` (\[DR\] §4.2 `HENCRYPT`). The nonce is random (24 bytes make
//! collisions negligible), so the same header key encrypts every header of a
//! chain.
//!
//! ### 6.4 Type `0x04`: initial message (168 or 172 bytes of prefix; with PQXDH 8 + the ciphertext length more)
//!
//! Every message Alice sends until she has decrypted one message from Bob
//! (§8) is an initial message: the X3DH prefix (\[X3DH\] §3.3) followed by
//! the ratchet message she would otherwise send.
//!
//! | Offset | Field | Size | Value |
//! |---|---|---|---|
//! | 0 | type `0x04` | 1 | |
//! | 1 | Alice's `identity` | 128 | §2, binding signature verified |
//! | 129 | `ek_pub` | 32 | `EK_A.pub` |
//! | 161 | `spk_id` | u32 | the bundle's `spk_id` |
//! | 165 | `opk_count` | u8 | `0` or `1` (else `Malformed`) |
//! | 166 | `opk_id` | u32 | only if `opk_count = 1` |
//! | next | `kem_count` | u8 | `0` (X3DH) or `1` (PQXDH, §4.1), else `UnknownVersion` |
//! | | `kem_id` | u32 | only if `kem_count = 1`: the KEM prekey encapsulated to |
//! | | `kem_alg` | u16 | only if `kem_count = 1`: its algorithm (§3), the explicit KEM type of the ciphertext |
//! | | `ct_len` | u16 | only if `kem_count = 1`: at most 1568; must be the algorithm's ciphertext length (checked by `respond`, `Malformed`) |
//! | | `ct` | `ct_len` | only if `kem_count = 1`: the KEM ciphertext `CT` |
//! | next | `header_encryption` | u8 | `0` (inner type `0x02`) or `1` (inner type `0x03`), else `Malformed` |
//! | next | inner message | rest | a complete §6.2 or §6.3 message |
//!
//! The X3DH prefix is 168 bytes without a one-time prekey and 172 bytes
//! with one (`INITIAL_PREFIX_LEN` is the latter); a PQXDH prefix adds
//! `8 + ct_len`: 1096 bytes with ML-KEM-768, 1576 with ML-KEM-1024
//! (`pqxdh_prefix_extra`), at most 1748 in all (`MAX_INITIAL_PREFIX_LEN`).
//! Like the rest of the prefix, the ciphertext is repeated on every
//! initial message (§8). A KEM slot this version cannot read
//! (`kem_count > 1`, the slot truncated, `ct_len > 1568`) is
//! `UnknownVersion`, as every non-zero `kem_count` was before PQXDH: a
//! later version may define other slots.
//!
//! ### 6.5 Message encryption and its associated data
//!
//! Let `R` be the ratchet message (the whole message for types `0x02` and
//! `0x03`, the inner message for type `0x04`) and `H` its header length (40
//! for `0x02`, 80 for `0x03`). With `key, nonce` expanded from the message
//! key `MK` (§5):
//!
//! ```text
//! AEAD_AD          = AD || R[0 .. 1 + H]        (128 + 41 = 169 or 128 + 81 = 209 bytes)
//! ciphertext || tag = ChaCha20-Poly1305-Seal(key, nonce, AEAD_AD, payload)
//! ```
//!
//! That is: the 128-byte X3DH `AD` followed by the ratchet message from its
//! type byte through the end of the clear header (`0x02`) or of `enc_header`
//! (`0x03`). This is \[DR\] §3.4 / §4.5 `ENCRYPT(mk, plaintext, CONCAT(AD,
//! header))` with the type byte added. The X3DH prefix of an initial
//! message is not part of the associated data: it is bound, byte for
//! byte, into `SK` (§4), so for the *first* initial message Bob processes
//! any change of a prefix byte yields `UnknownPrekey`, `Malformed`,
//! `UnknownVersion`, `BadSignature`, `NonContributory`,
//! `HeaderEncryptionRequired` (a responder that requires encrypted headers,
//! §8) or `Decrypt`, and no session. A *repeated* initial message is decrypted with the session's
//! existing keys, so it must equal the first one in every prefix field (§8).
//!
//! ## 7. The Double Ratchet (\[DR\] §3, header encryption §4)
//!
//! ### 7.1 State
//!
//! | Variable | Meaning (\[DR\] §3.2, §4.3) |
//! |---|---|
//! | `DHs` | own ratchet key pair |
//! | `DHr` | peer's current ratchet public key; `PrevDHr` the one before (only to classify duplicates) |
//! | `RK` | root key |
//! | `CKs`, `CKr` | sending and receiving chain keys |
//! | `Ns`, `Nr`, `PN` | u32 message numbers |
//! | `HKs`, `HKr`, `NHKs`, `NHKr` | header keys (header encryption only); `PrevHKr` the `HKr` before (only to classify duplicates) |
//! | `MKSKIPPED` | skipped message keys, indexed by (`DHr` or `HKr`, `n`) |
//! | `pending` | the sending half of a DH ratchet step is due (§7.4) |
//!
//! ### 7.2 Initialization (\[DR\] §3.3, §4.4, §5.1)
//!
//! | | Alice (initiator, `Session::initiate`) | Bob (responder, `Session::respond`) |
//! |---|---|---|
//! | `RK` | `SK` | `SK` |
//! | `DHs` | none (first generated at her first encrypt) | `SPK_B` key pair, for the first receiving step only (below) |
//! | `DHr` | `SPK_B.pub` | none |
//! | `CKs`, `CKr` | none | none |
//! | `Ns, Nr, PN` | 0 | 0 |
//! | `pending` | true | false |
//! | `HKs`, `HKr` | none, none | none, none |
//! | `NHKs` | `HKa` | `NHKb` |
//! | `NHKr` | `NHKb` | `HKa` |
//!
//! Bob's `DHs = SPK_B` serves only the receiving half of the DH step that
//! `respond` performs on Alice's first chain (§7.5 step 4). Once that
//! message has authenticated, Bob **erases** it (`DHs` = none): Alice's
//! later messages before Bob answers belong to the same chain and need
//! only `CKr`, and her next ratchet key can only answer a key of Bob's,
//! which his first encrypt generates (`pending` is set). So the signed
//! prekey's private key lives in the prekey pool alone, and the pool's
//! erasure at the end of the grace period (§8) is final. A message with
//! another new ratchet key before Bob has sent finds `DHs` none: `Decrypt`.
//!
//! Because Alice's step is pending, her first encrypt computes
//! `RK, CKs, NHKs = KDF_RK(SK, DH(DHs, SPK_B))` with `HKs = HKa`: exactly
//! \[DR\] `RatchetInitAlice` / `RatchetInitAliceHE`, performed lazily.
//!
//! ### 7.3 Encrypt (`RatchetEncrypt`, \[DR\] §3.4, §4.5)
//!
//! ```text
//! if pending:                                   # the sending half of a DH ratchet step
//!     DHs = GENERATE_DH()                       # 32 random bytes: the X25519 private key
//!     RK, CKs [, NHK] = KDF_RK(RK, DH(DHs, DHr))   # all-zero DH output: NonContributory
//!     PN = Ns; Ns = 0
//!     if header encryption: HKs = NHKs; NHKs = NHK
//!     pending = false
//! CKs, MK = KDF_CK(CKs)                         # MK for message number Ns
//! header = DHs.pub | PN | Ns
//! clear:     R = 0x02 | header | AEAD(MK, payload, AD || 0x02 | header)
//! encrypted: hn = 24 random bytes
//!            R = 0x03 | hn | HAEAD(HKs, hn, empty, header) | AEAD(MK, payload, AD || 0x03 | enc_header)
//! message = [X3DH prefix (§6.4), while Alice awaits Bob's reply] || R
//! Ns = Ns + 1
//! ```
//!
//! The randomness an encrypt consumes is therefore, in order: 32 bytes for
//! the new ratchet private key if a step is pending, then 24 bytes of header
//! nonce with header encryption; nothing else. (`initiate` consumes 32 bytes
//! for `EK_A` before that.)
//!
//! ### 7.4 The deferred sending step
//!
//! \[DR\] §3.5 `DHRatchet` performs both halves of a DH ratchet step when a
//! message with a new ratchet key arrives: the receiving half
//! (`RK, CKr = KDF_RK(RK, DH(DHs, DHr))`) and then the sending half (new
//! `DHs`, `RK, CKs = KDF_RK(RK, DH(DHs, DHr))`, `PN = Ns`, `Ns = 0`, and
//! with header encryption `HKs = NHKs`). securemesh performs the receiving
//! half on decrypt and sets `pending`; the sending half runs at the start of
//! the next encrypt (§7.3), as \[DR\] §6.5 ("Deferring new ratchet key
//! generation") permits. This is wire-identical to \[DR\]:
//!
//! 1. Between the two halves nothing changes `RK`, `DHs`, `DHr`, `CKs`,
//!    `Ns`, `PN`, `HKs` or `NHKs`: decrypting messages of the current
//!    receiving chain or from `MKSKIPPED` changes only `CKr`, `Nr` and
//!    `MKSKIPPED`, and nothing is sent. A message with yet another new ratchet key cannot come
//!    from an honest peer, who only steps after receiving our new key; it
//!    fails to authenticate in both designs.
//! 2. So the sending half starts from the same `RK` and `DHr`, yields the
//!    same `RK`, `CKs`, `NHKs`, and the first message after it carries the
//!    same `PN` (no message was sent in between) and `n = 0`.
//! 3. The new private key is uniformly random whether it is drawn at
//!    receive time or at send time; nothing on the wire depends on when.
//!
//! Consequences: decryption never needs randomness, and a party that only
//! receives never generates ratchet keys.
//!
//! ### 7.5 Decrypt (`RatchetDecrypt`, \[DR\] §3.5, §4.6)
//!
//! Decryption is a transaction: every candidate key is derived into
//! temporaries, the AEAD is verified, and only then is the state updated.
//! Any error leaves the session unchanged (and the output buffer without
//! plaintext). A message is first checked for shape: type byte matching the
//! mode, at least `1 + H + 16` bytes (else `Malformed`), and the output
//! buffer at least as long as the payload (else `BufferTooSmall`).
//!
//! **Clear headers** (`0x02`): parse the header, then, first match wins:
//!
//! 1. `(header.dh, header.n)` is in `MKSKIPPED`: decrypt with that key,
//!    then delete it.
//! 2. `header.dh == DHr`: if `CKr` is none, `Decrypt`. If `n < Nr`,
//!    `Duplicate`. If `n - Nr > MAX_SKIP`, `TooManySkipped`. Otherwise
//!    derive the keys `Nr..n` from `CKr`, decrypt with `MK_n`; on success
//!    store `MK_Nr .. MK_(n-1)` as skipped and set `CKr` to the chain key
//!    after `n`, `Nr = n + 1`.
//! 3. `header.dh == PrevDHr`: `Duplicate` (its remaining keys, if any, were
//!    matched in 1).
//! 4. New ratchet key: if `CKr` exists and `pn - Nr > MAX_SKIP`, or if
//!    `n > MAX_SKIP`: `TooManySkipped`. (`pn - Nr` **saturates at 0**: a
//!    `pn` below `Nr` skips nothing and is not an error.) Compute `dh_out = DH(DHs, header.dh)`
//!    (all zero, or `DHs` none: `Decrypt`), `RK', CKr' = KDF_RK(RK, dh_out)`,
//!    derive `MK_n` of the new chain and decrypt. On success: store the keys
//!    `Nr..pn` of the old receiving chain as skipped (if there was one;
//!    `Nr..pn` **excludes** `pn`, which counts the messages of that chain:
//!    the keys of messages `Nr, Nr + 1, ..., pn - 1`, none if `pn <= Nr`),
//!    `PrevDHr = DHr`, `DHr = header.dh`, `RK = RK'`, store the keys `0..n`
//!    of the new chain as skipped, `CKr` after `n`, `Nr = n + 1`,
//!    `pending = true`.
//!
//! **Encrypted headers** (`0x03`), first match wins (\[DR\] §4.6
//! `DecryptHeader`, `TrySkippedMessageKeysHE`):
//!
//! 1. For each **distinct** header key `hk` among the stored skipped
//!    entries `(hk, n_e, mk)`: if `enc_header` opens under `hk` and an entry
//!    `(hk, n, mk)` is stored for the decrypted `n`, decrypt with that `mk`
//!    and delete the entry. Each distinct key is tried once, however many
//!    entries share it (trying once per entry would make one message cost
//!    up to `CAP` header decryptions after a single skip). The order does
//!    not change the result: an encrypted header opens under at most one
//!    key.
//! 2. `enc_header` opens under `HKr`: as clear step 2 (with `CKr`, `Nr`).
//! 3. `enc_header` opens under `NHKr`: as clear step 4, and on success
//!    additionally `PrevHKr = HKr`, `HKr = NHKr`, `NHKr = NHK` from
//!    `KDF_RK`. Skipped keys of the old chain are stored under the old
//!    `HKr`, those of the new chain under the new `HKr`.
//! 4. `enc_header` opens under `PrevHKr`: `Duplicate`.
//! 5. Otherwise `Decrypt`.
//!
//! "Opens under `hk`" means: the header AEAD verifies **and** the 40
//! decrypted bytes parse as a header whose `dh` is canonical (§1). A
//! header that authenticates but holds a non-canonical `dh` (only a holder
//! of the header key can make one) counts as not opening, and the search
//! goes on; it ends in `Decrypt`, not `Malformed`. With clear headers the
//! canonical check happens when the header is parsed, before any key is
//! looked up (`Malformed`).
//!
//! ### 7.6 Skipped message keys (\[DR\] §2.6, §3.2, §6.4)
//!
//! - `MAX_SKIP` (default 128) bounds the keys skipped **per chain** in one
//!   message: `n - Nr` for the current chain, `pn - Nr` for the old chain
//!   and `n` for the new chain of a ratchet step. The check happens before
//!   any key is derived and before the body is authenticated.
//! - `MKSKIPPED` holds at most `CAP` keys in all (default 128). When it is
//!   full, the entry inserted **earliest** is evicted to make room (within
//!   one message, old-chain keys are inserted before new-chain keys, each in
//!   ascending `n`). A single message may therefore evict keys it has just
//!   stored if it skips more than `CAP` in total. `CAP = 0` stores nothing.
//! - Entries are keyed by the chain (`DHr` with clear headers, `HKr` with
//!   encrypted headers) and `n`; a key is deleted as soon as its message
//!   decrypts.
//! - `MAX_SKIP` and `CAP` are local policy, not part of the wire: a sender
//!   must not expect a receiver to tolerate more than 128 skipped messages.
//!
//! ### 7.7 Duplicates and replays
//!
//! `Duplicate` is returned for a message of the current receiving chain
//! with `n < Nr` whose key is not stored, and for any message of the
//! previous receiving chain whose key is not stored (with encrypted headers:
//! whose header opens under `HKr` resp. `PrevHKr`). It is a classification,
//! **not** an authentication: the body is never checked (and with clear
//! headers not even the header), so a forgery naming those chains also gets
//! `Duplicate`, and so does a late message of those chains whose skipped key
//! was evicted or never stored. A replay of a message of an older chain is
//! treated as a new ratchet key and fails with `Decrypt` (with clear headers
//! possibly `TooManySkipped` first).
//!
//! ### 7.8 Errors
//!
//! **Which error wins.** Every decoder checks each field as it reads it,
//! in wire order, and stops at the first failure: truncation at a field is
//! that field's failure (`Malformed`), a non-canonical X25519 key is
//! `Malformed` where it is read, and a signature is checked right after
//! the bytes it covers have been read (`Bundle::decode`: identity `dh_pub`,
//! identity signature, `spk_pub`, `spk_sig`, `opk_count`, `opk_pub`,
//! `kem_count`, `kem_pub_len`, `kem_sig`, end of input; an identity alone:
//! `dh_pub`, then the signature). `respond` departs from wire order in one
//! place, to keep the refusal of replays and unknown prekeys cheap: it
//! **parses the whole prefix first** (type, identity `dh_pub`, `ek_pub`,
//! `opk_count`, `kem_count`, `header_encryption`, in wire order; Alice's
//! binding signature is *not* checked yet), then applies the responder's
//! header-mode requirement (`HeaderEncryptionRequired`, §8), then looks up the signed
//! prekey and the one-time prekey (`UnknownPrekey`), then the KEM prekey
//! (`UnknownPrekey`, then `Malformed` for a wrong `kem_alg` or `ct_len`) or,
//! without a KEM slot, applies the downgrade rule (`Downgrade`), then verifies Alice's
//! identity (`BadSignature`), then computes `DH1`..`DH4` in that order
//! (`NonContributory`), then decrypts the inner message, whose checks run
//! in this order: type against the flag and the mode, length, output
//! buffer, header parse (clear headers), then the steps of §7.5. `decrypt`
//! of a `0x04` message parses the prefix as `respond` does, then compares
//! it (`Malformed`), then decrypts the inner message the same way.
//!
//! | Operation | Error | When |
//! |---|---|---|
//! | `Bundle::decode` | `UnknownVersion` | `version` not `1` (nor `3` with the feature `ml-dsa`) |
//! | | `BadSignature` | identity, `spk_sig` or `kem_sig` does not verify (strictly), or a key does not decode |
//! | | `Malformed` | truncated, count not 0/1, `kem_pub_len > 1568`, trailing bytes, a non-canonical X25519 key (§1) |
//! | | `BadSignature` | (version 3) either half of `spk_pq_sig` or `kem_pq_sig` does not verify (§3.1) |
//! | | `Malformed` | (version 3) the section truncated or followed by bytes |
//! | `Bundle::require_pq` | `Downgrade` | a version-1 bundle for a pinned ML-DSA-65 key (§3.1) |
//! | | `WrongIdentity` | a version-3 bundle with another ML-DSA-65 key |
//! | `initiate` | `NonContributory` | an X3DH DH output is all zero |
//! | `initiate_pq` | `UnsupportedKem` | no KEM prekey in the bundle, `kem_alg` not in `{1, 3}` (or a build without the feature `pq`), or a session type without room for the ciphertext |
//! | | `Malformed` | `kem_pub_len` not the algorithm's key length, or the FIPS 203 §7.2 modulus check fails |
//! | `respond` | `Malformed` | not type `0x04` (nor `0x01`), truncated prefix, flags not 0/1, inner type not matching the flag, a non-canonical X25519 key (§1) |
//! | | `UnknownVersion` | type `0x01` (version 1); a KEM slot that cannot be read: `kem_count > 1`, truncated, `ct_len > 1568` |
//! | | `Malformed` | (PQXDH) `kem_alg` not the named KEM prekey's algorithm or `ct_len` not its ciphertext length |
//! | | `UnknownPrekey` | (PQXDH) `kem_id` not held: unknown, never published, a one-time KEM prekey already consumed, or a last-resort one erased with its signed prekey |
//! | | `Downgrade` | `kem_count = 0` but the signed prekey `spk_id` was published only with KEM prekeys (it has a last-resort KEM prekey) |
//! | | `HeaderEncryptionRequired` | Bob requires encrypted headers and `header_encryption` is `0` (local policy, §8) |
//! | | `BadSignature` | Alice's identity binding signature |
//! | | `UnknownPrekey` | `spk_id` not held (current, or previous within its grace period), or `opk_id` not held (unknown or already consumed) |
//! | | `NonContributory` | an X3DH DH output is all zero |
//! | | any decrypt error | for the inner message, against the fresh session |
//! | `encrypt` | `BufferTooSmall { needed }` | output shorter than `encrypted_len(len)` (the exact message length) |
//! | | `CounterExhausted` | `Ns == 2^32 - 1` and no step pending |
//! | | `NonContributory` | the pending step's DH output is all zero |
//! | `decrypt` | `Malformed` | type/mode mismatch, too short, a `0x04` message at a session that is not Bob's or whose prefix differs from the first one (§8) |
//! | | `UnknownVersion`, `Malformed` | a `0x01` message, or a `0x04` message whose prefix does not parse, as for `respond` |
//! | | `BufferTooSmall { needed }` | output shorter than the payload |
//! | | `Duplicate` | §7.7 |
//! | | `TooManySkipped` | §7.6 |
//! | | `Decrypt` | AEAD failure, no header key opens, no receiving chain, all-zero ratchet DH output |
//!
//! ## 8. Session lifecycle
//!
//! - **Mode.** Alice chooses clear or encrypted headers
//!   (`SessionConfig::header_encryption`); Bob follows the
//!   `header_encryption` flag of the initial message. Bob's own setting is
//!   a requirement, local policy and not on the wire: with it set, an
//!   initial message with clear headers is refused
//!   (`HeaderEncryptionRequired`, right after the prefix parses); without
//!   it, either mode is accepted.
//! - **Alice's prefix.** Every message Alice encrypts carries the X3DH
//!   prefix (§6.4) until her first successful decrypt (which can only be a
//!   message from Bob); from then on she sends bare `0x02`/`0x03` messages.
//!   Messages already encrypted keep their prefix.
//! - **Bob's first message.** `respond` parses the prefix, looks up the
//!   signed prekey (the current one, or the previous one until the pool
//!   erases it at the end of its grace period) and the
//!   one-time prekey **without consuming it**, runs X3DH, initialises Bob's
//!   session (§7.2) and decrypts the inner message with it (§7.5; the inner
//!   message may have any `n <= MAX_SKIP`, earlier keys are stored as
//!   skipped). Only when that message authenticates is the one-time prekey
//!   erased (\[X3DH\] §3.4), so a forged initial message cannot burn it and
//!   a replayed one cannot open a second session (`UnknownPrekey`). With
//!   PQXDH the one-time KEM prekey the message names is looked up, used
//!   and erased the same way (\[PQXDH\] §3.4); a last-resort KEM prekey
//!   is kept. A message without a KEM slot to a signed prekey that Bob
//!   publishes with a last-resort KEM prekey is refused (`Downgrade`)
//!   before anything is used: an attacker who strips the ciphertext (or
//!   Alice's software that ignores the KEM slot) cannot obtain a session
//!   without the post-quantum secret. A KEM slot naming a KEM prekey Bob
//!   does not hold (never published, consumed, erased) is `UnknownPrekey`. Without
//!   a one-time prekey a replayed initial message does open a second
//!   session (\[X3DH\] §4.2): applications must detect it by its `ek_pub`.
//!   In version 2 that check is sound: only the exact bytes of the genuine
//!   prefix authenticate (§4), so a replay carries the same `ek_pub`
//!   (in version 1, each of 8 encodings opened a session).
//! - **Repeated initial messages.** Bob's session remembers the X3DH header
//!   of the initial message that started it. A later `0x04` message given to
//!   `decrypt` is accepted only if **every** prefix field equals it: all 128
//!   bytes of Alice's identity, `ek_pub`, `spk_id`, `opk_count` and
//!   `opk_id`, `kem_count` and, with PQXDH, `kem_id`, `kem_alg` and the
//!   ciphertext (compared by its SHA-256, which the session keeps), and
//!   `header_encryption` (the session's mode); otherwise `Malformed`. Its
//!   inner message is then decrypted normally.
//!   The comparison is required because a repeated message is decrypted
//!   with the session's keys, not with a fresh X3DH: the prefix binding of
//!   §4 protects only the first one.
//! - **Persistence (MUST).** Message keys and AEAD nonces are *derived*
//!   (§5), not random: a party that encrypts twice from the same state
//!   encrypts two messages under the same key and nonce. An implementation
//!   that keeps session state across restarts **MUST** durably store the
//!   state that an `encrypt` produced **before** it transmits the message,
//!   and **MUST** store the state after a successful `decrypt` or `respond`
//!   before it acts on the plaintext. It **MUST NOT** restore a state older
//!   than the newest one it stored (a rollback repeats keys and nonces);
//!   the reference code seals states with a monotonic generation and
//!   refuses older ones (`securemesh_core::envelope`). The same holds for
//!   the prekey pool: a restored pool that still holds a consumed one-time
//!   prekey would let a replayed initial message open a second session.
//! - **Heartbeats.** An empty payload is a valid message; sending one
//!   after receiving a new ratchet key performs the pending DH step (used for
//!   post-compromise recovery). Timers are local and not on the wire.
//!
//! ## 9. Limits
//!
//! | Item | Limit |
//! |---|---|
//! | `n`, `pn`, `Ns`, `Nr` | u32; a sending chain carries at most `2^32 - 1` messages (`n <= 2^32 - 2`), then `CounterExhausted` until the next DH step; `Nr` saturates |
//! | skipped per chain and message | `MAX_SKIP` (default 128) |
//! | stored skipped keys | `CAP` (default 128), oldest evicted |
//! | bundle | at most 1907 bytes; `kem_pub` at most 1568 bytes; a hybrid bundle (§3.1) at most 10605 |
//! | initial prefix | 168 or 172 bytes |
//! | overhead | `0x02`: 57 bytes; `0x03`: 97 bytes; plus the prefix for `0x04` |
//! | payload | no protocol limit beyond the caller's buffers (and ChaCha20-Poly1305's 2^38-byte bound) |
//!
//! ## 10. Test vectors
//!
//! `test-vectors/ratchet/v2/x3dh.json` gives, per case, every private key, the
//! public encodings, the bundle bytes, `DH1..DH4`, `SK` (`HKa`, `NHKb`),
//! the prefix `P`, `AD` and a first initial message. `double-ratchet.json` and
//! `double-ratchet-he.json` are transcripts with out-of-order delivery,
//! duplicates and several DH steps each way: for each message the recorded
//! randomness, the header, the chain keys before and after, the message key,
//! the AEAD key, nonce and associated data, each DH step's inputs and
//! outputs, the header keys, and the full wire bytes; and the delivery order
//! with the receiver's expected result. `double-ratchet-limits.json` and
//! `double-ratchet-he-limits.json` run at `MAX_SKIP` = 4 and a capacity of
//! 6: every skip bound of §7.6 met and passed by one, eviction, and forged
//! deliveries (events `forge`) for each refusal of §4-§8, each of which
//! must leave the receiver unchanged. `bundles.json` holds bundles that
//! `Bundle::decode` refuses (each check of §3, and which error wins) or
//! that `initiate` refuses (`NonContributory`). An implementation that gets
//! a limit, an error or the order of checks wrong fails them. `cargo run
//! -p securemesh-test-vectors` checks them against this specification and
//! the implementation. `CounterExhausted` has no vector (it needs `2^32 -
//! 1` messages in one chain).

//! Ratchet vectors: X3DH, PQXDH and the Double Ratchet as specified in
//! `securemesh_ratchet::spec`, published by securemesh in `ratchet/v2/*.json`
//! and `ratchet/v3/pqxdh.json`
//! (see `ratchet/README.md` for the format). They were generated from the
//! real sessions with recorded randomness (the ignored test
//! `write_ratchet_vectors` in `tests/ratchet_vectors.rs`).
//!
//! Each file gets one report. Each X3DH case, each transcript's setup and
//! each transcript message is one check, which passes only if
//!
//! - (a) **spec level**: every listed public value, signature, bundle byte,
//!   DH output and key re-derives from the listed private keys and recorded
//!   randomness with the primitives of `securemesh-core` and the public
//!   [`securemesh_ratchet::kdf`] functions (a model of the specification,
//!   [`Model`], independent of the session code), and
//! - (b) **implementation**: replaying the real [`Session`]s of Alice and
//!   Bob (`initiate`, `respond`, `encrypt`, `decrypt`) with the recorded
//!   randomness, in the recorded event order, writes every recorded wire
//!   byte, consumes exactly the recorded randomness, and every delivery
//!   (of the *recorded* bytes) gives the recorded plaintext or error.

use crate::Report;
use securemesh_core::crypto::{Aead, ChaChaPoly, Dh, Ed25519, Hash, Sha256, Signature, X25519, XChaChaPoly};
use securemesh_core::envelope::Persist;
use securemesh_core::testing::ReplayRng;
use securemesh_core::{Instant, Secret, UnixTime};
use securemesh_ratchet::kdf::{self, Key32};
use securemesh_ratchet::{
    Bundle, IDENTITY_LABEL, Identity, KEM_LABEL, KemPrekey, MSG_INITIAL, MSG_RATCHET, MSG_RATCHET_HE,
    PrekeyConfig, PrekeyPool, SPK_LABEL, Session, SessionConfig,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `MAX_SKIP` and skipped-key capacity the transcripts were recorded with
/// (the defaults of [`Session`]).
pub const TRANSCRIPT_LIMIT: u32 = 128;

/// The (`MAX_SKIP`, skipped-key capacity) pairs a transcript may be
/// recorded with: the defaults, and small limits that the limits
/// transcripts exercise at their boundaries.
pub const TRANSCRIPT_LIMITS: [(u32, u32); 2] = [(TRANSCRIPT_LIMIT, TRANSCRIPT_LIMIT), (4, 6)];

/// The time passed to sessions and prekey pools (irrelevant to the bytes).
const NOW: Instant = Instant(0);
const T0: UnixTime = UnixTime(1_700_000_000);

// ---------------------------------------------------------------- formats

/// An identity: its two secrets and its public encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityKeys {
    /// Ed25519 seed (private), hex.
    pub sign_seed: String,
    /// X25519 private key, hex.
    pub dh_private: String,
    /// Ed25519 public key, hex.
    pub sign_public: String,
    /// X25519 public key, hex.
    pub dh_public: String,
    /// `Ed25519(sign_seed, "securemesh-identity-v1" || dh_public)`, hex.
    pub binding_signature: String,
    /// The 128-byte encoding `sign_public | dh_public | binding_signature`, hex.
    pub encoded: String,
}

/// Bob's signed prekey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPrekey {
    /// Identifier.
    pub id: u32,
    /// X25519 private key, hex.
    pub private: String,
    /// X25519 public key, hex.
    pub public: String,
    /// `Ed25519(bob, "securemesh-spk-v1" || u32be(id) || public)`, hex.
    pub signature: String,
}

/// Bob's one-time prekey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePrekey {
    /// Identifier.
    pub id: u32,
    /// X25519 private key, hex.
    pub private: String,
    /// X25519 public key, hex.
    pub public: String,
}

/// A KEM prekey in the bundle (carried and signed; not used by X3DH v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KemPrekeyCase {
    /// Identifier.
    pub id: u32,
    /// Algorithm.
    pub alg: u16,
    /// Encapsulation key, hex: arbitrary bytes of ML-KEM-768 size (the v1 format
    /// carries and signs the KEM slot without interpreting it).
    pub public: String,
    /// `Ed25519(bob, "securemesh-kem-prekey-v1" || u32be(id) || u16be(alg) || SHA-256(public))`, hex.
    pub signature: String,
}

/// One X3DH agreement: every private key, every public value, the bundle,
/// the DH outputs and the derived secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X3dhCase {
    /// What the case covers.
    pub name: String,
    /// Header-encryption variant (96 bytes of X3DH output).
    pub header_encryption: bool,
    /// Alice's identity.
    pub alice: IdentityKeys,
    /// Bob's identity.
    pub bob: IdentityKeys,
    /// Bob's signed prekey.
    pub signed_prekey: SignedPrekey,
    /// Bob's one-time prekey, if the bundle carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_prekey: Option<OneTimePrekey>,
    /// Bob's KEM prekey, if the bundle carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kem_prekey: Option<KemPrekeyCase>,
    /// The encoded bundle, hex.
    pub bundle: String,
    /// Alice's ephemeral X25519 private key `EK_A` (the randomness `initiate` draws), hex.
    pub alice_ephemeral_private: String,
    /// `EK_A` public, hex.
    pub alice_ephemeral_public: String,
    /// `DH(IK_A, SPK_B)`, hex.
    pub dh1: String,
    /// `DH(EK_A, IK_B)`, hex.
    pub dh2: String,
    /// `DH(EK_A, SPK_B)`, hex.
    pub dh3: String,
    /// `DH(EK_A, OPK_B)`, hex, with a one-time prekey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh4: Option<String>,
    /// The X3DH prefix of Alice's initial messages (type byte through the
    /// header-encryption flag), bound into the KDF `info`, hex.
    pub prefix: String,
    /// The shared secret `SK`, hex.
    pub sk: String,
    /// Shared `HKa` (header encryption), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hka: Option<String>,
    /// Shared `NHKb` (header encryption), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhkb: Option<String>,
    /// The 128-byte associated data, hex.
    pub ad: String,
    /// Alice's first message, delivered to Bob's `respond` (x3dh.json only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_message: Option<Message>,
}

/// The file `x3dh.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct X3dhFile {
    /// Provenance and licence.
    pub source: String,
    /// The cases.
    pub cases: Vec<X3dhCase>,
}

/// A bundle that must be refused, by `Bundle::decode` or, decoded, by
/// `Session::initiate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleCase {
    /// What the case covers.
    pub name: String,
    /// The bundle bytes, hex.
    pub bundle: String,
    /// `decode` (the error comes from decoding) or `initiate` (the bundle
    /// decodes; Alice's `initiate` with `alice` and the ephemeral key fails).
    pub operation: String,
    /// Alice's identity (`initiate` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alice: Option<IdentityKeys>,
    /// `EK_A` private key, hex (`initiate` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alice_ephemeral_private: Option<String>,
    /// The expected `securemesh_ratchet::Error` variant.
    pub error: String,
}

/// The file `bundles.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleFile {
    /// Provenance and licence.
    pub source: String,
    /// The cases.
    pub cases: Vec<BundleCase>,
}

/// A ratchet header in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderFields {
    /// The sender's ratchet public key, hex.
    pub dh: String,
    /// Messages in the sender's previous sending chain.
    pub pn: u32,
    /// Number of this message in its chain.
    pub n: u32,
}

/// The sending half of a DH ratchet step, taken by this message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhStep {
    /// The new ratchet private key (the first 32 bytes of randomness the encrypt draws), hex.
    pub ratchet_private: String,
    /// Its public key, hex.
    pub ratchet_public: String,
    /// The peer's ratchet public key it is combined with (`DHr`), hex.
    pub remote_ratchet_public: String,
    /// `DH(ratchet_private, remote_ratchet_public)`, hex.
    pub dh_output: String,
    /// `RK` before `KDF_RK`, hex.
    pub root_key_before: String,
    /// `RK` after `KDF_RK`, hex.
    pub root_key_after: String,
    /// The new sending chain key, hex.
    pub chain_key: String,
    /// The new next header key `NHKs` (header encryption), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_header_key: Option<String>,
}

/// One message of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Position in send order.
    pub index: usize,
    /// `alice` or `bob`.
    pub sender: String,
    /// Payload, hex.
    pub plaintext: String,
    /// The ratchet header.
    pub header: HeaderFields,
    /// The DH ratchet step this message starts, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh_step: Option<DhStep>,
    /// `CKs` before `KDF_CK`, hex.
    pub chain_key_before: String,
    /// `CKs` after `KDF_CK`, hex.
    pub chain_key_after: String,
    /// `MK`, hex.
    pub message_key: String,
    /// ChaCha20-Poly1305 key expanded from `MK`, hex.
    pub aead_key: String,
    /// ChaCha20-Poly1305 nonce expanded from `MK`, hex.
    pub aead_nonce: String,
    /// `HKs` that encrypts the header, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_key: Option<String>,
    /// The 24 random header-nonce bytes (drawn after the ratchet key), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_nonce: Option<String>,
    /// `nonce | header ciphertext | header tag` (80 bytes), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_header: Option<String>,
    /// The X3DH prefix (type 0x01 messages), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x3dh_prefix: Option<String>,
    /// The AEAD associated data: X3DH AD || ratchet type byte || header, hex.
    pub associated_data: String,
    /// The whole message, hex.
    pub wire: String,
}

/// One event of a transcript, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Event {
    /// The sender of `message` encrypts it.
    Send {
        /// Message index.
        message: usize,
    },
    /// The recorded bytes of `message` are given to `to`.
    Deliver {
        /// Message index.
        message: usize,
        /// `alice` or `bob`.
        to: String,
        /// Expected plaintext, hex, on success.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plaintext: Option<String>,
        /// Expected error (`securemesh_ratchet::Error` variant name) on failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Bytes that are not a recorded message (a forgery, a changed copy, a
    /// retired format) are given to `to`, which must refuse them with
    /// `error` and stay exactly as it was (Bob without a session: the bytes
    /// go to `respond`, which must open none and leave the pool unchanged).
    Forge {
        /// `alice` or `bob`.
        to: String,
        /// The bytes, hex.
        wire: String,
        /// Expected error (`securemesh_ratchet::Error` variant name).
        error: String,
        /// How the bytes were made.
        note: String,
    },
}

/// The files `double-ratchet.json` and `double-ratchet-he.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transcript {
    /// Provenance and licence.
    pub source: String,
    /// What the transcript covers.
    pub description: String,
    /// Header encryption.
    pub header_encryption: bool,
    /// Receiver's `MAX_SKIP`.
    pub max_skip: u32,
    /// Receiver's skipped-key capacity.
    pub skipped_capacity: u32,
    /// The X3DH that starts the session.
    pub setup: X3dhCase,
    /// Messages in send order.
    pub messages: Vec<Message>,
    /// Sends and deliveries in order.
    pub events: Vec<Event>,
}

// ------------------------------------------------------------------ helpers

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("bad hex: {e}"))
}

fn arr<const N: usize>(s: &str) -> Result<[u8; N], String> {
    unhex(s)?.try_into().map_err(|_| format!("expected {N} bytes of hex"))
}

fn opt_arr<const N: usize>(s: &Option<String>) -> Result<Option<[u8; N]>, String> {
    s.as_deref().map(arr).transpose()
}

fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

fn dh(private: &[u8; 32], public: &[u8; 32]) -> Result<[u8; 32], String> {
    X25519::dh(&Secret::new(*private), public)
        .require_contributory()
        .map(|s| *s.expose())
        .map_err(|e| format!("DH: {e}"))
}

/// The X25519 public key of `private`.
pub fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    X25519::public_key(&Secret::new(*private))
}

fn party(name: &str) -> Result<usize, String> {
    match name {
        "alice" => Ok(0),
        "bob" => Ok(1),
        other => Err(format!("unknown party {other:?}")),
    }
}

const PARTIES: [&str; 2] = ["alice", "bob"];

/// The first field where two JSON values differ, e.g.
/// `.dh_step.root_key_after: derived "ab..", recorded "cd.."`.
pub fn first_difference(path: &str, derived: &Value, recorded: &Value) -> Option<String> {
    match (derived, recorded) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = first_difference(&p, u, v) {
                            return Some(d);
                        }
                    }
                    (Some(_), None) => return Some(format!("{p}: derived but not recorded")),
                    _ => return Some(format!("{p}: recorded but not derived")),
                }
            }
            None
        }
        _ if derived == recorded => None,
        (Value::String(x), Value::String(y)) => {
            let at = x.bytes().zip(y.bytes()).position(|(a, b)| a != b).unwrap_or(x.len().min(y.len()));
            let part = |s: &str| s.get(at / 2 * 2..).unwrap_or("").chars().take(16).collect::<String>();
            Some(format!(
                "{path}: differs from byte {} (derived {}.., recorded {}..; lengths {} and {})",
                at / 2,
                part(x),
                part(y),
                x.len() / 2,
                y.len() / 2
            ))
        }
        _ => {
            let short = |v: &Value| {
                let s = v.to_string();
                if s.len() > 72 { format!("{}..", s.get(..70).unwrap_or("")) } else { s }
            };
            Some(format!("{path}: derived {}, recorded {}", short(derived), short(recorded)))
        }
    }
}

fn same<T: Serialize>(derived: &T, recorded: &T) -> Result<(), String> {
    let d = serde_json::to_value(derived).map_err(|e| e.to_string())?;
    let r = serde_json::to_value(recorded).map_err(|e| e.to_string())?;
    first_difference("", &d, &r).map_or(Ok(()), Err)
}

fn merge(slot: Option<&mut Result<(), String>>, outcome: Result<(), String>) {
    if let (Some(slot @ Ok(())), Err(e)) = (slot, outcome) {
        *slot = Err(e);
    }
}

// ------------------------------------------------------- spec-level X3DH

/// Everything an X3DH case is derived from.
#[derive(Debug, Clone)]
pub struct X3dhInputs {
    /// Case name.
    pub name: String,
    /// Header-encryption variant.
    pub header_encryption: bool,
    /// Alice's Ed25519 seed.
    pub alice_seed: [u8; 32],
    /// Alice's X25519 private key.
    pub alice_dh: [u8; 32],
    /// Bob's Ed25519 seed.
    pub bob_seed: [u8; 32],
    /// Bob's X25519 private key.
    pub bob_dh: [u8; 32],
    /// Signed prekey identifier.
    pub spk_id: u32,
    /// Signed prekey private key.
    pub spk: [u8; 32],
    /// One-time prekey identifier and private key.
    pub opk: Option<(u32, [u8; 32])>,
    /// KEM prekey identifier, algorithm and public key.
    pub kem: Option<(u32, u16, Vec<u8>)>,
    /// Alice's ephemeral private key.
    pub ek: [u8; 32],
}

impl X3dhInputs {
    /// The inputs a recorded case lists.
    pub fn from_case(c: &X3dhCase) -> Result<Self, String> {
        Ok(X3dhInputs {
            name: c.name.clone(),
            header_encryption: c.header_encryption,
            alice_seed: arr(&c.alice.sign_seed)?,
            alice_dh: arr(&c.alice.dh_private)?,
            bob_seed: arr(&c.bob.sign_seed)?,
            bob_dh: arr(&c.bob.dh_private)?,
            spk_id: c.signed_prekey.id,
            spk: arr(&c.signed_prekey.private)?,
            opk: c.one_time_prekey.as_ref().map(|o| Ok::<_, String>((o.id, arr(&o.private)?))).transpose()?,
            kem: c
                .kem_prekey
                .as_ref()
                .map(|k| Ok::<_, String>((k.id, k.alg, unhex(&k.public)?)))
                .transpose()?,
            ek: arr(&c.alice_ephemeral_private)?,
        })
    }
}

fn spec_identity(
    seed: &[u8; 32],
    dh_private: &[u8; 32],
) -> (IdentityKeys, securemesh_core::crypto::Ed25519SigningKey) {
    let key = Ed25519::signing_key(&Secret::new(*seed));
    let sign_public = Ed25519::verifying_key(&key);
    let dh_public = x25519_public(dh_private);
    let sig = Ed25519::sign(&key, &[IDENTITY_LABEL, &dh_public].concat());
    let encoded = [&sign_public[..], &dh_public, &sig].concat();
    let keys = IdentityKeys {
        sign_seed: hx(seed),
        dh_private: hx(dh_private),
        sign_public: hx(&sign_public),
        dh_public: hx(&dh_public),
        binding_signature: hx(&sig),
        encoded: hx(&encoded),
    };
    (keys, key)
}

/// The X3DH prefix of an initial message (spec §6.4): type `0x04`, Alice's
/// identity, `ek_pub`, `spk_id`, the one-time prekey's id, no KEM
/// ciphertext, the header-encryption flag.
fn x3dh_prefix(alice: &[u8], ek_pub: &[u8; 32], spk_id: u32, opk_id: Option<u32>, he: bool) -> Vec<u8> {
    let mut prefix = vec![MSG_INITIAL];
    prefix.extend(alice);
    prefix.extend(ek_pub);
    prefix.extend(spk_id.to_be_bytes());
    match opk_id {
        Some(id) => {
            prefix.push(1);
            prefix.extend(id.to_be_bytes());
        }
        None => prefix.push(0),
    }
    prefix.push(0); // no KEM ciphertext
    prefix.push(u8::from(he));
    prefix
}

/// What [`spec_bundle`] makes: the bytes, Bob's identity keys, the signed
/// prekey's signature and the KEM slot.
pub type SpecBundle = (Vec<u8>, IdentityKeys, [u8; 64], Option<KemPrekeyCase>);

/// A bundle from the specification (§3), Bob's identity keys, the signed
/// prekey's signature and the KEM slot: Bob's keys sign any `spk_pub`
/// (of small order too, for the refusal vectors).
pub fn spec_bundle(
    bob_seed: &[u8; 32],
    bob_dh: &[u8; 32],
    spk_id: u32,
    spk_pub: &[u8; 32],
    opk: Option<(u32, [u8; 32])>,
    kem: Option<&(u32, u16, Vec<u8>)>,
) -> Result<SpecBundle, String> {
    let (bob, bob_key) = spec_identity(bob_seed, bob_dh);
    let spk_sig = Ed25519::sign(&bob_key, &[SPK_LABEL, &spk_id.to_be_bytes(), spk_pub].concat());
    let mut bundle = vec![1u8];
    bundle.extend(unhex(&bob.encoded)?);
    bundle.extend(spk_id.to_be_bytes());
    bundle.extend(spk_pub);
    bundle.extend(spk_sig);
    match opk {
        Some((id, public)) => {
            bundle.push(1);
            bundle.extend(id.to_be_bytes());
            bundle.extend(public);
        }
        None => bundle.push(0),
    }
    let kem_prekey = match kem {
        Some((id, alg, public)) => {
            let digest = Sha256::digest(&[public]);
            let sig = Ed25519::sign(
                &bob_key,
                &[KEM_LABEL, &id.to_be_bytes(), &alg.to_be_bytes(), &digest].concat(),
            );
            let len = u16::try_from(public.len()).map_err(|_| "KEM key too long")?;
            bundle.push(1);
            bundle.extend(id.to_be_bytes());
            bundle.extend(alg.to_be_bytes());
            bundle.extend(len.to_be_bytes());
            bundle.extend(public);
            bundle.extend(sig);
            Some(KemPrekeyCase { id: *id, alg: *alg, public: hx(public), signature: hx(&sig) })
        }
        None => {
            bundle.push(0);
            None
        }
    };
    Ok((bundle, bob, spk_sig, kem_prekey))
}

/// `DH1`-`DH3` and the optional `DH4`.
type AliceDhs = ([[u8; 32]; 3], Option<[u8; 32]>);

/// Alice's X3DH Diffie-Hellman outputs (also PQXDH's): `DH(IK_A, SPK_B)`,
/// `DH(EK_A, IK_B)`, `DH(EK_A, SPK_B)` and, with a one-time prekey,
/// `DH(EK_A, OPK_B)`.
fn alice_dhs(
    ik_a: &[u8; 32],
    ek_a: &[u8; 32],
    ik_b: &[u8; 32],
    spk_b: &[u8; 32],
    opk_b: Option<[u8; 32]>,
) -> Result<AliceDhs, String> {
    let dhs = [dh(ik_a, spk_b)?, dh(ek_a, ik_b)?, dh(ek_a, spk_b)?];
    Ok((dhs, opk_b.map(|opk| dh(ek_a, &opk)).transpose()?))
}

/// The real [`Identity`] from a case's recorded keys, its encoding checked
/// against the recorded one.
fn real_identity(k: &IdentityKeys) -> Result<Identity, String> {
    let id = Identity::from_secrets(Secret::new(arr(&k.sign_seed)?), Secret::new(arr(&k.dh_private)?));
    if hx(&id.public().to_bytes()) != k.encoded {
        return Err("real: identity encoding differs".into());
    }
    Ok(id)
}

/// Derive an X3DH case from its inputs, from the specification
/// (`securemesh_ratchet::spec` §2-§4): identity encodings and signatures,
/// the bundle bytes, both sides' DH outputs, `SK` (`HKa`, `NHKb`) and `AD`.
pub fn derive_x3dh(i: &X3dhInputs) -> Result<X3dhCase, String> {
    let (alice, _) = spec_identity(&i.alice_seed, &i.alice_dh);
    let bob_dh_pub = x25519_public(&i.bob_dh);
    let alice_dh_pub = x25519_public(&i.alice_dh);
    let spk_pub = x25519_public(&i.spk);
    let opk_pub = i.opk.map(|(id, private)| (id, x25519_public(&private)));
    let (bundle, bob, spk_sig, kem_prekey) =
        spec_bundle(&i.bob_seed, &i.bob_dh, i.spk_id, &spk_pub, opk_pub, i.kem.as_ref())?;
    let one_time_prekey = i.opk.map(|(id, private)| OneTimePrekey {
        id,
        private: hx(&private),
        public: hx(&x25519_public(&private)),
    });
    let ek_pub = x25519_public(&i.ek);
    // Alice's side, then Bob's side must agree.
    let ([dh1, dh2, dh3], dh4) =
        alice_dhs(&i.alice_dh, &i.ek, &bob_dh_pub, &spk_pub, opk_pub.map(|(_, public)| public))?;
    let bob_side = [dh(&i.spk, &alice_dh_pub)?, dh(&i.bob_dh, &ek_pub)?, dh(&i.spk, &ek_pub)?];
    if bob_side != [dh1, dh2, dh3] || dh4 != i.opk.map(|(_, opk)| dh(&opk, &ek_pub)).transpose()? {
        return Err("Bob's DH outputs differ from Alice's".into());
    }
    let mut dhs: Vec<Key32> = vec![Key32::new(dh1), Key32::new(dh2), Key32::new(dh3)];
    dhs.extend(dh4.map(Key32::new));
    let refs: Vec<&Key32> = dhs.iter().collect();
    let prefix =
        x3dh_prefix(&unhex(&alice.encoded)?, &ek_pub, i.spk_id, i.opk.map(|(id, _)| id), i.header_encryption);
    let (sk, hka, nhkb) = if i.header_encryption {
        let mut out = [0u8; 96];
        kdf::x3dh(&refs, kdf::X3DH_HE_INFO, &prefix, &mut out).map_err(|e| format!("KDF: {e}"))?;
        let (sk, rest) = out.split_at(32);
        let (hka, nhkb) = rest.split_at(32);
        (hx(sk), Some(hx(hka)), Some(hx(nhkb)))
    } else {
        let mut out = [0u8; 32];
        kdf::x3dh(&refs, kdf::X3DH_INFO, &prefix, &mut out).map_err(|e| format!("KDF: {e}"))?;
        (hx(&out), None, None)
    };
    let ad =
        [unhex(&alice.sign_public)?, alice_dh_pub.to_vec(), unhex(&bob.sign_public)?, bob_dh_pub.to_vec()]
            .concat();
    Ok(X3dhCase {
        name: i.name.clone(),
        header_encryption: i.header_encryption,
        alice,
        bob,
        signed_prekey: SignedPrekey {
            id: i.spk_id,
            private: hx(&i.spk),
            public: hx(&spk_pub),
            signature: hx(&spk_sig),
        },
        one_time_prekey,
        kem_prekey,
        bundle: hx(&bundle),
        alice_ephemeral_private: hx(&i.ek),
        alice_ephemeral_public: hx(&ek_pub),
        dh1: hx(&dh1),
        dh2: hx(&dh2),
        dh3: hx(&dh3),
        dh4: dh4.map(|d| hx(&d)),
        prefix: hx(&prefix),
        sk,
        hka,
        nhkb,
        ad: hx(&ad),
        first_message: None,
    })
}

// ------------------------------------------------ spec-level Double Ratchet

/// One party's sending-side view in the [`Model`].
#[derive(Debug, Clone, Default)]
struct Side {
    rk: [u8; 32],
    dhs: Option<([u8; 32], [u8; 32])>,
    dhr: Option<[u8; 32]>,
    cks: Option<[u8; 32]>,
    ns: u32,
    pn: u32,
    pending: bool,
    hks: Option<[u8; 32]>,
    nhks: Option<[u8; 32]>,
    hkr: Option<[u8; 32]>,
    nhkr: Option<[u8; 32]>,
    /// Own DH steps taken.
    steps: u32,
    /// The peer's latest DH step received.
    peer_steps: u32,
}

/// Root key and sending header key right after a DH step.
type StepKeys = ([u8; 32], Option<[u8; 32]>);

/// A model of the specification (`securemesh_ratchet::spec` §5-§8) built
/// only from `securemesh-core` primitives and the `kdf` functions: it
/// derives every key and every byte of each message a party sends, from
/// the X3DH output and the randomness of the send. Deliveries only advance
/// the root chain (the receiving half of a DH step); what a receiver does
/// with a message is checked on the real sessions.
#[derive(Debug, Clone)]
pub struct Model {
    he: bool,
    ad: [u8; 128],
    /// Alice's X3DH prefix, until she receives a message.
    prefix: Option<Vec<u8>>,
    sides: [Side; 2],
    /// Root key and sending header key after each party's DH step, to
    /// check the receiver agrees.
    roots: BTreeMap<(usize, u32), StepKeys>,
    /// Sender, sender's DH step and ratchet public key of each message sent.
    sent: Vec<(usize, u32, [u8; 32])>,
}

impl Model {
    /// Alice and Bob right after X3DH (spec §7.2).
    pub fn new(setup: &X3dhCase) -> Result<Self, String> {
        let he = setup.header_encryption;
        let sk = arr::<32>(&setup.sk)?;
        let (hka, nhkb) = (opt_arr::<32>(&setup.hka)?, opt_arr::<32>(&setup.nhkb)?);
        if he != (hka.is_some() && nhkb.is_some()) {
            return Err("header keys must be listed exactly with header encryption".into());
        }
        let spk = arr::<32>(&setup.signed_prekey.private)?;
        let prefix = x3dh_prefix(
            &unhex(&setup.alice.encoded)?,
            &arr::<32>(&setup.alice_ephemeral_public)?,
            setup.signed_prekey.id,
            setup.one_time_prekey.as_ref().map(|o| o.id),
            he,
        );
        if hx(&prefix) != setup.prefix {
            return Err("the listed prefix is not the one of spec §6.4".into());
        }
        let alice = Side {
            rk: sk,
            dhr: Some(x25519_public(&spk)),
            pending: true,
            nhks: hka,
            nhkr: nhkb,
            ..Side::default()
        };
        let bob =
            Side { rk: sk, dhs: Some((spk, x25519_public(&spk))), nhks: nhkb, nhkr: hka, ..Side::default() };
        Ok(Model {
            he,
            ad: arr(&setup.ad)?,
            prefix: Some(prefix),
            sides: [alice, bob],
            roots: BTreeMap::new(),
            sent: Vec::new(),
        })
    }

    /// Whether `sender`'s next message starts a DH ratchet step (and so
    /// draws a ratchet private key).
    pub fn needs_step(&self, sender: usize) -> bool {
        self.sides.get(sender).is_some_and(|s| s.pending)
    }

    /// Derive the message `sender` sends next (spec §7.3), with the
    /// randomness of the send: the ratchet private key if a step is due,
    /// the header nonce with header encryption.
    pub fn send(
        &mut self,
        sender: usize,
        plaintext: &[u8],
        ratchet_private: Option<[u8; 32]>,
        header_nonce: Option<[u8; 24]>,
    ) -> Result<Message, String> {
        let he = self.he;
        let ad = self.ad;
        let prefix = if sender == 0 { self.prefix.clone() } else { None };
        let index = self.sent.len();
        let side = self.sides.get_mut(sender).ok_or("no such party")?;
        let mut dh_step = None;
        match (side.pending, ratchet_private) {
            (true, Some(private)) => {
                let public = x25519_public(&private);
                let remote = side.dhr.ok_or("no remote ratchet key")?;
                let dh_output = dh(&private, &remote)?;
                let (rk, ck, nhk) = kdf::root(&Key32::new(side.rk), &Key32::new(dh_output), he)
                    .map_err(|e| format!("KDF_RK: {e}"))?;
                dh_step = Some(DhStep {
                    ratchet_private: hx(&private),
                    ratchet_public: hx(&public),
                    remote_ratchet_public: hx(&remote),
                    dh_output: hx(&dh_output),
                    root_key_before: hx(&side.rk),
                    root_key_after: hx(rk.expose()),
                    chain_key: hx(ck.expose()),
                    next_header_key: nhk.as_ref().map(|k| hx(k.expose())),
                });
                side.pn = side.ns;
                side.ns = 0;
                if he {
                    side.hks = side.nhks.take();
                    side.nhks = nhk.map(|k| *k.expose());
                }
                side.rk = *rk.expose();
                side.cks = Some(*ck.expose());
                side.dhs = Some((private, public));
                side.pending = false;
                side.steps += 1;
                self.roots.insert((sender, side.steps), (side.rk, side.hks));
            }
            (true, None) => return Err("a DH step is due but no ratchet private key is recorded".into()),
            (false, Some(_)) => return Err("a ratchet private key is recorded but no DH step is due".into()),
            (false, None) => {}
        }
        if side.ns == u32::MAX {
            return Err("counter exhausted".into());
        }
        let ck = side.cks.ok_or("no sending chain")?;
        let (next, mk) = kdf::chain(&Key32::new(ck));
        let (_, dhs_pub) = side.dhs.ok_or("no ratchet key")?;
        let header = [&dhs_pub[..], &side.pn.to_be_bytes(), &side.ns.to_be_bytes()].concat();
        let (ratchet, header_key, encrypted_header) = match (he, header_nonce) {
            (true, Some(nonce)) => {
                let hk = side.hks.ok_or("no sending header key")?;
                let mut h = header.clone();
                let tag = XChaChaPoly::seal_detached(&Key32::new(hk), &nonce, &[], &mut h)
                    .map_err(|e| format!("header AEAD: {e}"))?;
                let enc = [&nonce[..], &h, &tag].concat();
                ([&[MSG_RATCHET_HE][..], &enc].concat(), Some(hx(&hk)), Some(hx(&enc)))
            }
            (false, None) => ([&[MSG_RATCHET][..], &header].concat(), None, None),
            (true, None) => return Err("header encryption without a recorded header nonce".into()),
            (false, Some(_)) => return Err("a header nonce is recorded without header encryption".into()),
        };
        let associated_data = [&ad[..], &ratchet].concat();
        let (key, nonce) = kdf::message_keys(&mk).map_err(|e| format!("message keys: {e}"))?;
        let mut body = plaintext.to_vec();
        let tag = ChaChaPoly::seal_detached(&key, &nonce, &associated_data, &mut body)
            .map_err(|e| format!("AEAD: {e}"))?;
        let wire = [prefix.as_deref().unwrap_or(&[]), &ratchet, &body, &tag].concat();
        let message = Message {
            index,
            sender: PARTIES.get(sender).copied().unwrap_or("?").to_string(),
            plaintext: hx(plaintext),
            header: HeaderFields { dh: hx(&dhs_pub), pn: side.pn, n: side.ns },
            dh_step,
            chain_key_before: hx(&ck),
            chain_key_after: hx(next.expose()),
            message_key: hx(mk.expose()),
            aead_key: hx(key.expose()),
            aead_nonce: hx(&nonce),
            header_key,
            header_nonce: header_nonce.map(|n| hx(&n)),
            encrypted_header,
            x3dh_prefix: prefix.as_deref().map(hx),
            associated_data: hx(&associated_data),
            wire: hx(&wire),
        };
        side.cks = Some(*next.expose());
        side.ns += 1;
        self.sent.push((sender, side.steps, dhs_pub));
        Ok(message)
    }

    /// `receiver` successfully decrypted message `index`: if it carries a
    /// new ratchet key, take the receiving half of the DH step (spec §7.5)
    /// and check the root key (and the new receiving header key) equals the
    /// sender's.
    pub fn deliver(&mut self, index: usize, receiver: usize) -> Result<(), String> {
        let he = self.he;
        let &(sender, step, dh_pub) = self.sent.get(index).ok_or("delivery of a message not sent")?;
        if sender == receiver {
            return Err("delivered to its sender".into());
        }
        if receiver == 0 {
            // Any message from Bob acknowledges Alice's X3DH.
            self.prefix = None;
        }
        let expected = self.roots.get(&(sender, step)).copied();
        let side = self.sides.get_mut(receiver).ok_or("no such party")?;
        if step > side.peer_steps {
            if step != side.peer_steps + 1 {
                return Err("a DH step of the peer was never received".into());
            }
            let (dhs, _) = side.dhs.ok_or("no ratchet key to receive with")?;
            let dh_output = dh(&dhs, &dh_pub)?;
            let (rk, _ckr, nhk) = kdf::root(&Key32::new(side.rk), &Key32::new(dh_output), he)
                .map_err(|e| format!("KDF_RK: {e}"))?;
            let (sender_rk, sender_hks) = expected.ok_or("no such DH step")?;
            if *rk.expose() != sender_rk {
                return Err("the receiver's root key differs from the sender's".into());
            }
            side.rk = *rk.expose();
            side.dhr = Some(dh_pub);
            if he {
                side.hkr = side.nhkr.take();
                side.nhkr = nhk.map(|k| *k.expose());
                if side.hkr != sender_hks {
                    return Err("the receiver's header key differs from the sender's".into());
                }
            }
            side.pending = true;
            side.peer_steps = step;
        }
        Ok(())
    }

    /// Whether Alice still prefixes her messages with the X3DH header.
    pub fn alice_awaits_reply(&self) -> bool {
        self.prefix.is_some()
    }
}

/// Check (a) of a sequence of events: one result per message.
fn spec_run(setup: &X3dhCase, messages: &[Message], events: &[Event]) -> Vec<Result<(), String>> {
    let mut results: Vec<Result<(), String>> = vec![Ok(()); messages.len()];
    let mut model = match Model::new(setup) {
        Ok(m) => m,
        Err(e) => return vec![Err(format!("spec: setup: {e}")); messages.len()],
    };
    let mut sent = vec![false; messages.len()];
    for ev in events {
        match ev {
            Event::Send { message } => {
                let outcome = (|| -> Result<(), String> {
                    let m = messages.get(*message).ok_or("no such message")?;
                    if m.index != *message || *message != model.sent.len() {
                        return Err("messages must be sent in index order".into());
                    }
                    let rp = m.dh_step.as_ref().map(|s| arr::<32>(&s.ratchet_private)).transpose()?;
                    let hn = opt_arr::<24>(&m.header_nonce)?;
                    let derived = model.send(party(&m.sender)?, &unhex(&m.plaintext)?, rp, hn)?;
                    same(&derived, m)
                })();
                if let Some(s) = sent.get_mut(*message) {
                    *s = true;
                }
                merge(results.get_mut(*message), outcome.map_err(|e| format!("spec: {e}")));
            }
            Event::Deliver { message, to, plaintext, error } => {
                let outcome = (|| -> Result<(), String> {
                    let m = messages.get(*message).ok_or("no such message")?;
                    let receiver = party(to)?;
                    if receiver == party(&m.sender)? {
                        return Err("delivered to its sender".into());
                    }
                    match (plaintext, error) {
                        (Some(p), None) if *p == m.plaintext => model.deliver(*message, receiver),
                        (Some(_), None) => Err("expected plaintext differs from the message's".into()),
                        (None, Some(_)) => Ok(()),
                        _ => Err("a delivery lists exactly one of plaintext and error".into()),
                    }
                })();
                merge(results.get_mut(*message), outcome.map_err(|e| format!("spec: delivery: {e}")));
            }
            // A refused forgery changes no state of the model.
            Event::Forge { .. } => {}
        }
    }
    for (r, s) in results.iter_mut().zip(&sent) {
        if !s {
            merge(Some(r), Err("spec: never sent".into()));
        }
    }
    results
}

// --------------------------------------------------- the real implementation

/// Alice's and Bob's identities and Bob's pool, rebuilt by the real code
/// from the recorded secrets (the pool draws the signed prekey, then the
/// one-time prekey, from the randomness).
fn real_parties<const P: usize>(setup: &X3dhCase) -> Result<(Identity, Identity, PrekeyPool<P>), String> {
    let alice = real_identity(&setup.alice)?;
    let bob = real_identity(&setup.bob)?;
    let mut seed = unhex(&setup.signed_prekey.private)?;
    if let Some(o) = &setup.one_time_prekey {
        seed.extend(unhex(&o.private)?);
    }
    let mut rng = ReplayRng::new(&seed);
    let pool: PrekeyPool<P> = PrekeyPool::new(&bob, &mut rng, T0, PrekeyConfig::default());
    if rng.drawn() != seed.len() {
        return Err(format!("real: the pool drew {} bytes, {} recorded", rng.drawn(), seed.len()));
    }
    let spk = pool.signed_public();
    if spk.id != setup.signed_prekey.id
        || hx(&spk.public) != setup.signed_prekey.public
        || hx(&spk.sig) != setup.signed_prekey.signature
    {
        return Err("real: signed prekey differs".into());
    }
    Ok((alice, bob, pool))
}

/// Check (b) of the setup: the real bundle bytes, their decoding, and the
/// AD of both sides' sessions.
fn real_setup<const P: usize>(setup: &X3dhCase) -> Result<(), String> {
    let (alice, _, pool) = real_parties::<P>(setup)?;
    let kem_public = setup.kem_prekey.as_ref().map(|k| unhex(&k.public)).transpose()?;
    let mut bundle = pool.bundle(setup.one_time_prekey.as_ref().map(|o| o.id));
    if let (Some(k), Some(public)) = (&setup.kem_prekey, &kem_public) {
        bundle = bundle
            .with_kem(KemPrekey { id: k.id, alg: k.alg, public, sig: arr(&k.signature)? })
            .map_err(|e| format!("real: KEM prekey: {e}"))?;
    }
    let mut buf = vec![0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bundle.encode(&mut buf).map_err(|e| format!("real: bundle encode: {e}"))?;
    if buf.get(..n).map(hx) != Some(setup.bundle.clone()) {
        return Err("real: bundle bytes differ".into());
    }
    let recorded = unhex(&setup.bundle)?;
    let decoded = Bundle::decode(&recorded).map_err(|e| format!("real: bundle decode: {e}"))?;
    if decoded != bundle {
        return Err("real: decoded bundle differs".into());
    }
    let ek = arr::<32>(&setup.alice_ephemeral_private)?;
    let mut rng = ReplayRng::new(&ek);
    let cfg = SessionConfig { header_encryption: setup.header_encryption, ..SessionConfig::default() };
    let a: Session =
        Session::initiate(&alice, &decoded, cfg, &mut rng, NOW).map_err(|e| format!("real: {e}"))?;
    if rng.drawn() != 32 {
        return Err(format!("real: initiate drew {} bytes", rng.drawn()));
    }
    if hx(a.associated_data()) != setup.ad {
        return Err("real: Alice's AD differs".into());
    }
    Ok(())
}

/// Bob's `Session::respond` as every vector runs it (default
/// configuration; the time does not matter to the bytes).
pub fn respond<const P: usize, const MS: usize, const CAP: usize>(
    bob: &Identity,
    pool: &mut PrekeyPool<P>,
    wire: &[u8],
    out: &mut [u8],
) -> Result<(Session<MS, CAP>, usize), securemesh_ratchet::Error> {
    Session::respond(bob, pool, wire, out, SessionConfig::default(), NOW)
}

fn real_send<const MS: usize, const CAP: usize>(s: &mut Session<MS, CAP>, m: &Message) -> Result<(), String> {
    let mut randomness = Vec::new();
    if let Some(step) = &m.dh_step {
        randomness.extend(unhex(&step.ratchet_private)?);
    }
    if let Some(n) = &m.header_nonce {
        randomness.extend(unhex(n)?);
    }
    let plaintext = unhex(&m.plaintext)?;
    let mut rng = ReplayRng::new(&randomness);
    let mut out = vec![0u8; s.encrypted_len(plaintext.len())];
    let n = s.encrypt(&plaintext, &mut out, &mut rng, NOW).map_err(|e| format!("real: encrypt: {e:?}"))?;
    if rng.drawn() != randomness.len() {
        return Err(format!(
            "real: encrypt drew {} random bytes, {} recorded",
            rng.drawn(),
            randomness.len()
        ));
    }
    if out.get(..n).map(hx) != Some(m.wire.clone()) {
        return Err("real: encrypt wrote different wire bytes".into());
    }
    Ok(())
}

fn expect(
    got: Result<Vec<u8>, securemesh_ratchet::Error>,
    plaintext: &Option<String>,
    error: &Option<String>,
) -> Result<(), String> {
    match (got, plaintext, error) {
        (Ok(p), Some(want), _) if hx(&p) == *want => Ok(()),
        (Err(e), _, Some(want)) if format!("{e:?}") == *want => Ok(()),
        (got, _, _) => Err(format!(
            "real: delivery gave {:?}, expected {}",
            got.map(|p| hx(&p)),
            plaintext.as_deref().or(error.as_deref()).unwrap_or("nothing")
        )),
    }
}

fn state_bytes<T: Persist>(x: &T) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; T::MAX_ENCODED_LEN];
    let n = x.encode_state(&mut buf).map_err(|e| format!("real: encode state: {e}"))?;
    buf.truncate(n);
    Ok(buf)
}

/// The results of (b): one per message, one per forged delivery.
type RealResults = (Vec<Result<(), String>>, Vec<Result<(), String>>);

/// Check (b) of a sequence of events.
fn real_run<const P: usize, const MS: usize, const CAP: usize>(
    setup: &X3dhCase,
    messages: &[Message],
    events: &[Event],
) -> RealResults {
    let forges = events.iter().filter(|e| matches!(e, Event::Forge { .. })).count();
    let mut results: RealResults = (vec![Ok(()); messages.len()], vec![Ok(()); forges]);
    if let Err(e) = real_run_into::<P, MS, CAP>(setup, messages, events, &mut results) {
        for r in results.0.iter_mut().chain(results.1.iter_mut()) {
            merge(Some(r), Err(e.clone()));
        }
    }
    results
}

fn real_run_into<const P: usize, const MS: usize, const CAP: usize>(
    setup: &X3dhCase,
    messages: &[Message],
    events: &[Event],
    results: &mut RealResults,
) -> Result<(), String> {
    let (alice, bob, mut pool) = real_parties::<P>(setup)?;
    let bundle_bytes = unhex(&setup.bundle)?;
    let bundle = Bundle::decode(&bundle_bytes).map_err(|e| format!("real: bundle: {e}"))?;
    let cfg = SessionConfig { header_encryption: setup.header_encryption, ..SessionConfig::default() };
    let ek = arr::<32>(&setup.alice_ephemeral_private)?;
    let mut a: Session<MS, CAP> = Session::initiate(&alice, &bundle, cfg, &mut ReplayRng::new(&ek), NOW)
        .map_err(|e| format!("real: initiate: {e}"))?;
    let mut b: Option<Session<MS, CAP>> = None;
    let mut opened_by: Option<usize> = None;
    let mut forge_index = 0;
    for ev in events {
        match ev {
            Event::Send { message } => {
                let outcome = (|| {
                    let m = messages.get(*message).ok_or("no such message")?;
                    match party(&m.sender)? {
                        0 => real_send(&mut a, m),
                        _ => real_send(b.as_mut().ok_or("real: Bob sends before he has a session")?, m),
                    }
                })();
                merge(results.0.get_mut(*message), outcome);
            }
            Event::Deliver { message, to, plaintext, error } => {
                let outcome = (|| {
                    let m = messages.get(*message).ok_or("no such message")?;
                    let wire = unhex(&m.wire)?;
                    let mut out = vec![0u8; wire.len()];
                    let got = match (party(to)?, b.as_mut()) {
                        (0, _) => {
                            a.decrypt(&wire, &mut out, NOW).map(|n| out.get(..n).unwrap_or(&[]).to_vec())
                        }
                        (_, Some(s)) => {
                            s.decrypt(&wire, &mut out, NOW).map(|n| out.get(..n).unwrap_or(&[]).to_vec())
                        }
                        (_, None) => match respond(&bob, &mut pool, &wire, &mut out) {
                            Ok((s, n)) => {
                                b = Some(s);
                                opened_by = Some(*message);
                                Ok(out.get(..n).unwrap_or(&[]).to_vec())
                            }
                            Err(e) => Err(e),
                        },
                    };
                    expect(got, plaintext, error)?;
                    if let Some(s) = &b
                        && hx(s.associated_data()) != setup.ad
                    {
                        return Err("real: Bob's AD differs".into());
                    }
                    Ok(())
                })();
                merge(results.0.get_mut(*message), outcome);
            }
            Event::Forge { to, wire, error, note: _ } => {
                let outcome = (|| {
                    let wire = unhex(wire)?;
                    let mut out = vec![0u8; wire.len()];
                    let want = Some(error.clone());
                    let (before, got, after) = match (party(to)?, b.as_mut()) {
                        (0, _) => {
                            let before = state_bytes(&a)?;
                            let got = a.decrypt(&wire, &mut out, NOW).map(|_| Vec::new());
                            (before, got, state_bytes(&a)?)
                        }
                        (_, Some(s)) => {
                            let before = state_bytes(s)?;
                            let got = s.decrypt(&wire, &mut out, NOW).map(|_| Vec::new());
                            (before, got, state_bytes(s)?)
                        }
                        (_, None) => {
                            let before = state_bytes(&pool)?;
                            let got =
                                respond::<P, MS, CAP>(&bob, &mut pool, &wire, &mut out).map(|_| Vec::new());
                            (before, got, state_bytes(&pool)?)
                        }
                    };
                    expect(got, &None, &want)?;
                    if before != after {
                        return Err("real: a refused forgery changed the state".into());
                    }
                    Ok(())
                })();
                merge(results.1.get_mut(forge_index), outcome);
                forge_index += 1;
            }
        }
    }
    // The one-time prekey is spent once Bob's session exists.
    if let (Some(i), Some(_)) = (opened_by, &setup.one_time_prekey) {
        let wire = messages.get(i).map(|m| unhex(&m.wire)).transpose()?.unwrap_or_default();
        let mut out = vec![0u8; wire.len()];
        let again = respond::<P, MS, CAP>(&bob, &mut pool, &wire, &mut out);
        if !matches!(again, Err(securemesh_ratchet::Error::UnknownPrekey)) {
            merge(results.0.get_mut(i), Err("real: the one-time prekey was not consumed".into()));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------- checks

fn check_setup(case: &X3dhCase) -> Result<(), String> {
    let derived = derive_x3dh(&X3dhInputs::from_case(case)?).map_err(|e| format!("spec: {e}"))?;
    let recorded = X3dhCase { first_message: None, ..case.clone() };
    same(&derived, &recorded).map_err(|e| format!("spec: {e}"))?;
    if case.one_time_prekey.is_some() { real_setup::<1>(case) } else { real_setup::<0>(case) }
}

/// Run (a) and (b) over `messages` and `events` after `setup`, with the
/// default limits; one result per message, then one per forged delivery.
pub fn check_messages(setup: &X3dhCase, messages: &[Message], events: &[Event]) -> Vec<Result<(), String>> {
    check_messages_with(setup, (TRANSCRIPT_LIMIT, TRANSCRIPT_LIMIT), messages, events)
}

/// [`check_messages`] with a receiver's (`MAX_SKIP`, capacity), one of
/// [`TRANSCRIPT_LIMITS`].
pub fn check_messages_with(
    setup: &X3dhCase,
    limits: (u32, u32),
    messages: &[Message],
    events: &[Event],
) -> Vec<Result<(), String>> {
    let spec = spec_run(setup, messages, events);
    let opk = setup.one_time_prekey.is_some();
    let (real, forged) = match (opk, limits) {
        (true, (128, 128)) => real_run::<1, 128, 128>(setup, messages, events),
        (false, (128, 128)) => real_run::<0, 128, 128>(setup, messages, events),
        (true, (4, 6)) => real_run::<1, 4, 6>(setup, messages, events),
        (false, (4, 6)) => real_run::<0, 4, 6>(setup, messages, events),
        _ => {
            let e = Err(format!("limits {limits:?} are not one of {TRANSCRIPT_LIMITS:?}"));
            let forges = events.iter().filter(|e| matches!(e, Event::Forge { .. })).count();
            (vec![e.clone(); messages.len()], vec![e; forges])
        }
    };
    spec.into_iter().zip(real).map(|(s, r)| s.and(r)).chain(forged).collect()
}

/// Check an X3DH file: one check per case (setup and first message).
pub fn check_x3dh(name: &str, file: &X3dhFile) -> Report {
    let mut r = Report::new(name);
    for (i, case) in file.cases.iter().enumerate() {
        let outcome = check_setup(case).and_then(|()| {
            let m = case.first_message.as_ref().ok_or("no first message")?;
            let events = [
                Event::Send { message: 0 },
                Event::Deliver {
                    message: 0,
                    to: "bob".into(),
                    plaintext: Some(m.plaintext.clone()),
                    error: None,
                },
            ];
            check_messages(case, std::slice::from_ref(m), &events).into_iter().collect::<Result<(), String>>()
        });
        r.record(&format!("case {i} ({})", case.name), outcome);
    }
    r
}

/// Check a transcript: one check for the setup, one per message and one
/// per forged delivery.
pub fn check_transcript(name: &str, t: &Transcript) -> Report {
    let mut r = Report::new(name);
    let limits = if TRANSCRIPT_LIMITS.contains(&(t.max_skip, t.skipped_capacity)) {
        Ok(())
    } else {
        Err(format!("(MAX_SKIP, capacity) must be one of {TRANSCRIPT_LIMITS:?}"))
    };
    let setup = limits.and_then(|()| {
        if t.setup.header_encryption != t.header_encryption || t.setup.first_message.is_some() {
            return Err("setup does not match the transcript".into());
        }
        check_setup(&t.setup)
    });
    let setup_ok = setup.is_ok();
    r.record("setup", setup);
    let notes = t.events.iter().filter_map(|e| match e {
        Event::Forge { note, .. } => Some(note.as_str()),
        _ => None,
    });
    let names = (0..t.messages.len())
        .map(|i| format!("message {i}"))
        .chain(notes.enumerate().map(|(i, n)| format!("forgery {i} ({n})")));
    let outcomes = check_messages_with(&t.setup, (t.max_skip, t.skipped_capacity), &t.messages, &t.events);
    for (name, outcome) in names.zip(outcomes) {
        let outcome = if setup_ok { outcome } else { Err("setup failed".into()) };
        r.record(&name, outcome);
    }
    r
}

fn load<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e}", path.display()))
        .and_then(|s| serde_json::from_str(&s).map_err(|e| format!("{}: {e}", path.display())))
}

/// Check the X3DH file at `path`.
pub fn x3dh(path: &Path) -> Report {
    const NAME: &str = "ratchet v2 x3dh";
    match load::<X3dhFile>(path) {
        Ok(f) => check_x3dh(NAME, &f),
        Err(e) => {
            let mut r = Report::new(NAME);
            r.record("file", Err(e));
            r
        }
    }
}

fn check_bundle_case(c: &BundleCase) -> Result<(), String> {
    let bytes = unhex(&c.bundle)?;
    let decoded = Bundle::decode(&bytes);
    let got = match (c.operation.as_str(), decoded) {
        ("decode", d) => d.map(|_| ()),
        ("initiate", Ok(bundle)) => {
            let keys = c.alice.as_ref().ok_or("initiate needs alice")?;
            let alice = Identity::from_secrets(
                Secret::new(arr(&keys.sign_seed)?),
                Secret::new(arr(&keys.dh_private)?),
            );
            let ek =
                arr::<32>(c.alice_ephemeral_private.as_deref().ok_or("initiate needs an ephemeral key")?)?;
            Session::<128, 128>::initiate(
                &alice,
                &bundle,
                SessionConfig::default(),
                &mut ReplayRng::new(&ek),
                NOW,
            )
            .map(|_| ())
        }
        ("initiate", Err(e)) => return Err(format!("real: the bundle does not decode: {e:?}")),
        (op, _) => return Err(format!("unknown operation {op}")),
    };
    match got {
        Err(e) if format!("{e:?}") == c.error => Ok(()),
        other => Err(format!("real: {} gave {other:?}, expected {}", c.operation, c.error)),
    }
}

/// Check a bundle file: one check per case.
pub fn check_bundles(name: &str, file: &BundleFile) -> Report {
    let mut r = Report::new(name);
    for (i, c) in file.cases.iter().enumerate() {
        r.record(&format!("case {i} ({})", c.name), check_bundle_case(c));
    }
    r
}

/// Check the transcript at `path`, reported as `name`.
pub fn transcript(name: &str, path: &Path) -> Report {
    match load::<Transcript>(path) {
        Ok(t) => check_transcript(name, &t),
        Err(e) => {
            let mut r = Report::new(name);
            r.record("file", Err(e));
            r
        }
    }
}

/// The lines [`reports`] prints when every ratchet vector passes, in order
/// (pinned by the conformance test and the ratchet vector test).
pub const EXPECTED_LINES: [&str; 7] = [
    "ratchet v2 x3dh 4/4",
    "ratchet v2 double-ratchet 23/23",
    "ratchet v2 double-ratchet-he 23/23",
    "ratchet v2 double-ratchet-limits 61/61",
    "ratchet v2 double-ratchet-he-limits 63/63",
    "ratchet v2 bundles 22/22",
    "ratchet v3 pqxdh 4/4",
];

/// The ratchet vector files of wire version 2 in `dir/v2` (`dir` is the
/// `ratchet` folder), one report each: `ratchet v2 x3dh`, `ratchet v2
/// double-ratchet`, `ratchet v2 double-ratchet-he`, `ratchet v2
/// double-ratchet-limits`, `ratchet v2 double-ratchet-he-limits`. The
/// version-1 files in
/// `dir/v1` are kept for reference only: version 1 is retired (its initial
/// message did not bind the X3DH prefix) and the code refuses it. The
/// PQXDH vectors of `dir/v3` (wire version 2 with a KEM slot) follow:
/// `ratchet v3 pqxdh`.
pub fn reports(dir: &Path) -> Vec<Report> {
    let v3 = dir.join("v3");
    let dir = dir.join("v2");
    vec![
        x3dh(&dir.join("x3dh.json")),
        transcript("ratchet v2 double-ratchet", &dir.join("double-ratchet.json")),
        transcript("ratchet v2 double-ratchet-he", &dir.join("double-ratchet-he.json")),
        transcript("ratchet v2 double-ratchet-limits", &dir.join("double-ratchet-limits.json")),
        transcript("ratchet v2 double-ratchet-he-limits", &dir.join("double-ratchet-he-limits.json")),
        match load::<BundleFile>(&dir.join("bundles.json")) {
            Ok(f) => check_bundles("ratchet v2 bundles", &f),
            Err(e) => {
                let mut r = Report::new("ratchet v2 bundles");
                r.record("file", Err(e));
                r
            }
        },
        match load::<PqxdhFile>(&v3.join("pqxdh.json")) {
            Ok(f) => check_pqxdh("ratchet v3 pqxdh", &f),
            Err(e) => {
                let mut r = Report::new("ratchet v3 pqxdh");
                r.record("file", Err(e));
                r
            }
        },
    ]
}

// ------------------------------------------------------------ PQXDH (v3)

/// A KEM prekey of a PQXDH case: its seed (the decapsulation key as
/// stored, `d || z`), public key and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqKemPrekey {
    /// Identifier.
    pub id: u32,
    /// Algorithm code (1 = ML-KEM-768, 3 = ML-KEM-1024).
    pub alg: u16,
    /// Whether it is a one-time KEM prekey (else the last-resort one).
    pub one_time: bool,
    /// The 64-byte seed `d || z` (FIPS 203 `KeyGen_internal(d, z)`), hex.
    pub seed: String,
    /// Encapsulation key, hex.
    pub public: String,
    /// `Ed25519(bob, "securemesh-kem-prekey-v1" || u32be(id) || u16be(alg) || SHA-256(public))`, hex.
    pub signature: String,
}

/// One PQXDH agreement and Alice's first message, from the pool's and
/// Alice's recorded randomness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqxdhCase {
    /// What the case covers.
    pub name: String,
    /// Header-encryption variant (96 bytes of KDF output).
    pub header_encryption: bool,
    /// Alice's identity.
    pub alice: IdentityKeys,
    /// Bob's identity.
    pub bob: IdentityKeys,
    /// Every byte Bob's `PrekeyPool<1, 1>::new_pq` draws, in order: the
    /// signed prekey (32), the one-time prekey (32), the last-resort KEM
    /// seed (64), the one-time KEM seed (64), hex.
    pub pool_randomness: String,
    /// Bob's signed prekey (id 1).
    pub signed_prekey: SignedPrekey,
    /// Bob's one-time prekey (id 2), if the bundle carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_prekey: Option<OneTimePrekey>,
    /// The KEM prekey in the bundle (last-resort id 3 or one-time id 4).
    pub kem_prekey: PqKemPrekey,
    /// The encoded bundle, hex.
    pub bundle: String,
    /// Every byte Alice's session draws, in order: `EK_A` (32), the
    /// encapsulation randomness `m` (32), her first ratchet key (32) and,
    /// with header encryption, the header nonce (24), hex.
    pub alice_randomness: String,
    /// `EK_A` public, hex.
    pub alice_ephemeral_public: String,
    /// The KEM ciphertext `CT` (`ML-KEM.Encaps_internal(PQPK_B, m)`), hex.
    pub kem_ciphertext: String,
    /// The KEM shared secret `SS`, hex.
    pub kem_shared_secret: String,
    /// `DH(IK_A, SPK_B)`, hex.
    pub dh1: String,
    /// `DH(EK_A, IK_B)`, hex.
    pub dh2: String,
    /// `DH(EK_A, SPK_B)`, hex.
    pub dh3: String,
    /// `DH(EK_A, OPK_B)`, hex (with a one-time prekey).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh4: Option<String>,
    /// The KDF `info` label (names curve, hash and KEM), ASCII.
    pub info_label: String,
    /// The initial message's prefix, which follows the label in `info`, hex.
    pub prefix: String,
    /// `SK`, hex.
    pub sk: String,
    /// `HKa` (header encryption only), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hka: Option<String>,
    /// `NHKb` (header encryption only), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhkb: Option<String>,
    /// `AD = Encode(IK_A) || Encode(IK_B)`, hex.
    pub ad: String,
    /// The payload of Alice's first message, hex.
    pub plaintext: String,
    /// Alice's first message (prefix and ratchet message), hex.
    pub first_message: String,
}

/// The PQXDH vector file (`ratchet/v3/pqxdh.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqxdhFile {
    /// What the file is.
    pub description: String,
    /// The cases.
    pub cases: Vec<PqxdhCase>,
}

/// Everything a PQXDH case is derived from.
#[derive(Debug, Clone)]
pub struct PqxdhInputs {
    /// Case name.
    pub name: String,
    /// KEM algorithm code.
    pub alg: u16,
    /// Header-encryption variant.
    pub header_encryption: bool,
    /// Whether the bundle carries the one-time prekey.
    pub with_one_time_prekey: bool,
    /// Whether the bundle carries the one-time KEM prekey (else the last-resort one).
    pub one_time_kem: bool,
    /// Alice's Ed25519 seed and X25519 private key.
    pub alice: ([u8; 32], [u8; 32]),
    /// Bob's Ed25519 seed and X25519 private key.
    pub bob: ([u8; 32], [u8; 32]),
    /// The pool's randomness (192 bytes).
    pub pool_randomness: Vec<u8>,
    /// Alice's randomness (96 bytes, 120 with header encryption).
    pub alice_randomness: Vec<u8>,
    /// The first message's payload.
    pub plaintext: Vec<u8>,
}

impl PqxdhInputs {
    /// The inputs a recorded case lists.
    pub fn from_case(c: &PqxdhCase) -> Result<Self, String> {
        Ok(PqxdhInputs {
            name: c.name.clone(),
            alg: c.kem_prekey.alg,
            header_encryption: c.header_encryption,
            with_one_time_prekey: c.one_time_prekey.is_some(),
            one_time_kem: c.kem_prekey.one_time,
            alice: (arr(&c.alice.sign_seed)?, arr(&c.alice.dh_private)?),
            bob: (arr(&c.bob.sign_seed)?, arr(&c.bob.dh_private)?),
            pool_randomness: unhex(&c.pool_randomness)?,
            alice_randomness: unhex(&c.alice_randomness)?,
            plaintext: unhex(&c.plaintext)?,
        })
    }
}

/// `n` bytes at `at` of recorded randomness.
fn take<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], String> {
    bytes
        .get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("recorded randomness too short for {N} bytes at {at}"))
}

/// ML-KEM key pair of a seed and deterministic encapsulation, by code.
type KemKat = (Vec<u8>, Vec<u8>, [u8; 32]);

fn spec_kem(alg: u16, seed: [u8; 64], m: &[u8; 32]) -> Result<KemKat, String> {
    use securemesh_core::crypto::{MlKem768, MlKem1024};
    let e = |e: securemesh_core::Error| format!("KEM: {e}");
    match alg {
        1 => {
            let (_, ek) = MlKem768::dangerous_keygen_from_seed(seed);
            let (ct, ss) = MlKem768::dangerous_encapsulate_deterministic(&ek, m).map_err(e)?;
            Ok((ek.to_vec(), ct.to_vec(), *ss.expose()))
        }
        3 => {
            let (_, ek) = MlKem1024::dangerous_keygen_from_seed(seed);
            let (ct, ss) = MlKem1024::dangerous_encapsulate_deterministic(&ek, m).map_err(e)?;
            Ok((ek.to_vec(), ct.to_vec(), *ss.expose()))
        }
        other => Err(format!("KEM algorithm {other} is not a PQXDH KEM")),
    }
}

/// The PQXDH KDF `info` label of a KEM code (spec §4).
fn pqxdh_label(alg: u16, he: bool) -> Result<&'static str, String> {
    Ok(match (alg, he) {
        (1, false) => "securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-768",
        (3, false) => "securemesh-PQXDH_CURVE25519_SHA-256_ML-KEM-1024",
        (1, true) => "securemesh-PQXDH-HE_CURVE25519_SHA-256_ML-KEM-768",
        (3, true) => "securemesh-PQXDH-HE_CURVE25519_SHA-256_ML-KEM-1024",
        (other, _) => return Err(format!("KEM algorithm {other} is not a PQXDH KEM")),
    })
}

/// Derive a PQXDH case from its inputs, from the specification
/// (`securemesh_ratchet::spec` §2-§4 and §6): the pool's keys (in the order
/// the pool draws them), the bundle, `CT` and `SS` with the FIPS 203
/// internal functions, the DH outputs, `SK` with HKDF-SHA256 over
/// `F || DH1..DH4 || SS`, `AD`, and Alice's first message (the sending half
/// of her first DH ratchet step, with the public `kdf` chain functions).
pub fn derive_pqxdh(i: &PqxdhInputs) -> Result<PqxdhCase, String> {
    let he = i.header_encryption;
    let (alice, _) = spec_identity(&i.alice.0, &i.alice.1);
    let alice_encoded = unhex(&alice.encoded)?;
    let r = &i.pool_randomness;
    if r.len() != 192 {
        return Err(format!("pool randomness: {} bytes, 192 expected", r.len()));
    }
    let spk: [u8; 32] = take(r, 0)?;
    let opk: [u8; 32] = take(r, 32)?;
    let (kem_id, kem_seed): (u32, [u8; 64]) =
        if i.one_time_kem { (4, take(r, 128)?) } else { (3, take(r, 64)?) };
    let a = &i.alice_randomness;
    let want = if he { 120 } else { 96 };
    if a.len() != want {
        return Err(format!("Alice's randomness: {} bytes, {want} expected", a.len()));
    }
    let ek: [u8; 32] = take(a, 0)?;
    let m: [u8; 32] = take(a, 32)?;
    let ratchet: [u8; 32] = take(a, 64)?;

    let spk_pub = x25519_public(&spk);
    let opk_pub = x25519_public(&opk);
    let (kem_pub, ct, ss) = spec_kem(i.alg, kem_seed, &m)?;
    let opk_entry = i.with_one_time_prekey.then_some((2u32, opk_pub));
    let kem = (kem_id, i.alg, kem_pub.clone());
    let (bundle, bob, spk_sig, kem_case) =
        spec_bundle(&i.bob.0, &i.bob.1, 1, &spk_pub, opk_entry, Some(&kem))?;
    let kem_case = kem_case.ok_or("no KEM slot")?;

    let ek_pub = x25519_public(&ek);
    let bob_dh_pub = x25519_public(&i.bob.1);
    let ([dh1, dh2, dh3], dh4) =
        alice_dhs(&i.alice.1, &ek, &bob_dh_pub, &spk_pub, i.with_one_time_prekey.then_some(opk_pub))?;

    // §6.4: the prefix with the KEM slot.
    let mut prefix = vec![MSG_INITIAL];
    prefix.extend(&alice_encoded);
    prefix.extend(ek_pub);
    prefix.extend(1u32.to_be_bytes());
    if i.with_one_time_prekey {
        prefix.push(1);
        prefix.extend(2u32.to_be_bytes());
    } else {
        prefix.push(0);
    }
    prefix.push(1);
    prefix.extend(kem_id.to_be_bytes());
    prefix.extend(i.alg.to_be_bytes());
    prefix.extend(u16::try_from(ct.len()).map_err(|_| "ciphertext too long")?.to_be_bytes());
    prefix.extend(&ct);
    prefix.push(u8::from(he));

    // §4: HKDF-SHA256(salt = 0^32, ikm = F || DH1 || DH2 || DH3 [|| DH4] || SS,
    // info = label || prefix), straight from the hash (not the ratchet's kdf).
    let label = pqxdh_label(i.alg, he)?;
    let mut ikm = vec![0xffu8; 32];
    for part in [Some(dh1), Some(dh2), Some(dh3), dh4, Some(ss)].into_iter().flatten() {
        ikm.extend(part);
    }
    let prk = Sha256::hkdf_extract(&[0u8; 32], &ikm);
    let mut okm = vec![0u8; if he { 96 } else { 32 }];
    Sha256::hkdf_expand(prk.expose(), &[label.as_bytes(), &prefix], &mut okm)
        .map_err(|e| format!("HKDF: {e}"))?;
    let sk: [u8; 32] = take(&okm, 0)?;
    let header_keys = if he { Some((take::<32>(&okm, 32)?, take::<32>(&okm, 64)?)) } else { None };
    let bob_encoded = unhex(&bob.encoded)?;
    let ad = [take::<64>(&alice_encoded, 0)?, take::<64>(&bob_encoded, 0)?].concat();

    // Alice's first message: her sending DH ratchet step to SPK_B (§5, §6).
    let ratchet_pub = x25519_public(&ratchet);
    let dh_out = dh(&ratchet, &spk_pub)?;
    let (_, ck, _) =
        kdf::root(&Key32::new(sk), &Key32::new(dh_out), he).map_err(|e| format!("KDF_RK: {e}"))?;
    let (_, mk) = kdf::chain(&ck);
    let header = [&ratchet_pub[..], &0u32.to_be_bytes(), &0u32.to_be_bytes()].concat();
    let ratchet_header = match header_keys {
        Some((hka, _)) => {
            let nonce: [u8; 24] = take(a, 96)?;
            let mut h = header.clone();
            let tag = XChaChaPoly::seal_detached(&Key32::new(hka), &nonce, &[], &mut h)
                .map_err(|e| format!("header AEAD: {e}"))?;
            [&[MSG_RATCHET_HE][..], &nonce, &h, &tag].concat()
        }
        None => [&[MSG_RATCHET][..], &header].concat(),
    };
    let (key, nonce) = kdf::message_keys(&mk).map_err(|e| format!("message keys: {e}"))?;
    let mut body = i.plaintext.clone();
    let tag = ChaChaPoly::seal_detached(&key, &nonce, &[&ad[..], &ratchet_header].concat(), &mut body)
        .map_err(|e| format!("AEAD: {e}"))?;
    let first_message = [&prefix[..], &ratchet_header, &body, &tag].concat();

    Ok(PqxdhCase {
        name: i.name.clone(),
        header_encryption: he,
        alice,
        bob,
        pool_randomness: hx(r),
        signed_prekey: SignedPrekey {
            id: 1,
            private: hx(&spk),
            public: hx(&spk_pub),
            signature: hx(&spk_sig),
        },
        one_time_prekey: i.with_one_time_prekey.then(|| OneTimePrekey {
            id: 2,
            private: hx(&opk),
            public: hx(&opk_pub),
        }),
        kem_prekey: PqKemPrekey {
            id: kem_id,
            alg: i.alg,
            one_time: i.one_time_kem,
            seed: hx(&kem_seed),
            public: kem_case.public,
            signature: kem_case.signature,
        },
        bundle: hx(&bundle),
        alice_randomness: hx(a),
        alice_ephemeral_public: hx(&ek_pub),
        kem_ciphertext: hx(&ct),
        kem_shared_secret: hx(&ss),
        dh1: hx(&dh1),
        dh2: hx(&dh2),
        dh3: hx(&dh3),
        dh4: dh4.map(|d| hx(&d)),
        info_label: label.to_string(),
        prefix: hx(&prefix),
        sk: hx(&sk),
        hka: header_keys.map(|(k, _)| hx(&k)),
        nhkb: header_keys.map(|(_, k)| hx(&k)),
        ad: hx(&ad),
        plaintext: hx(&i.plaintext),
        first_message: hx(&first_message),
    })
}

/// Check (b) of a PQXDH case: Bob's real pool from the recorded randomness
/// (all of it drawn) publishes the recorded bundle; Alice's real session
/// (`PqxdhSession::initiate_pq`, `encrypt`) draws exactly her recorded
/// randomness and writes the recorded first message; Bob's
/// `Session::respond` opens it (the one-time KEM prekey, if used, is then
/// consumed), a message with one ciphertext byte changed is refused with
/// nothing consumed, and one without the KEM slot is a `Downgrade`.
fn real_pqxdh(c: &PqxdhCase) -> Result<(), String> {
    use securemesh_ratchet::{Error as RatchetError, KemAlgorithm, MAX_KEM_PUBLIC_LEN, PqxdhSession};
    let (alice, bob) = (real_identity(&c.alice)?, real_identity(&c.bob)?);
    let alg = KemAlgorithm::from_code(c.kem_prekey.alg).ok_or("unknown KEM")?;
    let pool_randomness = unhex(&c.pool_randomness)?;
    let mut rng = ReplayRng::new(&pool_randomness);
    let mut pool: PrekeyPool<1, 1> = PrekeyPool::new_pq(&bob, &mut rng, T0, PrekeyConfig::default(), alg)
        .map_err(|e| format!("real: new_pq: {e}"))?;
    if rng.drawn() != pool_randomness.len() {
        return Err(format!("real: the pool drew {} bytes, {} recorded", rng.drawn(), pool_randomness.len()));
    }
    let mut kem_buf = [0u8; MAX_KEM_PUBLIC_LEN];
    let opk = c.one_time_prekey.as_ref().map(|o| o.id);
    let kem_one_time = c.kem_prekey.one_time.then_some(c.kem_prekey.id);
    let bundle = pool.bundle_pq(opk, kem_one_time, &mut kem_buf).map_err(|e| format!("real: bundle: {e}"))?;
    let mut buf = vec![0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
    let n = bundle.encode(&mut buf).map_err(|e| format!("real: bundle encode: {e}"))?;
    if buf.get(..n).map(hx) != Some(c.bundle.clone()) {
        return Err("real: bundle bytes differ".into());
    }
    let recorded = unhex(&c.bundle)?;
    let decoded = Bundle::decode(&recorded).map_err(|e| format!("real: bundle decode: {e}"))?;
    let alice_randomness = unhex(&c.alice_randomness)?;
    let mut rng = ReplayRng::new(&alice_randomness);
    let cfg = SessionConfig { header_encryption: c.header_encryption, ..SessionConfig::default() };
    let mut a =
        PqxdhSession::initiate_pq(&alice, &decoded, cfg, &mut rng, NOW).map_err(|e| format!("real: {e}"))?;
    if hx(a.associated_data()) != c.ad {
        return Err("real: Alice's AD differs".into());
    }
    let plaintext = unhex(&c.plaintext)?;
    let mut wire = vec![0u8; a.encrypted_len(plaintext.len())];
    let n = a.encrypt(&plaintext, &mut wire, &mut rng, NOW).map_err(|e| format!("real: encrypt: {e}"))?;
    if rng.drawn() != alice_randomness.len() {
        return Err(format!("real: Alice drew {} bytes, {} recorded", rng.drawn(), alice_randomness.len()));
    }
    if wire.get(..n).map(hx) != Some(c.first_message.clone()) {
        return Err("real: first message differs".into());
    }
    let message = unhex(&c.first_message)?;
    let before = state_bytes(&pool)?;
    let mut out = vec![0u8; message.len()];
    // A changed ciphertext byte: another shared secret, refused, nothing consumed.
    let ct_at = unhex(&c.prefix)?.len().saturating_sub(1 + unhex(&c.kem_ciphertext)?.len());
    let mut forged = message.clone();
    *forged.get_mut(ct_at).ok_or("short message")? ^= 1;
    match Session::<128, 128>::respond(&bob, &mut pool, &forged, &mut out, SessionConfig::default(), NOW) {
        Err(RatchetError::Decrypt) if state_bytes(&pool)? == before => {}
        other => return Err(format!("real: a changed ciphertext gave {:?}", other.map(|(_, n)| n))),
    }
    // The KEM slot stripped: a downgrade.
    let kem_at = INITIAL_KEM_COUNT_AT + if c.one_time_prekey.is_some() { 4 } else { 0 };
    let prefix_len = unhex(&c.prefix)?.len();
    let stripped =
        [message.get(..kem_at).ok_or("short")?, &[0], message.get(prefix_len - 1..).ok_or("short")?].concat();
    match Session::<128, 128>::respond(&bob, &mut pool, &stripped, &mut out, SessionConfig::default(), NOW) {
        Err(RatchetError::Downgrade) if state_bytes(&pool)? == before => {}
        other => return Err(format!("real: a stripped KEM slot gave {:?}", other.map(|(_, n)| n))),
    }
    let (_, k) =
        Session::<128, 128>::respond(&bob, &mut pool, &message, &mut out, SessionConfig::default(), NOW)
            .map_err(|e| format!("real: respond: {e}"))?;
    if out.get(..k) != Some(&plaintext[..]) {
        return Err("real: Bob's plaintext differs".into());
    }
    let consumed = pool.kem_available() == 0;
    if consumed != c.kem_prekey.one_time {
        return Err("real: the one-time KEM prekey was not consumed (or the last-resort one was)".into());
    }
    Ok(())
}

/// Offset of `kem_count` in an initial message without a one-time prekey.
const INITIAL_KEM_COUNT_AT: usize = 1 + 128 + 32 + 4 + 1;

/// Check one PQXDH case: (a) it re-derives from its inputs, (b) the real
/// pool and sessions reproduce and accept it.
pub fn check_pqxdh_case(c: &PqxdhCase) -> Result<(), String> {
    let derived = derive_pqxdh(&PqxdhInputs::from_case(c)?)?;
    same(&derived, c).map_err(|e| format!("spec: {e}"))?;
    real_pqxdh(c)
}

/// Check a PQXDH file: one check per case.
pub fn check_pqxdh(name: &str, file: &PqxdhFile) -> Report {
    let mut r = Report::new(name);
    for (i, c) in file.cases.iter().enumerate() {
        r.record(&format!("case {i} ({})", c.name), check_pqxdh_case(c));
    }
    r
}

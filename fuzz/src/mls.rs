//! MLS-lite fixtures for the `mls_*` targets and the seed generator: the
//! mlswg passive-client vectors of `test-vectors/mls/` (embedded with
//! `include_str!`, so the targets need no files at run time), read by a
//! minimal JSON reader, and what the targets observe of a group.
//!
//! - [`welcome_members`]: the two joiners of `mls_welcome`:
//!   `passive-client-welcome.json` entry 0 (ratchet tree in the GroupInfo
//!   extension, path secret in the GroupSecrets) and entry 6 (ratchet tree
//!   given out of band, one external PSK);
//! - [`commit_member`]: the joiner of `mls_commit`:
//!   `passive-client-handling-commit.json` entry 12 (epoch 0: a
//!   PublicMessage commit with an UpdatePath; epoch 1: six PublicMessage
//!   proposals, then the commit that lists them by reference);
//! - [`Observed`]: everything observable about a group (epoch, epoch
//!   authenticator, tree hash, both transcript hashes, encoded tree, path
//!   keys, own leaf);
//! - [`messages_json`]: the `messages.json` vector text, for the seeds;
//! - [`candidate`], [`key_package_creator`], [`key_package_seeds`]: the
//!   KeyPackages of `mls_key_package` (made with `create_key_package`),
//!   the creator of its group and its seeds.

use securemesh_core::Secret;
use securemesh_mls_lite::Error;
use securemesh_mls_lite::commit::{CommitEvent, ProposalCache, PskStore, ResumptionPsk};
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::messages::{KeyPackage, MlsMessage, MlsMessageBody, Welcome};
use securemesh_mls_lite::testing::Candidate;
use securemesh_mls_lite::welcome::{ExternalPsk, JoinKeys};

/// The group type of the targets (the crate's default capacities, ~60 KB:
/// keep it in a `static`, never on the stack).
pub type Group = securemesh_mls_lite::DefaultGroup;

const PASSIVE_WELCOME: &str = include_str!("../../test-vectors/mls/passive-client-welcome.json");
const HANDLING_COMMIT: &str = include_str!("../../test-vectors/mls/passive-client-handling-commit.json");

/// The `messages.json` vector (every message type, unauthenticated), read
/// by the seed generator only.
pub fn messages_json() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../test-vectors/mls/messages.json"))
        .expect("messages.json")
}

// ---------------------------------------------------------------------------
// The vector files, read with serde_json into a small accessor enum.

/// A JSON value; numbers and booleans are not kept.
#[derive(Debug)]
pub enum Json {
    /// `null`, or a missing key.
    Null,
    /// `true` / `false`.
    Bool,
    /// A number.
    Num,
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The value of `key` (`Null` if absent).
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or(&Json::Null),
            _ => &Json::Null,
        }
    }

    /// The items of an array (none for anything else).
    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    /// The fields of an object (none for anything else).
    pub fn fields(&self) -> &[(String, Json)] {
        match self {
            Json::Obj(f) => f,
            _ => &[],
        }
    }

    /// A hex string's bytes.
    pub fn hex(&self) -> Vec<u8> {
        match self {
            Json::Str(s) => unhex(s),
            other => panic!("not a string: {other:?}"),
        }
    }

    /// Whether it is `null` (or missing).
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
}

/// Hex to bytes (panics on bad hex).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// Parse a JSON text.
pub fn parse_json(text: &str) -> Json {
    fn conv(v: serde_json::Value) -> Json {
        match v {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(_) => Json::Bool,
            serde_json::Value::Number(_) => Json::Num,
            serde_json::Value::String(s) => Json::Str(s),
            serde_json::Value::Array(a) => Json::Arr(a.into_iter().map(conv).collect()),
            serde_json::Value::Object(o) => Json::Obj(o.into_iter().map(|(k, v)| (k, conv(v))).collect()),
        }
    }
    conv(serde_json::from_str(text).expect("vector file is JSON"))
}

// ---------------------------------------------------------------------------
// Passive-client entries.

fn secret(bytes: &[u8]) -> Secret32 {
    Secret::new(bytes.try_into().expect("32-byte key"))
}

/// One epoch of a passive-client vector.
pub struct Epoch {
    /// The proposals (`MLSMessage`s) received before the commit.
    pub proposals: Vec<Vec<u8>>,
    /// The commit (`MLSMessage`).
    pub commit: Vec<u8>,
    /// The epoch authenticator after the commit.
    pub epoch_authenticator: Vec<u8>,
}

/// One passive client of a vector: its keys, the Welcome that adds it and
/// the epochs it then goes through.
pub struct Member {
    /// The KeyPackage (`MLSMessage`).
    pub key_package: Vec<u8>,
    /// `init_priv`.
    pub init_priv: Secret32,
    /// `encryption_priv`.
    pub encryption_priv: Secret32,
    /// `signature_priv`.
    pub signature_priv: Secret32,
    /// The Welcome (`MLSMessage`).
    pub welcome: Vec<u8>,
    /// The ratchet tree given out of band, if any.
    pub ratchet_tree: Option<Vec<u8>>,
    /// External PSKs `(psk_id, psk)`.
    pub psks: Vec<(Vec<u8>, Vec<u8>)>,
    /// The epoch authenticator right after the join.
    pub initial_epoch_authenticator: Vec<u8>,
    /// Later epochs.
    pub epochs: Vec<Epoch>,
}

impl Member {
    fn from_json(e: &Json) -> Self {
        let tree = e.get("ratchet_tree");
        Member {
            key_package: e.get("key_package").hex(),
            init_priv: secret(&e.get("init_priv").hex()),
            encryption_priv: secret(&e.get("encryption_priv").hex()),
            signature_priv: secret(&e.get("signature_priv").hex()),
            welcome: e.get("welcome").hex(),
            ratchet_tree: if tree.is_null() { None } else { Some(tree.hex()) },
            psks: e
                .get("external_psks")
                .arr()
                .iter()
                .map(|p| (p.get("psk_id").hex(), p.get("psk").hex()))
                .collect(),
            initial_epoch_authenticator: e.get("initial_epoch_authenticator").hex(),
            epochs: e
                .get("epochs")
                .arr()
                .iter()
                .map(|ep| Epoch {
                    proposals: ep.get("proposals").arr().iter().map(Json::hex).collect(),
                    commit: ep.get("commit").hex(),
                    epoch_authenticator: ep.get("epoch_authenticator").hex(),
                })
                .collect(),
        }
    }

    /// The join keys.
    pub fn keys(&self) -> JoinKeys<'_> {
        let key_package = match MlsMessage::from_bytes(&self.key_package).expect("key package").body {
            MlsMessageBody::KeyPackage(k) => k,
            _ => panic!("not a KeyPackage"),
        };
        JoinKeys {
            key_package,
            init_priv: &self.init_priv,
            encryption_priv: &self.encryption_priv,
            signature_priv: &self.signature_priv,
        }
    }

    /// Our KeyPackage.
    pub fn key_package(&self) -> KeyPackage<'_> {
        self.keys().key_package
    }

    /// The external PSKs as the crate takes them.
    pub fn external_psks(&self) -> Vec<ExternalPsk<'_>> {
        self.psks.iter().map(|(id, psk)| ExternalPsk { id, psk }).collect()
    }

    /// The genuine Welcome.
    pub fn genuine_welcome(&self) -> Welcome<'_> {
        welcome_of(&self.welcome).expect("genuine welcome")
    }

    /// Join `slot` from `welcome` (an `MLSMessage`) with our keys, tree and
    /// PSKs; a message that is not a Welcome is `Malformed` (slot untouched).
    pub fn join(&self, slot: &mut Group, welcome: &[u8]) -> Result<(), Error> {
        let w = welcome_of(welcome)?;
        let mut scratch = vec![0u8; Group::scratch_len(welcome.len())];
        slot.join_into(&w, &self.keys(), self.ratchet_tree.as_deref(), &self.external_psks(), &mut scratch)
    }
}

/// The Welcome in an `MLSMessage`.
pub fn welcome_of(bytes: &[u8]) -> Result<Welcome<'_>, Error> {
    match MlsMessage::from_bytes(bytes)?.body {
        MlsMessageBody::Welcome(w) => Ok(w),
        _ => Err(Error::Malformed),
    }
}

/// The joiners of `mls_welcome` (selector bit 0 picks one).
pub fn welcome_members() -> [Member; 2] {
    let all = parse_json(PASSIVE_WELCOME);
    [Member::from_json(&all.arr()[0]), Member::from_json(&all.arr()[6])]
}

/// The joiner of `mls_commit`.
pub fn commit_member() -> Member {
    Member::from_json(&parse_json(HANDLING_COMMIT).arr()[12])
}

/// Resumption PSKs kept by a passive client: `(group_id, epoch, psk)` of
/// every epoch it went through.
#[derive(Default)]
pub struct History(pub Vec<(Vec<u8>, u64, Secret32)>);

impl History {
    /// Remember the current epoch's resumption PSK (call before its commit).
    pub fn push(&mut self, g: &Group) {
        if !self.0.iter().any(|(_, e, _)| *e == g.epoch()) {
            self.0.push((g.group_id().to_vec(), g.epoch(), g.secrets().resumption_psk.duplicate()));
        }
    }

    /// The resumption PSKs in the form `PskStore` takes.
    pub fn resumption(&self) -> Vec<ResumptionPsk<'_>> {
        self.0.iter().map(|(g, ep, psk)| ResumptionPsk { group_id: g, epoch: *ep, psk }).collect()
    }
}

/// Process the genuine proposals and commit of `epoch` (all must pass);
/// returns the event of the commit.
pub fn genuine_epoch(
    m: &Member,
    epoch: &Epoch,
    g: &mut Group,
    cache: &mut ProposalCache,
    spare: &mut Group,
    history: &mut History,
) -> CommitEvent {
    for p in &epoch.proposals {
        let mut scratch = vec![0u8; Group::commit_scratch_len(p.len())];
        g.process_proposal(p, cache, &mut scratch).expect("genuine proposal accepted");
    }
    history.push(g);
    let psks = m.external_psks();
    let resumption = history.resumption();
    let store = PskStore { external: &psks, resumption: &resumption };
    let mut scratch = vec![0u8; Group::commit_scratch_len(epoch.commit.len())];
    g.process_commit(&epoch.commit, cache, &store, spare, &mut scratch).expect("genuine commit accepted")
}

// ---------------------------------------------------------------------------

/// Everything observable about a group's state.
#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    /// Whether the slot holds a group.
    pub joined: bool,
    /// The epoch.
    pub epoch: u64,
    /// The epoch authenticator.
    pub epoch_authenticator: Vec<u8>,
    /// The tree hash.
    pub tree_hash: Vec<u8>,
    /// The confirmed transcript hash.
    pub confirmed: Vec<u8>,
    /// The interim transcript hash.
    pub interim: Vec<u8>,
    /// The encoded ratchet tree.
    pub tree: Vec<u8>,
    /// Our private keys above our leaf `(node, key)`.
    pub path_keys: Vec<(u32, Vec<u8>)>,
    /// Our leaf.
    pub own_leaf: u32,
    /// The group id.
    pub group_id: Vec<u8>,
}

/// Observe `g`.
pub fn observe(g: &Group) -> Observed {
    let mut tree = vec![0u8; 64 * 1024];
    let n = g.tree().encode(&mut tree).expect("tree encodes");
    tree.truncate(n);
    Observed {
        joined: g.is_joined(),
        epoch: g.epoch(),
        epoch_authenticator: g.epoch_authenticator().expose().to_vec(),
        tree_hash: g.tree_hash().to_vec(),
        confirmed: g.confirmed_transcript_hash().to_vec(),
        interim: g.interim_transcript_hash().to_vec(),
        tree,
        path_keys: g.path_keys().iter().map(|k| (k.node, k.private_key.expose().to_vec())).collect(),
        own_leaf: g.own_leaf(),
        group_id: g.group_id().to_vec(),
    }
}

/// What `mls_application` starts from: two members of one group
/// (`securemesh_mls_lite::testing::member_pair`, leaves 0 and 1) and the
/// application messages leaf 0 sealed, generations 0 to 7.
pub struct ApplicationFixture {
    /// `encode_state` of the receiver (leaf 1) before any message.
    pub receiver: Vec<u8>,
    /// The genuine messages by generation: (message, data, authenticated data).
    pub messages: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

/// Build the [`ApplicationFixture`] (deterministic).
pub fn application_fixture() -> ApplicationFixture {
    use securemesh_core::testing::TestRng;
    let mut a: Box<Group> = Box::default();
    let mut b: Box<Group> = Box::default();
    let mut rng = TestRng::new(0xa991);
    securemesh_mls_lite::testing::member_pair(b"fuzz-fleet", &mut rng, [&mut *a, &mut *b])
        .expect("member pair");
    let mut messages = Vec::new();
    for g in 0..8u8 {
        let data: Vec<u8> = (0..usize::from(g) * 9).map(|i| i as u8 ^ g).collect();
        let ad = vec![g; usize::from(g % 3)];
        let mut out = vec![0u8; data.len() + 256];
        let mut scratch = vec![0u8; Group::seal_scratch_len(data.len(), ad.len())];
        let n = a
            .seal_application(&data, &ad, usize::from(g % 4), &mut rng, &mut out, &mut scratch)
            .expect("seal");
        out.truncate(n);
        messages.push((out, data, ad));
    }
    ApplicationFixture { receiver: crate::noise::encode_state(&*b), messages }
}

/// `now` (Unix seconds) at which `mls_key_package` validates first (then
/// at 0 and `u64::MAX`).
pub const KEY_PACKAGE_NOW: u64 = 1_750_000_000;

/// A would-be member made with `create_key_package`
/// ([`Candidate`](securemesh_mls_lite::testing::Candidate)): a KeyPackage
/// of `identity` with the lifetime `[not_before, not_after]`, keys from
/// `TestRng::new(seed)` (deterministic).
pub fn candidate(
    seed: u64,
    identity: &[u8],
    not_before: u64,
    not_after: u64,
    last_resort: bool,
) -> Candidate {
    let params =
        securemesh_mls_lite::key_package::KeyPackageParams { identity, not_before, not_after, last_resort };
    Candidate::new(&params, &mut securemesh_core::testing::TestRng::new(seed)).expect("create_key_package")
}

/// The creator of the group `mls_key_package` adds to (valid at every
/// `now`; its KeyPackage is also a seed: a duplicate of a member).
pub fn key_package_creator() -> Candidate {
    candidate(0xc4ea_7012, b"creator", 0, u64::MAX, false)
}

/// Seeds of `mls_key_package`: KeyPackages made by `create_key_package`.
pub fn key_package_seeds() -> Vec<(String, Vec<u8>)> {
    let now = KEY_PACKAGE_NOW;
    let day = 86_400;
    let kp = |seed, identity: &[u8], nb, na, lr| {
        candidate(seed, identity, nb, na, lr).key_package_bytes().to_vec()
    };
    vec![
        // Valid at `now` only (not at 0 or u64::MAX).
        ("valid_at_now".into(), kp(0x6b01, b"bob", now - day, now + 90 * day, false)),
        // last_resort, valid at every `now`.
        ("last_resort_forever".into(), kp(0x6b02, b"carol", 0, u64::MAX, true)),
        // Expired at `now`, valid at 0.
        ("expired_at_now".into(), kp(0x6b03, b"dave", 0, now - 1, false)),
        // Not yet valid at `now`, valid at u64::MAX.
        ("not_yet_valid_last_resort".into(), kp(0x6b04, b"erin", now + 1, u64::MAX, true)),
        // A leaf over the group's 256 leaf bytes (Capacity in the commit).
        ("leaf_too_long".into(), kp(0x6b05, &[b'f'; 120], 0, u64::MAX, false)),
        // The creator's own KeyPackage (same keys as leaf 0: refused).
        ("creator_duplicate".into(), key_package_creator().key_package_bytes().to_vec()),
    ]
}

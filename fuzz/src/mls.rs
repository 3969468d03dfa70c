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
//! - [`candidate`], [`candidate_in`], [`key_package_creator`],
//!   [`key_package_creator_xwing`], [`key_package_seeds`]: the
//!   KeyPackages of `mls_key_package` (made with `create_key_package_in`,
//!   ciphersuites 0x0003 and 0x004D), the creators of its two groups and
//!   its seeds;
//! - [`xwing_add`], [`xwing_messages`]: a 0x004D (X-Wing) group adding a
//!   member (KeyPackage, commit with an UpdatePath, Welcome, GroupInfo):
//!   the X-Wing joiner of `mls_welcome` and the 0x004D seeds of
//!   `mls_message_decode` and `mls_welcome`;
//! - [`xwing_member`]: the 0x004D passive client of `mls_xwing_commit`;
//! - [`CommitState`], [`commit_fixture`], [`commit_run`]: the state,
//!   fixture check and run shared by `mls_commit` and `mls_xwing_commit`;
//! - [`proposal_fixture`], [`proposal_seeds`]: the three-member group of
//!   `mls_proposal` (made with `create_into`, `commit` and `join_into`),
//!   its input layout ([`proposal_frame`]) and its seeds.

use securemesh_core::Secret;
use securemesh_mls_lite::Error;
use securemesh_mls_lite::commit::{CommitEvent, ProposalCache, PskStore, ResumptionPsk};
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::crypto::suite::Suite;
use securemesh_mls_lite::messages::{KeyPackage, Welcome};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
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
    pub fn join<const L: usize, const B: usize, const G: usize, const E: usize>(
        &self,
        slot: &mut securemesh_mls_lite::Group<L, B, G, E>,
        welcome: &[u8],
    ) -> Result<(), Error> {
        let w = welcome_of(welcome)?;
        let mut scratch = vec![0u8; securemesh_mls_lite::Group::<L, B, G, E>::scratch_len(welcome.len())];
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
    pub fn push<const L: usize, const B: usize, const G: usize, const E: usize>(
        &mut self,
        g: &securemesh_mls_lite::Group<L, B, G, E>,
    ) {
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
pub fn genuine_epoch<const L: usize, const B: usize, const G: usize, const E: usize>(
    m: &Member,
    epoch: &Epoch,
    g: &mut securemesh_mls_lite::Group<L, B, G, E>,
    cache: &mut ProposalCache,
    spare: &mut securemesh_mls_lite::Group<L, B, G, E>,
    history: &mut History,
) -> CommitEvent {
    for p in &epoch.proposals {
        let mut scratch = vec![0u8; securemesh_mls_lite::Group::<L, B, G, E>::commit_scratch_len(p.len())];
        g.process_proposal(p, cache, &mut scratch).expect("genuine proposal accepted");
    }
    history.push(g);
    let psks = m.external_psks();
    let resumption = history.resumption();
    let store = PskStore { external: &psks, resumption: &resumption };
    let mut scratch =
        vec![0u8; securemesh_mls_lite::Group::<L, B, G, E>::commit_scratch_len(epoch.commit.len())];
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

/// Observe `g` (a group of any capacities).
pub fn observe<const L: usize, const B: usize, const G: usize, const E: usize>(
    g: &securemesh_mls_lite::Group<L, B, G, E>,
) -> Observed {
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
    candidate_in(Suite::Mls128X25519, seed, identity, not_before, not_after, last_resort)
}

/// The creator of the group `mls_key_package` adds to (valid at every
/// `now`; its KeyPackage is also a seed: a duplicate of a member).
pub fn key_package_creator() -> Candidate {
    candidate(0xc4ea_7012, b"creator", 0, u64::MAX, false)
}

/// [`candidate`] in ciphersuite `suite` (`Candidate::new_in`).
pub fn candidate_in(
    suite: Suite,
    seed: u64,
    identity: &[u8],
    not_before: u64,
    not_after: u64,
    last_resort: bool,
) -> Candidate {
    let params =
        securemesh_mls_lite::key_package::KeyPackageParams { identity, not_before, not_after, last_resort };
    Candidate::new_in(suite, &params, &mut securemesh_core::testing::TestRng::new(seed))
        .expect("create_key_package_in")
}

/// The creator of the 0x004D (X-Wing) group `mls_key_package` adds
/// 0x004D KeyPackages to (valid at every `now`).
pub fn key_package_creator_xwing() -> Candidate {
    candidate_in(Suite::Mls256XWing, 0xc4ea_7d4d, b"creator-xwing", 0, u64::MAX, false)
}

/// Seeds of `mls_key_package`: KeyPackages made by `create_key_package`.
pub fn key_package_seeds() -> Vec<(String, Vec<u8>)> {
    let now = KEY_PACKAGE_NOW;
    let day = 86_400;
    let kp = |seed, identity: &[u8], nb, na, lr| {
        candidate(seed, identity, nb, na, lr).key_package_bytes().to_vec()
    };
    let xwing = |seed, identity: &[u8], nb, na, lr| {
        candidate_in(Suite::Mls256XWing, seed, identity, nb, na, lr).key_package_bytes().to_vec()
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
        // Ciphersuite 0x004D (X-Wing): valid at `now` only, and
        // last_resort valid at every `now`.
        ("xwing_valid_at_now".into(), xwing(0x6b11, b"frank", now - day, now + 90 * day, false)),
        ("xwing_last_resort_forever".into(), xwing(0x6b12, b"grace", 0, u64::MAX, true)),
        // A hybrid credential (0xF0A5, mls-lite's `ml-dsa`): the ML-DSA-65
        // key in the credential, its signature in leaf extension 0xF0A6.
        ("hybrid_valid_at_now".into(), hybrid_key_package(0x6b21, b"heidi", now - day, now + 90 * day)),
    ]
}

/// A suite-3 KeyPackage with a hybrid credential (Ed25519 and ML-DSA-65
/// keys drawn from `TestRng::new(seed)`).
fn hybrid_key_package(seed: u64, identity: &[u8], not_before: u64, not_after: u64) -> Vec<u8> {
    use securemesh_core::crypto::{Ed25519, MlDsa65, Signature};
    use securemesh_mls_lite::key_package::{
        KeyPackageParams, create_hybrid_key_package_in, hybrid_key_package_len_in,
    };
    let mut rng = securemesh_core::testing::TestRng::new(seed);
    let (identity_key, ml_dsa_seed) = (Ed25519::generate(&mut rng), MlDsa65::generate(&mut rng));
    let params = KeyPackageParams { identity, not_before, not_after, last_resort: false };
    let suite = Suite::Mls128X25519;
    let mut out = vec![0u8; hybrid_key_package_len_in(suite, identity.len())];
    let mut scratch = vec![0u8; 2 * out.len()];
    let (n, _) = create_hybrid_key_package_in(
        suite,
        &params,
        &identity_key,
        &ml_dsa_seed,
        &mut rng,
        &mut out,
        &mut scratch,
    )
    .expect("hybrid KeyPackage");
    out.truncate(n);
    out
}

/// The 0x004D group of the X-Wing seeds (the capacities of mls-lite's
/// `xwing_group` tests: an X-Wing leaf is about 1.4 KB).
pub type XWingGroup = securemesh_mls_lite::Group<8, 1536, 32, 64>;

/// A 0x004D (X-Wing) group of one member (alice, `create_into`) adding a
/// second (bob) with a PublicMessage commit with an UpdatePath, and what
/// that gives (deterministic: `TestRng`).
pub struct XWingAdd {
    /// The joiner (bob): KeyPackage and private keys.
    pub joiner: Candidate,
    /// The commit (`MLSMessage`).
    pub commit: Vec<u8>,
    /// The Welcome (`MLSMessage`, ratchet tree in the GroupInfo).
    pub welcome: Vec<u8>,
    /// The GroupInfo of the new epoch (`MLSMessage`, with
    /// `external_pub`, no tree).
    pub group_info: Vec<u8>,
}

/// Build the [`XWingAdd`] (a `Group<8, 1536, 32, 64>`, the capacities of
/// mls-lite's `xwing_group` tests: an X-Wing leaf is about 1.4 KB).
pub fn xwing_add() -> XWingAdd {
    xwing_add_and_creator().0
}

/// [`xwing_add`], and the creator (alice) at the new epoch (1).
pub fn xwing_add_and_creator() -> (XWingAdd, Box<XWingGroup>) {
    use securemesh_core::testing::TestRng;
    use securemesh_mls_lite::messages::WireFormat;
    use securemesh_mls_lite::pending_commit::CommitOptions;
    let alice = candidate_in(Suite::Mls256XWing, 0x7a10, b"alice", 0, u64::MAX, false);
    let joiner = candidate_in(Suite::Mls256XWing, 0x7a20, b"bob", 0, u64::MAX, false);
    let mut rng = TestRng::new(0x7a00);
    let mut a: Box<XWingGroup> = Box::default();
    a.create_into(b"fuzz-xwing", &alice.keys().expect("keys"), &[], &mut rng).expect("create");
    let kp_len = joiner.key_package_bytes().len();
    let options = CommitOptions {
        wire_format: WireFormat::PublicMessage,
        update_path: true,
        ..CommitOptions::default()
    };
    let mut pending: Box<XWingGroup> = Box::default();
    let mut commit = vec![0u8; kp_len + 8192];
    let mut welcome = vec![0u8; XWingGroup::welcome_len(1, true)];
    let mut scratch = vec![0u8; XWingGroup::send_commit_scratch_len(kp_len)];
    let out = a
        .commit(
            &[joiner.key_package().expect("kp")],
            &[],
            &options,
            &mut rng,
            &mut pending,
            &mut commit,
            &mut welcome,
            &mut scratch,
        )
        .expect("commit adding bob");
    a.merge_pending_commit(&mut pending).expect("merge");
    let mut group_info = vec![0u8; XWingGroup::MAX_GROUP_INFO_LEN];
    let mut scratch = vec![0u8; XWingGroup::MAX_GROUP_INFO_LEN];
    let n = a.export_group_info(false, &mut group_info, &mut scratch).expect("group info");
    commit.truncate(out.commit_len);
    welcome.truncate(out.welcome_len);
    group_info.truncate(n);
    (XWingAdd { joiner, commit, welcome, group_info }, a)
}

/// The 0x004D (X-Wing) passive client of `mls_xwing_commit`, in the shape
/// of a vector's (a [`Member`]): bob of [`xwing_add`], joined at epoch 1
/// from its Welcome; then alice's PublicMessage commits: epoch 1 an empty
/// commit with an UpdatePath, epoch 2 one adding carol (0x004D) with an
/// UpdatePath (no proposals: both are commits by value). Deterministic.
pub fn xwing_member() -> Member {
    use securemesh_core::testing::TestRng;
    use securemesh_mls_lite::messages::WireFormat;
    use securemesh_mls_lite::pending_commit::CommitOptions;
    let (XWingAdd { joiner, welcome, .. }, mut a) = xwing_add_and_creator();
    let carol = candidate_in(Suite::Mls256XWing, 0x7a30, b"carol", 0, u64::MAX, false);
    let initial_epoch_authenticator = a.epoch_authenticator().expose().to_vec();
    let mut rng = TestRng::new(0x7a40);
    let options = CommitOptions {
        wire_format: WireFormat::PublicMessage,
        update_path: true,
        ..CommitOptions::default()
    };
    let mut epochs = Vec::new();
    for adds in [&[][..], &[carol.key_package().expect("kp")][..]] {
        let kp_len = carol.key_package_bytes().len();
        let mut pending: Box<XWingGroup> = Box::default();
        let mut commit = vec![0u8; kp_len + 8192];
        let mut welcome = vec![0u8; XWingGroup::welcome_len(1, true)];
        let mut scratch = vec![0u8; XWingGroup::send_commit_scratch_len(kp_len)];
        let out = a
            .commit(adds, &[], &options, &mut rng, &mut pending, &mut commit, &mut welcome, &mut scratch)
            .expect("alice's commit");
        a.merge_pending_commit(&mut pending).expect("merge");
        commit.truncate(out.commit_len);
        epochs.push(Epoch {
            proposals: Vec::new(),
            commit,
            epoch_authenticator: a.epoch_authenticator().expose().to_vec(),
        });
    }
    Member {
        key_package: [&[0, 1, 0, 5][..], joiner.key_package_bytes()].concat(),
        init_priv: joiner.secrets.init_priv.duplicate(),
        encryption_priv: joiner.secrets.encryption_priv.duplicate(),
        signature_priv: joiner.signature_priv.duplicate(),
        welcome,
        ratchet_tree: None,
        psks: Vec::new(),
        initial_epoch_authenticator,
        epochs,
    }
}

/// The state of the `mls_commit` and `mls_xwing_commit` targets (in a
/// `static`: never on the stack); the default capacities are those of
/// [`Group`] (`DefaultGroup`).
pub struct CommitState<const L: usize = 64, const B: usize = 384, const G: usize = 64, const E: usize = 256> {
    /// The joined group.
    pub group: securemesh_mls_lite::Group<L, B, G, E>,
    /// The spare slot of `process_commit`.
    pub spare: securemesh_mls_lite::Group<L, B, G, E>,
    /// The proposal cache.
    pub cache: ProposalCache,
    /// The group is not the freshly joined one.
    pub dirty: bool,
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> CommitState<L, B, G, E> {
    /// Empty slots, to be joined.
    pub const fn new() -> Self {
        CommitState {
            group: securemesh_mls_lite::Group::new(),
            spare: securemesh_mls_lite::Group::new(),
            cache: ProposalCache::new(),
            dirty: true,
        }
    }
}

/// Genuine 0x004D messages (`MLSMessage`s) of [`xwing_add`] for the
/// `mls_message_decode` seeds: bob's KeyPackage, the commit that adds it,
/// its Welcome and the new epoch's GroupInfo.
pub fn xwing_messages() -> Vec<(String, Vec<u8>)> {
    let x = xwing_add();
    vec![
        ("xwing_key_package".into(), [&[0, 1, 0, 5][..], x.joiner.key_package_bytes()].concat()),
        ("xwing_commit_public_path".into(), x.commit),
        ("xwing_welcome".into(), x.welcome),
        ("xwing_group_info".into(), x.group_info),
    ]
}

// ---------------------------------------------------------------------------
// `mls_proposal`: a three-member group, proposals sent and received.

/// The group type of `mls_proposal` (8 leaves, 384 leaf bytes, 32-byte
/// group id, 64 bytes of GroupContext extensions: the capacities of the
/// crate's proposal tests).
pub type ProposalGroup = securemesh_mls_lite::Group<8, 384, 32, 64>;

/// The group id of the `mls_proposal` group.
pub const PROPOSAL_GROUP_ID: &[u8] = b"fuzz-proposals";

/// The external PSK every member of the `mls_proposal` group knows.
pub const PROPOSAL_PSK_ID: &[u8] = b"fuzz psk";

/// Its value.
pub const PROPOSAL_PSK: [u8; 32] = [0x5a; 32];

/// The external PSKs of the `mls_proposal` members (and joiners).
pub static PROPOSAL_EXTERNAL_PSKS: [ExternalPsk<'static>; 1] =
    [ExternalPsk { id: PROPOSAL_PSK_ID, psk: &PROPOSAL_PSK }];

/// The frame kinds of `mls_proposal` (low 3 bits of a frame's first byte;
/// bit 7 picks the framing of B's own proposals: PrivateMessage if set).
pub mod proposal_frame {
    /// The rest is an `MLSMessage` for B's `process_proposal` (also 6, 7).
    pub const RAW: u8 = 0;
    /// B proposes Remove of the leaf in the rest (big-endian, up to 4 bytes).
    pub const REMOVE: u8 = 1;
    /// B proposes GroupContextExtensions with the rest as `extensions<V>` body.
    pub const GCE: u8 = 2;
    /// B proposes an external PSK with the rest as `psk_id`.
    pub const PSK_EXTERNAL: u8 = 3;
    /// B proposes a resumption PSK: `usage u8 | epoch u8 | psk_group_id`.
    pub const PSK_RESUMPTION: u8 = 4;
    /// B proposes Add of candidate `rest[0] % 4`
    /// ([`ProposalFixture::candidates`](super::ProposalFixture)).
    pub const ADD: u8 = 5;
    /// Bit 7: B's proposal is a PrivateMessage.
    pub const PRIVATE: u8 = 0x80;
}

/// The `mls_proposal` setup: leaves 0 (A), 1 (B) and 2 (C) of one group at
/// epoch 1 (A created it with `create_into` and added B and C with
/// `commit`; they joined from the Welcome), and would-be members.
pub struct ProposalFixture {
    /// `encode_state` of A, B and C at epoch 1.
    pub states: [Vec<u8>; 3],
    /// A's, B's and C's KeyPackages and keys.
    pub members: [Candidate; 3],
    /// Two would-be members (dave, erin) for B's Add proposals
    /// ([`add_candidate`](Self::add_candidate)).
    pub candidates: [Candidate; 2],
    /// The resumption PSK of epoch 0 (kept by A before its commit).
    pub epoch0_resumption: Secret32,
}

impl ProposalFixture {
    /// Member `i` (0: A, 1: B, 2: C) as of the fixture, into `slot`.
    pub fn restore(&self, i: usize, slot: &mut ProposalGroup) {
        slot.decode_state_into(&self.states[i]).expect("fixture state decodes");
    }

    /// The KeyPackage a `proposal_frame::ADD` frame with selector `k` adds.
    pub fn add_candidate(&self, k: u8) -> &Candidate {
        match k % 4 {
            0 => &self.candidates[0],
            1 => &self.candidates[1],
            2 => &self.members[2],
            _ => &self.members[0],
        }
    }

    /// The resumption PSKs every member keeps (epoch 0 of the group).
    pub fn resumption_psks(&self) -> [ResumptionPsk<'_>; 1] {
        [ResumptionPsk { group_id: PROPOSAL_GROUP_ID, epoch: 0, psk: &self.epoch0_resumption }]
    }
}

/// Build the [`ProposalFixture`] (deterministic: `TestRng` seeds).
pub fn proposal_fixture() -> ProposalFixture {
    use securemesh_core::testing::TestRng;
    use securemesh_mls_lite::pending_commit::CommitOptions;
    let members = [
        candidate(0x9a10, b"alice", 0, u64::MAX, false),
        candidate(0x9a20, b"bob", 0, u64::MAX, false),
        candidate(0x9a30, b"carol", 0, u64::MAX, false),
    ];
    let candidates =
        [candidate(0x9a40, b"dave", 0, u64::MAX, false), candidate(0x9a50, b"erin", 0, u64::MAX, true)];
    let mut rng = TestRng::new(0x9a00);
    let mut a: Box<ProposalGroup> = Box::default();
    a.create_into(PROPOSAL_GROUP_ID, &members[0].keys().expect("keys"), &[], &mut rng).expect("create");
    let epoch0_resumption = a.secrets().resumption_psk.duplicate();
    let adds = [members[1].key_package().expect("kp"), members[2].key_package().expect("kp")];
    let mut pending: Box<ProposalGroup> = Box::default();
    let mut commit = vec![0u8; 8192];
    let mut welcome = vec![0u8; ProposalGroup::welcome_len(2, true)];
    let mut scratch = vec![0u8; ProposalGroup::send_commit_scratch_len(1024)];
    let out = a
        .commit(
            &adds,
            &[],
            &CommitOptions::default(),
            &mut rng,
            &mut pending,
            &mut commit,
            &mut welcome,
            &mut scratch,
        )
        .expect("commit adding B and C");
    a.merge_pending_commit(&mut pending).expect("merge");
    let welcome = welcome_of(&welcome[..out.welcome_len]).expect("welcome");
    let mut states = [crate::noise::encode_state(&*a), Vec::new(), Vec::new()];
    for i in 1..3 {
        let mut g: Box<ProposalGroup> = Box::default();
        let mut scratch = vec![0u8; ProposalGroup::scratch_len(out.welcome_len)];
        g.join_into(&welcome, &members[i].keys().expect("keys"), None, &[], &mut scratch).expect("join");
        assert_eq!(g.epoch_authenticator().expose(), a.epoch_authenticator().expose());
        states[i] = crate::noise::encode_state(&*g);
    }
    ProposalFixture { states, members, candidates, epoch0_resumption }
}

/// Seeds of `mls_proposal`: `flags u8 | frames` (see the target), with
/// genuine proposals of every kind in both framings sent by C and A (raw
/// frames), B's own proposals (structured frames), and mixes.
pub fn proposal_seeds() -> Vec<(String, Vec<u8>)> {
    use proposal_frame::*;
    use securemesh_core::testing::TestRng;
    use securemesh_mls_lite::messages::{Psk, ResumptionPskUsage, WireFormat};
    use securemesh_mls_lite::proposal::OutgoingProposal;

    let fx = proposal_fixture();
    let resumption = fx.resumption_psks();
    let store = PskStore { external: &PROPOSAL_EXTERNAL_PSKS, resumption: &resumption };
    let dave = fx.candidates[0].key_package().expect("kp");
    let ext: &[u8] = &[0xff, 0x00, 0x02, 0xbe, 0xef]; // type 0xff00, 2 bytes
    let proposals: [(&str, OutgoingProposal<'_>); 6] = [
        ("remove_a", OutgoingProposal::Remove(0)),
        ("remove_b", OutgoingProposal::Remove(1)),
        ("gce", OutgoingProposal::GroupContextExtensions(ext)),
        ("psk_external", OutgoingProposal::PreSharedKey(Psk::External { psk_id: PROPOSAL_PSK_ID })),
        (
            "psk_resumption",
            OutgoingProposal::PreSharedKey(Psk::Resumption {
                usage: ResumptionPskUsage::Application,
                psk_group_id: PROPOSAL_GROUP_ID,
                psk_epoch: 1,
            }),
        ),
        ("add_dave", OutgoingProposal::Add(dave)),
    ];
    // `sender` proposes each of `list` in turn (one state, so its
    // PrivateMessages use successive generations).
    let send = |sender: usize, list: &[(OutgoingProposal<'_>, WireFormat)], seed: u64| -> Vec<Vec<u8>> {
        let mut g: Box<ProposalGroup> = Box::default();
        fx.restore(sender, &mut g);
        let mut cache: Box<ProposalCache> = Box::default();
        let mut rng = TestRng::new(seed);
        list.iter()
            .map(|(p, wf)| {
                let mut out = vec![0u8; 2048];
                let mut scratch = vec![0u8; ProposalGroup::propose_scratch_len(1024)];
                let sent =
                    g.propose(p, *wf, &store, &mut cache, &mut rng, &mut out, &mut scratch).expect("propose");
                out.truncate(sent.len);
                out
            })
            .collect()
    };
    let raw = |m: &[u8]| [&[RAW][..], m].concat();
    let input = |flags: u8, frames: &[Vec<u8>]| {
        [vec![flags], crate::noise::join_frames(frames.iter().map(|f| &f[..]))].concat()
    };
    let wf_name = |wf: WireFormat| if wf == WireFormat::PublicMessage { "public" } else { "private" };

    let mut seeds = Vec::new();
    // C's proposals of every kind, both framings; the commit in the other
    // framing (flags bit 0) every other time.
    for (i, (name, p)) in proposals.iter().enumerate() {
        for (j, wf) in [WireFormat::PublicMessage, WireFormat::PrivateMessage].into_iter().enumerate() {
            let m = send(2, &[(*p, wf)], 0x5e00 + 2 * (2 * i + j) as u64);
            let flags = ((i + j) % 2) as u8;
            seeds.push((format!("c_{name}_{}", wf_name(wf)), input(flags, &[raw(&m[0])])));
        }
    }
    // A's own proposals (A caches them when processing), one per framing.
    for (name, p, wf) in [
        ("remove_c", OutgoingProposal::Remove(2), WireFormat::PublicMessage),
        ("gce", proposals[2].1, WireFormat::PrivateMessage),
    ] {
        let m = send(0, &[(p, wf)], 0x5e20);
        seeds.push((format!("a_{name}_{}", wf_name(wf)), input(1, &[raw(&m[0])])));
    }
    // All of C's proposals in one commit but the removes (PrivateMessage).
    let all: Vec<_> = proposals[2..].iter().map(|(_, p)| (*p, WireFormat::PrivateMessage)).collect();
    let ms = send(2, &all, 0x5e30);
    seeds.push(("c_all_private".into(), input(0, &ms.iter().map(|m| raw(m)).collect::<Vec<_>>())));
    // Conflicts: Remove of B twice (the second is left out), two
    // GroupContextExtensions (the first wins), a replayed PrivateMessage.
    let list = [
        (OutgoingProposal::Remove(1), WireFormat::PrivateMessage),
        (OutgoingProposal::Remove(1), WireFormat::PublicMessage),
        (proposals[2].1, WireFormat::PublicMessage),
        (OutgoingProposal::GroupContextExtensions(&[]), WireFormat::PrivateMessage),
    ];
    let ms = send(2, &list, 0x5e31);
    let frames = vec![raw(&ms[0]), raw(&ms[1]), raw(&ms[0]), raw(&ms[2]), raw(&ms[3])];
    seeds.push(("c_conflicts".into(), input(1, &frames)));

    // B's own proposals (structured frames), both framings.
    let resumption_epoch0 = [&[1, 0][..], PROPOSAL_GROUP_ID].concat();
    let structured: [(&str, u8, &[u8]); 9] = [
        ("remove_c", REMOVE, &[2]),
        ("remove_self", REMOVE, &[1]),
        ("remove_blank", REMOVE, &[0, 0, 0, 5]),
        ("gce", GCE, ext),
        ("psk_external", PSK_EXTERNAL, PROPOSAL_PSK_ID),
        ("psk_unknown", PSK_EXTERNAL, b"unknown"),
        ("psk_resumption_epoch0", PSK_RESUMPTION, &resumption_epoch0),
        ("add_dave", ADD, &[0]),
        ("add_erin", ADD, &[1]),
    ];
    for (i, (name, kind, rest)) in structured.iter().enumerate() {
        for private in [false, true] {
            let k = if private { kind | PRIVATE } else { *kind };
            let frame = [&[k][..], rest].concat();
            let flags = (i % 2) as u8 | if private { 0 } else { 2 };
            let fname = if private { "private" } else { "public" };
            seeds.push((format!("b_{name}_{fname}"), input(flags, &[frame])));
        }
    }
    // A mix: C removes A (left out: A commits), B proposes an external PSK
    // and new extensions, C's Add.
    let c = send(
        2,
        &[
            (OutgoingProposal::Remove(0), WireFormat::PrivateMessage),
            (proposals[5].1, WireFormat::PublicMessage),
        ],
        0x5e32,
    );
    let frames = vec![
        raw(&c[0]),
        [&[PSK_EXTERNAL | PRIVATE][..], PROPOSAL_PSK_ID].concat(),
        [&[GCE][..], &[0xff, 0x01, 0x00][..]].concat(),
        raw(&c[1]),
    ];
    seeds.push(("mix".into(), input(1, &frames)));
    seeds
}

/// Join `s.group` as `member` (must give its initial epoch authenticator)
/// and run its whole history through it (every genuine epoch must be
/// accepted with the vector's epoch authenticator); returns the group as
/// joined. Leaves `s` dirty.
pub fn commit_fixture<const L: usize, const B: usize, const G: usize, const E: usize>(
    member: &Member,
    s: &mut CommitState<L, B, G, E>,
) -> Observed {
    let CommitState { group, spare, cache, dirty } = s;
    group.clear();
    member.join(group, &member.welcome).expect("the genuine welcome joins");
    assert_eq!(group.epoch_authenticator().expose()[..], member.initial_epoch_authenticator[..]);
    let joined = observe(group);
    let mut history = History::default();
    for ep in &member.epochs {
        let event = genuine_epoch(member, ep, group, cache, spare, &mut history);
        assert_eq!(event, CommitEvent::NewEpoch { epoch: group.epoch() });
        assert_eq!(group.epoch_authenticator().expose()[..], ep.epoch_authenticator[..]);
    }
    *dirty = true;
    joined
}

/// One run of `mls_commit` / `mls_xwing_commit` (see `mls_commit`'s
/// documentation): `data`'s frames into `process_proposal` and
/// `process_commit` of `m`'s freshly joined group (`joined`), then the
/// genuine messages of the epoch reached.
pub fn commit_run<const L: usize, const B: usize, const G: usize, const E: usize>(
    m: &Member,
    joined: &Observed,
    s: &mut CommitState<L, B, G, E>,
    data: &[u8],
) {
    let CommitState { group, spare, cache, dirty } = s;
    if *dirty {
        group.clear();
        m.join(group, &m.welcome).expect("the genuine welcome joins");
        *dirty = false;
    }
    assert!(observe(group) == *joined, "the run does not start from the joined group");
    assert!(!spare.is_joined());
    cache.clear();

    let psks = m.external_psks();
    let mut history = History::default();
    // Current epoch index into `m.epochs`, and which of its proposals are cached.
    let mut k = 0usize;
    let mut cached = vec![false; m.epochs[0].proposals.len()];

    for frame in crate::noise::split_frames(data) {
        let mut scratch =
            vec![0u8; securemesh_mls_lite::Group::<L, B, G, E>::commit_scratch_len(frame.len())];
        let genuine_proposal = m.epochs.get(k).and_then(|ep| ep.proposals.iter().position(|p| p == frame));
        let cache_len = cache.len();
        match group.process_proposal(frame, cache, &mut scratch) {
            Ok(_) => {
                let j = genuine_proposal.expect("a forged proposal was accepted");
                cached[j] = true;
            }
            Err(e) => {
                assert!(genuine_proposal.is_none(), "a genuine proposal was refused: {e:?}");
                assert_eq!(cache.len(), cache_len, "a refused proposal changed the cache");
            }
        }

        history.push(group);
        let resumption = history.resumption();
        let store = PskStore { external: &psks, resumption: &resumption };
        let before = observe(group);
        let cache_len = cache.len();
        let genuine_commit = m.epochs.get(k).is_some_and(|ep| ep.commit == frame);
        match group.process_commit(frame, cache, &store, spare, &mut scratch) {
            Ok(event) => {
                assert!(genuine_commit, "a forged commit was accepted: {event:?}");
                assert!(cached.iter().all(|&c| c), "a commit was accepted without its proposals");
                assert_eq!(event, CommitEvent::NewEpoch { epoch: before.epoch + 1 });
                assert_eq!(group.epoch(), before.epoch + 1);
                assert_eq!(group.epoch_authenticator().expose()[..], m.epochs[k].epoch_authenticator[..]);
                assert!(cache.is_empty());
                *dirty = true;
                k += 1;
                cached = vec![false; m.epochs.get(k).map_or(0, |ep| ep.proposals.len())];
            }
            Err(e) => {
                assert!(
                    !(genuine_commit && cached.iter().all(|&c| c)),
                    "the genuine commit was refused with its proposals cached: {e:?}"
                );
                assert!(observe(group) == before, "a refused commit changed the group ({e:?})");
                assert_eq!(cache.len(), cache_len, "a refused commit changed the cache");
            }
        }
        assert!(!spare.is_joined(), "the spare slot was left joined");
    }

    // The genuine messages of the current epoch still go through after the
    // garbage (only those: every genuine commit costs signature checks and
    // path decryption, and the next run starts from a fresh join anyway).
    if let Some(ep) = m.epochs.get(k) {
        let event = genuine_epoch(m, ep, group, cache, spare, &mut history);
        assert_eq!(event, CommitEvent::NewEpoch { epoch: group.epoch() });
        assert_eq!(group.epoch_authenticator().expose()[..], ep.epoch_authenticator[..]);
        assert!(!spare.is_joined());
        *dirty = true;
    }
}

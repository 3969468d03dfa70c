//! Interop harness between securemesh-mls-lite, OpenMLS 0.9 and mls-rs
//! 0.57 (ciphersuite 0x0003): one member type per implementation behind
//! [`Member`], a group of mixed members ([`Mesh`]) that delivers every
//! commit and proposal to everyone, and [`assert_agree`], which every step
//! ends with. [`Member::save`] and [`Member::restore`] roll a member back,
//! for the benchmark (`benches/mls.rs`) to process one commit many times.
//!
//! The tests are in `tests/`; run them with
//! `cargo test --manifest-path interop/mls/Cargo.toml --locked`.

use openmls::prelude::{tls_codec::*, *};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use securemesh_core::envelope::Persist;
use securemesh_core::testing::TestRng;
use securemesh_mls_lite::key_package::KeyPackageParams;
use securemesh_mls_lite::messages::{KeyPackage as OurKeyPackage, WireFormat};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::{CommitOptions, Proposals};
use securemesh_mls_lite::proposal::OutgoingProposal;
use securemesh_mls_lite::testing::Candidate;
use securemesh_mls_lite::{CommitEvent, Group, ProposalCache, PskStore};

use mls_rs::client_builder::{
    BaseConfig, PaddingMode, WithCryptoProvider, WithIdentityProvider, WithMlsRules,
};
use mls_rs::group::{CommitEffect, ExportedTree, LeafIndex, ReceivedMessage, Roster};
use mls_rs::identity::SigningIdentity;
use mls_rs::identity::basic::{BasicCredential as RsBasicCredential, BasicIdentityProvider};
use mls_rs::mls_rules::{
    CommitDirection, CommitOptions as RsCommitOptions, CommitSource, EncryptionOptions, ProposalBundle,
};
use mls_rs::{
    CipherSuiteProvider, Client, CryptoProvider, ExtensionList, Group as RsGroup, MlsMessage as RsMessage,
};
use mls_rs_crypto_rustcrypto::RustCryptoProvider;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// [`CIPHERSUITE`] as mls-rs names it.
pub const RS_CIPHERSUITE: mls_rs::CipherSuite = mls_rs::CipherSuite::CURVE25519_CHACHA;

/// Our member's slot: 256 members (the benchmark's largest group, 128,
/// plus the member its add commit adds needs a tree 256 leaves wide) of at
/// most 512 bytes (OpenMLS's and mls-rs's leaves carry more capabilities
/// than ours), 64-byte group ids, 256 bytes of GroupContext extensions.
pub type OurGroup = Group<256, 512, 64, 256>;

/// The one ciphersuite both sides share.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

/// The exporter label and context [`assert_agree`] compares.
pub const EXPORTER_LABEL: &str = "securemesh interop";
/// See [`EXPORTER_LABEL`].
pub const EXPORTER_CONTEXT: &[u8] = b"epoch check";

/// Why a step failed, by side: our error variant as it is, OpenMLS's and
/// mls-rs's errors as their `Debug` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// securemesh-mls-lite returned this error.
    Ours(securemesh_mls_lite::Error),
    /// OpenMLS returned this error (`Debug`).
    OpenMls(String),
    /// mls-rs returned this error (`Debug`).
    MlsRs(String),
    /// The step went through but did something else than expected.
    Unexpected(String),
}

impl From<securemesh_mls_lite::Error> for Failure {
    fn from(e: securemesh_mls_lite::Error) -> Self {
        Failure::Ours(e)
    }
}

fn openmls<E: std::fmt::Debug>(e: E) -> Failure {
    Failure::OpenMls(format!("{e:?}"))
}

fn mls_rs<E: std::fmt::Debug>(e: E) -> Failure {
    Failure::MlsRs(format!("{e:?}"))
}

/// How a commit is sent. OpenMLS sets the framing through its outgoing
/// wire format policy, mls-rs through its [`MlsRules`](mls_rs::MlsRules)
/// ([`SharedRules`]), ours through [`CommitOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opts {
    /// PublicMessage framing (PrivateMessage otherwise) for the commit
    /// (and, on OpenMLS's side, proposals).
    pub public: bool,
    /// The Welcome's GroupInfo carries the `ratchet_tree` extension;
    /// otherwise the joiners get the tree out of band from the committer.
    pub tree_in_welcome: bool,
    /// Force an UpdatePath even where none is required.
    pub path: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { public: false, tree_in_welcome: true, path: false }
    }
}

impl Opts {
    /// PublicMessage framing.
    pub fn public() -> Self {
        Opts { public: true, ..Opts::default() }
    }
}

/// What processing a commit did to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// The member moved to this epoch.
    NewEpoch(u64),
    /// The commit removed the member.
    Removed,
}

/// A commit and its Welcome, as bytes on the wire (`MLSMessage`s).
#[derive(Debug, Clone)]
pub struct Sent {
    /// The commit.
    pub commit: Vec<u8>,
    /// The Welcome, when the commit adds someone.
    pub welcome: Option<Vec<u8>>,
}

// ---------------------------------------------------------------------------
// Our member.

/// A [`TestRng`] seed from a name (FNV-1a), its lowest bit clear:
/// `TestRng::new(s)` and `TestRng::new(s ^ 1)` give the same stream (the
/// state is or-ed with 1), so seeds must differ above bit 0.
fn seed(name: &str) -> u64 {
    let hash = name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    hash << 1
}

/// Our [`CommitOptions`] for these [`Opts`].
fn options(opts: &Opts) -> CommitOptions<'static> {
    CommitOptions {
        wire_format: if opts.public { WireFormat::PublicMessage } else { WireFormat::PrivateMessage },
        ratchet_tree_in_welcome: opts.tree_in_welcome,
        update_path: opts.path,
        ..CommitOptions::default()
    }
}

/// A member on our side: a KeyPackage of its own ([`Candidate`]), the
/// group slot, the pending and spare slots, a proposal cache, an RNG and
/// the buffers it lends the calls (kept across calls, as a device would:
/// the benchmark measures the calls, not the allocator).
pub struct Ours {
    name: String,
    candidate: Candidate,
    group: Box<OurGroup>,
    pending: Box<OurGroup>,
    /// [`Group::process_commit`] stages the next epoch here.
    spare: Box<OurGroup>,
    cache: Box<ProposalCache>,
    rng: TestRng,
    out: Vec<u8>,
    welcome: Vec<u8>,
    scratch: Vec<u8>,
}

/// `v`'s first `len` bytes, growing it (zeroed) if it is shorter.
fn lend(v: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if v.len() < len {
        v.resize(len, 0);
    }
    &mut v[..len]
}

impl Ours {
    /// A would-be member named `name` (its credential identity), keys
    /// from a [`TestRng`] seeded from the name.
    pub fn new(name: &str) -> Ours {
        let mut rng = TestRng::new(seed(name));
        let params = KeyPackageParams {
            identity: name.as_bytes(),
            not_before: 0,
            not_after: u64::MAX,
            last_resort: false,
        };
        let candidate = Candidate::new(&params, &mut rng).expect("our KeyPackage");
        Ours {
            name: name.to_string(),
            candidate,
            group: Box::default(),
            pending: Box::default(),
            spare: Box::default(),
            cache: Box::default(),
            rng,
            out: Vec::new(),
            welcome: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The group state (for checks beyond the [`Member`] interface).
    pub fn group(&self) -> &OurGroup {
        &self.group
    }

    /// Proposals in our cache (processed, waiting for a commit).
    pub fn cached_proposals(&self) -> usize {
        self.cache.len()
    }

    fn create(&mut self, group_id: &[u8]) -> Result<(), Failure> {
        let keys = self.candidate.keys()?;
        self.group.create_into(group_id, &keys, &[], &mut self.rng)?;
        Ok(())
    }

    fn join(&mut self, welcome: &[u8], tree: Option<&[u8]>) -> Result<(), Failure> {
        let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(welcome)?.body else {
            return Err(Failure::Unexpected("not a Welcome".into()));
        };
        let scratch =
            lend(&mut self.scratch, OurGroup::scratch_len(welcome.len() + tree.map_or(0, <[u8]>::len)));
        self.group.join_into(&w, &self.candidate.keys()?, tree, &[], scratch)?;
        Ok(())
    }

    /// Commit the by-value adds and removes and every valid proposal of
    /// our cache by reference (`Group::commit_with`).
    fn commit(&mut self, adds: &[Vec<u8>], removes: &[u32], opts: &Opts) -> Result<Sent, Failure> {
        let kps = adds.iter().map(|kp| OurKeyPackage::from_bytes(kp)).collect::<Result<Vec<_>, _>>()?;
        let by_value: usize = adds.iter().map(Vec::len).sum();
        let cached = self.cache.encoded_len(self.group.epoch());
        let commit = lend(&mut self.out, 64 * 1024);
        let welcome = lend(
            &mut self.welcome,
            OurGroup::welcome_len(adds.len() + self.cache.len(), opts.tree_in_welcome),
        );
        let scratch = lend(&mut self.scratch, OurGroup::send_commit_scratch_len(by_value + cached));
        let out = self.group.commit_with(
            &Proposals { adds: &kps, removes, ..Proposals::default() },
            &self.cache,
            &PskStore::default(),
            &options(opts),
            &mut self.rng,
            &mut self.pending,
            commit,
            welcome,
            scratch,
        )?;
        Ok(Sent {
            commit: commit[..out.commit_len].to_vec(),
            welcome: (out.welcome_len > 0).then(|| welcome[..out.welcome_len].to_vec()),
        })
    }

    /// Send `proposal` (cached by us too, for a commit of anyone).
    pub fn propose(&mut self, proposal: &OutgoingProposal<'_>, opts: &Opts) -> Result<Vec<u8>, Failure> {
        let out = lend(&mut self.out, 4096);
        let scratch = lend(&mut self.scratch, OurGroup::propose_scratch_len(1024));
        let sent = self.group.propose(
            proposal,
            options(opts).wire_format,
            &PskStore::default(),
            &mut self.cache,
            &mut self.rng,
            out,
            scratch,
        )?;
        Ok(out[..sent.len].to_vec())
    }

    fn process_commit(&mut self, commit: &[u8]) -> Result<Processed, Failure> {
        let scratch = lend(&mut self.scratch, OurGroup::commit_scratch_len(commit.len()));
        match self.group.process_commit(
            commit,
            &mut self.cache,
            &PskStore::default(),
            &mut self.spare,
            scratch,
        )? {
            CommitEvent::NewEpoch { epoch } => Ok(Processed::NewEpoch(epoch)),
            CommitEvent::Removed => Ok(Processed::Removed),
        }
    }

    fn process_proposal(&mut self, proposal: &[u8]) -> Result<(), Failure> {
        let scratch = lend(&mut self.scratch, OurGroup::commit_scratch_len(proposal.len()));
        self.group.process_proposal(proposal, &mut self.cache, scratch)?;
        Ok(())
    }

    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let out = lend(&mut self.out, data.len() + 512);
        let scratch = lend(&mut self.scratch, OurGroup::seal_scratch_len(data.len(), 0));
        let n = self.group.seal_application(data, &[], 0, &mut self.rng, out, scratch)?;
        Ok(out[..n].to_vec())
    }

    fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, Failure> {
        let scratch = lend(&mut self.scratch, OurGroup::application_scratch_len(message.len()));
        Ok(self.group.open_application(message, scratch)?.data.to_vec())
    }

    fn ratchet_tree(&self) -> Vec<u8> {
        let mut tree = vec![0u8; OurGroup::MAX_TREE_LEN];
        let n = self.group.export_ratchet_tree(&mut tree).expect("our tree export");
        tree.truncate(n);
        tree
    }
}

// ---------------------------------------------------------------------------
// An OpenMLS member.

/// A member on OpenMLS's side: its own provider (crypto and in-memory
/// storage), signature key pair and credential, a KeyPackage, and the
/// group once created or joined.
pub struct OpenMls {
    name: String,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    key_package: KeyPackageBundle,
    group: Option<MlsGroup>,
}

/// Join configuration of every OpenMLS member: outgoing handshake
/// messages as PrivateMessage or PublicMessage, incoming both.
pub fn join_config(public: bool, tree_in_welcome: bool) -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(if public {
            MIXED_PLAINTEXT_WIRE_FORMAT_POLICY
        } else {
            MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY
        })
        .use_ratchet_tree_extension(tree_in_welcome)
        .build()
}

impl OpenMls {
    /// A would-be member named `name` (its basic credential identity).
    pub fn new(name: &str) -> OpenMls {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("OpenMLS signature key");
        signer.store(provider.storage()).expect("OpenMLS stores its signature key");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let key_package = KeyPackage::builder()
            .build(CIPHERSUITE, &provider, &signer, credential.clone())
            .expect("OpenMLS KeyPackage");
        OpenMls { name: name.to_string(), provider, signer, credential, key_package, group: None }
    }

    /// The OpenMLS group (for checks beyond the [`Member`] interface).
    pub fn group(&self) -> &MlsGroup {
        self.group.as_ref().expect("OpenMLS member in a group")
    }

    /// The provider, the signer and the group, borrowed apart.
    fn parts(&mut self) -> Result<(&OpenMlsRustCrypto, &SignatureKeyPair, &mut MlsGroup), Failure> {
        let OpenMls { provider, signer, group, .. } = self;
        let group =
            group.as_mut().ok_or_else(|| Failure::Unexpected("OpenMLS member not in a group".into()))?;
        Ok((provider, signer, group))
    }

    fn create(&mut self, group_id: &[u8]) -> Result<(), Failure> {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(group_id),
            self.credential.clone(),
        )
        .map_err(openmls)?;
        self.group = Some(group);
        Ok(())
    }

    fn join(&mut self, welcome: &[u8], tree: Option<&[u8]>) -> Result<(), Failure> {
        let MlsMessageBodyIn::Welcome(welcome) =
            MlsMessageIn::tls_deserialize_exact(welcome).map_err(openmls)?.extract()
        else {
            return Err(Failure::Unexpected("not a Welcome".into()));
        };
        let tree = tree.map(RatchetTreeIn::tls_deserialize_exact).transpose().map_err(openmls)?;
        let staged =
            StagedWelcome::new_from_welcome(&self.provider, &join_config(false, true), welcome, tree)
                .map_err(openmls)?;
        self.group = Some(staged.into_group(&self.provider).map_err(openmls)?);
        Ok(())
    }

    /// Set the outgoing wire format (and ratchet tree extension) for what
    /// we send next.
    fn configure(&mut self, opts: &Opts) -> Result<(), Failure> {
        let config = join_config(opts.public, opts.tree_in_welcome);
        let (provider, _, group) = self.parts()?;
        group.set_configuration(provider.storage(), &config).map_err(openmls)
    }

    fn commit(&mut self, adds: &[Vec<u8>], removes: &[u32], opts: &Opts) -> Result<Sent, Failure> {
        self.configure(opts)?;
        if adds.is_empty() && removes.is_empty() && opts.path {
            return self.self_update();
        }
        let mut kps = Vec::new();
        for kp in adds {
            let kp = KeyPackageIn::tls_deserialize_exact(kp).map_err(openmls)?;
            kps.push(kp.validate(self.provider.crypto(), ProtocolVersion::Mls10).map_err(openmls)?);
        }
        let (provider, signer, group) = self.parts()?;
        let bundle = group
            .commit_builder()
            .propose_adds(kps)
            .propose_removals(removes.iter().map(|l| LeafNodeIndex::new(*l)))
            .force_self_update(opts.path)
            .load_psks(provider.storage())
            .map_err(openmls)?
            .use_ratchet_tree_extension(opts.tree_in_welcome)
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .map_err(openmls)?
            .stage_commit(provider)
            .map_err(openmls)?;
        let (commit, welcome, _group_info) = bundle.into_messages();
        Ok(Sent {
            commit: commit.tls_serialize_detached().map_err(openmls)?,
            welcome: welcome.map(|w| w.tls_serialize_detached()).transpose().map_err(openmls)?,
        })
    }

    /// An update commit through OpenMLS's `self_update` (an UpdatePath
    /// with a new leaf; the proposals in the store, if any, too).
    fn self_update(&mut self) -> Result<Sent, Failure> {
        let (provider, signer, group) = self.parts()?;
        let bundle = group.self_update(provider, signer, LeafNodeParameters::default()).map_err(openmls)?;
        let (commit, welcome, _group_info) = bundle.into_messages();
        Ok(Sent {
            commit: commit.tls_serialize_detached().map_err(openmls)?,
            welcome: welcome.map(|w| w.tls_serialize_detached()).transpose().map_err(openmls)?,
        })
    }

    /// Propose removing the member at `leaf` (a proposal by reference,
    /// kept in our proposal store); returns the proposal message.
    pub fn propose_remove(&mut self, leaf: u32, opts: &Opts) -> Result<Vec<u8>, Failure> {
        self.configure(opts)?;
        let (provider, signer, group) = self.parts()?;
        let (msg, _) =
            group.propose_remove_member(provider, signer, LeafNodeIndex::new(leaf)).map_err(openmls)?;
        msg.tls_serialize_detached().map_err(openmls)
    }

    /// Propose adding the member of this (bare) KeyPackage, by reference.
    pub fn propose_add(&mut self, key_package: &[u8], opts: &Opts) -> Result<Vec<u8>, Failure> {
        self.configure(opts)?;
        let kp = KeyPackageIn::tls_deserialize_exact(key_package).map_err(openmls)?;
        let kp = kp.validate(self.provider.crypto(), ProtocolVersion::Mls10).map_err(openmls)?;
        let (provider, signer, group) = self.parts()?;
        let (msg, _) = group.propose_add_member(provider, signer, &kp).map_err(openmls)?;
        msg.tls_serialize_detached().map_err(openmls)
    }

    /// Propose replacing the GroupContext extensions with none, by
    /// reference.
    pub fn propose_no_group_context_extensions(&mut self, opts: &Opts) -> Result<Vec<u8>, Failure> {
        self.configure(opts)?;
        let (provider, signer, group) = self.parts()?;
        let (msg, _) =
            group.propose_group_context_extensions(provider, Extensions::empty(), signer).map_err(openmls)?;
        msg.tls_serialize_detached().map_err(openmls)
    }

    /// Propose an Update of our own leaf (by reference); returns the
    /// proposal message.
    pub fn propose_update(&mut self, opts: &Opts) -> Result<Vec<u8>, Failure> {
        self.configure(opts)?;
        let (provider, signer, group) = self.parts()?;
        let (msg, _) =
            group.propose_self_update(provider, signer, LeafNodeParameters::default()).map_err(openmls)?;
        msg.tls_serialize_detached().map_err(openmls)
    }

    fn protocol_message(bytes: &[u8]) -> Result<ProtocolMessage, Failure> {
        MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(openmls)?
            .try_into_protocol_message()
            .map_err(openmls)
    }

    fn process(&mut self, message: &[u8]) -> Result<ProcessedMessageContent, Failure> {
        let message = Self::protocol_message(message)?;
        let (provider, _, group) = self.parts()?;
        Ok(group.process_message(provider, message).map_err(openmls)?.into_content())
    }

    fn process_commit(&mut self, commit: &[u8]) -> Result<Processed, Failure> {
        let ProcessedMessageContent::StagedCommitMessage(staged) = self.process(commit)? else {
            return Err(Failure::Unexpected("OpenMLS: not a commit".into()));
        };
        let removed = staged.self_removed();
        let (provider, _, group) = self.parts()?;
        group.merge_staged_commit(provider, *staged).map_err(openmls)?;
        if removed {
            if group.is_active() {
                return Err(Failure::Unexpected("OpenMLS: removed but still active".into()));
            }
            Ok(Processed::Removed)
        } else {
            Ok(Processed::NewEpoch(group.epoch().as_u64()))
        }
    }

    fn process_proposal(&mut self, proposal: &[u8]) -> Result<(), Failure> {
        let ProcessedMessageContent::ProposalMessage(queued) = self.process(proposal)? else {
            return Err(Failure::Unexpected("OpenMLS: not a proposal".into()));
        };
        let (provider, _, group) = self.parts()?;
        group.store_pending_proposal(provider.storage(), *queued).map_err(openmls)
    }

    fn merge(&mut self) -> Result<(), Failure> {
        let (provider, _, group) = self.parts()?;
        group.merge_pending_commit(provider).map_err(openmls)
    }

    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let (provider, signer, group) = self.parts()?;
        let msg = group.create_message(provider, signer, data).map_err(openmls)?;
        msg.tls_serialize_detached().map_err(openmls)
    }

    fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, Failure> {
        match self.process(message)? {
            ProcessedMessageContent::ApplicationMessage(m) => Ok(m.into_bytes()),
            _ => Err(Failure::Unexpected("OpenMLS: not an application message".into())),
        }
    }
}

// ---------------------------------------------------------------------------
// An mls-rs member.

/// mls-rs's client configuration here: RustCrypto, basic credentials,
/// in-memory storage, and [`SharedRules`].
pub type MlsRsConfig = WithMlsRules<
    SharedRules,
    WithIdentityProvider<BasicIdentityProvider, WithCryptoProvider<RustCryptoProvider, BaseConfig>>,
>;

/// mls-rs's [`MlsRules`](mls_rs::MlsRules) here: all proposals accepted,
/// and the framing, tree extension and path of what the member sends
/// next from the [`Opts`] its harness sets before each call.
#[derive(Clone, Debug, Default)]
pub struct SharedRules(Arc<Mutex<Opts>>);

impl SharedRules {
    fn set(&self, opts: &Opts) {
        *self.0.lock().expect("rules lock") = *opts;
    }

    fn get(&self) -> Opts {
        *self.0.lock().expect("rules lock")
    }
}

impl mls_rs::MlsRules for SharedRules {
    type Error = std::convert::Infallible;

    fn filter_proposals(
        &self,
        _: CommitDirection,
        _: CommitSource,
        _: &Roster,
        _: &mls_rs::group::GroupContext,
        proposals: ProposalBundle,
    ) -> Result<ProposalBundle, Self::Error> {
        Ok(proposals)
    }

    fn commit_options(
        &self,
        _: &Roster,
        _: &mls_rs::group::GroupContext,
        _: &ProposalBundle,
    ) -> Result<RsCommitOptions, Self::Error> {
        let opts = self.get();
        Ok(RsCommitOptions::new()
            .with_path_required(opts.path)
            .with_ratchet_tree_extension(opts.tree_in_welcome)
            .with_single_welcome_message(true))
    }

    fn encryption_options(
        &self,
        _: &Roster,
        _: &mls_rs::group::GroupContext,
    ) -> Result<EncryptionOptions, Self::Error> {
        Ok(EncryptionOptions::new(!self.get().public, PaddingMode::None))
    }
}

/// The `MLSMessage` header of a KeyPackage: version mls10, wire format
/// `mls_key_package`.
const KEY_PACKAGE_MESSAGE: [u8; 4] = [0, 1, 0, 5];

/// A bare KeyPackage as the `MLSMessage` mls-rs takes.
fn key_package_message(key_package: &[u8]) -> Result<RsMessage, Failure> {
    RsMessage::from_bytes(&[&KEY_PACKAGE_MESSAGE[..], key_package].concat()).map_err(mls_rs)
}

/// A member on mls-rs's side: its client (RustCrypto provider, signature
/// key, basic credential, in-memory storage holding its KeyPackage's
/// private keys), its rules, its KeyPackage, and the group once created
/// or joined.
pub struct MlsRs {
    name: String,
    rules: SharedRules,
    client: Client<MlsRsConfig>,
    key_package: RsMessage,
    group: Option<RsGroup<MlsRsConfig>>,
}

impl MlsRs {
    /// A would-be member named `name` (its basic credential identity).
    pub fn new(name: &str) -> MlsRs {
        let crypto = RustCryptoProvider::default();
        let suite = crypto.cipher_suite_provider(RS_CIPHERSUITE).expect("mls-rs ciphersuite 0x0003");
        let (secret, public) = suite.signature_key_generate().expect("mls-rs signature key");
        let identity =
            SigningIdentity::new(RsBasicCredential::new(name.as_bytes().to_vec()).into_credential(), public);
        let rules = SharedRules::default();
        let client = Client::builder()
            .crypto_provider(crypto)
            .identity_provider(BasicIdentityProvider)
            .mls_rules(rules.clone())
            .signing_identity(identity, secret, RS_CIPHERSUITE)
            .build();
        let key_package = client
            .generate_key_package_message(ExtensionList::new(), ExtensionList::new(), None)
            .expect("mls-rs KeyPackage");
        MlsRs { name: name.to_string(), rules, client, key_package, group: None }
    }

    /// The mls-rs group (for checks beyond the [`Member`] interface).
    pub fn group(&self) -> &RsGroup<MlsRsConfig> {
        self.group.as_ref().expect("mls-rs member in a group")
    }

    fn group_mut(&mut self) -> Result<&mut RsGroup<MlsRsConfig>, Failure> {
        self.group.as_mut().ok_or_else(|| Failure::Unexpected("mls-rs member not in a group".into()))
    }

    fn create(&mut self, group_id: &[u8]) -> Result<(), Failure> {
        self.rules.set(&Opts::default());
        let group = self
            .client
            .create_group_with_id(group_id.to_vec(), ExtensionList::new(), ExtensionList::new(), None)
            .map_err(mls_rs)?;
        self.group = Some(group);
        Ok(())
    }

    fn join(&mut self, welcome: &[u8], tree: Option<&[u8]>) -> Result<(), Failure> {
        let welcome = RsMessage::from_bytes(welcome).map_err(mls_rs)?;
        let tree = tree.map(ExportedTree::from_bytes).transpose().map_err(mls_rs)?;
        let (group, _) = self.client.join_group(tree, &welcome, None).map_err(mls_rs)?;
        self.group = Some(group);
        Ok(())
    }

    /// Commit the adds and removes by value and every proposal received
    /// in this epoch by reference (mls-rs includes them all).
    fn commit(&mut self, adds: &[Vec<u8>], removes: &[u32], opts: &Opts) -> Result<Sent, Failure> {
        self.rules.set(opts);
        let kps = adds.iter().map(|kp| key_package_message(kp)).collect::<Result<Vec<_>, _>>()?;
        let group = self.group_mut()?;
        let mut builder = group.commit_builder();
        for kp in kps {
            builder = builder.add_member(kp).map_err(mls_rs)?;
        }
        for leaf in removes {
            builder = builder.remove_member(*leaf).map_err(mls_rs)?;
        }
        let out = builder.build().map_err(mls_rs)?;
        Ok(Sent {
            commit: out.commit_message().to_bytes().map_err(mls_rs)?,
            welcome: out.welcome_messages().first().map(RsMessage::to_bytes).transpose().map_err(mls_rs)?,
        })
    }

    /// Propose an Update of our own leaf (by reference).
    pub fn propose_update(&mut self, opts: &Opts) -> Result<Vec<u8>, Failure> {
        self.rules.set(opts);
        let msg = self.group_mut()?.propose_update(Vec::new()).map_err(mls_rs)?;
        msg.to_bytes().map_err(mls_rs)
    }

    fn propose_remove(&mut self, leaf: u32, opts: &Opts) -> Result<Vec<u8>, Failure> {
        self.rules.set(opts);
        let msg = self.group_mut()?.propose_remove(leaf, Vec::new()).map_err(mls_rs)?;
        msg.to_bytes().map_err(mls_rs)
    }

    fn propose_add(&mut self, key_package: &[u8], opts: &Opts) -> Result<Vec<u8>, Failure> {
        self.rules.set(opts);
        let kp = key_package_message(key_package)?;
        let msg = self.group_mut()?.propose_add(kp, Vec::new()).map_err(mls_rs)?;
        msg.to_bytes().map_err(mls_rs)
    }

    fn process(&mut self, message: &[u8]) -> Result<ReceivedMessage, Failure> {
        let message = RsMessage::from_bytes(message).map_err(mls_rs)?;
        self.group_mut()?.process_incoming_message(message).map_err(mls_rs)
    }

    fn process_commit(&mut self, commit: &[u8]) -> Result<Processed, Failure> {
        let ReceivedMessage::Commit(description) = self.process(commit)? else {
            return Err(Failure::Unexpected("mls-rs: not a commit".into()));
        };
        match description.effect {
            CommitEffect::NewEpoch(_) => Ok(Processed::NewEpoch(self.group().current_epoch())),
            CommitEffect::Removed { .. } => Ok(Processed::Removed),
            CommitEffect::ReInit(_) => Err(Failure::Unexpected("mls-rs: ReInit".into())),
        }
    }

    fn process_proposal(&mut self, proposal: &[u8]) -> Result<(), Failure> {
        match self.process(proposal)? {
            ReceivedMessage::Proposal(_) => Ok(()),
            _ => Err(Failure::Unexpected("mls-rs: not a proposal".into())),
        }
    }

    fn merge(&mut self) -> Result<(), Failure> {
        self.group_mut()?.apply_pending_commit().map_err(mls_rs)?;
        Ok(())
    }

    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let msg = self.group_mut()?.encrypt_application_message(data, Vec::new()).map_err(mls_rs)?;
        msg.to_bytes().map_err(mls_rs)
    }

    fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, Failure> {
        match self.process(message)? {
            ReceivedMessage::ApplicationMessage(m) => Ok(m.data().to_vec()),
            _ => Err(Failure::Unexpected("mls-rs: not an application message".into())),
        }
    }
}

// ---------------------------------------------------------------------------
// Any of the three.

/// A member of any of the implementations.
pub enum Member {
    /// securemesh-mls-lite.
    Ours(Box<Ours>),
    /// OpenMLS.
    OpenMls(Box<OpenMls>),
    /// mls-rs.
    MlsRs(Box<MlsRs>),
}

/// A member's state saved by [`Member::save`], for [`Member::restore`].
pub enum Saved {
    /// Ours: the persisted state (`Persist::encode_state`, the group is
    /// not `Clone`); [`Member::restore`] decodes it and fills the tree
    /// hash cache again (derived data, not persisted) by hashing the tree,
    /// so that the next call finds the group as it was in memory.
    Ours(Vec<u8>),
    /// OpenMLS: a copy of the member's storage (its group is reloaded).
    OpenMls(HashMap<Vec<u8>, Vec<u8>>),
    /// mls-rs: a clone of the group.
    MlsRs(Box<RsGroup<MlsRsConfig>>),
}

impl Member {
    /// A would-be member of ours.
    pub fn ours(name: &str) -> Member {
        Member::Ours(Box::new(Ours::new(name)))
    }

    /// A would-be OpenMLS member.
    pub fn openmls(name: &str) -> Member {
        Member::OpenMls(Box::new(OpenMls::new(name)))
    }

    /// A would-be mls-rs member.
    pub fn mls_rs(name: &str) -> Member {
        Member::MlsRs(Box::new(MlsRs::new(name)))
    }

    /// The member's name (credential identity).
    pub fn name(&self) -> &str {
        match self {
            Member::Ours(m) => &m.name,
            Member::OpenMls(m) => &m.name,
            Member::MlsRs(m) => &m.name,
        }
    }

    /// Which implementation.
    pub fn side(&self) -> &'static str {
        match self {
            Member::Ours(_) => "ours",
            Member::OpenMls(_) => "OpenMLS",
            Member::MlsRs(_) => "mls-rs",
        }
    }

    /// Our member, or a panic naming the member.
    pub fn as_ours(&mut self) -> &mut Ours {
        match self {
            Member::Ours(m) => m,
            other => panic!("{} is an {} member", other.name(), other.side()),
        }
    }

    /// The OpenMLS member, or a panic naming the member.
    pub fn as_openmls(&mut self) -> &mut OpenMls {
        match self {
            Member::OpenMls(m) => m,
            other => panic!("{} is an {} member", other.name(), other.side()),
        }
    }

    /// The mls-rs member, or a panic naming the member.
    pub fn as_mls_rs(&mut self) -> &mut MlsRs {
        match self {
            Member::MlsRs(m) => m,
            other => panic!("{} is an {} member", other.name(), other.side()),
        }
    }

    /// The member's KeyPackage, bare (TLS-encoded `KeyPackage`, not in an
    /// `MLSMessage`).
    pub fn key_package(&self) -> Vec<u8> {
        match self {
            Member::Ours(m) => m.candidate.key_package_bytes().to_vec(),
            Member::OpenMls(m) => {
                m.key_package.key_package().tls_serialize_detached().expect("KeyPackage encodes")
            }
            Member::MlsRs(m) => {
                let message = m.key_package.to_bytes().expect("KeyPackage encodes");
                assert_eq!(message[..4], KEY_PACKAGE_MESSAGE, "an MLSMessage holding a KeyPackage");
                message[4..].to_vec()
            }
        }
    }

    /// Create a one-member group with this id.
    pub fn create(&mut self, group_id: &[u8]) -> Result<(), Failure> {
        match self {
            Member::Ours(m) => m.create(group_id),
            Member::OpenMls(m) => m.create(group_id),
            Member::MlsRs(m) => m.create(group_id),
        }
    }

    /// Join from a Welcome `MLSMessage`; `tree` is the ratchet tree
    /// (`optional<Node> ratchet_tree<V>`) when the Welcome has none.
    pub fn join(&mut self, welcome: &[u8], tree: Option<&[u8]>) -> Result<(), Failure> {
        match self {
            Member::Ours(m) => m.join(welcome, tree),
            Member::OpenMls(m) => m.join(welcome, tree),
            Member::MlsRs(m) => m.join(welcome, tree),
        }
    }

    /// Commit adding the members of these KeyPackages and removing those
    /// at these leaves (plus every proposal the member holds: its store
    /// on OpenMLS's and mls-rs's side, its cache on ours), as a pending
    /// commit: [`merge`](Self::merge) once ordered.
    pub fn commit(&mut self, adds: &[Vec<u8>], removes: &[u32], opts: &Opts) -> Result<Sent, Failure> {
        match self {
            Member::Ours(m) => m.commit(adds, removes, opts),
            Member::OpenMls(m) => m.commit(adds, removes, opts),
            Member::MlsRs(m) => m.commit(adds, removes, opts),
        }
    }

    /// Drop the pending commit (it was not sent): OpenMLS and mls-rs
    /// refuse or replace a second one otherwise; ours overwrites it.
    pub fn clear_pending(&mut self) -> Result<(), Failure> {
        match self {
            Member::Ours(_) => Ok(()),
            Member::OpenMls(m) => {
                let (provider, _, group) = m.parts()?;
                group.clear_pending_commit(provider.storage()).map_err(openmls)
            }
            Member::MlsRs(m) => {
                m.group_mut()?.clear_pending_commit();
                Ok(())
            }
        }
    }

    /// Merge our pending commit.
    pub fn merge(&mut self) -> Result<(), Failure> {
        match self {
            Member::Ours(m) => m.group.merge_pending_commit(&mut m.pending).map_err(Failure::Ours),
            Member::OpenMls(m) => m.merge(),
            Member::MlsRs(m) => m.merge(),
        }
    }

    /// Process another member's commit.
    pub fn process_commit(&mut self, commit: &[u8]) -> Result<Processed, Failure> {
        match self {
            Member::Ours(m) => m.process_commit(commit),
            Member::OpenMls(m) => m.process_commit(commit),
            Member::MlsRs(m) => m.process_commit(commit),
        }
    }

    /// Process another member's proposal (kept for the commit).
    pub fn process_proposal(&mut self, proposal: &[u8]) -> Result<(), Failure> {
        match self {
            Member::Ours(m) => m.process_proposal(proposal),
            Member::OpenMls(m) => m.process_proposal(proposal),
            Member::MlsRs(m) => m.process_proposal(proposal),
        }
    }

    /// Propose removing the member at `leaf` (by reference; the proposer
    /// keeps it for the commit).
    pub fn propose_remove(&mut self, leaf: u32, opts: &Opts) -> Result<Vec<u8>, Failure> {
        match self {
            Member::Ours(m) => m.propose(&OutgoingProposal::Remove(leaf), opts),
            Member::OpenMls(m) => m.propose_remove(leaf, opts),
            Member::MlsRs(m) => m.propose_remove(leaf, opts),
        }
    }

    /// Propose adding the member of this (bare) KeyPackage, by reference.
    pub fn propose_add(&mut self, key_package: &[u8], opts: &Opts) -> Result<Vec<u8>, Failure> {
        match self {
            Member::Ours(m) => {
                m.propose(&OutgoingProposal::Add(OurKeyPackage::from_bytes(key_package)?), opts)
            }
            Member::OpenMls(m) => m.propose_add(key_package, opts),
            Member::MlsRs(m) => m.propose_add(key_package, opts),
        }
    }

    /// Propose an Update of our own leaf (a fresh HPKE key), by reference.
    pub fn propose_update(&mut self, opts: &Opts) -> Result<Vec<u8>, Failure> {
        match self {
            Member::Ours(m) => m.propose(&OutgoingProposal::Update, opts),
            Member::OpenMls(m) => m.propose_update(opts),
            Member::MlsRs(m) => m.propose_update(opts),
        }
    }

    /// Seal an application message.
    pub fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        match self {
            Member::Ours(m) => m.seal(data),
            Member::OpenMls(m) => m.seal(data),
            Member::MlsRs(m) => m.seal(data),
        }
    }

    /// Open another member's application message.
    pub fn open(&mut self, message: &[u8]) -> Result<Vec<u8>, Failure> {
        match self {
            Member::Ours(m) => m.open(message),
            Member::OpenMls(m) => m.open(message),
            Member::MlsRs(m) => m.open(message),
        }
    }

    /// Save the member's state, to [`restore`](Self::restore) it after
    /// processing one commit (see [`Saved`]).
    pub fn save(&self) -> Saved {
        match self {
            Member::Ours(m) => {
                let mut state = vec![0u8; OurGroup::MAX_ENCODED_LEN];
                let n = m.group.encode_state(&mut state).expect("our state encodes");
                state.truncate(n);
                Saved::Ours(state)
            }
            Member::OpenMls(m) => {
                Saved::OpenMls(m.provider.storage().values.read().expect("storage lock").clone())
            }
            Member::MlsRs(m) => Saved::MlsRs(Box::new(m.group().clone())),
        }
    }

    /// Go back to the state of [`save`](Self::save).
    pub fn restore(&mut self, saved: &Saved) -> Result<(), Failure> {
        match (self, saved) {
            (Member::Ours(m), Saved::Ours(state)) => {
                m.group
                    .decode_state_into(state)
                    .map_err(|e| Failure::Unexpected(format!("our state decodes: {e:?}")))?;
                m.group.tree().tree_hash(m.group.tree().root())?;
                Ok(())
            }
            (Member::OpenMls(m), Saved::OpenMls(values)) => {
                *m.provider.storage().values.write().expect("storage lock") = values.clone();
                let id = m.group().group_id().clone();
                m.group = MlsGroup::load(m.provider.storage(), &id).map_err(openmls)?;
                Ok(())
            }
            (Member::MlsRs(m), Saved::MlsRs(group)) => {
                m.group = Some((**group).clone());
                Ok(())
            }
            _ => Err(Failure::Unexpected("restore: a state of another implementation".into())),
        }
    }

    /// The ratchet tree of the current epoch, encoded as the
    /// `ratchet_tree` extension's data.
    pub fn ratchet_tree(&self) -> Vec<u8> {
        match self {
            Member::Ours(m) => m.ratchet_tree(),
            Member::OpenMls(m) => {
                m.group().export_ratchet_tree().tls_serialize_detached().expect("tree encodes")
            }
            Member::MlsRs(m) => m.group().export_tree().to_bytes().expect("tree encodes"),
        }
    }

    /// Our leaf index.
    pub fn leaf(&self) -> u32 {
        match self {
            Member::Ours(m) => m.group.own_leaf(),
            Member::OpenMls(m) => m.group().own_leaf_index().u32(),
            Member::MlsRs(m) => m.group().current_member_index(),
        }
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        match self {
            Member::Ours(m) => m.group.epoch(),
            Member::OpenMls(m) => m.group().epoch().as_u64(),
            Member::MlsRs(m) => m.group().current_epoch(),
        }
    }

    /// The epoch authenticator.
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        match self {
            Member::Ours(m) => m.group.epoch_authenticator().expose().to_vec(),
            Member::OpenMls(m) => m.group().epoch_authenticator().as_slice().to_vec(),
            Member::MlsRs(m) => {
                m.group().epoch_authenticator().expect("mls-rs epoch authenticator").as_bytes().to_vec()
            }
        }
    }

    /// `MLS-Exporter(EXPORTER_LABEL, EXPORTER_CONTEXT, 32)`.
    pub fn exporter(&self) -> Vec<u8> {
        match self {
            Member::Ours(m) => {
                let mut out = [0u8; 32];
                m.group
                    .export_secret(EXPORTER_LABEL.as_bytes(), EXPORTER_CONTEXT, &mut out)
                    .expect("our exporter");
                out.to_vec()
            }
            Member::OpenMls(m) => m
                .group()
                .export_secret(m.provider.crypto(), EXPORTER_LABEL, EXPORTER_CONTEXT, 32)
                .expect("OpenMLS exporter"),
            Member::MlsRs(m) => m
                .group()
                .export_secret(EXPORTER_LABEL.as_bytes(), EXPORTER_CONTEXT, 32)
                .expect("mls-rs exporter")
                .as_bytes()
                .to_vec(),
        }
    }

    /// The HPKE encryption key of the leaf `leaf` as this member sees it.
    pub fn leaf_encryption_key(&self, leaf: u32) -> Vec<u8> {
        match self {
            Member::Ours(m) => m.group.tree().leaf(leaf).expect("occupied leaf").encryption_key.to_vec(),
            Member::OpenMls(m) => {
                m.group()
                    .members()
                    .find(|member| member.index.u32() == leaf)
                    .expect("occupied leaf")
                    .encryption_key
            }
            Member::MlsRs(m) => {
                let tree = m.group().export_tree();
                let index = LeafIndex::try_from(leaf).expect("leaf index");
                tree.get_leaf(index).expect("leaf in the tree").expect("occupied leaf").public_key.to_vec()
            }
        }
    }

    /// The members' leaves and identities as this member sees them.
    pub fn roster(&self) -> Vec<(u32, Vec<u8>)> {
        match self {
            Member::Ours(m) => m
                .group
                .members()
                .map(|(leaf, node)| {
                    let securemesh_mls_lite::tree::node::Credential::Basic { identity } = node.credential
                    else {
                        panic!("not a basic credential")
                    };
                    (leaf, identity.to_vec())
                })
                .collect(),
            Member::OpenMls(m) => m
                .group()
                .members()
                .map(|member| {
                    let identity = BasicCredential::try_from(member.credential).expect("basic credential");
                    (member.index.u32(), identity.identity().to_vec())
                })
                .collect(),
            Member::MlsRs(m) => m
                .group()
                .roster()
                .members_iter()
                .map(|member| {
                    let basic = member.signing_identity.credential.as_basic().expect("basic credential");
                    (member.index, basic.identifier().to_vec())
                })
                .collect(),
        }
    }
}

/// Every member is in the same epoch with the same epoch authenticator,
/// exporter value and roster (leaf indices and identities); panics naming
/// the first member that differs from the first one.
pub fn assert_agree(members: &[Member]) {
    let first = members.first().expect("at least one member");
    let (epoch, authenticator, exporter, roster) =
        (first.epoch(), first.epoch_authenticator(), first.exporter(), first.roster());
    for m in members {
        let who = format!("{} ({}) vs {} ({})", m.name(), m.side(), first.name(), first.side());
        assert_eq!(m.epoch(), epoch, "epoch: {who}");
        assert_eq!(m.epoch_authenticator(), authenticator, "epoch authenticator: {who}");
        assert_eq!(m.exporter(), exporter, "exporter: {who}");
        assert_eq!(m.roster(), roster, "roster: {who}");
    }
}

// ---------------------------------------------------------------------------
// A group of mixed members.

/// Sizes of what went on the wire, by step, for the report.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    /// (what, bytes).
    pub entries: Vec<(String, usize)>,
}

/// One group with members of both sides: every step is delivered to every
/// member and ends with [`Mesh::check`] (agreement and application
/// messages both ways).
pub struct Mesh {
    /// The members, in the order they came in.
    pub members: Vec<Member>,
    /// What went on the wire.
    pub sizes: Sizes,
    step: usize,
}

impl Mesh {
    /// `founder` creates the group.
    pub fn create(mut founder: Member) -> Mesh {
        founder
            .create(b"securemesh-interop")
            .unwrap_or_else(|e| panic!("{} creates the group: {e:?}", founder.name()));
        let mut mesh = Mesh { members: vec![founder], sizes: Sizes::default(), step: 0 };
        mesh.check();
        mesh
    }

    /// The index of the member named `name`.
    pub fn index(&self, name: &str) -> usize {
        self.members.iter().position(|m| m.name() == name).unwrap_or_else(|| panic!("no member {name}"))
    }

    /// The leaf of the member named `name`.
    pub fn leaf(&self, name: &str) -> u32 {
        self.members[self.index(name)].leaf()
    }

    /// The member named `name`.
    pub fn member(&mut self, name: &str) -> &mut Member {
        let i = self.index(name);
        &mut self.members[i]
    }

    fn record(&mut self, what: String, len: usize) {
        self.sizes.entries.push((what, len));
    }

    /// `committer` commits adding `joiners` and removing the members named
    /// `removed` (by value; plus whatever proposals it holds); everyone
    /// else processes the commit (the removed ones must see that they were
    /// removed), the committer merges, the joiners join from the Welcome
    /// (with the committer's tree out of band when the Welcome has none),
    /// then [`check`](Self::check).
    pub fn commit(&mut self, committer: &str, joiners: Vec<Member>, removed: &[&str], opts: Opts) -> Sent {
        let removes: Vec<u32> = removed.iter().map(|n| self.leaf(n)).collect();
        let kps: Vec<Vec<u8>> = joiners.iter().map(Member::key_package).collect();
        self.run(committer, &kps, &removes, joiners, removed, opts)
    }

    /// `committer` commits the proposals everyone holds (sent with
    /// [`deliver_proposal`](Self::deliver_proposal)), by reference:
    /// `joiners` are the members they add, `removed` those they remove;
    /// then as [`commit`](Self::commit).
    pub fn commit_proposals(
        &mut self,
        committer: &str,
        joiners: Vec<Member>,
        removed: &[&str],
        opts: Opts,
    ) -> Sent {
        self.run(committer, &[], &[], joiners, removed, opts)
    }

    fn run(
        &mut self,
        committer: &str,
        kps: &[Vec<u8>],
        removes: &[u32],
        joiners: Vec<Member>,
        removed: &[&str],
        opts: Opts,
    ) -> Sent {
        self.step += 1;
        let c = self.index(committer);
        let what = format!(
            "step {}: {} ({}) commits {} proposals adding [{}] removing [{}] ({opts:?})",
            self.step,
            committer,
            self.members[c].side(),
            if kps.is_empty() && removes.is_empty() { "cached" } else { "by-value" },
            joiners.iter().map(|j| format!("{} ({})", j.name(), j.side())).collect::<Vec<_>>().join(", "),
            removed.join(", "),
        );
        let sent =
            self.members[c].commit(kps, removes, &opts).unwrap_or_else(|e| panic!("{what}: commit: {e:?}"));
        self.deliver_commit(c, &sent.commit, removed, &what);
        self.members[c].merge().unwrap_or_else(|e| panic!("{what}: merge: {e:?}"));
        self.members.retain(|m| !removed.contains(&m.name()));
        self.record(format!("{what}: commit"), sent.commit.len());
        if !joiners.is_empty() {
            let welcome = sent.welcome.as_deref().unwrap_or_else(|| panic!("{what}: no Welcome"));
            self.record(format!("{what}: Welcome"), welcome.len());
            let tree = (!opts.tree_in_welcome).then(|| self.members[self.index(committer)].ratchet_tree());
            if let Some(tree) = &tree {
                self.record(format!("{what}: ratchet tree out of band"), tree.len());
            }
            for mut j in joiners {
                j.join(welcome, tree.as_deref())
                    .unwrap_or_else(|e| panic!("{what}: {} ({}) joins: {e:?}", j.name(), j.side()));
                self.members.push(j);
            }
        } else {
            assert!(sent.welcome.is_none(), "{what}: a Welcome nobody joins from");
        }
        self.check();
        sent
    }

    /// Everyone but `committer` processes `commit`; the members named
    /// `removed` must see that they were removed (the caller drops them).
    fn deliver_commit(&mut self, committer: usize, commit: &[u8], removed: &[&str], what: &str) {
        let epoch = self.members[committer].epoch() + 1;
        for (i, m) in self.members.iter_mut().enumerate() {
            if i == committer {
                continue;
            }
            let got = m.process_commit(commit).unwrap_or_else(|e| {
                panic!("{what}: {} ({}) processes the commit: {e:?}", m.name(), m.side())
            });
            let expected =
                if removed.contains(&m.name()) { Processed::Removed } else { Processed::NewEpoch(epoch) };
            assert_eq!(got, expected, "{what}: {} ({})", m.name(), m.side());
        }
    }

    /// `proposer` sent `proposal` (and holds it): everyone else processes
    /// it into their proposal store or cache.
    pub fn deliver_proposal(&mut self, proposer: &str, proposal: &[u8]) {
        let p = self.index(proposer);
        self.record(format!("proposal by {proposer}"), proposal.len());
        for (i, m) in self.members.iter_mut().enumerate() {
            if i != p {
                m.process_proposal(proposal).unwrap_or_else(|e| {
                    panic!("{} ({}) processes the proposal of {proposer}: {e:?}", m.name(), m.side())
                });
            }
        }
    }

    /// [`assert_agree`], then every member sends an application message
    /// that every other member opens.
    pub fn check(&mut self) {
        assert_agree(&self.members);
        for s in 0..self.members.len() {
            let sender = &mut self.members[s];
            let data = format!("{} at epoch {}", sender.name(), sender.epoch()).into_bytes();
            let message = sender
                .seal(&data)
                .unwrap_or_else(|e| panic!("{} ({}) seals: {e:?}", sender.name(), sender.side()));
            let from = format!("{} ({})", sender.name(), sender.side());
            for (r, receiver) in self.members.iter_mut().enumerate() {
                if r == s {
                    continue;
                }
                let opened = receiver.open(&message).unwrap_or_else(|e| {
                    panic!("{} ({}) opens from {from}: {e:?}", receiver.name(), receiver.side())
                });
                assert_eq!(opened, data, "{} ({}) opens from {from}", receiver.name(), receiver.side());
            }
        }
    }

    /// Print the sizes (shown with `--nocapture`).
    pub fn print_sizes(&self) {
        for (what, len) in &self.sizes.entries {
            println!("{len:>6} B  {what}");
        }
    }
}

//! The deterministic multi-agent harness of issue #9: sixteen agents in
//! one process, a seeded link model (loss, reordering, duplication,
//! partitions that flip reachability so the router moves between Noise
//! and the mailbox), crash-restart from the last persisted records,
//! replay of old records, an adversary that tampers, replays and forges
//! envelopes, and the compromise of one agent's stored state. The
//! invariants are checked at every step; the figures are printed at the
//! end (`cargo test -p securemesh --test mesh_sim -- --nocapture`).
//!
//! Environment: `MESH_SIM_SEED` (default [`DEFAULT_SEED`]) and
//! `MESH_SIM_DELIVERIES` (envelopes the link hands to agents before the
//! run heals and checks; default [`DEFAULT_DELIVERIES`]). A failure prints
//! the seed, so `MESH_SIM_SEED=<seed> cargo test -p securemesh --test
//! mesh_sim` replays it.
//!
//! # The model
//!
//! - **Agents**: sixteen, each with six neighbours (ring offsets ±1, ±2,
//!   ±4). Every agent knows its neighbours' identities, except a few pairs
//!   that know only the peer id (Noise XX, and a bundle fetched from the
//!   directory server the first time the peer is offline). Each agent
//!   grants each neighbour `WORKER` (tasks and telemetry) or `SENSOR`
//!   (telemetry only): a task from a `SENSOR` must be refused.
//! - **Direct link** (Noise stream transport): a connection per ordered
//!   pair, in order and without loss while both ends run (TCP
//!   semantics: a partition delays it, it does not cut it). A crash
//!   resets the crashed agent's connections: what was in flight either
//!   way is lost, and its neighbours' hosts treat it as unreachable until
//!   it has opened a new Noise session with them (the stale transport
//!   they still hold is of no use to it).
//! - **Mailbox** (ratchet): the sender's upload is lost with some
//!   probability (fire and forget: not acknowledged, the ratchet skips the
//!   message); an upload the mailbox took is acknowledged, kept until the
//!   recipient's host has stored the state its `handle_input` produced,
//!   delivered after a random delay in random order, sometimes twice.
//! - **Crashes** at random between any two calls: before the host stored
//!   the records a call produced (the call is lost: nothing it produced
//!   was released, a delivered plaintext is not acted on, the mailbox
//!   redelivers), after storing but before handing the transmits to the
//!   link (they are lost), or idle. A crashed agent restarts later from
//!   its stored records alone; sometimes the storage first offers an older
//!   blob of a record, which must be refused as a rollback.
//! - **Groups** (MLS): two groups of up to five agents, each with a
//!   delivery service that keeps one order for all members; members read
//!   it at their own pace (crashed ones later), and it goes on from where a
//!   member's host last stored. Members send application messages and
//!   commit: add back a spec member (from a fresh KeyPackage; its Welcome
//!   goes to its mailbox), remove one, or an empty commit that refreshes
//!   the committer's keys.
//! - **Adversary**: flips bytes of envelopes in flight, replays delivered
//!   envelopes (handshakes included), rewrites the sender of envelopes,
//!   replays or flips group entries, sends as an outsider that nobody's
//!   policy knows, and once steals one agent's stored state and storage
//!   key (see [`Compromise`]).
//!
//! # Acknowledged
//!
//! A message is **acknowledged** when its envelope was handed out by
//! `poll_transmit` (so, as the API enforces, after its sender's host
//! stored the records the `send` produced) and the carrier took it: the
//! mailbox stored the upload, or (direct) it reached the incarnation of
//! the receiver it was sent to. An acknowledged message must be accepted
//! (delivered, or refused by the policy when the sender's role does not
//! permit its kind) once the run has healed: partitions healed, every
//! agent restarted, every queue drained.
//!
//! # Invariants (checked at every step)
//!
//! 1. A message is accepted at most once (counted when the host acted on
//!    it, i.e. after it stored the state the delivery produced).
//! 2. Nothing the adversary made (tampered, replayed, re-addressed,
//!    outsider's) is delivered.
//! 3. A message whose kind the receiver's policy does not permit to its
//!    sender is never delivered: it yields `Denied`, and the number of
//!    `Denied { NotPermitted }` events equals the number of such messages
//!    that reached their receiver.
//! 4. Every delivered payload is the one sent, from the peer the
//!    envelope's channel authenticated.
//! 5. An older record offered at restore is refused (`Rollback`).
//! 6. No generation of a record goes backwards or repeats.
//! 7. After healing, every acknowledged message was accepted.
//! 8. After the compromise has healed (see [`Compromise`]), the stolen
//!    state decrypts none of the victim's new mailbox traffic, and nothing
//!    forged with it under another agent's name is delivered.
//! 9. Groups: a member accepts a group message at most once, from the
//!    member that sent it, unchanged, and only if its policy permits the
//!    kind; every member enters an epoch at the same entry of the order;
//!    after healing all members agree on the epoch, its authenticator and
//!    the roster, and the roster names exactly the agents that hold the
//!    group.
//!
//! Group application messages are not in invariant 7: a message sent in
//! an epoch its sender had not yet left is refused by members that have
//! (`GroupEpoch`: the mesh keeps no past epoch, as documented).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{SENSOR, TASK, TELEMETRY, WALL, WORKER};
use securemesh::envelope::Envelope;
use securemesh::group::{COMMIT_SCRATCH_LEN, MAX_KEY_PACKAGE_LEN};
use securemesh::policy::DenyReason;
use securemesh::{
    Agent, Channel, ChannelKind, Config, Delivery, Error, Event, GroupId, MessageKind, PeerId, Permissions,
    Reason, RecordId, Roles, SessionKind,
};
use securemesh_core::Instant;
use securemesh_core::envelope::StorageKey;
use securemesh_core::testing::TestRng;
use securemesh_ratchet::{Identity, SessionConfig};
use std::collections::{BTreeMap, VecDeque};

/// Agents in the mesh.
const N: usize = 16;
/// Ring offsets of each agent's neighbours.
const OFFSETS: [usize; 6] = [1, 2, 4, N - 1, N - 2, N - 4];
/// The agent of the simulation: 8 peers (6 neighbours and room), 32
/// sessions (per neighbour a Noise transport, up to two ratchet sessions
/// and a handshake; superseded transports give their slots up), 32 queued
/// envelopes of 1 KiB (2 KiB with the feature `pq`, room for the hybrid
/// handshakes and PQXDH), 16 one-time prekeys.
type SimAgent = Agent<8, 32, 32, { securemesh::pq::DEFAULT_BYTES }, 16>;
const REC: usize = SimAgent::MAX_RECORD_LEN;

/// Seed used when `MESH_SIM_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5EED_3E5B_0009;
/// Deliveries when `MESH_SIM_DELIVERIES` is not set.
const DEFAULT_DELIVERIES: u64 = 100_000;

/// The MLS groups: creator first, then the agents it adds at the start
/// (each group's members know each other: neighbours, or added to each
/// other's directory and policy for the group).
const GROUP_SPECS: [[usize; 5]; 2] = [[0, 1, 2, 4, 15], [8, 9, 10, 12, 7]];

/// The mailbox delivers one of its first this many ready envelopes.
const MAILBOX_WINDOW: usize = 8;

/// Application payload: id (8) | from (1) | to (1) | filler (14), a
/// function of the id, so any change shows.
const PAYLOAD: usize = 24;

/// Probabilities, per million.
mod p {
    /// A send per loop iteration (else the iteration only moves traffic).
    pub const SEND: u64 = 700_000;
    /// A mailbox upload lost before the mailbox took it.
    pub const UPLOAD_LOSS: u64 = 15_000;
    /// The mailbox delivers an envelope again after it was acknowledged.
    pub const MAILBOX_DUP: u64 = 20_000;
    /// A partition flips on a random link per iteration.
    pub const PARTITION: u64 = 4_000;
    /// An idle crash per iteration.
    pub const CRASH_IDLE: u64 = 600;
    /// A crash before the records of a call are stored.
    pub const CRASH_BEFORE_STORE: u64 = 1_500;
    /// A crash after storing, before the transmits reach the link.
    pub const CRASH_BEFORE_TRANSMIT: u64 = 1_500;
    /// A restore offers an older blob first.
    pub const ROLLBACK_TRY: u64 = 300_000;
    /// Adversary actions per iteration.
    pub const TAMPER: u64 = 6_000;
    pub const REPLAY: u64 = 6_000;
    pub const RESENDER: u64 = 3_000;
    pub const OUTSIDER: u64 = 1_000;
    pub const FORGE_WITH_STOLEN: u64 = 2_000;
    /// The adversary flips or replays a group entry.
    pub const GROUP_TAMPER: u64 = 3_000;
    /// A group application message per iteration.
    pub const GROUP_SEND: u64 = 15_000;
    /// A commit (add back a removed member, remove one, or an empty
    /// commit that refreshes the committer's keys) per iteration.
    pub const GROUP_COMMIT: u64 = 1_500;
}

/// SplitMix64: the link model's randomness (the agents draw theirs from
/// their own [`TestRng`]).
struct Sm(u64);

impl Sm {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

fn payload(id: u64, from: usize, to: usize) -> [u8; PAYLOAD] {
    let mut p = [0u8; PAYLOAD];
    p[..8].copy_from_slice(&id.to_le_bytes());
    p[8] = from as u8;
    p[9] = to as u8;
    let mut f = Sm(id ^ 0xF111_E500);
    for b in &mut p[10..] {
        *b = f.next() as u8;
    }
    p
}

/// Why a message was not acknowledged (it may be lost; that is allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Loss {
    /// `send` refused it (no route, table or queue full).
    SendRefused,
    /// Its sender crashed before storing the state `send` produced, or
    /// before the transmit reached the link.
    SenderCrash,
    /// The Noise handshake it waited for failed or timed out.
    HandshakeDropped,
    /// The upload to the mailbox was lost.
    UploadLost,
    /// The direct connection was reset (the receiver crashed).
    ConnectionReset,
    /// The receiver crashed after decrypting it, before storing the state
    /// (direct: the stream is gone; the mailbox redelivers instead).
    ReceiverCrash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Sent, waiting in the sender's queue (for a Noise handshake).
    Waiting,
    /// Acknowledged, on the direct link to incarnation `inc`.
    Direct {
        inc: u32,
    },
    /// Acknowledged, in the receiver's mailbox.
    Mailbox,
    Delivered,
    Denied,
    Lost(Loss),
    /// A group message in the group's delivery order (accepted per member:
    /// see `Sim::group_accepted`).
    Group,
}

struct Msg {
    from: usize,
    to: usize,
    kind: MessageKind,
    denied: bool,
    status: Status,
}

struct DirectItem {
    bytes: Vec<u8>,
    msg: Option<u64>,
    /// The receiver's incarnation when it was sent.
    inc: u32,
    at: u64,
}

struct MailItem {
    bytes: Vec<u8>,
    msg: Option<u64>,
    from: usize,
    /// Upload time (the mailbox's clock).
    sent: u64,
    at: u64,
    /// A second delivery of an envelope already acknowledged.
    dup: bool,
}

/// A group's delivery service: one order for all members.
struct GroupSim {
    id: GroupId,
    spec: [usize; 5],
    /// The delivery order: (sender, envelope).
    log: Vec<(usize, Vec<u8>)>,
    /// Next entry each agent reads (`None`: not a member to the service).
    cursor: [Option<usize>; N],
    /// A Welcome waiting for its joiner.
    welcome: [Option<Vec<u8>>; N],
    /// A joiner's epoch, until the entry that epoch starts at is known.
    joining: [Option<u64>; N],
    /// Welcomes their joiners read (and stored): (joiner, Welcome).
    welcomes_read: std::collections::HashSet<(usize, Vec<u8>)>,
    /// The entry each epoch starts at (after the commit that made it), as
    /// the members saw it: they must all see the same.
    epoch_start: BTreeMap<u64, usize>,
}

/// The host of one agent: its process (gone while crashed), its storage
/// and what it told the agent about reachability.
struct Host {
    agent: Option<Box<SimAgent>>,
    rng: TestRng,
    key: [u8; 32],
    /// Newest stored blob and generation of each record.
    store: BTreeMap<RecordId, (Vec<u8>, u64)>,
    /// A few older blobs, to offer as rollbacks.
    old: Vec<(RecordId, u64, Vec<u8>)>,
    inc: u32,
    down_until: u64,
    told: [bool; N],
    /// A neighbour that restarted and has not yet opened a new Noise
    /// session with us: unreachable (our transport with it is stale).
    stale: [bool; N],
    /// Messages waiting for a Noise handshake, or held for a transport
    /// that waits for key confirmation (`held`): (peer, session, held,
    /// message), oldest first.
    waiting: Vec<(usize, securemesh::SessionId, bool, u64)>,
    /// The session of the newest Noise transport with each peer (the one
    /// `send` uses, or holds messages for until it is confirmed).
    newest: [Option<securemesh::SessionId>; N],
    /// Handshakes and unconfirmed transports dropped in the current call:
    /// (peer, session, messages dropped with it).
    dropped_now: Vec<(usize, securemesh::SessionId, usize)>,
    /// Ratchet sessions re-established in the current call (an envelope
    /// named a session unknown to an agent holding none with its claimed
    /// sender): (peer, new session), whose control message is among the
    /// call's transmits.
    controls_now: Vec<(usize, securemesh::SessionId)>,
}

/// The stolen state of one agent and how far its sessions healed.
///
/// The adversary gets every stored record of the victim and its storage
/// key at one moment, so it restores a clone. From then on it sees every
/// envelope uploaded to the victim's mailbox and decrypts what it can
/// with the clone (a passive adversary that follows the ratchet). For
/// each neighbour D, a **turn** is a mailbox message between victim and D
/// that is accepted by the side that did not accept the previous turn and
/// was sent after it. After four turns both sides have stepped their DH
/// ratchet with keys made after the theft at least once; D's ratchet
/// messages to the victim sent from then on must not decrypt with the
/// clone. (Initial messages, which carry X3DH from the stolen prekeys,
/// are counted apart: the prekeys heal by rotation, not by the ratchet.)
struct Compromise {
    victim: usize,
    at: u64,
    clone: Box<SimAgent>,
    rng: TestRng,
    /// Per neighbour: turns, time and receiver of the last one.
    turns: [(u32, u64, Option<usize>); N],
    pre_heal_seen: u64,
    pre_heal_decrypted: u64,
    post_heal_seen: u64,
    post_heal_initial: u64,
    forged: u64,
    post_heal_heartbeats: u64,
    post_heal_heartbeats_read: u64,
}

const HEAL_TURNS: u32 = 4;

#[derive(Default, Debug)]
struct Stats {
    iterations: u64,
    deliveries: u64,
    direct_deliveries: u64,
    mailbox_deliveries: u64,
    duplicates: u64,
    duplicates_refused: u64,
    uploads_lost: u64,
    resets_lost: u64,
    mailbox_retries: u64,
    partitions: u64,
    crashes: u64,
    crashes_before_store: u64,
    crashes_before_transmit: u64,
    restarts: u64,
    rollbacks_refused: u64,
    records_stored: u64,
    sends: u64,
    sends_refused: u64,
    bundles_fetched: u64,
    routes: BTreeMap<String, u64>,
    received: BTreeMap<String, u64>,
    heartbeats: u64,
    handshakes: BTreeMap<String, u64>,
    handshakes_failed: u64,
    denied_not_permitted: u64,
    denied_unknown_peer: u64,
    auth_failed: u64,
    injected: BTreeMap<&'static str, u64>,
    injected_refused: u64,
    errors: BTreeMap<String, u64>,
    /// `Denied { NotPermitted }` events of calls the host stored.
    denied_events: u64,
    heartbeats_received: u64,
    /// `ReestablishRequested` / `SessionReestablished` events.
    reestablish_requested: u64,
    reestablish_accepted: u64,
    /// The agents' own metrics, summed over every incarnation.
    metrics: Totals,
    groups: GroupStats,
    /// (ratchet key, n) of every ratchet envelope released.
    wire_keys: std::collections::HashSet<([u8; 32], u32)>,
}

#[derive(Default, Debug)]
struct Totals {
    noise: [u64; 4],
    ratchet: [u64; 6],
    handshakes_completed: u64,
    handshake_latency_max_ms: u64,
    ratchet_steps: u64,
    records_persisted: u64,
    prekey_refills: u64,
    /// Hybrid handshakes, PQXDH sessions, KEM prekey refills, channels
    /// refused for their post-quantum status.
    pq: [u64; 4],
}

impl Totals {
    fn add(&mut self, m: &securemesh::Metrics) {
        let (n, r) = (&m.noise, &m.ratchet);
        for (t, v) in self.noise.iter_mut().zip([n.sent, n.received, n.failures, n.denied]) {
            *t += v;
        }
        for (t, v) in self.ratchet.iter_mut().zip([
            r.sent,
            r.received,
            r.failures,
            r.denied,
            r.heartbeats_sent,
            r.heartbeats_received,
        ]) {
            *t += v;
        }
        self.handshakes_completed += m.handshakes_completed;
        self.handshake_latency_max_ms = self.handshake_latency_max_ms.max(m.handshake_latency_max_ms);
        self.ratchet_steps += m.ratchet_steps;
        self.records_persisted += m.records_persisted;
        self.prekey_refills += m.prekey_refills;
        for (t, v) in self.pq.iter_mut().zip([
            m.hybrid_handshakes,
            m.pqxdh_sessions,
            m.kem_prekey_refills,
            m.pq_refused,
        ]) {
            *t += v;
        }
    }
}

/// (ratchet key, n) of a released ratchet envelope carrying `plain`
/// plaintext bytes, read from the clear header of its Double Ratchet
/// message, which ends the body (type | key 32 | pn 4 | n 4 | ciphertext
/// and tag; the sessions run without header encryption).
fn ratchet_key_and_n(env: &Envelope<'_>, plain: usize) -> ([u8; 32], u32) {
    common::ratchet_key_and_n(&env.body[env.body.len() - securemesh_ratchet::RATCHET_OVERHEAD - plain..])
}

struct Sim {
    seed: u64,
    rng: Sm,
    now: u64,
    config: Config,
    hosts: Vec<Host>,
    ids: Vec<PeerId>,
    identities: Vec<securemesh_ratchet::PublicIdentity>,
    neighbors: Vec<Vec<usize>>,
    /// `sensor[r][s]`: r grants s only `SENSOR`.
    sensor: Vec<Vec<bool>>,
    /// Partitioned links (unordered pair) and when they heal.
    partitions: BTreeMap<(usize, usize), u64>,
    direct: BTreeMap<(usize, usize), VecDeque<DirectItem>>,
    mailbox: Vec<Vec<MailItem>>,
    msgs: Vec<Msg>,
    /// Recently delivered envelopes (receiver, bytes), for replays.
    recent: VecDeque<(usize, Vec<u8>)>,
    outsider: Box<SimAgent>,
    outsider_rng: TestRng,
    compromise: Option<Compromise>,
    stats: Stats,
    /// Heal: no new sends, no faults.
    healing: bool,
    /// A buffer of `MAX_RECORD_LEN` for `poll_persist`.
    rec_buf: Vec<u8>,
    groups: Vec<GroupSim>,
    /// (message, member) pairs accepted from the groups.
    group_accepted: std::collections::HashSet<(u64, usize)>,
}

/// What the call being finished was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Send(u64),
    Input,
    Timeout,
}

#[derive(Default, Debug)]
struct GroupStats {
    sent: u64,
    refused: u64,
    deliveries: u64,
    accepted: u64,
    denied: u64,
    commits: u64,
    adds: u64,
    removes: u64,
    welcomes: u64,
    welcome_duplicates: u64,
    discarded: u64,
    errors: BTreeMap<String, u64>,
}

fn link(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

fn channel_name(c: ChannelKind) -> String {
    format!("{c:?}")
}

fn check(cond: bool, seed: u64, what: impl FnOnce() -> String) {
    assert!(cond, "invariant violated (MESH_SIM_SEED={seed:#x}): {}", what());
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Sm(seed);
        let config = Config {
            ratchet: SessionConfig { heartbeat_ms: 20_000, ..SessionConfig::default() },
            ..Config::default()
        };
        let mut hosts = Vec::new();
        for i in 0..N {
            let mut r =
                TestRng::new(seed.rotate_left(17) ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let identity = Identity::generate(&mut r);
            let agent = Box::new(SimAgent::new_pq(identity, config, pq_mode(), &mut r, WALL));
            let mut key = [0u8; 32];
            for b in &mut key {
                *b = rng.next() as u8;
            }
            hosts.push(Host {
                agent: Some(agent),
                rng: r,
                key,
                store: BTreeMap::new(),
                old: Vec::new(),
                inc: 0,
                down_until: 0,
                told: [false; N],
                stale: [false; N],
                waiting: Vec::new(),
                dropped_now: Vec::new(),
                controls_now: Vec::new(),
                newest: [None; N],
            });
        }
        let ids: Vec<PeerId> = hosts.iter().map(|h| h.agent.as_ref().unwrap().peer_id()).collect();
        let identities: Vec<_> = hosts.iter().map(|h| *h.agent.as_ref().unwrap().public_identity()).collect();
        let neighbors: Vec<Vec<usize>> =
            (0..N).map(|i| OFFSETS.iter().map(|o| (i + o) % N).collect()).collect();
        let sensor: Vec<Vec<bool>> = (0..N).map(|_| (0..N).map(|_| rng.chance(250_000)).collect()).collect();
        // Bundles with distinct one-time prekeys, one per neighbour.
        let mut bundles = vec![vec![Vec::new(); N]; N];
        for (b, h) in hosts.iter().enumerate() {
            let a = h.agent.as_ref().unwrap();
            let otks: Vec<u32> = a.one_time_prekey_ids().collect();
            for (k, &peer) in neighbors[b].iter().enumerate() {
                let mut buf = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
                let n = a.bundle_with(otks.get(k).copied(), &mut buf).unwrap();
                bundles[b][peer] = buf[..n].to_vec();
            }
        }
        for a in 0..N {
            let agent = hosts[a].agent.as_mut().unwrap();
            let p = agent.policy_mut();
            p.define_role(WORKER, Permissions::of(&[TASK, TELEMETRY])).unwrap();
            p.define_role(SENSOR, Permissions::of(&[TELEMETRY])).unwrap();
            for &b in &neighbors[a] {
                // One pair in five knows the peer by id only (XX, bundle
                // fetched when needed), unless they share a group (adding
                // a member needs its identity).
                let grouped = GROUP_SPECS.iter().any(|g| g.contains(&a) && g.contains(&b));
                if (a * 7 + b * 3) % 5 == 0 && !grouped {
                    agent.add_peer(ids[b]).unwrap();
                } else {
                    assert_eq!(agent.set_peer_bundle(&bundles[b][a]).unwrap(), ids[b]);
                }
                let role = if sensor[a][b] { SENSOR } else { WORKER };
                agent.policy_mut().grant(ids[b], Roles::of(&[role])).unwrap();
            }
        }
        // Members of a group know each other.
        for spec in GROUP_SPECS {
            for &a in &spec {
                for &b in spec.iter().filter(|&&b| b != a && !neighbors[a].contains(&b)) {
                    let agent = hosts[a].agent.as_mut().unwrap();
                    agent.add_peer_identity(&identities[b]).unwrap();
                    let role = if sensor[a][b] { SENSOR } else { WORKER };
                    agent.policy_mut().grant(ids[b], Roles::of(&[role])).unwrap();
                }
            }
        }
        let mut orng = TestRng::new(seed.rotate_left(29) ^ 0x0BAD_0BAD_0BAD);
        let mut outsider =
            Box::new(SimAgent::new_pq(Identity::generate(&mut orng), config, pq_mode(), &mut orng, WALL));
        outsider.policy_mut().define_role(WORKER, Permissions::of(&[TASK, TELEMETRY])).unwrap();
        for &b in &neighbors[0] {
            outsider.add_peer_identity(&identities[b]).unwrap();
        }
        let mut sim = Sim {
            seed,
            rng,
            now: 1_000,
            config,
            hosts,
            ids,
            identities,
            neighbors,
            sensor,
            partitions: BTreeMap::new(),
            direct: BTreeMap::new(),
            mailbox: (0..N).map(|_| Vec::new()).collect(),
            msgs: Vec::new(),
            recent: VecDeque::new(),
            outsider,
            outsider_rng: orng,
            compromise: None,
            stats: Stats::default(),
            healing: false,
            rec_buf: vec![0u8; REC],
            groups: Vec::new(),
            group_accepted: std::collections::HashSet::new(),
        };
        for a in 0..N {
            let key = StorageKey::new(sim.hosts[a].key);
            sim.hosts[a].agent.as_mut().unwrap().enable_persistence(key);
            sim.store(a);
            sim.drain_events(a);
            sim.refresh_reach(a);
        }
        sim.healing = true; // no faults while the groups are made
        for spec in GROUP_SPECS {
            let creator = spec[0];
            let h = &mut sim.hosts[creator];
            let id = h.agent.as_mut().unwrap().create_group(&mut h.rng).unwrap();
            sim.finish(creator, Ctx::Input);
            let mut cursor = [None; N];
            cursor[creator] = Some(0);
            sim.groups.push(GroupSim {
                id,
                spec,
                log: Vec::new(),
                cursor,
                welcome: std::array::from_fn(|_| None),
                epoch_start: BTreeMap::from([(0, 0)]),
                welcomes_read: std::collections::HashSet::new(),
                joining: [None; N],
            });
            sim.commit(sim.groups.len() - 1, creator, &spec[1..], &[]);
        }
        sim.healing = false;
        sim
    }

    fn ck(&self, cond: bool, what: impl FnOnce() -> String) {
        check(cond, self.seed, what);
    }

    fn instant(&self) -> Instant {
        Instant(self.now)
    }

    fn alive(&self, a: usize) -> bool {
        self.hosts[a].agent.is_some()
    }

    fn link_up(&self, a: usize, b: usize) -> bool {
        !self.partitions.contains_key(&link(a, b))
    }

    /// Tell `a`'s agent which neighbours it can reach now.
    fn refresh_reach(&mut self, a: usize) {
        if !self.alive(a) {
            return;
        }
        for k in 0..self.neighbors[a].len() {
            let b = self.neighbors[a][k];
            let want = self.link_up(a, b) && self.alive(b) && !self.hosts[a].stale[b];
            if self.hosts[a].told[b] != want {
                let id = self.ids[b];
                self.hosts[a].agent.as_mut().unwrap().set_reachable(&id, want).unwrap();
                self.hosts[a].told[b] = want;
            }
        }
    }

    /// Store every pending record of `a` (one batch, committed at once).
    fn store(&mut self, a: usize) {
        let buf = &mut self.rec_buf;
        let mut batch = Vec::new();
        let h = &mut self.hosts[a];
        let agent = h.agent.as_mut().unwrap();
        while let Some(r) = agent.poll_persist(buf, &mut h.rng).unwrap() {
            batch.push((r.id, r.generation, buf[..r.len].to_vec()));
        }
        for (id, generation, blob) in batch {
            if let Some((old_blob, g)) = h.store.get(&id) {
                check(generation > *g, self.seed, || {
                    format!("agent {a}: {id:?} generation {generation} after {g}")
                });
                if h.old.len() < 8 {
                    h.old.push((id, *g, old_blob.clone()));
                } else {
                    let k = self.rng.pick(8);
                    h.old[k] = (id, *g, old_blob.clone());
                }
            }
            h.store.insert(id, (blob, generation));
            self.stats.records_stored += 1;
        }
    }

    /// Drain `a`'s events; returns the `Denied { NotPermitted }` count.
    fn drain_events(&mut self, a: usize) -> u64 {
        let mut not_permitted = 0;
        while let Some(e) = self.hosts[a].agent.as_mut().unwrap().poll_event() {
            match e {
                Event::HandshakeComplete { peer, pattern, session } => {
                    *self.stats.handshakes.entry(channel_name(pattern)).or_default() += 1;
                    if let Some(b) = self.ids.iter().position(|i| *i == peer) {
                        self.hosts[a].stale[b] = false;
                        self.hosts[a].newest[b] = Some(session);
                    }
                }
                Event::HandshakeFailed { peer, session, dropped, .. } => {
                    self.stats.handshakes_failed += 1;
                    if let Some(b) = self.ids.iter().position(|i| *i == peer) {
                        self.hosts[a].dropped_now.push((b, session, dropped));
                    }
                }
                Event::Denied { reason: DenyReason::NotPermitted { .. }, .. } => not_permitted += 1,
                Event::Denied { .. } => self.stats.denied_unknown_peer += 1,
                Event::AuthFailed { .. } => self.stats.auth_failed += 1,
                Event::RouteChosen { route, .. } => {
                    *self
                        .stats
                        .routes
                        .entry(format!("{:?}/{:?}", route.channel, route.reason))
                        .or_default() += 1
                }
                Event::HeartbeatSent { .. } => self.stats.heartbeats += 1,
                Event::ReestablishRequested { peer, session, .. } => {
                    self.stats.reestablish_requested += 1;
                    if let Some(b) = self.ids.iter().position(|i| *i == peer) {
                        self.hosts[a].controls_now.push((b, session));
                    }
                }
                Event::SessionReestablished { .. } => self.stats.reestablish_accepted += 1,
                Event::CommitDiscarded { .. } => self.stats.groups.discarded += 1,
                _ => {}
            }
        }
        not_permitted
    }

    /// After a call on `a`: events, maybe a crash before storing, store,
    /// maybe a crash before transmitting, transmits to the link. Returns
    /// whether the call's state was stored (the host may act on it), and
    /// the `Denied { NotPermitted }` events of the call.
    fn finish(&mut self, a: usize, ctx: Ctx) -> (bool, u64) {
        let not_permitted = self.drain_events(a);
        let faults = !self.healing;
        if faults
            && self.hosts[a].agent.as_ref().unwrap().persist_pending()
            && self.rng.chance(p::CRASH_BEFORE_STORE)
        {
            self.stats.crashes_before_store += 1;
            if let Ctx::Send(m) = ctx
                && self.msgs[m as usize].status == Status::Waiting
            {
                // `send` is undone with the process.
                self.msgs[m as usize].status = Status::Lost(Loss::SenderCrash);
            }
            self.crash(a);
            return (false, 0);
        }
        self.store(a);
        self.stats.denied_events += not_permitted;
        if faults && self.rng.chance(p::CRASH_BEFORE_TRANSMIT) {
            self.stats.crashes_before_transmit += 1;
            if let Ctx::Send(m) = ctx
                && self.msgs[m as usize].status == Status::Waiting
            {
                self.msgs[m as usize].status = Status::Lost(Loss::SenderCrash);
            }
            self.crash(a);
            return (true, not_permitted);
        }
        self.transmit(a, ctx);
        // Handing some envelopes out changes durable state (a Welcome
        // leaves the group's outbox): store and transmit until neither is
        // pending.
        while self.hosts[a].agent.as_ref().is_some_and(|x| x.persist_pending()) {
            self.store(a);
            let ctx = match ctx {
                Ctx::Send(m) if self.msgs[m as usize].status != Status::Waiting => Ctx::Input,
                c => c,
            };
            self.transmit(a, ctx);
        }
        (true, not_permitted)
    }

    /// Hand `a`'s transmits to the link.
    fn transmit(&mut self, a: usize, ctx: Ctx) {
        let mut buf = [0u8; 2048];
        let mut sent_msg = false;
        loop {
            let t = self.hosts[a].agent.as_mut().unwrap().poll_transmit(&mut buf).unwrap();
            let Some(t) = t else { break };
            let bytes = buf[..t.len].to_vec();
            let b = self.ids.iter().position(|i| *i == t.to).expect("transmit to a neighbour");
            let env = Envelope::parse(&bytes).unwrap();
            if let Delivery::Group(g) = t.delivery {
                // Into the group's delivery order (what an entry carries
                // is read from its payload when a member delivers it).
                let gi = self.groups.iter().position(|x| x.id == g).expect("a group of the simulation");
                self.groups[gi].log.push((a, bytes));
                continue;
            }
            if env.channel == ChannelKind::MlsWelcome {
                // To the joiner's mailbox (it reads the order from the
                // entry its epoch starts at).
                let gi = (0..self.groups.len())
                    .find(|&gi| {
                        self.hosts[a].agent.as_ref().unwrap().groups().any(|i| i.id == self.groups[gi].id)
                    })
                    .expect("a Welcome from a member");
                self.groups[gi].welcome[b] = Some(bytes);
                self.stats.groups.welcomes += 1;
                continue;
            }
            let direct = t.delivery == Delivery::Direct;
            assert!(direct || t.delivery == Delivery::Mailbox, "pairwise traffic only: {:?}", t.delivery);
            let msg = if direct && env.channel == ChannelKind::NoiseTransport {
                // The message of this `send` over an established session,
                // or the oldest one that waited for this handshake.
                let w = &mut self.hosts[a].waiting;
                let m = match ctx {
                    Ctx::Send(m) if !sent_msg && !w.iter().any(|x| x.3 == m) => {
                        sent_msg = true;
                        Some(m)
                    }
                    _ => w.iter().position(|x| (x.0, x.1) == (b, env.session)).map(|i| w.remove(i).3),
                };
                self.ck(m.is_some(), || format!("agent {a}: a Noise transport message to {b} nobody sent"));
                m
            } else if direct {
                None
            } else {
                match ctx {
                    Ctx::Send(m) if !sent_msg => {
                        sent_msg = true;
                        Some(m)
                    }
                    _ => None, // a heartbeat or a re-establishment's control message
                }
            };
            // A re-establishment's control message carries one byte.
            let control = !direct && msg.is_none() && {
                let c = &mut self.hosts[a].controls_now;
                c.iter().position(|x| *x == (b, env.session)).map(|i| c.remove(i)).is_some()
            };
            if let Some(m) = msg {
                self.ck(self.msgs[m as usize].to == b, || format!("message {m} mapped to the wrong peer"));
            }
            if !direct {
                // No message key is ever used twice, crashes included.
                let key_n = ratchet_key_and_n(
                    &env,
                    if msg.is_some() {
                        1 + PAYLOAD
                    } else if control {
                        1
                    } else {
                        0
                    },
                );
                let fresh = self.stats.wire_keys.insert(key_n);
                self.ck(fresh, || format!("agent {a}: a ratchet message key used twice"));
                self.upload(a, b, bytes, msg);
                continue;
            }
            let inc = self.hosts[b].inc;
            if let Some(m) = msg {
                self.msgs[m as usize].status = Status::Direct { inc };
            }
            let at = self.now + 1 + self.rng.below(20);
            if !self.alive(b) {
                // The connection to a crashed agent is down.
                self.stats.resets_lost += 1;
                if let Some(m) = msg {
                    self.msgs[m as usize].status = Status::Lost(Loss::ConnectionReset);
                }
            } else {
                self.direct.entry((a, b)).or_default().push_back(DirectItem { bytes, msg, inc, at });
            }
        }
        // Messages held for a transport dropped unconfirmed went with it.
        for (b, sid, _) in std::mem::take(&mut self.hosts[a].dropped_now) {
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.hosts[a].waiting)
                .into_iter()
                .partition(|x| x.2 && (x.0, x.1) == (b, sid));
            self.hosts[a].waiting = keep;
            for (_, _, _, m) in gone {
                self.msgs[m as usize].status = Status::Lost(Loss::HandshakeDropped);
            }
        }
        // Messages waiting for a handshake that no longer exists were
        // dropped with it (never sent).
        if !self.hosts[a].waiting.is_empty() {
            let live: Vec<(PeerId, securemesh::SessionId)> = self.hosts[a]
                .agent
                .as_ref()
                .unwrap()
                .sessions()
                .filter(|s| s.kind == SessionKind::NoiseHandshake)
                .map(|s| (s.peer, s.id))
                .collect();
            let ids = &self.ids;
            let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.hosts[a].waiting)
                .into_iter()
                .partition(|(b, sid, held, _)| *held || live.contains(&(ids[*b], *sid)));
            self.hosts[a].waiting = keep;
            for (_, _, _, m) in gone {
                self.msgs[m as usize].status = Status::Lost(Loss::HandshakeDropped);
            }
        }
    }

    fn upload(&mut self, from: usize, to: usize, bytes: Vec<u8>, msg: Option<u64>) {
        if !self.healing && self.rng.chance(p::UPLOAD_LOSS) {
            self.stats.uploads_lost += 1;
            if let Some(m) = msg {
                self.msgs[m as usize].status = Status::Lost(Loss::UploadLost);
            }
            return;
        }
        if let Some(m) = msg {
            self.msgs[m as usize].status = Status::Mailbox;
        }
        self.observe_upload(from, to, &bytes, msg.is_some());
        let at = self.now + self.rng.below(if self.healing { 50 } else { 3_000 });
        self.mailbox[to].push(MailItem { bytes, msg, from, sent: self.now, at, dup: false });
    }

    /// The adversary reads every upload to the victim's mailbox.
    fn observe_upload(&mut self, from: usize, to: usize, bytes: &[u8], application: bool) {
        let Some(c) = self.compromise.as_mut() else { return };
        if to != c.victim {
            return;
        }
        let healed = c.turns[from].0 >= HEAL_TURNS;
        let initial = Envelope::parse(bytes).unwrap().channel == ChannelKind::RatchetInitial;
        let mut out = [0u8; 2048];
        let r = c.clone.handle_input(bytes, &mut out, Instant(self.now), &mut c.rng);
        while c.clone.poll_persist(&mut self.rec_buf, &mut c.rng).unwrap().is_some() {}
        // A clone holding no session with the sender answers an unknown
        // session by re-establishing (`Ok(None)`): it read nothing.
        let mut reestablished = false;
        while let Some(e) = c.clone.poll_event() {
            reestablished |= matches!(e, Event::ReestablishRequested { .. });
        }
        let r = if reestablished { Err(Error::UnknownSession) } else { r };
        let mut t = [0u8; 2048];
        while c.clone.poll_transmit(&mut t).unwrap().is_some() {}
        if healed && initial {
            c.post_heal_initial += 1;
        } else if healed && !application {
            // A heartbeat carries no payload; one the stolen state still
            // reads shows a session that has not healed yet (it is
            // counted: application messages on it are checked below).
            c.post_heal_heartbeats += 1;
            if r.is_ok() {
                c.post_heal_heartbeats_read += 1;
            }
        } else if healed {
            c.post_heal_seen += 1;
            // Both directions of a pair step one ratchet session: after a
            // simultaneous X3DH the session the peer sends on is promoted
            // to the one we send on, and a heartbeat neither promotes the
            // session it arrives on nor goes on any but the newest, so the
            // pair's turns heal the session being read here.
            check(r.is_err(), self.seed, || {
                format!(
                    "the stolen state of agent {} decrypted a message from {from} after healing: {r:?}",
                    c.victim
                )
            });
        } else {
            c.pre_heal_seen += 1;
            if r.is_ok() {
                c.pre_heal_decrypted += 1;
            }
        }
    }

    /// A mailbox turn between the victim and a neighbour.
    fn turn(&mut self, from: usize, to: usize, sent: u64) {
        let Some(c) = self.compromise.as_mut() else { return };
        let d = if to == c.victim {
            from
        } else if from == c.victim {
            to
        } else {
            return;
        };
        let (n, last, who) = c.turns[d];
        if sent > last && who != Some(to) && sent >= c.at {
            c.turns[d] = (n + 1, self.now, Some(to));
        }
    }

    fn crash(&mut self, a: usize) {
        self.stats.crashes += 1;
        let m = self.hosts[a].agent.as_ref().unwrap().metrics();
        self.stats.metrics.add(&m);
        let h = &mut self.hosts[a];
        h.agent = None;
        h.told = [false; N];
        h.down_until = self.now + 300 + self.rng.below(4_000);
        for (_, _, _, m) in std::mem::take(&mut self.hosts[a].waiting) {
            self.msgs[m as usize].status = Status::Lost(Loss::SenderCrash);
        }
        self.hosts[a].dropped_now.clear();
        self.hosts[a].controls_now.clear();
        self.hosts[a].newest = [None; N];
        // Its connections are reset: what is in flight either way is lost.
        for &b in &self.neighbors[a].clone() {
            for dir in [(b, a), (a, b)] {
                if let Some(q) = self.direct.get_mut(&dir) {
                    for item in q.drain(..) {
                        self.stats.resets_lost += 1;
                        if let Some(m) = item.msg {
                            self.msgs[m as usize].status = Status::Lost(Loss::ConnectionReset);
                        }
                    }
                }
            }
            self.hosts[b].stale[a] = true;
            self.refresh_reach(b);
        }
    }

    fn restart(&mut self, a: usize) {
        self.stats.restarts += 1;
        let mut scratch = vec![0u8; REC];
        let key = || StorageKey::new(self.hosts[a].key);
        let (blob, generation) = self.hosts[a].store[&RecordId::Agent].clone();
        // The storage may offer an older blob first: refused.
        let olds: Vec<_> = self.hosts[a].old.clone();
        if !olds.is_empty() && self.rng.chance(p::ROLLBACK_TRY) {
            let (id, g, old) = &olds[self.rng.pick(olds.len())];
            let newest = self.hosts[a].store[id].1;
            let r = if *id == RecordId::Agent {
                SimAgent::restore(key(), self.config, old, newest, &mut scratch).map(|_| RecordId::Agent)
            } else {
                // Into a restored agent whose slot is still empty.
                let mut probe =
                    SimAgent::restore(key(), self.config, &blob, generation, &mut scratch).unwrap();
                probe.restore_record(old, newest, &mut scratch)
            };
            self.ck(matches!(r, Err(Error::Storage(securemesh_core::Error::Rollback { .. }))), || {
                format!("agent {a}: {id:?} generation {g} restored over {newest}: {r:?}")
            });
            self.stats.rollbacks_refused += 1;
        }
        let mut agent =
            Box::new(SimAgent::restore(key(), self.config, &blob, generation, &mut scratch).unwrap());
        // The mode is in the agent record: no `set_pq_mode` after restore.
        self.ck(agent.pq_mode() == pq_mode(), || format!("agent {a}: restored as {:?}", agent.pq_mode()));
        let records: Vec<_> = self.hosts[a]
            .store
            .iter()
            .filter(|(id, _)| **id != RecordId::Agent)
            .map(|(id, v)| (*id, v.clone()))
            .collect();
        for (id, (blob, g)) in records {
            assert_eq!(agent.restore_record(&blob, g, &mut scratch).unwrap(), id);
        }
        let h = &mut self.hosts[a];
        h.agent = Some(agent);
        h.inc += 1;
        h.stale = [false; N];
        h.told = [false; N];
        self.refresh_reach(a);
        for &b in &self.neighbors[a].clone() {
            self.refresh_reach(b);
        }
    }

    /// Application traffic: a random agent sends to a random neighbour.
    fn send(&mut self) {
        let a = self.rng.pick(N);
        if !self.alive(a) {
            return;
        }
        let b = self.neighbors[a][self.rng.pick(6)];
        let kind = if self.rng.chance(500_000) { TASK } else { TELEMETRY };
        let id = self.msgs.len() as u64;
        let denied = kind == TASK && self.sensor[b][a];
        self.msgs.push(Msg { from: a, to: b, kind, denied, status: Status::Waiting });
        self.stats.sends += 1;
        let body = payload(id, a, b);
        let now = self.instant();
        let peer = self.ids[b];
        let handshakes = |agent: &SimAgent| -> Vec<securemesh::SessionId> {
            agent
                .sessions()
                .filter(|s| s.peer == peer && s.kind == SessionKind::NoiseHandshake)
                .map(|s| s.id)
                .collect()
        };
        let h = &mut self.hosts[a];
        let agent = h.agent.as_mut().unwrap();
        let before = handshakes(agent);
        let mut r = agent.send(&peer, kind, &body, now, &mut h.rng);
        if matches!(r, Err(Error::NoRoute(_))) {
            // The peer is offline and nothing is known to reach it: fetch
            // its bundle from the directory server (no one-time prekey).
            let bundle = self.published_bundle(b);
            let h = &mut self.hosts[a];
            let agent = h.agent.as_mut().unwrap();
            agent.set_peer_bundle(&bundle).unwrap();
            self.stats.bundles_fetched += 1;
            r = agent.send(&peer, kind, &body, now, &mut h.rng);
        }
        match r {
            Ok(route) => {
                // A message that waits for a handshake: the one the agent
                // queues it behind (the first in its table), or the new one.
                let after = handshakes(self.hosts[a].agent.as_ref().unwrap());
                let waits_for = match (route.channel, route.reason) {
                    (Channel::NoiseSession, Reason::HandshakeInProgress) => after.first().copied(),
                    (Channel::NoiseIk | Channel::NoiseXx, _) => {
                        after.iter().find(|s| !before.contains(s)).copied()
                    }
                    _ => None,
                };
                if let Some(sid) = waits_for {
                    self.hosts[a].waiting.push((b, sid, false, id));
                }
                self.finish(a, Ctx::Send(id));
                // Over an established session but not sent: held until the
                // transport is confirmed.
                if self.alive(a)
                    && self.msgs[id as usize].status == Status::Waiting
                    && !self.hosts[a].waiting.iter().any(|x| x.3 == id)
                {
                    let newest = self.hosts[a].newest[b];
                    self.ck(route.channel == Channel::NoiseSession && newest.is_some(), || {
                        format!("message {id} neither sent nor held")
                    });
                    self.hosts[a].waiting.push((b, newest.unwrap(), true, id));
                }
            }
            Err(e) => {
                *self.stats.errors.entry(format!("send: {e:?}")).or_default() += 1;
                self.stats.sends_refused += 1;
                self.msgs[id as usize].status = Status::Lost(Loss::SendRefused);
                // A refused send changes nothing, but a fetched bundle does.
                self.finish(a, Ctx::Input);
            }
        }
    }

    /// The bundle the directory server holds for `b` (its current one,
    /// without a one-time prekey; when `b` is down, from its records).
    fn published_bundle(&mut self, b: usize) -> Vec<u8> {
        let mut buf = [0u8; securemesh_ratchet::MAX_BUNDLE_LEN];
        let n = if let Some(agent) = self.hosts[b].agent.as_ref() {
            agent.bundle_with(None, &mut buf).unwrap()
        } else {
            let (blob, g) = &self.hosts[b].store[&RecordId::Agent];
            let mut scratch = vec![0u8; REC];
            let agent =
                SimAgent::restore(StorageKey::new(self.hosts[b].key), self.config, blob, *g, &mut scratch)
                    .unwrap();
            agent.bundle_with(None, &mut buf).unwrap()
        };
        buf[..n].to_vec()
    }

    /// Give `bytes` to `to`'s agent; genuine traffic (`msg` is what the
    /// link knows it carries). Returns the result and whether the host
    /// stored and acted on it.
    fn deliver(
        &mut self,
        from: usize,
        to: usize,
        bytes: &[u8],
        msg: Option<u64>,
        dup: bool,
    ) -> (Result<bool, Error>, bool) {
        self.stats.deliveries += 1;
        let mut out = [0u8; 2048];
        let now = self.instant();
        let h = &mut self.hosts[to];
        let r = h.agent.as_mut().unwrap().handle_input(bytes, &mut out, now, &mut h.rng);
        let accepted = self.stats.reestablish_accepted;
        let (stored, not_permitted) = self.finish(to, Ctx::Input);
        // The control message of a peer's re-establishment (not a heartbeat).
        let control = self.stats.reestablish_accepted > accepted;
        let channel = Envelope::parse(bytes).unwrap().channel;
        match r {
            Ok(Some(rec)) => {
                self.ck(!dup, || format!("a duplicate delivered again to {to} (message {msg:?})"));
                let id = u64::from_le_bytes(out[..8].try_into().unwrap());
                self.ck(msg.is_none_or(|m| m == id), || {
                    format!("agent {to}: message {id} arrived where {msg:?} was sent")
                });
                let m = &self.msgs[id as usize];
                self.ck(rec.len == PAYLOAD && out[..PAYLOAD] == payload(id, m.from, m.to), || {
                    format!("agent {to}: message {id} delivered with a changed payload")
                });
                self.ck(
                    m.to == to && m.from == from && rec.from == self.ids[from] && rec.kind == m.kind,
                    || {
                        format!(
                            "agent {to}: message {id} delivered from the wrong peer or with the wrong kind"
                        )
                    },
                );
                self.ck(!m.denied, || {
                    format!("agent {to}: message {id} delivered though its kind is denied")
                });
                if stored {
                    self.ck(!matches!(m.status, Status::Delivered | Status::Denied), || {
                        format!("agent {to}: message {id} accepted twice")
                    });
                    self.msgs[id as usize].status = Status::Delivered;
                    *self.stats.received.entry(channel_name(rec.channel)).or_default() += 1;
                } else if channel == ChannelKind::NoiseTransport {
                    self.msgs[id as usize].status = Status::Lost(Loss::ReceiverCrash);
                }
                self.remember(to, bytes);
                (Ok(true), stored)
            }
            Ok(None) => {
                if let Some(m) = msg {
                    let denied = self.msgs[m as usize].denied;
                    self.ck(!dup, || format!("a duplicate of message {m} processed again by {to}"));
                    if stored {
                        self.ck(denied && not_permitted == 1, || {
                            format!("agent {to}: message {m} neither delivered nor denied as the policy says ({not_permitted} denials)")
                        });
                        self.msgs[m as usize].status = Status::Denied;
                        self.stats.denied_not_permitted += 1;
                    } else if channel == ChannelKind::NoiseTransport {
                        self.msgs[m as usize].status = Status::Lost(Loss::ReceiverCrash);
                    }
                } else {
                    self.ck(not_permitted == 0, || format!("agent {to}: a denial without a message"));
                    if stored && !control && !channel.is_handshake() {
                        self.stats.heartbeats_received += 1;
                    }
                }
                self.remember(to, bytes);
                (Ok(false), stored)
            }
            Err(e) => {
                self.ck(not_permitted == 0, || format!("agent {to}: a denial from a refused envelope"));
                *self.stats.errors.entry(format!("{channel:?}: {e:?}")).or_default() += 1;
                (Err(e), stored)
            }
        }
    }

    fn remember(&mut self, to: usize, bytes: &[u8]) {
        if self.recent.len() >= 64 {
            let k = self.rng.pick(64);
            self.recent[k] = (to, bytes.to_vec());
        } else {
            self.recent.push_back((to, bytes.to_vec()));
        }
    }

    /// Move what the link can move now.
    fn move_traffic(&mut self) {
        // Direct: the head of each connection, if its time has come.
        let keys: Vec<(usize, usize)> = self.direct.keys().copied().collect();
        for (a, b) in keys {
            loop {
                if !self.link_up(a, b) {
                    break;
                }
                let Some(q) = self.direct.get_mut(&(a, b)) else { break };
                let Some(head) = q.front() else { break };
                if head.at > self.now && !self.healing {
                    break;
                }
                let item = q.pop_front().unwrap();
                if !self.alive(b) || self.hosts[b].inc != item.inc {
                    self.stats.resets_lost += 1;
                    if let Some(m) = item.msg {
                        self.msgs[m as usize].status = Status::Lost(Loss::ConnectionReset);
                    }
                    continue;
                }
                self.stats.direct_deliveries += 1;
                let (r, _) = self.deliver(a, b, &item.bytes, item.msg, false);
                if let Err(e) = r {
                    // A direct envelope that reached the incarnation it was
                    // sent to must be accepted: an IK responder holds
                    // messages until key confirmation (SessionInfo::confirmed)
                    // and drops a transport still unconfirmed at the
                    // handshake timeout, so it never sends on a session its
                    // initiator dropped; and send uses the newest transport
                    // with the peer (holding while it is unconfirmed), not
                    // one of the peer's previous incarnation.
                    let ch = Envelope::parse(&item.bytes).unwrap().channel;
                    self.ck(item.msg.is_none() && ch != ChannelKind::NoiseTransport, || {
                        format!("direct {ch:?} from {a} to {b} (message {:?}) refused: {e:?}", item.msg)
                    });
                }
            }
        }
        // Mailboxes: each running agent fetches a few, each one of the
        // first `MAILBOX_WINDOW` ready ones in the order they came (the
        // mailbox reorders within that window; the ratchet's bound on
        // skipped keys is 32). Acknowledged ones leave it.
        for b in 0..N {
            for _ in 0..3 {
                if !self.alive(b) {
                    break;
                }
                let ready: Vec<usize> = (0..self.mailbox[b].len())
                    .filter(|&i| self.mailbox[b][i].at <= self.now)
                    .take(MAILBOX_WINDOW)
                    .collect();
                if ready.is_empty() {
                    break;
                }
                let i = ready[self.rng.pick(ready.len())];
                let (from, bytes, msg, dup, sent) = {
                    let it = &self.mailbox[b][i];
                    (it.from, it.bytes.clone(), it.msg, it.dup, it.sent)
                };
                self.stats.mailbox_deliveries += 1;
                if dup {
                    self.stats.duplicates += 1;
                }
                let (r, stored) = self.deliver(from, b, &bytes, msg, dup);
                if dup {
                    self.ck(r.is_err(), || format!("a duplicate accepted by {b}"));
                    self.stats.duplicates_refused += 1;
                    self.mailbox[b].remove(i);
                } else if r.is_ok() && stored {
                    let item = self.mailbox[b].remove(i);
                    self.turn(from, b, sent);
                    if !self.healing && self.rng.chance(p::MAILBOX_DUP) {
                        let at = self.now + self.rng.below(3_000);
                        self.mailbox[b].push(MailItem { at, dup: true, ..item });
                    }
                } else {
                    // Not stored (a crash) or refused: the mailbox keeps
                    // it in its place and offers it again later.
                    if r.is_err() {
                        self.stats.mailbox_retries += 1;
                    }
                    self.mailbox[b][i].at = self.now + 200 + self.rng.below(1_000);
                }
            }
        }
    }

    fn timeouts(&mut self) {
        for a in 0..N {
            let due = match self.hosts[a].agent.as_ref() {
                Some(agent) => agent.poll_timeout().is_some_and(|t| t.0 <= self.now),
                None => false,
            };
            if due {
                let now = self.instant();
                let h = &mut self.hosts[a];
                h.agent.as_mut().unwrap().handle_timeout(now, &mut h.rng);
                self.finish(a, Ctx::Timeout);
            }
        }
    }

    /// Partitions, crashes, restarts.
    fn faults(&mut self) {
        let heal: Vec<(usize, usize)> = self
            .partitions
            .iter()
            .filter(|(_, t)| **t <= self.now || self.healing)
            .map(|(k, _)| *k)
            .collect();
        for (a, b) in heal {
            self.partitions.remove(&(a, b));
            self.refresh_reach(a);
            self.refresh_reach(b);
        }
        for a in 0..N {
            if !self.alive(a) && (self.hosts[a].down_until <= self.now || self.healing) {
                self.restart(a);
            }
        }
        if self.healing {
            return;
        }
        if self.rng.chance(p::PARTITION) {
            let a = self.rng.pick(N);
            let b = self.neighbors[a][self.rng.pick(6)];
            let until = self.now + 200 + self.rng.below(8_000);
            self.partitions.insert(link(a, b), until);
            self.stats.partitions += 1;
            self.refresh_reach(a);
            self.refresh_reach(b);
        }
        if self.rng.chance(p::CRASH_IDLE) {
            let a = self.rng.pick(N);
            if self.alive(a) {
                self.crash(a);
            }
        }
    }

    /// Inject `bytes` into `to` as the adversary: never delivered.
    fn inject(&mut self, to: usize, bytes: &[u8], what: &'static str) {
        if !self.alive(to) {
            return;
        }
        *self.stats.injected.entry(what).or_default() += 1;
        let mut out = vec![0u8; SimAgent::input_buffer_len(bytes.len()).max(2048)];
        let now = self.instant();
        let h = &mut self.hosts[to];
        let r = h.agent.as_mut().unwrap().handle_input(bytes, &mut out, now, &mut h.rng);
        self.ck(!matches!(r, Ok(Some(_))), || format!("{what} envelope delivered to {to}: {r:?}"));
        if r.is_err() || matches!(r, Ok(None)) {
            self.stats.injected_refused += 1;
        }
        let (_, not_permitted) = self.finish(to, Ctx::Input);
        self.ck(not_permitted == 0, || format!("{what} envelope denied as a genuine message"));
    }

    fn adversary(&mut self) {
        if self.rng.chance(p::TAMPER) {
            // A copy of an envelope in flight, one bit flipped.
            let queued: Vec<(usize, usize)> =
                self.direct.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect();
            let pick = if !queued.is_empty() && self.rng.chance(500_000) {
                let (a, b) = queued[self.rng.pick(queued.len())];
                Some((b, self.direct[&(a, b)][0].bytes.clone()))
            } else {
                let b = self.rng.pick(N);
                (!self.mailbox[b].is_empty())
                    .then(|| (b, self.mailbox[b][self.rng.pick(self.mailbox[b].len())].bytes.clone()))
            };
            if let Some((b, mut bytes)) = pick {
                let i = self.rng.pick(bytes.len());
                bytes[i] ^= 1 << self.rng.below(8);
                self.inject(b, &bytes, "tampered");
            }
        }
        if self.rng.chance(p::GROUP_TAMPER) {
            // A group entry to a member: replayed (one it read) or with a
            // bit flipped (any).
            let gi = self.rng.pick(self.groups.len());
            let readers: Vec<(usize, usize)> =
                (0..N).filter_map(|x| self.groups[gi].cursor[x].map(|k| (x, k))).collect();
            if !readers.is_empty() && !self.groups[gi].log.is_empty() {
                let (x, k) = readers[self.rng.pick(readers.len())];
                let j = self.rng.pick(self.groups[gi].log.len());
                let mut bytes = self.groups[gi].log[j].1.clone();
                if j < k && self.rng.chance(500_000) {
                    self.inject(x, &bytes, "replayed group entry");
                } else {
                    let i = self.rng.pick(bytes.len());
                    bytes[i] ^= 1 << self.rng.below(8);
                    self.inject(x, &bytes, "tampered group entry");
                }
            }
        }
        if self.rng.chance(p::REPLAY) && !self.recent.is_empty() {
            let (b, bytes) = self.recent[self.rng.pick(self.recent.len())].clone();
            self.inject(b, &bytes, "replayed");
        }
        if self.rng.chance(p::RESENDER) && !self.recent.is_empty() {
            // A delivered envelope re-addressed as from another neighbour.
            let (b, bytes) = self.recent[self.rng.pick(self.recent.len())].clone();
            let env = Envelope::parse(&bytes).unwrap();
            let other = self.ids[self.neighbors[b][self.rng.pick(6)]];
            if other != env.sender {
                let forged = Envelope { sender: other, ..env };
                let mut wire = vec![0u8; forged.encoded_len()];
                forged.encode(&mut wire).unwrap();
                self.inject(b, &wire, "re-addressed");
            }
        }
        if self.rng.chance(p::OUTSIDER) {
            // An outsider nobody's policy knows, online (IK) or through
            // a bundle (X3DH).
            let b = self.neighbors[0][self.rng.pick(6)];
            let peer = self.ids[b];
            let online = self.rng.chance(500_000);
            self.outsider.set_reachable(&peer, online).unwrap();
            if !online {
                let bundle = self.published_bundle(b);
                self.outsider.set_peer_bundle(&bundle).unwrap();
            }
            let body = payload(u64::MAX, N, b);
            if self.outsider.send(&peer, TASK, &body, self.instant(), &mut self.outsider_rng).is_ok() {
                let mut t = [0u8; 2048];
                let mut wires = Vec::new();
                while let Some(x) = self.outsider.poll_transmit(&mut t).unwrap() {
                    wires.push(t[..x.len].to_vec());
                }
                for w in wires {
                    self.inject(b, &w, "outsider");
                }
            }
            while self.outsider.poll_event().is_some() {}
            // Drop its half-made sessions so the table never fills.
            if self.outsider.sessions().count() > 20 {
                let mut orng = TestRng::new(self.rng.next());
                *self.outsider =
                    SimAgent::new_pq(Identity::generate(&mut orng), self.config, pq_mode(), &mut orng, WALL);
                self.outsider.policy_mut().define_role(WORKER, Permissions::of(&[TASK])).unwrap();
                for &n in &self.neighbors[0] {
                    self.outsider.add_peer_identity(&self.identities[n]).unwrap();
                }
                self.outsider_rng = orng;
            }
        }
        if self.compromise.is_some() && self.rng.chance(p::FORGE_WITH_STOLEN) {
            self.forge_with_stolen();
        }
    }

    /// `x` learns a fresh KeyPackage of `y`; whether both stored it.
    fn share_key_package(&mut self, y: usize, x: usize) -> bool {
        if !self.alive(y) || !self.alive(x) {
            return false;
        }
        let mut kp = vec![0u8; MAX_KEY_PACKAGE_LEN];
        let h = &mut self.hosts[y];
        let n = match h.agent.as_mut().unwrap().publish_key_package(WALL, &mut kp, &mut h.rng) {
            Ok(n) => n,
            Err(e) => {
                *self.stats.groups.errors.entry(format!("publish_key_package: {e:?}")).or_default() += 1;
                return false;
            }
        };
        if !self.finish(y, Ctx::Input).0 || !self.alive(x) {
            return false;
        }
        let r = self.hosts[x].agent.as_mut().unwrap().set_peer_key_package(&kp[..n], WALL);
        self.ck(r == Ok(self.ids[y]), || format!("agent {x} refused {y}'s KeyPackage: {r:?}"));
        self.finish(x, Ctx::Input).0
    }

    /// `x` commits adds and removes to group `gi` (none: a commit that
    /// refreshes its own keys).
    fn commit(&mut self, gi: usize, x: usize, add: &[usize], remove: &[usize]) {
        for &y in add {
            if !self.share_key_package(y, x) {
                return;
            }
        }
        if !self.alive(x) {
            return;
        }
        let gid = self.groups[gi].id;
        let add_ids: Vec<PeerId> = add.iter().map(|&y| self.ids[y]).collect();
        let remove_ids: Vec<PeerId> = remove.iter().map(|&y| self.ids[y]).collect();
        let mut scratch = vec![0u8; COMMIT_SCRATCH_LEN];
        let h = &mut self.hosts[x];
        let r =
            h.agent.as_mut().unwrap().commit_members(gid, &add_ids, &remove_ids, &mut h.rng, &mut scratch);
        match r {
            Ok(_) => {
                self.stats.groups.commits += 1;
                self.stats.groups.adds += add.len() as u64;
                self.stats.groups.removes += remove.len() as u64;
            }
            Err(e) => *self.stats.groups.errors.entry(format!("commit: {e:?}")).or_default() += 1,
        }
        self.finish(x, Ctx::Input);
    }

    /// A member of group `gi` that can send or commit now.
    fn group_member(&mut self, gi: usize) -> Option<usize> {
        let gid = self.groups[gi].id;
        let ready: Vec<usize> = self.groups[gi]
            .spec
            .iter()
            .copied()
            .filter(|&x| {
                self.hosts[x]
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.groups().any(|i| i.id == gid && !i.commit_pending))
            })
            .collect();
        (!ready.is_empty()).then(|| ready[self.rng.pick(ready.len())])
    }

    /// Group traffic: an application message, or a commit.
    fn group_action(&mut self) {
        if self.rng.chance(p::GROUP_SEND) {
            let gi = self.rng.pick(self.groups.len());
            if let Some(x) = self.group_member(gi) {
                let kind = if self.rng.chance(500_000) { TASK } else { TELEMETRY };
                let id = self.msgs.len() as u64;
                self.msgs.push(Msg { from: x, to: N, kind, denied: false, status: Status::Waiting });
                let gid = self.groups[gi].id;
                let now = self.instant();
                let h = &mut self.hosts[x];
                match h.agent.as_mut().unwrap().send(&gid, kind, &payload(id, x, N), now, &mut h.rng) {
                    Ok(_) => {
                        self.stats.groups.sent += 1;
                        self.msgs[id as usize].status = Status::Group;
                    }
                    Err(e) => {
                        self.stats.groups.refused += 1;
                        *self.stats.groups.errors.entry(format!("send: {e:?}")).or_default() += 1;
                        self.msgs[id as usize].status = Status::Lost(Loss::SendRefused);
                    }
                }
                self.finish(x, Ctx::Send(id));
            }
        }
        if self.rng.chance(p::GROUP_COMMIT) {
            let gi = self.rng.pick(self.groups.len());
            let Some(x) = self.group_member(gi) else { return };
            let gid = self.groups[gi].id;
            let roster: Vec<usize> = self.hosts[x]
                .agent
                .as_ref()
                .unwrap()
                .group_members(gid)
                .map(|p| self.ids.iter().position(|i| *i == p).unwrap())
                .collect();
            let absent: Vec<usize> = self.groups[gi]
                .spec
                .iter()
                .copied()
                .filter(|y| {
                    !roster.contains(y)
                        && self.groups[gi].cursor[*y].is_none()
                        && self.groups[gi].welcome[*y].is_none()
                })
                .collect();
            if !absent.is_empty() && self.rng.chance(600_000) {
                let y = absent[self.rng.pick(absent.len())];
                self.commit(gi, x, &[y], &[]);
            } else if roster.len() > 3 && self.rng.chance(500_000) {
                let others: Vec<usize> = roster.iter().copied().filter(|&y| y != x).collect();
                let y = others[self.rng.pick(others.len())];
                self.commit(gi, x, &[], &[y]);
            } else {
                self.commit(gi, x, &[], &[]);
            }
        }
    }

    /// Member `x` reads its next entry of group `gi`'s order.
    fn read_group(&mut self, gi: usize, x: usize) {
        let k = self.groups[gi].cursor[x].unwrap();
        let (sender, bytes) = self.groups[gi].log[k].clone();
        let gid = self.groups[gi].id;
        self.stats.deliveries += 1;
        self.stats.groups.deliveries += 1;
        let mut out = vec![0u8; SimAgent::input_buffer_len(bytes.len()).max(2048)];
        let epoch = |a: &SimAgent| a.groups().find(|i| i.id == gid).map(|i| i.epoch);
        let before = epoch(self.hosts[x].agent.as_ref().unwrap());
        let now = self.instant();
        let h = &mut self.hosts[x];
        let r = h.agent.as_mut().unwrap().handle_input(&bytes, &mut out, now, &mut h.rng);
        let (stored, not_permitted) = self.finish(x, Ctx::Input);
        if stored
            && let Some(after) = self.hosts[x].agent.as_ref().and_then(|a| epoch(a))
            && Some(after) != before
        {
            let start = *self.groups[gi].epoch_start.entry(after).or_insert(k + 1);
            self.ck(start == k + 1, || {
                format!(
                    "group {gi}: agent {x} entered epoch {after} at entry {} where others did at {start}",
                    k + 1
                )
            });
        }
        match r {
            Ok(Some(rec)) => {
                let id = u64::from_le_bytes(out[..8].try_into().unwrap());
                self.ck((id as usize) < self.msgs.len() && rec.group == Some(gid), || {
                    format!("agent {x}: group message {id} delivered from entry {k} of group {gi}")
                });
                let m = &self.msgs[id as usize];
                self.ck(
                    m.status == Status::Group
                        && m.to == N
                        && m.from == sender
                        && rec.from == self.ids[sender]
                        && rec.kind == m.kind
                        && rec.len == PAYLOAD
                        && out[..PAYLOAD] == payload(id, m.from, N),
                    || format!("agent {x}: group message {id} delivered changed or from the wrong member"),
                );
                self.ck(!(m.kind == TASK && self.sensor[x][sender]), || {
                    format!("agent {x}: group message {id} delivered though its kind is denied")
                });
                if stored {
                    let fresh = self.group_accepted.insert((id, x));
                    self.ck(fresh, || format!("agent {x}: group message {id} accepted twice"));
                    self.stats.groups.accepted += 1;
                }
            }
            Ok(None) => {
                // A commit, our own message, or a refusal by the policy,
                // which only a sender granted `SENSOR` can draw (a task).
                if stored && not_permitted > 0 {
                    self.ck(not_permitted == 1 && self.sensor[x][sender], || {
                        format!(
                            "agent {x}: entry {k} of group {gi} from {sender} denied though its role permits"
                        )
                    });
                    self.stats.groups.denied += 1;
                }
            }
            Err(e) => *self.stats.groups.errors.entry(format!("read: {e:?}")).or_default() += 1,
        }
        if stored {
            // The service moves on; a member that left stops reading.
            let left = self.hosts[x].agent.as_ref().is_some_and(|a| !a.groups().any(|i| i.id == gid));
            self.groups[gi].cursor[x] = if left { None } else { Some(k + 1) };
        }
    }

    /// Joiner `x` reads its Welcome to group `gi`.
    fn read_welcome(&mut self, gi: usize, x: usize) {
        let bytes = self.groups[gi].welcome[x].clone().unwrap();
        let gid = self.groups[gi].id;
        self.stats.deliveries += 1;
        let mut out = vec![0u8; SimAgent::input_buffer_len(bytes.len()).max(2048)];
        let now = self.instant();
        let h = &mut self.hosts[x];
        let r = h.agent.as_mut().unwrap().handle_input(&bytes, &mut out, now, &mut h.rng);
        let (stored, _) = self.finish(x, Ctx::Input);
        if self.groups[gi].welcomes_read.contains(&(x, bytes.clone())) {
            // Released again by a committer restored from a record that
            // still held it (at least once): refused, nothing changes.
            self.ck(r.is_err(), || format!("agent {x}: a Welcome to group {gi} accepted twice"));
            self.stats.groups.welcome_duplicates += 1;
            self.groups[gi].welcome[x] = None;
            return;
        }
        self.ck(r.is_ok(), || format!("agent {x}: a genuine Welcome to group {gi} refused: {r:?}"));
        if stored {
            // (A crash right after storing: the restored agent is the member.)
            let agent = match self.hosts[x].agent.as_ref() {
                Some(a) => a,
                None => {
                    self.restart(x);
                    self.hosts[x].agent.as_ref().unwrap()
                }
            };
            let joined = agent.groups().find(|i| i.id == gid).map(|i| i.epoch);
            self.ck(joined.is_some(), || format!("agent {x}: not a member of group {gi} after its Welcome"));
            // It reads the order from where its epoch starts (once a
            // member that entered the epoch has stored it).
            self.groups[gi].joining[x] = joined;
            self.groups[gi].welcome[x] = None;
            self.groups[gi].welcomes_read.insert((x, bytes));
        }
    }

    /// Every member reads a little of its groups' orders.
    fn move_groups(&mut self) {
        for gi in 0..self.groups.len() {
            for x in 0..N {
                let g = &mut self.groups[gi];
                if let Some(e) = g.joining[x]
                    && let Some(start) = g.epoch_start.get(&e).copied()
                {
                    g.cursor[x] = Some(start);
                    g.joining[x] = None;
                }
                for _ in 0..2 {
                    if !self.alive(x) {
                        break;
                    }
                    if self.groups[gi].welcome[x].is_some() {
                        self.read_welcome(gi, x);
                    } else if self.groups[gi].joining[x].is_none()
                        && self.groups[gi].cursor[x].is_some_and(|k| k < self.groups[gi].log.len())
                    {
                        self.read_group(gi, x);
                    } else {
                        break;
                    }
                }
            }
        }
    }

    /// The adversary steals `victim`'s stored records and storage key.
    fn steal(&mut self, victim: usize) {
        let mut scratch = vec![0u8; REC];
        let h = &self.hosts[victim];
        let (blob, g) = &h.store[&RecordId::Agent];
        let mut clone =
            Box::new(SimAgent::restore(StorageKey::new(h.key), self.config, blob, *g, &mut scratch).unwrap());
        self.ck(clone.pq_mode() == pq_mode(), || {
            format!("agent {victim}: stolen record as {:?}", clone.pq_mode())
        });
        for (id, (blob, g)) in &h.store {
            if *id != RecordId::Agent {
                clone.restore_record(blob, *g, &mut scratch).unwrap();
            }
        }
        self.compromise = Some(Compromise {
            victim,
            at: self.now,
            clone,
            rng: TestRng::new(self.seed.rotate_left(41) ^ 0x57_01E9),
            turns: [(0, self.now, None); N],
            pre_heal_seen: 0,
            pre_heal_decrypted: 0,
            post_heal_seen: 0,
            post_heal_initial: 0,
            forged: 0,
            post_heal_heartbeats: 0,
            post_heal_heartbeats_read: 0,
        });
    }

    /// With the stolen state: a message to a neighbour of the victim,
    /// under the name of another of that neighbour's peers.
    fn forge_with_stolen(&mut self) {
        let c = self.compromise.as_mut().unwrap();
        let victim = c.victim;
        let d = self.neighbors[victim][self.rng.pick(6)];
        let others: Vec<usize> = self.neighbors[d].iter().copied().filter(|&e| e != victim).collect();
        let e = others[self.rng.pick(others.len())];
        let now = Instant(self.now);
        // Through the victim's ratchet session (it is offline to the clone).
        let r = c.clone.send(&self.ids[d], TASK, &payload(u64::MAX - 1, e, d), now, &mut c.rng);
        while c.clone.poll_persist(&mut self.rec_buf, &mut c.rng).unwrap().is_some() {}
        while c.clone.poll_event().is_some() {}
        let mut t = [0u8; 2048];
        let mut wires = Vec::new();
        while let Some(x) = c.clone.poll_transmit(&mut t).unwrap() {
            wires.push(t[..x.len].to_vec());
        }
        if r.is_err() {
            return;
        }
        c.forged += 1;
        for w in wires {
            let env = Envelope::parse(&w).unwrap();
            let forged = Envelope { sender: self.ids[e], ..env };
            let mut wire = vec![0u8; forged.encoded_len()];
            forged.encode(&mut wire).unwrap();
            self.inject(d, &wire, "forged with the stolen state");
        }
    }

    fn iteration(&mut self) {
        self.stats.iterations += 1;
        self.now += 2;
        self.faults();
        if !self.healing {
            if self.rng.chance(p::SEND) {
                self.send();
            }
            self.adversary();
            self.group_action();
        }
        self.move_traffic();
        self.move_groups();
        self.timeouts();
    }

    /// What keeps the run from healing, and why.
    fn report_stuck(&mut self) {
        for b in 0..N {
            for i in 0..self.mailbox[b].len() {
                let item = &self.mailbox[b][i];
                if item.dup {
                    continue;
                }
                let (from, msg, bytes) = (item.from, item.msg, item.bytes.clone());
                let env = Envelope::parse(&bytes).unwrap();
                let (channel, session) = (env.channel, env.session);
                let mut out = [0u8; 2048];
                let now = self.instant();
                let h = &mut self.hosts[b];
                let r = h.agent.as_mut().unwrap().handle_input(&bytes, &mut out, now, &mut h.rng);
                println!(
                    "stuck: mailbox of {b}: from {from}, message {msg:?}, {channel:?} session {session:?}: {r:?}"
                );
            }
        }
        for ((a, b), q) in &self.direct {
            if !q.is_empty() {
                println!("stuck: direct {a}->{b}: {} envelopes", q.len());
            }
        }
    }

    fn quiet(&self) -> bool {
        self.direct.values().all(VecDeque::is_empty)
            && self.mailbox.iter().all(|m| m.iter().all(|i| i.dup))
            && self.partitions.is_empty()
            && (0..N).all(|a| self.alive(a))
            && self.groups.iter().all(|g| {
                g.welcome.iter().all(Option::is_none)
                    && g.joining.iter().all(Option::is_none)
                    && g.cursor.iter().flatten().all(|k| *k == g.log.len())
            })
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        }
        Err(_) => default,
    }
}

/// `MESH_SIM_PQ`: `off` (default), `prefer` or `require` (the agents'
/// [`securemesh::PqMode`]; hybrid needs the feature `pq`).
fn pq_mode() -> securemesh::PqMode {
    match std::env::var("MESH_SIM_PQ").as_deref().map(str::trim) {
        Err(_) | Ok("off") => securemesh::PqMode::Off,
        Ok("prefer") => securemesh::PqMode::Prefer,
        Ok("require") => securemesh::PqMode::Require,
        Ok(v) => panic!("MESH_SIM_PQ={v}: off, prefer or require"),
    }
}

/// The simulation runs on a thread of its own with a 64 MiB stack: an
/// unoptimised build moves agents (118 KB with the feature `pq`) through
/// several frames, more than a test thread's 2 MiB.
#[test]
fn sixteen_agents_under_faults_keep_every_invariant() {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn run() {
    let started = std::time::Instant::now();
    let seed = env_u64("MESH_SIM_SEED", DEFAULT_SEED);
    let target = env_u64("MESH_SIM_DELIVERIES", DEFAULT_DELIVERIES);
    println!("mesh_sim: MESH_SIM_SEED={seed:#x} MESH_SIM_DELIVERIES={target} MESH_SIM_PQ={:?}", pq_mode());
    let mut sim = Sim::new(seed);
    let victim = 5;
    while sim.stats.deliveries < target {
        if sim.compromise.is_none() && sim.stats.deliveries >= target / 4 && sim.alive(victim) {
            sim.steal(victim);
        }
        sim.iteration();
    }
    let faulty_deliveries = sim.stats.deliveries;
    // Heal: no new sends, no faults; partitions heal, agents restart,
    // every queue drains.
    sim.healing = true;
    let mut rounds = 0;
    while !sim.quiet() || rounds < 100 {
        sim.iteration();
        rounds += 1;
        if rounds >= 200_000 {
            sim.report_stuck();
            panic!("the run does not heal (MESH_SIM_SEED={seed:#x})");
        }
    }
    // Invariant 7: every acknowledged message was accepted.
    let unaccepted: Vec<(usize, &Msg)> = sim
        .msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m.status, Status::Direct { .. } | Status::Mailbox))
        .collect();
    check(unaccepted.is_empty(), seed, || {
        let first: Vec<String> = unaccepted
            .iter()
            .take(10)
            .map(|(i, m)| format!("#{i} {}->{} {:?}", m.from, m.to, m.status))
            .collect();
        format!("{} acknowledged messages never accepted: {}", unaccepted.len(), first.join(", "))
    });
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for m in &sim.msgs {
        let k = match m.status {
            Status::Lost(l) => format!("lost: {l:?}"),
            Status::Direct { .. } => "direct in flight".into(),
            s => format!("{s:?}").to_lowercase(),
        };
        *by_status.entry(k).or_default() += 1;
    }
    // Invariant 3: one `Denied { NotPermitted }` per refused message.
    let expected_denied = sim.msgs.iter().filter(|m| m.status == Status::Denied).count() as u64;
    let expected_denied = expected_denied + sim.stats.groups.denied;
    check(expected_denied == sim.stats.denied_events, seed, || {
        format!("{} denials for {expected_denied} refused messages", sim.stats.denied_events)
    });
    // All members of a group agree on its epoch and state, and on who the
    // members are.
    let mut group_lines = Vec::new();
    for (gi, g) in sim.groups.iter().enumerate() {
        let members: Vec<usize> =
            (0..N).filter(|&x| sim.hosts[x].agent.as_ref().unwrap().groups().any(|i| i.id == g.id)).collect();
        check(members.len() >= 2, seed, || format!("group {gi} has {} members left", members.len()));
        let state = |x: usize| {
            let a = sim.hosts[x].agent.as_ref().unwrap();
            let info = a.groups().find(|i| i.id == g.id).unwrap();
            let mut roster: Vec<PeerId> = a.group_members(g.id).collect();
            roster.sort();
            (info.epoch, info.commit_pending, a.group_epoch_authenticator(g.id).unwrap(), roster)
        };
        let first = state(members[0]);
        for &x in &members {
            let st = state(x);
            check(st == first, seed, || {
                format!(
                    "group {gi}: member {x} at epoch {} (pending {}) disagrees with member {} at epoch {} (pending {})",
                    st.0, st.1, members[0], first.0, first.1
                )
            });
        }
        let mut ids: Vec<PeerId> = members.iter().map(|&x| sim.ids[x]).collect();
        ids.sort();
        check(first.3 == ids, seed, || format!("group {gi}: the roster names agents that are not members"));
        group_lines.push(format!(
            "group {gi}: {} members {members:?} agree on epoch {} and its authenticator",
            members.len(),
            first.0
        ));
    }
    check(sim.msgs.iter().all(|m| m.status != Status::Delivered || !m.denied), seed, || {
        "a message the policy refuses was delivered".into()
    });
    let c = sim.compromise.as_ref().expect("the compromise happened");
    let healed = c.turns.iter().filter(|t| t.0 >= HEAL_TURNS).count();
    // The theft was real: the clone read the victim's traffic before healing.
    check(c.pre_heal_decrypted > 0, seed, || "the stolen state never decrypted anything".into());
    check(c.post_heal_seen > 0, seed, || "no traffic after healing to check the stolen state against".into());

    let mut sim = sim;
    for a in 0..N {
        let m = sim.hosts[a].agent.as_ref().unwrap().metrics();
        sim.stats.metrics.add(&m);
    }
    let c = sim.compromise.as_ref().unwrap();
    let s = &sim.stats;
    let t = &s.metrics;
    println!(
        "mesh_sim: seed {seed:#x}, {N} agents, {} links, {} iterations, sim time {} s",
        N * 3,
        s.iterations,
        sim.now / 1000
    );
    println!(
        "  deliveries {} (direct {}, mailbox {}; {} under faults, then healed), mailbox duplicates {} (all refused: {}), mailbox retries {}",
        s.deliveries,
        s.direct_deliveries,
        s.mailbox_deliveries,
        faulty_deliveries,
        s.duplicates,
        s.duplicates_refused,
        s.mailbox_retries
    );
    println!(
        "  drops: uploads lost {}, direct lost to connection resets {}; partitions {}",
        s.uploads_lost, s.resets_lost, s.partitions
    );
    println!(
        "  crashes {} (before store {}, before transmit {}, idle {}), restarts {}, rollbacks refused {}, records stored {}",
        s.crashes,
        s.crashes_before_store,
        s.crashes_before_transmit,
        s.crashes - s.crashes_before_store - s.crashes_before_transmit,
        s.restarts,
        s.rollbacks_refused,
        s.records_stored
    );
    println!(
        "  pairwise messages sent {} (refused by send {}), bundles fetched {}",
        s.sends, s.sends_refused, s.bundles_fetched
    );
    println!("  message outcomes {by_status:?}");
    println!("  accepted per channel {:?}", s.received);
    println!("  routes {:?}", s.routes);
    println!("  handshakes {:?}, failed {}", s.handshakes, s.handshakes_failed);
    println!(
        "  denials: Denied {{ NotPermitted }} events {} = refused messages {} ({} pairwise, {} in groups); unknown peer {}, auth failures {}",
        s.denied_events,
        expected_denied,
        s.denied_not_permitted,
        s.groups.denied,
        s.denied_unknown_peer,
        s.auth_failed
    );
    println!(
        "  heartbeats sent {}, received {}; distinct ratchet message keys on the wire {} (none twice)",
        s.heartbeats,
        s.heartbeats_received,
        s.wire_keys.len()
    );
    println!(
        "  ratchet sessions re-established: requested {} (by agents holding none with the claimed sender), accepted {}",
        s.reestablish_requested, s.reestablish_accepted
    );
    println!(
        "  agents' metrics (all incarnations): noise sent/received/failures/denied {:?}, ratchet sent/received/failures/denied/heartbeats sent/received {:?}, handshakes completed {} (latency max {} ms), ratchet steps {}, records persisted {}, prekey refills {}",
        t.noise,
        t.ratchet,
        t.handshakes_completed,
        t.handshake_latency_max_ms,
        t.ratchet_steps,
        t.records_persisted,
        t.prekey_refills
    );
    println!(
        "  post-quantum: hybrid handshakes {}, PQXDH sessions {}, KEM prekey refills {}, refused for pq status {}",
        t.pq[0], t.pq[1], t.pq[2], t.pq[3]
    );
    println!("  adversary: {:?}, all refused ({})", s.injected, s.injected_refused);
    println!(
        "  compromise of agent {}: {healed}/6 neighbours healed; before healing {}/{} of its mailbox traffic decrypted by the stolen state, after healing none of {} application messages (+{} initial messages not counted; heartbeats still readable {}/{}), {} forgeries under other names, none delivered",
        c.victim,
        c.pre_heal_decrypted,
        c.pre_heal_seen,
        c.post_heal_seen,
        c.post_heal_initial,
        c.post_heal_heartbeats_read,
        c.post_heal_heartbeats,
        c.forged
    );
    let gs = &s.groups;
    println!(
        "  groups: {} application messages sent ({} refused), {} deliveries to members, {} accepted, {} denied by policy; {} commits ({} adds, {} removes, {} discarded for a concurrent one), {} Welcomes ({} released again after a restart, refused); errors {:?}",
        gs.sent,
        gs.refused,
        gs.deliveries,
        gs.accepted,
        gs.denied,
        gs.commits,
        gs.adds,
        gs.removes,
        gs.discarded,
        gs.welcomes,
        gs.welcome_duplicates,
        gs.errors
    );
    for l in &group_lines {
        println!("    {l}");
    }
    println!("  errors (refused envelopes) {:?}", s.errors);
    println!("  wall time {:.1} s", started.elapsed().as_secs_f64());
}

//! Mesh agents on the device (`securemesh`, issue #9): one agent, the
//! hub, routes to a Noise peer and to a ratchet peer; the peers are agents
//! of the same firmware and every envelope is carried by the firmware's
//! loop ([`pump`]).
//!
//! 1. Three agents of type [`MeshAgent`] are made (`Agent::new`: identity,
//!    prekey pool of [`PREKEYS`]). The hub turns persistence on, knows
//!    bob's identity and sees him online, holds carol's prekey bundle and
//!    sees her offline; bob lets the hub send tasks and reports, carol only
//!    reports (role `SENSOR`).
//! 2. **Noise**: the hub sends a task to bob. The route is Noise IK
//!    (online, static key known); the loop carries the handshake and the
//!    waiting message directly (`Delivery::Direct`) and bob delivers it;
//!    bob's reply goes over the established session.
//! 3. **Ratchet**: the hub sends carol a report, a task and a report. The
//!    route is X3DH from her bundle, then her ratchet session; all three go
//!    to carol's mailbox (`Delivery::Mailbox`), which in the firmware is
//!    just a buffer. Carol reads it: the reports are delivered, the task is
//!    **denied by her policy** (`Event::Denied`, counted, no plaintext
//!    left in the output buffer), and her reply, through the hub's
//!    mailbox, is delivered to the hub.
//! 4. **Persistence**: the loop stores every record the hub hands out
//!    (`poll_persist`) before it carries the hub's envelopes. The hub is
//!    then dropped (a restart) and restored into its (emptied) static
//!    from the stored agent record and session records; an older
//!    generation is refused as a rollback. The restored hub continues
//!    the ratchet session with carol (the next report is delivered) and
//!    opens a new Noise IK session with bob, who delivers again.
//!
//! Every delivery is checked: payload, sender, kind and channel; so are
//! the routes and their reasons, handshake and denial events, counters
//! and the session table. Every agent call that does more than read or
//! set a field (sends, reads, the loop, persistence, restores) runs inside
//! a measured step, so the largest stack figure of the `op mesh-...` lines
//! is the peak of the check.

use crate::checks::Checks;
use crate::family::Family;
use crate::measure::{Cost, Meter, MeterError};
use crate::slot::Slot;
use crate::test_rng::NotRandomTestRng;
use core::cell::RefCell;
use cortex_m::interrupt::{self, Mutex};
use cortex_m_semihosting::hprintln;
use securemesh::policy::DenyReason;
use securemesh::{
    Agent, Channel, ChannelKind, Config, DefaultAgent, Delivery, Error, Event, MessageKind, PeerId,
    Permissions, Purpose, RatchetSession, Reason, Received, RecordId, Role, Roles, Route, SessionKind,
};
use securemesh_core::envelope::StorageKey;
use securemesh_core::{Instant, UnixTime};
use securemesh_ratchet::{Identity, MAX_BUNDLE_LEN};

/// Directory and policy entries per agent.
pub const PEERS: usize = 4;
/// Session slots per agent (Noise handshakes and transports, ratchet
/// sessions). Two: the hub needs one per peer; bob holds his old Noise
/// transport while the restored hub's new handshake runs.
pub const SESSIONS: usize = 2;
/// Queued envelopes per agent (an IK handshake message and the message
/// waiting for it take two).
pub const QUEUE: usize = 4;
/// Bytes per queued envelope: the largest handshake message (269 B with
/// its envelope header) and a ratchet initial message (X3DH prefix, header
/// and tag) with a payload of about 200 B.
pub const BYTES: usize = 512;
/// One-time prekeys in each agent's pool.
pub const PREKEYS: usize = 4;
/// MLS group slots: none, this run has no group.
pub const GROUPS: usize = 0;
/// The agent run here.
pub type MeshAgent = Agent<PEERS, SESSIONS, QUEUE, BYTES, PREKEYS, GROUPS>;

const NAME: &str = "mesh agent";
/// Agents of the run: the hub, its Noise peer, its ratchet peer.
const AGENTS: usize = 3;
const HUB: usize = 0;
const BOB: usize = 1;
const CAROL: usize = 2;
const WHO: [&str; AGENTS] = ["hub", "bob", "carol"];
/// Envelopes a mailbox holds.
const MAILBOX: usize = 4;
/// Records of an agent: the agent record and one per session slot.
const RECORDS: usize = 1 + SESSIONS;
/// The largest sealed record: the store's slots, `poll_persist`'s buffer
/// and restore's scratch.
const REC: usize = MeshAgent::MAX_RECORD_LEN;
/// Deliveries one run of the loop keeps for checking.
const KEPT: usize = 2;
/// Payload bytes kept per delivery.
const KEPT_LEN: usize = 32;

const TASK: MessageKind = MessageKind(1);
const REPORT: MessageKind = MessageKind(2);
/// May send tasks and reports.
const WORKER: Role = Role(0);
/// May send reports only.
const SENSOR: Role = Role(1);
/// Monotonic time of the run (no deadline falls due).
const NOW: Instant = Instant(1_000);
/// Wall-clock time of the prekey pools.
const WALL: UnixTime = UnixTime(1_700_000_000);
/// Seeds of the agents' (not random) streams and of the storage key.
const SEEDS: [u32; AGENTS] = [0x4e5b_0001, 0x0b0b_7e57, 0xca20_1a57];
const KEY_SEED: u32 = 0x5702_a6e5;

const TO_BOB: &[u8] = b"measure tank 3";
const FROM_BOB: &[u8] = b"tank 3: 3.2 m";
const TO_CAROL_1: &[u8] = b"report the pressure";
const TO_CAROL_DENIED: &[u8] = b"open valve 7";
const TO_CAROL_2: &[u8] = b"report the flow";
const FROM_CAROL: &[u8] = b"pressure 2.1 bar";
const AFTER_RESTART_CAROL: &[u8] = b"report again";
const AFTER_RESTART_BOB: &[u8] = b"measure tank 4";

/// One agent's mailbox: envelopes wait here until it reads them.
struct Mailbox {
    bytes: [[u8; BYTES]; MAILBOX],
    lens: [usize; MAILBOX],
    n: usize,
}

impl Mailbox {
    const EMPTY: Mailbox = Mailbox { bytes: [[0; BYTES]; MAILBOX], lens: [0; MAILBOX], n: 0 };

    fn push(&mut self, envelope: &[u8]) -> Result<(), Error> {
        let (dst, len) = self.bytes.get_mut(self.n).zip(self.lens.get_mut(self.n)).ok_or(Error::QueueFull)?;
        dst.get_mut(..envelope.len())
            .ok_or(Error::BufferTooSmall { needed: envelope.len() })?
            .copy_from_slice(envelope);
        *len = envelope.len();
        self.n += 1;
        Ok(())
    }
}

/// The host's store of the hub's records: the newest blob and
/// generation of each (a real host keeps the generations in monotonic
/// storage).
struct Store {
    blobs: [[u8; REC]; RECORDS],
    lens: [usize; RECORDS],
    generations: [u64; RECORDS],
    stored: [bool; RECORDS],
    /// Records handed out with a generation not above the stored one.
    regressions: u32,
}

impl Store {
    /// The store slot of record `id` (`None` for a record this run makes
    /// none of: MLS group state).
    fn index(id: RecordId) -> Option<usize> {
        if let RecordId::Session(n) = id {
            return Some(1 + usize::from(n));
        }
        (id == RecordId::Agent).then_some(0)
    }

    /// The stored blob of record `i` and its generation.
    fn get(&self, i: usize) -> Option<(&[u8], u64)> {
        if !*self.stored.get(i)? {
            return None;
        }
        let blob = self.blobs.get(i)?.get(..*self.lens.get(i)?)?;
        Some((blob, *self.generations.get(i)?))
    }
}

/// Everything the run keeps, in `.bss` (all-zero initial values).
struct State {
    agents: [Slot<MeshAgent>; AGENTS],
    mailboxes: [Mailbox; AGENTS],
    store: Store,
    /// The envelope being carried.
    wire: [u8; BYTES],
    /// Delivered payloads.
    out: [u8; BYTES],
    /// `poll_persist`'s buffer and restore's scratch.
    record: [u8; REC],
    bundle: [u8; MAX_BUNDLE_LEN],
}

static STATE: Mutex<RefCell<State>> = Mutex::new(RefCell::new(State {
    agents: [const { Slot::Empty }; AGENTS],
    mailboxes: [Mailbox::EMPTY; AGENTS],
    store: Store {
        blobs: [[0; REC]; RECORDS],
        lens: [0; RECORDS],
        generations: [0; RECORDS],
        stored: [false; RECORDS],
        regressions: 0,
    },
    wire: [0; BYTES],
    out: [0; BYTES],
    record: [0; REC],
    bundle: [0; MAX_BUNDLE_LEN],
}));

/// One delivered message, as the loop saw it.
#[derive(Clone, Copy)]
struct Got {
    at: usize,
    r: Received,
    payload: [u8; KEPT_LEN],
}

impl Got {
    /// Delivered at agent `at`, from `from`, of `kind`, over `channel`, with `payload`.
    fn is(&self, at: usize, from: PeerId, kind: MessageKind, channel: ChannelKind, payload: &[u8]) -> bool {
        self.at == at
            && self.r.from == from
            && self.r.kind == kind
            && self.r.channel == channel
            && self.payload.get(..self.r.len) == Some(payload)
    }
}

/// What one run of the loop carried.
struct Carried {
    got: [Option<Got>; KEPT],
    delivered: usize,
    direct: u32,
    mailbox: u32,
    records: u32,
}

impl Carried {
    /// Exactly one delivery, and it is this one.
    fn only(&self, at: usize, from: PeerId, kind: MessageKind, channel: ChannelKind, payload: &[u8]) -> bool {
        self.delivered == 1 && self.got[0].is_some_and(|g| g.is(at, from, kind, channel, payload))
    }
}

/// The firmware's loop: store every record the agents hand out, then
/// carry every envelope they have ready: `Direct` to the recipient's
/// `handle_input` at once, `Mailbox` into its mailbox. Until nothing moves.
#[inline(never)]
fn pump(st: &mut State, rngs: &mut [NotRandomTestRng; AGENTS]) -> Result<Carried, Error> {
    let mut c = Carried { got: [None; KEPT], delivered: 0, direct: 0, mailbox: 0, records: 0 };
    loop {
        let mut moved = false;
        for i in 0..AGENTS {
            c.records += store_records(st, i, rngs.get_mut(i).ok_or(Error::UnknownPeer)?)?;
            while let Some(t) = slot(&mut st.agents, i)?.poll_transmit(&mut st.wire)? {
                moved = true;
                let j = index_of(st, &t.to).ok_or(Error::UnknownPeer)?;
                let State { agents, mailboxes, wire, out, .. } = &mut *st;
                let envelope = wire.get(..t.len).ok_or(Error::BufferTooSmall { needed: t.len })?;
                if t.delivery == Delivery::Mailbox {
                    c.mailbox += 1;
                    mailboxes.get_mut(j).ok_or(Error::UnknownPeer)?.push(envelope)?;
                    continue;
                }
                c.direct += 1;
                let to = agents.get_mut(j).and_then(Slot::get_mut).ok_or(Error::UnknownPeer)?;
                let rng = rngs.get_mut(j).ok_or(Error::UnknownPeer)?;
                if let Some(r) = to.handle_input(envelope, out, NOW, rng)? {
                    c.keep(j, r, out);
                }
            }
        }
        if !moved {
            return Ok(c);
        }
    }
}

/// Store every record agent `i` hands out (only the hub has persistence
/// on); returns how many.
fn store_records(st: &mut State, i: usize, rng: &mut NotRandomTestRng) -> Result<u32, Error> {
    let mut n = 0;
    loop {
        let State { agents, store, record, .. } = &mut *st;
        let a = agents.get_mut(i).and_then(Slot::get_mut).ok_or(Error::UnknownPeer)?;
        let Some(r) = a.poll_persist(record, rng)? else { return Ok(n) };
        let k = Store::index(r.id).ok_or(Error::WrongRecord)?;
        let blob = record.get(..r.len).ok_or(Error::BufferTooSmall { needed: r.len })?;
        let (Some(dst), Some(len), Some(g), Some(stored)) = (
            store.blobs.get_mut(k),
            store.lens.get_mut(k),
            store.generations.get_mut(k),
            store.stored.get_mut(k),
        ) else {
            return Err(Error::WrongRecord);
        };
        if *stored && r.generation <= *g {
            store.regressions += 1;
        }
        dst.get_mut(..r.len).ok_or(Error::BufferTooSmall { needed: r.len })?.copy_from_slice(blob);
        (*len, *g, *stored) = (r.len, r.generation, true);
        n += 1;
    }
}

impl Carried {
    /// Keep delivery `r` at agent `at` (its payload in `out`).
    fn keep(&mut self, at: usize, r: Received, out: &[u8]) {
        let mut payload = [0u8; KEPT_LEN];
        if let (Some(dst), Some(src)) = (payload.get_mut(..r.len), out.get(..r.len)) {
            dst.copy_from_slice(src);
        }
        if let Some(slot) = self.got.get_mut(self.delivered) {
            *slot = Some(Got { at, r, payload });
        }
        self.delivered += 1;
    }
}

/// Agent `i` of `agents`.
fn slot(agents: &mut [Slot<MeshAgent>; AGENTS], i: usize) -> Result<&mut MeshAgent, Error> {
    agents.get_mut(i).and_then(Slot::get_mut).ok_or(Error::UnknownPeer)
}

/// Agent `i`.
fn agent(st: &mut State, i: usize) -> Result<&mut MeshAgent, Error> {
    slot(&mut st.agents, i)
}

/// The index of the agent with peer id `id`.
fn index_of(st: &State, id: &PeerId) -> Option<usize> {
    st.agents.iter().position(|a| a.get().is_some_and(|a| a.peer_id() == *id))
}

/// The peer ids of the agents (all three exist).
fn ids(st: &State) -> Option<[PeerId; AGENTS]> {
    let [a, b, c] = &st.agents;
    Some([a.get()?.peer_id(), b.get()?.peer_id(), c.get()?.peer_id()])
}

/// Drain agent `i`'s events; whether one of them matched `want`.
fn saw(st: &mut State, i: usize, want: impl Fn(&Event) -> bool) -> bool {
    let Ok(a) = agent(st, i) else { return false };
    let mut seen = false;
    while let Some(e) = a.poll_event() {
        seen |= want(&e);
    }
    seen
}

/// The host's storage key for the hub (from a fixed, NOT random stream).
fn storage_key() -> StorageKey {
    let mut rng = NotRandomTestRng::new(KEY_SEED);
    let mut key = [0u8; 32];
    let Ok(()) = rand_core::TryRng::try_fill_bytes(&mut rng, &mut key);
    StorageKey::new(key)
}

/// A new agent into `slot` (emptied first, so the agent is built in place).
#[inline(never)]
fn new_into(slot: &mut Slot<MeshAgent>, rng: &mut NotRandomTestRng) {
    *slot = Slot::Empty;
    *slot = Slot::Full(MeshAgent::new(Identity::generate(rng), Config::default(), rng, WALL));
}

/// The hub restored from its stored agent record into `slot`.
#[inline(never)]
fn restore_into(slot: &mut Slot<MeshAgent>, store: &Store, scratch: &mut [u8]) -> Result<(), Error> {
    *slot = Slot::Empty;
    let (blob, generation) = store.get(0).ok_or(Error::WrongRecord)?;
    *slot = Slot::Full(MeshAgent::restore(storage_key(), Config::default(), blob, generation, scratch)?);
    Ok(())
}

/// Roles, directories, policies, the hub's persistence and carol's bundle.
#[inline(never)]
fn configure(st: &mut State) -> Result<Route, Error> {
    let [hub_id, bob_id, carol_id] = ids(st).ok_or(Error::UnknownPeer)?;
    let State { agents, bundle, .. } = &mut *st;
    let hub_public = *slot(agents, HUB)?.public_identity();
    let bob_public = *slot(agents, BOB)?.public_identity();
    for i in 0..AGENTS {
        let p = slot(agents, i)?.policy_mut();
        p.define_role(WORKER, Permissions::of(&[TASK, REPORT]))?;
        p.define_role(SENSOR, Permissions::of(&[REPORT]))?;
    }
    let n = slot(agents, CAROL)?.bundle(bundle)?;
    let carol_bundle = bundle.get(..n).ok_or(Error::BufferTooSmall { needed: n })?;

    let hub = slot(agents, HUB)?;
    hub.enable_persistence(storage_key());
    // Bob: identity known (so his Noise static key), online.
    if hub.add_peer_identity(&bob_public)? != bob_id {
        return Err(Error::UnknownPeer);
    }
    hub.set_reachable(&bob_id, true)?;
    // Carol: her bundle (both signatures verified), offline.
    if hub.set_peer_bundle(carol_bundle)? != carol_id {
        return Err(Error::UnknownPeer);
    }
    hub.set_reachable(&carol_id, false)?;
    hub.policy_mut().grant(bob_id, Roles::of(&[WORKER]))?;
    hub.policy_mut().grant(carol_id, Roles::of(&[WORKER]))?;

    let bob = slot(agents, BOB)?;
    bob.add_peer_identity(&hub_public)?;
    bob.set_reachable(&hub_id, true)?;
    bob.policy_mut().grant(hub_id, Roles::of(&[WORKER]))?;
    // Carol lets the hub send reports only; she sees it offline.
    let carol = slot(agents, CAROL)?;
    carol.add_peer_identity(&hub_public)?;
    carol.set_reachable(&hub_id, false)?;
    carol.policy_mut().grant(hub_id, Roles::of(&[SENSOR]))?;
    slot(agents, HUB)?.route_for(&carol_id, Purpose::Message)
}

/// Hand envelope `k` of agent `at`'s mailbox to it.
fn read(st: &mut State, at: usize, k: usize, rng: &mut NotRandomTestRng) -> Result<Option<Received>, Error> {
    let State { agents, mailboxes, out, .. } = &mut *st;
    let m = mailboxes.get(at).ok_or(Error::UnknownPeer)?;
    let envelope =
        m.bytes.get(k).zip(m.lens.get(k)).and_then(|(b, n)| b.get(..*n)).ok_or(Error::UnknownSession)?;
    slot(agents, at)?.handle_input(envelope, out, NOW, rng)
}

/// A delivery from the mailbox, in `out`, is this one.
fn delivered(
    st: &State,
    r: &Result<Option<Received>, Error>,
    from: PeerId,
    kind: MessageKind,
    channel: ChannelKind,
    payload: &[u8],
) -> bool {
    matches!(r, Ok(Some(r)) if r.from == from && r.kind == kind && r.channel == channel
        && st.out.get(..r.len) == Some(payload))
}

/// `route` is `channel` for `reason`.
fn is_route(r: &Result<Route, Error>, channel: Channel, reason: Reason) -> bool {
    matches!(r, Ok(route) if *route == Route { channel, reason })
}

/// What the steps share: the meter, the state, the agents' streams, the
/// checks and the stack peaks.
struct Ctx<'a> {
    meter: &'a mut Meter,
    st: &'a mut State,
    rngs: [NotRandomTestRng; AGENTS],
    checks: Checks,
    /// The firmware's peak depth (whole call chain).
    firmware_peak: &'a mut usize,
    /// The deepest call of this check, below the measuring frame.
    peak: usize,
    deepest: &'static str,
}

/// Run the mesh check; print its figures; return its verdict.
#[inline(never)]
pub fn run_all(meter: &mut Meter, peak: &mut usize) -> Result<Family, MeterError> {
    hprintln!(
        "mesh: Agent<{}, {}, {}, {}, {}, {}> {} B (DefaultAgent, Agent<8, 4, 8, 1024, 16, 1>: {} B; the \
         sessions are RatchetSession = Session<32, 32>, {} B each); sealed records at most {} B (agent) and {} B \
         (session), {} B for any; 3 agents, 3 mailboxes of {} x {} B, a store of {} records of {} B: {} B of statics",
        PEERS,
        SESSIONS,
        QUEUE,
        BYTES,
        PREKEYS,
        GROUPS,
        core::mem::size_of::<MeshAgent>(),
        core::mem::size_of::<DefaultAgent>(),
        core::mem::size_of::<RatchetSession>(),
        MeshAgent::MAX_AGENT_RECORD_LEN,
        MeshAgent::MAX_SESSION_RECORD_LEN,
        REC,
        MAILBOX,
        BYTES,
        RECORDS,
        REC,
        core::mem::size_of::<State>()
    );
    // Nothing here runs from an interrupt; the critical section only makes
    // the static reachable without `unsafe`.
    interrupt::free(|cs| {
        let Ok(mut st) = STATE.borrow(cs).try_borrow_mut() else {
            let mut checks = Checks::new(NAME);
            checks.check("state borrowed once", false);
            return Ok(checks.family());
        };
        let mut cx = Ctx {
            meter,
            st: &mut st,
            rngs: SEEDS.map(NotRandomTestRng::new),
            checks: Checks::new(NAME),
            firmware_peak: peak,
            peak: 0,
            deepest: "",
        };
        let _ = cx.setup_step()? && cx.noise_step()? && cx.ratchet_step()? && cx.restart_step()?;
        hprintln!("mesh: peak stack {} B below the measuring frame (op mesh-{})", cx.peak, cx.deepest);
        Ok(cx.checks.family())
    })
}

impl Ctx<'_> {
    /// Track the peaks of a measured call.
    fn track(&mut self, name: &'static str, cost: &Cost) {
        if cost.stack > self.peak {
            self.peak = cost.stack;
            self.deepest = name;
        }
        *self.firmware_peak = (*self.firmware_peak).max(cost.depth);
    }

    /// Print one measured call (`op mesh-<name>: ...`); track the peaks.
    fn cost(&mut self, name: &'static str, cost: &Cost) {
        hprintln!("op mesh-{}: {} instructions, {} B stack", name, cost.instructions, cost.stack);
        self.track(name, cost);
    }

    /// The peer id of agent `i` (the null id if it is missing: every
    /// check on it then fails).
    fn id(&self, i: usize) -> PeerId {
        self.st.agents.get(i).and_then(Slot::get).map_or(PeerId([0; 32]), |a| a.peer_id())
    }

    /// Agent `from` sends `payload` of `kind` to agent `to` (measured as
    /// `name`); checks that it took `channel` for `reason`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        name: &'static str,
        from: usize,
        to: usize,
        kind: MessageKind,
        payload: &[u8],
        channel: Channel,
        reason: Reason,
    ) -> Result<bool, MeterError> {
        let to = self.id(to);
        let Some(rng) = self.rngs.get_mut(from) else { return Ok(self.checks.check(name, false)) };
        let st = &mut *self.st;
        let (route, cost) =
            self.meter.measure(|| agent(st, from).and_then(|a| a.send(&to, kind, payload, NOW, rng)))?;
        self.cost(name, &cost);
        if let Err(e) = &route {
            hprintln!("{}: {}: {}", NAME, name, e);
        }
        Ok(self.checks.check(name, is_route(&route, channel, reason)))
    }

    /// Run the loop (measured as `name`).
    fn pump(&mut self, name: &'static str) -> Result<Result<Carried, Error>, MeterError> {
        let (st, rngs) = (&mut *self.st, &mut self.rngs);
        let (c, cost) = self.meter.measure(|| pump(st, rngs))?;
        self.cost(name, &cost);
        self.checks.ok(name, &c);
        Ok(c)
    }

    /// Store the hub's pending records (measured as `name`); how many.
    fn persist(&mut self, name: &'static str) -> Result<Result<u32, Error>, MeterError> {
        let st = &mut *self.st;
        let [rh, _, _] = &mut self.rngs;
        let (n, cost) = self.meter.measure(|| store_records(st, HUB, rh))?;
        self.cost(name, &cost);
        self.checks.ok(name, &n);
        Ok(n)
    }

    /// Agent `at` reads envelope `k` of its mailbox (measured as `name`).
    fn read(
        &mut self,
        name: &'static str,
        at: usize,
        k: usize,
    ) -> Result<Result<Option<Received>, Error>, MeterError> {
        let Some(rng) = self.rngs.get_mut(at) else { return Ok(Err(Error::UnknownPeer)) };
        let st = &mut *self.st;
        let (r, cost) = self.meter.measure(|| read(st, at, k, rng))?;
        self.cost(name, &cost);
        Ok(r)
    }

    /// [`read`](Self::read), checked: `payload` of `kind` from agent
    /// `from` over `channel` delivered.
    #[allow(clippy::too_many_arguments)]
    fn read_delivered(
        &mut self,
        name: &'static str,
        at: usize,
        k: usize,
        from: usize,
        kind: MessageKind,
        channel: ChannelKind,
        payload: &[u8],
    ) -> Result<bool, MeterError> {
        let from = self.id(from);
        let r = self.read(name, at, k)?;
        self.checks.ok(name, &r);
        Ok(self.checks.check(name, delivered(self.st, &r, from, kind, channel, payload)))
    }

    /// Agent `at` has read its mailbox.
    fn emptied(&mut self, at: usize) {
        if let Some(m) = self.st.mailboxes.get_mut(at) {
            m.n = 0;
        }
    }

    /// Three agents, their directories and policies; the hub persists.
    #[inline(never)]
    fn setup_step(&mut self) -> Result<bool, MeterError> {
        for i in 0..AGENTS {
            let (Some(slot), Some(rng)) = (self.st.agents.get_mut(i), self.rngs.get_mut(i)) else {
                return Ok(self.checks.check("agent slots", false));
            };
            let ((), cost) = self.meter.measure(|| new_into(slot, rng))?;
            let made = slot.get().is_some();
            self.checks.check(WHO.get(i).copied().unwrap_or("agent"), made);
            // The three cost the same: print the hub's.
            if i == HUB {
                self.cost("agent-new", &cost);
            } else {
                self.track("agent-new", &cost);
            }
        }
        let Some([hub_id, bob_id, carol_id]) = ids(self.st) else {
            return Ok(self.checks.check("agents made", false));
        };
        self.checks
            .check("three distinct peer ids", hub_id != bob_id && bob_id != carol_id && hub_id != carol_id);
        let st = &mut *self.st;
        let (carol_route, cost) = self.meter.measure(|| configure(st))?;
        self.cost("configure", &cost);
        self.checks.ok("directories and policies", &carol_route);
        self.checks.check(
            "route to carol: X3DH from her bundle",
            is_route(&carol_route, Channel::RatchetX3dh, Reason::OfflineBundle),
        );
        let bob_route = agent(self.st, HUB).and_then(|a| a.route_for(&bob_id, Purpose::Message));
        self.checks.check(
            "route to bob: Noise IK",
            is_route(&bob_route, Channel::NoiseIk, Reason::OnlineStaticKnown),
        );
        // The loop stores the hub's first agent record.
        let n = self.persist("persist-agent-record")?;
        Ok(self
            .checks
            .check("one record, the agent record", matches!(n, Ok(1)) && self.st.store.get(0).is_some()))
    }

    /// The hub sends a task to bob: Noise IK; bob answers on the session.
    #[inline(never)]
    fn noise_step(&mut self) -> Result<bool, MeterError> {
        let (hub_id, bob_id) = (self.id(HUB), self.id(BOB));
        self.send("send-noise-ik", HUB, BOB, TASK, TO_BOB, Channel::NoiseIk, Reason::OnlineStaticKnown)?;
        self.checks.check(
            "handshake message and the waiting task queued",
            agent(self.st, HUB).is_ok_and(|a| a.queued() == 2),
        );
        let c = self.pump("pump-noise-ik-handshake-and-task")?;
        self.checks.check(
            "bob got the task from the hub (kind, Noise transport, payload)",
            c.as_ref().is_ok_and(|c| c.only(BOB, hub_id, TASK, ChannelKind::NoiseTransport, TO_BOB)),
        );
        self.checks.check(
            "3 direct envelopes (2 handshake, 1 transport), none to a mailbox",
            c.as_ref().is_ok_and(|c| c.direct == 3 && c.mailbox == 0),
        );
        self.checks.check(
            "hub: IK handshake with bob complete",
            saw(self.st, HUB, |e| {
                matches!(e, Event::HandshakeComplete { peer, pattern: ChannelKind::NoiseIk, .. } if *peer == bob_id)
            }),
        );
        self.checks.check(
            "bob: handshake with the hub complete",
            saw(self.st, BOB, |e| matches!(e, Event::HandshakeComplete { peer, .. } if *peer == hub_id)),
        );
        self.checks.check(
            "hub's table: one Noise transport, with bob",
            agent(self.st, HUB).is_ok_and(|a| {
                a.sessions().count() == 1
                    && a.sessions().all(|s| s.kind == SessionKind::Noise && s.peer == bob_id)
            }),
        );
        // Bob answers over the established session.
        self.send(
            "send-noise-session",
            BOB,
            HUB,
            REPORT,
            FROM_BOB,
            Channel::NoiseSession,
            Reason::SessionEstablished,
        )?;
        let c = self.pump("pump-noise-message")?;
        Ok(self.checks.check(
            "hub got bob's report (kind, Noise transport, payload)",
            c.as_ref().is_ok_and(|c| {
                c.only(HUB, bob_id, REPORT, ChannelKind::NoiseTransport, FROM_BOB) && c.direct == 1
            }),
        ))
    }

    /// The hub sends carol (offline) two reports and a task through her
    /// mailbox: X3DH from her bundle, then the ratchet session. Carol reads
    /// them (the task is denied by her policy) and answers through the
    /// hub's mailbox.
    #[inline(never)]
    fn ratchet_step(&mut self) -> Result<bool, MeterError> {
        let (hub_id, carol_id) = (self.id(HUB), self.id(CAROL));
        let (session, offline) = (Channel::RatchetSession, Reason::OfflineSession);
        self.send(
            "send-ratchet-x3dh",
            HUB,
            CAROL,
            REPORT,
            TO_CAROL_1,
            Channel::RatchetX3dh,
            Reason::OfflineBundle,
        )?;
        self.send("send-ratchet-message", HUB, CAROL, TASK, TO_CAROL_DENIED, session, offline)?;
        self.send("send-ratchet-message-2", HUB, CAROL, REPORT, TO_CAROL_2, session, offline)?;
        self.checks.check(
            "carol's bundle spent (its one-time prekey)",
            agent(self.st, HUB)
                .is_ok_and(|a| a.directory().get(&carol_id).is_some_and(|p| p.bundle().is_none())),
        );
        let c = self.pump("pump-mailbox-3")?;
        self.checks.check(
            "3 envelopes into carol's mailbox, none direct, nothing delivered yet",
            c.as_ref().is_ok_and(|c| c.mailbox == 3 && c.direct == 0 && c.delivered == 0)
                && self.st.mailboxes.get(CAROL).is_some_and(|m| m.n == 3),
        );
        self.checks.check(
            "the hub's ratchet session record stored before its envelopes left",
            c.as_ref().is_ok_and(|c| c.records >= 1) && (1..RECORDS).any(|k| self.st.store.get(k).is_some()),
        );

        // Carol comes online and reads her mailbox; the task is denied.
        let initial = ChannelKind::RatchetInitial;
        self.read_delivered("read-ratchet-initial", CAROL, 0, HUB, REPORT, initial, TO_CAROL_1)?;
        self.st.out.fill(0);
        let r = self.read("read-ratchet-denied", CAROL, 1)?;
        self.checks.check("the task is not delivered", matches!(r, Ok(None)));
        self.checks.check("no plaintext left in the output buffer", self.st.out.iter().all(|&b| b == 0));
        self.checks.check(
            "carol: Denied, the hub may not send tasks",
            saw(self.st, CAROL, |e| {
                *e == Event::Denied { from: hub_id, reason: DenyReason::NotPermitted { kind: TASK } }
            }),
        );
        self.checks
            .check("carol counted the denial", agent(self.st, CAROL).is_ok_and(|a| a.counters().denied == 1));
        // The session goes on after a denial.
        self.read_delivered("read-ratchet-message", CAROL, 2, HUB, REPORT, initial, TO_CAROL_2)?;
        self.checks
            .check("carol delivered 2", agent(self.st, CAROL).is_ok_and(|a| a.counters().received == 2));
        self.emptied(CAROL);

        // Carol answers; to her the hub is offline: its mailbox.
        self.send("send-ratchet-reply", CAROL, HUB, REPORT, FROM_CAROL, session, offline)?;
        let c = self.pump("pump-mailbox-1")?;
        self.checks.check(
            "1 envelope into the hub's mailbox",
            c.as_ref().is_ok_and(|c| c.mailbox == 1 && c.direct == 0),
        );
        let message = ChannelKind::RatchetMessage;
        self.read_delivered("read-ratchet-reply", HUB, 0, CAROL, REPORT, message, FROM_CAROL)?;
        self.emptied(HUB);
        // The loop stores what reading it changed.
        let n = self.persist("persist-session-record")?;
        Ok(self.checks.check(
            "the hub's session record stored after the read, nothing pending",
            matches!(n, Ok(n) if n >= 1) && agent(self.st, HUB).is_ok_and(|a| !a.persist_pending()),
        ))
    }

    /// The hub restarts from its stored records and continues with both
    /// peers.
    #[inline(never)]
    fn restart_step(&mut self) -> Result<bool, MeterError> {
        let (hub_id, bob_id, carol_id) = (self.id(HUB), self.id(BOB), self.id(CAROL));
        let persisted = agent(self.st, HUB).map(|a| a.metrics().records_persisted).unwrap_or(0);
        self.checks.check("no record handed out with an old generation", self.st.store.regressions == 0);
        let restored = self.restore()?;
        self.checks.check(
            "one session restored: the ratchet session with carol",
            restored == 1
                && agent(self.st, HUB).is_ok_and(|a| {
                    a.sessions().count() == 1
                        && a.sessions().all(|s| s.kind == SessionKind::Ratchet && s.peer == carol_id)
                }),
        );
        hprintln!(
            "mesh: the hub persisted {} records before the restart; restored the agent record and {} session record(s)",
            persisted,
            restored
        );

        // It goes on: the next report to carol over the restored session.
        let (session, offline) = (Channel::RatchetSession, Reason::OfflineSession);
        self.send("send-ratchet-after-restore", HUB, CAROL, REPORT, AFTER_RESTART_CAROL, session, offline)?;
        let c = self.pump("pump-mailbox-after-restore")?;
        self.checks.check(
            "1 envelope into carol's mailbox, the session record stored first",
            c.as_ref().is_ok_and(|c| c.mailbox == 1 && c.direct == 0 && c.records >= 1),
        );
        let message = ChannelKind::RatchetMessage;
        self.read_delivered(
            "read-ratchet-after-restore",
            CAROL,
            0,
            HUB,
            REPORT,
            message,
            AFTER_RESTART_CAROL,
        )?;
        self.emptied(CAROL);

        // And a new Noise session with bob (transports are not persisted;
        // neither is reachability).
        let reachable = agent(self.st, HUB).and_then(|a| a.set_reachable(&bob_id, true));
        self.checks.ok("bob reachable again", &reachable);
        let (ik, known) = (Channel::NoiseIk, Reason::OnlineStaticKnown);
        self.send("send-noise-ik-after-restore", HUB, BOB, TASK, AFTER_RESTART_BOB, ik, known)?;
        let c = self.pump("pump-noise-ik-after-restore")?;
        self.checks.check(
            "bob got the restored hub's task (kind, Noise transport, payload)",
            c.as_ref()
                .is_ok_and(|c| c.only(BOB, hub_id, TASK, ChannelKind::NoiseTransport, AFTER_RESTART_BOB)),
        );
        self.checks.check(
            "bob: the new handshake complete",
            saw(self.st, BOB, |e| matches!(e, Event::HandshakeComplete { peer, .. } if *peer == hub_id)),
        );
        Ok(self.checks.check(
            "hub: nothing pending, sent 2, received 0 since the restart",
            agent(self.st, HUB)
                .is_ok_and(|a| !a.persist_pending() && a.counters().sent == 2 && a.counters().received == 0),
        ))
    }

    /// A restart: the hub is dropped and restored from the stored agent
    /// record and session records (each session record first offered as
    /// older than the newest generation: refused). Returns how many
    /// session records were restored.
    fn restore(&mut self) -> Result<u32, MeterError> {
        let (hub_id, bob_id, carol_id) = (self.id(HUB), self.id(BOB), self.id(CAROL));
        let State { agents, store, record, .. } = &mut *self.st;
        let Some(hub_slot) = agents.get_mut(HUB) else { return Ok(0) };
        *hub_slot = Slot::Empty;
        // The scratch held the last record handed out; restore must leave it wiped.
        record.fill(0);
        let (r, cost) = self.meter.measure(|| restore_into(hub_slot, store, record))?;
        self.checks.ok("hub restored from its agent record", &r);
        self.checks.check("same peer id", hub_slot.get().is_some_and(|a| a.peer_id() == hub_id));
        self.checks.check(
            "directory restored, peers unreachable, no session yet",
            hub_slot.get().is_some_and(|a| {
                let known = |id: &PeerId| {
                    a.directory().get(id).is_some_and(|p| p.identity().is_some() && !p.is_reachable())
                };
                known(&bob_id) && known(&carol_id) && a.sessions().count() == 0
            }),
        );
        // (rollback refused, restored) per session record.
        let mut session_costs: [Option<(Cost, Cost)>; SESSIONS] = [None; SESSIONS];
        let mut restored = 0u32;
        for (k, c) in (1..RECORDS).zip(session_costs.iter_mut()) {
            let (Some((blob, generation)), Some(hub)) = (store.get(k), hub_slot.get_mut()) else { continue };
            let (rollback, refused) =
                self.meter.measure(|| hub.restore_record(blob, generation.saturating_add(1), record))?;
            self.checks.check(
                "a session record older than the newest generation is refused, nothing restored",
                matches!(rollback, Err(Error::Storage(securemesh_core::Error::Rollback { .. })))
                    && hub.sessions().count() == 0,
            );
            let (r, cost) = self.meter.measure(|| hub.restore_record(blob, generation, record))?;
            *c = Some((refused, cost));
            self.checks.check(
                "session record restored into its slot",
                matches!(r, Ok(RecordId::Session(n)) if usize::from(n) + 1 == k),
            );
            restored += 1;
        }
        self.checks.check("scratch wiped", record.iter().all(|&b| b == 0));
        self.cost("restore-agent", &cost);
        for (refused, restored) in session_costs.iter().flatten() {
            self.cost("restore-session-rollback-refused", refused);
            self.cost("restore-session", restored);
        }
        Ok(restored)
    }
}

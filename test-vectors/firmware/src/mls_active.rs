//! An MLS active member on the device (`securemesh-mls-lite`), in a group
//! of 16 whose state is at most 16 KiB per member (issue #8).
//!
//! 1. **KeyPackages.** 16 would-be members each make an Ed25519 seed (from
//!    the test RNG) and a KeyPackage (`create_key_package`).
//! 2. **A group of 16.** Member 0 ("alice") creates the group
//!    (`Group::create_into`) and commits the addition of members 1-14 in
//!    one commit (`Group::commit` into a pending slot, then
//!    `merge_pending_commit`); member 1 ("bob") joins from its Welcome
//!    (`join_into`). Alice then **adds a member** (15, "carol") in a second
//!    commit: bob processes it (`process_commit`), carol joins from the
//!    second Welcome. 16 members.
//! 3. **An update.** Alice commits an empty commit with an UpdatePath
//!    (`CommitOptions { update_path: true, .. }`): a new leaf key and path
//!    secrets encrypted to the 15 others; bob and carol process it.
//! 4. **A message.** Alice seals 64 bytes (`seal_application`), bob and
//!    carol open them (`open_application`); bob answers, alice opens.
//!
//! After every step the members that hold the group must agree: epoch,
//! epoch authenticator, tree hash, member count and an exported secret.
//!
//! Every call is measured (instructions, stack). The group slots, KeyPackages,
//! scratch and message buffers are statics, so the stack figures are the
//! calls' own. Each commit is first run once as a dry run whose scratch is
//! probed ([`crate::scratch_probe`]) for the bytes it really writes, against
//! the `send_commit_scratch_len` the API asks to be lent.

use crate::measure::{Cost, Meter, MeterError};
use crate::noise::Family;
use crate::scratch_probe;
use crate::test_rng::NotRandomTestRng;
use core::cell::{Cell, OnceCell, RefCell, UnsafeCell};
use cortex_m_semihosting::hprintln;
use securemesh_core::crypto::{Ed25519, Signature};
use securemesh_core::envelope::Persist;
use securemesh_core::{Secret, ct_eq};
use securemesh_mls_lite::crypto::Secret32;
use securemesh_mls_lite::key_package::{
    KeyPackageParams, KeyPackageSecrets, create_key_package, key_package_len,
};
use securemesh_mls_lite::messages::{KeyPackage};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};
use securemesh_mls_lite::pending_commit::{CommitOptions, CommitOutput};
use securemesh_mls_lite::{CommitEvent, Error, JoinKeys, ProposalCache, PskStore};

/// Name of the family in the `firmware:` line.
const NAME: &str = "mls active-member";

/// Members of the group.
const MEMBERS: usize = 16;
/// Members added by the first commit (1..=14); the second adds the last.
const FIRST_ADDS: usize = 14;
/// The member the second commit adds.
const LAST: usize = MEMBERS - 1;
/// Largest leaf node kept: the largest of the run is 190 B (a 9-byte
/// identity; printed at the end).
const LEAF_BYTES: usize = 256;
/// Group id and GroupContext extensions (none are used).
const GROUP_ID_BYTES: usize = 16;
const EXTENSION_BYTES: usize = 16;
/// The state of one member in one group.
type Group = securemesh_mls_lite::Group<MEMBERS, LEAF_BYTES, GROUP_ID_BYTES, EXTENSION_BYTES>;
/// Issue #8: at most 16 KiB of state per group.
const GROUP_STATE_LIMIT: usize = 16 * 1024;
const _: () = assert!(core::mem::size_of::<Group>() <= GROUP_STATE_LIMIT);
/// Commits here list no proposal by reference: a minimal cache.
type Cache = ProposalCache<1, 16>;

const GROUP_ID: &[u8] = b"fw-fleet-16";
/// `member-00` .. `member-15`.
const ID_LEN: usize = 9;
/// Room for one KeyPackage.
const KP_CAP: usize = key_package_len(ID_LEN);
/// Room for a commit: the 14 KeyPackages by value plus framing; an
/// UpdatePath of 16 members (leaf, 4 path nodes, 15 HPKE ciphertexts) is
/// smaller.
const COMMIT_CAP: usize = FIRST_ADDS * KP_CAP + 1024;
/// Room for the Welcome of the first commit (14 new members, the tree).
const WELCOME_CAP: usize = Group::welcome_len(FIRST_ADDS, true);
/// Application payload.
const APP_LEN: usize = 64;
/// Room for a sealed application message.
const APP_CAP: usize = 512;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// One scratch buffer for every call: the largest bound of the API.
const SCRATCH_LEN: usize = max(
    max(Group::send_commit_scratch_len(FIRST_ADDS * KP_CAP), Group::scratch_len(WELCOME_CAP)),
    max(
        max(Group::commit_scratch_len(COMMIT_CAP), Group::application_scratch_len(APP_CAP)),
        max(Group::seal_scratch_len(APP_LEN, 0), 2 * KP_CAP),
    ),
);

/// SysTick samples of a probed scratch, about this many instructions apart.
const PROBE_EVERY: u32 = 50_000;

/// A would-be member's private keys: its signature seed and its
/// KeyPackage's HPKE keys.
struct Member {
    seed: Secret32,
    secrets: KeyPackageSecrets,
}

impl Member {
    const EMPTY: Member = Member {
        seed: Secret::new([0; 32]),
        secrets: KeyPackageSecrets { init_priv: Secret::new([0; 32]), encryption_priv: Secret::new([0; 32]) },
    };

    /// What joining (or creating) with KeyPackage `kp` takes.
    fn keys<'a>(&'a self, kp: KeyPackage<'a>) -> JoinKeys<'a> {
        JoinKeys {
            key_package: kp,
            init_priv: &self.secrets.init_priv,
            encryption_priv: &self.secrets.encryption_priv,
            signature_priv: &self.seed,
        }
    }
}

/// The members' KeyPackages, published once made (the bytes other
/// members would fetch from a delivery service).
struct KeyPackages {
    bytes: [[u8; KP_CAP]; MEMBERS],
    lens: [usize; MEMBERS],
}

impl KeyPackages {
    /// Member `i`'s KeyPackage, parsed.
    fn get(&self, i: usize) -> Result<KeyPackage<'_>, Error> {
        let (bytes, len) = self.bytes.get(i).zip(self.lens.get(i)).ok_or(Error::Malformed)?;
        KeyPackage::from_bytes(bytes.get(..*len).ok_or(Error::Malformed)?)
    }
}

/// Written in place once by the KeyPackage step, read-only after, as
/// `&'static`: so the parsed KeyPackages the first commit adds
/// ([`FIRST_ADDED`]) can be a static too. The 14 of them (152 B each) on
/// the stack of the commit's caller would not leave room for the commit
/// itself (see README.md); neither would 5 KB of KeyPackages built on the
/// stack and moved into a `OnceCell`.
static KEY_PACKAGES: Publish<KeyPackages> =
    Publish::new(KeyPackages { bytes: [[0; KP_CAP]; MEMBERS], lens: [0; MEMBERS] });

/// A static written in place once, then only read (`&'static`).
struct Publish<T> {
    /// 0: not written, 1: being written, 2: published.
    state: Cell<u8>,
    value: UnsafeCell<T>,
}

// SAFETY: single core, main thread only (no exception handler touches it);
// `state` makes the one `&mut` (while writing) and the `&`s (after)
// exclusive of each other.
#[allow(unsafe_code)]
unsafe impl<T> Sync for Publish<T> {}

impl<T> Publish<T> {
    const fn new(value: T) -> Self {
        Publish { state: Cell::new(0), value: UnsafeCell::new(value) }
    }

    /// Write the value in place with `f`, once; it is published whatever
    /// `f` returns. `None` if it was written before.
    fn write_once<R>(&'static self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        if self.state.get() != 0 {
            return None;
        }
        self.state.set(1);
        // SAFETY: state 1 is set once, here: no other reference to the
        // value exists (`get` hands out none before state 2) and this
        // `&mut` ends before state 2 is set.
        #[allow(unsafe_code)]
        let value = unsafe { &mut *self.value.get() };
        let r = f(value);
        self.state.set(2);
        Some(r)
    }

    /// The published value.
    fn get(&'static self) -> Option<&'static T> {
        // SAFETY: after state 2 nothing writes the value again.
        #[allow(unsafe_code)]
        (self.state.get() == 2).then(|| unsafe { &*self.value.get() })
    }
}
/// The KeyPackages of members 1..=14, parsed.
static FIRST_ADDED: MainThreadOnly<OnceCell<[KeyPackage<'static>; FIRST_ADDS]>> =
    MainThreadOnly(OnceCell::new());

/// Everything the run keeps, in `.bss` (all-zero initial values).
struct State {
    members: [Member; MEMBERS],
    /// Member 0, who creates the group and commits.
    alice: Group,
    /// Alice's pending commit.
    pending: Group,
    /// Member 1, joins from the first Welcome.
    bob: Group,
    /// Member 15, joins from the second Welcome.
    carol: Group,
    /// The slot `process_commit` computes into (bob's and carol's).
    spare: Group,
    cache: Cache,
    scratch: [u8; SCRATCH_LEN],
    commit: [u8; COMMIT_CAP],
    welcome: [u8; WELCOME_CAP],
    app: [u8; APP_CAP],
}

/// A static used by the main thread only.
///
/// Not a `cortex_m::interrupt::Mutex` (as the other parts use): borrowing
/// that needs a critical section, which masks the SysTick exception the
/// scratch probe samples with.
struct MainThreadOnly<T>(T);

// SAFETY: single core; only this module's functions, on the main thread,
// touch these statics (a `RefCell` or a `OnceCell`, so never mutably twice
// at once). The SysTick handler reads the scratch buffer's bytes through a
// raw pointer, never through them.
#[allow(unsafe_code)]
unsafe impl<T> Sync for MainThreadOnly<T> {}

static STATE: MainThreadOnly<RefCell<State>> = MainThreadOnly(RefCell::new(State {
    members: [const { Member::EMPTY }; MEMBERS],
    alice: Group::new(),
    pending: Group::new(),
    bob: Group::new(),
    carol: Group::new(),
    spare: Group::new(),
    cache: Cache::new(),
    scratch: [0; SCRATCH_LEN],
    commit: [0; COMMIT_CAP],
    welcome: [0; WELCOME_CAP],
    app: [0; APP_CAP],
}));

/// Pass/fail tally; prints every failure.
struct Checks {
    passed: u32,
    total: u32,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool) -> bool {
        self.total += 1;
        if ok {
            self.passed += 1;
        } else {
            hprintln!("{}: check FAILED: {}", NAME, what);
        }
        ok
    }

    /// Check that `r` is `Ok`, printing the error otherwise.
    fn ok<T>(&mut self, what: &str, r: &Result<T, Error>) -> bool {
        if let Err(e) = r {
            hprintln!("{}: {}: {}", NAME, what, e);
        }
        self.check(what, r.is_ok())
    }
}

/// Print one measured call (`op mls-active-<name>: ...`) and track the peak.
fn print_cost(name: &str, cost: &Cost, peak: &mut usize) {
    hprintln!("op mls-active-{}: {} instructions, {} B stack", name, cost.instructions, cost.stack);
    *peak = (*peak).max(cost.depth);
}

/// `member-NN`.
fn identity(i: usize) -> [u8; ID_LEN] {
    let [a, b, c, d, e, f, g, _, _] = *b"member-00";
    [a, b, c, d, e, f, g, b'0' + (i / 10 % 10) as u8, b'0' + (i % 10) as u8]
}

/// The published KeyPackages (after the KeyPackage step).
fn published() -> Result<&'static KeyPackages, Error> {
    KEY_PACKAGES.get().ok_or(Error::Malformed)
}

/// Parse the KeyPackages of members 1..=14 into [`FIRST_ADDED`] (built
/// here, in a frame of its own, then moved into the static).
#[inline(never)]
fn first_added() -> Result<&'static [KeyPackage<'static>; FIRST_ADDS], Error> {
    if let Some(adds) = FIRST_ADDED.0.get() {
        return Ok(adds);
    }
    let kps = published()?;
    let mut adds = [kps.get(1)?; FIRST_ADDS];
    for (i, kp) in adds.iter_mut().enumerate() {
        *kp = kps.get(i + 1)?;
    }
    let _ = FIRST_ADDED.0.set(adds);
    FIRST_ADDED.0.get().ok_or(Error::Malformed)
}

/// Every group in `groups` holds the same epoch of the same group of
/// `members` members: epoch, epoch authenticator, tree hash, member count
/// and an exported secret.
fn agree(groups: &[&Group], members: usize) -> bool {
    let Some(first) = groups.first() else { return false };
    let mut want = [0u8; 32];
    if first.export_secret(b"securemesh firmware", b"16", &mut want).is_err() {
        return false;
    }
    groups.iter().all(|g| {
        let mut got = [0u8; 32];
        g.is_joined()
            && g.epoch() == first.epoch()
            && ct_eq(g.epoch_authenticator().expose(), first.epoch_authenticator().expose())
            && g.tree_hash() == first.tree_hash()
            && g.members().count() == members
            && g.export_secret(b"securemesh firmware", b"16", &mut got).is_ok()
            && ct_eq(&got, &want)
    })
}

/// Join `slot` from the Welcome `MLSMessage` in `welcome` (parsing included).
#[inline(never)]
fn join(
    slot: &mut Group,
    welcome: &[u8],
    member: &Member,
    kp: KeyPackage<'_>,
    scratch: &mut [u8],
) -> Result<(), Error> {
    let MlsMessageBody::Welcome(w) = MlsMessage::from_bytes(welcome)?.body else {
        return Err(Error::Malformed);
    };
    let keys = member.keys(kp);
    let needed = Group::scratch_len(welcome.len());
    slot.join_into(&w, &keys, None, &[], scratch.get_mut(..needed).ok_or(Error::BufferTooSmall { needed })?)
}

/// Process `commit` (no PSK, nothing by reference).
#[inline(never)]
fn process(
    group: &mut Group,
    commit: &[u8],
    cache: &mut Cache,
    spare: &mut Group,
    scratch: &mut [u8],
) -> Result<CommitEvent, Error> {
    let needed = Group::commit_scratch_len(commit.len());
    let scratch = scratch.get_mut(..needed).ok_or(Error::BufferTooSmall { needed })?;
    group.process_commit(commit, cache, &PskStore::default(), spare, scratch)
}

/// What a commit of alice's needs besides its proposals.
struct Out<'a> {
    pending: &'a mut Group,
    commit: &'a mut [u8],
    welcome: &'a mut [u8],
    scratch: &'a mut [u8],
}

/// Alice's commit of `adds`, measured: first a dry run with its scratch
/// probed (its pending commit dropped), then the real one.
/// Returns the real commit's result and cost and (bytes written, lent).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn commit_probed(
    meter: &mut Meter,
    alice: &mut Group,
    adds: &[KeyPackage<'_>],
    options: &CommitOptions<'_>,
    rng: &mut NotRandomTestRng,
    out: &mut Out<'_>,
    checks: &mut Checks,
    name: &str,
) -> Result<(Result<CommitOutput, Error>, Cost), MeterError> {
    let kp_total = adds.iter().map(|kp| kp.as_bytes().len()).sum();
    let lent = Group::send_commit_scratch_len(kp_total);
    let Some(scratch) = out.scratch.get_mut(..lent) else {
        checks.check("scratch holds send_commit_scratch_len", false);
        return Ok((
            Err(Error::BufferTooSmall { needed: lent }),
            Cost { instructions: 0, stack: 0, depth: 0 },
        ));
    };

    // The dry run. A PrivateMessage commit uses up one handshake
    // generation: the real commit goes out with the next one.
    scratch.fill(scratch_probe::PAINT_BYTE);
    scratch_probe::watch(scratch);
    let dry = meter.with_tick_interrupt(PROBE_EVERY, || {
        alice.commit(adds, &[], options, &mut *rng, out.pending, out.commit, out.welcome, scratch)
    });
    let (used, samples) = scratch_probe::finish();
    out.pending.clear();
    checks.ok("dry-run commit", &dry);
    checks.check("probe sampled, scratch within the bound", samples > 0 && used > 0 && used <= lent);
    hprintln!(
        "mls-active: {}: scratch written {} B of the {} B lent (send_commit_scratch_len({}); {} samples)",
        name,
        used,
        lent,
        kp_total,
        samples
    );

    let (r, cost) = meter.measure(|| {
        alice.commit(adds, &[], options, &mut *rng, out.pending, out.commit, out.welcome, scratch)
    })?;
    Ok((r, cost))
}

/// Run the active-member part; print its figures; return its verdict.
#[inline(never)]
pub fn run_all(meter: &mut Meter, peak: &mut usize) -> Result<Family, MeterError> {
    hprintln!(
        "mls-active: Group<{}, {}, {}, {}> {} B per member (limit {} B); x5 (alice, her pending commit, bob, carol, \
         the spare slot), ProposalCache<1, 16> {} B, scratch {} B (send_commit_scratch_len of 14 KeyPackages), \
         commit {} B, Welcome {} B; {} KeyPackages of {} B at most",
        MEMBERS,
        LEAF_BYTES,
        GROUP_ID_BYTES,
        EXTENSION_BYTES,
        core::mem::size_of::<Group>(),
        GROUP_STATE_LIMIT,
        core::mem::size_of::<Cache>(),
        SCRATCH_LEN,
        COMMIT_CAP,
        WELCOME_CAP,
        MEMBERS,
        KP_CAP
    );
    let mut checks = Checks { passed: 0, total: 0 };
    match STATE.0.try_borrow_mut() {
        Ok(mut st) => run(meter, &mut st, &mut checks, peak)?,
        Err(_) => {
            checks.check("state borrowed once", false);
        }
    }
    Ok(Family { name: NAME, passed: checks.passed, total: checks.total })
}

/// The steps in order, each in its own frame; `Ok(false)`: stop here.
#[inline(never)]
fn run(meter: &mut Meter, st: &mut State, checks: &mut Checks, peak: &mut usize) -> Result<(), MeterError> {
    let mut rng = NotRandomTestRng::new(0x0016_a11c);
    let _ = key_packages_step(meter, st, &mut rng, checks, peak)?
        && create_step(meter, st, &mut rng, checks, peak)?
        && first_commit_step(meter, st, &mut rng, checks, peak)?
        && add_one_step(meter, st, &mut rng, checks, peak)?
        && update_step(meter, st, &mut rng, checks, peak)?
        && message_step(meter, st, &mut rng, checks, peak)?;
    final_figures(st, checks);
    Ok(())
}

/// Step 1: KeyPackages, each as on its own device (seed + KeyPackage measured).
#[inline(never)]
fn key_packages_step(
    meter: &mut Meter,
    st: &mut State,
    rng: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<bool, MeterError> {
    let made = KEY_PACKAGES.write_once(|kps| make_key_packages(meter, st, kps, rng, checks, peak));
    match made {
        Some(r) => r,
        None => Ok(checks.check("key packages made once", false)),
    }
}

#[inline(never)]
fn make_key_packages(
    meter: &mut Meter,
    st: &mut State,
    kps: &mut KeyPackages,
    rng: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<bool, MeterError> {
    let (mut sum, mut most) = (0u64, 0u32);
    let slots = st.members.iter_mut().zip(kps.bytes.iter_mut().zip(kps.lens.iter_mut()));
    for (i, (m, (kp, kp_len))) in slots.enumerate() {
        let id = identity(i);
        let params =
            KeyPackageParams { identity: &id, not_before: 0, not_after: u64::MAX, last_resort: false };
        let Some(s) = st.scratch.get_mut(..2 * KP_CAP) else { return Ok(false) };
        let (r, cost) = meter.measure(|| {
            let seed = Ed25519::generate(&mut *rng);
            create_key_package(&params, &seed, &mut *rng, kp, s).map(|(n, secrets)| (n, secrets, seed))
        })?;
        if i == 0 {
            print_cost("key-package", &cost, peak);
        }
        *peak = (*peak).max(cost.depth);
        sum += u64::from(cost.instructions);
        most = most.max(cost.instructions);
        let made = r.map(|(n, secrets, seed)| {
            *kp_len = n;
            m.secrets = secrets;
            m.seed = seed;
        });
        let parses =
            made.and_then(|()| KeyPackage::from_bytes(kp.get(..*kp_len).unwrap_or_default()).map(|_| ()));
        if !checks.ok("key package made and parses", &parses) {
            return Ok(false);
        }
    }
    let kp_max = kps.lens.iter().copied().max().unwrap_or(0);
    hprintln!(
        "mls-active: {} KeyPackages: {} instructions in all, {} the most for one; {} B the largest",
        MEMBERS,
        sum,
        most,
        kp_max
    );
    Ok(true)
}

/// Step 2: Alice creates the group.
#[inline(never)]
fn create_step(
    meter: &mut Meter,
    st: &mut State,
    rng: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<bool, MeterError> {
    let State { members, alice, .. } = st;
    let (Ok(kp), Some(member)) = (published().and_then(|k| k.get(0)), members.first()) else {
        return Ok(false);
    };
    let keys = member.keys(kp);
    let (r, cost) = meter.measure(|| alice.create_into(GROUP_ID, &keys, &[], &mut *rng))?;
    print_cost("create", &cost, peak);
    Ok(checks.ok("create", &r)
        && checks.check("created: epoch 0, 1 member", alice.epoch() == 0 && alice.members().count() == 1))
}

/// Step 3: One commit adds members 1..=14; bob (1) joins from the Welcome.
#[inline(never)]
fn first_commit_step(
    meter: &mut Meter,
    st: &mut State,
    rng: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<bool, MeterError> {
    let State { members, alice, pending, bob, scratch, commit, welcome, .. } = st;
    let options = CommitOptions::default(); // PrivateMessage, tree in the Welcome
    let Ok(adds) = first_added() else { return Ok(checks.check("key packages 1..=14", false)) };
    let mut out = Out { pending, commit, welcome, scratch };
    let (r, cost) = commit_probed(meter, alice, adds, &options, rng, &mut out, checks, "commit-add-14")?;
    print_cost("commit-add-14", &cost, peak);
    let Ok(sent) = r else { return Ok(checks.ok("commit adding 14", &r)) };
    checks.check("commit adding 14", true);
    hprintln!("mls-active: commit-add-14: commit {} B, Welcome {} B", sent.commit_len, sent.welcome_len);
    checks.check("pending commit is epoch 1, alice still in 0", sent.epoch == 1 && alice.epoch() == 0);
    let (r, cost) = meter.measure(|| alice.merge_pending_commit(out.pending))?;
    print_cost("merge-pending-commit", &cost, peak);
    checks.ok("merge", &r);
    checks.check("alice: epoch 1, 15 members", alice.epoch() == 1 && alice.members().count() == 15);

    let Out { welcome, scratch, .. } = out;
    let w = welcome.get(..sent.welcome_len).unwrap_or_default();
    let (Ok(kp), Some(bob_member)) = (published().and_then(|k| k.get(1)), members.get(1)) else {
        return Ok(false);
    };
    let (r, cost) = meter.measure(|| join(bob, w, bob_member, kp, scratch))?;
    print_cost("join-welcome-15-members", &cost, peak);
    Ok(checks.ok("bob joins", &r)
        && checks.check("bob is leaf 1", bob.own_leaf() == 1)
        && checks
            .check("alice and bob agree (epoch 1, 15 members)", agree(&[alice, bob], 15) && bob.epoch() == 1))
}

/// Step 4: Add a member, the 16th (carol, 15): bob processes the commit, carol
/// joins from the Welcome.
#[inline(never)]
fn add_one_step(
    meter: &mut Meter,
    st: &mut State,
    rng: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<bool, MeterError> {
    let State { members, alice, pending, bob, carol, spare, cache, scratch, commit, welcome, .. } = st;
    let options = CommitOptions::default();
    let Ok(kp) = published().and_then(|k| k.get(LAST)) else {
        return Ok(checks.check("key package 15", false));
    };
    let adds = [kp];
    let mut out = Out { pending, commit, welcome, scratch };
    let (r, cost) = commit_probed(meter, alice, &adds, &options, rng, &mut out, checks, "commit-add-1")?;
    print_cost("commit-add-1", &cost, peak);
    let Ok(sent) = r else { return Ok(checks.ok("commit adding one", &r)) };
    checks.check("commit adding one", true);
    hprintln!("mls-active: commit-add-1: commit {} B, Welcome {} B", sent.commit_len, sent.welcome_len);
    let Out { pending, commit, welcome, scratch } = out;
    let c = commit.get(..sent.commit_len).unwrap_or_default();
    let (r, cost) = meter.measure(|| process(bob, c, cache, spare, scratch))?;
    print_cost("process-commit-add-1", &cost, peak);
    checks.check("bob processes the add", r == Ok(CommitEvent::NewEpoch { epoch: 2 }));
    checks.ok("alice merges", &alice.merge_pending_commit(pending));
    let w = welcome.get(..sent.welcome_len).unwrap_or_default();
    let Some(carol_member) = members.get(LAST) else { return Ok(false) };
    let (r, cost) = meter.measure(|| join(carol, w, carol_member, kp, scratch))?;
    print_cost("join-welcome-16-members", &cost, peak);
    Ok(checks.ok("carol joins", &r)
        && checks.check("carol is leaf 15", carol.own_leaf() == LAST as u32)
        && checks.check(
            "alice, bob, carol agree (epoch 2, 16 members)",
            agree(&[alice, bob, carol], MEMBERS) && alice.epoch() == 2,
        ))
}

/// Our leaf's encryption key.
fn leaf_key(g: &Group, leaf: u32) -> Option<[u8; 32]> {
    g.tree().leaf(leaf).and_then(|l| l.encryption_key.try_into().ok())
}

/// Step 5: An update: alice's empty commit with an UpdatePath; bob and carol
/// process it.
#[inline(never)]
fn update_step(
    meter: &mut Meter,
    st: &mut State,
    rng: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<bool, MeterError> {
    let State { alice, pending, bob, carol, spare, cache, scratch, commit, welcome, .. } = st;
    let before_key = leaf_key(alice, 0);
    let update = CommitOptions { update_path: true, ..CommitOptions::default() };
    let mut out = Out { pending, commit, welcome, scratch };
    let (r, cost) = commit_probed(meter, alice, &[], &update, rng, &mut out, checks, "commit-update")?;
    print_cost("commit-update", &cost, peak);
    let Ok(sent) = r else { return Ok(checks.ok("update commit", &r)) };
    checks.check("update commit", true);
    hprintln!("mls-active: commit-update: commit {} B, no Welcome ({} B)", sent.commit_len, sent.welcome_len);
    let Out { pending, commit, scratch, .. } = out;
    checks.ok("alice merges the update", &alice.merge_pending_commit(pending));
    let c = commit.get(..sent.commit_len).unwrap_or_default();
    for (name, g) in [("process-commit-update", &mut *bob), ("process-commit-update-carol", &mut *carol)] {
        let (r, cost) = meter.measure(|| process(g, c, cache, spare, scratch))?;
        print_cost(name, &cost, peak);
        checks.check("the update is processed", r == Ok(CommitEvent::NewEpoch { epoch: 3 }));
    }
    checks.check(
        "alice's leaf key is new, bob and carol see it",
        before_key.is_some()
            && leaf_key(alice, 0) != before_key
            && leaf_key(bob, 0) == leaf_key(alice, 0)
            && leaf_key(carol, 0) == leaf_key(alice, 0),
    );
    Ok(checks.check(
        "alice, bob, carol agree (epoch 3, 16 members)",
        agree(&[alice, bob, carol], MEMBERS) && alice.epoch() == 3,
    ))
}

/// Step 6: A message: alice to bob and carol, then bob's reply to alice.
#[inline(never)]
fn message_step(
    meter: &mut Meter,
    st: &mut State,
    rng: &mut NotRandomTestRng,
    checks: &mut Checks,
    peak: &mut usize,
) -> Result<bool, MeterError> {
    let State { alice, bob, carol, scratch, app, .. } = st;
    let payload = [0x5au8; APP_LEN];
    let Some(s) = scratch.get_mut(..Group::seal_scratch_len(APP_LEN, 0)) else { return Ok(false) };
    let (r, cost) = meter.measure(|| alice.seal_application(&payload, &[], 0, &mut *rng, app, s))?;
    print_cost("application-seal-64B", &cost, peak);
    let Ok(n) = r else { return Ok(checks.ok("alice seals", &r)) };
    checks.check("alice seals", true);
    let m = app.get(..n).unwrap_or_default();
    for (name, g) in [("application-open-64B", &mut *bob), ("application-open-64B-carol", &mut *carol)] {
        let Some(s) = scratch.get_mut(..Group::application_scratch_len(n)) else { return Ok(false) };
        let (r, cost) = meter.measure(|| g.open_application(m, s).map(|o| (o.sender, o.data == payload)))?;
        print_cost(name, &cost, peak);
        checks.check("message opened: sender 0, payload intact", r == Ok((0, true)));
    }
    let reply = [0xb0u8; APP_LEN];
    let Some(s) = scratch.get_mut(..Group::seal_scratch_len(APP_LEN, 0)) else { return Ok(false) };
    let (r, cost) = meter.measure(|| bob.seal_application(&reply, &[], 0, &mut *rng, app, s))?;
    print_cost("application-seal-first-64B-bob", &cost, peak);
    let n = r.unwrap_or(0);
    let m = app.get(..n).unwrap_or_default();
    let Some(s) = scratch.get_mut(..Group::application_scratch_len(n)) else { return Ok(false) };
    let opened = alice.open_application(m, s).map(|o| (o.sender, o.data == reply));
    Ok(checks.check("bob's reply opened by alice", opened == Ok((1, true))))
}

/// The figures of the final state.
#[inline(never)]
fn final_figures(st: &mut State, checks: &mut Checks) {
    let State { alice, scratch, .. } = st;
    if !alice.is_joined() {
        return;
    }
    let largest_leaf = (0..alice.tree().leaf_count())
        .filter_map(|i| alice.tree().leaf(i).map(|l| l.as_bytes().len()))
        .max()
        .unwrap_or(0);
    let encoded = scratch.get_mut(..Group::MAX_ENCODED_LEN).and_then(|s| alice.encode_state(s).ok());
    hprintln!(
        "mls-active: final: epoch {}, {} members in {} leaves; largest leaf node {} B (of {}); \
         encoded state {} B (MAX_ENCODED_LEN {})",
        alice.epoch(),
        alice.members().count(),
        alice.tree().leaf_count(),
        largest_leaf,
        LEAF_BYTES,
        encoded.unwrap_or(0),
        Group::MAX_ENCODED_LEN
    );
    checks.check("largest leaf fits", largest_leaf > 0 && largest_leaf <= LEAF_BYTES);
}

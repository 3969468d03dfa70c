//! Ours, OpenMLS 0.9 and mls-rs 0.57 in one run, ciphersuite 0x0003, at
//! N = 2, 8, 32, 128 members (one group per implementation and N, all
//! members of that implementation).
//!
//! The group, built the same way for each implementation: member 0
//! creates it and adds the others by value, 16 KeyPackages a commit (our
//! limit, `MAX_ADDS`), tree in the Welcome; then the members at the even
//! leaves 2, 4, ..., N-2 and finally member 0 each commit an update (an
//! empty commit with a path), so every parent node is set and no leaf is
//! unmerged: each copath node resolves to one node (N = 2: member 0's
//! update sets the root). Only the members still needed join and process
//! commits (member 0, the receiver at leaf N-1, and the even-leaf members
//! until their update). Every commit is a PublicMessage.
//!
//! Measured, from bytes to bytes through the harness (`Member`):
//! - `update_commit`: member 0 makes an update commit (path, no
//!   proposals); its pending commit is dropped between iterations (not
//!   timed);
//! - `process_update`: the member at leaf N-1 processes that commit and
//!   moves to the next epoch (OpenMLS: `process_message` and
//!   `merge_staged_commit`); its state is restored between iterations
//!   (not timed: ours swaps back the previous epoch the call left in the
//!   spare slot, OpenMLS reloads a copy of its storage, mls-rs takes a
//!   clone of its group);
//! - `add_commit`: member 0 commits adding one member (a KeyPackage of the
//!   same implementation, by value, no path, Welcome with the tree);
//! - `process_add`: the member at leaf N-1 processes that commit;
//! - `app_message_1k`: member 0 seals 1 KiB (PrivateMessage, signed) and
//!   the member at leaf N-1 opens it.
//!
//! `cargo bench --manifest-path interop/mls/Cargo.toml`, then
//! `cargo run --release --manifest-path interop/mls/Cargo.toml --example ratios`
//! for the table. Optional filter as usual (`-- process_update`).

use criterion::{Bencher, BenchmarkId, Criterion, criterion_group, criterion_main};
use securemesh_interop_mls::{Member, Opts, Processed, assert_agree};
use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [2, 8, 32, 128];
const KINDS: [&str; 3] = ["ours", "openmls", "mls-rs"];
/// Our commit takes at most 16 Adds by value (`MAX_ADDS`).
const ADDS_PER_COMMIT: usize = 16;

fn member(kind: &str, name: &str) -> Member {
    match kind {
        "ours" => Member::ours(name),
        "openmls" => Member::openmls(name),
        "mls-rs" => Member::mls_rs(name),
        _ => unreachable!("{kind}"),
    }
}

fn public(path: bool) -> Opts {
    Opts { public: true, tree_in_welcome: true, path }
}

/// `committer` commits (adds by value, or an update), everyone in
/// `others` processes it, `committer` merges.
fn step(committer: &mut Member, others: &mut [Member], adds: &[Vec<u8>], opts: Opts) -> Option<Vec<u8>> {
    let sent = committer.commit(adds, &[], &opts).expect("commit");
    for m in others.iter_mut() {
        let got = m.process_commit(&sent.commit).expect("process");
        assert!(matches!(got, Processed::NewEpoch(_)));
    }
    committer.merge().expect("merge");
    sent.welcome
}

/// The group of `n` members of `kind` described at the top; returns
/// member 0 and the member at leaf `n - 1`.
fn build(kind: &str, n: usize) -> (Member, Member) {
    let mut founder = member(kind, &format!("{kind}-0"));
    founder.create(b"securemesh-bench").expect("create");
    // Members that must follow the group: the even leaves (until their
    // update) and the last one. The others are in the tree only.
    let needed = |leaf: usize| leaf.is_multiple_of(2) || leaf == n - 1;
    let mut members = vec![founder];
    let leaves: Vec<usize> = (1..n).collect();
    for batch in leaves.chunks(ADDS_PER_COMMIT) {
        let joiners: Vec<Member> = batch.iter().map(|i| member(kind, &format!("{kind}-{i}"))).collect();
        let kps: Vec<Vec<u8>> = joiners.iter().map(Member::key_package).collect();
        let (founder, others) = members.split_first_mut().expect("the founder");
        let welcome = step(founder, others, &kps, public(false)).expect("a Welcome");
        for (leaf, mut j) in batch.iter().zip(joiners) {
            if needed(*leaf) {
                j.join(&welcome, None).expect("join");
                assert_eq!(j.leaf() as usize, *leaf);
                members.push(j);
            }
        }
    }
    // Updates by the even leaves 2..n-2 in turn, each leaving once done,
    // then by the founder.
    while members.len() > 2 {
        let mut committer = members.remove(1);
        step(&mut committer, &mut members, &[], public(true));
    }
    let (founder, others) = members.split_first_mut().expect("the founder");
    step(founder, others, &[], public(true));
    assert_agree(&members);
    let receiver = members.pop().expect("the last member");
    let founder = members.pop().expect("the founder");
    assert_eq!((founder.leaf(), receiver.leaf() as usize), (0, n - 1));
    (founder, receiver)
}

/// The member in `b` processes `commit`, restored after each iteration
/// (untimed).
fn process(b: &RefCell<Member>, commit: &[u8], bench: &mut Bencher<'_>) {
    bench.iter_custom(|iters| {
        let saved = b.borrow().save();
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            let got = b.borrow_mut().process_commit(commit).expect("process");
            total += start.elapsed();
            assert!(matches!(got, Processed::NewEpoch(_)));
            b.borrow_mut().restore(&saved).expect("restore");
        }
        total
    })
}

/// Time `f` only, `iters` times; `reset` runs untimed after each.
fn timed<T>(iters: u64, mut f: impl FnMut() -> T, mut reset: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let out = f();
        total += start.elapsed();
        black_box(out);
        reset();
    }
    total
}

fn benches(c: &mut Criterion) {
    for kind in KINDS {
        for n in SIZES {
            let start = Instant::now();
            let (a, b) = build(kind, n);
            let (a, b) = (RefCell::new(a), RefCell::new(b));
            let id = BenchmarkId::new(kind, n);

            let update = a.borrow_mut().commit(&[], &[], &public(true)).expect("update commit");
            a.borrow_mut().clear_pending().expect("clear");
            let joiner = member(kind, &format!("{kind}-joiner"));
            let kp = vec![joiner.key_package()];
            let add = a.borrow_mut().commit(&kp, &[], &public(false)).expect("add commit");
            a.borrow_mut().clear_pending().expect("clear");
            eprintln!(
                "{kind} N={n}: group built in {:.1} s; update commit {} B, add commit {} B, Welcome {} B",
                start.elapsed().as_secs_f64(),
                update.commit.len(),
                add.commit.len(),
                add.welcome.as_ref().map_or(0, Vec::len),
            );

            c.benchmark_group("update_commit").bench_function(id.clone(), |bench| {
                bench.iter_custom(|iters| {
                    timed(
                        iters,
                        || a.borrow_mut().commit(&[], &[], &public(true)).expect("commit"),
                        || a.borrow_mut().clear_pending().expect("clear"),
                    )
                })
            });
            c.benchmark_group("process_update")
                .bench_function(id.clone(), |bench| process(&b, &update.commit, bench));
            c.benchmark_group("add_commit").bench_function(id.clone(), |bench| {
                bench.iter_custom(|iters| {
                    timed(
                        iters,
                        || a.borrow_mut().commit(&kp, &[], &public(false)).expect("commit"),
                        || a.borrow_mut().clear_pending().expect("clear"),
                    )
                })
            });
            c.benchmark_group("process_add")
                .bench_function(id.clone(), |bench| process(&b, &add.commit, bench));
            let data = vec![0x5a; 1024];
            c.benchmark_group("app_message_1k").bench_function(id, |bench| {
                bench.iter_custom(|iters| {
                    timed(
                        iters,
                        || {
                            let message = a.borrow_mut().seal(&data).expect("seal");
                            b.borrow_mut().open(&message).expect("open")
                        },
                        || {},
                    )
                })
            });
            // Both still agree (nothing above changed the epoch for good).
            assert_agree(&[a.into_inner(), b.into_inner()]);
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = mls; config = config(); targets = benches }
criterion_main!(mls);

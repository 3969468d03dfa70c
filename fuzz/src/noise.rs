//! Deterministic Noise sessions for the `noise_*` targets and the seed
//! generator.
//!
//! Every key is fixed: the static keys ([`INITIATOR_STATIC`],
//! [`RESPONDER_STATIC`]) and the ephemerals, which are set with
//! `Builder::dangerous_with_ephemeral` ([`INITIATOR_EPHEMERAL`],
//! [`RESPONDER_EPHEMERAL`]). So every run of a target rebuilds exactly the
//! same handshake, and the "genuine" message an honest peer writes at any
//! point is known (and is what the seeds hold). Never use fixed ephemerals
//! outside tests.

use securemesh_core::Secret;
use securemesh_core::crypto::{Dh, X25519};
use securemesh_core::envelope::Persist;
use securemesh_noise::{
    Builder, DatagramTransport, HandshakeState, MAX_MESSAGE_LEN, Protocol, Role, Transport,
};

use std::sync::OnceLock;

use crate::FuzzRng;

/// Prologue of every fuzz handshake.
pub const PROLOGUE: &[u8] = b"securemesh-fuzz";
/// The initiator's static private key.
pub const INITIATOR_STATIC: [u8; 32] = [0x11; 32];
/// The responder's static private key.
pub const RESPONDER_STATIC: [u8; 32] = [0x22; 32];
/// The initiator's (fixed) ephemeral private key.
pub const INITIATOR_EPHEMERAL: [u8; 32] = [0x33; 32];
/// The responder's (fixed) ephemeral private key.
pub const RESPONDER_EPHEMERAL: [u8; 32] = [0x44; 32];

/// Payloads of handshake messages 0, 1 and 2 (non-empty, so a payload
/// buffer that is not wiped shows).
pub const HANDSHAKE_PAYLOADS: [&[u8]; 3] =
    [b"msg 0: hello responder", b"msg 1: hello initiator", b"msg 2: done"];

/// The patterns the handshake target covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `Noise_XX_25519_ChaChaPoly_SHA256` (3 messages, statics exchanged).
    Xx,
    /// `Noise_IK_25519_ChaChaPoly_SHA256` (responder static known).
    Ik,
    /// `Noise_NK_25519_ChaChaPoly_SHA256` (no initiator static).
    Nk,
}

impl Pattern {
    /// The full protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Xx => "Noise_XX_25519_ChaChaPoly_SHA256",
            Pattern::Ik => "Noise_IK_25519_ChaChaPoly_SHA256",
            Pattern::Nk => "Noise_NK_25519_ChaChaPoly_SHA256",
        }
    }

    /// The parsed protocol.
    pub fn protocol(self) -> Protocol {
        Protocol::parse(self.name()).expect("valid protocol name")
    }

    /// Number of handshake messages.
    pub fn messages(self) -> usize {
        match self {
            Pattern::Xx => 3,
            Pattern::Ik | Pattern::Nk => 2,
        }
    }
}

/// A point in a handshake where one party must read message `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Situation {
    /// The protocol.
    pub pattern: Pattern,
    /// Index of the message the reader must read next (even: the responder
    /// reads, odd: the initiator reads).
    pub index: usize,
    /// Whether a cipher key is set by the time the payload is read, so the
    /// whole message is authenticated (everything before the payload is
    /// mixed into `h`, the payload's associated data). Only XX message 0
    /// (`-> e`) is unauthenticated.
    pub keyed: bool,
    /// Whether the message carries the writer's static key (the reader
    /// then waits for `accept_remote_static`).
    pub carries_static: bool,
}

impl Situation {
    /// The role of the party that reads.
    pub fn reader_role(&self) -> Role {
        if self.index.is_multiple_of(2) { Role::Responder } else { Role::Initiator }
    }
}

/// The situations of the `noise_handshake_read` target, selected by the
/// first input byte modulo their number.
pub const SITUATIONS: [Situation; 7] = [
    // XX responder before `-> e`.
    Situation { pattern: Pattern::Xx, index: 0, keyed: false, carries_static: false },
    // XX initiator before `<- e, ee, s, es`.
    Situation { pattern: Pattern::Xx, index: 1, keyed: true, carries_static: true },
    // XX responder before `-> s, se`.
    Situation { pattern: Pattern::Xx, index: 2, keyed: true, carries_static: true },
    // IK responder before `-> e, es, s, ss`.
    Situation { pattern: Pattern::Ik, index: 0, keyed: true, carries_static: true },
    // IK initiator before `<- e, ee, se`.
    Situation { pattern: Pattern::Ik, index: 1, keyed: true, carries_static: false },
    // NK responder before `-> e, es`.
    Situation { pattern: Pattern::Nk, index: 0, keyed: true, carries_static: false },
    // NK initiator before `<- e, ee`.
    Situation { pattern: Pattern::Nk, index: 1, keyed: true, carries_static: false },
];

/// X25519 public key of a private key.
pub fn public(secret: [u8; 32]) -> [u8; 32] {
    X25519::public_key(&Secret::new(secret))
}

/// Public key of [`RESPONDER_STATIC`] (computed once).
pub fn responder_public() -> [u8; 32] {
    static P: OnceLock<[u8; 32]> = OnceLock::new();
    *P.get_or_init(|| public(RESPONDER_STATIC))
}

/// Public key of [`INITIATOR_STATIC`] (computed once).
pub fn initiator_public() -> [u8; 32] {
    static P: OnceLock<[u8; 32]> = OnceLock::new();
    *P.get_or_init(|| public(INITIATOR_STATIC))
}

/// The RNG lent to `write_message` (never drawn from: the ephemerals are
/// fixed).
pub fn rng() -> FuzzRng {
    FuzzRng::new([0x5e; 12])
}

/// Build one party of `pattern` with the fixed keys.
pub fn build(pattern: Pattern, role: Role) -> HandshakeState {
    let protocol = pattern.protocol();
    let b = Builder::new(&protocol).prologue(PROLOGUE);
    let r = match role {
        Role::Initiator => {
            let b = if pattern == Pattern::Nk { b } else { b.local_static(Secret::new(INITIATOR_STATIC)) };
            let b = if pattern == Pattern::Xx { b } else { b.remote_static(responder_public()) };
            b.dangerous_with_ephemeral(Secret::new(INITIATOR_EPHEMERAL)).build_initiator()
        }
        Role::Responder => b
            .local_static(Secret::new(RESPONDER_STATIC))
            .dangerous_with_ephemeral(Secret::new(RESPONDER_EPHEMERAL))
            .build_responder(),
    };
    r.expect("build handshake")
}

/// The two parties of a handshake.
pub struct Pair {
    /// The initiator.
    pub initiator: HandshakeState,
    /// The responder.
    pub responder: HandshakeState,
}

impl Pair {
    /// Both parties of `pattern`, before message 0.
    pub fn new(pattern: Pattern) -> Self {
        Pair { initiator: build(pattern, Role::Initiator), responder: build(pattern, Role::Responder) }
    }

    /// (writer, reader) of message `index`.
    pub fn parties(&mut self, index: usize) -> (&mut HandshakeState, &mut HandshakeState) {
        if index.is_multiple_of(2) {
            (&mut self.initiator, &mut self.responder)
        } else {
            (&mut self.responder, &mut self.initiator)
        }
    }

    /// The party that reads message `index`.
    pub fn reader(&mut self, index: usize) -> &mut HandshakeState {
        self.parties(index).1
    }

    /// The party that writes message `index`.
    pub fn writer(&mut self, index: usize) -> &mut HandshakeState {
        self.parties(index).0
    }

    /// The writer of message `index` writes it (with
    /// `HANDSHAKE_PAYLOADS[index]`); returns the message.
    pub fn write(&mut self, index: usize) -> Vec<u8> {
        let mut out = vec![0u8; MAX_MESSAGE_LEN];
        let n = self
            .writer(index)
            .write_message(HANDSHAKE_PAYLOADS[index], &mut out, &mut rng())
            .expect("honest write_message");
        out.truncate(n);
        out
    }

    /// The reader of message `index` reads the genuine `message`, checks
    /// the payload and accepts a revealed static key.
    pub fn read_genuine(&mut self, index: usize, message: &[u8]) {
        let reader = self.reader(index);
        let mut payload = vec![0u8; MAX_MESSAGE_LEN];
        let n = reader.read_message(message, &mut payload).expect("genuine message refused");
        assert_eq!(&payload[..n], HANDSHAKE_PAYLOADS[index], "payload of genuine message {index}");
        if reader.remote_static_pending() {
            reader.accept_remote_static();
        }
    }

    /// Play messages `from..to` honestly.
    pub fn run(&mut self, from: usize, to: usize) {
        for index in from..to {
            let m = self.write(index);
            self.read_genuine(index, &m);
        }
    }

    /// Finish both parties (the handshake must be complete): equal
    /// handshake hashes and the expected remote static keys. Returns
    /// (initiator, responder), both at nonce 0.
    pub fn finish(self, pattern: Pattern) -> (Transport, Transport) {
        assert!(self.initiator.is_complete() && self.responder.is_complete());
        assert_eq!(
            self.initiator.handshake_hash(),
            self.responder.handshake_hash(),
            "handshake hashes differ"
        );
        let (i, r) = (self.initiator.finish().expect("finish"), self.responder.finish().expect("finish"));
        assert_eq!(i.handshake_hash(), r.handshake_hash());
        assert_eq!(i.remote_static(), Some(&responder_public()));
        let initiator_static = (pattern != Pattern::Nk).then(initiator_public);
        assert_eq!(r.remote_static(), initiator_static.as_ref());
        (i, r)
    }
}

/// One transport message each way must go through.
pub fn exchange(initiator: &mut Transport, responder: &mut Transport) {
    let mut msg = [0u8; 64];
    let mut out = [0u8; 64];
    let n = initiator.write_message(b"initiator to responder", &mut msg).expect("transport write");
    let m = responder.read_message(&msg[..n], &mut out).expect("transport read");
    assert_eq!(&out[..m], b"initiator to responder");
    let n = responder.write_message(b"responder to initiator", &mut msg).expect("transport write");
    let m = initiator.read_message(&msg[..n], &mut out).expect("transport read");
    assert_eq!(&out[..m], b"responder to initiator");
}

/// The state of a [`Situation`]: both parties, with the genuine message
/// `index` just written by the honest writer and not yet read.
pub struct Step {
    /// Both parties.
    pub pair: Pair,
    /// The genuine message `index`.
    pub genuine: Vec<u8>,
}

/// Bring `pattern` to the point where message `index` must be read.
pub fn drive(pattern: Pattern, index: usize) -> Step {
    let mut pair = Pair::new(pattern);
    pair.run(0, index);
    let genuine = pair.write(index);
    Step { pair, genuine }
}

/// The genuine messages of a complete honest handshake of `pattern` (with
/// [`HANDSHAKE_PAYLOADS`]), computed once.
pub fn transcript(pattern: Pattern) -> &'static [Vec<u8>] {
    static T: OnceLock<[Vec<Vec<u8>>; 3]> = OnceLock::new();
    let all = T.get_or_init(|| {
        [Pattern::Xx, Pattern::Ik, Pattern::Nk].map(|p| {
            let mut pair = Pair::new(p);
            let mut msgs = Vec::new();
            for index in 0..p.messages() {
                let m = pair.write(index);
                pair.read_genuine(index, &m);
                msgs.push(m);
            }
            msgs
        })
    });
    match pattern {
        Pattern::Xx => &all[0],
        Pattern::Ik => &all[1],
        Pattern::Nk => &all[2],
    }
}

/// Only the reader of [`Situation`] `s`, brought to the point where it
/// must read message `s.index`: it plays its side of the handshake against
/// the recorded genuine messages ([`transcript`]), which takes about half
/// the X25519 operations of [`drive`] (no honest peer is built).
pub fn reader_at(s: &Situation) -> HandshakeState {
    let role = s.reader_role();
    let messages = transcript(s.pattern);
    let mut reader = build(s.pattern, role);
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    for (index, genuine) in messages.iter().enumerate().take(s.index) {
        if index.is_multiple_of(2) == (role == Role::Initiator) {
            let n =
                reader.write_message(HANDSHAKE_PAYLOADS[index], &mut buf, &mut rng()).expect("honest write");
            assert_eq!(&buf[..n], genuine.as_slice(), "deterministic handshake diverged");
        } else {
            let n = reader.read_message(genuine, &mut buf).expect("genuine message refused");
            assert_eq!(&buf[..n], HANDSHAKE_PAYLOADS[index]);
            if reader.remote_static_pending() {
                reader.accept_remote_static();
            }
        }
    }
    reader
}

/// A completed XX session: (initiator, responder) transports.
pub fn xx_transports() -> (Transport, Transport) {
    let mut pair = Pair::new(Pattern::Xx);
    pair.run(0, Pattern::Xx.messages());
    pair.finish(Pattern::Xx)
}

/// Plain envelope of a persisted state (`encode_state`).
pub fn encode_state<T: Persist>(t: &T) -> Vec<u8> {
    let mut out = vec![0u8; T::MAX_ENCODED_LEN];
    let n = t.encode_state(&mut out).expect("encode_state");
    out.truncate(n);
    out
}

/// Payloads of the genuine stream messages of `noise_transport_read`
/// (nonces 0, 1, 2, 3).
pub fn stream_payloads() -> Vec<Vec<u8>> {
    vec![Vec::new(), b"transport message 1".to_vec(), vec![0xa5; 100], b"transport message 3".to_vec()]
}

/// What `noise_transport_read` starts from, for one direction: the
/// receiver's persisted state right after the handshake and the genuine
/// messages the sender writes, as (message, payload) in nonce order.
pub struct StreamFixture {
    /// `encode_state` of the receiving [`Transport`].
    pub receiver: Vec<u8>,
    /// (ciphertext, plaintext) for nonces 0, 1, 2, ...
    pub messages: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Direction 0: the initiator sends, the responder receives; 1: the
/// reverse.
pub fn stream_fixture(direction: u8) -> StreamFixture {
    let (i, r) = xx_transports();
    let (mut sender, receiver) = if direction & 1 == 0 { (i, r) } else { (r, i) };
    let mut messages = Vec::new();
    for p in stream_payloads() {
        let mut out = vec![0u8; p.len() + securemesh_noise::OVERHEAD];
        let n = sender.write_message(&p, &mut out).expect("transport write");
        out.truncate(n);
        messages.push((out, p));
    }
    StreamFixture { receiver: encode_state(&receiver), messages }
}

/// The receive window of the datagram target (the default, 2048 packets).
pub const DATAGRAM_WORDS: usize = securemesh_noise::DEFAULT_WINDOW_WORDS;

/// Counters of the genuine packets of `noise_datagram_open`: around word
/// and window edges (window = 2048), and far ahead.
pub const DATAGRAM_COUNTERS: [u64; 14] =
    [0, 1, 2, 63, 64, 65, 2047, 2048, 2049, 2111, 2112, 2200, 4100, 5000];

/// Payload of the genuine packet with `counter`.
pub fn datagram_payload(counter: u64) -> Vec<u8> {
    if counter == 1 { Vec::new() } else { format!("datagram {counter}").into_bytes() }
}

/// What `noise_datagram_open` starts from, for one direction: the
/// receiver's persisted state right after the handshake, and the genuine
/// packets with the counters [`DATAGRAM_COUNTERS`].
pub struct DatagramFixture {
    /// `encode_state` of the receiving `DatagramTransport<DATAGRAM_WORDS>`.
    pub receiver: Vec<u8>,
    /// (counter, packet, plaintext), in counter order.
    pub packets: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

/// Direction 0: the initiator sends, the responder receives; 1: the
/// reverse.
pub fn datagram_fixture(direction: u8) -> DatagramFixture {
    let (i, r) = xx_transports();
    let (sender, receiver) = if direction & 1 == 0 { (i, r) } else { (r, i) };
    let mut sender: DatagramTransport<DATAGRAM_WORDS> = sender.into_datagram();
    let receiver: DatagramTransport<DATAGRAM_WORDS> = receiver.into_datagram();
    let last = DATAGRAM_COUNTERS[DATAGRAM_COUNTERS.len() - 1];
    let mut packets = Vec::new();
    let mut out = vec![0u8; 64];
    for c in 0..=last {
        assert_eq!(sender.next_counter(), c);
        let p = datagram_payload(c);
        let n = sender.seal(&p, &mut out).expect("seal");
        if DATAGRAM_COUNTERS.contains(&c) {
            packets.push((c, out[..n].to_vec(), p));
        }
    }
    DatagramFixture { receiver: encode_state(&receiver), packets }
}

/// Whether every byte of `b` is zero. An OR reduction rather than a
/// comparison per byte: libFuzzer traces every comparison, which made
/// checking 64 KiB buffers the bulk of a run.
pub fn all_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, x| acc | x) == 0
}

/// Most frames [`split_frames`] returns.
pub const MAX_FRAMES: usize = 24;

/// Split fuzz input into frames: `len u16 (big-endian) | bytes[len]`
/// repeated; a frame whose declared length runs past the end (or a lone
/// trailing byte) takes what is left. At most [`MAX_FRAMES`] frames; the
/// rest is ignored.
pub fn split_frames(mut data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while !data.is_empty() && frames.len() < MAX_FRAMES {
        let Some((len, rest)) = data.split_first_chunk::<2>() else {
            frames.push(data);
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (frame, tail) = rest.split_at(len);
        frames.push(frame);
        data = tail;
    }
    frames
}

/// Inverse of [`split_frames`] (for the seed generator).
pub fn join_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut v = Vec::new();
    for f in frames {
        v.extend_from_slice(&u16::try_from(f.len()).expect("frame fits u16").to_be_bytes());
        v.extend_from_slice(f);
    }
    v
}

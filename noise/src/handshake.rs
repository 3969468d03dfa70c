//! `HandshakeState` (§5.3): the sans-IO handshake state machine.

use crate::cipher::{Key, TAG_LEN};
use crate::error::Error;
#[cfg(feature = "hfs")]
use crate::kem::{KemPublic, KemSecret, MAX_KEM_CIPHERTEXT_LEN};
use crate::message::MAX_MESSAGE_LEN;
use crate::pattern::{MessagePattern, Protocol, Token};
use crate::symmetric::{MAX_HASH_LEN, SymmetricState};
use crate::transport::Transport;
use securemesh_core::crypto::{Dh, X25519};
use securemesh_core::{CryptoRng, Secret};

/// `DHLEN` of 25519.
pub const DH_LEN: usize = 32;
/// Number of PSK slots (`psk0` to `psk4`).
pub const MAX_PSKS: usize = 5;

/// Which side of the handshake this party plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends the first message.
    Initiator,
    /// Receives the first message.
    Responder,
}

/// A static (or ephemeral) X25519 key pair: the private key, which zeroizes
/// on drop and is never printed, and its public key.
///
/// Generate a static key with [`Keypair::generate`], passing the RNG for
/// this call; publish [`Keypair::public`]; hand the pair to
/// [`Builder::local_static`] (which also takes a bare
/// `Secret<[u8; 32]>`). [`Keypair::from_secret`] recomputes the public key
/// of a stored private key.
///
/// ```
/// use securemesh_noise::{Builder, Keypair, protocol, Protocol};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(3);
/// const IK: Protocol = protocol!("Noise_IK_25519_ChaChaPoly_SHA256");
/// let server = Keypair::generate(&mut rng); // a real agent lends its CSPRNG
/// let server_pub: [u8; 32] = server.public(); // publish this
///
/// // After a restart, from the stored private key:
/// let stored = server.secret().duplicate();
/// assert_eq!(Keypair::from_secret(stored).public(), server_pub);
///
/// let client = Keypair::generate(&mut rng);
/// let i = Builder::new(&IK).local_static(client).remote_static(server_pub).build_initiator()?;
/// let r = Builder::new(&IK).local_static(server).build_responder()?;
/// # Ok::<(), securemesh_noise::Error>(())
/// ```
pub struct Keypair {
    secret: Secret<[u8; 32]>,
    public: [u8; 32],
}

impl Keypair {
    /// A second copy of the key pair, made on purpose (the private key is
    /// copied; both copies zeroize on drop). `Keypair` is not `Clone`, like
    /// [`Secret`].
    pub fn duplicate(&self) -> Self {
        Keypair { secret: self.secret.duplicate(), public: self.public }
    }

    /// A fresh key pair from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(X25519::generate(rng))
    }

    /// The key pair of a private key (computes its public key).
    pub fn from_secret(secret: Secret<[u8; 32]>) -> Self {
        let public = X25519::public_key(&secret);
        Keypair { secret, public }
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The private key, e.g. to store it.
    pub fn secret(&self) -> &Secret<[u8; 32]> {
        &self.secret
    }

    /// The private key, dropping the pair.
    pub fn into_secret(self) -> Secret<[u8; 32]> {
        self.secret
    }
}

impl From<Secret<[u8; 32]>> for Keypair {
    fn from(secret: Secret<[u8; 32]>) -> Self {
        Keypair::from_secret(secret)
    }
}

/// Shows the public key only.
impl core::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keypair").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Configures and builds a [`HandshakeState`].
///
/// ```
/// use securemesh_noise::{Builder, protocol, Protocol};
/// use securemesh_core::Secret;
/// const NN: Protocol = protocol!("Noise_NN_25519_ChaChaPoly_SHA256");
/// let initiator = Builder::new(&NN).prologue(b"agents v1").build_initiator()?;
/// let responder = Builder::new(&NN).prologue(b"agents v1").build_responder()?;
/// assert!(initiator.is_my_turn() && !responder.is_my_turn());
/// # Ok::<(), securemesh_noise::Error>(())
/// ```
pub struct Builder<'a> {
    protocol: Protocol,
    prologue: &'a [u8],
    s: Option<Keypair>,
    rs: Option<[u8; 32]>,
    pre_e: Option<Secret<[u8; 32]>>,
    re: Option<[u8; 32]>,
    fixed_e: Option<Secret<[u8; 32]>>,
    psks: [Option<Key>; MAX_PSKS],
    bad_psk: bool,
}

impl<'a> Builder<'a> {
    /// Start from a protocol.
    pub fn new(protocol: &Protocol) -> Self {
        Builder {
            protocol: *protocol,
            prologue: &[],
            s: None,
            rs: None,
            pre_e: None,
            re: None,
            fixed_e: None,
            psks: [None, None, None, None, None],
            bad_psk: false,
        }
    }

    /// The prologue both parties must agree on.
    pub fn prologue(mut self, prologue: &'a [u8]) -> Self {
        self.prologue = prologue;
        self
    }

    /// This party's static key: a [`Keypair`] or its private key
    /// (`Secret<[u8; 32]>`).
    pub fn local_static(mut self, key: impl Into<Keypair>) -> Self {
        self.s = Some(key.into());
        self
    }

    /// The peer's static public key, for patterns where it is a pre-message.
    pub fn remote_static(mut self, public: [u8; 32]) -> Self {
        self.rs = Some(public);
        self
    }

    /// The PSK for modifier `pskN`. `n` above 4 makes [`Builder::build`] fail with
    /// [`Error::UnexpectedKey`].
    pub fn psk(mut self, n: u8, psk: Secret<[u8; 32]>) -> Self {
        match self.psks.get_mut(usize::from(n)) {
            Some(slot) => *slot = Some(psk),
            None => self.bad_psk = true,
        }
        self
    }

    /// The peer's ephemeral public key as a pre-message (a fallback
    /// initiator, who read it from the failed first message).
    pub fn remote_ephemeral(mut self, public: [u8; 32]) -> Self {
        self.re = Some(public);
        self
    }

    /// This party's ephemeral private key as a pre-message (a fallback
    /// responder, who sent it in the failed first message).
    pub fn pre_ephemeral(mut self, secret: Secret<[u8; 32]>) -> Self {
        self.pre_e = Some(secret);
        self
    }

    /// Use `secret` as the ephemeral key instead of drawing it from the RNG.
    /// **Only for test vectors**: reusing an ephemeral key destroys the
    /// handshake's security.
    ///
    /// Exists only with the cargo feature `dangerous-testing`, which test
    /// vectors and fuzz targets enable and a product must not.
    ///
    /// With `hfs`, the KEM key of `e1` and the encapsulation of `ekem1`
    /// still draw from the RNG passed to `write_message` (ML-KEM: 64 bytes
    /// `d || z`, then 32 bytes `m`): vectors replay them with a fixed RNG.
    ///
    /// ```
    /// use securemesh_noise::{Builder, protocol, Protocol};
    /// use securemesh_core::Secret;
    /// # struct NoRng;
    /// # impl rand_core::TryRng for NoRng { type Error = core::convert::Infallible;
    /// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { unreachable!() }
    /// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { unreachable!() }
    /// #   fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> { unreachable!() } }
    /// # impl rand_core::TryCryptoRng for NoRng {}
    /// const NN: Protocol = protocol!("Noise_NN_25519_ChaChaPoly_SHA256");
    /// let mut a = Builder::new(&NN).dangerous_with_ephemeral(Secret::new([7; 32])).build_initiator()?;
    /// let mut msg = [0u8; 64];
    /// let n = a.write_message(b"", &mut msg, &mut NoRng)?; // the RNG is not used
    /// assert_eq!(n, 32);
    /// # Ok::<(), securemesh_noise::Error>(())
    /// ```
    #[cfg(feature = "dangerous-testing")]
    pub fn dangerous_with_ephemeral(mut self, secret: Secret<[u8; 32]>) -> Self {
        self.fixed_e = Some(secret);
        self
    }

    /// Build the initiator's state.
    pub fn build_initiator(self) -> Result<HandshakeState, Error> {
        self.build(Role::Initiator)
    }

    /// Build the responder's state.
    pub fn build_responder(self) -> Result<HandshakeState, Error> {
        self.build(Role::Responder)
    }

    /// Build the state for `role`, checking that exactly the keys the
    /// pattern needs were supplied ([`Error::MissingKey`],
    /// [`Error::UnexpectedKey`]), and run `Initialize()`.
    pub fn build(self, role: Role) -> Result<HandshakeState, Error> {
        let p = *self.protocol.pattern();
        let initiator = role == Role::Initiator;
        let (my_pre, their_pre) = if initiator {
            (p.pre_initiator(), p.pre_responder())
        } else {
            (p.pre_responder(), p.pre_initiator())
        };
        let needs_s = if initiator { p.initiator_has_static() } else { p.responder_has_static() };
        check(needs_s, self.s.is_some())?;
        check(their_pre.s, self.rs.is_some())?;
        check(my_pre.e, self.pre_e.is_some())?;
        check(their_pre.e, self.re.is_some())?;
        for (n, slot) in self.psks.iter().enumerate() {
            check(self.protocol.has_psk(n as u8), slot.is_some())?;
        }
        if self.bad_psk || (my_pre.e && self.fixed_e.is_some()) {
            return Err(Error::UnexpectedKey);
        }

        let mut sym = SymmetricState::new(&self.protocol);
        sym.mix_hash(self.prologue);
        let psk_mode = p.uses_psk();
        let s = self.s;
        let e = self.pre_e.map(Keypair::from_secret);
        // Pre-messages, the initiator's first (§5.3), `e` before `s`.
        let (i_e, i_s, r_e, r_s) = if initiator {
            (e.as_ref().map(|k| k.public), s.as_ref().map(|k| k.public), self.re, self.rs)
        } else {
            (self.re, self.rs, e.as_ref().map(|k| k.public), s.as_ref().map(|k| k.public))
        };
        for (pre, e_key, s_key) in [(p.pre_initiator(), i_e, i_s), (p.pre_responder(), r_e, r_s)] {
            if pre.e {
                let k = e_key.ok_or(Error::MissingKey)?;
                sym.mix_hash(&k);
                if psk_mode {
                    sym.mix_key(&k)?;
                }
            }
            if pre.s {
                sym.mix_hash(&s_key.ok_or(Error::MissingKey)?);
            }
        }
        Ok(HandshakeState {
            protocol: self.protocol,
            initiator,
            sym,
            keys: Keys {
                e,
                re: self.re,
                rs: self.rs,
                #[cfg(feature = "hfs")]
                e1: None,
                #[cfg(feature = "hfs")]
                re1: None,
            },
            s,
            psks: self.psks,
            fixed_e: self.fixed_e,
            next: 0,
            psk_mode,
            poisoned: false,
            rs_pending: false,
        })
    }
}

fn check(needed: bool, supplied: bool) -> Result<(), Error> {
    match (needed, supplied) {
        (true, false) => Err(Error::MissingKey),
        (false, true) => Err(Error::UnexpectedKey),
        _ => Ok(()),
    }
}

/// The keys a message changes; copied for transactional reads and writes.
struct Keys {
    e: Option<Keypair>,
    re: Option<[u8; 32]>,
    rs: Option<[u8; 32]>,
    /// `hfs`: our KEM decapsulation seed, from our `e1` until the peer's
    /// `ekem1` is decapsulated.
    #[cfg(feature = "hfs")]
    e1: Option<KemSecret>,
    /// `hfs`: the peer's KEM public key, from its `e1`.
    #[cfg(feature = "hfs")]
    re1: Option<KemPublic>,
}

impl Keys {
    fn duplicate(&self) -> Self {
        Keys {
            e: self.e.as_ref().map(Keypair::duplicate),
            re: self.re,
            rs: self.rs,
            #[cfg(feature = "hfs")]
            e1: self.e1.as_ref().map(Secret::duplicate),
            #[cfg(feature = "hfs")]
            re1: self.re1,
        }
    }
}

/// A Noise handshake in progress.
///
/// Drive it with [`write_message`](Self::write_message) and
/// [`read_message`](Self::read_message) in turn, then
/// [`finish`](Self::finish) it into a [`Transport`]. When a read reveals
/// the peer's static key, the handshake waits for
/// [`accept_remote_static`](Self::accept_remote_static) (policy stays with
/// the caller). A failed read poisons the state for good. Not `Clone`.
///
/// ```
/// use securemesh_noise::{Builder, protocol, Protocol};
/// use securemesh_core::{Secret, crypto::{Dh, X25519}};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
/// # let mut rng = Rng(7);
/// const XX: Protocol = protocol!("Noise_XX_25519_ChaChaPoly_SHA256");
/// let (alice_s, bob_s) = (X25519::generate(&mut rng), X25519::generate(&mut rng));
/// let bob_pub = X25519::public_key(&bob_s);
/// let mut a = Builder::new(&XX).local_static(alice_s).build_initiator()?;
/// let mut b = Builder::new(&XX).local_static(bob_s).build_responder()?;
/// let (mut msg, mut payload) = ([0u8; 256], [0u8; 256]);
///
/// let n = a.write_message(b"hello", &mut msg, &mut rng)?;
/// b.read_message(&msg[..n], &mut payload)?;
/// let n = b.write_message(b"", &mut msg, &mut rng)?;
/// a.read_message(&msg[..n], &mut payload)?;
/// assert_eq!(a.remote_static(), Some(&bob_pub)); // check it against policy, then:
/// a.accept_remote_static();
/// let n = a.write_message(b"", &mut msg, &mut rng)?;
/// b.read_message(&msg[..n], &mut payload)?;
/// b.accept_remote_static();
/// assert_eq!(a.handshake_hash(), b.handshake_hash());
///
/// let (mut ta, mut tb) = (a.finish()?, b.finish()?);
/// let n = ta.write_message(b"task", &mut msg)?;
/// let m = tb.read_message(&msg[..n], &mut payload)?;
/// assert_eq!(&payload[..m], b"task");
/// # Ok::<(), securemesh_noise::Error>(())
/// ```
///
/// # Any pattern, in one loop
///
/// The same loop drives every pattern: whoever [`is_my_turn`](Self::is_my_turn)
/// writes, the other reads, and a reader that learnt the peer's static key
/// ([`remote_static_pending`](Self::remote_static_pending)) checks it and
/// accepts it before the next step. The keys each side must supply follow
/// from the pattern: a local static if its side has one, the peer's static
/// if it is a pre-message, and a PSK per `pskN` modifier.
///
/// ```
/// use securemesh_core::{CryptoRng, Secret};
/// use securemesh_noise::{Builder, Error, HandshakeState, Keypair, Protocol, Role, Transport};
/// # struct Rng(u64);
/// # impl rand_core::TryRng for Rng { type Error = core::convert::Infallible;
/// #   fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
/// #   fn try_next_u64(&mut self) -> Result<u64, Self::Error> { self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); Ok(self.0 >> 11) }
/// #   fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> { for b in d { *b = self.try_next_u64()? as u8; } Ok(()) } }
/// # impl rand_core::TryCryptoRng for Rng {}
///
/// /// One party of `p`, with the keys its pattern asks for.
/// fn party(p: &Protocol, role: Role, me: &Keypair, peer: [u8; 32], psk: &Secret<[u8; 32]>)
///     -> Result<HandshakeState, Error> {
///     let pat = p.pattern();
///     let (has_static, peer_static_known) = match role {
///         Role::Initiator => (pat.initiator_has_static(), pat.pre_responder().s),
///         Role::Responder => (pat.responder_has_static(), pat.pre_initiator().s),
///     };
///     let mut b = Builder::new(p).prologue(b"agents v1");
///     if has_static {
///         b = b.local_static(me.duplicate());
///     }
///     if peer_static_known {
///         b = b.remote_static(peer);
///     }
///     for n in (0..=4).filter(|&n| p.has_psk(n)) {
///         b = b.psk(n, psk.duplicate());
///     }
///     b.build(role)
/// }
///
/// /// Runs the handshake between `i` and `r` to completion.
/// fn run(mut i: HandshakeState, mut r: HandshakeState, rng: &mut impl CryptoRng)
///     -> Result<(Transport, Transport), Error> {
///     let (mut msg, mut payload) = ([0u8; 512], [0u8; 512]);
///     while !i.is_complete() || !r.is_complete() {
///         let (writer, reader) = if i.is_my_turn() { (&mut i, &mut r) } else { (&mut r, &mut i) };
///         let n = writer.write_message(b"", &mut msg, rng)?;
///         reader.read_message(&msg[..n], &mut payload)?;
///         if reader.remote_static_pending() {
///             // Policy: look `reader.remote_static()` up here; to refuse it,
///             // return (dropping the handshake) instead of accepting.
///             reader.accept_remote_static();
///         }
///     }
///     Ok((i.finish()?, r.finish()?))
/// }
///
/// # let mut rng = Rng(5);
/// let (alice, bob) = (Keypair::generate(&mut rng), Keypair::generate(&mut rng));
/// let psk = Secret::new([9; 32]); // a real PSK comes from the caller's store
/// for name in ["NN", "N", "K", "X", "XX", "IK", "NK1", "X1X1", "XXpsk3", "IKpsk1+psk2"] {
///     let p = Protocol::parse(&format!("Noise_{name}_25519_ChaChaPoly_SHA256"))?;
///     let i = party(&p, Role::Initiator, &alice, bob.public(), &psk)?;
///     let r = party(&p, Role::Responder, &bob, alice.public(), &psk)?;
///     let (mut ti, mut tr) = run(i, r, &mut rng)?;
///     let mut buf = [0u8; 64];
///     let n = ti.write_message(b"task", &mut buf)?; // one-way patterns: initiator to responder
///     let mut out = [0u8; 64];
///     assert_eq!(tr.read_message(&buf[..n], &mut out)?, 4, "{name}");
/// }
/// # Ok::<(), securemesh_noise::Error>(())
/// ```
pub struct HandshakeState {
    protocol: Protocol,
    initiator: bool,
    sym: SymmetricState,
    keys: Keys,
    s: Option<Keypair>,
    psks: [Option<Key>; MAX_PSKS],
    fixed_e: Option<Secret<[u8; 32]>>,
    next: u8,
    psk_mode: bool,
    poisoned: bool,
    rs_pending: bool,
}

impl core::fmt::Debug for HandshakeState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandshakeState")
            .field("protocol", &self.protocol.name())
            .field("initiator", &self.initiator)
            .field("next_message", &self.next)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Bytes of `n` bytes sent like an `s` token: encrypted (tag added) once a
/// key is set.
const fn sealed_len(n: usize, keyed: bool) -> usize {
    if keyed { n.saturating_add(TAG_LEN) } else { n }
}

/// Bytes of an `s` token: the public key, encrypted once a key is set.
const fn s_len(keyed: bool) -> usize {
    sealed_len(DH_LEN, keyed)
}

/// The protocol's KEM, for an `e1` or `ekem1` token.
#[cfg(feature = "hfs")]
fn kem_of(protocol: &Protocol) -> Result<crate::kem::KemChoice, Error> {
    protocol.kem().ok_or(Error::MissingKey)
}

/// Bytes of a message for `pattern`, given whether a key is set at its start.
///
/// The tokens add at most `MAX_TOKENS * (DH_LEN + TAG_LEN)` bytes; the sum
/// saturates at `usize::MAX` only for an absurd `payload`, which every
/// caller treats as longer than [`MAX_MESSAGE_LEN`].
#[cfg_attr(not(feature = "hfs"), allow(unused_variables))]
fn message_len(
    protocol: &Protocol,
    pattern: &MessagePattern,
    payload: usize,
    mut keyed: bool,
    psk_mode: bool,
) -> usize {
    let mut len = 0usize;
    for t in pattern.tokens() {
        match t {
            Token::E => {
                len = len.saturating_add(DH_LEN);
                keyed |= psk_mode;
            }
            Token::S => len = len.saturating_add(s_len(keyed)),
            Token::Ee | Token::Es | Token::Se | Token::Ss | Token::Psk => keyed = true,
            // A parsed hfs protocol always has its KEM.
            #[cfg(feature = "hfs")]
            Token::E1 => {
                let n = protocol.kem().map_or(0, |k| k.public_key_len());
                len = len.saturating_add(sealed_len(n, keyed));
            }
            #[cfg(feature = "hfs")]
            Token::Ekem1 => {
                let n = protocol.kem().map_or(0, |k| k.ciphertext_len());
                len = len.saturating_add(sealed_len(n, keyed));
                keyed = true;
            }
        }
    }
    len.saturating_add(payload).saturating_add(if keyed { TAG_LEN } else { 0 })
}

/// `pos + n` for a write position inside a message of at most
/// [`MAX_MESSAGE_LEN`] bytes (so the error is unreachable).
fn advance(pos: usize, n: usize) -> Result<usize, Error> {
    pos.checked_add(n).ok_or(Error::MessageTooLong)
}

impl HandshakeState {
    /// The protocol being run.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// Whether this party is the initiator.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether every message has been written or read.
    pub fn is_complete(&self) -> bool {
        usize::from(self.next) >= self.protocol.pattern().messages().len()
    }

    /// Whether the next step is this party's write.
    pub fn is_my_turn(&self) -> bool {
        !self.is_complete() && self.next.is_multiple_of(2) == self.initiator
    }

    /// Whether an earlier read failed.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The peer's static public key, once known.
    pub fn remote_static(&self) -> Option<&[u8; 32]> {
        self.keys.rs.as_ref()
    }

    /// The peer's ephemeral public key, once read (kept after a failed
    /// read, for fallback).
    pub fn remote_ephemeral(&self) -> Option<&[u8; 32]> {
        self.keys.re.as_ref()
    }

    /// Whether a read revealed the peer's static key and the caller has
    /// not yet accepted it. While pending, the handshake does not go on.
    pub fn remote_static_pending(&self) -> bool {
        self.rs_pending
    }

    /// Accept the peer's static key (after checking it against policy). To
    /// reject it, drop the handshake.
    pub fn accept_remote_static(&mut self) {
        self.rs_pending = false;
    }

    /// The handshake hash `h` so far; after the last message it is the
    /// channel binding value.
    pub fn handshake_hash(&self) -> &[u8] {
        self.sym.h()
    }

    /// Bytes the next message takes with a payload of `payload_len`, or
    /// `None` if it is not this party's turn to write. The sum saturates at
    /// `usize::MAX` for a `payload_len` near it.
    pub fn next_message_len(&self, payload_len: usize) -> Option<usize> {
        if !self.is_my_turn() {
            return None;
        }
        let m = self.protocol.pattern().messages().get(usize::from(self.next))?;
        Some(message_len(&self.protocol, m, payload_len, self.sym.cs.has_key(), self.psk_mode))
    }

    /// Largest payload the next message can carry.
    pub fn max_payload_len(&self) -> Option<usize> {
        self.next_message_len(0).map(|n| MAX_MESSAGE_LEN.saturating_sub(n))
    }

    /// The next message's pattern and the message index after it.
    fn ready(&self) -> Result<(MessagePattern, u8), Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if self.rs_pending {
            return Err(Error::RemoteStaticPending);
        }
        let pattern =
            self.protocol.pattern().messages().get(usize::from(self.next)).ok_or(Error::WrongTurn)?;
        // `next` indexes one of at most MAX_MESSAGES messages: no overflow.
        let after = self.next.checked_add(1).ok_or(Error::WrongTurn)?;
        Ok((*pattern, after))
    }

    fn dh(&self, keys: &Keys, token: Token) -> Result<Secret<[u8; 32]>, Error> {
        let local_e = keys.e.as_ref();
        let local_s = self.s.as_ref();
        let (local, remote) = match (token, self.initiator) {
            (Token::Ee, _) => (local_e, keys.re),
            (Token::Ss, _) => (local_s, keys.rs),
            (Token::Es, true) | (Token::Se, false) => (local_e, keys.rs),
            (Token::Es, false) | (Token::Se, true) => (local_s, keys.re),
            _ => return Err(Error::MissingKey),
        };
        let (local, remote) = (local.ok_or(Error::MissingKey)?, remote.ok_or(Error::MissingKey)?);
        Ok(X25519::dh(&local.secret, &remote).into_secret())
    }

    fn psk_for(&self, message: u8, position: usize) -> Result<&Key, Error> {
        let n = if message == 0 && position == 0 { 0 } else { usize::from(message) + 1 };
        self.psks.get(n).and_then(Option::as_ref).ok_or(Error::MissingKey)
    }

    /// Write the next handshake message with `payload` into `out`; returns
    /// its length. [`Error::BufferTooSmall`] or [`Error::MessageTooLong`]
    /// change nothing (no randomness is drawn).
    pub fn write_message<R: CryptoRng + ?Sized>(
        &mut self,
        payload: &[u8],
        out: &mut [u8],
        rng: &mut R,
    ) -> Result<usize, Error> {
        let (pattern, after) = self.ready()?;
        if !self.is_my_turn() {
            return Err(Error::WrongTurn);
        }
        let needed =
            message_len(&self.protocol, &pattern, payload.len(), self.sym.cs.has_key(), self.psk_mode);
        if needed > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLong);
        }
        let out = out.get_mut(..needed).ok_or(Error::BufferTooSmall { needed })?;
        let mut sym = self.sym.duplicate();
        let mut keys = self.keys.duplicate();
        let mut fixed_e = None;
        let mut pos = 0usize;
        for (i, t) in pattern.tokens().iter().enumerate() {
            match t {
                Token::E => {
                    let secret = match &self.fixed_e {
                        Some(e) => {
                            fixed_e = Some(());
                            e.duplicate()
                        }
                        None => X25519::generate(rng),
                    };
                    let kp = Keypair::from_secret(secret);
                    let dst = out
                        .get_mut(pos..)
                        .and_then(|d| d.get_mut(..DH_LEN))
                        .ok_or(Error::BufferTooSmall { needed })?;
                    dst.copy_from_slice(&kp.public);
                    sym.mix_hash(&kp.public);
                    if self.psk_mode {
                        sym.mix_key(&kp.public)?;
                    }
                    keys.e = Some(kp);
                    pos = advance(pos, DH_LEN)?;
                }
                Token::S => {
                    let s = self.s.as_ref().ok_or(Error::MissingKey)?;
                    let dst = out.get_mut(pos..).ok_or(Error::BufferTooSmall { needed })?;
                    dst.get_mut(..DH_LEN).ok_or(Error::BufferTooSmall { needed })?.copy_from_slice(&s.public);
                    pos = advance(pos, sym.encrypt_and_hash(dst, DH_LEN)?)?;
                }
                Token::Psk => sym.mix_key_and_hash(self.psk_for(self.next, i)?.expose())?,
                // GENERATE_KEM_KEYPAIR(); the public key sent like `s`.
                #[cfg(feature = "hfs")]
                Token::E1 => {
                    let kem = kem_of(&self.protocol)?;
                    let dst = out.get_mut(pos..).ok_or(Error::BufferTooSmall { needed })?;
                    keys.e1 = Some(kem.generate(rng, dst)?);
                    pos = advance(pos, sym.encrypt_and_hash(dst, kem.public_key_len())?)?;
                }
                // GENERATE_KEM_CIPHERTEXT(re1), sent like `s`, then MixKey.
                #[cfg(feature = "hfs")]
                Token::Ekem1 => {
                    let kem = kem_of(&self.protocol)?;
                    let re1 = keys.re1.as_ref().ok_or(Error::MissingKey)?;
                    let dst = out.get_mut(pos..).ok_or(Error::BufferTooSmall { needed })?;
                    let kem_output = kem.encapsulate(re1.bytes(kem.public_key_len())?, rng, dst)?;
                    pos = advance(pos, sym.encrypt_and_hash(dst, kem.ciphertext_len())?)?;
                    sym.mix_key(kem_output.expose())?;
                }
                dh => sym.mix_key(self.dh(&keys, *dh)?.expose())?,
            }
        }
        let dst = out.get_mut(pos..).ok_or(Error::BufferTooSmall { needed })?;
        dst.get_mut(..payload.len()).ok_or(Error::BufferTooSmall { needed })?.copy_from_slice(payload);
        pos = advance(pos, sym.encrypt_and_hash(dst, payload.len())?)?;
        // Commit.
        self.sym = sym;
        self.keys = keys;
        if fixed_e.is_some() {
            self.fixed_e = None;
        }
        self.next = after;
        Ok(pos)
    }

    /// Read the next handshake message and decrypt its payload into
    /// `payload`; returns the payload length.
    ///
    /// [`Error::BufferTooSmall`] (for `payload`) changes nothing. Any other
    /// failure poisons the handshake: the opaque [`Error::Decrypt`] covers
    /// malformed and forged messages alike, and `payload` holds no plaintext.
    pub fn read_message(&mut self, message: &[u8], payload: &mut [u8]) -> Result<usize, Error> {
        let (pattern, after) = self.ready()?;
        if self.is_my_turn() {
            return Err(Error::WrongTurn);
        }
        let overhead = message_len(&self.protocol, &pattern, 0, self.sym.cs.has_key(), self.psk_mode);
        let payload_len = match message.len().checked_sub(overhead) {
            Some(n) if message.len() <= MAX_MESSAGE_LEN => n,
            _ => {
                self.poisoned = true;
                return Err(Error::Decrypt);
            }
        };
        if payload.len() < payload_len {
            return Err(Error::BufferTooSmall { needed: payload_len });
        }
        let mut sym = self.sym.duplicate();
        let mut keys = self.keys.duplicate();
        match self.read_tokens(&pattern, message, payload, &mut sym, &mut keys) {
            Ok((n, read_s)) => {
                self.sym = sym;
                self.keys = keys;
                self.next = after;
                self.rs_pending = read_s;
                Ok(n)
            }
            Err(_) => {
                if let Some(p) = payload.get_mut(..payload_len) {
                    p.fill(0);
                }
                // Keep the peer's ephemeral public key for a fallback.
                if self.keys.re.is_none() {
                    self.keys.re = keys.re;
                }
                self.poisoned = true;
                Err(Error::Decrypt)
            }
        }
    }

    fn read_tokens(
        &self,
        pattern: &MessagePattern,
        message: &[u8],
        payload: &mut [u8],
        sym: &mut SymmetricState,
        keys: &mut Keys,
    ) -> Result<(usize, bool), Error> {
        let mut rest = message;
        let mut read_s = false;
        for (i, t) in pattern.tokens().iter().enumerate() {
            match t {
                Token::E => {
                    let (re, tail) = rest.split_first_chunk::<DH_LEN>().ok_or(Error::Decrypt)?;
                    rest = tail;
                    sym.mix_hash(re);
                    if self.psk_mode {
                        sym.mix_key(re)?;
                    }
                    keys.re = Some(*re);
                }
                Token::S => {
                    let len = s_len(sym.cs.has_key());
                    let (ct, tail) = rest.split_at_checked(len).ok_or(Error::Decrypt)?;
                    rest = tail;
                    let mut rs = [0u8; DH_LEN];
                    sym.decrypt_and_hash(ct, &mut rs)?;
                    keys.rs = Some(rs);
                    read_s = true;
                }
                Token::Psk => sym.mix_key_and_hash(self.psk_for(self.next, i)?.expose())?,
                #[cfg(feature = "hfs")]
                Token::E1 => {
                    let kem = kem_of(&self.protocol)?;
                    let len = sealed_len(kem.public_key_len(), sym.cs.has_key());
                    let (ct, tail) = rest.split_at_checked(len).ok_or(Error::Decrypt)?;
                    rest = tail;
                    let mut re1 = KemPublic::empty();
                    sym.decrypt_and_hash(ct, re1.bytes_mut(kem.public_key_len())?)?;
                    keys.re1 = Some(re1);
                }
                // KEM(e1, ciphertext), then MixKey; our KEM key is spent.
                #[cfg(feature = "hfs")]
                Token::Ekem1 => {
                    let kem = kem_of(&self.protocol)?;
                    let len = sealed_len(kem.ciphertext_len(), sym.cs.has_key());
                    let (ct, tail) = rest.split_at_checked(len).ok_or(Error::Decrypt)?;
                    rest = tail;
                    let mut buf = [0u8; MAX_KEM_CIPHERTEXT_LEN];
                    let plain = buf.get_mut(..kem.ciphertext_len()).ok_or(Error::Decrypt)?;
                    sym.decrypt_and_hash(ct, plain)?;
                    let e1 = keys.e1.take().ok_or(Error::MissingKey)?;
                    sym.mix_key(kem.decapsulate(&e1, plain)?.expose())?;
                }
                dh => sym.mix_key(self.dh(keys, *dh)?.expose())?,
            }
        }
        let n = sym.decrypt_and_hash(rest, payload)?;
        Ok((n, read_s))
    }

    /// Complete the handshake: `Split()` into a [`Transport`]. Fails with
    /// [`Error::Incomplete`] before the last message and with
    /// [`Error::RemoteStaticPending`] until the peer's static key is
    /// accepted.
    pub fn finish(self) -> Result<Transport, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        if self.rs_pending {
            return Err(Error::RemoteStaticPending);
        }
        if !self.is_complete() {
            return Err(Error::Incomplete);
        }
        let (k1, k2) = self.sym.split()?;
        let one_way = self.protocol.pattern().is_one_way();
        let (send, recv) = if self.initiator { (Some(k1), Some(k2)) } else { (Some(k2), Some(k1)) };
        // One-way patterns: only initiator -> responder exists.
        let (send, recv) = match (one_way, self.initiator) {
            (true, true) => (send, None),
            (true, false) => (None, recv),
            _ => (send, recv),
        };
        let mut h = [0u8; MAX_HASH_LEN];
        let hl = self.sym.hash_len();
        if let Some(dst) = h.get_mut(..hl) {
            dst.copy_from_slice(self.sym.h());
        }
        Ok(Transport::new(self.sym.cipher(), send, recv, h, hl, self.initiator, self.keys.rs))
    }

    /// Noise Pipes (§10.4): turn a failed or abandoned handshake into the
    /// `fallback` handshake `protocol` (e.g. `XXfallback`), keeping the
    /// first message's ephemeral key as pre-message. The party that sent
    /// the first message becomes the responder, the party that received it
    /// the initiator. PSK fallbacks are built with [`Builder`] directly.
    pub fn fallback(self, protocol: &Protocol, prologue: &[u8]) -> Result<HandshakeState, Error> {
        if !protocol.is_fallback() {
            return Err(Error::Name(crate::NameError::InvalidFallback));
        }
        let mut b = Builder::new(protocol).prologue(prologue);
        let role = if self.initiator {
            b = b.pre_ephemeral(self.keys.e.map(|k| k.secret).ok_or(Error::MissingKey)?);
            Role::Responder
        } else {
            b = b.remote_ephemeral(self.keys.re.ok_or(Error::MissingKey)?);
            Role::Initiator
        };
        let p = protocol.pattern();
        let needs_s =
            if role == Role::Initiator { p.initiator_has_static() } else { p.responder_has_static() };
        if needs_s {
            b = b.local_static(self.s.ok_or(Error::MissingKey)?);
        }
        b.build(role)
    }
}

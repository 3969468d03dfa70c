//! Handshake patterns, modifiers and protocol names (Noise rev 34 §7, §9,
//! §10.2, §8).
//!
//! The whole table and the name parser are `const`, so the same code parses
//! a name at run time ([`Protocol::parse`]) and at compile time
//! ([`crate::protocol!`], where an invalid name is a compile error).
//!
//! Pattern data: the 3 one-way patterns (§7.4), the 12 fundamental
//! interactive patterns (§7.5) and the 23 deferred patterns (§18) of the
//! Noise specification, revision 34.

// This module runs in const context, where slice `get` is unavailable:
// every index below is checked against the array length (MAX_TOKENS,
// MAX_MESSAGES, MAX_NAME_LEN) before use and returns an error otherwise.
#![allow(clippy::indexing_slicing)]

use crate::error::NameError;

/// Most tokens in one message pattern (after PSK modifiers).
pub const MAX_TOKENS: usize = 8;
/// Most messages in one handshake pattern.
pub const MAX_MESSAGES: usize = 4;
/// Longest protocol name accepted.
pub const MAX_NAME_LEN: usize = 96;

/// A token of a message pattern (§7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// Ephemeral public key.
    E,
    /// Static public key (encrypted once a key is set).
    S,
    /// DH(initiator e, responder e).
    Ee,
    /// DH(initiator e, responder s).
    Es,
    /// DH(initiator s, responder e).
    Se,
    /// DH(initiator s, responder s).
    Ss,
    /// Mix in the pre-shared key.
    Psk,
    /// `hfs`: a fresh KEM public key, sent like a static key (encrypted
    /// once a key is set). Feature `hfs`.
    #[cfg(feature = "hfs")]
    E1,
    /// `hfs`: a KEM ciphertext to the peer's `e1` key, sent like a static
    /// key, then `MixKey(kem_output)`. Feature `hfs`.
    #[cfg(feature = "hfs")]
    Ekem1,
}

impl Token {
    /// Whether the token is a DH (`ee`, `es`, `se`, `ss`).
    #[cfg(feature = "hfs")]
    const fn is_dh(self) -> bool {
        matches!(self, Token::Ee | Token::Es | Token::Se | Token::Ss)
    }

    const fn reversed(self) -> Token {
        match self {
            Token::Es => Token::Se,
            Token::Se => Token::Es,
            t => t,
        }
    }
}

/// The length of a bounded list after one more element, `None` when it
/// already holds `capacity` (a `u8` below `capacity` cannot overflow).
const fn grown(len: u8, capacity: usize) -> Option<u8> {
    if len as usize >= capacity { None } else { len.checked_add(1) }
}

/// One message pattern: a bounded list of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessagePattern {
    tokens: [Token; MAX_TOKENS],
    len: u8,
}

impl MessagePattern {
    const EMPTY: MessagePattern = MessagePattern { tokens: [Token::E; MAX_TOKENS], len: 0 };

    /// The tokens, in order.
    pub const fn tokens(&self) -> &[Token] {
        // `len <= MAX_TOKENS` by construction.
        match self.tokens.split_at_checked(self.len as usize) {
            Some((t, _)) => t,
            None => &[],
        }
    }

    const fn from_slice(t: &[Token]) -> Result<Self, NameError> {
        Self::EMPTY.extended(t)
    }

    const fn push(mut self, t: Token) -> Result<Self, NameError> {
        let Some(len) = grown(self.len, MAX_TOKENS) else { return Err(NameError::InvalidModifier) };
        self.tokens[self.len as usize] = t;
        self.len = len;
        Ok(self)
    }

    const fn prepend(self, t: Token) -> Result<Self, NameError> {
        match Self::EMPTY.push(t) {
            Ok(m) => m.extended(self.tokens()),
            Err(e) => Err(e),
        }
    }

    /// `self` with the tokens of `t` appended.
    const fn extended(mut self, t: &[Token]) -> Result<Self, NameError> {
        let mut rest = t;
        while let Some((first, tail)) = rest.split_first() {
            self = match self.push(*first) {
                Ok(m) => m,
                Err(e) => return Err(e),
            };
            rest = tail;
        }
        Ok(self)
    }

    /// Insert `t` before position `at` (`at == len` appends).
    #[cfg(feature = "hfs")]
    const fn insert(self, at: usize, t: Token) -> Result<Self, NameError> {
        let Some((head, tail)) = self.tokens().split_at_checked(at) else {
            return Err(NameError::InvalidHfs);
        };
        let out = match Self::EMPTY.extended(head) {
            Ok(m) => m,
            Err(e) => return Err(e),
        };
        let out = match out.push(t) {
            Ok(m) => m,
            Err(e) => return Err(e),
        };
        out.extended(tail)
    }

    /// Index of the first token that is `t` (or, with `dh`, any DH token).
    #[cfg(feature = "hfs")]
    const fn position(&self, t: Token, dh: bool) -> Option<usize> {
        let mut rest = self.tokens();
        let mut i = 0usize;
        while let Some((first, tail)) = rest.split_first() {
            if (dh && first.is_dh()) || (!dh && *first as u8 == t as u8) {
                return Some(i);
            }
            i = match i.checked_add(1) {
                Some(i) => i,
                None => return None,
            };
            rest = tail;
        }
        None
    }

    /// The same message seen from the other side (`es` and `se` exchanged).
    const fn reversed(mut self) -> Self {
        let Some((mut rest, _)) = self.tokens.split_at_mut_checked(self.len as usize) else { return self };
        while let [t, tail @ ..] = rest {
            *t = t.reversed();
            rest = tail;
        }
        self
    }
}

/// A pre-message: which public keys a party is known by before the
/// handshake (§7.1: empty, `e`, `s`, or `e, s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PreMessage {
    /// The ephemeral key is a pre-message (fallback only).
    pub e: bool,
    /// The static key is a pre-message.
    pub s: bool,
}

impl PreMessage {
    const NONE: PreMessage = PreMessage { e: false, s: false };

    const fn from_slice(t: &[Token]) -> Option<PreMessage> {
        match t {
            [] => Some(PreMessage::NONE),
            [Token::E] => Some(PreMessage { e: true, s: false }),
            [Token::S] => Some(PreMessage { e: false, s: true }),
            [Token::E, Token::S] => Some(PreMessage { e: true, s: true }),
            _ => None,
        }
    }

    /// Whether the pre-message is empty.
    pub const fn is_empty(&self) -> bool {
        !self.e && !self.s
    }
}

/// A handshake pattern after its modifiers, in canonical
/// (initiator-first) form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakePattern {
    pre_initiator: PreMessage,
    pre_responder: PreMessage,
    messages: [MessagePattern; MAX_MESSAGES],
    len: u8,
    one_way: bool,
}

impl HandshakePattern {
    const fn new(pre_initiator: PreMessage, pre_responder: PreMessage, one_way: bool) -> Self {
        HandshakePattern {
            pre_initiator,
            pre_responder,
            messages: [MessagePattern::EMPTY; MAX_MESSAGES],
            len: 0,
            one_way,
        }
    }

    const fn push(mut self, m: MessagePattern) -> Result<Self, NameError> {
        let Some(len) = grown(self.len, MAX_MESSAGES) else { return Err(NameError::UnknownPattern) };
        self.messages[self.len as usize] = m;
        self.len = len;
        Ok(self)
    }

    /// The initiator's pre-message.
    pub const fn pre_initiator(&self) -> PreMessage {
        self.pre_initiator
    }

    /// The responder's pre-message.
    pub const fn pre_responder(&self) -> PreMessage {
        self.pre_responder
    }

    /// The message patterns, the initiator's first.
    pub const fn messages(&self) -> &[MessagePattern] {
        // `len <= MAX_MESSAGES` by construction.
        match self.messages.split_at_checked(self.len as usize) {
            Some((m, _)) => m,
            None => &[],
        }
    }

    /// Whether this is a one-way pattern (N, K, X and their PSK forms).
    pub const fn is_one_way(&self) -> bool {
        self.one_way
    }

    /// Whether any message holds a `psk` token.
    pub fn uses_psk(&self) -> bool {
        self.messages().iter().any(|m| m.tokens().contains(&Token::Psk))
    }

    /// Whether the initiator sends its static key, or has it as pre-message.
    pub fn initiator_has_static(&self) -> bool {
        self.pre_initiator.s || self.sends(true, Token::S)
    }

    /// Whether the responder sends its static key, or has it as pre-message.
    pub fn responder_has_static(&self) -> bool {
        self.pre_responder.s || self.sends(false, Token::S)
    }

    fn sends(&self, initiator: bool, token: Token) -> bool {
        self.messages()
            .iter()
            .enumerate()
            .filter(|(i, _)| i.is_multiple_of(2) == initiator)
            .any(|(_, m)| m.tokens().contains(&token))
    }
}

use Token::{E, Ee, Es, S, Se, Ss};

const EMPTY_BYTES: &[u8] = &[];

type Entry = (&'static str, &'static [Token], &'static [Token], &'static [&'static [Token]]);

/// (name, initiator pre-message, responder pre-message, messages).
#[rustfmt::skip]
const PATTERNS: &[Entry] = &[
    // §7.4 one-way
    ("N", &[], &[S], &[&[E, Es]]),
    ("K", &[S], &[S], &[&[E, Es, Ss]]),
    ("X", &[], &[S], &[&[E, Es, S, Ss]]),
    // §7.5 fundamental interactive
    ("NN", &[], &[], &[&[E], &[E, Ee]]),
    ("NK", &[], &[S], &[&[E, Es], &[E, Ee]]),
    ("NX", &[], &[], &[&[E], &[E, Ee, S, Es]]),
    ("XN", &[], &[], &[&[E], &[E, Ee], &[S, Se]]),
    ("XK", &[], &[S], &[&[E, Es], &[E, Ee], &[S, Se]]),
    ("XX", &[], &[], &[&[E], &[E, Ee, S, Es], &[S, Se]]),
    ("KN", &[S], &[], &[&[E], &[E, Ee, Se]]),
    ("KK", &[S], &[S], &[&[E, Es, Ss], &[E, Ee, Se]]),
    ("KX", &[S], &[], &[&[E], &[E, Ee, Se, S, Es]]),
    ("IN", &[], &[], &[&[E, S], &[E, Ee, Se]]),
    ("IK", &[], &[S], &[&[E, Es, S, Ss], &[E, Ee, Se]]),
    ("IX", &[], &[], &[&[E, S], &[E, Ee, Se, S, Es]]),
    // §18 deferred
    ("NK1", &[], &[S], &[&[E], &[E, Ee, Es]]),
    ("NX1", &[], &[], &[&[E], &[E, Ee, S], &[Es]]),
    ("X1N", &[], &[], &[&[E], &[E, Ee], &[S], &[Se]]),
    ("X1K", &[], &[S], &[&[E, Es], &[E, Ee], &[S], &[Se]]),
    ("XK1", &[], &[S], &[&[E], &[E, Ee, Es], &[S, Se]]),
    ("X1K1", &[], &[S], &[&[E], &[E, Ee, Es], &[S], &[Se]]),
    ("X1X", &[], &[], &[&[E], &[E, Ee, S, Es], &[S], &[Se]]),
    ("XX1", &[], &[], &[&[E], &[E, Ee, S], &[Es, S, Se]]),
    ("X1X1", &[], &[], &[&[E], &[E, Ee, S], &[Es, S], &[Se]]),
    ("K1N", &[S], &[], &[&[E], &[E, Ee], &[Se]]),
    ("K1K", &[S], &[S], &[&[E, Es], &[E, Ee], &[Se]]),
    ("KK1", &[S], &[S], &[&[E], &[E, Ee, Se, Es]]),
    ("K1K1", &[S], &[S], &[&[E], &[E, Ee, Es], &[Se]]),
    ("K1X", &[S], &[], &[&[E], &[E, Ee, S, Es], &[Se]]),
    ("KX1", &[S], &[], &[&[E], &[E, Ee, Se, S], &[Es]]),
    ("K1X1", &[S], &[], &[&[E], &[E, Ee, S], &[Se, Es]]),
    ("I1N", &[], &[], &[&[E, S], &[E, Ee], &[Se]]),
    ("I1K", &[], &[S], &[&[E, Es, S], &[E, Ee], &[Se]]),
    ("IK1", &[], &[S], &[&[E, S], &[E, Ee, Se, Es]]),
    ("I1K1", &[], &[S], &[&[E, S], &[E, Ee, Es], &[Se]]),
    ("I1X", &[], &[], &[&[E, S], &[E, Ee, S, Es], &[Se]]),
    ("IX1", &[], &[], &[&[E, S], &[E, Ee, Se, S], &[Es]]),
    ("I1X1", &[], &[], &[&[E, S], &[E, Ee, S], &[Se, Es]]),
];

/// Names of every base pattern, in the spec's order.
pub fn pattern_names() -> impl Iterator<Item = &'static str> {
    PATTERNS.iter().map(|p| p.0)
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let (mut a, mut b) = (a, b);
    loop {
        match (a, b) {
            ([], []) => return true,
            ([x, a_tail @ ..], [y, b_tail @ ..]) if *x == *y => (a, b) = (a_tail, b_tail),
            _ => return false,
        }
    }
}

const fn base_pattern(name: &[u8]) -> Result<HandshakePattern, NameError> {
    let mut entries = PATTERNS;
    while let Some((&(n, pre_i, pre_r, msgs), tail)) = entries.split_first() {
        if bytes_eq(n.as_bytes(), name) {
            let (Some(pre_initiator), Some(pre_responder)) =
                (PreMessage::from_slice(pre_i), PreMessage::from_slice(pre_r))
            else {
                return Err(NameError::UnknownPattern);
            };
            let mut p = HandshakePattern::new(pre_initiator, pre_responder, msgs.len() == 1 && n.len() == 1);
            let mut rest = msgs;
            while let Some((first, tail)) = rest.split_first() {
                let m = match MessagePattern::from_slice(first) {
                    Ok(m) => m,
                    Err(e) => return Err(e),
                };
                p = match p.push(m) {
                    Ok(p) => p,
                    Err(e) => return Err(e),
                };
                rest = tail;
            }
            return Ok(p);
        }
        entries = tail;
    }
    Err(NameError::UnknownPattern)
}

/// Apply `fallback` (§10.2): Alice's first message becomes a pre-message,
/// the pattern becomes Bob-initiated, and is stored in canonical form with
/// Bob as initiator (roles swapped, `es`/`se` exchanged).
const fn apply_fallback(p: HandshakePattern) -> Result<HandshakePattern, NameError> {
    if p.one_way || p.len < 2 || !p.pre_initiator.is_empty() {
        return Err(NameError::InvalidFallback);
    }
    let Some((first, mut rest)) = p.messages().split_first() else {
        return Err(NameError::InvalidFallback);
    };
    let Some(alice_pre) = PreMessage::from_slice(first.tokens()) else {
        return Err(NameError::InvalidFallback);
    };
    let mut out = HandshakePattern::new(p.pre_responder, alice_pre, false);
    while let Some((m, tail)) = rest.split_first() {
        out = match out.push(m.reversed()) {
            Ok(p) => p,
            Err(e) => return Err(e),
        };
        rest = tail;
    }
    Ok(out)
}

/// Apply `pskN` (§9.2): `psk0` at the start of the first message, `pskN`
/// at the end of message N.
const fn apply_psk(mut p: HandshakePattern, n: u8) -> Result<HandshakePattern, NameError> {
    let Some(i) = n.checked_sub(1) else {
        p.messages[0] = match p.messages[0].prepend(Token::Psk) {
            Ok(m) => m,
            Err(e) => return Err(e),
        };
        return Ok(p);
    };
    if n > p.len {
        return Err(NameError::InvalidModifier);
    }
    let i = i as usize;
    p.messages[i] = match p.messages[i].push(Token::Psk) {
        Ok(m) => m,
        Err(e) => return Err(e),
    };
    Ok(p)
}

/// Apply `hfs` (HFS extension §5): `e1` directly after the first `e`, or,
/// if that message has a DH, directly after its first DH (so the KEM public
/// key is encrypted); `ekem1` directly after the first `ee`. The KEM public
/// key must reach the peer before the `ekem1` answering it, so `e1` has to
/// be in an earlier message of the other party (true of every interactive
/// pattern); one-way patterns, which have no `ee`, are refused.
///
/// The spec's own table writes `KKhfs` as `-> e, e1, es, ss`, against its
/// rule; we follow the rule (`e, es, e1, ss`), as snow does.
#[cfg(feature = "hfs")]
const fn apply_hfs(mut p: HandshakePattern) -> Result<HandshakePattern, NameError> {
    if p.one_way {
        return Err(NameError::InvalidHfs);
    }
    // (message index, position in it) of e1, then of ekem1.
    let mut e1_msg: Option<usize> = None;
    let mut i = 0usize;
    while i < p.len as usize && i < MAX_MESSAGES {
        let m = p.messages[i];
        let at = match (e1_msg, m.position(Token::E, false), m.position(Token::Ee, false)) {
            // The first message with `e`: e1 after its first DH, else after e.
            (None, Some(e), _) => match m.position(Token::E, true) {
                Some(dh) => dh.checked_add(1),
                None => e.checked_add(1),
            },
            // The first `ee`, in a later message of the other party.
            (Some(e1), _, Some(ee)) if i > e1 && (i & 1) != (e1 & 1) => ee.checked_add(1),
            (Some(_), _, Some(_)) => return Err(NameError::InvalidHfs),
            _ => None,
        };
        if let Some(at) = at {
            let t = if e1_msg.is_none() { Token::E1 } else { Token::Ekem1 };
            p.messages[i] = match m.insert(at, t) {
                Ok(m) => m,
                Err(e) => return Err(e),
            };
            if e1_msg.is_some() {
                return Ok(p);
            }
            e1_msg = Some(i);
        }
        i = match i.checked_add(1) {
            Some(i) => i,
            None => return Err(NameError::InvalidHfs),
        };
    }
    Err(NameError::InvalidHfs)
}

/// The DH function of a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhChoice {
    /// X25519.
    X25519,
}

/// The cipher function of a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipherChoice {
    /// ChaCha20-Poly1305 (nonce: 4 zero bytes, then the counter little-endian).
    ChaChaPoly,
    /// AES-256-GCM (nonce: 4 zero bytes, then the counter big-endian).
    #[cfg(feature = "aes-gcm")]
    AesGcm,
}

/// The hash function of a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashChoice {
    /// SHA-256.
    Sha256,
    /// SHA-512.
    Sha512,
    /// BLAKE2s-256.
    #[cfg(feature = "blake2")]
    Blake2s,
    /// BLAKE2b-512.
    #[cfg(feature = "blake2")]
    Blake2b,
}

impl HashChoice {
    /// `HASHLEN`.
    pub const fn hash_len(self) -> usize {
        match self {
            HashChoice::Sha256 => 32,
            HashChoice::Sha512 => 64,
            #[cfg(feature = "blake2")]
            HashChoice::Blake2s => 32,
            #[cfg(feature = "blake2")]
            HashChoice::Blake2b => 64,
        }
    }
}

/// A parsed Noise protocol: the pattern after its modifiers and the
/// primitives, plus the exact name that is hashed into `h`.
///
/// ```
/// use securemesh_noise::{Protocol, protocol};
/// // Run time:
/// let p = Protocol::parse("Noise_XXpsk3_25519_ChaChaPoly_SHA256")?;
/// assert_eq!(p.pattern().messages().len(), 3);
/// // Compile time (an invalid name does not compile):
/// const IK: Protocol = protocol!("Noise_IK_25519_ChaChaPoly_SHA256");
/// assert_eq!(IK.name(), "Noise_IK_25519_ChaChaPoly_SHA256");
/// assert!(Protocol::parse("Noise_XY_25519_ChaChaPoly_SHA256").is_err());
/// # Ok::<(), securemesh_noise::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol {
    name: [u8; MAX_NAME_LEN],
    name_len: u8,
    pattern: HandshakePattern,
    dh: DhChoice,
    cipher: CipherChoice,
    hash: HashChoice,
    fallback: bool,
    psk_mask: u8,
    #[cfg(feature = "hfs")]
    kem: Option<crate::kem::KemChoice>,
}

/// `s` split where `tail`, a suffix of `s`, begins.
const fn split_before<'a>(s: &'a [u8], tail: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    match s.len().checked_sub(tail.len()) {
        Some(at) => s.split_at_checked(at),
        None => None,
    }
}

const fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let mut rest = s;
    while let Some((first, tail)) = rest.split_first() {
        if *first == sep {
            let Some((a, _)) = split_before(s, rest) else { return None };
            return Some((a, tail));
        }
        rest = tail;
    }
    None
}

const fn parse_psk_number(s: &[u8]) -> Option<u8> {
    // "pskN" with N one decimal digit 0..=9 (patterns have at most 4 messages).
    match s {
        [b'p', b's', b'k', d] if d.is_ascii_digit() => d.checked_sub(b'0'),
        _ => None,
    }
}

impl Protocol {
    /// Parse a protocol name such as `Noise_XXpsk3_25519_ChaChaPoly_SHA256`.
    pub fn parse(name: &str) -> Result<Protocol, NameError> {
        Self::parse_const(name)
    }

    /// The `const` parser behind [`Protocol::parse`] and [`crate::protocol!`].
    pub const fn parse_const(name: &str) -> Result<Protocol, NameError> {
        let bytes = name.as_bytes();
        if bytes.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let Some((prefix, rest)) = split_once(bytes, b'_') else { return Err(NameError::Syntax) };
        if !bytes_eq(prefix, b"Noise") {
            return Err(NameError::Syntax);
        }
        let Some((handshake, rest)) = split_once(rest, b'_') else { return Err(NameError::Syntax) };
        let Some((dh, rest)) = split_once(rest, b'_') else { return Err(NameError::Syntax) };
        let Some((cipher, hash)) = split_once(rest, b'_') else { return Err(NameError::Syntax) };

        // The pattern is the leading run of upper-case letters and digits.
        let mut mods = handshake;
        while let Some((c, tail)) = mods.split_first() {
            if !c.is_ascii_uppercase() && !c.is_ascii_digit() {
                break;
            }
            mods = tail;
        }
        let Some((pname, _)) = split_before(handshake, mods) else { return Err(NameError::Syntax) };
        let mut pattern = match base_pattern(pname) {
            Ok(p) => p,
            Err(e) => return Err(e),
        };
        let mut fallback = false;
        #[cfg(feature = "hfs")]
        let mut hfs = false;
        let mut psk_mask = 0u8;
        let mut first = true;
        let mut last_psk: i16 = -1;
        while !mods.is_empty() {
            let (m, rest) = match split_once(mods, b'+') {
                Some((m, rest)) => {
                    if rest.is_empty() {
                        return Err(NameError::InvalidModifier);
                    }
                    (m, rest)
                }
                None => (mods, EMPTY_BYTES),
            };
            if bytes_eq(m, b"fallback") {
                // fallback first: it needs the unmodified first message.
                if !first {
                    return Err(NameError::InvalidModifier);
                }
                pattern = match apply_fallback(pattern) {
                    Ok(p) => p,
                    Err(e) => return Err(e),
                };
                fallback = true;
            } else if bytes_eq(m, b"hfs") {
                #[cfg(not(feature = "hfs"))]
                return Err(NameError::FeatureDisabled { name: "hfs", feature: "hfs" });
                #[cfg(feature = "hfs")]
                {
                    if hfs || fallback {
                        return Err(NameError::InvalidHfs);
                    }
                    pattern = match apply_hfs(pattern) {
                        Ok(p) => p,
                        Err(e) => return Err(e),
                    };
                    hfs = true;
                }
            } else if let Some(n) = parse_psk_number(m) {
                if (n as i16) <= last_psk {
                    return Err(NameError::InvalidModifier);
                }
                last_psk = n as i16;
                pattern = match apply_psk(pattern, n) {
                    Ok(p) => p,
                    Err(e) => return Err(e),
                };
                psk_mask |= 1 << n;
            } else {
                return Err(NameError::InvalidModifier);
            }
            first = false;
            mods = rest;
        }

        // `25519+KEM` for hfs (HFS §5): the KEM follows the DH name.
        let (dh, kem_name) = match split_once(dh, b'+') {
            Some((dh, kem)) => (dh, Some(kem)),
            None => (dh, None),
        };
        let dh = if bytes_eq(dh, b"25519") { DhChoice::X25519 } else { return Err(NameError::UnknownDh) };
        #[cfg(feature = "hfs")]
        let kem = match kem_name {
            Some(k) => match crate::kem::KemChoice::from_name(k) {
                Some(k) => Some(k),
                None => return Err(NameError::UnknownKem),
            },
            None => None,
        };
        #[cfg(feature = "hfs")]
        if hfs != kem.is_some() {
            return Err(NameError::InvalidHfs);
        }
        #[cfg(not(feature = "hfs"))]
        if kem_name.is_some() {
            return Err(NameError::FeatureDisabled { name: "hfs", feature: "hfs" });
        }
        let cipher = if bytes_eq(cipher, b"ChaChaPoly") {
            CipherChoice::ChaChaPoly
        } else {
            #[cfg(feature = "aes-gcm")]
            if bytes_eq(cipher, b"AESGCM") {
                CipherChoice::AesGcm
            } else {
                return Err(NameError::UnknownCipher);
            }
            #[cfg(not(feature = "aes-gcm"))]
            if bytes_eq(cipher, b"AESGCM") {
                return Err(NameError::FeatureDisabled { name: "AESGCM", feature: "aes-gcm" });
            } else {
                return Err(NameError::UnknownCipher);
            }
        };
        let hash = match Self::hash_choice(hash) {
            Some(h) => h,
            #[cfg(not(feature = "blake2"))]
            None if bytes_eq(hash, b"BLAKE2s") => {
                return Err(NameError::FeatureDisabled { name: "BLAKE2s", feature: "blake2" });
            }
            #[cfg(not(feature = "blake2"))]
            None if bytes_eq(hash, b"BLAKE2b") => {
                return Err(NameError::FeatureDisabled { name: "BLAKE2b", feature: "blake2" });
            }
            None => return Err(NameError::UnknownHash),
        };

        let mut stored = [0u8; MAX_NAME_LEN];
        let Some((dst, _)) = stored.split_at_mut_checked(bytes.len()) else { return Err(NameError::TooLong) };
        dst.copy_from_slice(bytes);
        Ok(Protocol {
            name: stored,
            name_len: bytes.len() as u8,
            pattern,
            dh,
            cipher,
            hash,
            fallback,
            psk_mask,
            #[cfg(feature = "hfs")]
            kem,
        })
    }

    const fn hash_choice(s: &[u8]) -> Option<HashChoice> {
        if bytes_eq(s, b"SHA256") {
            return Some(HashChoice::Sha256);
        }
        if bytes_eq(s, b"SHA512") {
            return Some(HashChoice::Sha512);
        }
        #[cfg(feature = "blake2")]
        if bytes_eq(s, b"BLAKE2s") {
            return Some(HashChoice::Blake2s);
        }
        #[cfg(feature = "blake2")]
        if bytes_eq(s, b"BLAKE2b") {
            return Some(HashChoice::Blake2b);
        }
        None
    }

    /// The full protocol name (what `InitializeSymmetric` hashes).
    pub fn name(&self) -> &str {
        let (b, _) = self.name.split_at(self.name_len as usize);
        core::str::from_utf8(b).unwrap_or("")
    }

    /// The name as bytes.
    pub fn name_bytes(&self) -> &[u8] {
        let (b, _) = self.name.split_at(self.name_len as usize);
        b
    }

    /// The pattern after modifiers.
    pub const fn pattern(&self) -> &HandshakePattern {
        &self.pattern
    }

    /// The DH function.
    pub const fn dh(&self) -> DhChoice {
        self.dh
    }

    /// The cipher function.
    pub const fn cipher(&self) -> CipherChoice {
        self.cipher
    }

    /// The hash function.
    pub const fn hash(&self) -> HashChoice {
        self.hash
    }

    /// Whether the `fallback` modifier is applied.
    pub const fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// The KEM of an `hfs` protocol (`None` without the `hfs` modifier).
    /// Feature `hfs`.
    #[cfg(feature = "hfs")]
    pub const fn kem(&self) -> Option<crate::kem::KemChoice> {
        self.kem
    }

    /// Whether `pskN` is among the modifiers.
    pub const fn has_psk(&self, n: u8) -> bool {
        n < 8 && self.psk_mask & (1 << n) != 0
    }
}

/// A [`Protocol`] parsed at compile time; an invalid name fails the build.
///
/// ```
/// const XX: securemesh_noise::Protocol = securemesh_noise::protocol!("Noise_XX_25519_ChaChaPoly_SHA256");
/// ```
///
/// ```compile_fail
/// const BAD: securemesh_noise::Protocol = securemesh_noise::protocol!("Noise_QQ_25519_ChaChaPoly_SHA256");
/// ```
#[macro_export]
macro_rules! protocol {
    ($name:expr) => {
        const {
            match $crate::Protocol::parse_const($name) {
                Ok(p) => p,
                Err($crate::NameError::FeatureDisabled { .. }) => panic!(concat!(
                    "Noise protocol name needs a securemesh-noise feature that is off ",
                    "(`aes-gcm` for AESGCM, `blake2` for BLAKE2s and BLAKE2b): ",
                    $name
                )),
                Err(_) => panic!(concat!("invalid Noise protocol name: ", $name)),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_38_patterns_parse() {
        assert_eq!(PATTERNS.len(), 38);
        for name in pattern_names() {
            let full = std::format!("Noise_{name}_25519_ChaChaPoly_SHA256");
            let p = Protocol::parse(&full).unwrap();
            assert_eq!(p.name(), full);
            assert_eq!(p.pattern().is_one_way(), name.len() == 1);
        }
    }

    #[test]
    fn psk_positions() {
        let p = Protocol::parse("Noise_XXpsk0+psk3_25519_ChaChaPoly_SHA512").unwrap();
        let m = p.pattern().messages();
        assert_eq!(m[0].tokens(), &[Token::Psk, E]);
        assert_eq!(m[2].tokens(), &[S, Se, Token::Psk]);
        assert!(p.has_psk(0) && p.has_psk(3) && !p.has_psk(1));
        assert_eq!(Protocol::parse("Noise_NNpsk3_25519_ChaChaPoly_SHA256"), Err(NameError::InvalidModifier));
        assert_eq!(
            Protocol::parse("Noise_XXpsk3+psk0_25519_ChaChaPoly_SHA256"),
            Err(NameError::InvalidModifier)
        );
        assert_eq!(
            Protocol::parse("Noise_XXpsk1+psk1_25519_ChaChaPoly_SHA256"),
            Err(NameError::InvalidModifier)
        );
        assert_eq!(Protocol::parse("Noise_XXpsk1+_25519_ChaChaPoly_SHA256"), Err(NameError::InvalidModifier));
    }

    #[test]
    fn fallback_is_bob_initiated_xx() {
        let p = Protocol::parse("Noise_XXfallback_25519_ChaChaPoly_SHA256").unwrap();
        let hp = p.pattern();
        assert!(hp.pre_initiator().is_empty());
        assert_eq!(hp.pre_responder(), PreMessage { e: true, s: false });
        assert_eq!(hp.messages().len(), 2);
        assert_eq!(hp.messages()[0].tokens(), &[E, Ee, S, Se]);
        assert_eq!(hp.messages()[1].tokens(), &[S, Es]);
        assert!(Protocol::parse("Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256").is_ok());
        assert_eq!(
            Protocol::parse("Noise_XXpsk0+fallback_25519_ChaChaPoly_SHA256"),
            Err(NameError::InvalidModifier)
        );
        assert_eq!(
            Protocol::parse("Noise_IKfallback_25519_ChaChaPoly_SHA256"),
            Err(NameError::InvalidFallback)
        );
        assert_eq!(
            Protocol::parse("Noise_Nfallback_25519_ChaChaPoly_SHA256"),
            Err(NameError::InvalidFallback)
        );
    }

    #[test]
    fn bad_names() {
        for (n, e) in [
            ("Noise_XX_25519_ChaChaPoly", NameError::Syntax),
            ("Nois_XX_25519_ChaChaPoly_SHA256", NameError::Syntax),
            ("Noise_XY_25519_ChaChaPoly_SHA256", NameError::UnknownPattern),
            ("Noise_XXhfx_25519_ChaChaPoly_SHA256", NameError::InvalidModifier),
            ("Noise_XX_448_ChaChaPoly_SHA256", NameError::UnknownDh),
            ("Noise_XX_25519_Rot13_SHA256", NameError::UnknownCipher),
            ("Noise_XX_25519_ChaChaPoly_MD5", NameError::UnknownHash),
            ("", NameError::Syntax),
        ] {
            assert_eq!(Protocol::parse(n), Err(e), "{n}");
        }
        let long = std::format!("Noise_XX{}_25519_ChaChaPoly_SHA256", "+psk1".repeat(20));
        assert_eq!(Protocol::parse(&long), Err(NameError::TooLong));
    }
}

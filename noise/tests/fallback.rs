//! Noise Pipes (§10.4 of the Noise spec, rev 34): IK with a fallback to
//! XXfallback when the initiator's copy of the responder's static key is
//! wrong, the successful IK path, `XXfallback+psk0` built directly, and the
//! published noise-c fallback vectors.
//!
//! snow does not implement `fallback`, so the expected pattern comes from the
//! spec text (§10.2): XX is `-> e; <- e, ee, s, es; -> s, se`. With
//! `fallback`, Alice's first message becomes her pre-message and Bob
//! initiates. Written Bob-first (canonical form, roles swapped, `es`/`se`
//! exchanged): initiator (Bob) pre-message empty, responder (Alice)
//! pre-message `e`, then `-> e, ee, s, se` and `<- s, es`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{TestRng, public};
use securemesh_core::Secret;
use securemesh_noise::{
    Builder, Error, HandshakeState, NameError, PreMessage, Protocol, Token, Transport, protocol,
};

const IK: Protocol = protocol!("Noise_IK_25519_ChaChaPoly_SHA256");
const XXFB: Protocol = protocol!("Noise_XXfallback_25519_ChaChaPoly_SHA256");

#[test]
fn xxfallback_pattern_matches_the_spec() {
    for name in ["Noise_XXfallback_25519_ChaChaPoly_SHA256", "Noise_XXfallback_25519_ChaChaPoly_SHA512"] {
        let p = Protocol::parse(name).unwrap();
        assert!(p.is_fallback());
        let hp = p.pattern();
        assert_eq!(hp.pre_initiator(), PreMessage { e: false, s: false }, "Bob: no pre-message");
        assert_eq!(hp.pre_responder(), PreMessage { e: true, s: false }, "Alice: `e` from her first message");
        let msgs: Vec<&[Token]> = hp.messages().iter().map(|m| m.tokens()).collect();
        assert_eq!(msgs, vec![&[Token::E, Token::Ee, Token::S, Token::Se][..], &[Token::S, Token::Es][..]]);
        assert!(!hp.is_one_way());
        assert!(hp.initiator_has_static() && hp.responder_has_static());
    }
    let p = Protocol::parse("Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256").unwrap();
    assert!(p.is_fallback() && p.has_psk(0));
    assert_eq!(p.pattern().messages()[0].tokens(), &[Token::Psk, Token::E, Token::Ee, Token::S, Token::Se]);
    assert_eq!(p.pattern().messages()[1].tokens(), &[Token::S, Token::Es]);
    assert_eq!(
        Protocol::parse("Noise_IKfallback_25519_ChaChaPoly_SHA256"),
        Err(NameError::InvalidFallback),
        "IK's first message (e, es, s, ss) cannot be a pre-message"
    );
}

struct Party {
    s: [u8; 32],
}

impl Party {
    fn new(rng: &mut TestRng) -> Self {
        Party { s: rng.bytes() }
    }
    fn public(&self) -> [u8; 32] {
        public(&self.s)
    }
    fn secret(&self) -> Secret<[u8; 32]> {
        Secret::new(self.s)
    }
}

/// Exchange `rounds` transport messages both ways and check them.
fn talk(a: &mut Transport, b: &mut Transport, rounds: usize) {
    let (mut msg, mut out) = ([0u8; 128], [0u8; 128]);
    for round in 0..rounds {
        let text = format!("round {round}");
        let n = a.write_message(text.as_bytes(), &mut msg).unwrap();
        let m = b.read_message(&msg[..n], &mut out).unwrap();
        assert_eq!(&out[..m], text.as_bytes());
        let n = b.write_message(text.as_bytes(), &mut msg).unwrap();
        let m = a.read_message(&msg[..n], &mut out).unwrap();
        assert_eq!(&out[..m], text.as_bytes());
    }
}

/// The whole Noise Pipes flow with a stale key. With `alice_tries_ik`,
/// Alice first feeds Bob's fallback message to her IK state (which fails);
/// otherwise she switches on a transport-level signal without trying.
fn pipes_with_stale_key(alice_tries_ik: bool, seed: u64) {
    let mut rng = TestRng(seed);
    let (alice, bob, stale) = (Party::new(&mut rng), Party::new(&mut rng), Party::new(&mut rng));
    let prologue = b"pipes v1";
    let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);

    let mut a = Builder::new(&IK)
        .prologue(prologue)
        .local_static(alice.secret())
        .remote_static(stale.public())
        .build_initiator()
        .unwrap();
    let mut b = Builder::new(&IK).prologue(prologue).local_static(bob.secret()).build_responder().unwrap();

    // Message 1 of IK, encrypted to the stale key: Bob cannot read it.
    let n = a.write_message(b"0-RTT data", &mut msg, &mut rng).unwrap();
    let ik_message = msg[..n].to_vec();
    pl.fill(0xAA);
    assert_eq!(b.read_message(&ik_message, &mut pl), Err(Error::Decrypt));
    assert!(b.is_poisoned());
    assert!(pl[..10].iter().all(|&x| x == 0), "no plaintext left");
    assert_eq!(b.read_message(&ik_message, &mut pl), Err(Error::Poisoned));
    let alice_e = *b.remote_ephemeral().expect("the ephemeral key is kept for the fallback");
    assert_eq!(&alice_e[..], &ik_message[..32]);
    assert!(b.remote_static().is_none(), "the static key was not authenticated: not kept");

    // Bob falls back and initiates XXfallback. The prologue binds the
    // failed message (both sides have it).
    let mut b = b.fallback(&XXFB, &ik_message).unwrap();
    assert!(b.is_initiator() && b.is_my_turn() && !b.is_poisoned());
    assert_eq!(b.remote_ephemeral(), Some(&alice_e));
    let n = b.write_message(b"fallback, please", &mut msg, &mut rng).unwrap();
    assert_eq!(n, 32 + 48 + 16 + 16, "e, encrypted s, payload and tag");
    let fb_message = msg[..n].to_vec();

    if alice_tries_ik {
        // To Alice's IK state this is a broken IK message 2.
        assert_eq!(a.read_message(&fb_message, &mut pl), Err(Error::Decrypt));
        assert!(a.is_poisoned());
    }
    let mut a = a.fallback(&XXFB, &ik_message).unwrap();
    assert!(!a.is_initiator() && !a.is_my_turn());
    let got = a.read_message(&fb_message, &mut pl).unwrap();
    assert_eq!(&pl[..got], b"fallback, please");
    assert!(a.remote_static_pending());
    assert_eq!(a.remote_static(), Some(&bob.public()), "Alice learns Bob's real key");
    a.accept_remote_static();
    let n = a.write_message(b"hello again", &mut msg, &mut rng).unwrap();
    assert_eq!(n, 48 + 11 + 16, "s and payload only: Alice's e was the pre-message");
    let got = b.read_message(&msg[..n], &mut pl).unwrap();
    assert_eq!(&pl[..got], b"hello again");
    assert_eq!(b.remote_static(), Some(&alice.public()));
    b.accept_remote_static();
    assert!(a.is_complete() && b.is_complete());
    assert_eq!(a.handshake_hash(), b.handshake_hash());

    let (mut ta, mut tb) = (a.finish().unwrap(), b.finish().unwrap());
    assert_eq!(ta.handshake_hash(), tb.handshake_hash());
    assert!(tb.is_initiator() && !ta.is_initiator(), "Bob initiated the fallback");
    assert_eq!(tb.remote_static(), Some(&alice.public()));
    assert_eq!(ta.remote_static(), Some(&bob.public()));
    talk(&mut ta, &mut tb, 3);
}

#[test]
fn noise_pipes_stale_key_falls_back_to_xxfallback() {
    for seed in 0..8 {
        pipes_with_stale_key(true, seed);
        pipes_with_stale_key(false, seed);
    }
}

#[test]
fn noise_pipes_ik_succeeds_with_the_right_key() {
    let mut rng = TestRng(100);
    let (alice, bob) = (Party::new(&mut rng), Party::new(&mut rng));
    let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);
    let mut a =
        Builder::new(&IK).local_static(alice.secret()).remote_static(bob.public()).build_initiator().unwrap();
    let mut b = Builder::new(&IK).local_static(bob.secret()).build_responder().unwrap();
    let n = a.write_message(b"0-RTT data", &mut msg, &mut rng).unwrap();
    assert_eq!(b.read_message(&msg[..n], &mut pl), Ok(10));
    assert_eq!(&pl[..10], b"0-RTT data");
    assert_eq!(b.remote_static(), Some(&alice.public()));
    b.accept_remote_static();
    let n = b.write_message(b"welcome", &mut msg, &mut rng).unwrap();
    assert_eq!(a.read_message(&msg[..n], &mut pl), Ok(7));
    assert!(!a.remote_static_pending(), "IK: Bob's key was a pre-message");
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    let (mut ta, mut tb) = (a.finish().unwrap(), b.finish().unwrap());
    assert_eq!(ta.remote_static(), Some(&bob.public()));
    assert_eq!(tb.remote_static(), Some(&alice.public()));
    talk(&mut ta, &mut tb, 2);
}

#[test]
fn xxfallback_psk0_built_directly() {
    let p = Protocol::parse("Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256").unwrap();
    let mut rng = TestRng(200);
    let (alice, bob) = (Party::new(&mut rng), Party::new(&mut rng));
    let alice_e: [u8; 32] = rng.bytes();
    let psk: [u8; 32] = rng.bytes();
    let prologue = b"psk fallback";
    let build = |bob_psk: [u8; 32]| -> (HandshakeState, HandshakeState) {
        let b = Builder::new(&p)
            .prologue(prologue)
            .local_static(bob.secret())
            .remote_ephemeral(public(&alice_e))
            .psk(0, Secret::new(bob_psk))
            .build_initiator()
            .unwrap();
        let a = Builder::new(&p)
            .prologue(prologue)
            .local_static(alice.secret())
            .pre_ephemeral(Secret::new(alice_e))
            .psk(0, Secret::new(psk))
            .build_responder()
            .unwrap();
        (b, a)
    };
    let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);
    let (mut b, mut a) = build(psk);
    assert_eq!(a.handshake_hash(), b.handshake_hash(), "same pre-messages");
    let n = b.write_message(b"one", &mut msg, &mut rng).unwrap();
    assert_eq!(a.read_message(&msg[..n], &mut pl), Ok(3));
    assert_eq!(a.remote_static(), Some(&bob.public()));
    a.accept_remote_static();
    let n = a.write_message(b"two", &mut msg, &mut rng).unwrap();
    assert_eq!(b.read_message(&msg[..n], &mut pl), Ok(3));
    assert_eq!(b.remote_static(), Some(&alice.public()));
    b.accept_remote_static();
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    let (mut ta, mut tb) = (a.finish().unwrap(), b.finish().unwrap());
    talk(&mut tb, &mut ta, 2);

    // A different PSK: the first message does not authenticate.
    let (mut b, mut a) = build([0x42; 32]);
    let n = b.write_message(b"one", &mut msg, &mut rng).unwrap();
    assert_eq!(a.read_message(&msg[..n], &mut pl), Err(Error::Decrypt));
    assert!(a.is_poisoned());

    // The builder insists on exactly the keys the pattern needs.
    let missing = Builder::new(&p).local_static(alice.secret()).psk(0, Secret::new(psk)).build_responder();
    assert_eq!(missing.unwrap_err(), Error::MissingKey, "no pre-message e");
    let wrong_side = Builder::new(&p)
        .local_static(bob.secret())
        .pre_ephemeral(Secret::new(alice_e))
        .psk(0, Secret::new(psk))
        .build_initiator();
    assert_eq!(wrong_side.unwrap_err(), Error::UnexpectedKey, "the initiator has no pre-message e");
}

#[test]
fn fallback_refusals() {
    let mut rng = TestRng(300);
    let (alice, bob) = (Party::new(&mut rng), Party::new(&mut rng));
    let a =
        Builder::new(&IK).local_static(alice.secret()).remote_static(bob.public()).build_initiator().unwrap();
    // Not a fallback protocol.
    assert_eq!(a.fallback(&IK, b"").unwrap_err(), Error::Name(NameError::InvalidFallback));
    // Bob has read nothing: no ephemeral key to fall back with.
    let b = Builder::new(&IK).local_static(bob.secret()).build_responder().unwrap();
    assert_eq!(b.fallback(&XXFB, b"").unwrap_err(), Error::MissingKey);
    // Alice has not written her first message: no ephemeral key either.
    let a =
        Builder::new(&IK).local_static(alice.secret()).remote_static(bob.public()).build_initiator().unwrap();
    assert_eq!(a.fallback(&XXFB, b"").unwrap_err(), Error::MissingKey);
    // XXfallback needs a static key, which an NN party does not have.
    let nn = protocol!("Noise_NN_25519_ChaChaPoly_SHA256");
    let mut a = Builder::new(&nn).build_initiator().unwrap();
    a.write_message(b"", &mut [0u8; 64], &mut rng).unwrap();
    assert_eq!(a.fallback(&XXFB, b"").unwrap_err(), Error::MissingKey);
}

// ---------------------------------------------------------------- published vectors

/// Fills every request with the same 32 bytes: makes `X25519::generate`
/// return a chosen ephemeral key through the ordinary `fallback()` path.
struct FixedRng([u8; 32]);

impl rand_core::TryRng for FixedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        panic!("unexpected")
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        panic!("unexpected")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert_eq!(dst.len(), 32);
        dst.copy_from_slice(&self.0);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for FixedRng {}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex32(s: &str) -> [u8; 32] {
    hex(s).try_into().unwrap()
}

// Inputs shared by every vector below.
const PROLOGUE: &str = "50726f6c6f677565313233";
const INIT_STATIC: &str = "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1";
const INIT_EPHEMERAL: &str = "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a";
const INIT_REMOTE_STATIC: &str = "f215fe4ad54b354588d3fa52166179b723b9a211ec67167b9bf1729260972a23";
const RESP_STATIC: &str = "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893";
const RESP_EPHEMERAL: &str = "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b";
const PAYLOADS: [&str; 6] = [
    "4c756477696720766f6e204d69736573",
    "4d757272617920526f746862617264",
    "462e20412e20486179656b",
    "4361726c204d656e676572",
    "4a65616e2d426170746973746520536179",
    "457567656e2042f6686d20766f6e2042617765726b",
];

/// One vector: protocol name, the six ciphertexts (IK message 1 from Alice,
/// XXfallback messages from Bob and Alice, then transport messages Bob ->
/// Alice, Alice -> Bob, Bob -> Alice), and the handshake hash.
type Vector = (&'static str, [&'static str; 6], &'static str);

/// From `rweather/noise-c`, `tests/vector/noise-c-fallback.txt` (commit
/// 896a529e9298c594e14a8014469e67b6caba7979; MIT licence), the Noise Pipes
/// vectors ("pattern": "IK", "fallback": true): the IK message fails at the
/// responder because `init_remote_static` is not the responder's key, both
/// sides fall back to XXfallback keeping the prologue, and the responder's
/// fixed ephemeral key is used in the fallback. noise-c predates the
/// `fallback` modifier of rev 34 but its XXfallback is the same handshake
/// under the same name. 25519 entries only.
const VECTORS: &[Vector] = &[
    (
        "Noise_XXfallback_25519_ChaChaPoly_SHA256",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944a5ee5bed9cfbd66a10caecd9c3d7712389cd8b2b9d6f085cf010d25d4a8efd8088e4cf0f017e5421a790b54b870c619834ebc7c2cc0b3e94ccd34041845046332081c1bd470deb1197d20a352dedcd80",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843c95caa5acaf9a7cf34254947f0d8da9233b3a4a57993c4d824696e4b1cef496cb18dd4f1769969fbb0551ee2d4b6edd0084b2a393fd6abd60235cc1b608d2df210b208d2f0eb8aea090a565d95d91e",
            "1ec24f2fa67db6f7335bb7e2848571f4be76ae6702fd2123465e59e6f92f020aec4171e275fc91649d9ebedc91a507ec5bf745ec726d4ff246b6d4f460ac30e6b281174289a9ffd34722a8",
            "a5bfb0ca1ccf0e51d4fb1db0b6ca2e4a7d6e8c5f99a855f9acd085",
            "2b9ceb93e255064971cd959b919cc6f005563e4b23b13ebf302ceac191c753ea08",
            "174007173d84dad19f968e1721b7bb68095143a4377a75d7e07f40a07f79a52deda1114224",
        ],
        "ecabd6cfc98cb5d46b2abdc22bf2c3e8dc97e40fc019eff2da912db4f19266c6",
    ),
    (
        "Noise_XXfallback_25519_ChaChaPoly_SHA512",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79449696832c68f03dc5c478860c0b20e43546beedd2640fe3a2ae34e0bcb8c4647c1355b54c1de9435c66c5616c97259848aaebe8552de4e2b11d2e9aefb9e9e1c45984760b05fff746dc78497a202fc03a",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088439b7bf2045bb041eba16516c75be8c236f1edd76124683d1abcfdf9d7117845d16d44f3cbe90f1c74265994bb4547f2817ebee6dfee7cdad411681201c4f540c948fc078c334693cd902b869be79f31",
            "d75c6f5b38720f723e50a535ce5024c38f59131cf64d84d5edb6f38822c3ed2966a382934b8b9d0e1be07babed66b10e83b87cc70ae80c847a3b85c4d8be581cdd9f15eca82a13ea35de35",
            "c394825f74019ec285183c85f29cbf73fb3d196d3413b183b572f1",
            "5b5bca4494d23102268a964d9d33429a1f60e9cd4a27313424723bdd44a2d8c080",
            "869499944f76ca0e32898c0b4148bcea144f681ef6ed6857f820eff73488fd86a29d9a25d7",
        ],
        "8a6cce86cce99ffcca5fa8ef912883823debb06721311b77ea64c2db7eba364d37f94f712dea812832b3515857296f028a9c8b2b5f44185b559f350a11849f82",
    ),
    #[cfg(feature = "blake2")]
    (
        "Noise_XXfallback_25519_ChaChaPoly_BLAKE2s",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944aea61f2c1efc2d9700814dc96a8d8fba4351274cc18ef3cdf9aa8488c631200600a2e13226dabd61a6ee54f294d3275a4d760796d51f12d27c25fad320cbea15db09f78f3125d390ddc0c791f20b6387",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843a40f686fb88e6c8f3bd4118270ef4b307cd0a48ccc2ae47229331d883d706fc8478163e29de1ef9d569fd272fe5c4a5f2ac29659aee6ce683df9139413948262cfc43295dfc39667b275b92d75db48",
            "01b3fe36dbc8e08d4d5407b7e4aafcb6d4b670dec1a8eb50816eebf94964ea713cdc8954d82be8e24a6821dc8dd45556ab69a29474571b0d8ba936386b6a72b514ac45b8df99b8f70ba02f",
            "dcf3293c98642cd2791d2c6f3232ef939d773f47b859f512dca93d",
            "76414651614f48038de613c234da59c2e75bfbb5c87e33126e8e57c97fc9f721e5",
            "016f26702eb62b6822c50df2ca05cd9e467d254232cfd8b497bb5e3f976aa1861bbd7e685b",
        ],
        "54e424c6564898d6540f925faaa56516967c1b7847f4cac83016b6d1d318288a",
    ),
    #[cfg(feature = "blake2")]
    (
        "Noise_XXfallback_25519_ChaChaPoly_BLAKE2b",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c794444c103b601479a745cc5cd1ecd456f07a5a585a145b4f0615d73bc68b751c82579de1ae62e1fcd8306ed051c75490898075cce39b302acf9860aa7f091a62712e45e9e51fba842fb2a610aba665fbba5",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088437714fb2cf42a1fc018c24b3bd16731f9a1c1e476d4bd0d0ebcc53cd970d46776ce4e0dff06f00d13dcbac05019986e45929d9e70ce9f27b60ddc4b7ecbc06093bfe336d88f9fc2f0c923439b76bd3b",
            "fb87f74cbf441d50f7ebe2e1cb265138de3f2070cc34a12461382ecbef625feed719f4e89385e0875a81e64228b6763b4eaf0ea4d6f0f9822534909bdcd0f5d1966f62be436195577993c7",
            "a1ad6dc722186ef50b242f90f68a7c713e922f257c2739d5dfc956",
            "733ad645ff63a8fc84129292f40ea7436b7277637a57b434a2d72eccf5fcaf36dc",
            "5cb9704868319542e03376b53a2ca844910524e7826c4f4a8f5442a6466db486b8ec9d72b4",
        ],
        "9ca839672840ab3f239a4d1d7136ecde9b3cb8244c0fdc7d6c56f4e394144a54d28326d042ef30d8f253c977efce03d8f728686540672a9eac53dbf9b4c28b57",
    ),
    #[cfg(feature = "aes-gcm")]
    (
        "Noise_XXfallback_25519_AESGCM_SHA256",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944b8d8614bb060f41b87643b3aafb8212040d88e76814403c76a78836002844f61270ba7797d441a896debf6911afadab12354107db3c9019bd97d60a87c11e917f7d6d93aa265404c8e8b83065fb8f73c",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843824e059afdb8c2f7397b7b398d84a6cde4178068ad7976bd04793a16ce9d308cc9f2e8b305a36473303f9ba24d6a92d02c279ebeeab1283fe1543fce646f4b086d148d0475becd37d9cf3f2e32d862",
            "8c2db1c7f7485b1c5dcc2275c19665b2aed8f0fd9dcb02944ffbbd4ea4f4553fd6a39413af97ad06e1bbb1ba65b8eafc616c6fbc51d425b1c8f4e114cb017f58286c87ab62e06f6f2f51e5",
            "da246c13a9f1e6d5a18298a9970451ba151b295c7f15619ce5f7e6",
            "51e0d9073c90840f503f94564574dccb5eb7055eb0b175f1972b35b6b0a1dc5a78",
            "2926988f3d1036a019c5687f12e8b8c3f6b7b750013cbfb9349517355f35e318e196085154",
        ],
        "07c36d69147bca9eb6b2027bfe8dc6b1ebb24b50d60d99365e402164786204e3",
    ),
    #[cfg(feature = "aes-gcm")]
    (
        "Noise_XXfallback_25519_AESGCM_SHA512",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944f550090c72302515e2be8229fca829f6fbe5e08ae6e8b948c972af4bac986ef0e6481799a93f945aee0ff21374d789625d61019c705f9e83f44d4673571701337ece1142de87b912ebe77d140f2b3614",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843c6d37b52a6afef7f91a0a6f81dfda63969041193c75495b0796d5a7d390412b574dc1a7e9aead70ba9f251a3fbcc03972c9c9d2339bbc3f41fb9cae5d9bc71444f80ff0be087587cdd75414fcdd220",
            "6f810ae925fcf83d38f198e3da5115206421e6dfdf4e5979a064239cd2491e934255d9f70483c56283dc65d75ab8aeb45132680f0f0a9a8fa066105e6094bff8a401c1c6e7cfb53b7a7e2c",
            "bf88963de8d3f841120557881664410fccff4b8554f9389501b619",
            "8b0a9f6d4e08863352eb76b039b7882fe6f6815c6d4ec66a8ad5dc8a2d4a84a274",
            "93aa1992ce6fb3a89959a105acd7dbb3670d479c99f1855a30063ee9e7be3d7e2860b48ce1",
        ],
        "2f56227a97846c8c3ff0c780e88f5764055a0b1a24a37e2c021f79c42b09c9d2a942c3010146b615df038f0b78b1abf1623058f9ef5a468b778ee77320797fa4",
    ),
    #[cfg(all(feature = "aes-gcm", feature = "blake2"))]
    (
        "Noise_XXfallback_25519_AESGCM_BLAKE2s",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944ed93427f5ee7e5dc36e2c7af485bcfda1480c4dcf85fb8ae926a0f8fb4f8b68afb0aa6610e645b04fbec834602d138e25b5ef7e9bd3ffbf1b1c260f6325d933ebf184f0d222a6bdb85f021d26da160b4",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088436b7001264b33fa645d5cad525a8d5087034d53ede68f5cadaa385670a348c03ea578d5f4220cf2a43170ae4da54956fec41a8419452017121575cbbcb05921404891ab9a30ec1a2d46579a16e4e8ff",
            "b598f88374aaac2dea9220750a5cb679abda62fc035b0be5c5495cb39fd031f4c57c39498a35a2ce6a667bfb3794ae4255a3e22711c68700a772907374d586149dc6f141374a1474288166",
            "66b8a3a2b3c6617d3da97e82635c2120dce581e90637568aacdd10",
            "31f442c4b0b10050d9973ba6dcc014c0c595da40f14005e4d7f29c05c9ff082a7c",
            "8525d6cf5bde8485892af48c4ce8dcc80c5edf55d42133b8cdb2bd6c79bd77ed468617fef9",
        ],
        "de0e8dbbb962f0b73378bccc25a2ef40f4ec3f8b4e43baba8fcc73ba8df94484",
    ),
    #[cfg(all(feature = "aes-gcm", feature = "blake2"))]
    (
        "Noise_XXfallback_25519_AESGCM_BLAKE2b",
        [
            "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944a3bec64026bf7a2212bbc71f2ae92411b8bbf4dcf1669077d7aea24eefa6346d0599b3599c0105353c1d0cb8b001aedec0d5d87c86476a5ac021cd1bbb7797fedcfdc796e8da71e9d555e54f64ba35bb",
            "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381469e1b2a26e7264f47d96962498496bd8c3337ab6816e4f8fc32bac5f4975c4fcae5bd5c8b29a23a729bb6109a1deea2e45b4403e7a8418f399cea1b950549cab2d30dce917ef8ea32c9214eab81",
            "790e1f3073ef8a3d71c807a62e0c401084c20ee9a3973a500fdf870d5aa1e20eeed6d24d7f527448e3d1d0244f2d72cdc88ebb73c85d6f299d34e9b1a56fe664446d57c0daceacf39c2d3e",
            "5dbee193adc0271c3fb937332e08480993d902bcb6f2cf3d07d0dd",
            "deb9b15e5eb30116b86fb8e79af7485f279c3dbcb14d53fa51abd705ec606f4ab0",
            "62531f912d9e78b2360e906a5378c604cf755bdd5c7dc78f5486327c2181766f4403264781",
        ],
        "9a8d5d4cca5e53e3ed14f9e4e9433c98de38a66ca75ab774e482aca933c220d03107b41de066a468467a883c4e64a3840d9663cfbdf4f240b4ffe6ba72d08630",
    ),
];

fn run_vector((fb_name, ciphertexts, hash): &Vector) {
    let fb = Protocol::parse(fb_name).unwrap();
    let ik_name = fb_name.replace("XXfallback", "IK");
    let ik = Protocol::parse(&ik_name).unwrap();
    let prologue = hex(PROLOGUE);
    let ct: Vec<Vec<u8>> = ciphertexts.iter().map(|c| hex(c)).collect();
    let payloads: Vec<Vec<u8>> = PAYLOADS.iter().map(|p| hex(p)).collect();
    let (mut msg, mut pl) = ([0u8; 512], [0u8; 512]);
    let mut unused = FixedRng([0; 32]);

    let mut alice = Builder::new(&ik)
        .prologue(&prologue)
        .local_static(Secret::new(hex32(INIT_STATIC)))
        .remote_static(hex32(INIT_REMOTE_STATIC))
        .dangerous_with_ephemeral(Secret::new(hex32(INIT_EPHEMERAL)))
        .build_initiator()
        .unwrap();
    let mut bob = Builder::new(&ik)
        .prologue(&prologue)
        .local_static(Secret::new(hex32(RESP_STATIC)))
        .build_responder()
        .unwrap();
    assert_ne!(public(&hex32(RESP_STATIC)), hex32(INIT_REMOTE_STATIC), "the vector's key is stale");

    let n = alice.write_message(&payloads[0], &mut msg, &mut unused).unwrap();
    assert_eq!(&msg[..n], &ct[0][..], "{fb_name}: IK message 1");
    assert_eq!(bob.read_message(&ct[0], &mut pl), Err(Error::Decrypt));

    let mut bob = bob.fallback(&fb, &prologue).unwrap();
    let n = bob.write_message(&payloads[1], &mut msg, &mut FixedRng(hex32(RESP_EPHEMERAL))).unwrap();
    assert_eq!(&msg[..n], &ct[1][..], "{fb_name}: XXfallback message 1 (Bob)");
    assert_eq!(alice.read_message(&ct[1], &mut pl), Err(Error::Decrypt));
    let mut alice = alice.fallback(&fb, &prologue).unwrap();
    let got = alice.read_message(&ct[1], &mut pl).unwrap();
    assert_eq!(&pl[..got], &payloads[1][..]);
    assert_eq!(alice.remote_static(), Some(&public(&hex32(RESP_STATIC))));
    alice.accept_remote_static();
    let n = alice.write_message(&payloads[2], &mut msg, &mut unused).unwrap();
    assert_eq!(&msg[..n], &ct[2][..], "{fb_name}: XXfallback message 2 (Alice)");
    let got = bob.read_message(&ct[2], &mut pl).unwrap();
    assert_eq!(&pl[..got], &payloads[2][..]);
    assert_eq!(bob.remote_static(), Some(&public(&hex32(INIT_STATIC))));
    bob.accept_remote_static();
    assert_eq!(alice.handshake_hash(), &hex(hash)[..], "{fb_name}: handshake hash");
    assert_eq!(bob.handshake_hash(), &hex(hash)[..]);

    let (mut ta, mut tb) = (alice.finish().unwrap(), bob.finish().unwrap());
    for k in 3..6 {
        let (w, r) = if k % 2 == 1 { (&mut tb, &mut ta) } else { (&mut ta, &mut tb) };
        let n = w.write_message(&payloads[k], &mut msg).unwrap();
        assert_eq!(&msg[..n], &ct[k][..], "{fb_name}: transport message {k}");
        let got = r.read_message(&ct[k], &mut pl).unwrap();
        assert_eq!(&pl[..got], &payloads[k][..]);
    }
}

#[test]
fn noise_c_fallback_vectors() {
    for v in VECTORS {
        run_vector(v);
    }
    let expected =
        2 + if cfg!(feature = "blake2") { 2 } else { 0 } + if cfg!(feature = "aes-gcm") { 2 } else { 0 };
    let expected = expected + if cfg!(all(feature = "aes-gcm", feature = "blake2")) { 2 } else { 0 };
    assert_eq!(VECTORS.len(), expected);
}

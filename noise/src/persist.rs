//! Persisted transport state (keys, counters, replay window) through the
//! `core` envelope, kind [`StateKind::NOISE_TRANSPORT`].
//!
//! Body, version 1 (all integers big-endian):
//!
//! ```text
//! mode u8 (0 stream, 1 datagram) | cipher u8 (0 ChaChaPoly, 1 AESGCM) | initiator u8
//! | handshake_hash <0..64> (u8 length) | remote_static: u8 flag (0/1) [+ 32 bytes]
//! | send: u8 flag [+ key 32 + nonce u64] | recv: u8 flag [+ key 32 + nonce u64]
//! datagram only: | words u16 | seen u8 | highest u64 | bitmap u64 * words
//! ```
//!
//! The body holds live keys: seal it ([`Persist::seal_state`]) unless the
//! storage is already confidential, and persist before transmitting.

use crate::cipher::{CipherState, Key};
use crate::datagram::{DatagramTransport, ReplayWindow};
use crate::pattern::CipherChoice;
use crate::symmetric::MAX_HASH_LEN;
use crate::transport::Transport;
use securemesh_core::Error;
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::SuiteId;
use securemesh_core::envelope::{Header, Persist, StateKind};

const MODE_STREAM: u8 = 0;
const MODE_DATAGRAM: u8 = 1;
const COMMON_MAX: usize = 3 + 1 + MAX_HASH_LEN + 33 + 2 * (1 + 32 + 8);

fn cipher_tag(c: CipherChoice) -> u8 {
    match c {
        CipherChoice::ChaChaPoly => 0,
        #[cfg(feature = "aes-gcm")]
        CipherChoice::AesGcm => 1,
    }
}

fn cipher_from(tag: u8) -> Result<CipherChoice, Error> {
    match tag {
        0 => Ok(CipherChoice::ChaChaPoly),
        #[cfg(feature = "aes-gcm")]
        1 => Ok(CipherChoice::AesGcm),
        _ => Err(Error::InvalidValue),
    }
}

fn suite_of(c: CipherChoice) -> SuiteId {
    match c {
        CipherChoice::ChaChaPoly => SuiteId::DEFAULT,
        #[cfg(feature = "aes-gcm")]
        CipherChoice::AesGcm => SuiteId(0x4e01),
    }
}

fn read_flag(r: &mut Reader<'_>) -> Result<bool, Error> {
    match r.read_u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::InvalidValue),
    }
}

struct Common {
    send: CipherState,
    recv: CipherState,
    handshake_hash: [u8; MAX_HASH_LEN],
    hash_len: u8,
    initiator: bool,
    remote_static: Option<[u8; 32]>,
}

fn write_cs(w: &mut Writer<'_>, cs: &CipherState) -> Result<(), Error> {
    match &cs.k {
        Some(k) => {
            w.write_u8(1)?;
            w.write_bytes(k.expose())?;
            w.write_u64(cs.n)
        }
        None => w.write_u8(0),
    }
}

fn read_cs(r: &mut Reader<'_>, cipher: CipherChoice) -> Result<CipherState, Error> {
    if read_flag(r)? {
        let k = Key::new(r.read_array()?);
        let n = r.read_u64()?;
        Ok(CipherState { k: Some(k), n, cipher })
    } else {
        Ok(CipherState::empty(cipher))
    }
}

#[allow(clippy::too_many_arguments)]
fn write_common(
    w: &mut Writer<'_>,
    mode: u8,
    send: &CipherState,
    recv: &CipherState,
    hh: &[u8],
    initiator: bool,
    rs: Option<&[u8; 32]>,
) -> Result<(), Error> {
    w.write_u8(mode)?;
    w.write_u8(cipher_tag(send.cipher))?;
    w.write_u8(u8::from(initiator))?;
    w.write_vec8(hh)?;
    match rs {
        Some(k) => {
            w.write_u8(1)?;
            w.write_bytes(k)?;
        }
        None => w.write_u8(0)?,
    }
    write_cs(w, send)?;
    write_cs(w, recv)
}

fn read_common(header: &Header, r: &mut Reader<'_>, mode: u8) -> Result<Common, Error> {
    if header.version != 1 {
        return Err(Error::UnknownVersion { found: header.version });
    }
    if r.read_u8()? != mode {
        return Err(Error::InvalidValue);
    }
    let cipher = cipher_from(r.read_u8()?)?;
    if header.suite != suite_of(cipher) {
        return Err(Error::SuiteMismatch { found: header.suite.0 });
    }
    let initiator = read_flag(r)?;
    let hh = r.read_vec8()?;
    if hh.len() != 32 && hh.len() != 64 {
        return Err(Error::InvalidValue);
    }
    let mut handshake_hash = [0u8; MAX_HASH_LEN];
    handshake_hash.get_mut(..hh.len()).ok_or(Error::InvalidValue)?.copy_from_slice(hh);
    let remote_static = if read_flag(r)? { Some(r.read_array()?) } else { None };
    let send = read_cs(r, cipher)?;
    let recv = read_cs(r, cipher)?;
    Ok(Common { send, recv, handshake_hash, hash_len: hh.len() as u8, initiator, remote_static })
}

impl Persist for Transport {
    const KIND: StateKind = StateKind::NOISE_TRANSPORT;
    const VERSION: u16 = 1;
    const MAX_BODY_LEN: usize = COMMON_MAX;

    fn suite(&self) -> SuiteId {
        suite_of(self.send.cipher)
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        let rs = self.remote_static.as_ref();
        write_common(w, MODE_STREAM, &self.send, &self.recv, self.handshake_hash(), self.initiator, rs)
    }

    fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
        let c = read_common(header, r, MODE_STREAM)?;
        Ok(Transport {
            send: c.send,
            recv: c.recv,
            handshake_hash: c.handshake_hash,
            hash_len: c.hash_len,
            initiator: c.initiator,
            remote_static: c.remote_static,
        })
    }
}

impl<const WORDS: usize> Persist for DatagramTransport<WORDS> {
    const KIND: StateKind = StateKind::NOISE_TRANSPORT;
    const VERSION: u16 = 1;
    const MAX_BODY_LEN: usize = COMMON_MAX + 2 + 1 + 8 + 8 * WORDS;

    fn suite(&self) -> SuiteId {
        suite_of(self.send.cipher)
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        let rs = self.remote_static.as_ref();
        write_common(w, MODE_DATAGRAM, &self.send, &self.recv, self.handshake_hash(), self.initiator, rs)?;
        w.write_u16(u16::try_from(WORDS).map_err(|_| Error::LengthOverflow)?)?;
        w.write_u8(u8::from(self.window.seen_any))?;
        w.write_u64(self.window.last)?;
        for word in &self.window.bitmap {
            w.write_u64(*word)?;
        }
        Ok(())
    }

    fn decode_body(header: &Header, r: &mut Reader<'_>) -> Result<Self, Error> {
        let c = read_common(header, r, MODE_DATAGRAM)?;
        if usize::from(r.read_u16()?) != WORDS {
            return Err(Error::InvalidValue);
        }
        let seen_any = read_flag(r)?;
        let last = r.read_u64()?;
        let mut bitmap = [0u64; WORDS];
        for word in &mut bitmap {
            *word = r.read_u64()?;
        }
        Ok(DatagramTransport {
            send: c.send,
            recv: c.recv,
            window: ReplayWindow { bitmap, last, seen_any },
            handshake_hash: c.handshake_hash,
            hash_len: c.hash_len,
            initiator: c.initiator,
            remote_static: c.remote_static,
        })
    }
}

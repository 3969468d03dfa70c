//! Storage keys and hex text: the key that seals the state files comes
//! from a key file or an environment variable, as 64 hex digits.

use securemesh_core::envelope::StorageKey;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

/// Why a storage key could not be had.
#[derive(Debug)]
pub enum KeyError {
    /// The key file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The environment variable is not set.
    MissingEnv(String),
    /// The text is not 64 hex digits.
    Malformed {
        /// Where it came from (a path or `$VAR`).
        source: String,
    },
    /// Neither `key_file` nor `key_env` is configured.
    NotConfigured,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Io { path, error } => write!(f, "storage key file {}: {error}", path.display()),
            KeyError::MissingEnv(v) => write!(f, "storage key: environment variable {v} is not set"),
            KeyError::Malformed { source } => {
                write!(f, "storage key from {source}: expected 64 hex digits (32 bytes)")
            }
            KeyError::NotConfigured => {
                write!(f, "no storage key: set key_lifecycle.state_persistence.key_file or key_env")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from(*DIGITS.get(usize::from(nibble)).unwrap_or(&b'0')));
        }
    }
    s
}

/// The bytes of a hex string (either case, surrounding whitespace
/// ignored), or `None`.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let t = text.trim().as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    t.chunks_exact(2)
        .map(|p| match p {
            [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
            _ => None,
        })
        .collect()
}

/// A storage key from 64 hex digits.
pub fn parse_key(text: &str, source: &str) -> Result<StorageKey, KeyError> {
    let malformed = || KeyError::Malformed { source: source.into() };
    let t = text.trim().as_bytes();
    if t.len() != 64 {
        return Err(malformed());
    }
    let mut key = StorageKey::zeroed();
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    for (out, pair) in key.expose_mut().iter_mut().zip(t.chunks_exact(2)) {
        let [h, l] = pair else { return Err(malformed()) };
        *out = digit(*h).zip(digit(*l)).map(|(h, l)| h << 4 | l).ok_or_else(malformed)?;
    }
    Ok(key)
}

/// `text`'s bytes wiped, then dropped.
fn wipe(text: String) {
    let mut bytes = text.into_bytes();
    bytes.as_mut_slice().zeroize();
}

/// Read the storage key from a key file.
pub fn read_key_file(path: &Path) -> Result<StorageKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyError::Io { path: path.into(), error })?;
    let key = parse_key(&text, &path.display().to_string());
    wipe(text);
    key
}

/// Read the storage key from an environment variable.
pub fn read_key_env(var: &str) -> Result<StorageKey, KeyError> {
    let text = std::env::var(var).map_err(|_| KeyError::MissingEnv(var.into()))?;
    let key = parse_key(&text, &format!("${var}"));
    wipe(text);
    key
}

/// Write a fresh random storage key to `path` (created with its
/// directory, never overwritten; mode 0600 on Unix).
pub fn write_new_key(path: &Path) -> Result<(), KeyError> {
    let key = StorageKey::random(
        &mut crate::rng::OsRng::new()
            .map_err(|error| KeyError::Io { path: path.into(), error: std::io::Error::other(error) })?,
    );
    let io = |error| KeyError::Io { path: path.into(), error };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(io)?;
    let text = to_hex(key.expose());
    let written = f.write_all(text.as_bytes()).and_then(|()| f.write_all(b"\n"));
    wipe(text);
    written.map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
        assert_eq!(from_hex("0A ff"), None);
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(" 0aFF\n").unwrap(), [0x0a, 0xff]);
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(matches!(parse_key(&"ab".repeat(31), "t"), Err(KeyError::Malformed { .. })));
        assert!(matches!(parse_key(&"g".repeat(64), "t"), Err(KeyError::Malformed { .. })));
        let k = parse_key(&to_hex(&[7u8; 32]), "t").unwrap();
        assert_eq!(k.expose(), &[7u8; 32]);
    }
}

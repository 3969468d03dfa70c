//! Key material: fixed-size, zeroized on drop, silent in `Debug`, compared
//! in constant time.

use core::fmt;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A fixed-size byte array usable as key, nonce, digest or public key.
///
/// Implemented for every `[u8; N]`; suite traits use it as the bound of
/// their associated key and output types so public APIs stay plain arrays.
pub trait ByteArray: AsRef<[u8]> + AsMut<[u8]> + Copy + Zeroize + Send + Sync + 'static {
    /// Length in bytes.
    const LEN: usize;

    /// An all-zero value (a buffer to fill, never used as a key as is).
    fn zeroed() -> Self;

    /// Copy from a slice of exactly [`ByteArray::LEN`] bytes.
    ///
    /// ```
    /// use securemesh_core::ByteArray;
    /// assert_eq!(<[u8; 2]>::from_slice(&[1, 2]), Some([1, 2]));
    /// assert_eq!(<[u8; 2]>::from_slice(&[1]), None);
    /// ```
    fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let mut out = Self::zeroed();
        out.as_mut().copy_from_slice(bytes);
        Some(out)
    }
}

impl<const N: usize> ByteArray for [u8; N] {
    const LEN: usize = N;
    fn zeroed() -> Self {
        [0u8; N]
    }
}

/// Secret key material of a fixed size.
///
/// - zeroized when dropped;
/// - `Debug` prints only the length;
/// - equality is constant time ([`ConstantTimeEq`]); there is no `PartialEq`
///   so a secret cannot be compared by accident with `==`.
///
/// ```
/// use securemesh_core::Secret;
/// use subtle::ConstantTimeEq;
/// let a = Secret::new([7u8; 32]);
/// let b = Secret::from_slice(&[7u8; 32]).unwrap();
/// assert!(bool::from(a.ct_eq(&b)));
/// assert_eq!(format!("{a:?}"), "Secret<32>(..)");
/// ```
pub struct Secret<A: ByteArray>(A);

impl<A: ByteArray> Secret<A> {
    /// Take ownership of `bytes` as a secret.
    pub const fn new(bytes: A) -> Self {
        Secret(bytes)
    }

    /// An all-zero secret, to be filled through [`Secret::expose_mut`].
    pub fn zeroed() -> Self {
        Secret(A::zeroed())
    }

    /// Copy a secret from a slice of exactly the right length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        A::from_slice(bytes).map(Secret)
    }

    /// Fill a secret from the caller's CSPRNG.
    pub fn random<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut s = Self::zeroed();
        rng.fill_bytes(s.0.as_mut());
        s
    }

    /// Borrow the secret bytes. Keep the borrow short.
    pub const fn expose(&self) -> &A {
        &self.0
    }

    /// Borrow the secret bytes mutably (to fill them from a KDF).
    pub fn expose_mut(&mut self) -> &mut A {
        &mut self.0
    }

    /// Length in bytes.
    pub const fn len(&self) -> usize {
        A::LEN
    }

    /// Whether the secret has zero length.
    pub const fn is_empty(&self) -> bool {
        A::LEN == 0
    }
}

impl<A: ByteArray> Secret<A> {
    /// A second copy of the key material, made on purpose (both copies
    /// zeroize on drop). `Secret` is deliberately not `Clone`: a copy of a
    /// key is a decision (and a place to audit, `grep duplicate`), never a
    /// side effect of `#[derive(Clone)]` on a type that holds one, and
    /// session types that hold secrets are not `Clone` at all.
    ///
    /// ```
    /// use securemesh_core::Secret;
    /// let chain_key = Secret::new([7u8; 32]);
    /// let walked = chain_key.duplicate(); // e.g. to derive ahead without consuming
    /// assert_eq!(walked.expose(), chain_key.expose());
    /// ```
    ///
    /// ```compile_fail
    /// fn needs_clone<T: Clone>() {}
    /// needs_clone::<securemesh_core::Secret<[u8; 32]>>(); // not Clone
    /// ```
    pub fn duplicate(&self) -> Self {
        Secret(self.0)
    }
}

impl<A: ByteArray> Drop for Secret<A> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<A: ByteArray> ZeroizeOnDrop for Secret<A> {}

impl<A: ByteArray> fmt::Debug for Secret<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret<{}>(..)", A::LEN)
    }
}

impl<A: ByteArray> ConstantTimeEq for Secret<A> {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.as_ref().ct_eq(other.0.as_ref())
    }
}

impl<A: ByteArray> From<A> for Secret<A> {
    fn from(bytes: A) -> Self {
        Secret(bytes)
    }
}

/// Constant-time equality of two byte slices (false if lengths differ; the
/// length itself is not secret).
///
/// ```
/// assert!(securemesh_core::ct_eq(b"tag", b"tag"));
/// assert!(!securemesh_core::ct_eq(b"tag", b"tog"));
/// ```
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn zeroize_clears_bytes() {
        let mut s = Secret::new([0xa5u8; 16]);
        s.expose_mut().zeroize();
        assert_eq!(s.expose(), &[0u8; 16]);
    }

    #[test]
    fn ct_eq_distinguishes() {
        let a = Secret::new([1u8; 32]);
        let mut b = a.duplicate();
        b.expose_mut()[31] ^= 1;
        assert!(!bool::from(a.ct_eq(&b)));
        assert!(bool::from(a.ct_eq(&a.duplicate())));
    }
}

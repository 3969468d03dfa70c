//! Application messages of a joined group (RFC 9420 §6.3, §15.2): sealed
//! as PrivateMessages with our leaf's application ratchet, opened with the
//! sender's, each key used once (the group's
//! [`SenderRatchets`](crate::sender_ratchets::SenderRatchets)).
//!
//! Both are transactions: an error changes nothing of the group (no key is
//! used up); success uses the generation's key, so the state must be
//! persisted before what a call produced is acted on (sent, or delivered
//! to the application and acknowledged).

use crate::error::Error;
use crate::framing::{
    AuthenticatedContent, Content, ContentType, FramedContentAuthData, SIGNATURE_LEN, protect_private, sign,
    sign_scratch_len,
};
use crate::group::Group;
use crate::messages::WireFormat;
use crate::mls_message::MlsMessageBody;
use crate::secret_tree::RatchetKind;
use securemesh_core::CryptoRng;
use securemesh_core::codec::Reader;

/// An opened application message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplicationMessage<'a> {
    /// The sender's leaf.
    pub sender: u32,
    /// The generation of the sender's application ratchet.
    pub generation: u32,
    /// The message's `authenticated_data` (sent in the clear, authenticated).
    pub authenticated_data: &'a [u8],
    /// The application data.
    pub data: &'a [u8],
}

impl<const L: usize, const B: usize, const G: usize, const E: usize> Group<L, B, G, E> {
    /// Scratch bytes [`open_application`](Self::open_application) needs at
    /// most for a message of `message_len` bytes.
    pub const fn application_scratch_len(message_len: usize) -> usize {
        Self::commit_scratch_len(message_len)
    }

    /// Open an application message (an `MLSMessage` holding a
    /// PrivateMessage of the current epoch with application content):
    /// sender data, the sender's application key for its generation (a
    /// generation opens one message; late ones within the window of
    /// [`sender_ratchets`](crate::sender_ratchets)), the signature of a
    /// member leaf. The data is decrypted into `scratch`
    /// ([`application_scratch_len`](Self::application_scratch_len) bytes).
    ///
    /// Errors change nothing: a replayed or evicted generation is
    /// [`Error::Decrypt`], one too far ahead [`Error::Capacity`], an
    /// application message sent as a PublicMessage (forbidden, §6.2), of
    /// another epoch or from our own leaf [`Error::Malformed`]; `scratch`
    /// is wiped on every error.
    ///
    /// Example: with [`seal_application`](Self::seal_application).
    pub fn open_application<'s>(
        &mut self,
        message: &'s [u8],
        scratch: &'s mut [u8],
    ) -> Result<ApplicationMessage<'s>, Error> {
        let needed = Self::application_scratch_len(message.len());
        let checked = self.prepare(message, needed, &mut *scratch).and_then(|(msg, plain, work)| {
            let authenticated_data = match msg.body {
                MlsMessageBody::PrivateMessage(pm) if pm.content_type == ContentType::Application => {
                    pm.authenticated_data
                }
                _ => return Err(Error::Malformed),
            };
            // Our own messages are not received (their keys are our sending
            // ratchet's): refused on the sender data.
            match self.authenticate(&msg, Some(self.own_leaf), plain, work) {
                Ok((ac, Some(sd))) if matches!(ac.content.content, Content::Application(_)) => {
                    Ok((sd, authenticated_data))
                }
                Ok(_) => Err(Error::Malformed),
                Err(e) => Err(e),
            }
        });
        // Consuming cannot fail: `authenticate` just derived this key.
        let (sd, authenticated_data) = match checked.and_then(|(sd, ad)| {
            self.ratchets.consume(sd.leaf_index, sd.generation, RatchetKind::Application).map(|()| (sd, ad))
        }) {
            Ok(opened) => opened,
            Err(e) => {
                scratch.fill(0);
                return Err(e);
            }
        };
        // (`prepare` checked that the scratch holds the message.)
        let (plain, work) = scratch.split_at_mut_checked(message.len()).ok_or(Error::Capacity)?;
        work.fill(0);
        // The plaintext starts with the content, `opaque application_data<V>`.
        let plain: &'s [u8] = plain;
        let data = Reader::new(plain).read_vec_varint()?;
        Ok(ApplicationMessage { sender: sd.leaf_index, generation: sd.generation, authenticated_data, data })
    }

    /// Scratch bytes [`seal_application`](Self::seal_application) needs
    /// for `data` and `authenticated_data` of these lengths.
    pub const fn seal_scratch_len(data_len: usize, authenticated_data_len: usize) -> usize {
        Self::commit_scratch_len(data_len.saturating_add(authenticated_data_len))
    }

    /// Seal `data` as an application message from our leaf (a
    /// PrivateMessage of the current epoch, signed with our signature key,
    /// `padding` zero bytes added, reuse guard from `rng`) into `out`;
    /// returns its length. Our application ratchet moves on by one
    /// generation; on error (`BufferTooSmall { needed }` included) nothing
    /// changes and nothing is written.
    ///
    /// `scratch`: [`seal_scratch_len`](Self::seal_scratch_len) bytes.
    ///
    /// Between two members (built here without a Welcome by
    /// `testing::member_pair`, feature `testing`):
    ///
    /// ```
    /// use securemesh_core::testing::TestRng;
    /// use securemesh_mls_lite::Group;
    /// use securemesh_mls_lite::testing::member_pair;
    /// type Small = Group<4, 256, 16, 16>;
    /// let (mut a, mut b): (Box<Small>, Box<Small>) = (Box::default(), Box::default());
    /// let mut rng = TestRng::new(1);
    /// member_pair(b"agents", &mut rng, [&mut *a, &mut *b])?;
    ///
    /// let (data, ad) = (b"move to waypoint 4", b"");
    /// let mut message = [0u8; 512];
    /// let mut scratch = vec![0u8; Small::seal_scratch_len(data.len(), ad.len())];
    /// let n = a.seal_application(data, ad, 0, &mut rng, &mut message, &mut scratch)?;
    ///
    /// let mut scratch = vec![0u8; Small::application_scratch_len(n)];
    /// let opened = b.open_application(&message[..n], &mut scratch)?;
    /// assert_eq!((opened.sender, opened.data), (a.own_leaf(), &data[..]));
    /// // A generation opens once.
    /// let mut scratch = vec![0u8; Small::application_scratch_len(n)];
    /// assert!(b.open_application(&message[..n], &mut scratch).is_err());
    /// # Ok::<(), securemesh_mls_lite::Error>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn seal_application<R: CryptoRng + ?Sized>(
        &mut self,
        data: &[u8],
        authenticated_data: &[u8],
        padding: usize,
        rng: &mut R,
        out: &mut [u8],
        scratch: &mut [u8],
    ) -> Result<usize, Error> {
        self.ready_to_sign()?;
        let gc = self.group_context();
        let content = self.own_content(authenticated_data, Content::Application(data));
        let needed = sign_scratch_len(WireFormat::PrivateMessage, &content, &gc)?;
        let buf = scratch.get_mut(..needed).ok_or(Error::BufferTooSmall { needed })?;
        let key = self.signing_key.as_ref().ok_or(Error::Malformed)?;
        // The signed bytes hold the plaintext: wiped whatever the outcome.
        let signed = sign(WireFormat::PrivateMessage, &content, key, &gc, buf);
        buf.fill(0);
        let signature: [u8; SIGNATURE_LEN] = signed?;
        let ac = AuthenticatedContent {
            wire_format: WireFormat::PrivateMessage,
            content,
            auth: FramedContentAuthData { signature: &signature, confirmation_tag: None },
        };
        let kind = RatchetKind::Application;
        let generation = self.ratchets.next_generation(self.own_leaf, kind)?;
        let kn = self.ratchets.key_nonce(self.own_leaf, generation, kind)?;
        let n = protect_private(&ac, &self.secrets.sender_data, &kn, generation, padding, rng, out)?;
        self.ratchets.consume(self.own_leaf, generation, kind)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use securemesh_core::envelope::Persist;
    use securemesh_core::testing::TestRng;
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    type Small = Group<4, 256, 8, 8>;

    /// Two members (leaves 0 and 1) of one group in the same epoch
    /// ([`crate::testing::member_pair`]); their tree validates.
    fn pair() -> [Box<Small>; 2] {
        let mut a: Box<Small> = Box::default();
        let mut b: Box<Small> = Box::default();
        crate::testing::member_pair(b"agents", &mut TestRng::new(7), [&mut *a, &mut *b]).unwrap();
        let mut work = vec![0u8; 4096];
        a.tree().validate(b"agents", &mut work).unwrap();
        [a, b]
    }

    fn encoded(g: &Small) -> Vec<u8> {
        let mut out = vec![0u8; Small::MAX_ENCODED_LEN];
        let n = g.encode_state(&mut out).unwrap();
        out.truncate(n);
        out
    }

    fn seal(g: &mut Small, rng: &mut TestRng, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; data.len() + 256];
        let mut scratch = vec![0u8; Small::seal_scratch_len(data.len(), 2)];
        let n = g.seal_application(data, b"ad", 3, rng, &mut out, &mut scratch).unwrap();
        out.truncate(n);
        out
    }

    /// Open `m` at `g`: `Ok((sender, generation, data))`, or the error
    /// with the state and the scratch checked unchanged and wiped.
    fn open(g: &mut Small, m: &[u8]) -> Result<(u32, u32, Vec<u8>), Error> {
        let before = encoded(g);
        let mut scratch = vec![0xffu8; Small::application_scratch_len(m.len())];
        match g.open_application(m, &mut scratch) {
            Ok(a) => {
                assert_eq!(a.authenticated_data, b"ad");
                Ok((a.sender, a.generation, a.data.to_vec()))
            }
            Err(e) => {
                assert_eq!(encoded(g), before, "a refused message changed the group ({e:?})");
                assert!(scratch.iter().all(|b| *b == 0), "scratch not wiped ({e:?})");
                Err(e)
            }
        }
    }

    #[test]
    fn seal_and_open_between_members_once_each_within_the_window() {
        let [mut a, mut b] = pair();
        let mut rng = TestRng::new(1);
        let m0 = seal(&mut a, &mut rng, b"hello group");
        assert_eq!(open(&mut b, &m0), Ok((0, 0, b"hello group".to_vec())));
        assert_eq!(open(&mut b, &m0), Err(Error::Decrypt), "replay");
        // Our own message is not received.
        assert_eq!(open(&mut a, &m0), Err(Error::Malformed));

        // Generations 1..=8; 8 arrives first: 3..=7 stay openable, 1 and 2
        // fell out of the window.
        let ms: Vec<Vec<u8>> = (1..=8u8).map(|i| seal(&mut a, &mut rng, &[i; 5])).collect();
        assert_eq!(open(&mut b, &ms[7]), Ok((0, 8, vec![8; 5])));
        for g in [1usize, 2] {
            assert_eq!(open(&mut b, &ms[g - 1]), Err(Error::Decrypt), "generation {g}");
        }
        // A restored copy continues exactly as the original.
        let mut restored: Box<Small> = Box::default();
        restored.decode_state_into(&encoded(&b)).unwrap();
        for g in [5usize, 3, 7, 4, 6] {
            assert_eq!(open(&mut b, &ms[g - 1]), Ok((0, g as u32, vec![g as u8; 5])));
            assert_eq!(open(&mut restored, &ms[g - 1]), Ok((0, g as u32, vec![g as u8; 5])));
            assert_eq!(open(&mut b, &ms[g - 1]), Err(Error::Decrypt));
        }
        assert_eq!(encoded(&b), encoded(&restored));

        // The other direction uses leaf 1's ratchet.
        let back = seal(&mut b, &mut rng, b"ack");
        assert_eq!(open(&mut a, &back), Ok((1, 0, b"ack".to_vec())));
    }

    #[test]
    fn forgeries_and_short_buffers_change_nothing() {
        let [mut a, mut b] = pair();
        let mut rng = TestRng::new(2);
        let m = seal(&mut a, &mut rng, b"task");
        for i in 0..m.len() {
            let mut bad = m.clone();
            bad[i] ^= 0x40;
            assert!(open(&mut b, &bad).is_err(), "byte {i}");
        }
        assert_eq!(open(&mut b, &m), Ok((0, 0, b"task".to_vec())));

        // Sealing into a short buffer: an error, and the generation is not used.
        let mut out = vec![0u8; 16];
        let mut scratch = vec![0u8; Small::seal_scratch_len(4, 2)];
        let r = a.seal_application(b"next", b"ad", 0, &mut rng, &mut out, &mut scratch);
        assert!(matches!(r, Err(Error::BufferTooSmall { .. })), "{r:?}");
        assert!(out.iter().all(|b| *b == 0));
        assert_eq!(a.ratchets.next_generation(0, RatchetKind::Application), Ok(1));
        let m1 = seal(&mut a, &mut rng, b"next");
        assert_eq!(open(&mut b, &m1), Ok((0, 1, b"next".to_vec())));

        // A handshake message or another epoch is not an application message.
        let mut other = m1.clone();
        // The epoch follows the 2-byte version, 2-byte wire format and the
        // group id <V> ("agents": 1 + 6 bytes).
        other[4 + 7 + 7] ^= 1;
        assert_eq!(open(&mut b, &other), Err(Error::Malformed));
        assert!(open(&mut b, &[0u8; 3]).is_err());
    }
}

//! Untrusted bytes into every MLS-lite message parser: `MLSMessage` and the
//! views its wire formats lead to (PublicMessage with its FramedContent,
//! Proposal or Commit and the Commit's proposals; PrivateMessage; Welcome
//! and its EncryptedGroupSecrets; GroupInfo; KeyPackage), and the bare
//! structures a message carries (KeyPackage, GroupInfo, Welcome, Commit,
//! Proposal, GroupSecrets, PreSharedKeyID, PublicMessage, PrivateMessage)
//! parsed from the whole input.
//!
//! Properties checked:
//! - nothing panics;
//! - on `Ok`, `as_bytes` is the input and `write_to` (field by field)
//!   reproduces it byte for byte, so every accepted encoding is canonical;
//!   a `Writer` one byte short fails; parsing `as_bytes` again gives an
//!   equal view; the same holds for every nested view (the body after the
//!   4-byte `MLSMessage` header, a commit's proposals, a Welcome's
//!   entries, which together re-encode the Welcome).
#![no_main]

use libfuzzer_sys::fuzz_target;
use securemesh_core::codec::{Reader, Writer};
use securemesh_mls_lite::Error;
use securemesh_mls_lite::framing::{Content, PrivateMessage, PublicMessage};
use securemesh_mls_lite::messages::{
    Commit, GroupInfo, GroupSecrets, KeyPackage, PreSharedKeyId, Proposal, ProposalOrRef, Welcome,
};
use securemesh_mls_lite::mls_message::{MlsMessage, MlsMessageBody};

/// `write` reproduces `expected` exactly, and fails with one byte less room.
fn rewrites(what: &str, expected: &[u8], write: impl Fn(&mut Writer<'_>) -> Result<(), Error>) {
    let mut buf = vec![0u8; expected.len()];
    let mut w = Writer::new(&mut buf);
    write(&mut w).unwrap_or_else(|e| panic!("{what}: write_to failed: {e:?}"));
    let n = w.finish().unwrap_or_else(|e| panic!("{what}: finish failed: {e:?}"));
    assert_eq!(&buf[..n], expected, "{what}: does not re-encode to its input");
    if !expected.is_empty() {
        let mut short = vec![0u8; expected.len() - 1];
        let mut w = Writer::new(&mut short);
        let r = write(&mut w).map_err(|_| ()).and_then(|()| w.finish().map_err(|_| ()));
        assert!(r.is_err(), "{what}: re-encoded into a buffer one byte short");
    }
}

fn check_commit(c: &Commit<'_>) {
    assert_eq!(Commit::from_bytes(c.as_bytes()).as_ref(), Ok(c), "Commit reparse");
    rewrites("Commit", c.as_bytes(), |w| c.write_to(w));
    let mut n = 0usize;
    for p in c.proposals() {
        let p = p.expect("a parsed Commit's proposals parse");
        n += p.as_bytes().len();
        rewrites("ProposalOrRef", p.as_bytes(), |w| p.write_to(w));
        let mut r = Reader::new(p.as_bytes());
        assert_eq!(ProposalOrRef::parse(&mut r).as_ref(), Ok(&p), "ProposalOrRef reparse");
        assert!(r.is_empty());
        if let ProposalOrRef::Proposal { proposal: prop, .. } = p {
            check_proposal(&prop);
        }
    }
    assert!(n < c.as_bytes().len());
}

fn check_proposal(p: &Proposal<'_>) {
    assert_eq!(Proposal::from_bytes(p.as_bytes()).as_ref(), Ok(p), "Proposal reparse");
    rewrites("Proposal", p.as_bytes(), |w| p.write_to(w));
}

fn check_public(m: &PublicMessage<'_>) {
    assert_eq!(PublicMessage::from_bytes(m.as_bytes()).as_ref(), Ok(m), "PublicMessage reparse");
    rewrites("PublicMessage", m.as_bytes(), |w| m.write_to(w));
    match m.content.content {
        Content::Commit(c) => check_commit(&c),
        Content::Proposal(p) => check_proposal(&p),
        Content::Application(_) => {}
    }
}

fn check_private(m: &PrivateMessage<'_>) {
    assert_eq!(PrivateMessage::from_bytes(m.as_bytes()).as_ref(), Ok(m), "PrivateMessage reparse");
    rewrites("PrivateMessage", m.as_bytes(), |w| m.write_to(w));
}

fn check_welcome(m: &Welcome<'_>) {
    assert_eq!(Welcome::from_bytes(m.as_bytes()).as_ref(), Ok(m), "Welcome reparse");
    rewrites("Welcome", m.as_bytes(), |w| m.write_to(w));
    for s in m.secrets() {
        let s = s.expect("a parsed Welcome's entries parse");
        assert_eq!(m.secrets_for(s.new_member).map(|f| f.is_some()), Ok(true));
    }
}

fn check_group_info(m: &GroupInfo<'_>) {
    assert_eq!(GroupInfo::from_bytes(m.as_bytes()).as_ref(), Ok(m), "GroupInfo reparse");
    rewrites("GroupInfo", m.as_bytes(), |w| m.write_to(w));
}

fn check_key_package(m: &KeyPackage<'_>) {
    assert_eq!(KeyPackage::from_bytes(m.as_bytes()).as_ref(), Ok(m), "KeyPackage reparse");
    rewrites("KeyPackage", m.as_bytes(), |w| m.write_to(w));
    assert!(m.tbs().len() < m.as_bytes().len());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = MlsMessage::from_bytes(data) {
        assert_eq!(m.as_bytes(), data);
        assert_eq!(MlsMessage::from_bytes(m.as_bytes()), Ok(m));
        rewrites("MLSMessage", data, |w| m.write_to(w));
        assert_eq!(u16::from_be_bytes([data[2], data[3]]), m.wire_format().to_u16());
        let body = &data[4..];
        let inner = match &m.body {
            MlsMessageBody::PublicMessage(v) => {
                check_public(v);
                v.as_bytes()
            }
            MlsMessageBody::PrivateMessage(v) => {
                check_private(v);
                v.as_bytes()
            }
            MlsMessageBody::Welcome(v) => {
                check_welcome(v);
                v.as_bytes()
            }
            MlsMessageBody::GroupInfo(v) => {
                check_group_info(v);
                v.as_bytes()
            }
            MlsMessageBody::KeyPackage(v) => {
                check_key_package(v);
                v.as_bytes()
            }
        };
        assert_eq!(inner, body, "the body view is not the bytes after the header");
    }

    // The bare structures, from the whole input.
    if let Ok(v) = KeyPackage::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        check_key_package(&v);
    }
    if let Ok(v) = GroupInfo::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        check_group_info(&v);
    }
    if let Ok(v) = Welcome::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        check_welcome(&v);
    }
    if let Ok(v) = Commit::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        check_commit(&v);
    }
    if let Ok(v) = Proposal::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        check_proposal(&v);
    }
    if let Ok(v) = GroupSecrets::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        assert_eq!(GroupSecrets::from_bytes(v.as_bytes()).as_ref(), Ok(&v));
        rewrites("GroupSecrets", data, |w| v.write_to(w));
        for p in v.psks() {
            let p = p.expect("a parsed GroupSecrets' PSK ids parse");
            rewrites("PreSharedKeyID", p.as_bytes(), |w| p.write_to(w));
        }
    }
    if let Ok(v) = PreSharedKeyId::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        assert_eq!(PreSharedKeyId::from_bytes(v.as_bytes()).as_ref(), Ok(&v));
        rewrites("PreSharedKeyID", data, |w| v.write_to(w));
    }
    if let Ok(v) = PublicMessage::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        check_public(&v);
    }
    if let Ok(v) = PrivateMessage::from_bytes(data) {
        assert_eq!(v.as_bytes(), data);
        check_private(&v);
    }
});

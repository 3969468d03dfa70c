//! The agent's control lines: `securemesh agent --config FILE --stdio`
//! reads one command per line on stdin and writes one reply per command,
//! and one line per delivered message, on stdout. It is how a program
//! that runs the agent as a process (a supervisor, a shell script, the
//! process tests) sends, makes groups and watches what arrives, without
//! linking the crate.
//!
//! Peers and groups are named in hex: a peer by its 32-byte peer id, a
//! group by its 8-byte id. Commands:
//!
//! | command | what it does | reply |
//! |---|---|---|
//! | `send PEER KIND TEXT…` | sends the rest of the line (UTF-8) | `ok sent channel=… reason=…` |
//! | `offline PEER` | takes a bundle of PEER from the delivery service (a one-time one while any is left) and sees PEER offline: it is reached through its mailbox | `ok offline one-time=ID` or `ok offline last-resort` |
//! | `key-package` | makes one of its KeyPackages (for a group's creator to learn) | `ok key-package HEX` |
//! | `peer-key-package HEX` | learns a peer's KeyPackage (for `group-add`) | `ok peer PEER` |
//! | `group-create` | a new group of one | `ok group GROUP` |
//! | `group-add GROUP PEER…` | commits the addition of PEERs (their KeyPackages learned) | `ok commit` (sent for ordering: merged when it comes back, see `groups`) |
//! | `group-remove GROUP PEER…` | commits their removal | `ok commit` |
//! | `group-commit GROUP` | commits a refresh of its own keys | `ok commit` |
//! | `group-send GROUP KIND TEXT…` | sends to the group | `ok sent` |
//! | `groups` | one `group id=… epoch=… members=… pending=… authenticator=…` line per group, then `ok groups N` | |
//!
//! A command that fails replies `err WHAT` (one line) and changes nothing
//! in the agent, with one exception: `offline` has taken a one-time
//! bundle from the delivery service even when the agent then refuses it
//! (a bundle of another peer, or a hybrid bundle for an agent that does
//! not run hybrid). An empty line or one starting with `#` is ignored; a
//! line longer than [`MAX_LINE`] bytes or not UTF-8 is answered `err`. A
//! delivered message is the line `delivered from=PEER kind=KIND
//! channel=CHANNEL payload=HEX`. The logs stay on stderr. A group commit
//! is merged only when the delivery service's order brings it back: until
//! `groups` shows `pending=false`, `group-send` answers `err` (a commit of
//! ours waits). The end of the input leaves the agent running (Ctrl-C
//! stops it and stores its state).
//!
//! ```
//! use securemesh_host::control::Command;
//! let c = Command::parse("group-send 00000000000000ff 1 hello, group").unwrap();
//! assert_eq!(c, Command::GroupSend { group: securemesh::GroupId(255), kind: 1, text: "hello, group".into() });
//! assert!(Command::parse("send 12 1 x").is_err());
//! ```

use crate::delivery::DeliveryService;
use crate::error::HostError;
use crate::keys::{from_hex, to_hex};
use crate::runtime::{AgentHandle, Clock, Delivered};
use securemesh::{GroupId, MessageKind, PeerId};
use std::fmt::Write as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// One control line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `send PEER KIND TEXT…`
    Send {
        /// The peer.
        to: PeerId,
        /// The message kind.
        kind: u8,
        /// The payload.
        text: String,
    },
    /// `offline PEER`
    Offline {
        /// The peer.
        peer: PeerId,
    },
    /// `key-package`
    KeyPackage,
    /// `peer-key-package HEX`
    PeerKeyPackage {
        /// The encoded KeyPackage.
        key_package: Vec<u8>,
    },
    /// `group-create`
    GroupCreate,
    /// `group-add GROUP PEER…`
    GroupAdd {
        /// The group.
        group: GroupId,
        /// Who joins.
        peers: Vec<PeerId>,
    },
    /// `group-remove GROUP PEER…`
    GroupRemove {
        /// The group.
        group: GroupId,
        /// Who leaves.
        peers: Vec<PeerId>,
    },
    /// `group-commit GROUP`
    GroupCommit {
        /// The group.
        group: GroupId,
    },
    /// `group-send GROUP KIND TEXT…`
    GroupSend {
        /// The group.
        group: GroupId,
        /// The message kind.
        kind: u8,
        /// The payload.
        text: String,
    },
    /// `groups`
    Groups,
}

fn peer(word: Option<&str>) -> Result<PeerId, String> {
    let w = word.ok_or("a peer id is missing")?;
    from_hex(w)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(PeerId)
        .ok_or_else(|| format!("{w}: not a peer id (64 hex digits)"))
}

fn group(word: Option<&str>) -> Result<GroupId, String> {
    let w = word.ok_or("a group id is missing")?;
    from_hex(w)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| GroupId(u64::from_be_bytes(b)))
        .ok_or_else(|| format!("{w}: not a group id (16 hex digits)"))
}

fn kind(word: Option<&str>) -> Result<u8, String> {
    let w = word.ok_or("a message kind is missing")?;
    w.parse().map_err(|_| format!("{w}: not a message kind (0..255)"))
}

fn peers<'a>(words: impl Iterator<Item = &'a str>) -> Result<Vec<PeerId>, String> {
    let v = words.map(|w| peer(Some(w))).collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err("no peer named".into());
    }
    Ok(v)
}

/// The rest of `line` after `n` words and the white space that follows
/// them (words as `split_whitespace` finds them).
fn rest(line: &str, n: usize) -> String {
    let mut s = line.trim_start();
    for _ in 0..n {
        s = s.split_once(char::is_whitespace).map_or("", |(_, r)| r).trim_start();
    }
    s.to_owned()
}

/// The longest control line: a KeyPackage or an envelope's worth of
/// payload in hex, and the words before it.
pub const MAX_LINE: usize =
    2 * max(securemesh::group::MAX_KEY_PACKAGE_LEN, securemesh::envelope::MAX_ENVELOPE_LEN) + 256;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Control lines read from an input, bounded: a line beyond [`MAX_LINE`]
/// or not UTF-8 is an `Err` (and skipped), not the end of the input.
pub struct LineReader {
    input: Box<dyn AsyncBufRead + Unpin + Send>,
    buf: Vec<u8>,
    ended: bool,
}

impl LineReader {
    /// Read lines from `input`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use securemesh_host::control::LineReader;
    /// let mut r = LineReader::new(Box::new(&b"groups\n\xff\nsend\n"[..]));
    /// assert_eq!(r.next().await, Some(Ok("groups".to_string())));
    /// assert!(r.next().await.unwrap().is_err());
    /// assert_eq!(r.next().await, Some(Ok("send".to_string())));
    /// assert_eq!(r.next().await, None);
    /// # });
    /// ```
    pub fn new(input: Box<dyn AsyncBufRead + Unpin + Send>) -> Self {
        LineReader { input, buf: Vec::new(), ended: false }
    }

    /// The next line without its end, an `Err` saying why a line is
    /// refused, or `None` once the input ended (then again and again).
    pub async fn next(&mut self) -> Option<Result<String, String>> {
        if self.ended {
            return None;
        }
        self.buf.clear();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX).saturating_add(1);
        match (&mut self.input).take(limit).read_until(b'\n', &mut self.buf).await {
            Ok(0) => {
                self.ended = true;
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "control input failed; no more commands");
                self.ended = true;
                return None;
            }
        }
        if self.buf.last() != Some(&b'\n') && self.buf.len() > MAX_LINE {
            // Skip the rest of the line.
            loop {
                self.buf.clear();
                match (&mut self.input).take(limit).read_until(b'\n', &mut self.buf).await {
                    Ok(0) | Err(_) => {
                        self.ended = true;
                        break;
                    }
                    Ok(_) if self.buf.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
            return Some(Err(format!("line longer than {MAX_LINE} bytes")));
        }
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Some(std::str::from_utf8(line).map(str::to_owned).map_err(|_| "line is not UTF-8".to_string()))
    }
}

/// `text` as one reply line: line breaks in it (an error's reason) become
/// spaces.
pub fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl Command {
    /// Parse one control line (the caller skips blank lines and comments).
    ///
    /// ```
    /// use securemesh_host::control::Command;
    /// assert_eq!(Command::parse("groups"), Ok(Command::Groups));
    /// assert!(Command::parse("fly 1").unwrap_err().contains("fly"));
    /// ```
    pub fn parse(line: &str) -> Result<Command, String> {
        let mut w = line.split_whitespace();
        let verb = w.next().ok_or("empty line")?;
        let cmd = match verb {
            "send" => Command::Send { to: peer(w.next())?, kind: kind(w.next())?, text: rest(line, 3) },
            "offline" => Command::Offline { peer: peer(w.next())? },
            "key-package" => Command::KeyPackage,
            "peer-key-package" => {
                let h = w.next().ok_or("the KeyPackage (hex) is missing")?;
                Command::PeerKeyPackage { key_package: from_hex(h).ok_or("the KeyPackage is not hex")? }
            }
            "group-create" => Command::GroupCreate,
            "group-add" => Command::GroupAdd { group: group(w.next())?, peers: peers(w.by_ref())? },
            "group-remove" => Command::GroupRemove { group: group(w.next())?, peers: peers(w.by_ref())? },
            "group-commit" => Command::GroupCommit { group: group(w.next())? },
            "group-send" => {
                Command::GroupSend { group: group(w.next())?, kind: kind(w.next())?, text: rest(line, 3) }
            }
            "groups" => Command::Groups,
            other => return Err(format!("{other}: no such command")),
        };
        let extra = matches!(
            cmd,
            Command::Offline { .. }
                | Command::KeyPackage
                | Command::PeerKeyPackage { .. }
                | Command::GroupCreate
                | Command::GroupCommit { .. }
                | Command::Groups
        );
        if extra && w.next().is_some() {
            return Err(format!("{verb}: too many words"));
        }
        Ok(cmd)
    }
}

/// A group id as control lines write it (16 hex digits).
pub fn group_hex(g: GroupId) -> String {
    to_hex(&g.to_bytes())
}

/// The line for a delivered message.
pub fn delivered_line(d: &Delivered) -> String {
    format!(
        "delivered from={} kind={} channel={:?} payload={}",
        to_hex(&d.from.0),
        d.kind.0,
        d.channel,
        to_hex(&d.payload)
    )
}

fn mesh<T>(r: Result<Result<T, securemesh::Error>, HostError>) -> Result<T, HostError> {
    r?.map_err(HostError::Mesh)
}

/// Run `cmd` on the agent; the reply lines (the last starts with `ok`).
pub async fn execute<D: DeliveryService>(
    cmd: Command,
    agent: &AgentHandle,
    delivery: &D,
) -> Result<String, HostError> {
    let commit = |group: GroupId, add: Vec<PeerId>, remove: Vec<PeerId>| {
        agent.with(move |a, rng, _| {
            let mut scratch = vec![0u8; securemesh::group::COMMIT_SCRATCH_LEN];
            a.commit_members(group, &add, &remove, rng, &mut scratch).map(|_| ())
        })
    };
    Ok(match cmd {
        Command::Send { to, kind, text } => {
            let r = agent.send(to, MessageKind(kind), text.into_bytes()).await?;
            format!("ok sent channel={:?} reason={:?}", r.channel, r.reason)
        }
        Command::Offline { peer } => match crate::demo::offline(agent, delivery, peer).await? {
            Some(id) => format!("ok offline one-time={id}"),
            None => "ok offline last-resort".into(),
        },
        Command::KeyPackage => {
            let wall = Clock::wall();
            let kp = mesh(
                agent
                    .with(move |a, rng, _| {
                        let mut buf = vec![0u8; securemesh::group::MAX_KEY_PACKAGE_LEN];
                        a.publish_key_package(wall, &mut buf, rng).map(|n| {
                            buf.truncate(n);
                            buf
                        })
                    })
                    .await,
            )?;
            format!("ok key-package {}", to_hex(&kp))
        }
        Command::PeerKeyPackage { key_package } => {
            let wall = Clock::wall();
            let p = mesh(agent.with(move |a, _, _| a.set_peer_key_package(&key_package, wall)).await)?;
            format!("ok peer {}", to_hex(&p.0))
        }
        Command::GroupCreate => {
            let g = mesh(agent.with(|a, rng, _| a.create_group(rng)).await)?;
            format!("ok group {}", group_hex(g))
        }
        Command::GroupAdd { group, peers } => {
            mesh(commit(group, peers, Vec::new()).await)?;
            "ok commit".into()
        }
        Command::GroupRemove { group, peers } => {
            mesh(commit(group, Vec::new(), peers).await)?;
            "ok commit".into()
        }
        Command::GroupCommit { group } => {
            mesh(commit(group, Vec::new(), Vec::new()).await)?;
            "ok commit".into()
        }
        Command::GroupSend { group, kind, text } => {
            mesh(
                agent
                    .with(move |a, rng, now| {
                        a.send(&group, MessageKind(kind), text.as_bytes(), now, rng).map(|_| ())
                    })
                    .await,
            )?;
            "ok sent".into()
        }
        Command::Groups => {
            let groups = agent
                .with(|a, _, _| {
                    a.groups().map(|g| (g, a.group_epoch_authenticator(g.id).ok())).collect::<Vec<_>>()
                })
                .await?;
            let mut out = String::new();
            for (g, auth) in &groups {
                let _ = writeln!(
                    out,
                    "group id={} epoch={} members={} pending={} authenticator={}",
                    group_hex(g.id),
                    g.epoch,
                    g.members,
                    g.commit_pending,
                    auth.map_or_else(|| "-".into(), |a| to_hex(&a)),
                );
            }
            let _ = write!(out, "ok groups {}", groups.len());
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_or_say_why_not() {
        let p = "ab".repeat(32);
        assert_eq!(
            Command::parse(&format!("send {p} 7   two  words ")),
            Ok(Command::Send { to: PeerId([0xab; 32]), kind: 7, text: "two  words ".into() })
        );
        assert_eq!(
            Command::parse(&format!("group-add 0000000000000001 {p} {p}")),
            Ok(Command::GroupAdd { group: GroupId(1), peers: vec![PeerId([0xab; 32]); 2] })
        );
        assert_eq!(
            Command::parse("group-commit 0000000000000002"),
            Ok(Command::GroupCommit { group: GroupId(2) })
        );
        // Tabs separate words as spaces do.
        assert_eq!(
            Command::parse(&format!("send\t{p}\t7\thello world")),
            Ok(Command::Send { to: PeerId([0xab; 32]), kind: 7, text: "hello world".into() })
        );
        assert_eq!(
            Command::parse("group-send 0000000000000003 9\t hi\tthere"),
            Ok(Command::GroupSend { group: GroupId(3), kind: 9, text: "hi\tthere".into() })
        );
        for (bad, why) in [
            ("", "empty"),
            ("send", "peer id is missing"),
            (&format!("send {p}"), "kind is missing"),
            (&format!("send {p} 300 x"), "not a message kind"),
            ("offline 00", "not a peer id"),
            ("group-add 0000000000000001", "no peer named"),
            ("group-send 01 1 x", "not a group id"),
            ("peer-key-package zz", "not hex"),
            ("groups now", "too many words"),
            ("launch", "no such command"),
            (&format!("send {p}\t"), "kind is missing"),
        ] {
            let e = Command::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}

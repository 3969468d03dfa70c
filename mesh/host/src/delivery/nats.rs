//! The delivery service on NATS JetStream ([`JetStream`]), for a fleet
//! spread over several hosts. Needs a `nats-server` 2.9 or later started
//! with JetStream (`nats-server -js`); nothing of 2.10 or later is used.
//!
//! What goes where (only ciphertext envelopes and public bundles reach
//! the server; a subject or a key names a peer only by its peer id, the
//! hash of its identity, in hex):
//!
//! - **Mailboxes**: one stream per agent, `SM_MB_<peer>` on subject
//!   `sm.mb.<peer>`, work-queue retention in the file store, at most
//!   `max_mailbox` messages (a deposit beyond is refused, not dropped).
//!   The owner reads it through a durable pull consumer `owner` with
//!   explicit acks: a message leaves the stream only when
//!   [`ack`](DeliveryService::ack) is called, which the runtime does after
//!   it stored the state the message left. A message fetched and not
//!   acknowledged is fetched again (from this client's memory in this
//!   process, from the server after [`ACK_WAIT`] in a restarted one). A
//!   deposit carries a message id (a hash of the envelope), so a retried
//!   deposit is not stored twice (the stream's dedup window,
//!   [`MAILBOX_DEDUP_WINDOW`], set on the stream rather than JetStream's
//!   two-minute default: a fan-out that catches up late copies again).
//!   A device that speaks only MQTT deposits through NATS's MQTT
//!   gateway: its topic `sm/mb/<peer>` is the mailbox's subject.
//! - **Group fan-out**: a group envelope is first ordered in its group's
//!   stream `SM_GF_<group>` (the envelope's session field is the group),
//!   then copied, in that stream's order, into each member's mailbox; a
//!   pointer in the KV bucket `SM_FANOUT` says how far the copies went,
//!   and whoever deposits next catches up from there. Every depositor
//!   copies in stream order, so every member's mailbox holds a group's
//!   messages in one order. A member whose mailbox is full is skipped for
//!   that message (logged, counted in [`JetStream::full_mailbox_skips`]):
//!   one full mailbox does not hold the pointer, nor the group, back.
//! - **Prekey bundles**: one KV entry per agent in the bucket
//!   `SM_BUNDLES` (the last-resort bundle, the one-time bundles not yet
//!   handed out, and the ids handed out). Taking a one-time bundle is a
//!   compare-and-set on the entry's revision: of two clients racing for
//!   the same bundle one writes first, the other's write is refused and
//!   it reads again, so it gets the next bundle or the last-resort one,
//!   never the same. A publish replaces the one-time bundles with the
//!   ones given (less the ids handed out) and keeps only the handed-out
//!   ids it was given again, so the entry stays the size of the pool.
//! - **MLS commit order**: one stream per group, `SM_GC_<group>`; a
//!   commit is published with the stream's expected last sequence, so of
//!   two commits on the same epoch exactly one is stored and the other is
//!   refused ([`DeliveryError::EpochTaken`]); the stream's sequence is the
//!   epoch order. The first commit of a group carries one message id
//!   whatever its epoch, so of two first commits (on different epochs)
//!   only one is stored. A retry of a stored commit (byte-equal) is
//!   answered as the winner.
//!
//! A server killed outright (SIGKILL, a crash) may come back with
//! messages that were acknowledged just before, still in a mailbox
//! stream below the consumer's acknowledged floor: they are not handed
//! out again (nothing is delivered twice) but take mailbox room. Stop
//! the server with SIGTERM.
//!
//! When the server does not answer (down, restarting, unreachable) a
//! call returns [`DeliveryError::Unreachable`] at once (the client
//! reconnects in the background); the runtime keeps what it deposits in
//! its outbox and retries, and fetches again at the next poll.

use super::{DeliveryError, DeliveryService, GroupId, Mail, MessageId};
use crate::keys::to_hex;
use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{ConnectOptions, HeaderMap};
use futures_util::StreamExt;
use securemesh::PeerId;
use securemesh_core::codec::{Reader, Writer};
use securemesh_core::crypto::{Hash, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long the server waits for an acknowledgement before it hands a
/// fetched mailbox message out again (to a restarted agent).
pub const ACK_WAIT: Duration = Duration::from_secs(5);

/// How long one request to the server may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A mailbox stream's dedup window: a copy of the same message id
/// (a retried deposit, a group fan-out caught up late by another
/// depositor) within it is not stored again.
pub const MAILBOX_DEDUP_WINDOW: Duration = Duration::from_secs(24 * 3600);

const BUNDLES: &str = "SM_BUNDLES";
const FANOUT: &str = "SM_FANOUT";
const CONSUMER: &str = "owner";
const EPOCH: &str = "Sm-Epoch";
/// The message id of a group's first commit, whatever its epoch.
const FIRST_COMMIT: &str = "c-first";
const MEMBERS: &str = "Sm-Members";
/// Attempts of a compare-and-set before the call gives up.
const CAS_ATTEMPTS: usize = 16;
/// The bundle entry's encoding version.
const BUNDLES_V1: u8 = 1;

/// Where and how to reach the NATS server.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// `nats://host:port`.
    pub url: String,
    /// A token the server requires (`authorization { token }`).
    pub token: Option<String>,
    /// A user name and password the server requires.
    pub user_password: Option<(String, String)>,
    /// The most messages a mailbox holds unacknowledged.
    pub max_mailbox: usize,
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("user", &self.user_password.as_ref().map(|(u, _)| u))
            .field("max_mailbox", &self.max_mailbox)
            .finish()
    }
}

/// A fetched mailbox message not yet acknowledged.
struct Held {
    envelope: Vec<u8>,
    acker: jetstream::message::Acker,
}

/// The delivery service on a NATS JetStream server (see the module docs).
///
/// ```no_run
/// use securemesh_host::delivery::DeliveryService;
/// use securemesh_host::delivery::nats::{JetStream, NatsOptions};
/// # async fn run() -> Result<(), securemesh_host::delivery::DeliveryError> {
/// let opts = NatsOptions { url: "nats://127.0.0.1:4222".into(), max_mailbox: 4096, ..NatsOptions::default() };
/// let js = JetStream::connect(opts).await?;
/// let bob = securemesh::PeerId([7; 32]);
/// js.deposit(bob, b"an envelope".to_vec()).await?;
/// for mail in js.fetch(bob, 64).await? {
///     // ... hand it to bob's agent, store its state, then:
///     js.ack(bob, mail.id).await?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct JetStream {
    url: String,
    client: async_nats::Client,
    js: jetstream::Context,
    bundles: kv::Store,
    fanout: kv::Store,
    max_mailbox: usize,
    /// Streams known to exist, by name.
    streams: Mutex<HashMap<String, stream::Stream>>,
    consumers: Mutex<HashMap<PeerId, consumer::PullConsumer>>,
    held: Mutex<HashMap<PeerId, BTreeMap<u64, Held>>>,
    full_skips: AtomicU64,
}

impl fmt::Debug for JetStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStream")
            .field("url", &self.url)
            .field("max_mailbox", &self.max_mailbox)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, DeliveryError> {
    m.lock().map_err(|_| DeliveryError::Unavailable)
}

fn hash_hex(parts: &[&[u8]]) -> String {
    to_hex(&Sha256::digest(parts))
}

/// The group key of a group envelope: its session field (the group id).
fn group_key(envelope: &[u8]) -> String {
    match securemesh::envelope::Envelope::parse(envelope) {
        Ok(e) => format!("{:016x}", e.session.0),
        // Not an envelope: its members will refuse it; order it apart.
        Err(_) => "unparsed".into(),
    }
}

/// A commit stream's name part for `group`: its bytes in hex, or their
/// hash if they are long.
fn group_name(group: &GroupId) -> String {
    if group.0.len() <= 32 { to_hex(&group.0) } else { hash_hex(&[&group.0]) }
}

/// The bundle entry of one agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct BundleEntry {
    last_resort: Vec<u8>,
    one_time: Vec<(u32, Vec<u8>)>,
    handed_out: Vec<u32>,
}

impl BundleEntry {
    fn encode(&self) -> Result<Vec<u8>, DeliveryError> {
        let bad = |_| DeliveryError::Unavailable;
        let mut len = 1 + 2 + self.last_resort.len() + 2 + 4 + 4 * self.handed_out.len();
        for (_, b) in &self.one_time {
            len += 4 + 2 + b.len();
        }
        let mut buf = vec![0u8; len];
        let mut w = Writer::new(&mut buf);
        w.write_u8(BUNDLES_V1).map_err(bad)?;
        w.write_vec16(&self.last_resort).map_err(bad)?;
        w.write_u16(u16::try_from(self.one_time.len()).map_err(|_| DeliveryError::Unavailable)?)
            .map_err(bad)?;
        for (id, b) in &self.one_time {
            w.write_u32(*id).map_err(bad)?;
            w.write_vec16(b).map_err(bad)?;
        }
        w.write_u32(u32::try_from(self.handed_out.len()).map_err(|_| DeliveryError::Unavailable)?)
            .map_err(bad)?;
        for id in &self.handed_out {
            w.write_u32(*id).map_err(bad)?;
        }
        let n = w.finish().map_err(bad)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn decode(bytes: &[u8]) -> Result<Self, securemesh_core::Error> {
        let mut r = Reader::new(bytes);
        if r.read_u8()? != BUNDLES_V1 {
            return Err(securemesh_core::Error::InvalidValue);
        }
        let last_resort = r.read_vec16()?.to_vec();
        let n = r.read_u16()?;
        let mut one_time = Vec::new();
        for _ in 0..n {
            let id = r.read_u32()?;
            one_time.push((id, r.read_vec16()?.to_vec()));
        }
        let n = r.read_u32()?;
        // Each id takes 4 bytes: a count the rest cannot hold is refused
        // before anything is allocated for it.
        if usize::try_from(n).map_or(true, |n| n.saturating_mul(4) != r.remaining()) {
            return Err(securemesh_core::Error::InvalidValue);
        }
        let mut handed_out = Vec::new();
        for _ in 0..n {
            handed_out.push(r.read_u32()?);
        }
        r.finish()?;
        Ok(BundleEntry { last_resort, one_time, handed_out })
    }
}

impl JetStream {
    /// Connect to the server of `opts` and open (or create) the buckets.
    /// Fails with [`DeliveryError::Unreachable`] if the server does not
    /// answer or has no JetStream.
    pub async fn connect(opts: NatsOptions) -> Result<Self, DeliveryError> {
        let url = opts.url.clone();
        let down = |reason: String| DeliveryError::Unreachable { server: url.clone(), reason };
        let mut c = ConnectOptions::new()
            .name("securemesh")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Reconnect for ever, in the background; calls made meanwhile
            // fail at once.
            .max_reconnects(None);
        if let Some(t) = opts.token {
            c = c.token(t);
        }
        if let Some((u, p)) = opts.user_password {
            c = c.user_and_password(u, p);
        }
        let client = c.connect(opts.url.as_str()).await.map_err(|e| down(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(REQUEST_TIMEOUT);
        // The bucket's stream is made here, as the KV convention lays it
        // out: the client's `create_key_value` asks for account fields a
        // 2.9 server does not send.
        let bucket = |name: &'static str| {
            let js = js.clone();
            async move {
                js.get_or_create_stream(stream::Config {
                    name: format!("KV_{name}"),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: 1,
                    storage: stream::StorageType::File,
                    discard: stream::DiscardPolicy::New,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
                js.get_key_value(name).await.map_err(|e| e.to_string())
            }
        };
        let bundles = bucket(BUNDLES).await.map_err(down)?;
        let fanout = bucket(FANOUT).await.map_err(down)?;
        Ok(JetStream {
            url: opts.url,
            client,
            js,
            bundles,
            fanout,
            max_mailbox: opts.max_mailbox,
            streams: Mutex::default(),
            consumers: Mutex::default(),
            held: Mutex::default(),
            full_skips: AtomicU64::new(0),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Group-message copies this client did not put into a member's
    /// mailbox because it was full (one per member and message).
    pub fn full_mailbox_skips(&self) -> u64 {
        self.full_skips.load(Ordering::Relaxed)
    }

    fn down(&self, reason: impl fmt::Display) -> DeliveryError {
        DeliveryError::Unreachable { server: self.url.clone(), reason: reason.to_string() }
    }

    /// Fail at once while the client is not connected (it reconnects in
    /// the background) instead of waiting for a timeout.
    fn connected(&self) -> Result<(), DeliveryError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(self.down(format_args!("not connected ({other}); reconnecting"))),
        }
    }

    /// The stream of `config`, created if it does not exist yet.
    async fn stream(&self, config: stream::Config) -> Result<stream::Stream, DeliveryError> {
        let name = config.name.clone();
        if let Some(s) = lock(&self.streams)?.get(&name) {
            return Ok(s.clone());
        }
        let s = self.js.get_or_create_stream(config).await.map_err(|e| self.down(e))?;
        lock(&self.streams)?.insert(name, s.clone());
        Ok(s)
    }

    fn mailbox_config(&self, owner: &PeerId) -> stream::Config {
        let hex = to_hex(&owner.0);
        stream::Config {
            name: format!("SM_MB_{hex}"),
            subjects: vec![format!("sm.mb.{hex}")],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_messages: i64::try_from(self.max_mailbox).unwrap_or(i64::MAX),
            duplicate_window: MAILBOX_DEDUP_WINDOW,
            ..Default::default()
        }
    }

    async fn consumer(&self, owner: PeerId) -> Result<consumer::PullConsumer, DeliveryError> {
        if let Some(c) = lock(&self.consumers)?.get(&owner) {
            return Ok(c.clone());
        }
        let s = self.stream(self.mailbox_config(&owner)).await?;
        let c = s
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.down(e))?;
        lock(&self.consumers)?.insert(owner, c.clone());
        Ok(c)
    }

    /// Publish `payload` to `subject` with message id `id` (and
    /// `headers`); returns the stream sequence (of the first copy, for a
    /// duplicate id). With `expected_last`, the stream's last sequence
    /// must be that one, and a duplicate id is refused too.
    async fn publish(
        &self,
        subject: String,
        id: &str,
        headers: HeaderMap,
        payload: Vec<u8>,
        expected_last: Option<u64>,
    ) -> Result<u64, PublishRefused> {
        let mut m = jetstream::message::PublishMessage::build().headers(headers).payload(payload.into());
        if !id.is_empty() {
            m = m.message_id(id);
        }
        if let Some(seq) = expected_last {
            m = m.expected_last_sequence(seq);
        }
        let ack = self.js.send_publish(subject, m).await.map_err(|e| PublishRefused::Down(e.to_string()))?;
        match ack.await {
            Ok(a) if a.duplicate && expected_last.is_some() => Err(PublishRefused::WrongLast),
            Ok(a) => Ok(a.sequence),
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                Err(PublishRefused::WrongLast)
            }
            Err(e) => {
                let text = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
                if text.contains("maximum messages") {
                    Err(PublishRefused::Full)
                } else {
                    Err(PublishRefused::Down(format!("{e}: {text}")))
                }
            }
        }
    }

    fn refused(&self, r: PublishRefused) -> DeliveryError {
        match r {
            PublishRefused::Full => DeliveryError::MailboxFull { max: self.max_mailbox },
            PublishRefused::WrongLast => self.down("refused: wrong last sequence"),
            PublishRefused::Down(reason) => self.down(reason),
        }
    }

    /// Put `envelope` into `to`'s mailbox under message id `id`.
    /// A publish the server did not take (no stream answered: deleted
    /// meanwhile, or the store was lost) forgets the mailbox's cached
    /// stream and consumer and tries once more, which makes them again.
    async fn deposit_as(&self, to: PeerId, id: &str, envelope: Vec<u8>) -> Result<u64, DeliveryError> {
        let subject = format!("sm.mb.{}", to_hex(&to.0));
        self.stream(self.mailbox_config(&to)).await?;
        match self.publish(subject.clone(), id, HeaderMap::new(), envelope.clone(), None).await {
            Err(PublishRefused::Down(_)) if self.connected().is_ok() => {
                self.forget_mailbox(&to)?;
                self.stream(self.mailbox_config(&to)).await?;
                self.publish(subject, id, HeaderMap::new(), envelope, None).await.map_err(|r| self.refused(r))
            }
            r => r.map_err(|r| self.refused(r)),
        }
    }

    /// Forget the cached stream `name` (the next use looks it up, or
    /// makes it, again).
    fn forget_stream(&self, name: &str) -> Result<(), DeliveryError> {
        lock(&self.streams)?.remove(name);
        Ok(())
    }

    /// Forget the cached stream and consumer of `owner`'s mailbox (the
    /// next use looks them up, or makes them, again).
    fn forget_mailbox(&self, owner: &PeerId) -> Result<(), DeliveryError> {
        self.forget_stream(&self.mailbox_config(owner).name)?;
        lock(&self.consumers)?.remove(owner);
        Ok(())
    }

    /// Copy the group stream `gk`'s messages up to `upto` into the
    /// members' mailboxes, from where the fan-out pointer says.
    async fn fan_out(&self, gk: &str, s: &stream::Stream, upto: u64) -> Result<(), DeliveryError> {
        for _ in 0..CAS_ATTEMPTS {
            let entry = self.fanout.entry(gk).await.map_err(|e| self.down(e))?;
            let (done, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    let v = std::str::from_utf8(&e.value).ok().and_then(|t| t.parse::<u64>().ok());
                    (v.unwrap_or(0), e.revision)
                }
                Some(e) => (0, e.revision),
                None => (0, 0),
            };
            if done >= upto {
                return Ok(());
            }
            for seq in done.saturating_add(1)..=upto {
                let m = match s.get_raw_message(seq).await {
                    Ok(m) => m,
                    // Aged out of the group stream: nothing to copy.
                    Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => continue,
                    Err(e) => return Err(self.down(e)),
                };
                let members = m.headers.get(MEMBERS).map(|v| v.as_str().to_owned()).unwrap_or_default();
                for hex in members.split(',').filter(|h| !h.is_empty()) {
                    let Some(to) = crate::keys::from_hex(hex)
                        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                        .map(PeerId)
                    else {
                        continue;
                    };
                    let id = format!("f-{gk}-{seq}-{hex}");
                    match self.deposit_as(to, &id, m.payload.to_vec()).await {
                        Ok(_) => {}
                        // The member misses this message (it re-syncs the
                        // group's commits through `commits_since`); the
                        // others, and later messages, go on.
                        Err(DeliveryError::MailboxFull { max }) => {
                            self.full_skips.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(group = gk, seq, member = %hex.get(..8).unwrap_or(hex), max, "member's mailbox full; group message skipped for it");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            let value = upto.to_string().into_bytes().into();
            let written = if revision == 0 {
                self.fanout.create(gk, value).await.map(|_| ()).map_err(|e| e.to_string())
            } else {
                self.fanout.update(gk, value, revision).await.map(|_| ()).map_err(|e| e.to_string())
            };
            if written.is_ok() {
                return Ok(());
            }
            // Another depositor moved the pointer: read it again.
        }
        Err(self.down("fan-out pointer contended"))
    }

    async fn deposit_group_async(
        &self,
        members: Vec<PeerId>,
        envelope: Vec<u8>,
    ) -> Result<(), DeliveryError> {
        self.connected()?;
        let gk = group_key(&envelope);
        let s = self
            .stream(stream::Config {
                name: format!("SM_GF_{gk}"),
                subjects: vec![format!("sm.gf.{gk}")],
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(7 * 24 * 3600),
                ..Default::default()
            })
            .await?;
        let mut headers = HeaderMap::new();
        let list: Vec<String> = members.iter().map(|m| to_hex(&m.0)).collect();
        headers.insert(MEMBERS, list.join(",").as_str());
        let id = format!("g-{}", hash_hex(&[&envelope]));
        // A retried deposit is a duplicate: the server answers with the
        // first one's sequence, and the fan-out completes it.
        let seq = match self.publish(format!("sm.gf.{gk}"), &id, headers, envelope, None).await {
            Ok(seq) => seq,
            Err(r) => {
                // A group stream deleted meanwhile is made again next time.
                self.forget_stream(&format!("SM_GF_{gk}"))?;
                return Err(self.refused(r));
            }
        };
        self.fan_out(&gk, &s, seq).await
    }

    async fn fetch_async(&self, owner: PeerId, max: usize) -> Result<Vec<Mail>, DeliveryError> {
        self.connected()?;
        let c = self.consumer(owner).await?;
        let room = max.saturating_sub(lock(&self.held)?.get(&owner).map_or(0, BTreeMap::len));
        if room > 0 {
            let mut batch = match c.fetch().max_messages(room).messages().await {
                Ok(b) => b,
                Err(e) => {
                    // A consumer or stream deleted meanwhile is made again
                    // at the next call.
                    self.forget_mailbox(&owner)?;
                    return Err(self.down(e));
                }
            };
            let pulled = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let mut got = Vec::new();
                while let Some(m) = batch.next().await {
                    match m {
                        Ok(m) => got.push(m),
                        Err(e) => return Err(self.down(e)),
                    }
                }
                Ok(got)
            })
            .await
            .map_err(|_| self.down("fetch timed out"))??;
            let mut held = lock(&self.held)?;
            let mine = held.entry(owner).or_default();
            for m in pulled {
                let seq = m.info().map_err(|e| self.down(e))?.stream_sequence;
                let (msg, acker) = m.split();
                mine.insert(seq, Held { envelope: msg.payload.to_vec(), acker });
            }
        }
        let held = lock(&self.held)?;
        Ok(held.get(&owner).map_or_else(Vec::new, |mine| {
            mine.iter()
                .take(max)
                .map(|(seq, h)| Mail { id: MessageId(*seq), envelope: h.envelope.clone() })
                .collect()
        }))
    }

    async fn ack_async(&self, owner: PeerId, id: MessageId) -> Result<(), DeliveryError> {
        let h = lock(&self.held)?.get_mut(&owner).and_then(|m| m.remove(&id.0));
        let Some(h) = h else { return Ok(()) };
        if let Err(e) = self.connected() {
            lock(&self.held)?.entry(owner).or_default().insert(id.0, h);
            return Err(e);
        }
        match h.acker.double_ack().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = self.down(e);
                lock(&self.held)?.entry(owner).or_default().insert(id.0, h);
                Err(err)
            }
        }
    }

    /// Read-modify-write of `owner`'s bundle entry by compare-and-set on
    /// its revision; `f` returns the new entry (or `None`: no write) and
    /// a result.
    async fn update_bundles<T>(
        &self,
        owner: PeerId,
        mut f: impl FnMut(Option<BundleEntry>) -> (Option<BundleEntry>, T),
    ) -> Result<T, DeliveryError> {
        self.connected()?;
        let key = to_hex(&owner.0);
        for _ in 0..CAS_ATTEMPTS {
            let entry = self.bundles.entry(key.as_str()).await.map_err(|e| self.down(e))?;
            let (current, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (Some(BundleEntry::decode(&e.value).map_err(|_| DeliveryError::Unavailable)?), e.revision)
                }
                Some(e) => (None, e.revision),
                None => (None, 0),
            };
            let (next, out) = f(current);
            let Some(next) = next else { return Ok(out) };
            let value = next.encode()?.into();
            let written = if revision == 0 {
                self.bundles.create(key.as_str(), value).await.map(|_| ()).map_err(|e| e.to_string())
            } else {
                self.bundles
                    .update(key.as_str(), value, revision)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            match written {
                Ok(()) => return Ok(out),
                // Someone else wrote first: read again. (A lost
                // connection shows here too; `connected` ends the loop.)
                Err(_) => self.connected()?,
            }
        }
        Err(self.down("bundle entry contended"))
    }

    async fn order_async(&self, group: GroupId, epoch: u64, commit: Vec<u8>) -> Result<u64, DeliveryError> {
        self.connected()?;
        let (s, subject) = self.commit_stream(&group).await?;
        for _ in 0..CAS_ATTEMPTS {
            let state = self.info_of(&s).await?.state;
            let current = if state.messages == 0 {
                // The first commit fixes the group's epoch.
                epoch
            } else {
                self.epoch_of(&s, state.last_sequence)
                    .await?
                    .checked_add(1)
                    .ok_or(self.down("epoch overflow"))?
            };
            let next = epoch.checked_add(1).ok_or(DeliveryError::EpochTaken { current })?;
            if epoch != current {
                // A retry of the winner (its answer was lost) wins again.
                if self.stored_commit(&s, &state, epoch).await?.is_some_and(|c| c == commit) {
                    return Ok(next);
                }
                return Err(DeliveryError::EpochTaken { current });
            }
            let mut headers = HeaderMap::new();
            headers.insert(EPOCH, epoch.to_string().as_str());
            // The expected last sequence decides the race; the message id
            // decides it for the first commit, whose expected sequence 0 a
            // 2.9 server does not check: one id for every first commit, so
            // racers on different epochs are not both stored.
            let id = if state.messages == 0 { FIRST_COMMIT.to_owned() } else { format!("c-{epoch}") };
            match self.publish(subject.clone(), &id, headers, commit.clone(), Some(state.last_sequence)).await
            {
                Ok(_) => return Ok(next),
                // Another commit came first: read the epoch again.
                Err(PublishRefused::WrongLast) => {}
                Err(r) => return Err(self.refused(r)),
            }
        }
        Err(self.down("commit order contended"))
    }

    /// The commit stream of `group` and its subject.
    async fn commit_stream(&self, group: &GroupId) -> Result<(stream::Stream, String), DeliveryError> {
        let name = group_name(group);
        let subject = format!("sm.gc.{name}");
        let s = self
            .stream(stream::Config {
                name: format!("SM_GC_{name}"),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok((s, subject))
    }

    /// The stored commit of `epoch` in the commit stream `s` (whose state
    /// is `state`), if there is one.
    async fn stored_commit(
        &self,
        s: &stream::Stream,
        state: &stream::State,
        epoch: u64,
    ) -> Result<Option<Vec<u8>>, DeliveryError> {
        if state.messages == 0 {
            return Ok(None);
        }
        let first = self.epoch_of(s, state.first_sequence).await?;
        let Some(seq) = epoch.checked_sub(first).and_then(|k| state.first_sequence.checked_add(k)) else {
            return Ok(None);
        };
        if seq > state.last_sequence {
            return Ok(None);
        }
        let m = s.get_raw_message(seq).await.map_err(|e| self.down(e))?;
        let at = m.headers.get(EPOCH).and_then(|v| v.as_str().parse::<u64>().ok());
        Ok((at == Some(epoch)).then(|| m.payload.to_vec()))
    }

    /// The info of commit stream `s`; a failure forgets the cached
    /// stream (deleted meanwhile, it is made again next time).
    async fn info_of(&self, s: &stream::Stream) -> Result<stream::Info, DeliveryError> {
        let mut s = s.clone();
        match s.info().await {
            Ok(info) => Ok(info.clone()),
            Err(e) => {
                let name = s.cached_info().config.name.clone();
                self.forget_stream(&name)?;
                Err(self.down(e))
            }
        }
    }

    async fn epoch_of(&self, s: &stream::Stream, seq: u64) -> Result<u64, DeliveryError> {
        let m = s.get_raw_message(seq).await.map_err(|e| self.down(e))?;
        m.headers
            .get(EPOCH)
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .ok_or_else(|| self.down(format_args!("commit {seq} has no epoch")))
    }

    async fn since_async(&self, group: GroupId, epoch: u64) -> Result<Vec<(u64, Vec<u8>)>, DeliveryError> {
        self.connected()?;
        let (s, _) = self.commit_stream(&group).await?;
        let state = self.info_of(&s).await?.state;
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        // Commit k of the stream ends epoch first + k: start at `epoch`.
        let first = self.epoch_of(&s, state.first_sequence).await?;
        let start = state.first_sequence.saturating_add(epoch.saturating_sub(first));
        let mut out = Vec::new();
        for seq in start..=state.last_sequence {
            let m = s.get_raw_message(seq).await.map_err(|e| self.down(e))?;
            let e = m.headers.get(EPOCH).and_then(|v| v.as_str().parse::<u64>().ok());
            if let Some(e) = e.filter(|e| *e >= epoch) {
                out.push((e.saturating_add(1), m.payload.to_vec()));
            }
        }
        Ok(out)
    }

    async fn deposit_async(&self, to: PeerId, envelope: Vec<u8>) -> Result<MessageId, DeliveryError> {
        self.connected()?;
        let id = format!("d-{}", hash_hex(&[&envelope]));
        self.deposit_as(to, &id, envelope).await.map(MessageId)
    }

    async fn one_time_async(&self, owner: PeerId) -> Result<usize, DeliveryError> {
        self.connected()?;
        let entry = self.bundles.get(to_hex(&owner.0)).await.map_err(|e| self.down(e))?;
        match entry {
            Some(v) if !v.is_empty() => {
                BundleEntry::decode(&v).map(|e| e.one_time.len()).map_err(|_| DeliveryError::Unavailable)
            }
            _ => Ok(0),
        }
    }

    async fn pending_async(&self, owner: PeerId) -> Result<usize, DeliveryError> {
        self.connected()?;
        let s = self.stream(self.mailbox_config(&owner)).await?;
        let n = match s.get_info().await {
            Ok(info) => info.state.messages,
            Err(e) => {
                self.forget_mailbox(&owner)?;
                return Err(self.down(e));
            }
        };
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// Why a publish was refused.
enum PublishRefused {
    /// The stream holds its maximum.
    Full,
    /// The expected last sequence did not match.
    WrongLast,
    /// The server did not answer or failed.
    Down(String),
}

impl DeliveryService for JetStream {
    fn deposit(
        &self,
        to: PeerId,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<MessageId, DeliveryError>> + Send {
        self.deposit_async(to, envelope)
    }

    fn fetch(
        &self,
        owner: PeerId,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Mail>, DeliveryError>> + Send {
        self.fetch_async(owner, max)
    }

    fn deposit_group(
        &self,
        members: Vec<PeerId>,
        envelope: Vec<u8>,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        self.deposit_group_async(members, envelope)
    }

    fn ack(&self, owner: PeerId, id: MessageId) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        self.ack_async(owner, id)
    }

    fn publish_bundles(
        &self,
        owner: PeerId,
        last_resort: Vec<u8>,
        one_time: Vec<(u32, Vec<u8>)>,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send {
        self.update_bundles(owner, move |current| {
            let mut e = current.unwrap_or_default();
            e.last_resort = last_resort.clone();
            // Handed-out ids the agent no longer gives are spent for good
            // (its ids only increase): forget them.
            e.handed_out.retain(|id| one_time.iter().any(|(q, _)| q == id));
            e.one_time.clear();
            for (id, b) in &one_time {
                if !e.handed_out.contains(id) && !e.one_time.iter().any(|(q, _)| q == id) {
                    e.one_time.push((*id, b.clone()));
                }
            }
            (Some(e), ())
        })
    }

    fn take_bundle(
        &self,
        owner: PeerId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, DeliveryError>> + Send {
        self.update_bundles(owner, |current| match current {
            None => (None, None),
            Some(mut e) if !e.one_time.is_empty() => {
                let (id, b) = e.one_time.remove(0);
                e.handed_out.push(id);
                (Some(e), Some(b))
            }
            Some(e) => {
                let last = e.last_resort.clone();
                (None, Some(last))
            }
        })
    }

    fn order_commit(
        &self,
        group: GroupId,
        epoch: u64,
        commit: Vec<u8>,
    ) -> impl Future<Output = Result<u64, DeliveryError>> + Send {
        self.order_async(group, epoch, commit)
    }

    fn commits_since(
        &self,
        group: GroupId,
        epoch: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, DeliveryError>> + Send {
        self.since_async(group, epoch)
    }

    fn pending_count(&self, owner: PeerId) -> impl Future<Output = Result<usize, DeliveryError>> + Send {
        self.pending_async(owner)
    }

    fn one_time_count(&self, owner: PeerId) -> impl Future<Output = Result<usize, DeliveryError>> + Send {
        self.one_time_async(owner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn bundle_entry_round_trips_and_refuses_garbage() {
        let e = BundleEntry {
            last_resort: b"last".to_vec(),
            one_time: vec![(7, b"seven".to_vec()), (9, vec![])],
            handed_out: vec![1, 2, 3],
        };
        let bytes = e.encode().unwrap();
        assert_eq!(BundleEntry::decode(&bytes).unwrap(), e);
        for cut in 0..bytes.len() {
            assert!(BundleEntry::decode(&bytes[..cut]).is_err(), "prefix of {cut} bytes accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(BundleEntry::decode(&longer).is_err());
        let mut other = bytes;
        other[0] = 2;
        assert!(BundleEntry::decode(&other).is_err());
    }

    #[test]
    fn subjects_name_peers_and_groups_in_hex_only() {
        let g = GroupId(vec![0xab; 8]);
        assert_eq!(group_name(&g), "abababababababab");
        let long = GroupId(vec![1; 40]);
        assert_eq!(group_name(&long).len(), 64);
        assert_eq!(group_key(b"not an envelope"), "unparsed");
    }
}

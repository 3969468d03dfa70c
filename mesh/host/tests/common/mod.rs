//! The loopback mesh of the integration tests: agents on loopback
//! sockets sharing an embedded delivery service and an address book,
//! whatever they deliver on one channel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use securemesh_core::envelope::StorageKey;
use securemesh_host::delivery::InProcess;
use securemesh_host::runtime::{AddressBook, AgentHandle, AgentOptions, Delivered, spawn};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The longest any wait of these tests lasts.
pub const WAIT: Duration = Duration::from_secs(10);

/// Agents sharing a delivery service (64 messages a mailbox) and an
/// address book.
pub struct Mesh {
    pub dir: PathBuf,
    pub delivery: Arc<InProcess>,
    pub book: AddressBook,
    pub tx: mpsc::UnboundedSender<Delivered>,
    pub rx: mpsc::UnboundedReceiver<Delivered>,
}

impl Mesh {
    /// A mesh whose state directories are under a fresh temporary
    /// directory named after the test `suite` and `test`.
    pub fn new(suite: &str, test: &str) -> Mesh {
        let dir = std::env::temp_dir().join(format!("securemesh-host-{suite}-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tx, rx) = mpsc::unbounded_channel();
        Mesh { dir, delivery: Arc::new(InProcess::new(64)), book: AddressBook::default(), tx, rx }
    }

    /// Agent `name` (storage key `[key; 32]`, handshakes timing out after
    /// 300 ms) with `opts` applied to its loopback options; restored when
    /// its state directory holds an agent.
    pub async fn spawn(
        &self,
        name: &str,
        key: u8,
        opts: impl FnOnce(AgentOptions) -> AgentOptions,
    ) -> AgentHandle {
        let config = securemesh::Config { handshake_timeout_ms: 300, ..securemesh::Config::default() };
        let opts = opts(AgentOptions::loopback(name, &self.dir, config));
        let (delivery, book) = (Arc::clone(&self.delivery), Arc::clone(&self.book));
        spawn(opts, StorageKey::new([key; 32]), delivery, book, self.tx.clone()).await.unwrap()
    }

    /// The next delivery (within [`WAIT`]).
    pub async fn next(&mut self) -> Delivered {
        tokio::time::timeout(WAIT, self.rx.recv()).await.expect("nothing delivered in time").unwrap()
    }
}

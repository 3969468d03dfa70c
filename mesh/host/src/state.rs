//! The agent's state between the mesh and a [`StateStore`]: store what
//! `poll_persist` hands out, rebuild an agent from what was stored.

use crate::HostAgent;
use crate::error::HostError;
use crate::store::{AGENT, StateStore, StoredRecord, record_name};
use rand_core::CryptoRng;
use securemesh_core::envelope::StorageKey;

/// The stack of the threads [`on_agent_stack`] starts.
pub const AGENT_STACK: usize = 32 << 20;

/// Run `f` on a thread of its own with an [`AGENT_STACK`] stack and
/// return what it returns. Build or restore a [`HostAgent`] so: the mesh
/// returns it by value, and a debug build moves it (about 270 KB with the
/// feature `pq`) through several frames before it reaches its box, more
/// than a 2 MiB thread (a test's, a Tokio worker's) holds. A panic of
/// `f` goes on in the caller.
///
/// ```
/// let n = securemesh_host::state::on_agent_stack(|| 6 * 7)?;
/// assert_eq!(n, 42);
/// # Ok::<(), securemesh_host::HostError>(())
/// ```
pub fn on_agent_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, HostError> {
    std::thread::scope(|s| {
        let t = std::thread::Builder::new().stack_size(AGENT_STACK).spawn_scoped(s, f)?;
        Ok(t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// Store every record the agent has pending, in the order it hands them
/// out; returns how many. Call it after every agent call and before
/// sending anything the call produced.
pub fn flush<S: StateStore + ?Sized, R: CryptoRng + ?Sized>(
    agent: &mut HostAgent,
    store: &mut S,
    rng: &mut R,
) -> Result<usize, HostError> {
    let mut buf = vec![0u8; HostAgent::MAX_RECORD_LEN];
    let mut n = 0usize;
    while let Some(r) = agent.poll_persist(&mut buf, rng)? {
        let blob = buf.get(..r.len).ok_or(securemesh::Error::BufferTooSmall { needed: r.len })?;
        store.save(r.id, r.generation, blob)?;
        n = n.saturating_add(1);
    }
    Ok(n)
}

/// Rebuild the agent from `store` under `key`, or `None` when the store
/// is empty (a new agent). A record refused by the agent (rolled back,
/// changed, another key) or stored under another record's name is an
/// error naming it; the store is not touched. The agent is rebuilt
/// [`on_agent_stack`].
pub fn restore<S: StateStore + ?Sized>(
    store: &S,
    key: StorageKey,
    config: securemesh::Config,
) -> Result<Option<Box<HostAgent>>, HostError> {
    let records = store.load()?;
    on_agent_stack(|| rebuild(&records, key, config))?
}

fn rebuild(
    records: &[StoredRecord],
    key: StorageKey,
    config: securemesh::Config,
) -> Result<Option<Box<HostAgent>>, HostError> {
    let Some(agent_record) = records.iter().find(|r| r.name == AGENT) else {
        return match records.first() {
            Some(r) => {
                Err(HostError::Restore { record: r.name.clone(), error: securemesh::Error::WrongRecord })
            }
            None => Ok(None),
        };
    };
    let mut scratch = vec![0u8; HostAgent::MAX_RECORD_LEN];
    let mut agent = Box::new(
        HostAgent::restore(key, config, &agent_record.blob, agent_record.newest_seen, &mut scratch)
            .map_err(|error| HostError::Restore { record: AGENT.into(), error })?,
    );
    for r in records.iter().filter(|r| r.name != AGENT) {
        let id = agent
            .restore_record(&r.blob, r.newest_seen, &mut scratch)
            .map_err(|error| HostError::Restore { record: r.name.clone(), error })?;
        // The ledger's generation is the one of the file's name: a blob
        // of another record copied in would be checked against the wrong
        // counter.
        if record_name(id) != r.name {
            return Err(HostError::Restore { record: r.name.clone(), error: securemesh::Error::WrongRecord });
        }
    }
    Ok(Some(agent))
}

//! A bounded pool of read/write sessions: the HSM's signing parallelism.
//!
//! A caller checks a session out (waiting while all are busy) and the guard gives it back when
//! dropped. A session that failed with a session error is discarded instead and another is
//! opened on the next checkout. Once the pool is closed (device down) checkouts fail at once and
//! waiters are woken, so nobody blocks on a dead device.

use std::ops::Deref;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::error::Fail;
use super::HsmError;

/// Sessions of one device generation.
pub(crate) struct Pool {
    state: Mutex<PoolState>,
    /// Signalled whenever a session comes back, is discarded, or the pool closes.
    changed: Condvar,
    capacity: usize,
}

struct PoolState {
    idle: Vec<Session>,
    /// Sessions open in total: idle, checked out, or being opened.
    open: usize,
    closed: bool,
}

impl Pool {
    /// An empty pool of at most `capacity` sessions (at least one).
    pub(crate) fn new(capacity: usize) -> Pool {
        Pool {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                closed: false,
            }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Opens sessions until the pool is full (at start, so a bad slot shows at once).
    pub(crate) fn fill(&self, ctx: &Pkcs11, slot: Slot) -> Result<(), Fail> {
        let mut state = lock(&self.state);
        while state.open < self.capacity {
            // Sessions are closed explicitly (see `library`), never by cryptoki's `Drop`.
            let session = ctx.open_rw_session_no_drop(slot)?;
            state.idle.push(session);
            state.open += 1;
        }
        Ok(())
    }

    /// A session for the caller's exclusive use: an idle one, a new one if the pool is not
    /// full, or the next one given back. Fails at once when the pool is closed.
    pub(crate) fn checkout(&self, ctx: &Pkcs11, slot: Slot) -> Result<PoolGuard<'_>, Fail> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return Err(HsmError::Unavailable("HSM sessions are being reopened".into()).into());
            }
            if let Some(session) = state.idle.pop() {
                return Ok(PoolGuard::new(self, session));
            }
            if state.open < self.capacity {
                state.open += 1;
                drop(state);
                return match ctx.open_rw_session_no_drop(slot) {
                    Ok(session) => Ok(PoolGuard::new(self, session)),
                    Err(e) => {
                        lock(&self.state).open -= 1;
                        self.changed.notify_all();
                        Err(e.into())
                    }
                };
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Refuses further checkouts and wakes every waiter (they fail with `Unavailable`).
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for every checked-out session to come back; false on timeout.
    pub(crate) fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        while state.open > state.idle.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Takes every idle session out of the pool (to be closed by the caller).
    pub(crate) fn take_idle(&self) -> Vec<Session> {
        let mut state = lock(&self.state);
        let idle = std::mem::take(&mut state.idle);
        state.open -= idle.len();
        idle
    }

    /// The pool's size (the configured number of sessions).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    fn give_back(&self, session: Session, discard: Discard) {
        let mut state = lock(&self.state);
        match discard {
            Discard::No => state.idle.push(session),
            Discard::Forget => state.open -= 1,
            Discard::Close => {
                state.open -= 1;
                drop(state);
                // The session is valid but stuck (e.g. an operation left active): close it.
                let _ = session.close();
            }
        }
        self.changed.notify_all();
    }
}

/// What happens to a session when its guard goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Discard {
    /// Back to the pool.
    No,
    /// Dropped without `C_CloseSession`: its handle is already invalid.
    Forget,
    /// Closed and dropped: it is open but in a bad state.
    Close,
}

/// A checked-out session; goes back to the pool (or is discarded) when dropped.
pub(crate) struct PoolGuard<'a> {
    pool: &'a Pool,
    /// `Some` from checkout until `drop` hands it back.
    session: Option<Session>,
    discard: Discard,
}

impl<'a> PoolGuard<'a> {
    fn new(pool: &'a Pool, session: Session) -> PoolGuard<'a> {
        PoolGuard {
            pool,
            session: Some(session),
            discard: Discard::No,
        }
    }

    /// Marks the session as broken: it will not go back to the pool.
    pub(crate) fn discard(&mut self, how: Discard) {
        self.discard = how;
    }
}

impl Deref for PoolGuard<'_> {
    type Target = Session;

    fn deref(&self) -> &Session {
        // Invariant: `session` is only taken in `drop`, after which no deref can happen.
        self.session
            .as_ref()
            .expect("pool guard holds its session until dropped")
    }
}

impl Drop for PoolGuard<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give_back(session, self.discard);
        }
    }
}

/// Locks a mutex, going on with the data if another thread panicked while holding it (the
/// structures guarded here stay consistent between statements).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

//! What every connection of every listener gets, whatever it serves: a deadline for the TLS
//! handshake and the first request head, a deadline for every later HTTP/1 request head (kept
//! here, not as hyper's header read timeout, which arms and drops a timer for every request),
//! an idle timeout, a
//! per-listener cap (at the cap the longest-idle connection makes room), hyper's own error
//! answers (414, 431, 400 on an unparsable head) rewritten into the envelope, and the process
//! file limit raised to what it may be.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::LimitsConfig;

/// Descriptors kept out of the listeners' share: HSM module, database, logs, blocking threads.
const RESERVED_FDS: u64 = 256;

/// HTTP/2 header list limit: generous enough that an over-long path reaches the router (which
/// answers 414 in the envelope) instead of tearing down the connection.
const H2_MAX_HEADER_LIST: u32 = 256 << 10;

/// `ConnState::head_since_ms` when no request head is pending.
const NO_HEAD: u64 = u64::MAX;

/// How an HTTP/2 client's first bytes begin (RFC 9113 §3.4).
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// The timeouts and cap of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The limits of the API and the public listener, with caps of 0 derived from `nofile`.
    pub fn from_config(c: &LimitsConfig, nofile: u64) -> (Limits, Limits) {
        let budget = nofile.saturating_sub(RESERVED_FDS).max(40);
        let auto = |share: u64, set: usize| {
            if set > 0 {
                set
            } else {
                usize::try_from(budget * share / 10).unwrap_or(usize::MAX)
            }
        };
        let make = |max_connections| Limits {
            header_timeout: Duration::from_secs(c.header_timeout_secs),
            idle_timeout: Duration::from_secs(c.idle_timeout_secs),
            max_connections,
        };
        (
            make(auto(3, c.api_max_connections)),
            make(auto(6, c.public_max_connections)),
        )
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard one; returns the soft limit in force after.
/// Under systemd (`INVOCATION_ID` set) the unit's `LimitNOFILE=` is what counts: its system call
/// filter (`~@resources`) may kill a process that calls setrlimit, so pcad only reads it there.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    if std::env::var_os("INVOCATION_ID").is_some() {
        log::warn!(
            "open-file limit {soft} (hard {hard}): under systemd set LimitNOFILE= in the unit (the packaged one sets 65536)"
        );
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            log::warn!("could not raise the open-file limit from {soft} to {hard}: {e}");
            soft
        }
    }
}

/// The open connections of one listener.
pub struct Tracker {
    name: &'static str,
    pub limits: Limits,
    epoch: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// What the tracker knows of one connection.
pub struct ConnState {
    opened_ms: u64,
    /// Milliseconds since the tracker's epoch of the last byte read or written.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// A complete request head has arrived at least once.
    spoke: AtomicBool,
    /// HTTP/1: when the first bytes of a request head arrived with no request in flight
    /// (`NO_HEAD` while none is pending); a head must be complete `header_timeout` after.
    head_since_ms: AtomicU64,
    /// The client opened with the HTTP/2 preface: its frames between requests (pings, window
    /// updates) are not request heads, only the idle timeout applies between its requests.
    http2: AtomicBool,
    close: tokio::sync::Notify,
}

/// A connection's place under the cap; dropping it frees the place.
pub struct Admitted {
    tracker: Arc<Tracker>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.tracker
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Tracker {
    pub fn new(name: &'static str, limits: Limits) -> Arc<Tracker> {
        Arc::new(Tracker {
            name,
            limits,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A place for a new connection. At the cap, the connection idle the longest (no request in
    /// flight) is told to close and gives its place; `None` when every one is busy.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let now = self.now_ms();
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() >= self.limits.max_connections {
            let victim = conns
                .iter()
                .filter(|(_, c)| c.in_flight.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, c)| c.last_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(c) = conns.remove(&victim) {
                c.close.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            opened_ms: now,
            last_ms: AtomicU64::new(now),
            in_flight: AtomicUsize::new(0),
            spoke: AtomicBool::new(false),
            head_since_ms: AtomicU64::new(NO_HEAD),
            http2: AtomicBool::new(false),
            close: tokio::sync::Notify::new(),
        });
        conns.insert(id, Arc::clone(&state));
        Some(Admitted {
            tracker: Arc::clone(self),
            id,
            state,
        })
    }

    /// Accepts forever, handing each admitted connection to `serve`. Accept errors (out of
    /// descriptors) pause this listener briefly instead of spinning.
    pub async fn accept_loop<F, Fut>(self: Arc<Self>, listener: TcpListener, serve: F)
    where
        F: Fn(TcpStream, Admitted) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut last_warning: Option<Instant> = None;
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => match self.admit() {
                    Some(place) => {
                        tokio::spawn(serve(tcp, place));
                    }
                    None => drop(tcp),
                },
                Err(e) => {
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        log::warn!(
                            "{} listener: accept failed ({e}); {} connections open",
                            self.name,
                            self.open()
                        );
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

impl Admitted {
    /// Runs `fut` (a TLS handshake) under the connection's first deadline; `None` when it ran
    /// out or the connection was told to close.
    pub async fn within_first_deadline<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let limit = self.tracker.limits.header_timeout;
        tokio::select! {
            v = tokio::time::timeout(limit, fut) => v.ok(),
            _ = self.state.close.notified() => None,
        }
    }

    /// Serves HTTP/1.1 and HTTP/2 on `io` with `handler` until the client is done, the
    /// connection goes quiet for too long, it is told to make room, or the server stops.
    pub async fn serve<I, H, Fut>(self, io: I, handler: H, watcher: Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let io = Hygiene {
            inner: io,
            state: Arc::clone(&self.state),
            tracker: Arc::clone(&self.tracker),
            pending: Vec::new(),
            first_read: true,
        };
        let state = Arc::clone(&self.state);
        let handler = Arc::new(handler);
        let svc = service_fn(move |req| {
            let busy = Busy::new(&state);
            let fut = handler(req);
            async move {
                let response = fut.await;
                drop(busy);
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // No header read timeout of hyper's: `quiet` keeps that deadline (see `head_since_ms`).
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(H2_MAX_HEADER_LIST);
        let conn = builder.serve_connection(TokioIo::new(io), svc);
        let conn = PollAgainOnSelfWake::new(watcher.watch(conn.into_owned()));
        tokio::select! {
            _ = conn => {}
            _ = self.quiet() => {}
            _ = self.state.close.notified() => {}
        }
    }

    /// Resolves when the connection has been quiet too long: no complete request head within
    /// the header timeout of opening, or, later, no request in flight and either no bytes
    /// moving for the idle timeout or an HTTP/1 request head begun and not complete within the
    /// header timeout (a client trickling a head byte by byte).
    async fn quiet(&self) {
        let limits = self.tracker.limits;
        let header = ms(limits.header_timeout);
        let s = &self.state;
        loop {
            let now = self.tracker.now_ms();
            let deadline = if !s.spoke.load(Ordering::Relaxed) {
                s.opened_ms + header
            } else if s.in_flight.load(Ordering::Relaxed) > 0 {
                now + ms(limits.idle_timeout)
            } else {
                let idle = s.last_ms.load(Ordering::Relaxed) + ms(limits.idle_timeout);
                match s.head_since_ms.load(Ordering::Relaxed) {
                    NO_HEAD => idle,
                    since => idle.min(since + header),
                }
            };
            if deadline <= now {
                return;
            }
            // A head that begins while this sleeps is seen within one header timeout.
            let wait = (deadline - now).min(header.max(1));
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A connection future whose wakes of its own task while it is being polled are answered by
/// polling it again at once instead of by a trip to the back of the runtime's queue.
///
/// hyper's HTTP/1 request-body channel wakes the connection's task when the handler takes the
/// body (it tells the sender there is room again), and that happens while the task is being
/// polled. tokio then queues the task once more behind every other ready connection: one
/// spurious poll per POST, and measurably longer tails for every request (OCSP POST p99
/// 0.86 ms against 0.57 ms for GET on one core; a GET given one self-wake had POST's tail).
/// A future that keeps waking itself (hyper yields on purpose after a burst of pipelined
/// requests) is polled at most `1 + POLL_AGAIN` times in a row, then yields for real.
struct PollAgainOnSelfWake<F> {
    inner: Pin<Box<F>>,
    relay: Arc<Relay>,
    waker: std::task::Waker,
}

/// How many extra polls a self-wake may buy within one poll of the task.
const POLL_AGAIN: usize = 2;

/// The waker `PollAgainOnSelfWake` gives its future: notes a wake during the poll, passes any
/// other to the task.
struct Relay {
    state: std::sync::atomic::AtomicU8,
    task: futures_util::task::AtomicWaker,
}

const RELAY_IDLE: u8 = 0;
const RELAY_POLLING: u8 = 1;
const RELAY_WOKEN: u8 = 2;

impl std::task::Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let noted = self.state.compare_exchange(
            RELAY_POLLING,
            RELAY_WOKEN,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if noted == Err(RELAY_IDLE) {
            self.task.wake();
        }
    }
}

impl<F: Future> PollAgainOnSelfWake<F> {
    fn new(inner: F) -> Self {
        let relay = Arc::new(Relay {
            state: std::sync::atomic::AtomicU8::new(RELAY_IDLE),
            task: futures_util::task::AtomicWaker::new(),
        });
        PollAgainOnSelfWake {
            inner: Box::pin(inner),
            waker: std::task::Waker::from(Arc::clone(&relay)),
            relay,
        }
    }
}

impl<F: Future> Future for PollAgainOnSelfWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.relay.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..=POLL_AGAIN {
            this.relay.state.store(RELAY_POLLING, Ordering::Release);
            let polled = this.inner.as_mut().poll(&mut inner_cx);
            let woken = this.relay.state.swap(RELAY_IDLE, Ordering::AcqRel) == RELAY_WOKEN;
            if polled.is_ready() || !woken {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A request in flight on a connection (it is not idle while one is).
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: &Arc<ConnState>) -> Busy {
        state.spoke.store(true, Ordering::Relaxed);
        state.head_since_ms.store(NO_HEAD, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(state))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's byte stream: stamps activity, and replaces hyper's own bodiless HTTP/1
/// error answers with the envelope.
struct Hygiene<I> {
    inner: I,
    state: Arc<ConnState>,
    tracker: Arc<Tracker>,
    /// Bytes of a replacement answer not yet written.
    pending: Vec<u8>,
    /// Nothing has been read yet (the next read shows whether the client speaks HTTP/2).
    first_read: bool,
}

impl<I> Hygiene<I> {
    fn touch(&self) {
        self.state
            .last_ms
            .store(self.tracker.now_ms(), Ordering::Relaxed);
    }
}

impl<I: AsyncWrite + Unpin> Hygiene<I> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
            self.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Hygiene<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
            let s = &this.state;
            if std::mem::take(&mut this.first_read)
                && buf.filled()[before..].starts_with(H2_PREFACE_START)
            {
                s.http2.store(true, Ordering::Relaxed);
            }
            if !s.http2.load(Ordering::Relaxed)
                && s.in_flight.load(Ordering::Relaxed) == 0
                && s.head_since_ms.load(Ordering::Relaxed) == NO_HEAD
            {
                s.head_since_ms
                    .store(this.tracker.now_ms(), Ordering::Relaxed);
            }
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Hygiene<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(replacement) = envelope_for_bare_error(buf) {
            this.pending = replacement;
            // The replacement is flushed by the next write or flush; hyper closes after it.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if n > 0 {
            this.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// hyper answers a request head it cannot parse itself, with a status and no body, as the last
/// thing on the connection. Our own answers always carry a content type, and HTTP/2 writes
/// frames, so nothing else looks like this.
fn envelope_for_bare_error(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    // Every answer passes here: a success costs this one comparison, and the head is only
    // searched (in place, without a copy) for an error status.
    if !matches!(rest.first(), Some(b'4' | b'5')) {
        return None;
    }
    let status = std::str::from_utf8(rest.get(..3)?)
        .ok()?
        .parse::<u16>()
        .ok()?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..end];
    if has_header_line(head, b"\r\ncontent-type:")
        || !has_header_line(head, b"\r\ncontent-length: 0")
    {
        return None;
    }
    let (reason, message) = match status {
        414 => (
            "URI Too Long",
            "path: the request target is longer than the server accepts",
        ),
        431 => (
            "Request Header Fields Too Large",
            "headers: the request head is larger than the server accepts",
        ),
        505 => (
            "HTTP Version Not Supported",
            "request: HTTP version not supported",
        ),
        408 => ("Request Timeout", "request: the request head took too long"),
        _ => (
            "Bad Request",
            "request: the request line or a header is malformed",
        ),
    };
    let status = if matches!(status, 414 | 431 | 505 | 408) {
        status
    } else {
        400
    };
    let body = serde_json::json!({
        "header": {"resultCode": u32::from(status) * 100, "resultMessage": message, "isSuccessful": false},
        "body": null,
    })
    .to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json;charset=UTF-8\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// Whether `head` contains `needle` (lowercase ASCII), compared without regard to case.
fn has_header_line(head: &[u8], needle: &[u8]) -> bool {
    head.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections: max,
        }
    }

    #[test]
    fn caps_come_from_the_file_limit_unless_set() {
        let c = LimitsConfig::default();
        let (api, public) = Limits::from_config(&c, 1024);
        assert_eq!((api.max_connections, public.max_connections), (230, 460));
        assert!(api.max_connections + public.max_connections + 256 < 1024);
        let set = LimitsConfig {
            api_max_connections: 7,
            ..LimitsConfig::default()
        };
        assert_eq!(Limits::from_config(&set, 1024).0.max_connections, 7);
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let t = Tracker::new("test", limits(2));
        let a = t.admit().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let b = t.admit().unwrap();
        let _busy = Busy::new(&b.state);
        let c = t.admit().expect("a is idle and makes room");
        assert_eq!(t.open(), 2);
        // `a` was told to close (the permit is stored until it waits).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), a.state.close.notified())
                .await
                .expect("a notified");
        });
        let _busy_c = Busy::new(&c.state);
        assert!(t.admit().is_none(), "every connection is busy");
        drop(a);
        assert_eq!(t.open(), 2, "a's place was already given away");
        drop(c);
        assert_eq!(t.open(), 1);
    }

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A future that, on each of its first `self_wakes` polls, wakes itself and is pending;
    /// then it keeps its waker and is pending until `ready` is set.
    struct Stepper {
        polls: Arc<AtomicUsize>,
        self_wakes: usize,
        ready: Arc<AtomicBool>,
        kept: Arc<Mutex<Option<std::task::Waker>>>,
    }

    impl Future for Stepper {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let n = self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            if n < self.self_wakes {
                cx.waker().wake_by_ref();
            } else {
                *self.kept.lock().unwrap() = Some(cx.waker().clone());
            }
            Poll::Pending
        }
    }

    fn stepper(self_wakes: usize) -> (Stepper, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let s = Stepper {
            polls: Arc::clone(&polls),
            self_wakes,
            ready: Arc::clone(&ready),
            kept: Arc::default(),
        };
        (s, polls, ready)
    }

    #[test]
    fn a_self_wake_during_the_poll_is_a_poll_again_not_a_requeue() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);

        // One self-wake: polled again at once, and the task is not woken.
        let (s, polls, _) = stepper(1);
        let kept = Arc::clone(&s.kept);
        let mut f = std::pin::pin!(PollAgainOnSelfWake::new(s));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // A wake after the poll (the future kept the relay's waker) reaches the task.
        kept.lock().unwrap().take().unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);

        // A future that keeps waking itself gets 1 + POLL_AGAIN polls, then a real wake.
        let (s, polls, ready) = stepper(usize::MAX);
        let mut f = std::pin::pin!(PollAgainOnSelfWake::new(s));
        assert!(f.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1 + POLL_AGAIN);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        ready.store(true, Ordering::SeqCst);
        assert!(f.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn hypers_bare_errors_get_the_envelope() {
        let bare = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(envelope_for_bare_error(bare).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["header"]["resultCode"], 41400);
        assert_eq!(v["header"]["isSuccessful"], false);
        assert!(v["body"].is_null());
        // Our own answers are left alone.
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n";
        assert!(envelope_for_bare_error(ours).is_none());
        assert!(envelope_for_bare_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        // Header names in any case.
        let upper = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        assert!(envelope_for_bare_error(upper).is_some());
        let typed =
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\ncontent-length: 0\r\n\r\n";
        assert!(envelope_for_bare_error(typed).is_none());
    }
}

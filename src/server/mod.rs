//! Listeners (rustls mutual TLS and plain public HTTP), graceful shutdown, SIGHUP reload,
//! sd_notify and signals.

pub mod backup;
pub mod conn;
pub mod logging;
pub mod responder;
pub mod tls;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;

use crate::api::{Api, Listener, Peer};
use crate::ca::Ca;
use crate::config::Config;
use crate::hsm::Hsm;
use crate::status::Publisher;
use crate::store::Db;

/// Opens the HSM and the database, binds both listeners, tells systemd it is ready, and serves
/// until SIGTERM/SIGINT (then drains in-flight requests).
pub fn serve(config_path: &Path) -> Result<(), String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    logging::init(config.log.level.as_deref());
    let nofile = conn::raise_nofile();
    let pin = config.pin().map_err(|e| e.to_string())?;
    let tls = tls::server_config(&config)?;
    let db_path = config.resolve(&config.storage.path);
    let db = Db::open(&db_path).map_err(|e| e.to_string())?;
    // Serving never depends on it (a path too long for a Unix socket, say): backups then need
    // pcad stopped.
    let _backup_socket = backup::listen(&db_path, db.clone())
        .map_err(|e| log::warn!("{e}; `pcad backup` works only while pcad is stopped"))
        .ok();
    let hsm = Hsm::open(&config.hsm, pin).map_err(|e| format!("HSM: {e}"))?;
    let runtime = runtime().map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(run(config, config_path.to_owned(), tls, db, hsm, nofile))
}

/// The async runtime for the listeners: one worker per CPU this process may run on. With a
/// single CPU (a one-core machine, or `taskset`/`CPUAffinity=` pinning) that is the
/// current-thread scheduler: a multi-thread runtime would still run its one worker beside the
/// thread that accepts connections and pay for work-stealing it cannot use. HSM and database
/// work runs on the blocking pool either way.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // TOKIO_WORKER_THREADS, when set, asks for the multi-thread runtime with that many workers.
    if cpus == 1 && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

async fn run(
    config: Config,
    config_path: std::path::PathBuf,
    tls: Arc<ServerConfig>,
    db: Db,
    hsm: Hsm,
    nofile: u64,
) -> Result<(), String> {
    let config = Arc::new(config);
    let publisher = Publisher::new(db.clone(), hsm.clone(), config.hsm.sessions);
    if let Some(urls) = config.publish.redis.clone() {
        let password_file = config
            .publish
            .password_file
            .as_ref()
            .map(|p| config.resolve(p));
        let target = crate::publish::Target::new(urls, password_file.as_deref())?;
        crate::publish::start(target, publisher.clone());
    }
    publisher.start();
    let ca = Ca::new(db, hsm, &config.public.base_url, publisher.clone());
    crate::ca::start_ncp_destroy_scheduler(ca.clone());
    // Shared by every connection; a request clones the Arc, not the state.
    let api = Arc::new(Api::new(ca, Arc::clone(&config)));
    let tls = Arc::new(RwLock::new(tls));

    let api_listener = TcpListener::bind(config.api.listen)
        .await
        .map_err(|e| format!("api.listen {}: {e}", config.api.listen))?;
    let public_listener = TcpListener::bind(config.public.listen)
        .await
        .map_err(|e| format!("public.listen {}: {e}", config.public.listen))?;
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("metrics.listen {addr}: {e}"))?,
        ),
        None => None,
    };
    log::info!(
        "pcad {} serving the API on https://{} and public routes on http://{}",
        env!("CARGO_PKG_VERSION"),
        config.api.listen,
        config.public.listen
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let graceful = Arc::new(GracefulShutdown::new());
    let (api_limits, public_limits) = conn::Limits::from_config(&config.limits, nofile);
    log::info!(
        "open-file limit {nofile}: up to {} API and {} public connections",
        api_limits.max_connections,
        public_limits.max_connections
    );
    let api_accept = {
        let api = Arc::clone(&api);
        let tls = Arc::clone(&tls);
        let graceful = Arc::clone(&graceful);
        let tracker = conn::Tracker::new("api", api_limits);
        tokio::spawn(tracker.accept_loop(api_listener, move |tcp, place| {
            let acceptor = TlsAcceptor::from(
                tls.read()
                    .map(|t| Arc::clone(&t))
                    .unwrap_or_else(|p| Arc::clone(&p.into_inner())),
            );
            let api = Arc::clone(&api);
            let watcher = graceful.watcher();
            async move {
                let _ = tcp.set_nodelay(true);
                let Some(Ok(stream)) = place.within_first_deadline(acceptor.accept(tcp)).await
                else {
                    return;
                };
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(tls::identity);
                let peer = Arc::new(Peer { identity });
                let handler = move |req| {
                    let api = Arc::clone(&api);
                    let peer = Arc::clone(&peer);
                    async move { api.handle(req, peer, Listener::Api).await }
                };
                place.serve(stream, handler, watcher).await;
            }
        }))
    };
    let public_accept = {
        let api = Arc::clone(&api);
        let graceful = Arc::clone(&graceful);
        let tracker = conn::Tracker::new("public", public_limits);
        tokio::spawn(tracker.accept_loop(public_listener, move |tcp, place| {
            let api = Arc::clone(&api);
            let watcher = graceful.watcher();
            async move {
                let _ = tcp.set_nodelay(true);
                let peer = Arc::new(Peer::default());
                let handler = move |req| {
                    let api = Arc::clone(&api);
                    let peer = Arc::clone(&peer);
                    async move { api.handle(req, peer, Listener::Public).await }
                };
                place.serve(tcp, handler, watcher).await;
            }
        }))
    };
    // The metrics listener gets the same timeouts, with a small cap of its own.
    let metrics_accept = metrics_listener.map(|listener| {
        let publisher = publisher.clone();
        let graceful = Arc::clone(&graceful);
        let limits = conn::Limits {
            max_connections: 64,
            ..api_limits
        };
        tokio::spawn(conn::Tracker::new("metrics", limits).accept_loop(
            listener,
            move |tcp, place| {
                let publisher = publisher.clone();
                let watcher = graceful.watcher();
                async move {
                    let handler = move |req| {
                        let publisher = publisher.clone();
                        async move {
                            match metrics_response(req, publisher).await {
                                Ok(r) => r,
                                Err(never) => match never {},
                            }
                        }
                    };
                    place.serve(tcp, handler, watcher).await;
                }
            },
        ))
    });
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                reload(&config_path, &tls, &api);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    log::info!("shutting down: draining in-flight requests");
    api_accept.abort();
    public_accept.abort();
    let _ = api_accept.await;
    let _ = public_accept.await;
    if let Some(metrics) = metrics_accept {
        metrics.abort();
        let _ = metrics.await;
    }
    let graceful = Arc::try_unwrap(graceful).map_err(|_| "listeners still running".to_string())?;
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        log::warn!("some connections did not finish within 30 s");
    }
    log::info!("stopped");
    Ok(())
}

/// SIGHUP: re-reads the config's TLS material and access roles; keeps the old ones on error.
fn reload(config_path: &Path, tls: &RwLock<Arc<ServerConfig>>, api: &Api) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
    match Config::load(config_path).map(Arc::new) {
        Ok(new) => match tls::server_config(&new) {
            Ok(sc) => {
                if let Ok(mut t) = tls.write() {
                    *t = sc;
                }
                if let Ok(mut a) = api.access.write() {
                    *a = new;
                }
                log::info!("reloaded TLS material and access roles");
            }
            Err(e) => log::error!("reload refused, keeping the old TLS material: {e}"),
        },
        Err(e) => log::error!("reload refused, keeping the old config: {e}"),
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// `pcad check-config`: parses the config, loads the TLS material, reads the PIN, logs in to the
/// HSM. Errors name what is wrong.
pub fn check_config(config_path: &Path) -> Result<String, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    tls::server_config(&config)?;
    if let Some(urls) = config.publish.redis.clone() {
        let password_file = config
            .publish
            .password_file
            .as_ref()
            .map(|p| config.resolve(p));
        crate::publish::Target::new(urls, password_file.as_deref())?;
    }
    let pin = config.pin().map_err(|e| e.to_string())?;
    let hsm = Hsm::open(&config.hsm, pin).map_err(|e| format!("HSM: {e}"))?;
    if !hsm.is_up() {
        return Err("HSM: not up after login".into());
    }
    Ok(format!(
        "{}: config, TLS material and HSM login (token {:?}) are fine",
        config_path.display(),
        config.hsm.token_label
    ))
}

/// The Prometheus endpoint: `GET /metrics`, nothing else.
async fn metrics_response(
    req: hyper::Request<hyper::body::Incoming>,
    publisher: Publisher,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    if req.uri().path() != "/metrics" {
        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
        return Ok(r);
    }
    let gauges = tokio::task::spawn_blocking(move || publisher.gauges())
        .await
        .unwrap_or_default();
    let text = crate::metrics::METRICS.render(&gauges);
    *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from(text));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(r)
}

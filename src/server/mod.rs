//! Listeners (rustls mutual TLS and plain public HTTP), graceful shutdown, SIGHUP reload,
//! sd_notify and signals.

pub mod logging;
pub mod tls;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
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
    let pin = config.pin().map_err(|e| e.to_string())?;
    let tls = tls::server_config(&config)?;
    let db = Db::open(&config.resolve(&config.storage.path)).map_err(|e| e.to_string())?;
    let hsm = Hsm::open(&config.hsm, pin).map_err(|e| format!("HSM: {e}"))?;
    let runtime = runtime().map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(run(config, config_path.to_owned(), tls, db, hsm))
}

/// The async runtime for the listeners: one worker per CPU this process may run on. With a
/// single CPU (a one-core machine, or `taskset`/`CPUAffinity=` pinning) that is the
/// current-thread scheduler: a multi-thread runtime would still run its one worker beside the
/// thread that accepts connections and pay for work-stealing it cannot use. HSM and database
/// work runs on the blocking pool either way.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
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
) -> Result<(), String> {
    let config = Arc::new(config);
    let publisher = Publisher::new(db.clone(), hsm.clone(), config.hsm.sessions);
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

    let graceful = GracefulShutdown::new();
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            accepted = api_listener.accept() => {
                if let Ok((tcp, _)) = accepted {
                    let acceptor = TlsAcceptor::from(tls.read().map(|t| Arc::clone(&t)).map_err(|_| "tls lock")?);
                    let api = Arc::clone(&api);
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                            return;
                        };
                        let identity = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(tls::identity);
                        let peer = Arc::new(Peer { identity });
                        let svc = service_fn(move |req| {
                            let api = Arc::clone(&api);
                            let peer = Arc::clone(&peer);
                            async move { Ok::<_, std::convert::Infallible>(api.handle(req, peer, Listener::Api).await) }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(stream), svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    });
                }
            }
            accepted = public_listener.accept() => {
                if let Ok((tcp, _)) = accepted {
                    let api = Arc::clone(&api);
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        let peer = Arc::new(Peer::default());
                        let svc = service_fn(move |req| {
                            let api = Arc::clone(&api);
                            let peer = Arc::clone(&peer);
                            async move { Ok::<_, std::convert::Infallible>(api.handle(req, peer, Listener::Public).await) }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                        let _ = watcher.watch(conn.into_owned()).await;
                    });
                }
            }
            accepted = accept_opt(metrics_listener.as_ref()) => {
                if let Ok((tcp, _)) = accepted {
                    let publisher = publisher.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| metrics_response(req, publisher.clone()));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc);
                        let _ = watcher.watch(conn).await;
                    });
                }
            }
            _ = hup.recv() => {
                reload(&config_path, &tls, &api);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    log::info!("shutting down: draining in-flight requests");
    drop(api_listener);
    drop(public_listener);
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

async fn accept_opt(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
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

//! `pcad responder`'s listener: the public routes served from Redis (see `publish`), with the
//! same connection timeouts and cap as the appliance's public listener.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::publish::{follow, RedisSource, ResponderOptions};

/// Runs a responder until SIGTERM/SIGINT.
pub fn run(options: ResponderOptions) -> Result<(), String> {
    let runtime = super::runtime().map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(serve(options))
}

async fn serve(options: ResponderOptions) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let source = Arc::new(RedisSource::new(options.target));
    tokio::spawn(follow(Arc::clone(&source)));
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", options.listen))?;
    log::info!(
        "pcad {} responder serving public routes on http://{} from Redis at {}",
        env!("CARGO_PKG_VERSION"),
        options.listen,
        source.target.urls.redacted()
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    // The same connection timeouts and cap as the appliance's public listener.
    let nofile = super::conn::raise_nofile();
    let (_, limits) =
        super::conn::Limits::from_config(&crate::config::LimitsConfig::default(), nofile);
    let graceful = Arc::new(GracefulShutdown::new());
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let accept = {
        let source = Arc::clone(&source);
        let graceful = Arc::clone(&graceful);
        let tracker = super::conn::Tracker::new("public", limits);
        tokio::spawn(tracker.accept_loop(listener, move |tcp, place| {
            let source = Arc::clone(&source);
            let watcher = graceful.watcher();
            async move {
                let _ = tcp.set_nodelay(true);
                let handler = move |req| {
                    let source = Arc::clone(&source);
                    async move { respond(&source, req).await }
                };
                place.serve(tcp, handler, watcher).await;
            }
        }))
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    accept.abort();
    let _ = accept.await;
    let graceful = Arc::try_unwrap(graceful).map_err(|_| "listener still running".to_string())?;
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    log::info!("stopped");
    Ok(())
}

async fn respond(
    source: &RedisSource,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    if req.uri().path() == "/metrics" && req.method() == hyper::Method::GET {
        let text = crate::metrics::METRICS.render(&source.gauges());
        let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return r;
    }
    let timeout = Duration::from_secs(crate::config::LimitsConfig::default().body_timeout_secs);
    crate::api::public::handle(source, req, timeout).await
}

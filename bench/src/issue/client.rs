//! The load generator's side of the API: one HTTP/1.1 keep-alive connection over mutual TLS
//! (client certificate `tls/admin.pem`, trust anchor `tls/ca.pem`, server name `localhost`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where and how to connect: shared by every client task.
pub struct Endpoint {
    connector: TlsConnector,
    addr: SocketAddr,
    name: ServerName<'static>,
}

impl Endpoint {
    /// Reads the quickstart TLS material of `dir` for the API listener on `port`.
    pub fn new(dir: &Path, port: u16) -> Result<Endpoint, String> {
        let tls = dir.join("tls");
        let read_certs = |file: &str| {
            CertificateDer::pem_file_iter(tls.join(file))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls/{file}: {e}"))
        };
        let mut roots = RootCertStore::empty();
        for ca in read_certs("ca.pem")? {
            roots.add(ca).map_err(|e| format!("tls/ca.pem: {e}"))?;
        }
        let key = PrivateKeyDer::from_pem_file(tls.join("admin.key"))
            .map_err(|e| format!("tls/admin.key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(read_certs("admin.pem")?, key)
            .map_err(|e| format!("tls/admin.pem: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Endpoint {
            connector: TlsConnector::from(Arc::new(config)),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            name: ServerName::try_from("localhost").map_err(|e| e.to_string())?,
        })
    }
}

/// One keep-alive connection; requests on it are sequential.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects, completes the TLS handshake and the HTTP/1.1 setup.
    pub async fn open(endpoint: &Endpoint) -> Result<Conn, String> {
        let tcp = TcpStream::connect(endpoint.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let tls = endpoint
            .connector
            .connect(endpoint.name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP/1.1: {e}"))?;
        // Ends when the sender is dropped or the server closes the connection.
        tokio::spawn(connection);
        Ok(Conn { sender })
    }

    /// Sends one request with a JSON body and reads the whole answer.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        let (status, _, body) = self.request(method, path, "application/json", body).await?;
        Ok((status, body))
    }

    /// Sends one request with a body of `content_type`; returns status, headers and body.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost")
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// A management call that must succeed: returns the envelope's `body`.
    pub async fn api(&mut self, method: Method, path: &str, json: &Value) -> Result<Value, String> {
        let (status, body) = self
            .call(method.clone(), path, Bytes::from(json.to_string()))
            .await?;
        envelope_body(status, &body).map_err(|e| format!("{method} {path}: {e}"))
    }

    /// A POST management call that must succeed: the number `field` of its answer (an id).
    pub async fn post_id(&mut self, path: &str, json: &Value, field: &str) -> Result<u64, String> {
        let body = self.api(Method::POST, path, json).await?;
        body[field]
            .as_u64()
            .ok_or_else(|| format!("POST {path}: answer has no {field}: {body}"))
    }
}

/// The envelope's `body` of a 200 answer whose `header.isSuccessful` is true; otherwise the
/// status and `resultMessage`.
pub fn envelope_body(status: StatusCode, body: &[u8]) -> Result<Value, String> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("HTTP {status}: answer is not JSON ({e})"))?;
    if status != StatusCode::OK || v["header"]["isSuccessful"] != Value::Bool(true) {
        return Err(format!(
            "HTTP {status}: {}",
            v["header"]["resultMessage"]
                .as_str()
                .unwrap_or("no resultMessage")
        ));
    }
    Ok(v["body"].take())
}

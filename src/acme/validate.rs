//! Challenge validation from pcad (RFC 8555 §8.3, §8.4; RFC 8737): an HTTP/1.1 GET to the
//! configured port, a TLS-ALPN `acme-tls/1` handshake, a DNS TXT query to the configured
//! resolver. Everything is bounded: time, response size, redirects.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::jws::b64;
use super::problem::Problem;
use crate::config::AcmeConfig;

/// The whole of one validation attempt.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest HTTP response read (headers and body).
const HTTP_LIMIT: usize = 16 * 1024;
const MAX_REDIRECTS: usize = 3;

/// What is validated.
pub struct Target<'a> {
    pub kind: &'a str,
    /// A DNS name (without `*.`) or an IP address.
    pub name: &'a str,
    pub token: &'a str,
    pub key_authorization: &'a str,
}

pub async fn validate(cfg: &AcmeConfig, t: &Target<'_>) -> Result<(), Problem> {
    let work = async {
        match t.kind {
            "http-01" => http01(cfg, t).await,
            "dns-01" => dns01(cfg, t).await,
            "tls-alpn-01" => tls_alpn01(cfg, t).await,
            other => Err(Problem::malformed(format!(
                "challenge type {other} unknown"
            ))),
        }
    };
    match tokio::time::timeout(VALIDATION_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(Problem::new(
            "connection",
            400,
            format!(
                "{} validation of {} took longer than {}s",
                t.kind,
                t.name,
                VALIDATION_TIMEOUT.as_secs()
            ),
        )),
    }
}

fn connection(detail: String) -> Problem {
    Problem::new("connection", 400, detail)
}

fn incorrect(detail: String) -> Problem {
    Problem::new("incorrectResponse", 403, detail)
}

/// The addresses of `name` (A first, then AAAA), through the configured resolver or the system's.
async fn addresses(cfg: &AcmeConfig, name: &str) -> Result<Vec<IpAddr>, Problem> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let found: Vec<IpAddr> = match cfg.resolver {
        Some(server) => {
            let mut v: Vec<IpAddr> = dns_query(server, name, QTYPE_A)
                .await?
                .into_iter()
                .filter_map(|r| <[u8; 4]>::try_from(r.as_slice()).ok().map(IpAddr::from))
                .collect();
            if v.is_empty() {
                v = dns_query(server, name, QTYPE_AAAA)
                    .await?
                    .into_iter()
                    .filter_map(|r| <[u8; 16]>::try_from(r.as_slice()).ok().map(IpAddr::from))
                    .collect();
            }
            v
        }
        None => tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| Problem::new("dns", 400, format!("{name}: lookup failed ({e})")))?
            .map(|a| a.ip())
            .collect(),
    };
    if found.is_empty() {
        return Err(Problem::new(
            "dns",
            400,
            format!("{name}: no A or AAAA record"),
        ));
    }
    let mut v4: Vec<IpAddr> = found.iter().copied().filter(IpAddr::is_ipv4).collect();
    v4.extend(found.into_iter().filter(IpAddr::is_ipv6));
    Ok(v4)
}

async fn connect(cfg: &AcmeConfig, name: &str, port: u16) -> Result<TcpStream, Problem> {
    let mut last = String::new();
    for ip in addresses(cfg, name).await? {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: connect timed out"),
        }
    }
    Err(connection(format!("{name}: could not connect ({last})")))
}

// ---- http-01 ----

async fn http01(cfg: &AcmeConfig, t: &Target<'_>) -> Result<(), Problem> {
    let mut host = t.name.to_owned();
    let mut path = format!("/.well-known/acme-challenge/{}", t.token);
    for _ in 0..=MAX_REDIRECTS {
        let (status, location, body) = http_get(cfg, &host, &path).await?;
        match status {
            200 => {
                let got = String::from_utf8_lossy(&body);
                return if got.trim() == t.key_authorization {
                    Ok(())
                } else {
                    Err(incorrect(format!(
                        "http-01 at {host}{path}: the body is not the key authorization (got {:?})",
                        got.chars().take(100).collect::<String>()
                    )))
                };
            }
            301 | 302 | 303 | 307 | 308 => {
                let loc = location.ok_or_else(|| {
                    connection(format!(
                        "http-01 at {host}{path}: redirect without Location"
                    ))
                })?;
                let rest = loc.strip_prefix("http://").ok_or_else(|| {
                    connection(format!(
                        "http-01 at {host}{path}: redirect to {loc:?} (only http:// redirects are followed)"
                    ))
                })?;
                let (h, p) = rest.split_once('/').unwrap_or((rest, ""));
                // Only the configured port: a redirect may not aim validation elsewhere.
                let h = h.strip_suffix(&format!(":{}", cfg.http_port)).unwrap_or(h);
                if h.contains(':') && !h.starts_with('[') || h.is_empty() {
                    return Err(connection(format!(
                        "http-01: redirect to {loc:?} leaves port {}",
                        cfg.http_port
                    )));
                }
                host = h.to_owned();
                path = format!("/{p}");
            }
            other => {
                return Err(Problem::new(
                    "unauthorized",
                    403,
                    format!("http-01 at {host}{path}: answered HTTP {other}"),
                ))
            }
        }
    }
    Err(connection(format!(
        "http-01 for {}: more than {MAX_REDIRECTS} redirects",
        t.name
    )))
}

/// One bounded GET: status, Location, body.
async fn http_get(
    cfg: &AcmeConfig,
    host: &str,
    path: &str,
) -> Result<(u16, Option<String>, Vec<u8>), Problem> {
    let mut s = connect(cfg, host, cfg.http_port).await?;
    let host_header = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: pcad-acme\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| connection(format!("http-01 to {host}: {e}")))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| connection(format!("http-01 from {host}: {e}")))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > HTTP_LIMIT {
            return Err(connection(format!(
                "http-01 from {host}: response larger than {HTTP_LIMIT} bytes"
            )));
        }
        if let Some(done) = complete(&buf) {
            buf.truncate(done);
            break;
        }
    }
    parse_response(&buf)
        .ok_or_else(|| connection(format!("http-01 from {host}: not an HTTP/1.x response")))
}

/// The length of a complete response in `buf`, if its end is known before the connection closes.
fn complete(buf: &[u8]) -> Option<usize> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())?;
    (buf.len() >= head_end + len).then_some(head_end + len)
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn parse_response(buf: &[u8]) -> Option<(u16, Option<String>, Vec<u8>)> {
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut location = None;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "location" => location = Some(v.to_owned()),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "content-length" => length = v.parse::<usize>().ok(),
            _ => {}
        }
    }
    let rest = &buf[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) => rest.get(..n)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some((status, location, body))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

// ---- dns-01 ----

async fn dns01(cfg: &AcmeConfig, t: &Target<'_>) -> Result<(), Problem> {
    let server = match cfg.resolver {
        Some(s) => s,
        None => system_resolver()?,
    };
    let want =
        b64(ring::digest::digest(&ring::digest::SHA256, t.key_authorization.as_bytes()).as_ref());
    let qname = format!("_acme-challenge.{}", t.name);
    let records = dns_query(server, &qname, QTYPE_TXT).await?;
    let texts: Vec<String> = records.iter().map(|r| txt_text(r)).collect();
    if texts.iter().any(|x| x == &want) {
        Ok(())
    } else if texts.is_empty() {
        Err(Problem::new(
            "dns",
            400,
            format!("dns-01: no TXT record at {qname}"),
        ))
    } else {
        Err(incorrect(format!(
            "dns-01: no TXT record at {qname} holds the expected digest (found {} other)",
            texts.len()
        )))
    }
}

fn system_resolver() -> Result<SocketAddr, Problem> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .ok_or_else(|| Problem::server("no [acme] resolver and no nameserver in /etc/resolv.conf"))
}

fn txt_text(rdata: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rdata.len() {
        let n = rdata[i] as usize;
        out.extend_from_slice(rdata.get(i + 1..i + 1 + n).unwrap_or_default());
        i += 1 + n;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const QTYPE_A: u16 = 1;
const QTYPE_TXT: u16 = 16;
const QTYPE_AAAA: u16 = 28;

/// One DNS query (UDP, then TCP when truncated): the rdata of every answer of type `qtype`.
async fn dns_query(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<Vec<u8>>, Problem> {
    let dns_err = |m: String| Problem::new("dns", 400, m);
    let id: u16 = rand::random();
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(dns_err(format!("{name}: not a DNS name")));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());

    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(server)
    } else {
        "[::]:0".parse().unwrap_or(server)
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| dns_err(format!("resolver socket: {e}")))?;
    sock.connect(server)
        .await
        .map_err(|e| dns_err(format!("resolver {server}: {e}")))?;
    let mut answer = None;
    for _ in 0..3 {
        sock.send(&q)
            .await
            .map_err(|e| dns_err(format!("resolver {server}: {e}")))?;
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
            Ok(Ok(n)) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                buf.truncate(n);
                answer = Some(buf);
                break;
            }
            Ok(Err(e)) => return Err(dns_err(format!("resolver {server}: {e}"))),
            _ => continue,
        }
    }
    let mut answer =
        answer.ok_or_else(|| dns_err(format!("resolver {server} did not answer for {name}")))?;
    if answer[2] & 0x02 != 0 {
        // Truncated: ask again over TCP.
        let mut s = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(server))
            .await
            .map_err(|_| dns_err(format!("resolver {server}: TCP connect timed out")))?
            .map_err(|e| dns_err(format!("resolver {server}: {e}")))?;
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed)
            .await
            .map_err(|e| dns_err(format!("resolver {server}: {e}")))?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)
            .await
            .map_err(|e| dns_err(format!("resolver {server}: {e}")))?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| dns_err(format!("resolver {server}: {e}")))?;
        answer = buf;
    }
    parse_answers(&answer, qtype)
        .ok_or_else(|| dns_err(format!("resolver {server}: malformed answer for {name}")))
}

fn skip_name(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *b.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

fn parse_answers(b: &[u8], qtype: u16) -> Option<Vec<Vec<u8>>> {
    let rcode = b.get(3)? & 0x0f;
    if rcode == 3 {
        return Some(vec![]); // NXDOMAIN
    }
    if rcode != 0 {
        return None;
    }
    let qd = u16::from_be_bytes([*b.get(4)?, *b.get(5)?]);
    let an = u16::from_be_bytes([*b.get(6)?, *b.get(7)?]);
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(b, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        i = skip_name(b, i)?;
        let ty = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]);
        let len = u16::from_be_bytes([*b.get(i + 8)?, *b.get(i + 9)?]) as usize;
        let data = b.get(i + 10..i + 10 + len)?;
        if ty == qtype {
            out.push(data.to_vec());
        }
        i += 10 + len;
    }
    Some(out)
}

// ---- tls-alpn-01 ----

/// `id-pe-acmeIdentifier` (RFC 8737).
const ACME_IDENTIFIER: &str = "1.3.6.1.5.5.7.1.31";

async fn tls_alpn01(cfg: &AcmeConfig, t: &Target<'_>) -> Result<(), Problem> {
    use rustls::pki_types::ServerName;
    let tcp = connect(cfg, t.name, cfg.tls_port).await?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem::server(format!("tls: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let name = ServerName::try_from(t.name.to_owned())
        .map_err(|_| Problem::malformed(format!("tls-alpn-01: {} is not a server name", t.name)))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| Problem::new("tls", 400, format!("tls-alpn-01 to {}: {e}", t.name)))?;
    let (_, conn) = tls.get_ref();
    if conn.alpn_protocol() != Some(b"acme-tls/1") {
        return Err(Problem::new(
            "tls",
            400,
            format!("tls-alpn-01 to {}: acme-tls/1 was not negotiated", t.name),
        ));
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| Problem::new("tls", 400, "tls-alpn-01: no certificate".to_string()))?;
    let want = ring::digest::digest(&ring::digest::SHA256, t.key_authorization.as_bytes());
    check_alpn_cert(cert.as_ref(), t.name, want.as_ref()).map_err(incorrect)
}

/// The RFC 8737 §3 checks of the validation certificate.
fn check_alpn_cert(der: &[u8], name: &str, digest: &[u8]) -> Result<(), String> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("tls-alpn-01: the certificate does not parse ({e})"))?;
    let info = crate::pki::cert::parse_info(der)
        .map_err(|e| format!("tls-alpn-01: the certificate does not parse ({e})"))?;
    if info.sans.dns.len() != 1
        || !info.sans.dns[0].eq_ignore_ascii_case(name)
        || !info.sans.ip.is_empty()
    {
        return Err(format!(
            "tls-alpn-01: the certificate must name exactly {name} (it names {:?})",
            info.sans.dns
        ));
    }
    let ext = cert
        .tbs_certificate()
        .extensions()
        .into_iter()
        .flat_map(|v| v.iter())
        .find(|e| e.extn_id.to_string() == ACME_IDENTIFIER)
        .ok_or("tls-alpn-01: the certificate has no acmeIdentifier extension")?;
    if !ext.critical {
        return Err("tls-alpn-01: the acmeIdentifier extension must be critical".into());
    }
    let mut want = vec![0x04, 0x20];
    want.extend_from_slice(digest);
    if ext.extn_value.as_bytes() != want {
        return Err(
            "tls-alpn-01: acmeIdentifier is not the SHA-256 of the key authorization".into(),
        );
    }
    Ok(())
}

/// The handshake signature, checked with the certificate's key directly: webpki refuses to
/// parse a certificate with the (critical, unknown to it) acmeIdentifier extension.
fn handshake_signature(
    message: &[u8],
    cert: &rustls::pki_types::CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    use ring::signature as sig;
    use rustls::SignatureScheme as S;
    let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
    let info = crate::pki::cert::parse_info(cert.as_ref()).map_err(|_| bad())?;
    let key = crate::pki::cert::subject_public_key_bits(&info.spki_der);
    let alg: &dyn sig::VerificationAlgorithm = match dss.scheme {
        S::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        S::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        S::ED25519 => &sig::ED25519,
        S::RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        S::RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        S::RSA_PKCS1_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        S::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        S::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        S::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return Err(bad()),
    };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(message, dss.signature())
        .map_err(|_| bad())?;
    Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
}

/// Validation reads the certificate; it does not trust it.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        use rustls::SignatureScheme as S;
        vec![
            S::ECDSA_NISTP256_SHA256,
            S::ECDSA_NISTP384_SHA384,
            S::ED25519,
            S::RSA_PSS_SHA256,
            S::RSA_PSS_SHA384,
            S::RSA_PSS_SHA512,
            S::RSA_PKCS1_SHA256,
            S::RSA_PKCS1_SHA384,
            S::RSA_PKCS1_SHA512,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_parse_with_length_chunks_and_close() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((r.0, r.2.as_slice()), (200, &b"abc"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.2, b"abc");
        let r = parse_response(b"HTTP/1.0 302 Found\r\nLocation: http://x/y\r\n\r\n").unwrap();
        assert_eq!((r.0, r.1.as_deref()), (302, Some("http://x/y")));
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_none());
        assert_eq!(
            complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"),
            Some(40)
        );
    }

    #[test]
    fn dns_answers_parse() {
        // id, flags, qd=1, an=1; question example.com TXT; answer (pointer) TXT "hi".
        let mut b = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        b.extend_from_slice(b"\x07example\x03com\x00\x00\x10\x00\x01");
        b.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 3, 2, b'h', b'i']);
        let a = parse_answers(&b, QTYPE_TXT).unwrap();
        assert_eq!(txt_text(&a[0]), "hi");
        assert!(parse_answers(&b, QTYPE_A).unwrap().is_empty());
        assert!(parse_answers(&b[..20], QTYPE_TXT).is_none());
    }
}

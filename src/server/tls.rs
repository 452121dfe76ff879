//! The API listener's TLS: server certificate, client CA, client certificate identity.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Builds the rustls config: TLS 1.2/1.3, client certificate requested (not required: public
/// routes share this listener) and verified against the configured client CA.
pub fn server_config(config: &Config) -> Result<Arc<ServerConfig>, String> {
    let cert_path = config.resolve(&config.api.cert);
    let key_path = config.resolve(&config.api.key);
    let ca_path = config.resolve(&config.api.client_ca);
    check_key_mode(&key_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("api.cert {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!("api.cert {}: no certificate", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("api.key {}: {e}", key_path.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&ca_path)
        .map_err(|e| format!("api.client_ca {}: {e}", ca_path.display()))?
    {
        let ca = ca.map_err(|e| format!("api.client_ca {}: {e}", ca_path.display()))?;
        roots
            .add(ca)
            .map_err(|e| format!("api.client_ca {}: {e}", ca_path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("api.client_ca {}: {e}", ca_path.display()))?;
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("api.cert/api.key: {e}"))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// Refuses a server key that others can read.
fn check_key_mode(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("api.key {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "api.key {} is readable by group or others (mode {:o}): chmod 0600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

/// The subject CN of a verified client certificate.
pub fn identity(cert: &CertificateDer<'_>) -> Option<String> {
    crate::pki::cert::parse_info(cert.as_ref())
        .ok()
        .and_then(|i| i.common_name)
}

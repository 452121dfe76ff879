//! What a sub CA signed elsewhere needs: a PKCS#10 request made with its (HSM) key, and the
//! checks on the certificate that comes back (same key, a CA certificate, chains to the given
//! root).

use der::Encode;

use super::cert::{self, SubjectInfo};
use super::der_util::{self, tag};
use super::{name, PkiError, Signer};

/// A PKCS#10 request for `subject` and the public key `spki_der`, signed by `signer` (which
/// must hold the matching private key). Returns the DER.
pub fn build_csr(
    subject: &SubjectInfo,
    spki_der: &[u8],
    signer: &dyn Signer,
) -> Result<Vec<u8>, PkiError> {
    let info = der_util::seq(&[
        der_util::tlv(tag::INTEGER, &[0]),
        name::encode(subject)?,
        spki_der.to_vec(),
        // attributes [0] IMPLICIT SET OF: none.
        vec![0xa0, 0x00],
    ]);
    let signature = signer.sign(&info).map_err(PkiError::Sign)?;
    let alg = signer.algorithm().algorithm_identifier().to_der()?;
    Ok(der_util::seq(&[
        info,
        alg,
        der_util::bit_string(&signature),
    ]))
}

/// Why an activation certificate is refused: which field, which rule.
#[derive(Debug, PartialEq, Eq)]
pub enum ActivationError {
    /// certPem: not a certificate, another key, or not a CA.
    Cert(String),
    /// caChainPem: not certificates, or the certificate does not chain up to its root.
    Chain(String),
}

/// Checks `cert_der` for a PENDING sub CA: its key is `spki_der`, it is a CA (basicConstraints
/// cA true), and it verifies up to the self-signed last certificate of `chain_ders` (its
/// issuer first).
pub fn check_activation(
    cert_der: &[u8],
    spki_der: &[u8],
    chain_ders: &[Vec<u8>],
) -> Result<(), ActivationError> {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, X509};

    let info = cert::parse_info(cert_der)
        .map_err(|e| ActivationError::Cert(format!("not a certificate ({e})")))?;
    if info.spki_der != spki_der {
        return Err(ActivationError::Cert(
            "its public key is not the key of this CA's CSR".into(),
        ));
    }
    if !is_ca(cert_der) {
        return Err(ActivationError::Cert(
            "not a CA certificate (basicConstraints cA is not true)".into(),
        ));
    }
    let chain_err = |m: String| ActivationError::Chain(m);
    let (root, intermediates) = chain_ders
        .split_last()
        .ok_or_else(|| chain_err("no certificate".into()))?;
    let x = |d: &[u8]| X509::from_der(d).map_err(|e| chain_err(format!("not a certificate ({e})")));
    let root = x(root)?;
    if root.subject_name().to_der().ok() != root.issuer_name().to_der().ok() {
        return Err(chain_err(
            "its last certificate must be the self-signed root".into(),
        ));
    }
    let mut store = X509StoreBuilder::new().map_err(|e| chain_err(e.to_string()))?;
    store.add_cert(root).map_err(|e| chain_err(e.to_string()))?;
    let store = store.build();
    let mut untrusted = Stack::new().map_err(|e| chain_err(e.to_string()))?;
    for d in intermediates {
        untrusted
            .push(x(d)?)
            .map_err(|e| chain_err(e.to_string()))?;
    }
    let leaf = X509::from_der(cert_der).map_err(|e| ActivationError::Cert(e.to_string()))?;
    let mut ctx = X509StoreContext::new().map_err(|e| chain_err(e.to_string()))?;
    let verdict = ctx
        .init(&store, &leaf, &untrusted, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error().error_string().to_owned()))
        })
        .map_err(|e| chain_err(e.to_string()))?;
    match verdict {
        (true, _) => Ok(()),
        (false, why) => Err(chain_err(format!(
            "the certificate does not chain up to it ({why})"
        ))),
    }
}

/// Whether a certificate's basicConstraints says cA true.
fn is_ca(cert_der: &[u8]) -> bool {
    use der::Decode;
    let Ok(c) = x509_cert::Certificate::from_der(cert_der) else {
        return false;
    };
    c.tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_BASIC_CONSTRAINTS)
        .and_then(|e| {
            x509_cert::ext::pkix::BasicConstraints::from_der(e.extn_value.as_bytes()).ok()
        })
        .is_some_and(|b| b.ca)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::keygen::SoftKey;
    use crate::pki::{KeyAlgorithm, SignatureAlgorithm};

    #[test]
    fn built_csr_parses_and_verifies() {
        let key = SoftKey::generate(KeyAlgorithm::P256).unwrap();
        let subject = SubjectInfo {
            common_name: Some("Sub CA".into()),
            country: Some("KR".into()),
            ..SubjectInfo::default()
        };
        let der = build_csr(
            &subject,
            &key.spki_der(),
            &key.signer(SignatureAlgorithm::Sha256WithEcdsa),
        )
        .unwrap();
        let csr = crate::pki::csr::parse_der(&der).unwrap();
        assert_eq!(csr.subject.common_name.as_deref(), Some("Sub CA"));
        assert_eq!(csr.spki_der, key.spki_der());
    }

    #[test]
    fn activation_refuses_garbage() {
        assert!(matches!(
            check_activation(b"nope", b"", &[]),
            Err(ActivationError::Cert(_))
        ));
    }
}

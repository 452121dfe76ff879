//! PKCS#10 requests for SIGN mode, made once before the runs (inputs, not measured).

use pcad::pki::cert::SubjectInfo;
use pcad::pki::der_util::{self, tag};
use pcad::pki::keygen::SoftKey;
use pcad::pki::{name, pem, KeyAlgorithm, SignatureAlgorithm, Signer};

/// `n` P-256 CSRs (PEM) with subject `CN=leaf<i>.bench.test`, each with its own key, checked
/// with pcad's own CSR parser.
pub fn p256_csrs(n: usize) -> Result<Vec<(String, String)>, String> {
    (0..n)
        .map(|i| {
            let cn = format!("leaf{i}.bench.test");
            let pem = csr(&cn)?;
            pcad::pki::csr::parse(&pem).map_err(|e| format!("own CSR refused: {e}"))?;
            Ok((cn, pem))
        })
        .collect()
}

/// CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
fn csr(common_name: &str) -> Result<String, String> {
    let key = SoftKey::generate(KeyAlgorithm::P256).map_err(|e| e.to_string())?;
    let subject = name::encode(&SubjectInfo {
        common_name: Some(common_name.to_owned()),
        ..SubjectInfo::default()
    })
    .map_err(|e| e.to_string())?;
    let info = der_util::seq(&[
        der_util::tlv(tag::INTEGER, &[0]),
        subject,
        key.spki_der(),
        // attributes [0]: none.
        der_util::tlv(der_util::context(0, true), &[]),
    ]);
    let alg = SignatureAlgorithm::Sha256WithEcdsa;
    let signature = key.signer(alg).sign(&info).map_err(|e| e.to_string())?;
    let der = der_util::seq(&[
        info,
        // ecdsa-with-SHA256 takes no parameters (RFC 5758).
        der_util::seq(&[der_util::oid(&alg.oid())]),
        der_util::bit_string(&signature),
    ]);
    Ok(pem::encode("CERTIFICATE REQUEST", &der))
}

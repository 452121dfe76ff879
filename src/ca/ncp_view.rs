//! What the CA hands the NAVER Cloud edition (`/api/v1`) about its CAs, built from the stored
//! NCP CA records.

use super::{Ca, CaError, Certificate};
use crate::status::CaTagTarget;
use crate::store::NcpCaRecord;

/// A CA of the NAVER Cloud edition.
#[derive(Clone, Debug)]
pub struct NcpCa {
    pub ca_tag: String,
    pub appkey: String,
    /// NCP's numeric id (fits an `int32`).
    pub ca_id: i32,
    /// The v2.0 store holding its certificates.
    pub store_id: u64,
    /// Its issuer certificate; `None` while PENDING.
    pub cert_id: Option<u64>,
    /// `PRIVATE_ROOT` or `PRIVATE_SUB`.
    pub ca_type: String,
    pub issuer_tag: Option<String>,
    pub alias: String,
    pub memo: Option<String>,
    /// `ACTIVE`, `DEACTIVATED`, `PENDING` or `DESTROYING`.
    pub status: String,
    /// Epoch milliseconds.
    pub status_updated_ms: i64,
    pub destroy_at_ms: Option<i64>,
    pub created_ms: i64,
    /// The OCSP URL written into certificates issued from now on.
    pub ocsp_url: Option<String>,
    /// The CRL cycle in days; `None` = the store's.
    pub crl_expiry_days: Option<u32>,
    /// The CSR of a PENDING sub CA made for external signing.
    pub csr_pem: Option<String>,
    /// Identities granted this CA.
    pub grants: Vec<String>,
}

impl From<NcpCaRecord> for NcpCa {
    fn from(r: NcpCaRecord) -> NcpCa {
        NcpCa {
            ca_tag: r.ca_tag,
            appkey: r.appkey,
            ca_id: r.ca_id,
            store_id: r.store_id,
            cert_id: r.cert_id,
            ca_type: r.ca_type,
            issuer_tag: r.issuer_tag,
            alias: r.alias,
            memo: r.memo,
            status: r.status,
            status_updated_ms: r.status_updated_ms,
            destroy_at_ms: r.destroy_at_ms,
            created_ms: r.created_ms,
            ocsp_url: r.ocsp_url,
            crl_expiry_days: r.crl_expiry_days,
            csr_pem: r.pending.map(|p| p.csr_pem),
            grants: r.grants,
        }
    }
}

/// A CA's certificate as NCP's `caCertInfo` shows it.
#[derive(Clone, Debug)]
pub struct NcpCaCert {
    pub cert: Certificate,
    /// The DER certificates above it (its issuer first), outside issuers included.
    pub chain: Vec<Vec<u8>>,
    /// How many end certificates it signed (stored ones).
    pub signing_count: usize,
}

impl Ca {
    /// The NCP CA `tag` of `appkey`; another appkey's CA does not exist.
    pub fn ncp_ca(&self, appkey: &str, tag: &str) -> Result<NcpCa, CaError> {
        self.ncp_record(appkey, tag).map(NcpCa::from)
    }

    /// The NCP CAs of an appkey, oldest first.
    pub fn ncp_cas(&self, appkey: &str) -> Result<Vec<NcpCa>, CaError> {
        Ok(self
            .ncp_records(appkey)?
            .into_iter()
            .map(NcpCa::from)
            .collect())
    }

    /// The certificate of a CA with what sits above it; `None` while PENDING.
    pub fn ncp_ca_cert(&self, ca: &NcpCa) -> Result<Option<NcpCaCert>, CaError> {
        if ca.cert_id.is_none() {
            return Ok(None);
        }
        let rec = self.ncp_record(&ca.appkey, &ca.ca_tag)?;
        let cert = self.ncp_cert(&rec)?;
        let chain = self.ncp_chain_above(&cert)?;
        let signing_count = self.end_certs(rec.store_id, rec.cert_id)?.len();
        Ok(Some(NcpCaCert {
            cert: cert.into(),
            chain,
            signing_count,
        }))
    }

    /// The CA's certificate and every certificate above it (DER), outside issuers of an
    /// activated sub CA included: NCP's `caChain`.
    pub fn ncp_chain(&self, ca: &NcpCa) -> Result<Vec<Vec<u8>>, CaError> {
        let rec = self.ncp_record(&ca.appkey, &ca.ca_tag)?;
        let cert = self.ncp_cert(&rec)?;
        let above = self.ncp_chain_above(&cert)?;
        let mut chain = Vec::with_capacity(1 + above.len());
        chain.push(cert.der);
        chain.extend(above);
        Ok(chain)
    }

    /// The DER certificate of CA `tag` of any appkey (`/ext/{caTag}/ca`); `None` for an
    /// unknown tag.
    pub fn ncp_ca_der(&self, tag: &str) -> Result<Option<Vec<u8>>, CaError> {
        match self.db.ncp_ca(tag)? {
            Some(rec) => Ok(Some(self.ncp_cert(&rec)?.der)),
            None => Ok(None),
        }
    }

    /// Where CA `tag`'s `/ext/` OCSP and CRL answers are; `None` for an unknown tag or a CA
    /// without its certificate yet (a pending sub CA).
    pub fn ncp_tag_target(&self, tag: &str) -> Result<Option<CaTagTarget>, CaError> {
        Ok(self.db.ncp_ca(tag)?.and_then(|c| {
            Some(CaTagTarget {
                issuer_id: c.cert_id?,
                appkey: c.appkey.into(),
                store_id: c.store_id,
            })
        }))
    }

    /// The CA's current CRL (DER), signed now if it has none yet.
    pub fn ncp_crl(&self, ca: &NcpCa) -> Result<Vec<u8>, CaError> {
        self.crl_der(&self.ncp_record(&ca.appkey, &ca.ca_tag)?)
    }

    /// Rotate CRL: a fresh CRL of the CA now.
    pub fn ncp_rotate_crl(&self, ca: &NcpCa) -> Result<(), CaError> {
        self.rotate_crl(&self.ncp_record(&ca.appkey, &ca.ca_tag)?)
    }

    /// The end certificates a CA signed (stored ones), in issuance order.
    pub fn ncp_end_certs(&self, ca: &NcpCa) -> Result<Vec<Certificate>, CaError> {
        Ok(self
            .end_certs(ca.store_id, ca.cert_id)?
            .into_iter()
            .map(Certificate::from)
            .collect())
    }
}

//! The NAVER Cloud edition's metadata (`/api/v1`): which pcad issuer certificate an NCP CA
//! (`caTag`) is, its status, memo, grants, destroy deadline, OCSP URL and CRL cycle, and the
//! store of the appkey that holds its certificates. The certificates themselves are ordinary
//! records of the `certs`/`serials` trees.

use serde::{Deserialize, Serialize};

use super::{decode, encode, Db, StoreError};
use crate::pki::{KeyAlgorithm, SignatureAlgorithm};

/// An NCP CA. `cert_id` is its issuer certificate (absent while PENDING).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NcpCaRecord {
    pub ca_tag: String,
    pub appkey: String,
    /// NCP's numeric id (fits an `int32`).
    pub ca_id: i32,
    /// The v2.0 store holding its certificates.
    pub store_id: u64,
    pub cert_id: Option<u64>,
    /// `PRIVATE_ROOT` or `PRIVATE_SUB`.
    pub ca_type: String,
    pub issuer_tag: Option<String>,
    pub alias: String,
    pub memo: Option<String>,
    /// `ACTIVE`, `DEACTIVATED`, `PENDING` or `DESTROYING`.
    pub status: String,
    /// The status to return to when a destruction is cancelled without naming one.
    #[serde(default)]
    pub status_before_destroy: Option<String>,
    /// Epoch milliseconds.
    pub status_updated_ms: i64,
    pub destroy_at_ms: Option<i64>,
    pub created_ms: i64,
    /// The OCSP URL written into certificates issued from now on (Create OCSP).
    pub ocsp_url: Option<String>,
    /// The CRL cycle in days (Update CRL Config); `None` = the store's.
    pub crl_expiry_days: Option<u32>,
    /// A sub CA made for external signing: its HSM key and CSR until activated.
    pub pending: Option<NcpPending>,
    /// Identities (access keys or config identities) granted this CA.
    #[serde(default)]
    pub grants: Vec<String>,
    /// PEM certificates above a sub CA signed elsewhere (its issuer first, up to the root).
    #[serde(default)]
    pub external_chain: Vec<String>,
}

/// The key and CSR of a PENDING sub CA.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NcpPending {
    pub key_id: String,
    pub key_algorithm: KeyAlgorithm,
    pub signature_algorithm: SignatureAlgorithm,
    pub csr_pem: String,
}

fn store_key(appkey: &str) -> Vec<u8> {
    let mut k = b"store\0".to_vec();
    k.extend_from_slice(appkey.as_bytes());
    k
}

impl Db {
    fn ncp_cas_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree("ncp_cas")?)
    }

    fn ncp_by_cert_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree("ncp_by_cert")?)
    }

    fn ncp_meta_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree("ncp_meta")?)
    }

    /// The store id holding the NCP CAs of `appkey`, if one was made.
    pub fn ncp_store_id(&self, appkey: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .ncp_meta_tree()?
            .get(store_key(appkey))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    pub fn set_ncp_store_id(&self, appkey: &str, store_id: u64) -> Result<(), StoreError> {
        let _writing = self.writing();
        self.ncp_meta_tree()?
            .insert(store_key(appkey), &store_id.to_be_bytes())?;
        Ok(())
    }

    /// A fresh caId: 1, 2, ... (never reused).
    pub fn ncp_next_ca_id(&self) -> Result<i32, StoreError> {
        let _writing = self.writing();
        let v = self
            .ncp_meta_tree()?
            .update_and_fetch(b"ca_id", |old| {
                let n = old
                    .and_then(|o| o.try_into().ok().map(u32::from_be_bytes))
                    .unwrap_or(0);
                Some(n.saturating_add(1).to_be_bytes().to_vec())
            })?
            .ok_or_else(|| StoreError::Corrupt("ncp_meta/ca_id".into(), "missing".into()))?;
        let n = u32::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("ncp_meta/ca_id".into(), "bad length".into()))?,
        );
        i32::try_from(n).map_err(|_| StoreError::Conflict("caId space exhausted".into()))
    }

    /// Inserts or replaces an NCP CA (and its certificate index).
    pub fn put_ncp_ca(&self, rec: &NcpCaRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        if let Some(cert_id) = rec.cert_id {
            self.ncp_by_cert_tree()?
                .insert(cert_id.to_be_bytes(), rec.ca_tag.as_bytes())?;
        }
        self.ncp_cas_tree()?
            .insert(rec.ca_tag.as_bytes(), encode(rec))?;
        Ok(())
    }

    /// The NCP CA `tag` whoever owns it (callers check the appkey).
    pub fn ncp_ca(&self, tag: &str) -> Result<Option<NcpCaRecord>, StoreError> {
        self.ncp_cas_tree()?
            .get(tag.as_bytes())?
            .map(|v| decode("ncp_ca", &v))
            .transpose()
    }

    /// The NCP CA whose issuer certificate is `cert_id`.
    pub fn ncp_ca_by_cert(&self, cert_id: u64) -> Result<Option<NcpCaRecord>, StoreError> {
        let Some(tag) = self.ncp_by_cert_tree()?.get(cert_id.to_be_bytes())? else {
            return Ok(None);
        };
        self.ncp_ca(&String::from_utf8_lossy(&tag))
    }

    /// Every NCP CA (of every appkey), in caTag order.
    pub fn all_ncp_cas(&self) -> Result<Vec<NcpCaRecord>, StoreError> {
        self.ncp_cas_tree()?
            .iter()
            .values()
            .map(|v| decode("ncp_ca", &v?))
            .collect()
    }

    /// The NCP CAs of an appkey, oldest first.
    pub fn ncp_cas_of(&self, appkey: &str) -> Result<Vec<NcpCaRecord>, StoreError> {
        let mut v: Vec<NcpCaRecord> = self
            .all_ncp_cas()?
            .into_iter()
            .filter(|c| c.appkey == appkey)
            .collect();
        v.sort_by_key(|c| c.ca_id);
        Ok(v)
    }

    /// Removes an NCP CA's metadata.
    pub fn delete_ncp_ca(&self, rec: &NcpCaRecord) -> Result<(), StoreError> {
        let _writing = self.writing();
        if let Some(cert_id) = rec.cert_id {
            self.ncp_by_cert_tree()?.remove(cert_id.to_be_bytes())?;
        }
        self.ncp_cas_tree()?.remove(rec.ca_tag.as_bytes())?;
        Ok(())
    }

    /// The CRL cycle (days) an NCP CA set for issuer `cert_id`, if any.
    pub fn ncp_crl_days(&self, cert_id: u64) -> Result<Option<u32>, StoreError> {
        Ok(self
            .ncp_ca_by_cert(cert_id)?
            .and_then(|c| c.crl_expiry_days))
    }

    /// Deletes certificate records (an NCP CA destroyed with its subtree): the records, their
    /// store index entries; serials and CRLs of the issuers go too.
    pub fn delete_certs(&self, recs: &[super::CertRecord]) -> Result<(), StoreError> {
        let _writing = self.writing();
        for rec in recs {
            self.delete_cert(rec)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: &str, appkey: &str, cert: Option<u64>) -> NcpCaRecord {
        NcpCaRecord {
            ca_tag: tag.into(),
            appkey: appkey.into(),
            ca_id: 1,
            store_id: 1,
            cert_id: cert,
            ca_type: "PRIVATE_ROOT".into(),
            issuer_tag: None,
            alias: "a".into(),
            memo: None,
            status: "ACTIVE".into(),
            status_before_destroy: None,
            status_updated_ms: 0,
            destroy_at_ms: None,
            created_ms: 0,
            ocsp_url: None,
            crl_expiry_days: Some(5),
            pending: None,
            grants: vec![],
            external_chain: vec![],
        }
    }

    #[test]
    fn ncp_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.ncp_next_ca_id().unwrap(), 1);
        assert_eq!(db.ncp_next_ca_id().unwrap(), 2);
        assert_eq!(db.ncp_store_id("k").unwrap(), None);
        db.set_ncp_store_id("k", 9).unwrap();
        assert_eq!(db.ncp_store_id("k").unwrap(), Some(9));
        db.put_ncp_ca(&rec("t1", "k", Some(7))).unwrap();
        db.put_ncp_ca(&rec("t2", "other", None)).unwrap();
        assert_eq!(db.ncp_ca_by_cert(7).unwrap().unwrap().ca_tag, "t1");
        assert_eq!(db.ncp_crl_days(7).unwrap(), Some(5));
        assert_eq!(db.ncp_cas_of("k").unwrap().len(), 1);
        db.delete_ncp_ca(&rec("t1", "k", Some(7))).unwrap();
        assert!(db.ncp_ca("t1").unwrap().is_none());
        assert!(db.ncp_ca_by_cert(7).unwrap().is_none());
    }
}

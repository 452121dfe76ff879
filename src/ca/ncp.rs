//! The NAVER Cloud edition's domain rules (`/api/v1`): an NCP CA is an issuer certificate of a
//! store of its appkey (one store per appkey, `ncp-api-v1`, made on first use), its end
//! certificates are leaves issued through `issue_leaf_with`, revocation is `revoke`, CRLs and
//! OCSP the publisher's. This file adds what NCP has and v2.0 has not: caTags, the lifecycle
//! (ACTIVE / DEACTIVATED / DESTROYING with a destroy delay), memo, grants, the OCSP URL switch and
//! the per-CA CRL cycle.
//!
//! Errors carry NCP's code as a prefix (`"INVALID_CA_STATUS: Invalid ca status."`); the NCP API
//! layer splits it off. v2.0 never calls these functions.

use std::sync::Mutex;

use super::{
    now, Actor, Ca, CaError, CertKind, Certificate, IssuedLeaf, IssuerParams, LeafMode, LeafParams,
    NcpCa, StoreParams, Target, Validity,
};
use crate::hsm::KeyId;
use crate::pki::cert::{ExtendedKeyUsage, KeyUsage, Sans, SubjectInfo};
use crate::pki::crl::RevocationReason;
use crate::pki::profile::TemplateSpec;
use crate::pki::{KeyAlgorithm, KeyFamily, SignatureAlgorithm};
use crate::store::{
    CertFilter, CertRecord, CertType, NcpCaRecord, PendingDestroy, StoreRecord, TemplateRecord,
};

/// The name of the v2.0 store that holds an appkey's NCP CAs.
pub const NCP_STORE_NAME: &str = "ncp-api-v1";

/// Serialises "make the appkey's NCP store" so that two first calls make one store.
static STORE_LOCK: Mutex<()> = Mutex::new(());

/// `PRIVATE_ROOT` or `PRIVATE_SUB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NcpCaType {
    Root,
    Sub,
}

impl NcpCaType {
    pub fn name(self) -> &'static str {
        match self {
            NcpCaType::Root => "PRIVATE_ROOT",
            NcpCaType::Sub => "PRIVATE_SUB",
        }
    }
}

/// NCP's CA statuses.
pub struct NcpStatus;

impl NcpStatus {
    pub const ACTIVE: &'static str = "ACTIVE";
    pub const DEACTIVATED: &'static str = "DEACTIVATED";
    pub const PENDING: &'static str = "PENDING";
    pub const DESTROYING: &'static str = "DESTROYING";
}

/// A checked Create CA request.
#[derive(Clone, Debug)]
pub struct NcpCaParams {
    pub ca_type: NcpCaType,
    pub issuer_tag: Option<String>,
    pub alias: String,
    pub memo: Option<String>,
    pub key: KeyAlgorithm,
    /// Days; `None` = MAX (ten years, or the issuer's end).
    pub period_days: Option<u32>,
    pub subject: SubjectInfo,
    pub sans: Sans,
}

/// An issued end certificate with its CA.
pub struct NcpLeaf {
    pub ca: NcpCa,
    pub issued: IssuedLeaf,
}

fn err(code: &str, msg: &str) -> CaError {
    CaError::Invalid(format!("{code}: {msg}"))
}

fn not_found() -> CaError {
    CaError::NotFound("NOT_FOUND: The CA doesn't exist.".into())
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The signature algorithm NCP uses for a key type.
pub fn ncp_signature_algorithm(key: KeyAlgorithm) -> SignatureAlgorithm {
    match key {
        KeyAlgorithm::P521 => SignatureAlgorithm::Sha512WithEcdsa,
        KeyAlgorithm::P384 => SignatureAlgorithm::Sha384WithEcdsa,
        k => k.signature_algorithm(256),
    }
}

impl Ca {
    /// Tells the responders where the CA's `/ext/{caTag}` answers are (once it has a
    /// certificate).
    fn publish_tag(&self, ca: &NcpCaRecord) {
        if let Some(issuer_id) = ca.cert_id {
            self.publisher.ca_tag(
                &ca.ca_tag,
                Some(crate::status::CaTagTarget {
                    appkey: ca.appkey.as_str().into(),
                    store_id: ca.store_id,
                    issuer_id,
                }),
            );
        }
    }

    /// The store holding the NCP CAs of the caller's appkey, made on first use.
    pub(crate) fn ncp_store(&self, who: &Actor) -> Result<StoreRecord, CaError> {
        if let Some(id) = self.db.ncp_store_id(&who.appkey)? {
            if let Some(s) = self.db.store(&who.appkey, id)? {
                return Ok(s);
            }
        }
        let _guard = STORE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = self.db.ncp_store_id(&who.appkey)? {
            if let Some(s) = self.db.store(&who.appkey, id)? {
                return Ok(s);
            }
        }
        let store = self.create_store(
            who,
            StoreParams {
                name: NCP_STORE_NAME.into(),
                description: Some("CAs of the NAVER Cloud edition (/api/v1)".into()),
                crl_active: true,
                crl_refresh_period: 3,
                ocsp_active: true,
                ocsp_refresh_period: 24,
            },
        )?;
        self.db.set_ncp_store_id(&who.appkey, store.id)?;
        self.db.durable()?;
        self.store(&who.appkey, store.id)
    }

    /// The stored NCP CA `tag` of `appkey`; another appkey's CA does not exist.
    pub(super) fn ncp_record(&self, appkey: &str, tag: &str) -> Result<NcpCaRecord, CaError> {
        match self.db.ncp_ca(tag)? {
            Some(c) if c.appkey == appkey && self.ncp_live(&c)? => Ok(c),
            _ => Err(not_found()),
        }
    }

    /// The stored NCP CAs of an appkey, oldest first.
    pub(super) fn ncp_records(&self, appkey: &str) -> Result<Vec<NcpCaRecord>, CaError> {
        let mut out = Vec::new();
        for c in self.db.ncp_cas_of(appkey)? {
            if self.ncp_live(&c)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Whether a CA's store and certificate still exist (deleting the `ncp-api-v1` store
    /// through `/v2.0` takes its CAs with it).
    fn ncp_live(&self, c: &NcpCaRecord) -> Result<bool, CaError> {
        if self.db.store(&c.appkey, c.store_id)?.is_none() {
            return Ok(false);
        }
        Ok(match c.cert_id {
            Some(id) => self.db.cert(&c.appkey, c.store_id, id)?.is_some(),
            None => true,
        })
    }

    /// The issuer certificate of an NCP CA (`INVALID_CA_STATUS` while PENDING).
    pub(super) fn ncp_cert(&self, ca: &NcpCaRecord) -> Result<CertRecord, CaError> {
        let id = ca
            .cert_id
            .ok_or_else(|| err("INVALID_CA_STATUS", "Invalid ca status."))?;
        self.db.cert(&ca.appkey, ca.store_id, id)?.ok_or_else(|| {
            CaError::Internal(format!("certificate {id} of CA {} is missing", ca.ca_tag))
        })
    }

    /// The (CRL, OCSP) URLs written into certificates of issuer `issuer_id` when it is an NCP
    /// CA: `/ext/{caTag}/crl` always, the Create OCSP URL while it is set.
    pub(crate) fn ncp_urls(&self, issuer_id: u64) -> Option<(Option<String>, Option<String>)> {
        let ca = self.db.ncp_ca_by_cert(issuer_id).ok()??;
        Some((
            Some(format!("{}/ext/{}/crl", self.base_url, ca.ca_tag)),
            ca.ocsp_url.clone(),
        ))
    }

    /// Create CA: a root, or a sub CA signed by `issuer_tag`. Every rule is checked before a
    /// key is made; a failure after it destroys the key (`create_issuer`).
    pub fn ncp_create_ca(&self, who: &Actor, p: NcpCaParams) -> Result<NcpCa, CaError> {
        self.ncp_create_record(who, p).map(NcpCa::from)
    }

    fn ncp_create_record(&self, who: &Actor, p: NcpCaParams) -> Result<NcpCaRecord, CaError> {
        if self
            .ncp_records(&who.appkey)?
            .iter()
            .any(|c| c.alias == p.alias)
        {
            return Err(err(
                "ALREADY_EXIST_ALIAS",
                "alias: This alias already exists.",
            ));
        }
        let parent = match (p.ca_type, &p.issuer_tag) {
            (NcpCaType::Root, Some(_)) => {
                return Err(err(
                    "INVALID_INPUT",
                    "issuerTag: Invalid input. (a PRIVATE_ROOT has no issuer)",
                ))
            }
            (NcpCaType::Root, None) => None,
            (NcpCaType::Sub, None) => return self.ncp_create_pending(who, p),
            (NcpCaType::Sub, Some(tag)) => {
                let parent = self
                    .ncp_record(&who.appkey, tag)
                    .map_err(|_| err("NOT_EXIST_ISSUER_CA", "issuerTag: The CA doesn't exist."))?;
                if parent.status != NcpStatus::ACTIVE {
                    return Err(err(
                        "INVALID_CA_STATUS",
                        "issuerTag: Invalid issuer ca status.",
                    ));
                }
                Some(parent)
            }
        };
        let store = self.ncp_store(who)?;
        let parent_cert = match &parent {
            Some(pc) => {
                let cert = self.ncp_cert(pc)?;
                if let Some(days) = p.period_days {
                    if now() + i64::from(days) * 86_400 > cert.not_after {
                        return Err(err(
                            "INVALID_INPUT_PERIOD",
                            "period: The CA validity period can't be exceeded.",
                        ));
                    }
                }
                Some(cert)
            }
            None => None,
        };
        let params = IssuerParams {
            cert_type: if parent.is_some() {
                CertKind::Intermediate
            } else {
                CertKind::Root
            },
            parent_cert_id: parent_cert.as_ref().map(|c| c.id),
            name: p.alias.clone(),
            description: p.memo.clone(),
            subject: p.subject.clone(),
            validity: Validity::Ttl(p.period_days.map_or(0, |d| u64::from(d) * 86_400)),
            back_date: 0,
            max_depth: -1,
            key: p.key,
            signature_algorithm: ncp_signature_algorithm(p.key),
            exclude_cn_from_sans: true,
            sans: p.sans.clone(),
        };
        let cert = self.make_issuer(who, store.id, params)?;
        let t = now_ms();
        let rec = NcpCaRecord {
            ca_tag: new_tag(),
            appkey: who.appkey.clone(),
            ca_id: self.db.ncp_next_ca_id()?,
            store_id: store.id,
            cert_id: Some(cert.id),
            ca_type: p.ca_type.name().into(),
            issuer_tag: p.issuer_tag.clone(),
            alias: p.alias,
            memo: p.memo,
            status: NcpStatus::ACTIVE.into(),
            status_before_destroy: None,
            status_updated_ms: t,
            destroy_at_ms: None,
            created_ms: t,
            ocsp_url: None,
            crl_expiry_days: None,
            pending: None,
            grants: vec![],
            external_chain: vec![],
        };
        self.db.put_ncp_ca(&rec)?;
        self.audit(
            who,
            "NCP_CA_CREATE",
            cert_target(&rec, Some(cert.id)),
            "SUCCESS",
        )?;
        self.db.durable()?;
        self.publish_tag(&rec);
        // The first CRL was signed before the CA had its tag; sign it again so it is there.
        if let Err(e) = self.publisher.renew_crl(&store, &cert) {
            log::warn!("first CRL of NCP CA {} not signed yet: {e}", rec.ca_tag);
        }
        Ok(rec)
    }

    /// Create CA of a PRIVATE_SUB without an issuer: a key in the HSM and a CSR made with it;
    /// the CA stays PENDING until Activate Sub CA brings the certificate signed elsewhere.
    fn ncp_create_pending(&self, who: &Actor, p: NcpCaParams) -> Result<NcpCaRecord, CaError> {
        let store = self.ncp_store(who)?;
        if !self.hsm.is_up() {
            return Err(CaError::HsmUnavailable("no key was generated".into()));
        }
        let tag = new_tag();
        let label = format!("pcad/{}/{}/ncp-{tag}", who.appkey, store.id);
        let key = self.hsm.generate_key(p.key, &label)?;
        let result = (|| {
            let alg = ncp_signature_algorithm(p.key);
            let signer = self.hsm.signer(key.id.clone(), alg);
            let der = crate::pki::subca::build_csr(&p.subject, &key.spki_der, &signer)?;
            let t = now_ms();
            let rec = NcpCaRecord {
                ca_tag: tag.clone(),
                appkey: who.appkey.clone(),
                ca_id: self.db.ncp_next_ca_id()?,
                store_id: store.id,
                cert_id: None,
                ca_type: NcpCaType::Sub.name().into(),
                issuer_tag: None,
                alias: p.alias.clone(),
                memo: p.memo.clone(),
                status: NcpStatus::PENDING.into(),
                status_before_destroy: None,
                status_updated_ms: t,
                destroy_at_ms: None,
                created_ms: t,
                ocsp_url: None,
                crl_expiry_days: None,
                pending: Some(crate::store::NcpPending {
                    key_id: key.id.to_hex(),
                    key_algorithm: p.key,
                    signature_algorithm: alg,
                    csr_pem: crate::pki::pem::encode("CERTIFICATE REQUEST", &der),
                }),
                grants: vec![],
                external_chain: vec![],
            };
            self.db.put_ncp_ca(&rec)?;
            self.audit(who, "NCP_CA_CREATE", cert_target(&rec, None), "SUCCESS")?;
            self.db.durable()?;
            Ok(rec)
        })();
        if result.is_err() {
            if let Err(e) = self.hsm.destroy_key(&key.id) {
                log::error!("could not destroy orphan key {}: {e}", key.id.to_hex());
            }
        }
        result
    }

    /// Get Sub CSR: the CSR of a PENDING sub CA.
    pub fn ncp_sub_csr(&self, ca: &NcpCa) -> Result<String, CaError> {
        ca.csr_pem.clone().ok_or_else(|| {
            err(
                "INVALID_CA_STATUS",
                "Invalid ca status. (only a PENDING sub CA for external signing has a CSR)",
            )
        })
    }

    /// Sign Sub Csr: an INTERMEDIATE certificate of CA `tag` for a key held elsewhere.
    pub fn ncp_sign_sub_csr(
        &self,
        who: &Actor,
        tag: &str,
        csr: crate::pki::csr::Csr,
        period_days: u32,
    ) -> Result<(NcpCa, Certificate), CaError> {
        let ca = self.ncp_record(&who.appkey, tag)?;
        if ca.status != NcpStatus::ACTIVE {
            return Err(err("INVALID_CA_STATUS", "Invalid ca status."));
        }
        let parent = self.ncp_cert(&ca)?;
        if now() + i64::from(period_days) * 86_400 > parent.not_after {
            return Err(err(
                "INVALID_INPUT_PERIOD",
                "period: The CA validity period can't be exceeded.",
            ));
        }
        if csr.subject.common_name.is_none() {
            return Err(err(
                "EMPTY_COMMON_NAME",
                "common name is missing. (in the CSR)",
            ));
        }
        let store = self.store(&ca.appkey, ca.store_id)?;
        let params = IssuerParams {
            cert_type: CertKind::Intermediate,
            parent_cert_id: Some(parent.id),
            name: csr.subject.common_name.clone().unwrap_or_default(),
            description: Some(format!("signed for an external key by NCP CA {tag}")),
            subject: csr.subject.clone(),
            validity: Validity::Ttl(u64::from(period_days) * 86_400),
            back_date: 0,
            max_depth: -1,
            key: csr.key_algorithm,
            signature_algorithm: ncp_signature_algorithm(csr.key_algorithm),
            exclude_cn_from_sans: true,
            sans: Sans::default(),
        };
        let cert = self.sign_external_issuer(who, &store, &parent, &params, &csr.spki_der)?;
        Ok((ca.into(), cert.into()))
    }

    /// Activate Sub CA: takes the certificate an outside CA signed for a PENDING sub CA and
    /// that CA's chain (its issuer first, up to the root); checks the key and the chain, then
    /// records it as an issuer whose key is the pending HSM key.
    pub fn ncp_activate(
        &self,
        who: &Actor,
        tag: &str,
        cert_der: Vec<u8>,
        chain: Vec<Vec<u8>>,
    ) -> Result<NcpCa, CaError> {
        use crate::pki::subca::{check_activation, ActivationError};
        let mut ca = self.ncp_record(&who.appkey, tag)?;
        let pending = match (&ca.pending, ca.status.as_str()) {
            (Some(p), NcpStatus::PENDING) => p.clone(),
            _ => return Err(err("INVALID_CA_STATUS", "Invalid ca status. (not PENDING)")),
        };
        let csr = crate::pki::csr::parse(&pending.csr_pem)?;
        check_activation(&cert_der, &csr.spki_der, &chain).map_err(|e| match e {
            ActivationError::Cert(m) => err(
                "INVALID_INPUT_CERT",
                &format!("certPem: Invalid certificate value. ({m})"),
            ),
            ActivationError::Chain(m) => err(
                "INVALID_INPUT_CA_CHAIN",
                &format!(
                    "caChainPem: Certificate validation failed: The CA chain is invalid. ({m})"
                ),
            ),
        })?;
        let info = crate::pki::cert::parse_info(&cert_der)?;
        if info.not_after <= now() {
            return Err(err("INVALID_INPUT_CERT", "certPem: Expired cert."));
        }
        let store = self.store(&ca.appkey, ca.store_id)?;
        let id = self.db.next_id()?;
        let serial: Vec<u8> = (0..info.serial_hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(info.serial_hex.get(i..i + 2)?, 16).ok())
            .collect();
        let sig_alg = signature_algorithm_of(&cert_der).unwrap_or(pending.signature_algorithm);
        let rec = CertRecord {
            id,
            appkey: ca.appkey.clone(),
            store_id: store.id,
            name: ca.alias.clone(),
            description: ca.memo.clone(),
            cert_type: CertType::Intermediate,
            parent_cert_id: None,
            template_id: None,
            serial: serial.clone(),
            der: cert_der,
            common_name: info.common_name,
            subject: info.subject,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            key_algorithm: pending.key_algorithm,
            signature_algorithm: sig_alg,
            issuer_key: Some(crate::store::IssuerKey {
                key_id: pending.key_id.clone(),
                key_algorithm: pending.key_algorithm,
                signature_algorithm: pending.signature_algorithm,
                max_depth: -1,
            }),
            sans: info.sans,
            crl_url: None,
            ocsp_url: None,
            revocation: None,
            created_at: now(),
        };
        let serial_rec = crate::store::SerialRecord {
            store_id: store.id,
            issuer_id: id,
            serial,
            cert_id: Some(id),
            not_after: rec.not_after,
            revocation: None,
        };
        self.db.insert_cert(Some(&rec), &serial_rec)?;
        ca.cert_id = Some(id);
        ca.pending = None;
        ca.status = NcpStatus::ACTIVE.into();
        ca.status_updated_ms = now_ms();
        ca.external_chain = chain.iter().map(|d| crate::pki::cert::to_pem(d)).collect();
        self.db.put_ncp_ca(&ca)?;
        self.audit(
            who,
            "NCP_CA_ACTIVATE",
            cert_target(&ca, Some(id)),
            "SUCCESS",
        )?;
        self.db.durable()?;
        self.publisher.issued(&store, &serial_rec, Some(&rec));
        self.publish_tag(&ca);
        Ok(ca.into())
    }

    /// The DER certificates above `cert` (its issuer first, up to the root), including those
    /// of the outside CA that signed an activated sub CA.
    pub(super) fn ncp_chain_above(&self, cert: &CertRecord) -> Result<Vec<Vec<u8>>, CaError> {
        let chain = self.chain(cert)?;
        let top = chain.last().unwrap_or(cert);
        let mut out: Vec<Vec<u8>> = chain.iter().map(|c| c.der.clone()).collect();
        if let Some(ca) = self.db.ncp_ca_by_cert(top.id)? {
            for pem in &ca.external_chain {
                out.push(crate::pki::cert::from_pem(pem)?);
            }
        }
        Ok(out)
    }

    /// Issue End Cert / Sign End Csr: a leaf of an ACTIVE CA. `key` is the key made for a
    /// GENERATE request (ignored for a CSR).
    #[allow(clippy::too_many_arguments)]
    pub fn ncp_issue(
        &self,
        who: &Actor,
        tag: &str,
        mode: LeafMode,
        key: KeyAlgorithm,
        subject: SubjectInfo,
        sans: Sans,
        period_days: Option<u32>,
    ) -> Result<NcpLeaf, CaError> {
        let ca = self.ncp_record(&who.appkey, tag)?;
        if ca.status != NcpStatus::ACTIVE {
            return Err(err("INVALID_CA_STATUS", "Invalid ca status."));
        }
        let issuer = self.ncp_cert(&ca)?;
        // Revoked (also through /v2.0) or expired: no more certificates.
        self.check_issuer_usable(&issuer, "caTag")?;
        if let Some(days) = period_days {
            if now() + i64::from(days) * 86_400 > issuer.not_after {
                return Err(err(
                    "INVALID_INPUT_PERIOD",
                    "period: The CA validity period can't be exceeded.",
                ));
            }
        }
        let store = self
            .db
            .store(&ca.appkey, ca.store_id)?
            .ok_or_else(|| CaError::Internal(format!("store of CA {tag} is missing")))?;
        let key_algorithm = match &mode {
            LeafMode::Sign(csr) => csr.key_algorithm,
            LeafMode::Generate => key,
        };
        let common_name = match &mode {
            LeafMode::Sign(csr) => csr.subject.common_name.clone(),
            LeafMode::Generate => subject.common_name.clone(),
        };
        let t = ncp_template(&ca, &issuer, key_algorithm, subject);
        let params = LeafParams {
            mode,
            common_name,
            cn_optional: false,
            validity: period_days.map(|d| Validity::Ttl(u64::from(d) * 86_400)),
            exclude_cn_from_sans: false,
            serial_number: None,
            sans,
        };
        let issued = self.issue_leaf_with(who, &store, issuer, &t, None, params)?;
        Ok(NcpLeaf {
            ca: ca.into(),
            issued,
        })
    }

    /// The stored end certificate `serial` of a CA, with the DER certificates above it.
    pub fn ncp_end_cert(
        &self,
        ca: &NcpCa,
        serial: &[u8],
    ) -> Result<(Certificate, Vec<Vec<u8>>), CaError> {
        let leaf = self.end_cert(&ca.appkey, ca.store_id, ca.cert_id, serial)?;
        let chain = self.ncp_chain_above(&leaf)?;
        Ok((leaf.into(), chain))
    }

    /// The stored certificate `serial` signed by issuer `issuer_id` of a store.
    fn end_cert(
        &self,
        appkey: &str,
        store_id: u64,
        issuer_id: Option<u64>,
        serial: &[u8],
    ) -> Result<CertRecord, CaError> {
        let issuer_id = issuer_id.ok_or_else(cert_not_found)?;
        let rec = self
            .db
            .serial(issuer_id, serial)?
            .ok_or_else(cert_not_found)?;
        let id = rec.cert_id.ok_or_else(cert_not_found)?;
        self.db
            .cert(appkey, store_id, id)?
            .ok_or_else(cert_not_found)
    }

    /// The leaves a CA signed (stored ones), in issuance order.
    pub(super) fn end_certs(
        &self,
        store_id: u64,
        issuer_id: Option<u64>,
    ) -> Result<Vec<CertRecord>, CaError> {
        let Some(issuer_id) = issuer_id else {
            return Ok(vec![]);
        };
        let page = self
            .db
            .list_certs(store_id, CertFilter::Leaf, None, 0, u64::MAX)?;
        Ok(page
            .items
            .into_iter()
            .filter(|c| c.parent_cert_id == Some(issuer_id))
            .collect())
    }

    /// Revoke End Cert: the v2.0 revocation of the leaf (published before this returns).
    pub fn ncp_revoke(&self, who: &Actor, tag: &str, serial: &[u8]) -> Result<(), CaError> {
        let ca = self.ncp_record(&who.appkey, tag)?;
        let cert = self.end_cert(&ca.appkey, ca.store_id, ca.cert_id, serial)?;
        if cert.is_issuer() {
            return Err(err("INVALID_CERT", "The CA certificate can't be revoked."));
        }
        if cert.revocation.is_some() {
            return Err(err("INVALID_CERT", "Invalid cert. (already revoked)"));
        }
        self.revoke(who, ca.store_id, cert.id, RevocationReason::Unspecified)?;
        Ok(())
    }

    /// Update CA: memo and status. DESTROYING schedules destruction after `delay` seconds;
    /// ACTIVE/DEACTIVATED cancels it.
    pub fn ncp_update(
        &self,
        who: &Actor,
        tag: &str,
        status: Option<&str>,
        memo: Option<String>,
        delay_secs: u64,
    ) -> Result<NcpCa, CaError> {
        let mut ca = self.ncp_record(&who.appkey, tag)?;
        if let Some(m) = memo {
            ca.memo = Some(m);
        }
        if let Some(s) = status {
            if s != ca.status {
                match (ca.status.as_str(), s) {
                    (NcpStatus::PENDING, NcpStatus::ACTIVE | NcpStatus::DEACTIVATED) => {
                        return Err(err(
                            "INVALID_CA_STATUS",
                            "status: Invalid ca status. (a PENDING CA becomes ACTIVE through Activate Sub CA)",
                        ))
                    }
                    (_, NcpStatus::DESTROYING) => {
                        ca.status_before_destroy = Some(ca.status.clone());
                        ca.destroy_at_ms =
                            Some(now_ms().saturating_add(delay_secs.saturating_mul(1000) as i64));
                    }
                    (_, NcpStatus::ACTIVE | NcpStatus::DEACTIVATED) => {
                        ca.destroy_at_ms = None;
                        ca.status_before_destroy = None;
                    }
                    _ => return Err(err("INVALID_INPUT_STATUS", "status: Invalid status value.")),
                }
                ca.status = if ca.cert_id.is_none() && s != NcpStatus::DESTROYING {
                    // A cancelled destruction of a CA never activated: still waiting.
                    NcpStatus::PENDING.to_owned()
                } else {
                    s.to_owned()
                };
                ca.status_updated_ms = now_ms();
            }
        }
        self.db.put_ncp_ca(&ca)?;
        self.audit(
            who,
            "NCP_CA_UPDATE",
            cert_target(&ca, ca.cert_id),
            "SUCCESS",
        )?;
        self.db.durable()?;
        Ok(ca.into())
    }

    /// Create/Delete OCSP: the URL written into the AIA of certificates issued from now on.
    pub fn ncp_set_ocsp(&self, who: &Actor, tag: &str, url: Option<String>) -> Result<(), CaError> {
        let mut ca = self.ncp_record(&who.appkey, tag)?;
        ca.ocsp_url = url;
        self.db.put_ncp_ca(&ca)?;
        self.audit(who, "NCP_OCSP_URL", cert_target(&ca, ca.cert_id), "SUCCESS")?;
        self.db.durable()?;
        Ok(())
    }

    /// Update CRL Config: the CRL cycle in days; the CRL is re-signed with it at once.
    pub fn ncp_set_crl_days(&self, who: &Actor, tag: &str, days: u32) -> Result<(), CaError> {
        let mut ca = self.ncp_record(&who.appkey, tag)?;
        let cert = self.ncp_cert(&ca)?;
        if now() + i64::from(days) * 86_400 > cert.not_after {
            return Err(err(
                "INVALID_INPUT",
                "expiry: must not go past the CA's expiry.",
            ));
        }
        ca.crl_expiry_days = Some(days);
        self.db.put_ncp_ca(&ca)?;
        self.audit(
            who,
            "NCP_CRL_CONFIG",
            cert_target(&ca, ca.cert_id),
            "SUCCESS",
        )?;
        self.db.durable()?;
        self.rotate_crl(&ca)
    }

    /// Rotate CRL: a fresh CRL of the CA now.
    pub(super) fn rotate_crl(&self, ca: &NcpCaRecord) -> Result<(), CaError> {
        let cert = self.ncp_cert(ca)?;
        let store = self.store(&ca.appkey, ca.store_id)?;
        self.publisher.renew_crl(&store, &cert)?;
        Ok(())
    }

    /// The CA's current CRL (DER), signed now if it has none yet.
    pub(super) fn crl_der(&self, ca: &NcpCaRecord) -> Result<Vec<u8>, CaError> {
        let cert = self.ncp_cert(ca)?;
        if let Some(crl) = self.publisher.crl(ca.store_id, cert.id)? {
            return Ok(crl.der);
        }
        self.rotate_crl(ca)?;
        self.publisher
            .crl(ca.store_id, cert.id)?
            .map(|crl| crl.der)
            .ok_or_else(|| CaError::Internal("CRL missing after signing".into()))
    }

    /// Trim CA: deletes the CA's expired end certificates and re-signs its CRL without them.
    pub fn ncp_trim(&self, who: &Actor, tag: &str) -> Result<usize, CaError> {
        let ca = self.ncp_record(&who.appkey, tag)?;
        let t = now();
        let expired: Vec<CertRecord> = self
            .end_certs(ca.store_id, ca.cert_id)?
            .into_iter()
            .filter(|c| c.not_after <= t)
            .collect();
        self.db.delete_certs(&expired)?;
        self.audit(who, "NCP_CA_TRIM", cert_target(&ca, ca.cert_id), "SUCCESS")?;
        self.db.durable()?;
        self.rotate_crl(&ca)?;
        Ok(expired.len())
    }

    /// Add/Delete CA User.
    pub fn ncp_grant(&self, who: &Actor, tag: &str, id_no: &str, add: bool) -> Result<(), CaError> {
        let mut ca = self.ncp_record(&who.appkey, tag)?;
        let has = ca.grants.iter().any(|g| g == id_no);
        match (add, has) {
            (true, false) => ca.grants.push(id_no.to_owned()),
            (false, true) => ca.grants.retain(|g| g != id_no),
            (true, true) => return Ok(()),
            (false, false) => return Err(err("INVALID_USER", "idNo: Invalid user.")),
        }
        self.db.put_ncp_ca(&ca)?;
        self.audit(
            who,
            if add {
                "NCP_USER_ADD"
            } else {
                "NCP_USER_DELETE"
            },
            cert_target(&ca, ca.cert_id),
            "SUCCESS",
        )?;
        self.db.durable()?;
        Ok(())
    }

    /// Delete CA: only a DESTROYING CA; destroys it with its sub CAs and their keys.
    pub fn ncp_delete(&self, who: &Actor, tag: &str) -> Result<(), CaError> {
        let ca = self.ncp_record(&who.appkey, tag)?;
        if ca.status != NcpStatus::DESTROYING {
            return Err(err(
                "INVALID_CA_STATUS",
                "Invalid ca status. (Delete CA needs DESTROYING)",
            ));
        }
        self.ncp_destroy(who, &ca)
    }

    /// Destroys the CAs whose destroy delay has passed (the scheduler calls this).
    pub fn ncp_destroy_due(&self) -> Result<usize, CaError> {
        let t = now_ms();
        let mut n = 0;
        for ca in self.db.all_ncp_cas()? {
            let due =
                ca.status == NcpStatus::DESTROYING && ca.destroy_at_ms.is_some_and(|d| d <= t);
            // A parent destroyed earlier in this pass took this one with it.
            if due && self.db.ncp_ca(&ca.ca_tag)?.is_some() {
                let who = Actor {
                    identity: "pcad".into(),
                    appkey: ca.appkey.clone(),
                };
                self.ncp_destroy(&who, &ca)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes a CA, its sub CAs, their certificates, CRLs and HSM keys. The HSM must answer
    /// first (nothing is removed while it is down); a key it fails to destroy is remembered.
    fn ncp_destroy(&self, who: &Actor, ca: &NcpCaRecord) -> Result<(), CaError> {
        self.hsm.list_keys()?;
        // The subtree, children after parents.
        let all = self.db.ncp_cas_of(&ca.appkey)?;
        let mut tree = vec![ca.clone()];
        let mut i = 0;
        while i < tree.len() {
            let tag = tree[i].ca_tag.clone();
            tree.extend(
                all.iter()
                    .filter(|c| c.issuer_tag.as_deref() == Some(&tag))
                    .cloned(),
            );
            i += 1;
        }
        let store = self.db.store(&ca.appkey, ca.store_id)?;
        let mut keys = Vec::new();
        for c in tree.iter().rev() {
            if let Some(cert_id) = c.cert_id {
                let leaves: Vec<CertRecord> = self
                    .db
                    .list_certs(c.store_id, CertFilter::Leaf, None, 0, u64::MAX)?
                    .items
                    .into_iter()
                    .filter(|l| l.parent_cert_id == Some(cert_id))
                    .collect();
                self.db.delete_certs(&leaves)?;
                if let Some(cert) = self.db.cert(&c.appkey, c.store_id, cert_id)? {
                    if let Some(k) = &cert.issuer_key {
                        keys.push((k.key_id.clone(), cert_id));
                    }
                    self.db.delete_certs(std::slice::from_ref(&cert))?;
                }
            }
            if let Some(p) = &c.pending {
                keys.push((p.key_id.clone(), 0));
            }
            self.db.delete_ncp_ca(c)?;
            self.audit(who, "NCP_CA_DESTROY", cert_target(c, c.cert_id), "SUCCESS")?;
        }
        self.db.durable()?;
        for c in &tree {
            self.publisher.ca_tag(&c.ca_tag, None);
        }
        if let Some(store) = &store {
            self.publisher.store_changed(store);
        }
        for (key_id, cert_id) in keys {
            let result = KeyId::from_hex(&key_id)
                .ok_or_else(|| format!("bad key id {key_id}"))
                .and_then(|k| self.hsm.destroy_key(&k).map_err(|e| e.to_string()));
            let target = Target {
                store: Some(ca.store_id),
                cert: Some(cert_id),
                ..Target::default()
            };
            match result {
                Ok(()) => self.audit_refusal(who, "KEY_DESTROY", target, "SUCCESS"),
                Err(e) => {
                    log::error!("NCP CA destroyed; key {key_id} will be destroyed when the HSM is back: {e}");
                    self.db.add_pending_destroy(&PendingDestroy {
                        key_id,
                        appkey: ca.appkey.clone(),
                        store_id: ca.store_id,
                        cert_id,
                    })?;
                    self.audit_refusal(who, "KEY_DESTROY", target, &format!("DEFERRED: {e}"));
                    self.db.durable()?;
                }
            }
        }
        Ok(())
    }
}

fn cert_not_found() -> CaError {
    CaError::NotFound("NOT_FOUND: The certificate doesn't exist.".into())
}

fn cert_target(ca: &NcpCaRecord, cert: Option<u64>) -> Target {
    Target {
        store: Some(ca.store_id),
        cert,
        ..Target::default()
    }
}

/// A fresh caTag: two groups of 8 lowercase hex digits, as NCP's look.
fn new_tag() -> String {
    let a: u32 = rand::random();
    let b: u32 = rand::random();
    format!("{a:08x}-{b:08x}")
}

/// The issuing rules of an NCP CA's end certificates, as an unstored template: subject and
/// SANs from the CSR (or the request), server and client authentication.
fn ncp_template(
    ca: &NcpCaRecord,
    issuer: &CertRecord,
    key: KeyAlgorithm,
    subject: SubjectInfo,
) -> TemplateRecord {
    let bits = match issuer.issuer_key.as_ref().map(|k| k.signature_algorithm) {
        Some(SignatureAlgorithm::Sha384WithEcdsa | SignatureAlgorithm::Sha384WithRsa) => 384,
        Some(SignatureAlgorithm::Sha512WithEcdsa | SignatureAlgorithm::Sha512WithRsa) => 512,
        _ => 256,
    };
    let key_usage = match key.family() {
        KeyFamily::Rsa => vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
        _ => vec![KeyUsage::DigitalSignature],
    };
    TemplateRecord {
        id: 0,
        appkey: ca.appkey.clone(),
        store_id: ca.store_id,
        spec: TemplateSpec {
            name: format!("ncp/{}", ca.ca_tag),
            description: None,
            parent_cert_id: issuer.id,
            max_ttl: None,
            max_specific_date: None,
            back_date_validation: 0,
            allow_ip_sans: true,
            url_sans_whitelist: vec!["*".into()],
            other_sans_whitelist: vec![],
            store_in_server: true,
            basic_constraints_valid_for_non_ca: true,
            use_csr_common_name: true,
            use_csr_sans: true,
            key_algorithm: key,
            key_algorithm_name: key.api_name().into(),
            signature_bits: bits,
            key_usage,
            extended_key_usage: vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth],
            extended_key_usage_oids: vec![],
            policies: vec![],
            subject_info: subject,
            use_csr_other_fields: true,
            other_fields: vec![],
        },
        created_at: 0,
        updated_at: 0,
    }
}

/// Starts the thread that destroys DESTROYING CAs once their delay has passed (checked every
/// second; the deadline is stored, so a restart carries on).
pub fn start_destroy_scheduler(ca: Ca) {
    let spawned = std::thread::Builder::new()
        .name("ncp-destroy".into())
        .spawn(move || loop {
            match ca.ncp_destroy_due() {
                Ok(0) => {}
                Ok(n) => log::info!("destroyed {n} NCP CA(s) whose destroy delay had passed"),
                Err(e) => log::warn!("NCP CA destruction will be retried: {e}"),
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        });
    if let Err(e) = spawned {
        log::error!("could not start the NCP destroy scheduler: {e}");
    }
}

/// The signature algorithm a certificate was signed with, if pcad knows it.
fn signature_algorithm_of(der: &[u8]) -> Option<SignatureAlgorithm> {
    use der::Decode;
    let c = x509_cert::Certificate::from_der(der).ok()?;
    SignatureAlgorithm::from_oid(&c.signature_algorithm().oid)
}

//! ROOT and INTERMEDIATE certificates: the key is generated in the HSM, the certificate is signed
//! by the parent's HSM key (or its own, for a root).

use super::{now, random_serial, Actor, Ca, CaError, CertKind, Certificate, Target};
use crate::pki::cert::{self, BasicConstraints, CertParams, KeyUsage, Sans, SubjectInfo};
use crate::pki::{KeyAlgorithm, SignatureAlgorithm};
use crate::store::{CertRecord, IdKind, IssuerKey, SerialRecord, StoreRecord};

/// How long a certificate is valid: the seed's `ttlValue` | `specificDate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Seconds from now; 0 means "as long as allowed".
    Ttl(u64),
    /// Unix seconds.
    Until(i64),
}

/// A checked Issue Certificate (Issuer) body.
#[derive(Clone, Debug)]
pub struct IssuerParams {
    /// ROOT or INTERMEDIATE.
    pub cert_type: CertKind,
    pub parent_cert_id: Option<u64>,
    pub name: String,
    pub description: Option<String>,
    pub subject: SubjectInfo,
    pub validity: Validity,
    pub back_date: u64,
    pub max_depth: i32,
    pub key: KeyAlgorithm,
    pub signature_algorithm: SignatureAlgorithm,
    pub exclude_cn_from_sans: bool,
    pub sans: Sans,
}

/// Ten years, the seed's longest ttlValue.
pub(crate) const MAX_TTL: u64 = 315_360_000;

impl Ca {
    /// Issues a ROOT or INTERMEDIATE: key generated in the HSM, certificate signed, record stored
    /// durably. On any failure after key generation, the new key is destroyed.
    pub fn create_issuer(
        &self,
        who: &Actor,
        store_id: u64,
        p: IssuerParams,
    ) -> Result<Certificate, CaError> {
        self.make_issuer(who, store_id, p).map(Certificate::from)
    }

    /// `create_issuer`, answering the stored record.
    pub(super) fn make_issuer(
        &self,
        who: &Actor,
        store_id: u64,
        p: IssuerParams,
    ) -> Result<CertRecord, CaError> {
        let appkey = who.appkey.as_str();
        let store = self.store(appkey, store_id)?;
        let parent = match (p.cert_type, p.parent_cert_id) {
            (CertKind::Intermediate, Some(pid)) => Some(self.usable_parent(&store, pid, &p)?),
            (CertKind::Intermediate, None) => {
                return Err(CaError::Invalid(
                    "parentCertId: required when certificateType is INTERMEDIATE".into(),
                ))
            }
            (CertKind::Root, Some(_)) => {
                return Err(CaError::Invalid(
                    "parentCertId: must be absent when certificateType is ROOT".into(),
                ))
            }
            (_, _) => None,
        };
        let t = now();
        let not_before = t - p.back_date as i64;
        let not_after = validity_end(t, p.validity, parent.as_ref().map(|c| c.not_after))?;
        if not_after <= not_before {
            return Err(CaError::Invalid(
                "ttlValue: the certificate would end before it starts".into(),
            ));
        }
        if let Some(parent) = &parent {
            if not_after > parent.not_after {
                return Err(CaError::Invalid(format!(
                    "ttlValue/specificDate: the certificate must not outlive its issuer (notAfter {})",
                    crate::clock::timestamp(parent.not_after)
                )));
            }
        }
        if !self.hsm.is_up() {
            return Err(CaError::HsmUnavailable("no key was generated".into()));
        }

        let id = self.db.next_id_of(IdKind::Cert)?;
        let label = format!("pcad/{appkey}/{store_id}/{id}");
        let key = match self.hsm.generate_key(p.key, &label) {
            Ok(key) => key,
            Err(e) => {
                // Nothing was written under the id: no gap in the ids.
                self.db.give_back_id(IdKind::Cert, id)?;
                return Err(e.into());
            }
        };
        let result = self.sign_and_store_issuer(
            who,
            &store,
            parent.as_ref(),
            id,
            &p,
            Some(&key),
            &key.spki_der,
            not_before,
            not_after,
        );
        if result.is_err() {
            if let Err(e) = self.hsm.destroy_key(&key.id) {
                log::error!("could not destroy orphan key {}: {e}", key.id.to_hex());
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn sign_and_store_issuer(
        &self,
        who: &Actor,
        store: &StoreRecord,
        parent: Option<&CertRecord>,
        id: u64,
        p: &IssuerParams,
        key: Option<&crate::hsm::GeneratedKey>,
        spki_der: &[u8],
        not_before: i64,
        not_after: i64,
    ) -> Result<CertRecord, CaError> {
        let issuer_id = parent.map(|c| c.id).unwrap_or(id);
        let serial = loop {
            let s = random_serial();
            if !self.db.serial_used(issuer_id, &s)? {
                break s;
            }
        };
        let mut sans = p.sans.clone();
        add_common_name(
            &mut sans,
            p.subject.common_name.as_deref(),
            p.exclude_cn_from_sans,
        );
        let params = CertParams {
            serial: serial.clone(),
            subject: p.subject.clone(),
            issuer_cert: parent.map(|c| c.der.clone()),
            not_before,
            not_after,
            spki_der: spki_der.to_vec(),
            basic_constraints: BasicConstraints::Ca {
                path_len: u8::try_from(p.max_depth).ok(),
            },
            key_usage: vec![
                KeyUsage::DigitalSignature,
                KeyUsage::KeyCertSign,
                KeyUsage::CrlSign,
            ],
            extended_key_usage: vec![],
            policies: vec![],
            sans,
            crl_url: parent.and_then(|c| self.crl_url(store, c.id)),
            ocsp_url: parent.and_then(|c| self.ocsp_url(store, c.id)),
        };
        let (der, signed_with) = match parent {
            Some(parent) => {
                let signer = self.issuer_signer(parent)?;
                let alg = signer_alg(parent);
                (cert::issue(&params, &signer)?, alg)
            }
            None => {
                let key = key.ok_or_else(|| {
                    CaError::Internal("a self-signed issuer needs its own key".into())
                })?;
                let signer = self.hsm.signer(key.id.clone(), p.signature_algorithm);
                (cert::issue(&params, &signer)?, p.signature_algorithm)
            }
        };
        let info = cert::parse_info(&der)?;
        let rec = CertRecord {
            id,
            appkey: store.appkey.clone(),
            store_id: store.id,
            name: p.name.clone(),
            description: p.description.clone(),
            cert_type: p.cert_type.into(),
            parent_cert_id: parent.map(|c| c.id),
            template_id: None,
            serial: serial.clone(),
            der,
            common_name: info.common_name,
            subject: info.subject,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            key_algorithm: p.key,
            signature_algorithm: signed_with,
            issuer_key: key.map(|key| IssuerKey {
                key_id: key.id.to_hex(),
                key_algorithm: p.key,
                signature_algorithm: p.signature_algorithm,
                max_depth: p.max_depth,
            }),
            sans: info.sans,
            crl_url: params.crl_url.clone(),
            ocsp_url: params.ocsp_url.clone(),
            revocation: None,
            created_at: now(),
        };
        let serial_rec = SerialRecord {
            store_id: store.id,
            issuer_id,
            serial,
            cert_id: Some(id),
            not_after: rec.not_after,
            revocation: None,
        };
        // A snapshot (`pcad backup`) sees this write and its publishing whole or not at all.
        let _whole = self.db.operation();
        self.db.insert_cert(Some(&rec), &serial_rec)?;
        let target = Target {
            store: Some(store.id),
            cert: Some(rec.id),
            template: None,
            serial: Some(rec.serial.clone()),
        };
        self.audit(who, "ISSUER_CREATE", target, "SUCCESS")?;
        self.db.durable()?;
        self.publisher.issued(store, &serial_rec, Some(&rec));
        Ok(rec)
    }

    /// An INTERMEDIATE certificate for a key held elsewhere (the NCP edition's Sign Sub Csr):
    /// signed by `parent` like any INTERMEDIATE, recorded without an issuer key (pcad cannot
    /// sign with it).
    pub(crate) fn sign_external_issuer(
        &self,
        who: &Actor,
        store: &StoreRecord,
        parent: &CertRecord,
        p: &IssuerParams,
        spki_der: &[u8],
    ) -> Result<CertRecord, CaError> {
        self.check_issuer_usable(parent, "caTag")?;
        let t = now();
        let not_after = validity_end(t, p.validity, Some(parent.not_after))?;
        if not_after > parent.not_after {
            return Err(CaError::Invalid(
                "INVALID_INPUT_PERIOD: period: The CA validity period can't be exceeded.".into(),
            ));
        }
        if !self.hsm.is_up() {
            return Err(CaError::HsmUnavailable("nothing was signed".into()));
        }
        let id = self.db.next_id()?;
        self.sign_and_store_issuer(
            who,
            store,
            Some(parent),
            id,
            p,
            None,
            spki_der,
            t,
            not_after,
        )
    }

    /// The parent of a new INTERMEDIATE: an unrevoked, unexpired issuer of this store whose
    /// maxDepth allows one more level, and whose depth budget the child respects.
    fn usable_parent(
        &self,
        store: &StoreRecord,
        parent_id: u64,
        p: &IssuerParams,
    ) -> Result<CertRecord, CaError> {
        let parent = self
            .db
            .cert(&store.appkey, store.id, parent_id)?
            .ok_or_else(|| {
                CaError::NotFound(format!(
                    "parentCertId: no certificate {parent_id} in store {}",
                    store.id
                ))
            })?;
        self.check_issuer_usable(&parent, "parentCertId")?;
        let depth = parent.issuer_key.as_ref().map(|k| k.max_depth).unwrap_or(0);
        if depth == 0 {
            return Err(CaError::Conflict(format!(
                "parentCertId: issuer {parent_id} has maxDepth 0 and cannot have an INTERMEDIATE below it"
            )));
        }
        if depth > 0 && (p.max_depth < 0 || p.max_depth > depth - 1) {
            return Err(CaError::Invalid(format!(
                "maxDepth: must be 0 to {} below issuer {parent_id} (its maxDepth is {depth})",
                depth - 1
            )));
        }
        Ok(parent)
    }

    /// An issuer that may sign: an issuer, not revoked, not expired.
    pub(crate) fn check_issuer_usable(
        &self,
        issuer: &CertRecord,
        field: &str,
    ) -> Result<(), CaError> {
        if !issuer.is_issuer() {
            return Err(CaError::Invalid(format!(
                "{field}: certificate {} is a LEAF, not an issuer",
                issuer.id
            )));
        }
        if issuer.revocation.is_some() {
            return Err(CaError::Conflict(format!(
                "{field}: issuer {} is revoked",
                issuer.id
            )));
        }
        if issuer.not_after <= now() {
            return Err(CaError::Conflict(format!(
                "{field}: issuer {} expired at {}",
                issuer.id,
                crate::clock::timestamp(issuer.not_after)
            )));
        }
        Ok(())
    }
}

fn signer_alg(issuer: &CertRecord) -> SignatureAlgorithm {
    issuer
        .issuer_key
        .as_ref()
        .map(|k| k.signature_algorithm)
        .unwrap_or(issuer.signature_algorithm)
}

/// The end of validity; `Ttl(0)` means as long as allowed (the issuer's end, or ten years).
pub(crate) fn validity_end(now: i64, v: Validity, cap: Option<i64>) -> Result<i64, CaError> {
    match v {
        Validity::Ttl(0) => Ok(cap.unwrap_or(now + MAX_TTL as i64)),
        Validity::Ttl(s) => Ok(now + s as i64),
        Validity::Until(t) if t <= now => Err(CaError::Invalid(
            "specificDate: must be in the future".into(),
        )),
        Validity::Until(t) => Ok(t),
    }
}

/// Copies the common name into the SANs as Vault does: a hostname into DNS names, an email
/// address into email names, anything else nowhere.
pub(crate) fn add_common_name(sans: &mut Sans, cn: Option<&str>, exclude: bool) {
    let Some(cn) = cn else { return };
    if exclude {
        return;
    }
    if cert::is_valid_hostname(cn) {
        if !sans.dns.iter().any(|d| d.eq_ignore_ascii_case(cn)) {
            sans.dns.insert(0, cn.to_owned());
        }
    } else if cert::is_email(cn) && !sans.email.iter().any(|e| e == cn) {
        sans.email.insert(0, cn.to_owned());
    }
}

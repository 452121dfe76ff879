//! Leaf issuance through a template (GENERATE: key made in software and handed back; SIGN: a
//! CSR's key), and revocation.

use super::issuer::{add_common_name, Validity};
use super::{now, random_serial, Actor, Ca, CaError, Certificate, Target};
use crate::pki::cert::{self, BasicConstraints, CertParams, OidValue, Sans, SubjectInfo};
use crate::pki::crl::RevocationReason;
use crate::pki::csr::Csr;
use crate::pki::keygen::SoftKey;
use crate::pki::Signer;

use crate::store::{CertRecord, CertType, IdKind, Revocation, SerialRecord, TemplateRecord};

/// GENERATE or SIGN.
#[derive(Clone, Debug)]
pub enum LeafMode {
    Generate,
    Sign(Box<Csr>),
}

/// A checked "Issue Certificate Using Template" body (format choices stay with the API).
#[derive(Clone, Debug)]
pub struct LeafParams {
    pub mode: LeafMode,
    pub common_name: Option<String>,
    /// With no common name (none given, none taken from the CSR): issue with the SANs alone and
    /// a subject without CN instead of refusing (ACME: IP-only orders, names over 64 characters).
    /// The v2.0 and NCP editions keep requiring one.
    pub cn_optional: bool,
    pub validity: Option<Validity>,
    pub exclude_cn_from_sans: bool,
    pub serial_number: Option<String>,
    pub sans: Sans,
}

/// The private key of a GENERATE-mode leaf: returned once, never stored.
pub struct LeafKey(pub SoftKey);

/// An issued leaf with what the answer needs.
pub struct IssuedLeaf {
    /// `None` when the template does not store certificates.
    pub cert_id: Option<u64>,
    pub serial: Vec<u8>,
    pub der: Vec<u8>,
    pub not_after: i64,
    /// The issuer first, up to and including the root.
    pub chain: Vec<Certificate>,
    pub key: Option<LeafKey>,
}

impl Ca {
    /// Issues a leaf from template `template_id`. Every rule is checked before the serial is
    /// drawn; nothing is recorded unless the certificate was signed.
    pub fn issue_leaf(
        &self,
        who: &Actor,
        store_id: u64,
        template_id: u64,
        p: LeafParams,
    ) -> Result<IssuedLeaf, CaError> {
        let appkey = who.appkey.as_str();
        let store = self.store(appkey, store_id)?;
        // `Ca::template` would read the store again.
        let t = self
            .db
            .template(appkey, store_id, template_id)?
            .ok_or_else(|| {
                CaError::NotFound(format!(
                    "templateId: no template {template_id} in store {store_id}"
                ))
            })?;
        let issuer = self
            .db
            .cert(appkey, store_id, t.spec.parent_cert_id)?
            .ok_or_else(|| {
                CaError::Conflict(format!(
                    "template {template_id}: its issuer {} no longer exists",
                    t.spec.parent_cert_id
                ))
            })?;
        self.check_issuer_usable(&issuer, "template.parentCertId")?;
        self.issue_leaf_with(who, &store, issuer, &t, Some(t.id), p)
    }

    /// Issues a leaf of `issuer` under the rules of `t`, which the NCP edition builds in memory
    /// (`template_id` None): the one issuing path of both editions.
    pub(crate) fn issue_leaf_with(
        &self,
        who: &Actor,
        store: &crate::store::StoreRecord,
        issuer: CertRecord,
        t: &TemplateRecord,
        template_id: Option<u64>,
        p: LeafParams,
    ) -> Result<IssuedLeaf, CaError> {
        let appkey = who.appkey.as_str();
        let store_id = store.id;
        let (subject, sans) = profile(t, &p)?;
        let start = now();
        let not_before = start - t.spec.back_date_validation as i64;
        let not_after = leaf_end(start, p.validity, t, issuer.not_after)?;

        let (spki_der, key, key_algorithm) = match &p.mode {
            LeafMode::Generate => {
                let key = SoftKey::generate(t.spec.key_algorithm)?;
                (key.spki_der(), Some(LeafKey(key)), t.spec.key_algorithm)
            }
            LeafMode::Sign(csr) => {
                if csr.key_algorithm != t.spec.key_algorithm {
                    return Err(CaError::Csr(format!(
                        "csr: key is {} {}, the template requires {} {}",
                        csr.key_algorithm.api_name(),
                        csr.key_algorithm.key_size(),
                        t.spec.key_algorithm.api_name(),
                        t.spec.key_algorithm.key_size()
                    )));
                }
                (csr.spki_der.clone(), None, csr.key_algorithm)
            }
        };
        if !self.hsm.is_up() {
            return Err(CaError::HsmUnavailable("nothing was issued".into()));
        }

        let issuer_key = issuer
            .issuer_key
            .as_ref()
            .ok_or_else(|| CaError::Internal(format!("issuer {} has no key", issuer.id)))?;
        let sig_alg = issuer_key
            .key_algorithm
            .signature_algorithm(t.spec.signature_bits);
        let key_id = crate::hsm::KeyId::from_hex(&issuer_key.key_id)
            .ok_or_else(|| CaError::Internal(format!("issuer {} has a bad key id", issuer.id)))?;
        let signer = self.hsm.signer(key_id, sig_alg);

        // 127 random bits: a repeat is not looked for beforehand (that read raced with
        // concurrent issuances anyway); `insert_cert` refuses one (409) with nothing recorded.
        let serial = random_serial();
        let mut ekus: Vec<crate::pki::oid::Oid> = t
            .spec
            .extended_key_usage
            .iter()
            .map(|e| e.oid().into())
            .collect();
        for o in &t.spec.extended_key_usage_oids {
            ekus.push(o.parse().map_err(|_| {
                CaError::Internal(format!("template {} has a bad EKU OID {o}", t.id))
            })?);
        }
        let policies = t
            .spec
            .policies
            .iter()
            .map(|o| {
                o.parse().map_err(|_| {
                    CaError::Internal(format!("template {} has a bad policy OID {o}", t.id))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let params = CertParams {
            serial: serial.clone(),
            subject,
            issuer_cert: Some(issuer.der.clone()),
            not_before,
            not_after,
            spki_der,
            basic_constraints: if t.spec.basic_constraints_valid_for_non_ca {
                BasicConstraints::NotCa
            } else {
                BasicConstraints::Absent
            },
            key_usage: t.spec.key_usage.clone(),
            extended_key_usage: ekus,
            policies,
            sans,
            crl_url: self.crl_url(store, issuer.id),
            ocsp_url: self.ocsp_url(store, issuer.id),
        };
        let (der, info) = cert::issue_with_info(&params, &signer)?;

        let cert_id = if t.spec.store_in_server {
            Some(self.db.next_id_of(IdKind::Cert)?)
        } else {
            None
        };
        let rec = cert_id.map(|id| CertRecord {
            id,
            appkey: appkey.to_owned(),
            store_id,
            name: info
                .common_name
                .clone()
                .unwrap_or_else(|| hex_name(&serial)),
            description: None,
            cert_type: CertType::Leaf,
            parent_cert_id: Some(issuer.id),
            template_id,
            serial: serial.clone(),
            der: der.clone(),
            common_name: info.common_name.clone(),
            subject: info.subject,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            key_algorithm,
            signature_algorithm: sig_alg,
            issuer_key: None,
            sans: info.sans,
            crl_url: params.crl_url.clone(),
            ocsp_url: params.ocsp_url.clone(),
            revocation: None,
            created_at: now(),
        });
        let serial_rec = SerialRecord {
            store_id,
            issuer_id: issuer.id,
            serial: serial.clone(),
            cert_id,
            not_after: info.not_after,
            revocation: None,
        };
        // A snapshot (`pcad backup`) sees this write and its publishing whole or not at all.
        let _whole = self.db.operation();
        self.db.insert_cert(rec.as_ref(), &serial_rec)?;
        let target = Target {
            store: Some(store_id),
            cert: cert_id,
            template: template_id,
            serial: Some(serial.clone()),
        };
        self.audit(who, "LEAF_ISSUE", target, "SUCCESS")?;
        self.db.durable()?;
        self.publisher.issued(store, &serial_rec, rec.as_ref());
        let above = self.chain(&issuer)?;
        let mut chain = Vec::with_capacity(1 + above.len());
        chain.push(Certificate::from(issuer));
        chain.extend(above.into_iter().map(Certificate::from));
        Ok(IssuedLeaf {
            cert_id,
            serial,
            der,
            not_after: info.not_after,
            chain,
            key,
        })
    }

    /// Revokes a LEAF or INTERMEDIATE; the revocation is durable and published (CRL, OCSP)
    /// before this returns.
    pub fn revoke(
        &self,
        who: &Actor,
        store_id: u64,
        cert_id: u64,
        reason: RevocationReason,
    ) -> Result<Certificate, CaError> {
        let store = self.store(&who.appkey, store_id)?;
        let cert = self.cert(&who.appkey, store_id, cert_id)?;
        if cert.cert_type == CertType::Root {
            return Err(CaError::Conflict(format!(
                "certId: {cert_id} is a ROOT; a root cannot be revoked (delete its store instead)"
            )));
        }
        if cert.revocation.is_some() {
            return Err(CaError::Conflict(format!(
                "certId: {cert_id} is already revoked"
            )));
        }
        // A revocation that cannot be published is refused, with nothing written: prove the
        // issuer's key signs now (one small signature; revokes are rare).
        let issuer_id = cert.parent_cert_id.unwrap_or(cert.id);
        let issuer = self.cert(&who.appkey, store_id, issuer_id)?;
        let probe = self.issuer_signer(&issuer)?.sign(b"pcad revocation probe");
        if let Err(e) = probe {
            return Err(match crate::pki::PkiError::Sign(e).into() {
                CaError::HsmUnavailable(m) => CaError::HsmUnavailable(format!(
                    "{m}; the revocation could not be published, so it was not recorded"
                )),
                other => other,
            });
        }
        // A snapshot (`pcad backup`) sees this write and its publishing whole or not at all.
        let _whole = self.db.operation();
        let revocation = Revocation { at: now(), reason };
        // The OCSP tombstone goes to disk with the revocation (one transaction, one fsync
        // below): a crash before `revoked` re-signs cannot leave a persisted `good` served.
        let tombstone =
            match self
                .publisher
                .revocation_tombstone(&issuer, &cert.serial, revocation.at)
            {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!("no OCSP tombstone for certificate {cert_id}: {e}");
                    None
                }
            };
        let rec = self.db.revoke_with_tombstone(
            &cert,
            revocation,
            tombstone.as_ref().map(|t| (store_id, t)),
        )?;
        let target = Target {
            store: Some(store_id),
            cert: Some(cert_id),
            template: None,
            serial: Some(rec.serial.clone()),
        };
        self.audit(who, "CERT_REVOKE", target, "SUCCESS")?;
        self.db.durable()?;
        if let Err(e) = self.publisher.revoked(&store, &rec) {
            // The revocation is durable and its stale responses are gone (OCSP answers tryLater
            // for it); the scheduler publishes it as soon as the HSM signs again.
            log::error!("certificate {cert_id} revoked but not yet published, will retry: {e}");
            self.publisher.retry_revoked(&store, &rec);
        }
        Ok(rec.into())
    }
}

/// Subject and SANs of the leaf, from the template and the request (and the CSR where the
/// template lets it speak).
fn profile(t: &TemplateRecord, p: &LeafParams) -> Result<(SubjectInfo, Sans), CaError> {
    let csr = match &p.mode {
        LeafMode::Sign(csr) => Some(csr.as_ref()),
        LeafMode::Generate => None,
    };
    let common_name = match csr {
        Some(c) if t.spec.use_csr_common_name && c.subject.common_name.is_some() => {
            c.subject.common_name.clone()
        }
        _ => p.common_name.clone(),
    };
    let common_name = match common_name {
        Some(cn) => Some(cn),
        None if p.cn_optional => None,
        None => {
            return Err(CaError::Invalid(if csr.is_some() {
                "commonName: required (the template does not take the CSR's common name, or the CSR has none)".into()
            } else {
                "commonName: required in GENERATE mode".into()
            }))
        }
    };
    if let Some(common_name) = &common_name {
        if common_name.chars().count() > 64 {
            return Err(CaError::Invalid(
                "commonName: must be at most 64 characters".into(),
            ));
        }
        if let Some(c) = common_name.chars().find(|c| c.is_control()) {
            return Err(CaError::Csr(format!(
                "commonName: control character U+{:04X} is not allowed",
                c as u32
            )));
        }
    }
    let mut subject = match csr {
        Some(c) if t.spec.use_csr_other_fields => SubjectInfo {
            common_name: None,
            ..c.subject.clone()
        },
        _ => SubjectInfo {
            other: t.spec.other_fields.clone(),
            ..t.spec.subject_info.clone()
        },
    };
    subject.common_name = common_name.clone();
    if let Some(sn) = &p.serial_number {
        subject.serial_number = Some(sn.clone());
    }

    let from_csr = csr.is_some() && t.spec.use_csr_sans;
    let mut sans = match csr {
        Some(c) if t.spec.use_csr_sans => c.sans.clone(),
        _ => p.sans.clone(),
    };
    // Names the template forbids: 400 naming the request field, or naming the CSR (40002) when
    // the names came from it.
    let refuse = |field: String, rule: String| {
        if from_csr {
            CaError::Csr(format!("csr: {field} {rule}"))
        } else {
            CaError::Invalid(format!("{field}: {rule}"))
        }
    };
    if !sans.ip.is_empty() && !t.spec.allow_ip_sans {
        return Err(refuse(
            "ipSans".into(),
            "the template does not allow IP SANs (allowIpSans is false)".into(),
        ));
    }
    for (i, u) in sans.uri.iter().enumerate() {
        if !t.spec.url_sans_whitelist.iter().any(|g| glob(g, u)) {
            return Err(refuse(
                format!("urlSans[{i}]"),
                format!("{u:?} matches no entry of the template's urlSansWhitelist"),
            ));
        }
    }
    for (i, o) in sans.other.iter().enumerate() {
        if !t
            .spec
            .other_sans_whitelist
            .iter()
            .any(|w| other_san_allowed(w, o))
        {
            return Err(refuse(
                format!("otherSans[{i}]"),
                format!(
                    "{} {:?} matches no entry of the template's otherSansWhitelist",
                    o.oid, o.value
                ),
            ));
        }
    }
    // Whatever the values came from (request, template, CSR): no control character is signed.
    let texts = [
        ("commonName", subject.common_name.as_deref()),
        ("subject.serialNumber", subject.serial_number.as_deref()),
        ("subject.country", subject.country.as_deref()),
        (
            "subject.stateOrProvince",
            subject.state_or_province.as_deref(),
        ),
        ("subject.locality", subject.locality.as_deref()),
        ("subject.streetAddress", subject.street_address.as_deref()),
        ("subject.postalCode", subject.postal_code.as_deref()),
        ("subject.organization", subject.organization.as_deref()),
        (
            "subject.organizationalUnit",
            subject.organizational_unit.as_deref(),
        ),
    ];
    let lists = [
        (
            "otherFields",
            subject
                .other
                .iter()
                .map(|o| o.value.as_str())
                .collect::<Vec<_>>(),
        ),
        ("sans", sans.dns.iter().map(String::as_str).collect()),
        ("urlSans", sans.uri.iter().map(String::as_str).collect()),
        (
            "otherSans",
            sans.other.iter().map(|o| o.value.as_str()).collect(),
        ),
    ];
    let named = texts
        .into_iter()
        .filter_map(|(f, v)| v.map(|v| (f.to_owned(), v)))
        .chain(lists.iter().flat_map(|(f, vs)| {
            vs.iter()
                .enumerate()
                .map(move |(i, v)| (format!("{f}[{i}]"), *v))
        }));
    for (field, v) in named {
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(refuse(
                field,
                format!("contains control character U+{:04X}", c as u32),
            ));
        }
    }
    add_common_name(&mut sans, common_name.as_deref(), p.exclude_cn_from_sans);
    if sans.is_empty()
        && crate::pki::name::encode(&subject).is_ok_and(|d| crate::pki::name::is_empty(&d))
    {
        // RFC 5280 §4.1.2.6: an empty subject needs a (then critical) subjectAltName.
        return Err(CaError::Invalid(
            "sans: at least one SAN is required when the certificate has no subject".into(),
        ));
    }
    Ok((subject, sans))
}

/// The leaf's notAfter: the request's TTL or date, capped by the template's maxTTL or
/// maxSpecificDate and by the issuer's notAfter. Absent or 0 means as long as allowed.
fn leaf_end(
    now: i64,
    v: Option<Validity>,
    t: &TemplateRecord,
    issuer_end: i64,
) -> Result<i64, CaError> {
    let cap = match (t.spec.max_ttl, t.spec.max_specific_date) {
        (Some(0), _) | (None, None) => now + super::issuer::MAX_TTL as i64,
        (Some(ttl), _) => now + ttl as i64,
        (None, Some(date)) => date,
    };
    let end = match v {
        None | Some(Validity::Ttl(0)) => cap.min(issuer_end),
        Some(Validity::Ttl(s)) => now + s as i64,
        Some(Validity::Until(d)) if d <= now => {
            return Err(CaError::Invalid(
                "specificDate: must be in the future".into(),
            ))
        }
        Some(Validity::Until(d)) => d,
    };
    if end > cap {
        let rule = match t.spec.max_ttl {
            Some(ttl) => format!("must not exceed the template's maxTTL of {ttl} seconds"),
            None => format!(
                "must not be after the template's maxSpecificDate {}",
                crate::clock::timestamp(cap)
            ),
        };
        return Err(CaError::Invalid(format!("ttlValue/specificDate: {rule}")));
    }
    if end > issuer_end {
        return Err(CaError::Invalid(format!(
            "ttlValue/specificDate: the certificate must not outlive its issuer (notAfter {})",
            crate::clock::timestamp(issuer_end)
        )));
    }
    if end <= now {
        return Err(CaError::Invalid(
            "ttlValue: the issuer or template leaves no validity".into(),
        ));
    }
    Ok(end)
}

/// Vault's allowed_other_sans: same OID and string type, value matched as a glob.
fn other_san_allowed(allowed: &OidValue, o: &OidValue) -> bool {
    allowed.oid == o.oid && allowed.kind == o.kind && glob(&allowed.value, &o.value)
}

/// Glob match with `*` (any run, also empty) and `?` (one character).
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn hex_name(serial: &[u8]) -> String {
    crate::pki::der_util::hex(serial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::cert::{ExtendedKeyUsage, KeyUsage};
    use crate::pki::profile::TemplateSpec;
    use crate::pki::{KeyAlgorithm, SignatureAlgorithm};

    fn template() -> TemplateRecord {
        TemplateRecord {
            id: 1,
            appkey: "k".into(),
            store_id: 1,
            spec: TemplateSpec {
                name: "acme".into(),
                description: None,
                parent_cert_id: 1,
                max_ttl: None,
                max_specific_date: None,
                back_date_validation: 0,
                allow_ip_sans: true,
                url_sans_whitelist: vec![],
                other_sans_whitelist: vec![],
                store_in_server: true,
                basic_constraints_valid_for_non_ca: true,
                use_csr_common_name: false,
                use_csr_sans: false,
                key_algorithm: KeyAlgorithm::P256,
                key_algorithm_name: "EC".into(),
                signature_bits: 256,
                key_usage: vec![KeyUsage::DigitalSignature],
                extended_key_usage: vec![ExtendedKeyUsage::ServerAuth],
                extended_key_usage_oids: vec![],
                policies: vec![],
                subject_info: SubjectInfo::default(),
                use_csr_other_fields: false,
                other_fields: vec![],
            },
            created_at: 0,
            updated_at: 0,
        }
    }

    fn params(cn_optional: bool, sans: Sans) -> LeafParams {
        LeafParams {
            mode: LeafMode::Generate,
            common_name: None,
            cn_optional,
            validity: None,
            exclude_cn_from_sans: false,
            serial_number: None,
            sans,
        }
    }

    /// No common name: refused unless the caller (ACME) lets the SANs stand alone; then the
    /// subject is empty and the SAN extension critical (RFC 5280 §4.2.1.6), as openssl reads it.
    #[test]
    fn no_common_name_gives_an_empty_subject_and_a_critical_san() {
        let long = format!("{}.example.com", "a".repeat(58));
        assert_eq!(long.len(), 70);
        let sans = Sans {
            dns: vec![long.clone()],
            ip: vec!["127.0.0.1".parse().unwrap()],
            ..Sans::default()
        };
        let t = template();
        let e = profile(&t, &params(false, sans.clone())).unwrap_err();
        assert!(e.to_string().contains("commonName: required"), "{e}");
        let e = profile(&t, &params(true, Sans::default())).unwrap_err();
        assert!(e.to_string().contains("sans: at least one SAN"), "{e}");

        let (subject, got) = profile(&t, &params(true, sans)).unwrap();
        assert_eq!(subject.common_name, None);
        assert_eq!(got.dns, vec![long.clone()]);
        let key = SoftKey::generate(KeyAlgorithm::P256).unwrap();
        let signer = key.signer(SignatureAlgorithm::Sha256WithEcdsa);
        let der = cert::issue(
            &CertParams {
                serial: vec![1, 2, 3],
                subject,
                issuer_cert: None,
                not_before: now() - 60,
                not_after: now() + 3600,
                spki_der: key.spki_der(),
                basic_constraints: BasicConstraints::NotCa,
                key_usage: t.spec.key_usage.clone(),
                extended_key_usage: vec![],
                policies: vec![],
                sans: got,
                crl_url: None,
                ocsp_url: None,
            },
            &signer,
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("pcad-leaf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bare.der");
        std::fs::write(&path, &der).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("Subject: \n") || text.contains("Subject:\n"),
            "{text}"
        );
        assert!(
            text.contains("X509v3 Subject Alternative Name: critical"),
            "{text}"
        );
        assert!(
            text.contains(&format!("DNS:{long}, IP Address:127.0.0.1")),
            "{text}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob("https://*.example.com/*", "https://a.example.com/x/y"));
        assert!(glob("spiffe://cluster/ns/*", "spiffe://cluster/ns/default"));
        assert!(!glob("https://*.example.com/*", "http://a.example.com/x"));
        assert!(glob("*", ""));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
    }
}

//! Which identifiers a directory may order (ACME.md "Identifiers"), and the names of a CSR.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::problem::Problem;
use crate::pki::cert::is_valid_hostname;
use crate::pki::csr::Csr;
use crate::store::{AcmeIdentifier, CertRecord};

/// Most identifiers in one order.
pub const MAX_IDENTIFIERS: usize = 100;

/// An identifier the base certificate allows, normalized; `wildcard` for `*.` names.
pub struct Allowed {
    pub identifier: AcmeIdentifier,
    pub wildcard: bool,
}

fn base_dns(base: &CertRecord) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = base
        .sans
        .dns
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    if let Some(cn) = &base.common_name {
        if is_valid_hostname(cn) {
            names.insert(cn.to_ascii_lowercase());
        }
    }
    names
}

/// Checks one identifier against the base certificate: its common name and SANs, where a
/// `*.example.com` SAN allows one label in place of `*`, and itself (dns-01 only).
pub fn check(base: &CertRecord, allow_ip: bool, id: &AcmeIdentifier) -> Result<Allowed, Problem> {
    let reject = |why: String| Problem::new("rejectedIdentifier", 400, why);
    match id.kind.as_str() {
        "dns" => {
            let v = id.value.to_ascii_lowercase();
            if !is_valid_hostname(&v) {
                return Err(Problem::new(
                    "rejectedIdentifier",
                    400,
                    format!("identifier {:?}: not a DNS name", id.value),
                ));
            }
            let names = base_dns(base);
            let wildcard = v.starts_with("*.");
            let allowed = names.contains(&v)
                || (!wildcard
                    && v.split_once('.')
                        .is_some_and(|(_, parent)| names.contains(&format!("*.{parent}"))));
            if !allowed {
                return Err(reject(format!(
                    "identifier {v:?}: not among the names of base certificate {}",
                    base.id
                )));
            }
            Ok(Allowed {
                identifier: AcmeIdentifier {
                    kind: "dns".into(),
                    value: v,
                },
                wildcard,
            })
        }
        "ip" => {
            let ip: IpAddr = id.value.parse().map_err(|_| {
                Problem::malformed(format!("identifier {:?}: not an IP address", id.value))
            })?;
            if !allow_ip {
                return Err(reject(format!(
                    "identifier {ip}: the base certificate's template does not allow IP SANs"
                )));
            }
            if !base.sans.ip.contains(&ip) {
                return Err(reject(format!(
                    "identifier {ip}: not among the IP addresses of base certificate {}",
                    base.id
                )));
            }
            Ok(Allowed {
                identifier: AcmeIdentifier {
                    kind: "ip".into(),
                    value: ip.to_string(),
                },
                wildcard: false,
            })
        }
        other => Err(Problem::new(
            "unsupportedIdentifier",
            400,
            format!("identifier type {other:?}: only dns and ip"),
        )),
    }
}

/// The names a CSR asks for, as identifiers; refuses names of other kinds.
pub fn of_csr(csr: &Csr) -> Result<BTreeSet<(String, String)>, Problem> {
    let s = &csr.sans;
    if !s.uri.is_empty() || !s.email.is_empty() || !s.other.is_empty() {
        return Err(Problem::new(
            "badCSR",
            400,
            "csr: only DNS and IP names may be requested over ACME",
        ));
    }
    let mut set: BTreeSet<(String, String)> = s
        .dns
        .iter()
        .map(|d| ("dns".to_owned(), d.to_ascii_lowercase()))
        .chain(s.ip.iter().map(|ip| ("ip".to_owned(), ip.to_string())))
        .collect();
    if let Some(cn) = &csr.subject.common_name {
        match cn.parse::<IpAddr>() {
            Ok(ip) => set.insert(("ip".into(), ip.to_string())),
            Err(_) => set.insert(("dns".into(), cn.to_ascii_lowercase())),
        };
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CertRecord {
        let mut c = CertRecord::sample(9, 1, crate::store::CertType::Leaf);
        c.name = "b".into();
        c.parent_cert_id = Some(2);
        c.template_id = Some(3);
        c.serial = vec![1];
        c.der = vec![];
        c.common_name = Some("www.example.com".into());
        c.sans.dns = vec!["*.apps.example.com".into(), "api.example.com".into()];
        c.sans.ip = vec!["10.0.0.1".parse().unwrap()];
        c
    }

    fn id(kind: &str, v: &str) -> AcmeIdentifier {
        AcmeIdentifier {
            kind: kind.into(),
            value: v.into(),
        }
    }

    #[test]
    fn only_the_base_names_and_one_label_under_a_wildcard() {
        let b = base();
        for ok in [
            "www.example.com",
            "API.example.com",
            "a.apps.example.com",
            "*.apps.example.com",
        ] {
            assert!(check(&b, false, &id("dns", ok)).is_ok(), "{ok}");
        }
        for bad in [
            "example.com",
            "a.b.apps.example.com",
            "*.example.com",
            "evil.com",
            "a..b",
        ] {
            let e = check(&b, false, &id("dns", bad)).err().unwrap();
            assert_eq!(e.kind, "rejectedIdentifier", "{bad}");
        }
        assert!(check(&b, true, &id("ip", "10.0.0.1")).is_ok());
        assert!(check(&b, false, &id("ip", "10.0.0.1")).is_err());
        assert!(check(&b, true, &id("ip", "10.0.0.2")).is_err());
        assert_eq!(
            check(&b, true, &id("email", "a@b")).err().unwrap().kind,
            "unsupportedIdentifier"
        );
    }
}

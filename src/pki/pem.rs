//! RFC 7468 PEM: the textual armour around certificates, requests and keys.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::PkiError;

/// `-----BEGIN {label}-----`, the base64 of `der` in 64-column lines, `-----END {label}-----`,
/// each line ending in `\n`.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The first block whose label is one of `labels`: its label and its decoded contents.
pub fn decode_first<'l>(text: &str, labels: &[&'l str]) -> Result<(&'l str, Vec<u8>), PkiError> {
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_end) = body_start.find(&end_marker) else {
            return Err(PkiError::Invalid(format!("PEM: no END line for {label}")));
        };
        if let Some(wanted) = labels.iter().find(|l| **l == label) {
            let body: String = body_start[..body_end]
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let der = STANDARD
                .decode(body)
                .map_err(|e| PkiError::Invalid(format!("PEM: bad base64 in {label}: {e}")))?;
            return Ok((wanted, der));
        }
        rest = &body_start[body_end + end_marker.len()..];
    }
    Err(PkiError::Invalid(format!(
        "PEM: no {} block",
        labels.join(" or ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_skip_other_blocks() {
        let der: Vec<u8> = (0..=200).collect();
        let cert = encode("CERTIFICATE", &der);
        assert!(cert.lines().all(|l| l.len() <= 64));
        let text = format!("{}junk\n{cert}", encode("PRIVATE KEY", &[1, 2, 3]));
        assert_eq!(
            decode_first(&text, &["CERTIFICATE"]).unwrap(),
            ("CERTIFICATE", der)
        );
        assert!(decode_first(&text, &["X509 CRL"]).is_err());
    }
}

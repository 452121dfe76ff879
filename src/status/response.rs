//! A signed OCSP response as it is cached and served: one small struct and one buffer (CertID
//! key, DER, and the ETag, Last-Modified and Expires header values, made once when the response
//! is cached), so that serving it formats nothing and allocates nothing of its own. The cache
//! keeps these, and the publishing hook (`sink`) hands them on.

use bytes::Bytes;

/// One signed response, as the signer hands it to the cache.
#[derive(Debug)]
pub struct OcspEntry {
    pub der: Bytes,
    /// Unix seconds; also producedAt.
    pub this_update: i64,
    pub next_update: i64,
    /// When the scheduler will replace it (for `Cache-Control: max-age`).
    pub refresh_at: i64,
    pub(super) issuer_id: u64,
    pub(super) generation: u64,
}

impl OcspEntry {
    /// A response signed at `generation` by issuer `issuer_id`.
    pub(super) fn new(
        der: Vec<u8>,
        this_update: i64,
        next_update: i64,
        refresh_at: i64,
        issuer_id: u64,
        generation: u64,
    ) -> OcspEntry {
        OcspEntry {
            der: Bytes::from(der),
            this_update,
            next_update,
            refresh_at,
            issuer_id,
            generation,
        }
    }
}

/// A response as the cache keeps and serves it.
#[derive(Debug)]
pub struct CachedResponse {
    /// CertID key ‖ DER ‖ ETag ‖ Last-Modified ‖ Expires.
    buf: Bytes,
    /// Where the key, the DER, the ETag and Last-Modified end in `buf`.
    ends: [u32; 4],
    /// Unix seconds; also producedAt.
    pub this_update: i64,
    pub next_update: i64,
    /// When the scheduler will replace it (for `Cache-Control: max-age`).
    pub refresh_at: i64,
    pub(super) issuer_id: u64,
    pub(super) generation: u64,
}

impl CachedResponse {
    pub(super) fn new(key: &[u8], e: &OcspEntry) -> CachedResponse {
        let etag = etag(&e.der);
        let mut buf = Vec::with_capacity(key.len() + e.der.len() + etag.len() + 2 * HTTP_DATE_LEN);
        buf.extend_from_slice(key);
        let key_end = buf.len();
        buf.extend_from_slice(&e.der);
        let der_end = buf.len();
        buf.extend_from_slice(etag.as_bytes());
        let etag_end = buf.len();
        push_http_date(&mut buf, e.this_update);
        let last_modified_end = buf.len();
        push_http_date(&mut buf, e.next_update);
        let end = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        CachedResponse {
            buf: Bytes::from(buf),
            ends: [
                end(key_end),
                end(der_end),
                end(etag_end),
                end(last_modified_end),
            ],
            this_update: e.this_update,
            next_update: e.next_update,
            refresh_at: e.refresh_at,
            issuer_id: e.issuer_id,
            generation: e.generation,
        }
    }

    /// The signed OCSPResponse DER.
    pub fn der(&self) -> Bytes {
        self.part(1)
    }

    /// The quoted strong validator.
    pub fn etag(&self) -> Bytes {
        self.part(2)
    }

    /// thisUpdate as an IMF-fixdate.
    pub fn last_modified(&self) -> Bytes {
        self.part(3)
    }

    /// nextUpdate as an IMF-fixdate.
    pub fn expires(&self) -> Bytes {
        self.part(4)
    }

    /// A response published by an appliance, as a responder (`crate::publish`) caches it.
    pub fn published(
        key: &[u8],
        der: Vec<u8>,
        this_update: i64,
        next_update: i64,
        refresh_at: i64,
    ) -> CachedResponse {
        CachedResponse::new(
            key,
            &OcspEntry::new(der, this_update, next_update, refresh_at, 0, 0),
        )
    }

    /// The CertID DER (or concatenated CertIDs) it is cached under.
    pub fn cert_id_key(&self) -> &[u8] {
        self.key()
    }

    /// The CertID DER (or concatenated CertIDs) it is cached under.
    pub(super) fn key(&self) -> &[u8] {
        &self.buf[..self.ends[0] as usize]
    }

    /// Part `i` of `buf`: 0 key, 1 DER, 2 ETag, 3 Last-Modified, 4 Expires.
    fn part(&self, i: usize) -> Bytes {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends.get(i).map_or(self.buf.len(), |e| *e as usize);
        self.buf.slice(start..end)
    }
}

/// A strong ETag of a response.
fn etag(der: &[u8]) -> String {
    let h = crate::pki::HashAlg::Sha256.digest(der);
    format!("\"{}\"", crate::pki::der_util::hex(&h[..16]))
}

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const HTTP_DATE_LEN: usize = 29;

/// Appends Unix seconds as an RFC 9110 IMF-fixdate (nothing for a time chrono cannot hold).
fn push_http_date(out: &mut Vec<u8>, unix: i64) {
    use chrono::{Datelike, Timelike};
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let Some(t) = chrono::DateTime::from_timestamp(unix, 0) else {
        return;
    };
    let two = |out: &mut Vec<u8>, n: u32| {
        out.extend_from_slice(&[b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8])
    };
    out.extend_from_slice(DAYS[t.weekday().num_days_from_monday() as usize].as_bytes());
    out.extend_from_slice(b", ");
    two(out, t.day());
    out.push(b' ');
    out.extend_from_slice(MONTHS[t.month0() as usize].as_bytes());
    out.push(b' ');
    let year = t.year().clamp(0, 9999) as u32;
    two(out, year / 100);
    two(out, year % 100);
    out.push(b' ');
    two(out, t.hour());
    out.push(b':');
    two(out, t.minute());
    out.push(b':');
    two(out, t.second());
    out.extend_from_slice(b" GMT");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `push_http_date` against chrono's formatting of `unix`; the text's length.
    fn matches_chrono(unix: i64) -> usize {
        let mut out = Vec::new();
        push_http_date(&mut out, unix);
        let want = chrono::DateTime::from_timestamp(unix, 0)
            .unwrap()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        assert_eq!(String::from_utf8(out).unwrap(), want);
        want.len()
    }

    #[test]
    fn http_dates_match_chrono() {
        for unix in [
            0,
            784_111_777,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
            253_402_300_799,
        ] {
            assert_eq!(matches_chrono(unix), HTTP_DATE_LEN);
        }
        for step in 0..100_000i64 {
            matches_chrono(step * 86_399 * 7 + step);
        }
    }

    #[test]
    fn one_buffer_holds_key_der_and_headers() {
        let e = OcspEntry::new(
            vec![0x30, 0x03, 0x0a, 0x01, 0x00],
            784_111_777,
            784_198_177,
            0,
            7,
            1,
        );
        let c = CachedResponse::new(b"KEY", &e);
        assert_eq!(c.key(), b"KEY");
        assert_eq!(&c.der()[..], &e.der[..]);
        assert_eq!(&c.etag()[..], etag(&e.der).as_bytes());
        assert_eq!(&c.last_modified()[..], b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&c.expires()[..], b"Mon, 07 Nov 1994 08:49:37 GMT");
    }
}

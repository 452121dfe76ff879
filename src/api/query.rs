//! The query string of a v2.0 request: parsed once, each parameter checked where it is read.

use super::error::ApiError;
use super::route::percent_decode;

/// A parsed query string.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(q: &str) -> Result<Query, ApiError> {
        let mut out = Vec::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| {
                percent_decode(&s.replace('+', " ")).ok_or_else(|| {
                    ApiError::malformed(format!("query: bad percent-encoding in {k}"))
                })
            };
            out.push((dec(k)?, dec(v)?));
        }
        Ok(Query(out))
    }

    /// The value of `key`; an empty value or the key given twice is refused (400 naming it),
    /// never taken as "absent" or "the first one".
    pub(super) fn get(&self, key: &str) -> Result<Option<String>, ApiError> {
        let mut found = self.0.iter().filter(|(k, _)| k == key);
        let Some((_, v)) = found.next() else {
            return Ok(None);
        };
        if found.next().is_some() {
            return Err(ApiError::malformed(format!(
                "{key}: given more than once in the query"
            )));
        }
        if v.is_empty() {
            return Err(ApiError::invalid(format!(
                "{key}: empty in the query; leave it out for the default"
            )));
        }
        Ok(Some(v.clone()))
    }

    /// A time filter: the seed's `2024-01-01 00:00:00`, or `2024-01-01T00:00:00` (UTC).
    pub(super) fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(key)? else {
            return Ok(None);
        };
        let v = v.replace('T', " ");
        chrono::NaiveDateTime::parse_from_str(&v, "%Y-%m-%d %H:%M:%S")
            .map(|t| Some(t.and_utc().timestamp()))
            .map_err(|_| ApiError::invalid(format!("{key}: must look like 2024-01-01 00:00:00")))
    }

    /// `page` (from 0, default 0) and `size` (1 to 1000, default 10).
    pub(super) fn paging(&self) -> Result<(u64, u64), ApiError> {
        let num = |key: &str, default: u64| -> Result<u64, ApiError> {
            match self.get(key)? {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .map_err(|_| ApiError::malformed(format!("{key}: must be a whole number"))),
            }
        };
        let page = num("page", 0)?;
        let size = num("size", 10)?;
        if !(1..=1000).contains(&size) {
            return Err(ApiError::invalid("size: must be 1 to 1000"));
        }
        if page > 1_000_000_000 {
            return Err(ApiError::invalid("page: must be 0 to 1000000000"));
        }
        Ok((page, size))
    }
}

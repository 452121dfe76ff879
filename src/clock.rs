//! The clock and the seed's text forms of a time. A leaf: it uses nothing else in the crate, so
//! the domain (`ca`, `status`) and the edges (`api`, `server`) can all lean on it.

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The seed's `LocalDateTime` form in UTC: `2024-01-01 00:00:00`.
pub fn timestamp(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The seed's request date form: `2025-12-31T23:59:59`.
pub fn date_form(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

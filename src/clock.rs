//! Time: an injectable clock, and the one time format of the API.
//!
//! Everything that decides *when* (job due times, webhook replays, receipt expiry, key
//! expiry) asks a [`Clock`] instead of the system, so tests can run days of schedule in
//! milliseconds. Times are milliseconds since the Unix epoch inside smswire and RFC 3339 in
//! UTC with milliseconds at the API.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now_ms(&self) -> u64;
}

/// The clock of the operating system.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// Formats milliseconds since the epoch as `2022-12-29T18:24:27.000Z`.
pub fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Parses an RFC 3339 time (UTC `Z` or an offset-free form) into milliseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_documented_examples() {
        assert_eq!(format_ms(1_672_338_267_000), "2022-12-29T18:24:27.000Z");
        assert_eq!(
            parse_rfc3339("2022-12-29T18:24:44.938Z"),
            Some(1_672_338_284_938)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}

//! Time arithmetic that cannot panic. Times come from objects anyone with write access
//! can set (a Lease renewed in year 9999 for two billion seconds, a pod condition's
//! transition time): the sum saturates at the largest time instead of overflowing.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// `t + d`, or the largest representable time when that is beyond it.
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `t`: zero when `t` has passed.
pub fn until(t: Timestamp, now: Timestamp) -> Duration {
    t.duration_since(now).try_into().unwrap_or(Duration::ZERO)
}

/// Whole seconds from a field, as a duration: negative values count as zero.
pub fn seconds(n: impl Into<i64>) -> Duration {
    Duration::from_secs(n.into().max(0).unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_past_the_end_of_time_saturate() {
        let late: Timestamp = "9999-12-30T21:00:00Z".parse().unwrap();
        assert_eq!(after(late, seconds(2_000_000_000)), Timestamp::MAX);
        assert_eq!(after(Timestamp::MAX, Duration::MAX), Timestamp::MAX);
        assert_eq!(after(Timestamp::UNIX_EPOCH, seconds(5)), Timestamp::from_second(5).unwrap());
        assert!(until(Timestamp::MAX, Timestamp::MIN) > Duration::ZERO);
        assert_eq!(until(Timestamp::MIN, Timestamp::MAX), Duration::ZERO);
        assert_eq!(seconds(-3), Duration::ZERO);
    }
}

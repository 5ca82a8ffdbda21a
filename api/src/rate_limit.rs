//! The per-tenant ingestion rate limit: a token bucket per tenant, refilled at the tenant's rate
//! and holding at most its burst, as Mimir's distributors limit ingestion.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

#[derive(Default)]
pub struct IngestionLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl IngestionLimiter {
    /// Takes `n` tokens from `tenant`'s bucket if it holds them; `false` (nothing taken) when the
    /// request would exceed `rate` per second with bursts of `burst`.
    pub fn allow(&self, tenant: &str, n: f64, rate: f64, burst: f64, now: Instant) -> bool {
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(tenant.to_string()).or_insert(Bucket { tokens: burst, refilled: now });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        if n > bucket.tokens {
            return false;
        }
        bucket.tokens -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_pass_then_the_rate_holds_and_tenants_are_separate() {
        let limiter = IngestionLimiter::default();
        let t0 = Instant::now();
        assert!(limiter.allow("a", 100.0, 10.0, 100.0, t0));
        assert!(!limiter.allow("a", 1.0, 10.0, 100.0, t0));
        assert!(limiter.allow("b", 100.0, 10.0, 100.0, t0));
        // A second refills ten tokens, never more than the burst.
        assert!(!limiter.allow("a", 11.0, 10.0, 100.0, t0 + Duration::from_secs(1)));
        assert!(limiter.allow("a", 10.0, 10.0, 100.0, t0 + Duration::from_secs(1)));
        assert!(limiter.allow("a", 100.0, 10.0, 100.0, t0 + Duration::from_secs(1000)));
        assert!(!limiter.allow("a", 1.0, 10.0, 100.0, t0 + Duration::from_secs(1000)));
    }
}

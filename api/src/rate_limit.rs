//! Per-tenant rate limits: a token bucket per tenant, refilled at the tenant's rate and holding at
//! most its burst, as Mimir's distributors limit ingestion. One [`TokenBuckets`] per limit: samples
//! plus exemplars written, and new series created.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

#[derive(Default)]
pub struct TokenBuckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    /// Runs `take` on `tenant`'s bucket refilled up to `now` at `rate` per second, holding at most
    /// `burst`; `take` gets the tokens held and returns how many it uses.
    fn with_bucket(&self, tenant: &str, rate: f64, burst: f64, now: Instant, take: impl FnOnce(f64) -> f64) {
        let mut buckets = self.buckets.lock();
        let bucket = match buckets.get_mut(tenant) {
            Some(b) => b,
            None => buckets.entry(tenant.to_string()).or_insert(Bucket { tokens: burst, refilled: now }),
        };
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.refilled = now;
        bucket.tokens -= take(bucket.tokens);
    }

    /// Takes `n` tokens from `tenant`'s bucket if it holds them; `false` (nothing taken) when the
    /// request would exceed `rate` per second with bursts of `burst`.
    pub fn allow(&self, tenant: &str, n: f64, rate: f64, burst: f64, now: Instant) -> bool {
        let mut allowed = false;
        self.with_bucket(tenant, rate, burst, now, |held| {
            allowed = n <= held;
            if allowed { n } else { 0.0 }
        });
        allowed
    }

    /// Takes as many whole tokens as the bucket holds, up to `n`, and returns how many.
    pub fn take_up_to(&self, tenant: &str, n: u64, rate: f64, burst: f64, now: Instant) -> u64 {
        let mut taken = 0;
        self.with_bucket(tenant, rate, burst, now, |held| {
            taken = (held.max(0.0).floor() as u64).min(n);
            taken as f64
        });
        taken
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_pass_then_the_rate_holds_and_tenants_are_separate() {
        let limiter = TokenBuckets::default();
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

    #[test]
    fn take_up_to_grants_whole_tokens_only() {
        let limiter = TokenBuckets::default();
        let t0 = Instant::now();
        assert_eq!(limiter.take_up_to("a", 30, 10.0, 25.0, t0), 25);
        assert_eq!(limiter.take_up_to("a", 30, 10.0, 25.0, t0), 0);
        assert_eq!(limiter.take_up_to("a", 30, 10.0, 25.0, t0 + Duration::from_millis(250)), 2);
        // Half a token left from the refill above; another quarter second makes it three.
        assert_eq!(limiter.take_up_to("a", 30, 10.0, 25.0, t0 + Duration::from_millis(500)), 3);
        assert_eq!(limiter.take_up_to("a", 1, 10.0, 25.0, t0 + Duration::from_secs(60)), 1);
        assert!(limiter.allow("a", 24.0, 10.0, 25.0, t0 + Duration::from_secs(60)));
    }
}

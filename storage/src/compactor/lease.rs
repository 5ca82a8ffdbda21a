//! The compactor lease: one small object in the bucket, `compactor-lease.json`, naming the
//! compactor that may change the bucket and until when (docs/format/bucket.md, "The compactor
//! lease").
//!
//! Taken with a create-if-absent put, renewed (or taken over once expired) with a put that
//! replaces only the version read: of two compactors racing for it, one put fails and that one
//! does not compact. The holder renews it before every change it commits, so a lease is never
//! used longer than its duration past the last renewal.

use serde::{Deserialize, Serialize};

use crate::objstore::{ObjectStorage, ObjectStoreError, PutCondition};

/// Key of the lease, relative to the bucket's prefix.
pub const LEASE_KEY: &str = "compactor-lease.json";

/// What the lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it: unique per compactor process.
    pub holder: String,
    /// Until when, in milliseconds since the epoch.
    pub expires_ms: i64,
}

/// Takes or renews the lease for `holder` until `now + duration_ms`. `false`: another compactor
/// holds it (unexpired), or won the race for it just now.
pub async fn acquire(
    store: &dyn ObjectStorage,
    holder: &str,
    now: i64,
    duration_ms: i64,
) -> Result<bool, ObjectStoreError> {
    let condition = match store.get(LEASE_KEY).await? {
        None => PutCondition::Create,
        Some(current) => {
            // An unreadable lease (written by a future version, or damaged) is treated as
            // expired: it must not stop compaction for good.
            if let Ok(lease) = serde_json::from_slice::<Lease>(&current.bytes) {
                if lease.holder != holder && lease.expires_ms > now {
                    return Ok(false);
                }
            }
            PutCondition::Replace(current.version)
        }
    };
    let lease = Lease { holder: holder.to_string(), expires_ms: now.saturating_add(duration_ms) };
    let bytes = serde_json::to_vec(&lease).expect("a lease serializes");
    match store.put(LEASE_KEY, bytes.into(), condition).await {
        Ok(()) => Ok(true),
        Err(ObjectStoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The lease as stored, if any.
pub async fn current(store: &dyn ObjectStorage) -> Result<Option<Lease>, ObjectStoreError> {
    Ok(store.get(LEASE_KEY).await?.and_then(|o| serde_json::from_slice(&o.bytes).ok()))
}

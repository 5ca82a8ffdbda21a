//! The hash ring of ingesters and its membership in etcd (issue 18, replicated ingest).
//!
//! Every ingester owns [`DEFAULT_TOKENS`] points ("tokens") on a ring of 32-bit keys, derived from
//! its instance id alone ([`tokens_for`]), so that a restarted ingester owns the same ranges. A
//! distributor hashes each series, its tenant and labels, to a key ([`series_key`]) and sends it to
//! the `replication_factor` distinct `Active` members met walking clockwise from that key
//! ([`Ring::replicas_into`]). Many tokens a member spread its share evenly, and a member that joins
//! or leaves moves only the series it takes or gives up: about rf/N of them, none between others.
//!
//! Membership lives in etcd: each ingester puts its [`Member`] as JSON at `prefix + id` under a
//! lease it keeps alive ([`Registration`]); an ingester that dies stops the keep-alives and its
//! entry goes when the lease expires, with no one to clean up after it. Distributors and queriers
//! hold a [`RingWatch`]: the ring listed once, then kept current by a watch, so that no request
//! waits on etcd, and an etcd outage leaves them routing on the last ring they saw.
mod membership;
mod ring;

pub use membership::{
    Error, EtcdConfig, Registration, RingWatch, agree_replication_factor, distributors_prefix, replication_factor_key,
};
pub use ring::{DEFAULT_TOKENS, Member, MemberState, Ring, series_key, tokens_for};

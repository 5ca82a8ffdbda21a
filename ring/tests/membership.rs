//! Registrations and a ring watch against a real three-member etcd cluster.

#[path = "../../tests/common/etcd.rs"]
mod etcd;

use std::time::Duration;

use amber_ring::{EtcdConfig, Member, MemberState, Registration, Ring, RingWatch, tokens_for};
use etcd::EtcdCluster;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(15);

fn config(cluster: &EtcdCluster) -> EtcdConfig {
    EtcdConfig { endpoints: cluster.endpoints(), prefix: "amber/ring/".into(), lease_ttl: TTL }
}

fn member(id: &str) -> Member {
    Member { id: id.into(), addr: format!("http://{id}:9201"), state: MemberState::Active, tokens: tokens_for(id, 4) }
}

fn states(ring: &Ring) -> Vec<(String, MemberState)> {
    ring.members().iter().map(|m| (m.id.clone(), m.state)).collect()
}

/// Waits until the watched ring's members and states are `expected`; returns how long it took.
async fn until_ring(watch: &RingWatch, expected: &[(&str, MemberState)], timeout: Duration) -> Duration {
    let expected: Vec<(String, MemberState)> = expected.iter().map(|&(id, s)| (id.to_string(), s)).collect();
    let start = Instant::now();
    let mut rings = watch.subscribe();
    let reached = tokio::time::timeout(timeout, rings.wait_for(|ring| states(ring) == expected)).await;
    assert!(reached.is_ok(), "ring {:?} is not {expected:?} after {timeout:?}", states(&watch.ring()));
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn members_join_change_state_leave_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start(dir.path(), 3);
    let config = config(&cluster);
    let a = Registration::start(&config, member("a"), TIMEOUT).await.unwrap();
    let b = Registration::start(&config, member("b"), TIMEOUT).await.unwrap();
    let watch = RingWatch::start(&config, TIMEOUT).await.unwrap();
    until_ring(&watch, &[("a", MemberState::Active), ("b", MemberState::Active)], TIMEOUT).await;
    assert_eq!(watch.ring().members()[0], member("a"));

    a.set_state(MemberState::Leaving, TIMEOUT).await.unwrap();
    until_ring(&watch, &[("a", MemberState::Leaving), ("b", MemberState::Active)], TIMEOUT).await;
    a.leave(TIMEOUT).await.unwrap();
    until_ring(&watch, &[("b", MemberState::Active)], TIMEOUT).await;

    // The process dies: no leave, no more keep-alives; the lease expires on its own.
    drop(b);
    let gone_after = until_ring(&watch, &[], TTL * 5).await;
    println!("a dropped registration left the ring after {gone_after:?} (TTL {TTL:?})");
    assert!(gone_after > TTL / 2, "gone after {gone_after:?}, before its lease could expire");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ring_and_registrations_survive_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = EtcdCluster::start(dir.path(), 3);
    let config = config(&cluster);
    let a = Registration::start(&config, member("a"), TIMEOUT).await.unwrap();
    let watch = RingWatch::start(&config, TIMEOUT).await.unwrap();
    until_ring(&watch, &[("a", MemberState::Active)], TIMEOUT).await;

    let leader = cluster.leader();
    cluster.kill(leader);
    // During the election the watch keeps serving the last ring.
    assert_eq!(states(&watch.ring()), [("a".to_string(), MemberState::Active)]);
    let new_leader = cluster.leader();
    assert_ne!(new_leader, leader);

    // A change made after the election reaches the watch.
    let b = Registration::start(&config, member("b"), TIMEOUT).await.unwrap();
    until_ring(&watch, &[("a", MemberState::Active), ("b", MemberState::Active)], TIMEOUT).await;

    // The registration made before the kill is still kept alive three TTLs on.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(states(&watch.ring()), [("a".to_string(), MemberState::Active), ("b".to_string(), MemberState::Active)]);

    cluster.restart(leader);
    a.leave(TIMEOUT).await.unwrap();
    b.leave(TIMEOUT).await.unwrap();
    until_ring(&watch, &[], TIMEOUT).await;
}

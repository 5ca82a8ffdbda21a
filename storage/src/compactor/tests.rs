//! After compaction the bucket answers every read exactly as the local store does, from fewer
//! objects; duplicates go, retention deletes, one compactor holds the lease, and a pass cut
//! short at any step leaves an index the next pass finishes from.

use super::*;
use crate::TenantId;
use crate::bucket_source::tests::{
    HOUR, MINUTE, Stored, TENANT, WINDOW, assert_same_answers, fill_four_windows, sample, series, write,
};
use crate::bucket_source::{BucketSource, BucketSourceOptions};
use crate::source::{Columns, ReadSource};

const DAY: i64 = 24 * HOUR;

fn opts(holder: &str) -> CompactorOptions {
    CompactorOptions {
        holder: holder.into(),
        window_ms: DAY,
        settle_ms: 2 * HOUR,
        retention_ms: 30 * DAY,
        orphan_grace_ms: HOUR,
        lease_ms: 5 * MINUTE,
    }
}

/// The four windows of the bucket source's tests, in the first hours of the UTC day before
/// yesterday (one compaction window, settled), uploaded.
fn stored() -> Stored {
    let now = crate::now_ms();
    let first = now.div_euclid(DAY) * DAY - 2 * DAY;
    Stored::starting_at(first, now, fill_four_windows)
}

impl Stored {
    fn pass(&self, opts: &CompactorOptions, now: i64) -> PassReport {
        let metrics = CompactorMetrics::default();
        self.runtime.block_on(Compactor::new(&*self.bucket, opts.clone(), &metrics).run_pass(now)).unwrap()
    }

    fn index(&self, tenant: &str) -> Vec<(i64, i64)> {
        let index = self.runtime.block_on(index::read(&*self.bucket, tenant)).unwrap();
        index.windows.iter().map(|w| (w.start - self.first, w.end - self.first)).collect()
    }

    fn keys(&self) -> Vec<String> {
        self.runtime.block_on(self.bucket.list("")).unwrap().into_iter().map(|o| o.key).collect()
    }

    fn block_files(&self) -> usize {
        self.keys().iter().filter(|k| k.ends_with(".block")).count()
    }

    fn bucket_source(&self) -> BucketSource {
        self.source(self.bucket.clone(), BucketSourceOptions { tail_bytes: 0, ..Default::default() })
    }

    fn assert_answers_as_local(&self) {
        let local = self.local();
        for tenant in [TENANT, "team-b"] {
            assert_same_answers(&self.bucket_source(), &local, tenant, self.first);
        }
    }
}

#[test]
fn compaction_keeps_every_answer_from_one_file_per_day() {
    let s = stored();
    let held_before = BucketSource::new(
        s.bucket.clone(),
        s.runtime.handle().clone(),
        BucketSourceOptions { index_refresh: std::time::Duration::from_secs(3600), ..Default::default() },
    );
    let all = Columns { samples: true, histograms: true, exemplars: true };
    let before = held_before.select(TENANT, &[], s.first, s.first + 4 * WINDOW, all).unwrap();
    assert_eq!(
        s.index(TENANT),
        [(0, WINDOW), (WINDOW, 2 * WINDOW), (2 * WINDOW, 3 * WINDOW), (3 * WINDOW, 4 * WINDOW)]
    );
    assert_eq!(s.block_files(), 5, "four windows of the default tenant, one of team-b");

    let metrics = CompactorMetrics::default();
    let report = s.runtime.block_on(Compactor::new(&*s.bucket, opts("a"), &metrics).run_pass(s.now)).unwrap();
    let bytes = report.bytes_written;
    assert!(bytes > 0);
    assert_eq!(
        report,
        PassReport {
            lease_held: true,
            windows_merged: 4,
            files_written: 1,
            bytes_written: bytes,
            windows_expired: 0,
            objects_deleted: 4,
            groups_stale: 0,
            failures: vec![],
        }
    );
    assert_eq!(
        metrics.counts(),
        CompactorCounts {
            windows_merged: 4,
            files_written: 1,
            bytes_written: bytes,
            windows_expired: 0,
            objects_deleted: 4,
            passes_failed: 0,
            lease_held: true
        }
    );
    assert_eq!(s.index(TENANT), [(0, DAY)]);
    assert_eq!(s.index("team-b"), [(WINDOW, 2 * WINDOW)], "a day with one window is left as it is");
    let keys = s.keys();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with(&format!("anonymous/windows/{}_{}/", s.first, s.first + DAY))));
    assert!(keys.contains(&"compactor-lease.json".to_string()));
    s.assert_answers_as_local();
    // A reader that still holds the old index finds its files gone and reads the new one.
    assert_eq!(held_before.select(TENANT, &[], s.first, s.first + 4 * WINDOW, all).unwrap(), before);

    assert_eq!(s.pass(&opts("a"), s.now), PassReport { lease_held: true, ..Default::default() }, "nothing left");
}

#[test]
fn a_window_uploaded_again_beside_its_compacted_day_is_merged_without_duplicates() {
    let s = stored();
    s.pass(&opts("a"), s.now);
    // A late series re-seals window 1: its whole content goes up again, beside the day holding it.
    write(
        &s.storage,
        TenantId::DEFAULT,
        vec![series(&[("__name__", "late"), ("job", "api")], vec![sample(s.first + WINDOW + 1, 9.0)], vec![], vec![])],
    );
    s.seal_and_upload();
    assert_eq!(s.index(TENANT), [(0, DAY), (WINDOW, 2 * WINDOW)]);
    s.assert_answers_as_local();

    let report = s.pass(&opts("a"), s.now);
    assert_eq!((report.windows_merged, report.files_written, report.objects_deleted), (2, 1, 2));
    assert_eq!(s.index(TENANT), [(0, DAY)]);
    s.assert_answers_as_local();
    let index = s.runtime.block_on(index::read(&*s.bucket, TENANT)).unwrap();
    let local_samples: usize = s
        .local()
        .select(TENANT, &[], s.first, s.first + DAY, Columns::SAMPLES)
        .unwrap()
        .iter()
        .map(|x| x.samples.len())
        .sum();
    assert_eq!(index.windows[0].samples, local_samples as u64, "each sample once");
}

#[test]
fn retention_deletes_expired_windows_and_their_objects() {
    let s = stored();
    // Windows 0 and 1 (and team-b's only one) end at or before the retention's horizon; 2 and 3
    // are merged.
    let o = CompactorOptions { retention_ms: s.now - (s.first + 2 * WINDOW), ..opts("a") };
    let report = s.pass(&o, s.now);
    assert_eq!((report.windows_expired, report.windows_merged, report.objects_deleted), (3, 2, 5));
    assert_eq!(s.index(TENANT), [(0, DAY)]);
    assert_eq!(s.index("team-b"), []);
    assert_eq!(s.block_files(), 1);
    let all = Columns { samples: true, histograms: true, exemplars: true };
    let kept_from = s.first + 2 * WINDOW;
    assert_eq!(
        s.bucket_source().select(TENANT, &[], s.first, s.first + DAY, all).unwrap(),
        s.local().select(TENANT, &[], kept_from, s.first + DAY, all).unwrap()
    );
}

#[test]
fn one_compactor_holds_the_lease_until_it_expires() {
    let s = stored();
    assert!(s.pass(&opts("a"), s.now).lease_held);
    let lease = s.runtime.block_on(lease::current(&*s.bucket)).unwrap();
    assert_eq!(lease, Some(lease::Lease { holder: "a".into(), expires_ms: s.now + 5 * MINUTE }));

    write(
        &s.storage,
        TenantId::DEFAULT,
        vec![series(&[("__name__", "late")], vec![sample(s.first + 1, 1.0)], vec![], vec![])],
    );
    s.seal_and_upload();
    let before = s.index(TENANT);
    assert_eq!(before.len(), 2);
    let second = s.pass(&opts("b"), s.now + 5 * MINUTE - 1);
    assert_eq!(second, PassReport::default(), "b does not get a held lease");
    assert_eq!(s.index(TENANT), before);

    // a renews it (and compacts); once a stops renewing and the lease expires, b takes over.
    let renewed = s.pass(&opts("a"), s.now + MINUTE);
    assert!(renewed.lease_held);
    assert_eq!(renewed.windows_merged, 2);
    assert_eq!(s.pass(&opts("b"), s.now + 6 * MINUTE - 1), PassReport::default());
    assert_eq!(s.pass(&opts("b"), s.now + 6 * MINUTE), PassReport { lease_held: true, ..Default::default() });
    let lease = s.runtime.block_on(lease::current(&*s.bucket)).unwrap();
    assert_eq!(lease, Some(lease::Lease { holder: "b".into(), expires_ms: s.now + 11 * MINUTE }));
    assert_eq!(s.pass(&opts("a"), s.now + 7 * MINUTE), PassReport::default());
    s.assert_answers_as_local();
}

#[test]
fn a_pass_cut_short_after_any_step_leaves_a_consistent_index() {
    let s = stored();
    let metrics = CompactorMetrics::default();
    let compactor = Compactor::new(&*s.bucket, opts("a"), &metrics);
    let index = s.runtime.block_on(index::read(&*s.bucket, TENANT)).unwrap();
    let planned = plan(&index, &opts("a"), s.now);
    assert_eq!(planned.expired, []);
    assert_eq!(planned.groups.len(), 1);
    let group = &planned.groups[0];

    // Cut after the put: the old index, and a file nothing names.
    let (_, new) = s.runtime.block_on(compactor.write_group(TENANT, group)).unwrap();
    assert_eq!(s.index(TENANT).len(), 4);
    assert_eq!(s.block_files(), 6);
    s.assert_answers_as_local();
    // The next pass writes the same bytes under a key of its own and commits them; the cut
    // pass's file is an orphan, kept for the grace period (an upload's may not be recorded yet).
    let report = s.pass(&opts("a"), s.now);
    assert_eq!((report.windows_merged, report.objects_deleted), (4, 4));
    assert_eq!(s.block_files(), 3);
    s.assert_answers_as_local();
    let later = crate::now_ms() + HOUR + 1;
    assert_eq!(s.pass(&opts("a"), later).objects_deleted, 1);
    assert_eq!(s.block_files(), 2);
    assert!(!s.keys().contains(&new.object));
    s.assert_answers_as_local();

    // Cut after the commit, before the deletes: the new index, and old files nothing names.
    let s = stored();
    let index = s.runtime.block_on(index::read(&*s.bucket, TENANT)).unwrap();
    let group = &plan(&index, &opts("a"), s.now).groups[0];
    let compactor = Compactor::new(&*s.bucket, opts("a"), &metrics);
    let (_, new_again) = s.runtime.block_on(compactor.write_group(TENANT, group)).unwrap();
    // A merge is deterministic; no key is put twice.
    assert_eq!(IndexedWindow { object: new.object.clone(), ..new_again.clone() }, new);
    assert_ne!(new_again.object, new.object);
    let new = new_again;
    let replaced = s.runtime.block_on(index::replace(&*s.bucket, TENANT, &group.windows, Some(&new))).unwrap();
    assert!(matches!(replaced, Replaced::Done(_)));
    assert_eq!(s.index(TENANT), [(0, DAY)]);
    assert_eq!(s.block_files(), 6);
    s.assert_answers_as_local();
    // Unnamed files are kept for the grace period (an upload's may not be recorded yet), then go.
    assert_eq!(s.pass(&opts("a"), s.now).objects_deleted, 0);
    assert_eq!(s.block_files(), 6);
    let later = crate::now_ms() + HOUR + 1;
    assert_eq!(s.pass(&opts("a"), later).objects_deleted, 4);
    assert_eq!(s.block_files(), 2);
    s.assert_answers_as_local();

    // A commit whose entries an upload replaced meanwhile changes nothing.
    let stale = s.runtime.block_on(index::replace(&*s.bucket, TENANT, &group.windows, Some(&new))).unwrap();
    assert_eq!(stale, Replaced::Stale);
    assert_eq!(s.index(TENANT), [(0, DAY)]);
}

#[test]
fn a_tenant_that_cannot_be_compacted_does_not_hold_up_the_others() {
    let now = crate::now_ms();
    let first = now.div_euclid(DAY) * DAY - 2 * DAY;
    let s = Stored::starting_at(first, now, |storage, w| {
        fill_four_windows(storage, w);
        let team_b = storage.register_tenant("team-b").unwrap();
        write(storage, team_b, vec![series(&[("__name__", "rss")], vec![sample(w + 3 * WINDOW, 1.0)], vec![], vec![])]);
    });
    assert_eq!(s.index("team-b"), [(WINDOW, 2 * WINDOW), (3 * WINDOW, 4 * WINDOW)]);
    // A file of the default tenant gone from under its index.
    let index = s.runtime.block_on(index::read(&*s.bucket, TENANT)).unwrap();
    let gone = index.windows[0].object.clone();
    s.runtime.block_on(s.bucket.delete(&gone)).unwrap();

    let metrics = CompactorMetrics::default();
    let report = s.runtime.block_on(Compactor::new(&*s.bucket, opts("a"), &metrics).run_pass(s.now)).unwrap();
    assert_eq!(report.failures, [format!("tenant \"anonymous\": object {gone} not found")]);
    assert_eq!((report.windows_merged, report.files_written), (2, 1));
    assert_eq!(s.index("team-b"), [(0, DAY)]);
    assert_eq!(s.index(TENANT).len(), 4, "left as it was");
    assert_eq!(metrics.counts().passes_failed, 1);
}

/// The ingesters' copies of one block window merge into one entry once the window has settled,
/// before its compaction window has: until the day is merged, a read reads one copy, not one per
/// replica.
#[test]
fn the_copies_of_a_settled_window_merge_before_their_compaction_window_does() {
    let s = stored();
    let index = s.runtime.block_on(index::read(&*s.bucket, TENANT)).unwrap();
    let second = index.windows[1].clone();
    // Two more ingesters' copies of the second window, each a file of its own.
    let bytes = s.runtime.block_on(s.bucket.get(&second.object)).unwrap().unwrap().bytes;
    for replica in ["ingester-b", "ingester-c"] {
        let object = format!("{TENANT}/windows/{}.{replica}/copy.block", second.start);
        s.runtime.block_on(s.bucket.put(&object, bytes.clone(), PutCondition::Overwrite)).unwrap();
        let copy = IndexedWindow { object, replica: Some(replica.into()), ..second.clone() };
        s.runtime.block_on(index::record(&*s.bucket, TENANT, copy)).unwrap();
    }
    let copies = [(0, WINDOW), (WINDOW, 2 * WINDOW), (WINDOW, 2 * WINDOW), (WINDOW, 2 * WINDOW)];
    assert_eq!(s.index(TENANT), [&copies[..], &[(2 * WINDOW, 3 * WINDOW), (3 * WINDOW, 4 * WINDOW)]].concat());
    assert_eq!(s.block_files(), 7);
    s.assert_answers_as_local();

    // A compaction window that has not ended (a century from the epoch): only the copies merge.
    let long = CompactorOptions { window_ms: 100 * 365 * DAY, ..opts("a") };
    let report = s.pass(&long, s.now);
    let bytes_written = report.bytes_written;
    assert_eq!(
        report,
        PassReport {
            lease_held: true,
            windows_merged: 3,
            files_written: 1,
            bytes_written,
            objects_deleted: 3,
            ..Default::default()
        }
    );
    assert_eq!(
        s.index(TENANT),
        [(0, WINDOW), (WINDOW, 2 * WINDOW), (2 * WINDOW, 3 * WINDOW), (3 * WINDOW, 4 * WINDOW)]
    );
    let merged = s.runtime.block_on(index::read(&*s.bucket, TENANT)).unwrap().windows[1].clone();
    assert_eq!((merged.replica, merged.samples, merged.series), (None, second.samples, second.series));
    assert_eq!(s.block_files(), 5);
    s.assert_answers_as_local();
    assert_eq!(s.pass(&long, s.now), PassReport { lease_held: true, ..Default::default() }, "nothing left");
}

//! The engine on a real RocksDB directory, without HTTP: selection by matchers, sealing merged
//! with late writes, retention by whole windows, trace lookups, and restarts.

use amber_storage::labels::{Label, Labels};
use amber_storage::{
    DataKind, Exemplar, Histogram, HistogramSample, Matcher, Options, RejectReason, STALE_NAN_BITS, Sample,
    SeriesCreation, SeriesWrite, Storage, TenantId,
};

const T: TenantId = TenantId::DEFAULT;
const HOUR: i64 = 3_600_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
}

fn write(labels: Labels, samples: &[(i64, f64)], exemplars: &[(i64, &str)]) -> SeriesWrite {
    SeriesWrite {
        labels,
        samples: samples.iter().map(|&(ts, value)| Sample { ts, value, start_ts: 0 }).collect(),
        histograms: Vec::new(),
        exemplars: exemplars
            .iter()
            .map(|&(ts, trace)| Exemplar { ts, value: 1.0, labels: self::labels(&[("trace_id", trace)]) })
            .collect(),
    }
}

fn id_of(s: &Storage, name: &str) -> u64 {
    let found = s.select_labels(T, &[vec![Matcher::equal("__name__", name)]], i64::MIN, i64::MAX).unwrap();
    assert_eq!(found.len(), 1, "{name}");
    found[0].0
}

fn samples(s: &Storage, id: u64) -> Vec<(i64, u64)> {
    s.samples(id, i64::MIN, i64::MAX).unwrap().into_iter().map(|s| (s.ts, s.value.to_bits())).collect()
}

#[test]
fn matchers_select_like_promql() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), Options::default()).unwrap();
    let now = amber_storage::now_ms();
    let writes = vec![
        write(labels(&[("__name__", "a"), ("env", "prod")]), &[(now, 1.0)], &[]),
        write(labels(&[("__name__", "a"), ("env", "dev")]), &[(now, 1.0)], &[]),
        write(labels(&[("__name__", "a")]), &[(now, 1.0)], &[]),
        write(labels(&[("__name__", "b"), ("env", "prod")]), &[(now, 1.0)], &[]),
    ];
    s.append(T, &writes, &[], SeriesCreation::UNLIMITED).unwrap();
    let names = |m: Vec<Matcher>| -> Vec<String> {
        s.select_labels(T, &[m], i64::MIN, i64::MAX).unwrap().into_iter().map(|(_, l)| l.to_string()).collect()
    };
    let ne = |n: &str, v: &str| Matcher { name: n.into(), op: amber_storage::MatchOp::NotEqual, value: v.into() };
    assert_eq!(names(vec![Matcher::equal("__name__", "a"), Matcher::equal("env", "")]), [r#"{__name__="a"}"#]);
    assert_eq!(
        names(vec![Matcher::equal("__name__", "a"), ne("env", "prod")]),
        [r#"{__name__="a"}"#, r#"{__name__="a", env="dev"}"#]
    );
    assert_eq!(
        names(vec![Matcher::regex("env", "prod|dev", false).unwrap()]),
        [r#"{__name__="a", env="dev"}"#, r#"{__name__="a", env="prod"}"#, r#"{__name__="b", env="prod"}"#]
    );
    assert_eq!(names(vec![Matcher::equal("__name__", "a"), Matcher::regex("env", "p.*", true).unwrap()]).len(), 2);
    assert_eq!(s.label_names(T, &[], i64::MIN, i64::MAX).unwrap(), ["__name__", "env"]);
    assert_eq!(
        s.label_values(T, "env", &[vec![Matcher::equal("__name__", "b")]], i64::MIN, i64::MAX).unwrap(),
        ["prod"]
    );
    // A time range with no data selects nothing.
    assert!(s.select(T, &[], now - 10 * HOUR, now - 9 * HOUR).unwrap().is_empty());
}

#[test]
fn sealing_merges_late_writes_and_keeps_every_value_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { block_duration_ms: HOUR, out_of_order_window_ms: 5 * HOUR, ..Options::default() };
    let now = amber_storage::now_ms();
    let start = (now - 6 * HOUR) / HOUR * HOUR;
    let stale = f64::from_bits(STALE_NAN_BITS);
    {
        let s = Storage::open(dir.path(), opts.clone()).unwrap();
        let series: Vec<(i64, f64)> =
            (0..240).map(|i| (start + i * 60_000, if i == 100 { stale } else { i as f64 })).collect();
        s.append(
            T,
            &[write(labels(&[("__name__", "m")]), &series, &[(start + 60_000, "t1")])],
            &[],
            SeriesCreation::UNLIMITED,
        )
        .unwrap();
        // Three hours on, windows older than that minus the out-of-order window are sealed.
        let report = s.seal(now + 3 * HOUR).unwrap();
        assert_eq!(report.sample_blocks_written, 4, "{report:?}");
        assert_eq!(report.samples_sealed, 240);
        assert_eq!(report.exemplar_blocks_written, 1);
        // A late write into a sealed window, within the out-of-order window of the series.
        let late = s
            .append(
                T,
                &[write(labels(&[("__name__", "m")]), &[(start + 30_000, 0.5)], &[(start + 30_000, "t2")])],
                &[],
                SeriesCreation::UNLIMITED,
            )
            .unwrap();
        assert_eq!((late.samples_written, late.exemplars_written, late.rejected.len()), (1, 1, 0));
        let resealed = s.seal(now + 3 * HOUR).unwrap();
        assert_eq!((resealed.sample_blocks_written, resealed.samples_sealed), (1, 1));
        // Contradicting a sealed sample is refused; repeating it is a no-op.
        let again = s
            .append(
                T,
                &[write(labels(&[("__name__", "m")]), &[(start + 60_000, 9.0), (start + 120_000, 2.0)], &[])],
                &[],
                SeriesCreation::UNLIMITED,
            )
            .unwrap();
        assert_eq!(again.rejected.iter().map(|r| r.reason).collect::<Vec<_>>(), [RejectReason::DuplicateTimestamp]);
        assert_eq!(again.duplicates_ignored, 1);
    }
    let s = Storage::open(dir.path(), opts).unwrap();
    let id = id_of(&s, "m");
    let got = samples(&s, id);
    assert_eq!(got.len(), 241);
    assert_eq!(got[1], (start + 30_000, 0.5f64.to_bits()));
    assert_eq!(got[101], (start + 100 * 60_000, STALE_NAN_BITS));
    let traces: Vec<String> = s
        .exemplars(id, i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|e| e.labels.get("trace_id").unwrap().to_string())
        .collect();
    assert_eq!(traces, ["t2", "t1"]);
    assert_eq!(s.exemplars_by_trace(T, "t1").unwrap()[0].exemplar.ts, start + 60_000);
    // Ranges inside a block cut it exactly.
    let range: Vec<i64> = s.samples(id, start + 60_000, start + 180_000).unwrap().iter().map(|s| s.ts).collect();
    assert_eq!(range, [start + 60_000, start + 120_000, start + 180_000]);
}

/// Retention removes old data whether it was sealed into blocks (short out-of-order window) or
/// still sits in the head (an out-of-order window longer than retention).
#[test]
fn retention_drops_whole_windows_and_their_trace_index() {
    for out_of_order_window_ms in [HOUR, 20 * HOUR] {
        retention_case(out_of_order_window_ms);
    }
}

fn retention_case(out_of_order_window_ms: i64) {
    let dir = tempfile::tempdir().unwrap();
    let opts =
        Options { block_duration_ms: HOUR, retention_ms: 10 * HOUR, out_of_order_window_ms, ..Options::default() };
    let s = Storage::open(dir.path(), opts).unwrap();
    let now = amber_storage::now_ms();
    let old = now - 9 * HOUR - HOUR / 2;
    s.append(
        T,
        &[write(labels(&[("__name__", "m")]), &[(old, 1.0), (now, 2.0)], &[(old, "old"), (now, "new")])],
        &[],
        SeriesCreation::UNLIMITED,
    )
    .unwrap();
    s.seal(now).unwrap();
    assert_eq!(s.enforce_retention(now).unwrap(), 0);
    // Two hours later the oldest window is past retention.
    assert_eq!(s.enforce_retention(now + 2 * HOUR).unwrap(), 1);
    let id = id_of(&s, "m");
    assert_eq!(samples(&s, id), [(now, 2.0f64.to_bits())]);
    assert!(s.exemplars_by_trace(T, "old").unwrap().is_empty());
    assert_eq!(s.exemplars_by_trace(T, "new").unwrap().len(), 1);
    // Writes older than retention are refused.
    let r = s
        .append(
            T,
            &[write(labels(&[("__name__", "x")]), &[(now - 11 * HOUR, 1.0)], &[])],
            &[],
            SeriesCreation::UNLIMITED,
        )
        .unwrap();
    assert_eq!(r.rejected[0].reason, RejectReason::TooOld);
}

#[test]
fn block_duration_is_fixed_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    drop(Storage::open(dir.path(), Options::default()).unwrap());
    let err = Storage::open(dir.path(), Options { block_duration_ms: HOUR, ..Options::default() }).err().unwrap();
    assert!(err.to_string().contains("block duration 7200000ms"), "{err}");
}

/// New series past the tenant's limit are refused; existing series keep being written, and other
/// tenants have their own count.
#[test]
fn series_limit_refuses_only_new_series_of_that_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), Options::default()).unwrap();
    let now = amber_storage::now_ms();
    let batch = |names: &[&str], ts: i64| -> Vec<SeriesWrite> {
        names.iter().map(|n| write(labels(&[("__name__", n)]), &[(ts, 1.0)], &[])).collect()
    };
    let r = s.append(T, &batch(&["a", "b", "c"], now - 2000), &[], SeriesCreation::at_most(2)).unwrap();
    assert_eq!(r.samples_written, 2);
    assert_eq!(
        r.rejected.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        [format!(
            "sample at {} for series {{__name__=\"c\"}}: the tenant has reached its limit of 2 series (max_series_per_tenant)",
            now - 2000
        )]
    );
    let r = s.append(T, &batch(&["a", "b", "d"], now - 1000), &[], SeriesCreation::at_most(2)).unwrap();
    assert_eq!((r.samples_written, r.rejected.len()), (2, 1));
    assert_eq!(s.series_count(T).unwrap(), 2);
    let other = TenantId(7);
    assert_eq!(s.append(other, &batch(&["x", "y"], now), &[], SeriesCreation::at_most(2)).unwrap().samples_written, 2);
    drop(s);
    // The count is rebuilt from the index after a restart.
    let s = Storage::open(dir.path(), Options::default()).unwrap();
    assert_eq!(s.append(T, &batch(&["e"], now), &[], SeriesCreation::at_most(2)).unwrap().rejected.len(), 1);
}

/// Series churned out by retention leave the index: the series count, label names and values
/// shrink back to the series that still hold data, a returning label set is a new series, and a
/// restart does not bring collected series back from old log segments.
#[test]
fn series_whose_data_left_retention_leave_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { block_duration_ms: HOUR, retention_ms: 10 * HOUR, ..Options::default() };
    let s = Storage::open(dir.path(), opts.clone()).unwrap();
    let now = amber_storage::now_ms();
    let old = now - 9 * HOUR - HOUR / 2;
    let generation = |g: &str, n: usize, ts: i64| -> Vec<SeriesWrite> {
        (0..n)
            .map(|i| {
                let i = i.to_string();
                let mut l = vec![("__name__", "churn"), ("gen", g), ("pod", i.as_str())];
                if g == "1" {
                    l.push(("zone", "old"));
                }
                write(labels(&l), &[(if g == "1" { old } else { ts }, 1.0)], &[])
            })
            .collect()
    };
    let keep = write(labels(&[("__name__", "keep")]), &[(old, 1.0), (now, 2.0)], &[]);
    s.append(T, &[generation("1", 50, old), vec![keep]].concat(), &[], SeriesCreation::UNLIMITED).unwrap();
    s.append(T, &generation("2", 20, now), &[], SeriesCreation::UNLIMITED).unwrap();
    s.seal(now).unwrap();
    let all = (i64::MIN, i64::MAX);
    assert_eq!(s.series_count(T).unwrap(), 71);
    assert_eq!(s.label_values(T, "gen", &[], all.0, all.1).unwrap(), ["1", "2"]);
    let old_ids: Vec<u64> = s
        .select_labels(T, &[vec![Matcher::equal("gen", "1")]], all.0, all.1)
        .unwrap()
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(old_ids.len(), 50);

    // Two hours on, the window of generation 1 is past retention, and so are its series.
    assert_eq!(s.enforce_retention(now + 2 * HOUR).unwrap(), 1);
    assert_eq!(s.series_count(T).unwrap(), 21);
    assert_eq!(s.label_values(T, "gen", &[], all.0, all.1).unwrap(), ["2"]);
    assert_eq!(s.label_names(T, &[], all.0, all.1).unwrap(), ["__name__", "gen", "pod"]);
    assert!(s.select(T, &[vec![Matcher::equal("gen", "1")]], all.0, all.1).unwrap().is_empty());
    assert_eq!(samples(&s, id_of(&s, "keep")), [(now, 2.0f64.to_bits())]);

    // A label set that comes back is a new series, and reads as one.
    let back = write(labels(&[("__name__", "churn"), ("gen", "1"), ("pod", "0"), ("zone", "old")]), &[(now, 3.0)], &[]);
    let r = s.append(T, &[back], &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!((r.samples_written, r.series_created), (1, 1));
    let found = s.select_labels(T, &[vec![Matcher::equal("gen", "1")]], all.0, all.1).unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].0 > *old_ids.iter().max().unwrap(), "ids are never reused");
    assert_eq!(samples(&s, found[0].0), [(now, 3.0f64.to_bits())]);
    assert_eq!(s.series_count(T).unwrap(), 22);

    // The log still holds generation 1's records (its segment has unsealed data of later
    // series); the real clock keeps them within retention, so replay meets series the index no
    // longer has, and drops them.
    drop(s);
    let s = Storage::open(dir.path(), opts).unwrap();
    assert_eq!(s.series_count(T).unwrap(), 22);
    assert_eq!(s.label_values(T, "pod", &[vec![Matcher::equal("gen", "1")]], all.0, all.1).unwrap(), ["0"]);
    assert_eq!(samples(&s, found[0].0), [(now, 3.0f64.to_bits())]);
    for id in old_ids {
        assert!(samples(&s, id).is_empty(), "series {id} came back");
    }
}

/// Series, label names and label values for a range that covers a window only in part list only
/// the series with a sample (float or histogram) in the range itself, sealed or in the head.
#[test]
fn metadata_reads_list_only_series_with_data_in_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), Options { block_duration_ms: HOUR, ..Options::default() }).unwrap();
    let now = amber_storage::now_ms();
    let window = now.div_euclid(HOUR) * HOUR - 2 * HOUR;
    let at = |name: &str, zone: &str, ts: i64| write(labels(&[("__name__", name), ("zone", zone)]), &[(ts, 1.0)], &[]);
    let h = Histogram { count: 1.0, zero_count: 1.0, ..Histogram::default() };
    let mut histogram = write(labels(&[("__name__", "hist"), ("zone", "c")]), &[], &[]);
    histogram.histograms.push(HistogramSample { ts: window + 40 * 60_000, start_ts: 0, h });
    let writes =
        [at("early", "a", window + 60_000), at("late", "b", window + 50 * 60_000), histogram, at("now", "d", now)];
    s.append(T, &writes, &[], SeriesCreation::UNLIMITED).unwrap();
    for sealed in [false, true] {
        if sealed {
            s.seal(now).unwrap();
        }
        let names = |mint: i64, maxt: i64| -> Vec<String> {
            s.series_with_data(T, &[vec![Matcher::regex("__name__", ".+", false).unwrap()]], mint, maxt)
                .unwrap()
                .into_iter()
                .map(|(_, l)| l.get("__name__").unwrap().to_string())
                .collect()
        };
        assert_eq!(names(window + 30 * 60_000, window + 45 * 60_000), ["hist"], "sealed: {sealed}");
        assert_eq!(names(window + 45 * 60_000, window + 55 * 60_000), ["late"]);
        assert_eq!(names(window, window + HOUR - 1), ["early", "hist", "late"]);
        assert_eq!(names(window + 2 * 60_000, window + 3 * 60_000), Vec::<String>::new());
        let range = (window + 45 * 60_000, window + 55 * 60_000);
        assert_eq!(s.label_values(T, "zone", &[], range.0, range.1).unwrap(), ["b"]);
        assert_eq!(s.label_names(T, &[], range.0, range.1).unwrap(), ["__name__", "zone"]);
        assert!(s.label_names(T, &[], window + 2 * 60_000, window + 3 * 60_000).unwrap().is_empty());
    }
}

/// The new-series budget is asked once, for the series the write would really create (a label set
/// repeated in the request or already stored is not new); series beyond what it grants are refused
/// with `NewSeriesRate` while their existing neighbours are written, and the series limit is applied
/// before the budget is asked.
#[test]
fn new_series_budget_creates_only_what_it_grants() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), Options::default()).unwrap();
    let now = amber_storage::now_ms();
    let batch = |names: &[&str], ts: i64| -> Vec<SeriesWrite> {
        names.iter().map(|n| write(labels(&[("__name__", n)]), &[(ts, 1.0)], &[])).collect()
    };
    s.append(T, &batch(&["old"], now - 3000), &[], SeriesCreation::UNLIMITED).unwrap();
    let asked = std::sync::Mutex::new(Vec::new());
    let grant_two = |n: u64| {
        asked.lock().unwrap().push(n);
        2
    };
    let limits = SeriesCreation { max_series: None, new_series_budget: Some(&grant_two) };
    let r = s.append(T, &batch(&["old", "a", "b", "a", "c", "d"], now - 2000), &[], limits).unwrap();
    assert_eq!(*asked.lock().unwrap(), [4], "asked for a, b, c and d once each");
    // old, a, b and the repeated a are written; c and d wait for budget.
    assert_eq!(r.samples_written, 3, "{r:?}");
    assert_eq!(r.duplicates_ignored, 1);
    assert_eq!(r.series_created, 2);
    assert_eq!(
        r.rejected.iter().map(|r| (r.series.to_string(), r.reason)).collect::<Vec<_>>(),
        [
            ("{__name__=\"c\"}".to_string(), RejectReason::NewSeriesRate),
            ("{__name__=\"d\"}".to_string(), RejectReason::NewSeriesRate)
        ]
    );
    assert_eq!(s.series_count(T).unwrap(), 3);
    // With room for one more series under max_series, the budget is asked for one only and the
    // rest are refused by the series limit.
    asked.lock().unwrap().clear();
    let limits = SeriesCreation { max_series: Some(4), new_series_budget: Some(&grant_two) };
    let r = s.append(T, &batch(&["c", "d"], now - 1000), &[], limits).unwrap();
    assert_eq!(*asked.lock().unwrap(), [1]);
    assert_eq!(
        r.rejected.iter().map(|r| (r.series.to_string(), r.reason)).collect::<Vec<_>>(),
        [("{__name__=\"d\"}".to_string(), RejectReason::SeriesLimit(4))]
    );
    // Writes to existing series never ask.
    asked.lock().unwrap().clear();
    let limits = SeriesCreation { max_series: None, new_series_budget: Some(&grant_two) };
    assert_eq!(s.append(T, &batch(&["a", "b", "c"], now), &[], limits).unwrap().samples_written, 3);
    assert!(asked.lock().unwrap().is_empty());
}

/// At most `max_exemplars_per_series_per_window` exemplars per series per block window; retried
/// exemplars are still recognised as written, the next window starts afresh, and the count
/// survives a restart.
#[test]
fn exemplar_limit_counts_per_series_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options { block_duration_ms: 60_000, max_exemplars_per_series_per_window: 3, ..Options::default() };
    let s = Storage::open(dir.path(), opts()).unwrap();
    let window = (amber_storage::now_ms() - 600_000) / 60_000 * 60_000;
    let ex = |ts: i64| (window + ts, "ab");
    let series = |exemplars: &[(i64, &str)]| vec![write(labels(&[("__name__", "h")]), &[], exemplars)];
    let r = s.append(T, &series(&[ex(1), ex(2), ex(3), ex(4)]), &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!(r.exemplars_written, 3);
    assert_eq!(
        r.rejected.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        [format!(
            "exemplar at {} for series {{__name__=\"h\"}}: the series has reached its limit of 3 exemplars in this block window (max_exemplars_per_series_per_window)",
            window + 4
        )]
    );
    // A retry of what was written is a duplicate, not a breach.
    let r = s.append(T, &series(&[ex(2), ex(3)]), &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!((r.exemplars_written, r.duplicates_ignored, r.rejected.len()), (0, 2, 0));
    drop(s);
    let s = Storage::open(dir.path(), opts()).unwrap();
    assert_eq!(s.append(T, &series(&[ex(5)]), &[], SeriesCreation::UNLIMITED).unwrap().rejected.len(), 1);
    // The next window has its own count.
    assert_eq!(s.append(T, &series(&[ex(60_001)]), &[], SeriesCreation::UNLIMITED).unwrap().exemplars_written, 1);
}

/// Unsealed data lives in memory and the write-ahead log: a reopen replays it (trace index
/// included), and once sealing has put everything in blocks the log's segments are deleted.
#[test]
fn the_wal_brings_back_the_head_and_sealing_deletes_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { block_duration_ms: HOUR, out_of_order_window_ms: HOUR, ..Options::default() };
    let now = amber_storage::now_ms();
    let start = (now - 3 * HOUR) / HOUR * HOUR;
    let series: Vec<(i64, f64)> = (0..180).map(|i| (start + i * 60_000, i as f64 * 0.5)).collect();
    {
        let s = Storage::open(dir.path(), opts.clone()).unwrap();
        s.append(
            T,
            &[write(labels(&[("__name__", "w")]), &series, &[(start + 90 * 60_000, "abc123")])],
            &[],
            SeriesCreation::UNLIMITED,
        )
        .unwrap();
        let stats = s.stats();
        assert_eq!((stats.head.series, stats.head.samples, stats.head.exemplars), (1, 180, 1));
        // The record is in the log, compressed: well under the 9 bytes a sample it takes raw.
        assert!(stats.wal_bytes > 0 && stats.wal_bytes < 180 * 9, "{} bytes of log", stats.wal_bytes);
    }
    let s = Storage::open(dir.path(), opts.clone()).unwrap();
    let id = id_of(&s, "w");
    let want: Vec<(i64, u64)> = series.iter().map(|&(ts, v)| (ts, v.to_bits())).collect();
    assert_eq!(samples(&s, id), want);
    assert_eq!(s.exemplars_by_trace(T, "abc123").unwrap()[0].exemplar.ts, start + 90 * 60_000);
    assert_eq!(s.stats().head.samples, 180);

    // Three hours on, every window of the series is sealed and the log holds nothing needed.
    let report = s.seal(now + 3 * HOUR).unwrap();
    assert_eq!((report.samples_sealed, report.exemplars_sealed), (180, 1));
    assert!(report.wal_segments_deleted >= 1, "{report:?}");
    let stats = s.stats();
    assert_eq!((stats.head.series, stats.head.samples, stats.wal_bytes), (0, 0, 0));
    // RocksDB's own log goes too: the pass flushed every memtable, so the blocks it wrote are in
    // table files, compressed, and no log file keeps them (RocksDB deletes the old ones just after).
    let rocksdb_log_bytes = || -> u64 {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rocksdb_log_bytes() > 0 {
        assert!(std::time::Instant::now() < deadline, "{} bytes of RocksDB log after sealing", rocksdb_log_bytes());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(s);
    let s = Storage::open(dir.path(), opts).unwrap();
    assert_eq!(s.stats().head.samples, 0, "nothing replayed");
    assert_eq!(samples(&s, id), want);
    assert_eq!(s.exemplars_by_trace(T, "abc123").unwrap().len(), 1);
}

/// A cumulative native histogram of schema 1 at scrape `i`.
fn native(i: i64) -> Histogram {
    let span = |offset, length| amber_storage::histogram::Span { offset, length };
    let buckets = vec![i as f64, (2 * i) as f64, 1.0];
    Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: 1.0,
        count: buckets.iter().sum::<f64>() + 1.0,
        sum: 3.5 * i as f64,
        positive_spans: vec![span(0, 2), span(3, 1)],
        positive_buckets: buckets,
        ..Default::default()
    }
}

fn histograms(s: &Storage, id: u64) -> Vec<HistogramSample> {
    s.histograms_of(&[id], i64::MIN, i64::MAX).unwrap().pop().unwrap()
}

/// Native histogram samples go through the head, the log, sealing and reopening like floats:
/// retries are no-ops, a different histogram at a taken timestamp is refused, a float and a
/// histogram never share a timestamp, and a series may switch from one kind to the other.
#[test]
fn native_histograms_are_kept_through_the_log_sealing_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { block_duration_ms: HOUR, out_of_order_window_ms: 3 * HOUR, ..Options::default() };
    let now = amber_storage::now_ms();
    let start = (now - 3 * HOUR) / HOUR * HOUR;
    let want: Vec<HistogramSample> =
        (0..120).map(|i| HistogramSample { ts: start + i * 60_000, start_ts: 0, h: native(i) }).collect();
    let w = |samples: Vec<Sample>, histograms: Vec<HistogramSample>| SeriesWrite {
        labels: labels(&[("__name__", "latency_seconds")]),
        samples,
        histograms,
        exemplars: vec![Exemplar { ts: start, value: 0.2, labels: labels(&[("trace_id", "feed01")]) }],
    };
    {
        let s = Storage::open(dir.path(), opts.clone()).unwrap();
        let r = s.append(T, &[w(Vec::new(), want.clone())], &[], SeriesCreation::UNLIMITED).unwrap();
        assert_eq!((r.histograms_written, r.exemplars_written, r.rejected.len()), (120, 1, 0));
        let retry = s.append(T, &[w(Vec::new(), want.clone())], &[], SeriesCreation::UNLIMITED).unwrap();
        assert_eq!((retry.histograms_written, retry.duplicates_ignored, retry.rejected.len()), (0, 121, 0));
        let mut changed = want[5].clone();
        changed.h.sum += 1.0;
        let float_on_histogram = Sample { ts: want[6].ts, value: 1.0, start_ts: 0 };
        let r = s.append(T, &[w(vec![float_on_histogram], vec![changed])], &[], SeriesCreation::UNLIMITED).unwrap();
        let refused: Vec<(DataKind, RejectReason)> = r.rejected.iter().map(|r| (r.kind, r.reason)).collect();
        assert_eq!(
            refused,
            vec![
                (DataKind::Sample, RejectReason::DuplicateTimestamp),
                (DataKind::Histogram, RejectReason::DuplicateTimestamp)
            ]
        );
        assert_eq!(s.stats().head.histograms, 120);
    }
    let s = Storage::open(dir.path(), opts.clone()).unwrap();
    let id = id_of(&s, "latency_seconds");
    assert_eq!(histograms(&s, id), want, "replayed from the log");
    assert_eq!(s.exemplars_by_trace(T, "feed01").unwrap().len(), 1);
    let report = s.seal(now + 3 * HOUR).unwrap();
    assert_eq!((report.histograms_sealed, report.histogram_blocks_written), (120, 2));
    assert_eq!(s.stats().head.histograms, 0);
    assert_eq!(histograms(&s, id), want, "read from blocks");
    // The series switches to float samples after its histograms; retrying a sealed histogram
    // is still recognised.
    let after = Sample { ts: start + 121 * 60_000, value: 7.0, start_ts: 0 };
    let r = s.append(T, &[w(vec![after], vec![want[3].clone()])], &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!((r.samples_written, r.histograms_written, r.rejected.len()), (1, 0, 0));
    drop(s);
    let s = Storage::open(dir.path(), opts).unwrap();
    assert_eq!(histograms(&s, id), want, "the histogram series is known again from its blocks");
    assert_eq!(samples(&s, id), vec![(after.ts, 7.0f64.to_bits())]);
    let window = s.histograms_of(&[id], want[10].ts, want[12].ts).unwrap().pop().unwrap();
    assert_eq!(window, want[10..=12].to_vec());
}

/// Start timestamps of float and histogram samples survive the log, sealing (also merged with a
/// late write into a sealed window) and restarts; a series without them writes the old block
/// kinds.
#[test]
fn start_timestamps_are_kept_through_the_log_sealing_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { block_duration_ms: HOUR, out_of_order_window_ms: 3 * HOUR, ..Options::default() };
    let now = amber_storage::now_ms();
    let start = (now - 3 * HOUR) / HOUR * HOUR;
    // A counter that restarts from its old value at sample 90: only the start timestamp shows it.
    let counter: Vec<Sample> = (0..120)
        .map(|i| {
            let start_ts = if i < 90 { start - 1_000 } else { start + 89 * 60_000 + 30_000 };
            Sample { ts: start + i * 60_000, value: i as f64, start_ts }
        })
        .collect();
    let hist: Vec<HistogramSample> =
        (0..120).map(|i| HistogramSample { ts: start + i * 60_000, start_ts: start - 2_000, h: native(i) }).collect();
    let plain: Vec<(i64, f64)> = (0..120).map(|i| (start + i * 60_000, 1.0)).collect();
    let writes = vec![
        SeriesWrite {
            labels: labels(&[("__name__", "requests_total")]),
            samples: counter.clone(),
            histograms: Vec::new(),
            exemplars: Vec::new(),
        },
        SeriesWrite {
            labels: labels(&[("__name__", "latency_seconds")]),
            samples: Vec::new(),
            histograms: hist.clone(),
            exemplars: Vec::new(),
        },
        write(labels(&[("__name__", "up")]), &plain, &[]),
    ];
    {
        let s = Storage::open(dir.path(), opts.clone()).unwrap();
        let r = s.append(T, &writes, &[], SeriesCreation::UNLIMITED).unwrap();
        assert_eq!((r.samples_written, r.histograms_written, r.rejected.len()), (240, 120, 0));
        assert_eq!(s.samples(id_of(&s, "requests_total"), i64::MIN, i64::MAX).unwrap(), counter, "from the head");
    }
    let s = Storage::open(dir.path(), opts.clone()).unwrap();
    let (counter_id, hist_id, plain_id) = (id_of(&s, "requests_total"), id_of(&s, "latency_seconds"), id_of(&s, "up"));
    assert_eq!(s.samples(counter_id, i64::MIN, i64::MAX).unwrap(), counter, "replayed from the log");
    assert_eq!(histograms(&s, hist_id), hist, "replayed from the log");
    s.seal(now + 3 * HOUR).unwrap();
    assert_eq!(s.stats().head.samples, 0);
    assert_eq!(s.samples(counter_id, i64::MIN, i64::MAX).unwrap(), counter, "read from blocks");
    assert_eq!(histograms(&s, hist_id), hist, "read from blocks");
    assert!(s.samples(plain_id, i64::MIN, i64::MAX).unwrap().iter().all(|x| x.start_ts == 0));
    // A late sample with its own start timestamp lands in a sealed window and is merged in.
    let late = Sample { ts: start + 30 * 60_000 + 1, value: 30.5, start_ts: start + 30 * 60_000 };
    let w = SeriesWrite {
        labels: labels(&[("__name__", "requests_total")]),
        samples: vec![late],
        histograms: Vec::new(),
        exemplars: Vec::new(),
    };
    assert_eq!(s.append(T, &[w], &[], SeriesCreation::UNLIMITED).unwrap().samples_written, 1);
    s.seal(now + 3 * HOUR).unwrap();
    drop(s);
    let s = Storage::open(dir.path(), opts).unwrap();
    let mut want = counter.clone();
    want.insert(31, late);
    assert_eq!(s.samples(counter_id, i64::MIN, i64::MAX).unwrap(), want);
}

/// While data keeps arriving in time, sealing takes each head chunk as it closes (a window is
/// sealed in steps, late samples merging into its block), so the log holds about one chunk of
/// scrapes however many windows go by; reopening after the process stops without any shutdown
/// step finds every sample, bit for bit, replaying only that tail.
#[test]
fn the_log_stays_bounded_while_ingesting_and_replays_to_the_same_data() {
    const SERIES: usize = 50;
    const SCRAPE: i64 = 15_000;
    const SCRAPES_PER_PASS: i64 = 4; // a pass a minute, as `--maintenance-interval` defaults to
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { block_duration_ms: 2 * HOUR, out_of_order_window_ms: HOUR, ..Options::default() };
    let start = (amber_storage::now_ms() - 7 * HOUR) / (2 * HOUR) * (2 * HOUR);
    let names: Vec<String> = (0..SERIES).map(|i| format!("m{i}")).collect();
    let value = |series: usize, scrape: i64| (scrape * (series as i64 + 1)) as f64 * 0.25;
    // Per sample, a record holds at most a one-byte id, two counts, a timestamp delta of a few
    // bytes and the 8-byte value: 13 bytes uncompressed. The bound does not depend on how many
    // scrapes were written (72,000 samples here; a log of them all would be 5 to 10 times it).
    let bound_samples = (amber_storage::head::CHUNK_SAMPLES as i64 + 2 * SCRAPES_PER_PASS) * SERIES as i64;
    let bound_bytes = bound_samples as u64 * 13;
    let scrapes = 6 * HOUR / SCRAPE; // three windows
    let mut before = Vec::new();
    {
        let s = Storage::open(dir.path(), opts.clone()).unwrap();
        for scrape in 0..scrapes {
            let ts = start + scrape * SCRAPE;
            let writes: Vec<SeriesWrite> = names
                .iter()
                .enumerate()
                .map(|(i, n)| write(labels(&[("__name__", n)]), &[(ts, value(i, scrape))], &[]))
                .collect();
            s.append(T, &writes, &[], SeriesCreation::UNLIMITED).unwrap();
            if scrape % SCRAPES_PER_PASS == SCRAPES_PER_PASS - 1 {
                s.seal(ts).unwrap();
                let stats = s.stats();
                assert!(stats.head.samples as i64 <= bound_samples, "scrape {scrape}: {:?}", stats.head);
                assert!(stats.wal_bytes <= bound_bytes, "scrape {scrape}: {} bytes of log", stats.wal_bytes);
            }
        }
        for n in &names {
            before.push(samples(&s, id_of(&s, n)));
        }
        assert!(before.iter().all(|b| b.len() == scrapes as usize));
        // Dropped with no seal or flush: what is durable is what every acknowledged append made so.
    }
    let s = Storage::open(dir.path(), opts).unwrap();
    assert!(s.stats().head.samples as i64 <= bound_samples, "replayed {:?}", s.stats().head);
    let after: Vec<_> = names.iter().map(|n| samples(&s, id_of(&s, n))).collect();
    assert_eq!(after, before);
}

/// History goes into blocks whatever its age and order: out of order beside live data, into a
/// series the head holds, and a rerun writes nothing twice.
#[test]
fn backfill_writes_history_into_blocks_and_a_rerun_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { max_exemplars_per_series_per_window: 3, ..Options::default() };
    let s = Storage::open(dir.path(), opts.clone()).unwrap();
    let now = amber_storage::now_ms();
    let cpu = labels(&[("__name__", "cpu")]);
    // Live data now: a day-old sample is far outside the out-of-order window for it.
    s.append(T, &[write(cpu.clone(), &[(now, 5.0)], &[])], &[], SeriesCreation::UNLIMITED).unwrap();
    let live =
        s.append(T, &[write(cpu.clone(), &[(now - 24 * HOUR, 1.0)], &[])], &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!(live.rejected[0].reason, RejectReason::OutOfOrder);

    // Newest first, across three windows, with exemplars (one past the limit) and a new series.
    let old = now - 24 * HOUR;
    let history = vec![
        write(
            cpu.clone(),
            &[(old + 2 * HOUR, 3.0), (old + HOUR, 2.0), (old, 1.0)],
            &[(old, "t0"), (old + 1, "t1"), (old + 2, "t2"), (old + 3, "t3")],
        ),
        write(labels(&[("__name__", "mem")]), &[(old, 7.0)], &[]),
    ];
    let first = s.backfill(T, &history, &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!((first.samples_written, first.exemplars_written, first.series_created), (4, 3, 1));
    assert_eq!(first.rejected.len(), 1);
    assert_eq!((first.rejected[0].ts, first.rejected[0].reason), (old + 3, RejectReason::ExemplarLimit(3)));
    let cpu_id = id_of(&s, "cpu");
    let expected: Vec<(i64, u64)> = [(old, 1.0), (old + HOUR, 2.0), (old + 2 * HOUR, 3.0), (now, 5.0)]
        .iter()
        .map(|&(t, v)| (t, f64::to_bits(v)))
        .collect();
    assert_eq!(samples(&s, cpu_id), expected);
    assert_eq!(s.exemplars_by_trace(T, "t1").unwrap()[0].exemplar.ts, old + 1);
    assert!(s.exemplars_by_trace(T, "t3").unwrap().is_empty());
    // Listed for the day-old range, as series are from their activity sets.
    let listed = s.select_labels(T, &[vec![Matcher::equal("__name__", "mem")]], old - HOUR, old + HOUR).unwrap();
    assert_eq!(listed.len(), 1);

    // A rerun is all duplicates; a different value at a held timestamp (block or head) is refused.
    let again = s.backfill(T, &history, &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!((again.samples_written, again.exemplars_written, again.duplicates_ignored), (0, 0, 7));
    let clash =
        s.backfill(T, &[write(cpu.clone(), &[(old, 9.0), (now, 9.0)], &[])], &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!(clash.samples_written, 0);
    assert!(clash.rejected.iter().all(|r| r.reason == RejectReason::DuplicateTimestamp), "{:?}", clash.rejected);
    assert_eq!(clash.rejected.len(), 2);
    // Before retention: refused, like a live write.
    let too_old =
        s.backfill(T, &[write(cpu.clone(), &[(now - 30 * 24 * HOUR, 1.0)], &[])], &[], SeriesCreation::UNLIMITED);
    assert_eq!(too_old.unwrap().rejected[0].reason, RejectReason::TooOld);

    // Durable without the log: the same after a restart, and after sealing the live sample.
    drop(s);
    let s = Storage::open(dir.path(), opts).unwrap();
    s.seal(now + 2 * HOUR).unwrap();
    assert_eq!(samples(&s, cpu_id), expected);
}

/// A read of many series across many windows (enough blocks to be decoded on several threads)
/// gives every series exactly its samples in the range, cut inside the first and last blocks,
/// in the order the ids were asked for, with the head's newer samples after the blocks'.
#[test]
fn reads_of_many_blocks_give_each_series_its_samples_in_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), Options::default()).unwrap();
    let now = amber_storage::now_ms();
    let (series, windows, per_window) = (100, 12, 16);
    let old = now - 2 * 24 * HOUR;
    let value = |i: usize, k: i64| (i as i64 * 1_000_000 + k) as f64;
    let history: Vec<SeriesWrite> = (0..series)
        .map(|i| {
            let points: Vec<(i64, f64)> =
                (0..windows * per_window).map(|k| (old + k * 2 * HOUR / per_window, value(i, k))).collect();
            write(labels(&[("__name__", "many"), ("i", &i.to_string())]), &points, &[])
        })
        .collect();
    let report = s.backfill(T, &history, &[], SeriesCreation::UNLIMITED).unwrap();
    assert_eq!(report.samples_written, series as u64 * (windows * per_window) as u64);
    let live: Vec<SeriesWrite> = (0..series)
        .map(|i| write(labels(&[("__name__", "many"), ("i", &i.to_string())]), &[(now, -1.0)], &[]))
        .collect();
    s.append(T, &live, &[], SeriesCreation::UNLIMITED).unwrap();

    let mut ids: Vec<u64> = s
        .select_labels(T, &[vec![Matcher::equal("__name__", "many")]], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), series);
    ids.reverse();
    // From the middle of the first window to the end: cut inside the first block.
    let (first_k, mint) = (per_window / 2, old + (per_window / 2) * 2 * HOUR / per_window - 1);
    let got = s.samples_of(&ids, mint, now).unwrap();
    assert_eq!(got.len(), ids.len());
    for (id, samples) in ids.iter().zip(got) {
        let i: usize = id_index(&s, *id).parse().unwrap();
        let mut want: Vec<(i64, u64)> =
            (first_k..windows * per_window).map(|k| (old + k * 2 * HOUR / per_window, value(i, k).to_bits())).collect();
        want.push((now, (-1.0f64).to_bits()));
        let samples: Vec<(i64, u64)> = samples.iter().map(|s| (s.ts, s.value.to_bits())).collect();
        assert_eq!(samples, want, "series {i}");
    }
    // Ending inside the last block, and a range inside one block.
    let maxt = old + (windows * per_window - 3) * 2 * HOUR / per_window;
    let got = s.samples_of(&ids[..1], mint, maxt).unwrap();
    assert_eq!(got[0].len() as i64, windows * per_window - 2 - first_k);
    let one = s.samples_of(&ids[..1], old + 1, old + 2 * HOUR / per_window).unwrap();
    assert_eq!(one[0].iter().map(|s| s.ts).collect::<Vec<_>>(), vec![old + 2 * HOUR / per_window]);
}

/// The `i` label of a series, read back by id.
fn id_index(s: &Storage, id: u64) -> String {
    let labels = s.series_labels(&[id]).unwrap();
    labels[0].1.get("i").unwrap().to_string()
}

//! The bucket source answers as the local store does over the same data, written through
//! `Storage`, sealed and uploaded, so the block files are the real ones. The compactor's tests
//! use the same data and comparison.

use super::*;
use crate::objstore::{Bucket, Metered, ObjectStoreRequests};
use crate::source::Local;
use crate::upload::upload_pending;
use crate::{Histogram, Label, Options, SeriesCreation, SeriesWrite, Storage, TenantId};
use amber_histogram::Span;

pub(crate) const MINUTE: i64 = 60 * 1000;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub(crate) const WINDOW: i64 = 2 * HOUR;
pub(crate) const TENANT: &str = "anonymous";

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
}

pub(crate) fn sample(ts: i64, value: f64) -> Sample {
    Sample { ts, value, start_ts: crate::NO_START }
}

pub(crate) fn exemplar(ts: i64, pairs: &[(&str, &str)]) -> Exemplar {
    Exemplar { ts, value: 0.5, labels: labels(pairs) }
}

fn histogram(ts: i64, n: f64) -> HistogramSample {
    let h = Histogram {
        schema: 0,
        count: 3.0 * n,
        sum: 4.5 * n,
        positive_spans: vec![Span { offset: 0, length: 2 }],
        positive_buckets: vec![n, 2.0 * n],
        ..Default::default()
    };
    HistogramSample { ts, start_ts: crate::NO_START, h }
}

/// Data written, sealed and uploaded.
pub(crate) struct Stored {
    pub(crate) storage: Arc<Storage>,
    pub(crate) bucket: Arc<Bucket>,
    pub(crate) runtime: tokio::runtime::Runtime,
    /// Start of the oldest window written.
    pub(crate) first: i64,
    pub(crate) now: i64,
    _dir: tempfile::TempDir,
}

impl Stored {
    /// `windows` closed windows, the newest ending two hours before the current one begins,
    /// filled by `write(storage, first window start)`, then sealed and uploaded.
    fn new(windows: i64, write: impl FnOnce(&Storage, i64)) -> Stored {
        let now = crate::now_ms();
        let first = now.div_euclid(WINDOW) * WINDOW - (windows + 1) * WINDOW;
        Stored::starting_at(first, now, write)
    }

    /// Windows from `first` (a window's start, closed at `now`) filled by `write(storage, first)`,
    /// sealed and uploaded at `now`.
    pub(crate) fn starting_at(first: i64, now: i64, write: impl FnOnce(&Storage, i64)) -> Stored {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { upload_sealed_windows: true, retention_ms: 40 * 24 * HOUR, ..Default::default() };
        let storage = Arc::new(Storage::open(dir.path(), opts).unwrap());
        write(&storage, first);
        let stored = Stored { storage, bucket: Arc::new(Bucket::in_memory()), runtime, first, now, _dir: dir };
        stored.seal_and_upload();
        stored
    }

    pub(crate) fn seal_and_upload(&self) {
        self.storage.seal(self.now).unwrap();
        self.runtime.block_on(upload_pending(&self.storage, &*self.bucket, TENANT, None, self.now)).unwrap();
        assert_eq!(self.storage.pending_uploads(self.now).unwrap(), []);
    }

    pub(crate) fn local(&self) -> Local {
        Local::new(self.storage.clone(), TENANT)
    }

    pub(crate) fn source(&self, store: Arc<dyn ObjectStorage>, opts: BucketSourceOptions) -> BucketSource {
        BucketSource::new(store, self.runtime.handle().clone(), opts)
    }
}

pub(crate) fn write(storage: &Storage, tenant: TenantId, series: Vec<SeriesWrite>) {
    let report = storage.append(tenant, &series, &[], SeriesCreation::UNLIMITED).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
}

pub(crate) fn series(
    pairs: &[(&str, &str)],
    samples: Vec<Sample>,
    histograms: Vec<HistogramSample>,
    ex: Vec<Exemplar>,
) -> SeriesWrite {
    SeriesWrite { labels: labels(pairs), samples, histograms, exemplars: ex }
}

/// Four windows of series that start, stop and skip windows, with floats, native histograms and
/// exemplars carrying trace ids under both trace-id labels; and a second tenant.
fn four_windows() -> Stored {
    Stored::new(4, fill_four_windows)
}

/// What [`four_windows`] writes, from the window starting at `w`.
pub(crate) fn fill_four_windows(storage: &Storage, w: i64) {
    let every = |from: i64, to: i64, step: i64| (from..to).step_by(step as usize).map(|ts| sample(ts, (ts - w) as f64));
    write(
        storage,
        TenantId::DEFAULT,
        vec![
            series(
                &[("__name__", "up"), ("job", "api"), ("instance", "a")],
                every(w, w + 4 * WINDOW, 5 * MINUTE).collect(),
                vec![],
                vec![
                    exemplar(w + WINDOW + 10 * MINUTE, &[("trace_id", "abc")]),
                    exemplar(w + 3 * WINDOW + 20 * MINUTE, &[("trace_id", "def"), ("traceID", "abc")]),
                    exemplar(w + 3 * WINDOW + 30 * MINUTE, &[("span_id", "abc")]),
                ],
            ),
            series(
                &[("__name__", "up"), ("job", "api"), ("instance", "b")],
                every(w + WINDOW, w + 3 * WINDOW, 10 * MINUTE).collect(),
                vec![],
                vec![exemplar(w + 2 * WINDOW + 5 * MINUTE, &[("trace_id", "abc")])],
            ),
            series(
                &[("__name__", "up"), ("job", "web")],
                every(w, w + WINDOW, 15 * MINUTE).chain(every(w + 3 * WINDOW, w + 4 * WINDOW, 15 * MINUTE)).collect(),
                vec![],
                vec![exemplar(w + 20 * MINUTE, &[("traceID", "abc")])],
            ),
            series(
                &[("__name__", "latency"), ("job", "api")],
                vec![],
                (w + WINDOW..w + 4 * WINDOW).step_by((30 * MINUTE) as usize).map(|ts| histogram(ts, 1.0)).collect(),
                vec![],
            ),
            series(
                &[("__name__", "errors_total"), ("job", "db"), ("instance", "a")],
                vec![sample(w + 2 * WINDOW + 90 * MINUTE, 1.0)],
                vec![],
                vec![],
            ),
        ],
    );
    let team_b = storage.register_tenant("team-b").unwrap();
    write(
        storage,
        team_b,
        vec![series(
            &[("__name__", "up"), ("job", "b")],
            every(w + WINDOW, w + 2 * WINDOW, HOUR).collect(),
            vec![],
            vec![],
        )],
    );
}

fn not_equal(name: &str, value: &str) -> Matcher {
    Matcher { name: name.into(), op: crate::MatchOp::NotEqual, value: value.into() }
}

/// The selector lists every comparison runs with.
fn selector_cases() -> Vec<(&'static str, Vec<Vec<Matcher>>)> {
    vec![
        ("all series", vec![]),
        ("name", vec![vec![Matcher::equal("__name__", "up")]]),
        ("name and !=", vec![vec![Matcher::equal("__name__", "up"), not_equal("job", "web")]]),
        (
            "regexes, one matching an absent label",
            vec![vec![
                Matcher::regex("__name__", "up|latency", false).unwrap(),
                Matcher::regex("instance", "a|", false).unwrap(),
            ]],
        ),
        ("negative regex", vec![vec![Matcher::regex("__name__", "up", true).unwrap()]]),
        ("two selectors", vec![vec![Matcher::equal("job", "db")], vec![Matcher::equal("instance", "b")]]),
        ("empty value matches the label's absence", vec![vec![Matcher::equal("instance", "")]]),
        ("nothing", vec![vec![Matcher::equal("job", "nope")]]),
    ]
}

/// Time ranges relative to the first window's start: all of it, windows covered in part, one
/// window exactly, a minute, an instant.
fn range_cases(w: i64) -> Vec<(&'static str, i64, i64)> {
    vec![
        ("everything", w - WINDOW, w + 6 * WINDOW),
        ("windows 0 and 1 in part", w + HOUR, w + 3 * HOUR),
        ("a minute in window 1", w + WINDOW + 30 * MINUTE, w + WINDOW + 31 * MINUTE),
        ("window 2 whole", w + 2 * WINDOW, w + 3 * WINDOW - 1),
        ("window 2 after its only errors_total sample", w + 2 * WINDOW + 91 * MINUTE, w + 4 * WINDOW),
        ("the errors_total instant", w + 2 * WINDOW + 90 * MINUTE, w + 2 * WINDOW + 90 * MINUTE),
        ("before any data", w - 3 * WINDOW, w - 1),
    ]
}

pub(crate) fn assert_same_answers(bucket: &dyn ReadSource, local: &dyn ReadSource, tenant: &str, w: i64) {
    let all_columns = Columns { samples: true, histograms: true, exemplars: true };
    for (what, selectors) in selector_cases() {
        for (range, mint, maxt) in range_cases(w) {
            let case = format!("{tenant}, {what}, {range}");
            for columns in [Columns::SAMPLES, Columns::EXEMPLARS, all_columns] {
                assert_eq!(
                    bucket.select(tenant, &selectors, mint, maxt, columns).unwrap(),
                    local.select(tenant, &selectors, mint, maxt, columns).unwrap(),
                    "select {columns:?}: {case}"
                );
            }
            assert_eq!(
                bucket.series(tenant, &selectors, mint, maxt).unwrap(),
                local.series(tenant, &selectors, mint, maxt).unwrap(),
                "series: {case}"
            );
            assert_eq!(
                bucket.label_names(tenant, &selectors, mint, maxt).unwrap(),
                local.label_names(tenant, &selectors, mint, maxt).unwrap(),
                "label names: {case}"
            );
            for name in ["__name__", "job", "instance", "absent", ""] {
                assert_eq!(
                    bucket.label_values(tenant, name, &selectors, mint, maxt).unwrap(),
                    local.label_values(tenant, name, &selectors, mint, maxt).unwrap(),
                    "label values of {name:?}: {case}"
                );
            }
        }
    }
    for trace in ["abc", "def", "absent"] {
        assert_eq!(
            bucket.exemplars_by_trace(tenant, trace).unwrap(),
            local.exemplars_by_trace(tenant, trace).unwrap(),
            "{tenant}: trace {trace}"
        );
    }
}

#[test]
fn the_bucket_answers_every_read_as_the_local_store_does() {
    let s = four_windows();
    let local = s.local();
    // Small tails, so that sections and blocks are range reads of their own.
    let bucket = s.source(s.bucket.clone(), BucketSourceOptions { tail_bytes: 0, ..Default::default() });
    let w = s.first;

    // The comparison is not between empty answers.
    let everything =
        bucket.select(TENANT, &[], w, w + 4 * WINDOW, Columns { samples: true, histograms: true, exemplars: true });
    let counts: Vec<(String, usize, usize, usize)> = everything
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!("{:?}", s.labels.iter().map(|l| &l.value).collect::<Vec<_>>()),
                s.samples.len(),
                s.histograms.len(),
                s.exemplars.len(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            (r#"["errors_total", "a", "db"]"#.to_string(), 1, 0, 0),
            (r#"["latency", "api"]"#.to_string(), 0, 12, 0),
            (r#"["up", "a", "api"]"#.to_string(), 96, 0, 3),
            (r#"["up", "b", "api"]"#.to_string(), 24, 0, 1),
            (r#"["up", "web"]"#.to_string(), 16, 0, 1),
        ]
    );
    let abc = bucket.exemplars_by_trace(TENANT, "abc").unwrap();
    assert_eq!(
        abc.iter().map(|t| t.exemplar.ts - w).collect::<Vec<_>>(),
        [20 * MINUTE, WINDOW + 10 * MINUTE, 2 * WINDOW + 5 * MINUTE, 3 * WINDOW + 20 * MINUTE],
        "the span_id exemplar is not a trace's"
    );

    assert_same_answers(&bucket, &local, TENANT, w);
    assert_same_answers(&bucket, &local, "team-b", w);
    assert_same_answers(&bucket, &local, "never-wrote", w);

    // The same with the default tail, which holds these small files whole.
    let whole = s.source(s.bucket.clone(), BucketSourceOptions::default());
    assert_same_answers(&whole, &local, TENANT, w);
}

#[test]
fn a_window_uploaded_again_since_the_index_was_read_is_read_from_its_new_file() {
    let s = four_windows();
    let opts = BucketSourceOptions { index_refresh: Duration::from_secs(3600), tail_bytes: 0, ..Default::default() };
    let bucket = s.source(s.bucket.clone(), opts);
    let w = s.first;
    let before = bucket.select(TENANT, &[], w, w + 4 * WINDOW, Columns::SAMPLES).unwrap();
    assert_eq!(before.len(), 5);

    // A late series re-seals window 3: its old block file is deleted, the index names a new one.
    write(
        &s.storage,
        TenantId::DEFAULT,
        vec![series(&[("__name__", "late")], vec![sample(w + 3 * WINDOW + 1, 1.0)], vec![], vec![])],
    );
    s.seal_and_upload();
    let after = bucket.select(TENANT, &[], w, w + 4 * WINDOW, Columns::SAMPLES).unwrap();
    assert_eq!(after, s.local().select(TENANT, &[], w, w + 4 * WINDOW, Columns::SAMPLES).unwrap());
    assert_eq!(after.len(), 6);
}

#[test]
fn a_missing_bucket_is_a_retryable_error_naming_the_key() {
    let s = four_windows();
    let broken = crate::objstore::Bucket::open(&crate::objstore::BucketConfig {
        url: "s3://no-such-bucket".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        allow_http: true,
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        region: Some("us-east-1".into()),
    })
    .unwrap();
    let source = s.source(Arc::new(broken), BucketSourceOptions::default());
    let err = source.series(TENANT, &[], 0, i64::MAX).unwrap_err();
    assert!(matches!(&err, Error::ObjectStore { key, .. } if key == "anonymous/index.json"), "{err}");
    assert!(err.to_string().starts_with("object store unavailable reading anonymous/index.json: "), "{err}");
}

/// A trace looked up over 30 days of two-hour windows: every window costs its opening and its
/// filter; only the window holding the trace is read further.
#[test]
fn a_trace_lookup_reads_past_the_filters_only_in_the_window_holding_the_trace() {
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let windows = 360;
    let s = Stored::new(windows, |storage, w| {
        let ts = |k: i64| w + k * WINDOW + MINUTE;
        let traced = |k: i64| if k == 200 { trace.to_string() } else { format!("{k:032x}") };
        write(
            storage,
            TenantId::DEFAULT,
            vec![series(
                &[("__name__", "requests_total")],
                (0..windows).map(|k| sample(ts(k), k as f64)).collect(),
                vec![],
                (0..windows).map(|k| exemplar(ts(k), &[("trace_id", &traced(k))])).collect(),
            )],
        );
    });
    let metered = Arc::new(Metered::new(s.bucket.clone()));
    let bucket = s.source(metered.clone(), BucketSourceOptions { tail_bytes: 0, ..Default::default() });
    let want = s.local().exemplars_by_trace(TENANT, trace).unwrap();
    assert_eq!(want.len(), 1);

    // Windows whose filter wrongly admits the id (about 0.4 % of them) have their trace table
    // read too; counted here straight from the files, without the source.
    let index = s.runtime.block_on(index::read(&*s.bucket, TENANT)).unwrap();
    assert_eq!(index.windows.len(), 360);
    let false_positives = s.runtime.block_on(async {
        let mut n = 0;
        for w in &index.windows[..] {
            let r = crate::blockfile::BlockFileReader::open(&*s.bucket, &w.object, w.bytes).await.unwrap();
            if r.may_contain_trace(trace).await.unwrap() && r.trace(trace).await.unwrap().is_empty() {
                n += 1;
            }
        }
        n
    });

    assert_eq!(bucket.exemplars_by_trace(TENANT, trace).unwrap(), want);
    let first = metered.requests();
    // The index; per window its trailer, table of contents, header and filter; in the window
    // with the trace its trace table, series, exemplar index and exemplar blocks.
    assert_eq!((first.gets, first.get_ranges), (1, 360 * 4 + 4 + false_positives), "{first:?}");

    // Warm: openings, filters, series list and column index are kept; the trace tables and
    // exemplar blocks are read again.
    assert_eq!(bucket.exemplars_by_trace(TENANT, trace).unwrap(), want);
    let second = metered.requests();
    let again = (second.gets - first.gets, second.get_ranges - first.get_ranges);
    assert_eq!(again, (0, 2 + false_positives), "{second:?}");
}

#[test]
fn the_range_cache_answers_a_repeated_query_without_the_store() {
    let s = four_windows();
    let w = s.first;
    let metered = Arc::new(Metered::new(s.bucket.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(RangeCache::open(metered.clone(), dir.path(), 64 << 20).unwrap());
    let opts = BucketSourceOptions { tail_bytes: 0, ..Default::default() };
    // Counts what the sources ask of the cache.
    let asked = Arc::new(Metered::new(cache.clone()));
    let bucket = s.source(asked.clone(), opts.clone());
    let all_columns = Columns { samples: true, histograms: true, exemplars: true };
    let selectors = vec![vec![Matcher::regex("__name__", "up|latency", false).unwrap()]];
    let query = |source: &BucketSource| source.select(TENANT, &selectors, w + HOUR, w + 7 * HOUR, all_columns).unwrap();

    let want = s.local().select(TENANT, &selectors, w + HOUR, w + 7 * HOUR, all_columns).unwrap();
    assert_eq!(query(&bucket), want);
    let first = metered.requests();
    assert!(first.get_ranges > 0);
    assert_eq!(query(&bucket), want);
    assert_eq!(metered.requests(), first, "no request reached the store");

    // A new source (a restarted querier) reads the index again, and every range from disk.
    let fresh = s.source(asked.clone(), opts);
    assert_eq!(query(&fresh), want);
    let third = metered.requests();
    assert_eq!(third, ObjectStoreRequests { gets: first.gets + 1, bytes_in: third.bytes_in, ..first });
    let stats = cache.stats();
    // Every range the sources asked for came from the store once, and from disk after that.
    assert_eq!(stats.misses, first.get_ranges);
    assert_eq!(stats.hits, asked.requests().get_ranges - first.get_ranges);
    assert!(stats.hits >= first.get_ranges, "the fresh source alone asked for each range again");
}

#[test]
fn opened_files_stay_within_their_memory_budget() {
    let s = four_windows();
    let w = s.first;
    let roomy = s.source(s.bucket.clone(), BucketSourceOptions::default());
    roomy.select(TENANT, &[], w, w + 4 * WINDOW, Columns::SAMPLES).unwrap();
    let (bytes, files) = roomy.open_files();
    assert_eq!(files, 4);
    // Room for about two of the four files.
    let budget = bytes / 2;
    let tight = s.source(s.bucket.clone(), BucketSourceOptions { open_files_bytes: budget, ..Default::default() });
    let local = s.local();
    for _ in 0..2 {
        assert_eq!(
            tight.select(TENANT, &[], w, w + 4 * WINDOW, Columns::SAMPLES).unwrap(),
            local.select(TENANT, &[], w, w + 4 * WINDOW, Columns::SAMPLES).unwrap()
        );
        let (held, files) = tight.open_files();
        assert!(held <= budget && files < 4, "{held} bytes in {files} files, budget {budget}");
    }
}

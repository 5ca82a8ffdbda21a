//! `RemoteAmber` (a read source over another Amber's HTTP API) answers exactly as
//! `source::Local` answers over the same store: samples, native histograms, exemplars, series,
//! label names and values, exemplars by trace, for the default tenant and another, with
//! equality, `!=`, regex and negated-regex matchers, several overlapping selectors, none, a
//! UTF-8 label name, and whole and partial ranges with millisecond edges.

mod common;

use std::sync::Arc;
use std::time::Duration;

use amber_api::remote_source::RemoteAmber;
use amber_storage::histogram::Histogram;
use amber_storage::querier::TracedExemplar;
use amber_storage::source::{Columns, Local, ReadSource, SeriesData};
use amber_storage::{Error, HistogramSample, Labels, MatchOp, Matcher, STALE_NAN_BITS};
use common::native_histograms::Shape;
use common::{Amber, ExemplarSpec, histogram_series, request, series};

const DEFAULT_TENANT: &str = "anonymous";
const OTHER_TENANT: &str = "team-b";
/// The API's own time limits: the range a request without `start` and `end` reads.
const ALL: (i64, i64) = (i64::MIN / 2, i64::MAX / 2);

/// A sample or exemplar value by its bits, so NaNs (stale markers too) compare exactly.
type Bits = u64;

/// A select answer with every float compared by its bits.
#[derive(Debug, PartialEq)]
struct ExactSeries {
    labels: Labels,
    samples: Vec<(i64, Bits, i64)>,
    histograms: Vec<HistogramSample>,
    exemplars: Vec<(i64, Bits, Labels)>,
}

fn exact(found: Vec<SeriesData>) -> Vec<ExactSeries> {
    found
        .into_iter()
        .map(|s| ExactSeries {
            labels: s.labels,
            samples: s.samples.iter().map(|x| (x.ts, x.value.to_bits(), x.start_ts)).collect(),
            histograms: s.histograms,
            exemplars: s.exemplars.into_iter().map(|e| (e.ts, e.value.to_bits(), e.labels)).collect(),
        })
        .collect()
}

fn exact_traced(found: Vec<TracedExemplar>) -> Vec<(Labels, i64, Bits, Labels)> {
    found.into_iter().map(|t| (t.series, t.exemplar.ts, t.exemplar.value.to_bits(), t.exemplar.labels)).collect()
}

/// One question asked of both sources, and the answers, by a name that says what it asked.
#[derive(Debug, PartialEq)]
enum Answer {
    Select(Vec<ExactSeries>),
    Series(Vec<Labels>),
    Strings(Vec<String>),
    Traced(Vec<(Labels, i64, Bits, Labels)>),
}

impl Answer {
    fn is_empty(&self) -> bool {
        match self {
            Answer::Select(v) => v.is_empty(),
            Answer::Series(v) => v.is_empty(),
            Answer::Strings(v) => v.is_empty(),
            Answer::Traced(v) => v.is_empty(),
        }
    }
}

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::equal(name, value)
}
fn ne(name: &str, value: &str) -> Matcher {
    Matcher { op: MatchOp::NotEqual, ..Matcher::equal(name, value) }
}
fn re(name: &str, pattern: &str) -> Matcher {
    Matcher::regex(name, pattern, false).unwrap()
}
fn nre(name: &str, pattern: &str) -> Matcher {
    Matcher::regex(name, pattern, true).unwrap()
}

/// Every question, by name, for both sources: each select for every column choice, plus series,
/// label names and values, and exemplars by trace, per tenant, selection and range.
fn ask_everything(source: &dyn ReadSource, t0: i64) -> Vec<(String, Answer)> {
    let selections: Vec<(&str, Vec<Vec<Matcher>>)> = vec![
        ("none (every series)", vec![]),
        ("one metric", vec![vec![eq("__name__", "http_requests_total")]]),
        (
            "two overlapping selectors",
            vec![vec![eq("job", "api")], vec![eq("__name__", "http_requests_total"), re("instance", "a|b")]],
        ),
        ("regex and !=", vec![vec![re("__name__", "http_.+|rpc_.+"), ne("job", "db")]]),
        ("negated regex only (matches the empty name)", vec![vec![nre("__name__", "up|http_requests_total")]]),
        ("a UTF-8 label name", vec![vec![eq("service.name", "ché \"quoted\"")]]),
        ("matches nothing", vec![vec![eq("job", "nope")]]),
    ];
    let ranges = [
        ("whole range", ALL),
        ("partial range, millisecond edges", (t0 + 30_007, t0 + 150_000)),
        ("one millisecond, an exemplar's", (t0 + 45_007, t0 + 45_007)),
    ];
    let columns = [
        ("samples+histograms", Columns::SAMPLES),
        ("exemplars", Columns::EXEMPLARS),
        ("all columns", Columns { samples: true, histograms: true, exemplars: true }),
        ("floats only", Columns { samples: true, histograms: false, exemplars: false }),
        ("histograms only", Columns { samples: false, histograms: true, exemplars: false }),
    ];
    let mut out = Vec::new();
    for tenant in [DEFAULT_TENANT, OTHER_TENANT, "never-wrote"] {
        for (selection, selectors) in &selections {
            for (range, (mint, maxt)) in ranges {
                let at = format!("{tenant}, {selection}, {range}");
                for (column, c) in columns {
                    let got = source.select(tenant, selectors, mint, maxt, c).unwrap_or_else(|e| panic!("{at}: {e}"));
                    out.push((format!("select {column}: {at}"), Answer::Select(exact(got))));
                }
                let got = source.series(tenant, selectors, mint, maxt).unwrap_or_else(|e| panic!("{at}: {e}"));
                out.push((format!("series: {at}"), Answer::Series(got)));
                let got = source.label_names(tenant, selectors, mint, maxt).unwrap_or_else(|e| panic!("{at}: {e}"));
                out.push((format!("label names: {at}"), Answer::Strings(got)));
                for name in ["__name__", "job", "instance", "nope"] {
                    let got = source
                        .label_values(tenant, name, selectors, mint, maxt)
                        .unwrap_or_else(|e| panic!("{at}: {e}"));
                    out.push((format!("label values of {name}: {at}"), Answer::Strings(got)));
                }
            }
        }
        for trace in ["shared", "a3", "odd trace/id?", "none"] {
            let got = source.exemplars_by_trace(tenant, trace).unwrap_or_else(|e| panic!("{tenant}, {trace}: {e}"));
            out.push((format!("exemplars of trace {trace:?}: {tenant}"), Answer::Traced(exact_traced(got))));
        }
    }
    out
}

fn write_data(amber: &Amber, t0: i64) {
    let at = |i: i64| t0 + i * 15_000;
    let floats = |n: i64, value: &dyn Fn(i64) -> f64| (0..n).map(|i| (at(i), value(i))).collect::<Vec<_>>();
    // Exemplars seven milliseconds after their samples: times must survive as milliseconds.
    let traces: Vec<String> = (0..12).map(|i| format!("a{i}")).collect();
    let trace_labels: Vec<Vec<(&str, &str)>> = traces.iter().map(|t| vec![("trace_id", t.as_str())]).collect();
    let special = [f64::NAN, f64::INFINITY, 0.1, -2.5e-7];
    let a_exemplars: Vec<ExemplarSpec> =
        (0..12).step_by(3).map(|i| (at(i as i64) + 7, special[i / 3], trace_labels[i].as_slice())).collect();
    let shared = [("trace_id", "shared"), ("span_id", "s1")];
    let odd = [("trace_id", "odd trace/id?")];
    let mut stale = floats(6, &|i| i as f64);
    stale.push((at(6), f64::from_bits(STALE_NAN_BITS)));
    let integer = Shape::IntegerSchema0;
    let gauge = Shape::FloatGaugeSchemaMinus2;
    let custom = Shape::CustomBuckets;
    let hists = |shape: Shape, n: u64| -> Vec<(i64, Histogram, bool)> {
        (0..n).map(|i| (at(i as i64) + 500, shape.at(i), shape.is_integer())).collect()
    };
    let (h_integer, h_gauge, h_custom) = (hists(integer, 12), hists(gauge, 5), hists(custom, 8));
    let default_batch = request(vec![
        series(
            &[("__name__", "http_requests_total"), ("instance", "a"), ("job", "api"), ("path", "/x")],
            &floats(20, &|i| i as f64 * 1.5),
            &a_exemplars,
        ),
        series(&[("__name__", "http_requests_total"), ("instance", "b"), ("job", "api")], &stale, &[]),
        series(
            &[("__name__", "http_requests_total"), ("instance", "a"), ("job", "db")],
            &floats(15, &|i| 0.1 * i as f64),
            &[(at(2) + 7, 0.25, &shared), (at(9) + 999, 1e300, &odd)],
        ),
        series(&[("__name__", "up"), ("job", "api")], &floats(20, &|_| 1.0), &[]),
        histogram_series(
            &[("__name__", "rpc_duration_seconds"), ("job", "api")],
            &borrow(&h_integer),
            &[(at(3) + 500, 0.042, &shared)],
        ),
        histogram_series(&[("__name__", "rpc_queue_depth"), ("job", "db")], &borrow(&h_gauge), &[]),
        histogram_series(&[("__name__", "rpc_size_bytes"), ("job", "api")], &borrow(&h_custom), &[]),
    ]);
    assert_eq!(amber.write(&default_batch), (204, String::new()));
    // A UTF-8 label name, which only remote write 2.0 may send.
    let utf8 = request(vec![series(
        &[("__name__", "svc.latency"), ("service.name", "ché \"quoted\"")],
        &floats(10, &|i| -(i as f64)),
        &[(at(4), 3.0, &[("trace_id", "shared")])],
    )]);
    assert_eq!(amber.write_v2(&utf8).0, 204);
    let other_batch = request(vec![
        series(
            &[("__name__", "http_requests_total"), ("instance", "a"), ("job", "api"), ("path", "/x")],
            &floats(10, &|i| 100.0 + i as f64),
            &[(at(1) + 7, 9.0, &shared)],
        ),
        series(&[("__name__", "only_b"), ("job", "batch")], &floats(3, &|i| i as f64), &[]),
    ]);
    assert_eq!(amber.write_with(&[("X-Scope-OrgID", OTHER_TENANT)], &other_batch), (204, String::new()));
}

#[test]
fn remote_amber_answers_exactly_as_the_local_store_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut amber = Amber::start(dir.path(), &[]);
    let t0 = common::now_ms() - 3_600_000;
    write_data(&amber, t0);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let remote = RemoteAmber::new(&amber.url(""), Duration::from_secs(30), runtime.handle().clone()).unwrap();
    let remote_answers = ask_everything(&remote, t0);

    // Answers that show the questions reach data, so equality below is not of empty answers.
    let by_name = |name: &str| &remote_answers.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name}")).1;
    let Answer::Select(all) = by_name("select all columns: anonymous, none (every series), whole range") else {
        unreachable!()
    };
    let names: Vec<String> = all.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        names,
        [
            r#"{__name__="http_requests_total", instance="a", job="api", path="/x"}"#,
            r#"{__name__="http_requests_total", instance="a", job="db"}"#,
            r#"{__name__="http_requests_total", instance="b", job="api"}"#,
            r#"{__name__="rpc_duration_seconds", job="api"}"#,
            r#"{__name__="rpc_queue_depth", job="db"}"#,
            r#"{__name__="rpc_size_bytes", job="api"}"#,
            r#"{__name__="svc.latency", service.name="ché \"quoted\""}"#,
            r#"{__name__="up", job="api"}"#,
        ]
    );
    assert_eq!(all[2].samples.last().unwrap().1, STALE_NAN_BITS);
    assert_eq!(all[0].exemplars.iter().map(|e| e.0 - t0).collect::<Vec<_>>(), [7, 45_007, 90_007, 135_007]);
    assert_eq!(all[0].exemplars[0].1, f64::NAN.to_bits());
    assert_eq!(all[3].histograms.len(), 12);
    assert_eq!(all[3].histograms[1].h, Shape::IntegerSchema0.at(1));
    assert_eq!(all[5].histograms[0].h, Shape::CustomBuckets.at(0));
    let Answer::Select(partial) = by_name("select all columns: team-b, one metric, partial range, millisecond edges")
    else {
        unreachable!()
    };
    assert_eq!(
        partial[0].samples.iter().map(|s| s.0 - t0).collect::<Vec<_>>(),
        [45_000, 60_000, 75_000, 90_000, 105_000, 120_000, 135_000]
    );
    assert!(partial[0].exemplars.is_empty());
    for (name, answer) in remote_answers.iter().filter(|(n, _)| n.contains("never-wrote")) {
        assert!(answer.is_empty(), "{name}: {answer:?}");
    }
    let Answer::Traced(shared) = by_name("exemplars of trace \"shared\": anonymous") else { unreachable!() };
    assert_eq!(shared.iter().map(|t| t.1 - t0).collect::<Vec<_>>(), [30_007, 45_500, 60_000]);

    // A refusal by the peer is an error with its text, not retryable (the API answers 422, not
    // 503); a peer that is gone is a retryable one.
    let refused = remote.label_names("bad/tenant", &[], ALL.0, ALL.1).unwrap_err();
    assert!(matches!(refused, Error::PeerRefused { status: 400, .. }), "{refused:?}");
    assert!(!refused.is_unavailable());
    let refused_text = refused.to_string();
    assert_eq!(amber_api::error::ApiError::from(refused).kind.status().as_u16(), 422);
    let peer = amber.url("");
    assert_eq!(
        refused_text,
        format!(
            "{peer}: GET /api/v1/labels: 400 Bad Request: invalid tenant ID \"bad/tenant\": at most 150 characters of a-z A-Z 0-9 ! - _ . * ' ( ), and not \".\" or \"..\""
        )
    );
    amber.stop();
    let gone = remote.select(DEFAULT_TENANT, &[], ALL.0, ALL.1, Columns::SAMPLES).unwrap_err();
    let Error::Peer { peer: named, message } = &gone else { panic!("{gone:?}") };
    assert_eq!(named, &peer);
    assert!(message.starts_with("POST /api/v1/read: error sending request"), "{message}");
    assert_eq!(amber_api::error::ApiError::from(gone).kind.status().as_u16(), 503);

    let storage = Arc::new(amber_storage::Storage::open(&amber.data_dir, amber_storage::Options::default()).unwrap());
    let local = Local::new(storage, DEFAULT_TENANT);
    let local_answers = ask_everything(&local, t0);
    assert_eq!(remote_answers.len(), local_answers.len());
    for ((name, remote), (_, local)) in remote_answers.iter().zip(&local_answers) {
        assert_eq!(remote, local, "{name}");
    }
}

/// Histogram samples as [`histogram_series`] takes them.
fn borrow(h: &[(i64, Histogram, bool)]) -> Vec<(i64, &Histogram, bool)> {
    h.iter().map(|(t, h, integer)| (*t, h, *integer)).collect()
}

//! `GET|POST /api/v1/export`: the raw data of the series `match[]` selects in `[start, end]`, one
//! JSON object per line in VictoriaMetrics' export shape, so what VictoriaMetrics' `/api/v1/import`
//! and `vmctl` read:
//!
//! ```text
//! {"metric":{"__name__":"up","job":"node"},"values":[1,1],"timestamps":[1549891472010,1549891487724]}
//! ```
//!
//! Values are written as the query API writes them, without quotes: shortest round-trip digits,
//! and for those that are not finite, bare `NaN`, `+Inf` and `-Inf` as VictoriaMetrics writes
//! them (its importer reads them; a strict JSON parser does not). Amber adds what only it keeps,
//! in keys the importer ignores: `"exemplars"` (`labels`, `value`, `timestamp` in milliseconds)
//! and `"histograms"` (`timestamp` and the histogram as the query API writes it), present only
//! when a series has any.
//!
//! The series are listed first, then read and written a batch at a time from a blocking task,
//! so an export of any size holds one batch in memory; a failure after the first line ends the
//! body early (the client sees a truncated response, not a silent gap).

use amber_storage::source::{Columns, SeriesData};
use amber_storage::{Labels, Matcher};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::{ApiError, blocking};
use crate::params::Params;

/// Series read and written per batch.
const SERIES_PER_BATCH: usize = 500;

pub async fn export(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::from_request(&uri, &headers, &body);
    let tenant = crate::tenant::for_read(&state, &headers)?;
    let selectors = params.selectors()?;
    if selectors.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = params.time_range()?;
    let source = state.source.clone();
    let listed = {
        let (source, tenant, selectors) = (source.clone(), tenant.clone(), selectors.clone());
        blocking(move || Ok(source.series(&tenant, &selectors, start, end)?)).await?
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let all = Columns { samples: true, histograms: true, exemplars: true };
        for batch in listed.chunks(SERIES_PER_BATCH) {
            // Each series by all of its labels; a series with more labels matches too, and is
            // left for its own batch.
            let exact: Vec<Vec<Matcher>> =
                batch.iter().map(|l| l.iter().map(|l| Matcher::equal(&l.name, &l.value)).collect()).collect();
            let lines = match source.select(&tenant, &exact, start, end, all) {
                Ok(found) => {
                    let mut out = String::new();
                    for series in found.iter().filter(|s| batch.binary_search(&s.labels).is_ok()) {
                        write_line(&mut out, series);
                    }
                    Ok(Bytes::from(out))
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = lines.is_err();
            // The client went away, or the export failed: stop either way.
            if tx.blocking_send(lines).is_err() || failed {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(([("content-type", "application/stream+json")], Body::from_stream(stream)).into_response())
}

/// One series as one line.
fn write_line(out: &mut String, s: &SeriesData) {
    out.push_str(r#"{"metric":"#);
    write_labels(out, &s.labels);
    out.push_str(r#","values":["#);
    for (i, x) in s.samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        amber_promql::value::write_float(out, x.value);
    }
    out.push_str(r#"],"timestamps":["#);
    for (i, x) in s.samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(itoa::Buffer::new().format(x.ts));
    }
    out.push(']');
    if !s.exemplars.is_empty() {
        out.push_str(r#","exemplars":["#);
        for (i, e) in s.exemplars.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"labels":"#);
            write_labels(out, &e.labels);
            out.push_str(r#","value":"#);
            amber_promql::value::write_float(out, e.value);
            out.push_str(r#","timestamp":"#);
            out.push_str(itoa::Buffer::new().format(e.ts));
            out.push('}');
        }
        out.push(']');
    }
    if !s.histograms.is_empty() {
        out.push_str(r#","histograms":["#);
        for (i, h) in s.histograms.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(r#"{"timestamp":"#);
            out.push_str(itoa::Buffer::new().format(h.ts));
            out.push_str(r#","histogram":"#);
            crate::response::write_histogram(out, &h.h);
            out.push('}');
        }
        out.push(']');
    }
    out.push_str("}\n");
}

fn write_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(&l.name).expect("a string serializes"));
        out.push(':');
        out.push_str(&serde_json::to_string(&l.value).expect("a string serializes"));
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use amber_storage::{Exemplar, Label, NO_START, Sample};

    use super::*;

    #[test]
    fn a_series_is_one_line_in_victoriametrics_shape() {
        let labels =
            |pairs: &[(&str, &str)]| Labels::from_unsorted(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect());
        let s = SeriesData {
            labels: labels(&[("__name__", "up"), ("job", "a\"b")]),
            samples: [(1000, 1.0), (2000, 0.25), (3000, f64::NAN), (4000, f64::NEG_INFINITY), (5000, 1e21)]
                .map(|(ts, value)| Sample { ts, value, start_ts: NO_START })
                .to_vec(),
            histograms: vec![],
            exemplars: vec![Exemplar { ts: 1500, value: 0.5, labels: labels(&[("trace_id", "abc")]) }],
        };
        let mut out = String::new();
        write_line(&mut out, &s);
        assert_eq!(
            out,
            r#"{"metric":{"__name__":"up","job":"a\"b"},"values":[1,0.25,NaN,-Inf,1000000000000000000000],"timestamps":[1000,2000,3000,4000,5000],"exemplars":[{"labels":{"trace_id":"abc"},"value":0.5,"timestamp":1500}]}"#
                .to_string()
                + "\n"
        );
    }
}

//! Request parameters as Prometheus's API reads them: from the URL query and, for POST, from a
//! form-encoded body; times as RFC 3339 or Unix seconds; series selectors in `match[]`.

use amber_storage::Matcher;
use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::{self, Expr, VectorSelector};

use crate::error::ApiError;

/// The earliest and latest times a request may name; the defaults of `start` and `end`.
pub const MIN_TIME_MS: i64 = i64::MIN / 2;
pub const MAX_TIME_MS: i64 = i64::MAX / 2;

/// All parameters of a request, in order, URL query first then form body.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_request(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let is_form = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            pairs.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Params(pairs)
    }

    /// The last value of `name`, if given and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A time parameter in milliseconds, or `default` when absent.
    pub fn time(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_time(v).ok_or_else(|| {
                ApiError::bad_data(format!("invalid parameter \"{name}\": cannot parse \"{v}\" to a valid timestamp"))
            }),
        }
    }

    /// `start` and `end`, checked to be in order.
    pub fn time_range(&self) -> Result<(i64, i64), ApiError> {
        let start = self.time("start", MIN_TIME_MS)?;
        let end = self.time("end", MAX_TIME_MS)?;
        if end < start {
            return Err(ApiError::bad_data("end timestamp must not be before start time"));
        }
        Ok((start, end))
    }

    /// The `limit` parameter: `None` for absent or 0 (no limit).
    pub fn limit(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n < 0 => Ok(None),
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(n as usize)),
                Err(_) => Err(ApiError::bad_data(format!(
                    "invalid parameter \"{name}\": cannot parse \"{v}\" to a valid integer"
                ))),
            },
        }
    }

    /// Every `match[]` as a list of selectors (each a list of matchers all of which must hold).
    pub fn selectors(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        let mut out = Vec::new();
        for m in self.all("match[]") {
            out.extend(
                parse_selector(m).map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))?,
            );
        }
        Ok(out)
    }
}

/// The matcher sets of a series selector written in PromQL (`up{job="x"}`, `{__name__=~".+"}`):
/// one set, or one per `or` alternative.
pub fn parse_selector(selector: &str) -> Result<Vec<Vec<Matcher>>, String> {
    match parser::parse(selector)? {
        Expr::VectorSelector(vs) => selector_matchers(&vs).map_err(|e| e.message),
        _ => Err(format!("{selector:?} is not a series selector")),
    }
}

/// Parses a time as Prometheus does: Unix seconds with an optional fraction, or RFC 3339.
pub fn parse_time(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() {
            return None;
        }
        let whole = secs.trunc();
        let ms = whole * 1000.0 + ((secs - whole) * 1000.0).round();
        return (ms >= MIN_TIME_MS as f64 && ms <= MAX_TIME_MS as f64).then_some(ms as i64);
    }
    chrono::DateTime::parse_from_rfc3339(v).ok().map(|t| t.timestamp_millis())
}

/// Parses a duration as Prometheus's API does: seconds as a float (`30`, `1.5`), or a duration
/// string (`1m30s`, `2h`, `500ms`, units y w d h m s ms, largest first). Milliseconds.
pub fn parse_duration_ms(v: &str) -> Option<i64> {
    if let Ok(secs) = v.parse::<f64>() {
        let ms = (secs * 1000.0).round();
        return (ms.is_finite() && ms.abs() < MAX_TIME_MS as f64).then_some(ms as i64);
    }
    // Largest first: a duration must name its units in this order, each at most once.
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if v.is_empty() {
        return None;
    }
    let (mut rest, mut total, mut previous) = (v, 0i64, None);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = if rest.starts_with("ms") { 6 } else { UNITS.iter().position(|(u, _)| rest.starts_with(u))? };
        if previous.is_some_and(|p| unit <= p) {
            return None;
        }
        previous = Some(unit);
        total = total.checked_add(n.checked_mul(UNITS[unit].1)?)?;
        rest = &rest[UNITS[unit].0.len()..];
    }
    Some(total)
}

/// The matcher sets of one vector selector: one set, or one per `or` alternative.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let Matchers { matchers, or_matchers } = &vs.matchers;
    let sets: Vec<&Vec<promql_parser::label::Matcher>> =
        if or_matchers.is_empty() { vec![matchers] } else { or_matchers.iter().collect() };
    sets.into_iter()
        .map(|set| {
            let mut out: Vec<Matcher> = Vec::with_capacity(set.len() + 1);
            if let Some(name) = &vs.name {
                out.push(Matcher::equal(amber_storage::labels::METRIC_NAME, name.clone()));
            }
            for m in set {
                out.push(convert_matcher(m)?);
            }
            Ok(out)
        })
        .collect()
}

fn convert_matcher(m: &promql_parser::label::Matcher) -> Result<Matcher, ApiError> {
    let regex = |negate| {
        Matcher::regex(m.name.clone(), &m.value, negate)
            .map_err(|e| ApiError::bad_data(format!("invalid regular expression {:?}: {e}", m.value)))
    };
    Ok(match m.op {
        MatchOp::Equal => Matcher::equal(m.name.clone(), m.value.clone()),
        MatchOp::NotEqual => {
            Matcher { name: m.name.clone(), op: amber_storage::MatchOp::NotEqual, value: m.value.clone() }
        }
        MatchOp::Re(_) => regex(false)?,
        MatchOp::NotRe(_) => regex(true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_parses_them() {
        assert_eq!(parse_time("1600096945.479"), Some(1600096945479));
        assert_eq!(parse_time("1600096945"), Some(1600096945000));
        assert_eq!(parse_time("-1.5"), Some(-1500));
        assert_eq!(parse_time("2020-09-14T15:22:25.479Z"), Some(1600096945479));
        assert_eq!(parse_time("2020-09-14T17:22:25+02:00"), Some(1600096945000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("NaN"), None);
    }

    #[test]
    fn durations_parse_as_prometheus_parses_them() {
        assert_eq!(parse_duration_ms("15"), Some(15_000));
        assert_eq!(parse_duration_ms("0.5"), Some(500));
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("10s53ms"), Some(10_053));
        assert_eq!(parse_duration_ms("1y"), Some(365 * 86_400_000));
        assert_eq!(parse_duration_ms("30s1m"), None);
        assert_eq!(parse_duration_ms("1x"), None);
        assert_eq!(parse_duration_ms(""), None);
    }

    #[test]
    fn selectors_cover_names_regexes_and_or() {
        let params = Params(vec![
            ("match[]".into(), r#"up{job=~"a|b"}"#.into()),
            ("match[]".into(), r#"{__name__="x" or job="c"}"#.into()),
        ]);
        let sets = params.selectors().unwrap();
        assert_eq!(sets.len(), 3);
        assert_eq!(sets[0][0].name, "__name__");
        // Anchored as a whole: "ab" must not match `a|b`.
        assert!(sets[0][1].matches("a") && sets[0][1].matches("b") && !sets[0][1].matches("ab"));
        let bad = Params(vec![("match[]".into(), "rate(x[5m])".into())]);
        assert_eq!(
            bad.selectors().unwrap_err().message,
            r#"invalid parameter "match[]": "rate(x[5m])" is not a series selector"#
        );
    }
}

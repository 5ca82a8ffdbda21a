//! Parsing of the `.test` script language (`testdata/FORMAT.md`): commands, durations,
//! series descriptions, value sequences and expectations.

use amber_histogram::{CounterResetHint, Span};
use amber_promql::{Histogram, Labels};
use regex::Regex;

/// One slot of a value sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Float(f64),
    /// A native histogram literal; `hint_set` when it names its counter-reset hint, which only
    /// then is compared (FORMAT.md §6.4).
    Histogram {
        h: Box<Histogram>,
        hint_set: bool,
    },
    /// `_`: no sample here.
    Empty,
}

/// A series line: labels and values.
#[derive(Debug, Clone)]
pub struct SeriesLine {
    pub labels: Labels,
    pub slots: Vec<Slot>,
    /// From the `@st` line before a load line: per slot, the sample's start timestamp as an
    /// offset from its own timestamp in milliseconds (`None` for `_`). Empty without one.
    pub start_offsets: Vec<Option<i64>>,
}

#[derive(Debug)]
pub enum Command {
    Clear,
    Load {
        interval: i64,
        series: Vec<SeriesLine>,
        /// `load_with_nhcb`: native histograms with custom buckets are built from classic ones.
        with_nhcb: bool,
    },
    Eval(Box<Eval>),
}

/// How an expected message is matched.
#[derive(Debug, Clone)]
pub enum MessageMatch {
    Any,
    Exact(String),
    Regex(Regex),
}

impl MessageMatch {
    pub fn matches(&self, text: &str) -> bool {
        match self {
            MessageMatch::Any => true,
            MessageMatch::Exact(s) => s == text,
            MessageMatch::Regex(re) => re.is_match(text),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum EvalKind {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Debug)]
pub enum Expected {
    Scalar(f64),
    String(String),
    Series(Vec<SeriesLine>),
}

#[derive(Debug)]
pub struct Eval {
    pub expr: String,
    pub kind: EvalKind,
    pub fail: Option<MessageMatch>,
    pub warn: Vec<MessageMatch>,
    pub no_warn: bool,
    pub info: Vec<MessageMatch>,
    pub no_info: bool,
    /// `eval_warn` / `eval_info`: at least one annotation of the kind.
    pub need_warn: bool,
    pub need_info: bool,
    pub ordered: bool,
    /// `expect range vector from T1 to T2 step D`.
    pub range_vector: Option<(i64, i64, i64)>,
    pub expected: Expected,
}

/// A command and the 1-based line it starts on.
pub type Script = Vec<(usize, Command)>;

/// A Prometheus duration (`1m30s`, `10s53ms`, `0`) in milliseconds.
pub fn duration(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let units: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    let mut rest = s;
    let mut total = 0i64;
    let mut last_unit = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let (i, (unit, ms)) = units
            .iter()
            .enumerate()
            .find(|(_, (u, _))| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))
            .ok_or_else(|| format!("invalid duration {s:?}: unknown unit"))?;
        // Units go from largest to smallest; "ms" sits before "m" in the table only for matching.
        let order = [0, 1, 2, 3, 6, 4, 5][i];
        if last_unit != usize::MAX && order <= last_unit {
            return Err(format!("invalid duration {s:?}: units out of order"));
        }
        last_unit = order;
        total += n * ms;
        rest = &rest[unit.len()..];
    }
    Ok(total)
}

/// Go's string unquoting for `"…"`, `'…'` (with escapes) and `` `…` `` (raw).
pub fn unquote(s: &str) -> Result<String, String> {
    let bad = || format!("invalid quoted string {s:?}");
    let quote = s.chars().next().ok_or_else(bad)?;
    if s.len() < 2 || !s.ends_with(quote) || !matches!(quote, '"' | '\'' | '`') {
        return Err(bad());
    }
    let inner = &s[1..s.len() - 1];
    if quote == '`' {
        return Ok(inner.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next().ok_or_else(bad)?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            '\'' => Some(b'\''),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let mut take = |n: usize, radix: u32| -> Result<u32, String> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.len() != n {
                return Err(bad());
            }
            u32::from_str_radix(&digits, radix).map_err(|_| bad())
        };
        match e {
            'x' => out.push(take(2, 16)? as u8),
            'u' | 'U' => {
                let c = char::from_u32(take(if e == 'u' { 4 } else { 8 }, 16)?).ok_or_else(bad)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let rest = take(2, 8)?;
                out.push((e.to_digit(8).expect("octal digit") * 64 + rest) as u8);
            }
            _ => return Err(bad()),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Length of the quoted string at the start of `s`.
fn quoted_len(s: &str) -> Result<usize, String> {
    let quote = s.as_bytes()[0];
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate().skip(1) {
        if quote != b'`' && b == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        if b == quote && !escaped {
            return Ok(i + 1);
        }
        escaped = false;
    }
    Err(format!("unterminated string in {s:?}"))
}

/// Splits a series line into its labels and the text after them.
pub fn split_series(line: &str) -> Result<(Labels, &str), String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let name_end = line.find(|c: char| !is_name(c)).unwrap_or(line.len());
    let mut name = (name_end > 0).then(|| line[..name_end].to_string());
    let mut pairs = Vec::new();
    let mut rest = &line[name_end..];
    if rest.starts_with('{') && !rest.starts_with("{{") {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (label, after) = if rest.starts_with(['"', '\'', '`']) {
                let n = quoted_len(rest)?;
                (unquote(&rest[..n])?, &rest[n..])
            } else {
                let n = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
                if n == 0 {
                    return Err(format!("invalid series description {line:?}"));
                }
                (rest[..n].to_string(), &rest[n..])
            };
            rest = after.trim_start();
            if let Some(r) = rest.strip_prefix('=') {
                rest = r.trim_start();
                if !rest.starts_with(['"', '\'', '`']) {
                    return Err(format!("invalid label value in {line:?}"));
                }
                let n = quoted_len(rest)?;
                pairs.push((label, unquote(&rest[..n])?));
                rest = &rest[n..];
            } else {
                // A quoted metric name inside the braces: `{"my.metric", a="b"}`.
                name = Some(label);
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            }
        }
    }
    if let Some(name) = name {
        pairs.push(("__name__".to_string(), name));
    }
    Ok((Labels::new(pairs), rest.trim()))
}

/// A float as the script writes it (`1`, `.5`, `1e-3`, `Inf`, `-NaN`).
pub fn float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if unsigned.starts_with("0x") || unsigned.contains('_') {
        return None;
    }
    match unsigned {
        "inf" | "infinity" => Some(if lower.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        "nan" => Some(f64::NAN),
        _ => lower.parse().ok(),
    }
}

/// Splits a value sequence into items, keeping `{{…}}` histogram literals (with their `xK` or
/// `+{{…}}xK` tails) whole.
fn items(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let mut end = if rest.starts_with("{{") {
            rest.find("}}").ok_or_else(|| format!("unterminated histogram in {text:?}"))? + 2
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        if rest.starts_with("{{") && (rest[end..].starts_with("+{{") || rest[end..].starts_with("-{{")) {
            end += rest[end..].find("}}").ok_or_else(|| format!("unterminated histogram in {text:?}"))? + 2;
        }
        if rest.starts_with("{{") {
            end += rest[end..].find(char::is_whitespace).unwrap_or(rest.len() - end);
        }
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    Ok(out)
}

/// A bucket list `[1 2 3]`.
fn float_list(text: &str) -> Result<Vec<f64>, String> {
    let inner = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).ok_or_else(|| format!("bad list {text:?}"))?;
    inner.split_whitespace().map(|v| float(v).ok_or_else(|| format!("bad number {v:?} in {text:?}"))).collect()
}

/// A native histogram literal `{{schema:0 sum:5 count:4 buckets:[1 2 1]}}` (§3.2); whether it set
/// its counter-reset hint.
pub fn histogram(text: &str) -> Result<(Histogram, bool), String> {
    let inner =
        text.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")).ok_or_else(|| format!("bad histogram {text:?}"))?;
    let mut h = Histogram::default();
    let mut hint_set = false;
    let (mut buckets, mut offset, mut n_buckets, mut n_offset) = (Vec::new(), 0, Vec::new(), 0);
    let mut seen: Vec<String> = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':').ok_or_else(|| format!("bad histogram {text:?}"))?;
        let key = key.trim().to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(format!("duplicate key {key:?} in {text:?}"));
        }
        seen.push(key.clone());
        let after = after.trim_start();
        let end = if after.starts_with('[') {
            after.find(']').ok_or_else(|| format!("unterminated list in {text:?}"))? + 1
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        let value = &after[..end];
        rest = after[end..].trim_start();
        let number = || float(value).ok_or_else(|| format!("bad {key} {value:?}"));
        let int = || value.parse::<i32>().map_err(|_| format!("bad {key} {value:?}"));
        match key.as_str() {
            "schema" => h.schema = int()?,
            "sum" => h.sum = number()?,
            "count" => h.count = number()?,
            "z_bucket" => h.zero_count = number()?,
            "z_bucket_w" => h.zero_threshold = number()?,
            "buckets" => buckets = float_list(value)?,
            "offset" => offset = int()?,
            "n_buckets" => n_buckets = float_list(value)?,
            "n_offset" => n_offset = int()?,
            "custom_values" => h.custom_values = float_list(value)?,
            "counter_reset_hint" => {
                hint_set = true;
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(format!("bad counter_reset_hint {other:?}")),
                }
            }
            other => return Err(format!("unknown histogram key {other:?}")),
        }
    }
    if !buckets.is_empty() {
        h.positive_spans = vec![Span { offset, length: buckets.len() as u32 }];
        h.positive_buckets = buckets;
    }
    if !n_buckets.is_empty() {
        h.negative_spans = vec![Span { offset: n_offset, length: n_buckets.len() as u32 }];
        h.negative_buckets = n_buckets;
    }
    Ok((h, hint_set))
}

/// A histogram item: `{{H}}`, `{{H}}xK`, `{{H}}+{{D}}xK`, `{{H}}-{{D}}xK`.
fn histogram_item(item: &str, slots: &mut Vec<Slot>) -> Result<(), String> {
    let first_end = item.find("}}").ok_or_else(|| format!("bad histogram {item:?}"))? + 2;
    let (first, hint_set) = histogram(&item[..first_end])?;
    let tail = &item[first_end..];
    let (step, times) = match tail.chars().next() {
        None => (None, 0),
        Some('x') => (None, tail[1..].parse::<usize>().map_err(|_| format!("bad repeat in {item:?}"))?),
        Some(sign @ ('+' | '-')) => {
            let end = tail.find("}}").ok_or_else(|| format!("bad histogram {item:?}"))? + 2;
            let (step, _) = histogram(&tail[1..end])?;
            let times = tail[end..]
                .strip_prefix('x')
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| format!("bad repeat in {item:?}"))?;
            (Some((sign, step)), times)
        }
        Some(_) => return Err(format!("bad histogram item {item:?}")),
    };
    let mut h = first;
    slots.push(Slot::Histogram { h: Box::new(h.clone()), hint_set });
    for _ in 0..times {
        if let Some((sign, step)) = &step {
            let combined = if *sign == '+' { h.add(step) } else { h.sub(step) };
            combined.map_err(|e| format!("{item:?}: {e}"))?;
        }
        slots.push(Slot::Histogram { h: Box::new(h.clone()), hint_set });
    }
    Ok(())
}

/// Expands a value sequence (§3.1) into slots.
pub fn values(text: &str) -> Result<Vec<Slot>, String> {
    let mut slots = Vec::new();
    for item in items(text)? {
        if item.starts_with("{{") {
            histogram_item(item, &mut slots)?;
            continue;
        }
        match item {
            "_" => slots.push(Slot::Empty),
            "stale" => slots.push(Slot::Float(f64::from_bits(amber_promql::STALE_NAN_BITS))),
            _ if item.starts_with("_x") => {
                let n: usize = item[2..].parse().map_err(|_| format!("bad value {item:?}"))?;
                slots.extend(std::iter::repeat_n(Slot::Empty, n));
            }
            _ => {
                if let Some(v) = float(item) {
                    slots.push(Slot::Float(v));
                    continue;
                }
                let (head, times) = item.rsplit_once('x').ok_or_else(|| format!("bad value {item:?}"))?;
                let times: usize = times.parse().map_err(|_| format!("bad value {item:?}"))?;
                // The increment is the signed number after the first one: `1-1x5`, `-2+4x3`, `1e-3+1x2`.
                let split = head
                    .char_indices()
                    .skip(1)
                    .find(|&(i, c)| (c == '+' || c == '-') && !head[..i].ends_with(['e', 'E']))
                    .map(|(i, _)| i);
                let (start, step) = match split {
                    Some(i) => (&head[..i], float(&head[i..]).ok_or_else(|| format!("bad value {item:?}"))?),
                    None => (head, 0.0),
                };
                let mut v = float(start).ok_or_else(|| format!("bad value {item:?}"))?;
                slots.push(Slot::Float(v));
                for _ in 0..times {
                    v += step;
                    slots.push(Slot::Float(v));
                }
            }
        }
    }
    Ok(slots)
}

/// A signed duration at the start of `s` (`-1m`, `+30s`, `0`, `59999ms`) in milliseconds, and
/// the rest: digits, then the unit's letters up to an `x` (Prometheus's `parseDurationPrefix`).
fn duration_prefix(s: &str) -> Result<(i64, &str), String> {
    let (sign, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    };
    let digits = unsigned.find(|c: char| !c.is_ascii_digit()).unwrap_or(unsigned.len());
    if digits == 0 {
        return Err(format!("expected digits in duration {s:?}"));
    }
    let unit =
        unsigned[digits..].find(|c: char| !c.is_ascii_alphabetic() || c == 'x').map_or(unsigned.len(), |n| digits + n);
    Ok((sign * duration(&unsigned[..unit])?, &unsigned[unit..]))
}

/// An `@st` line's sequence of start-timestamp offsets (Prometheus's `parseSTSequence`): `_`,
/// `_xN`, `<dur>`, `<dur>xN` (N+1 times), `<dur>+<dur>xN` and `<dur>-<dur>xN` (N+1 offsets
/// growing or shrinking by the second duration).
fn start_offsets(text: &str) -> Result<Vec<Option<i64>>, String> {
    let mut out = Vec::new();
    for item in text.split_whitespace() {
        let bad = |why: &str| format!("invalid ST item {item:?}: {why}");
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = item.strip_prefix("_x") {
            let n: usize = n.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad("invalid repeat count"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        let (base, rest) = duration_prefix(item)?;
        let repeat = |n: &str| n.parse::<usize>().map_err(|_| bad("invalid repeat count"));
        let (step, n) = match rest.as_bytes().first() {
            None => (0, 0),
            Some(b'x') => (0, repeat(&rest[1..])?),
            Some(b'+' | b'-') => {
                let (delta, tail) = duration_prefix(rest)?;
                let n = tail.strip_prefix('x').ok_or_else(|| bad("expected 'x<count>' after step duration"))?;
                (delta, repeat(n)?)
            }
            Some(_) => return Err(bad("unexpected character after duration")),
        };
        out.extend((0..=n as i64).map(|k| Some(base + k * step)));
    }
    Ok(out)
}

fn expectation(rest: &str) -> Result<MessageMatch, String> {
    let rest = rest.trim();
    if let Some(m) = rest.strip_prefix("msg:") {
        return Ok(MessageMatch::Exact(m.trim().to_string()));
    }
    if let Some(r) = rest.strip_prefix("regex:") {
        return Regex::new(r.trim()).map(MessageMatch::Regex).map_err(|e| e.to_string());
    }
    Ok(MessageMatch::Any)
}

/// Parses an `eval` header and its body lines; returns the eval and how many body lines it used.
fn eval(header: &str, body: &[&str]) -> Result<(Eval, usize), String> {
    let (word, rest) = header.split_once(char::is_whitespace).ok_or("eval without arguments")?;
    let mut words = rest.trim_start();
    let mut next = || -> Result<&str, String> {
        let w = words.split_whitespace().next().ok_or("eval line ends early")?;
        words = words.trim_start()[w.len()..].trim_start();
        Ok(w)
    };
    let kind = match next()? {
        "instant" => {
            if next()? != "at" {
                return Err("expected `at`".into());
            }
            EvalKind::Instant { at: duration(next()?)? }
        }
        "range" => {
            let mut arg = |name: &str| -> Result<i64, String> {
                if next()? != name {
                    return Err(format!("expected `{name}`"));
                }
                duration(next()?)
            };
            let (start, end, step) = (arg("from")?, arg("to")?, arg("step")?);
            if end < start {
                return Err("range end before start".into());
            }
            EvalKind::Range { start, end, step }
        }
        other => return Err(format!("unknown eval kind {other:?}")),
    };
    let mut ev = Eval {
        expr: words.to_string(),
        kind,
        fail: (word == "eval_fail").then_some(MessageMatch::Any),
        warn: Vec::new(),
        no_warn: false,
        info: Vec::new(),
        no_info: false,
        need_warn: word == "eval_warn",
        need_info: word == "eval_info",
        ordered: word == "eval_ordered",
        range_vector: None,
        expected: Expected::Series(Vec::new()),
    };
    let mut series = Vec::new();
    let mut used = 0;
    for &l in body {
        used += 1;
        if word == "eval_fail" {
            if let Some(m) = l.strip_prefix("expected_fail_message") {
                ev.fail = Some(MessageMatch::Exact(m.trim().to_string()));
                break;
            }
            if let Some(r) = l.strip_prefix("expected_fail_regexp") {
                ev.fail = Some(MessageMatch::Regex(Regex::new(r.trim()).map_err(|e| e.to_string())?));
                break;
            }
        }
        if let Some(r) = l.strip_prefix("expect range vector") {
            let w: Vec<&str> = r.split_whitespace().collect();
            if w.len() != 6 || w[0] != "from" || w[2] != "to" || w[4] != "step" {
                return Err(format!("bad line {l:?}"));
            }
            ev.range_vector = Some((duration(w[1])?, duration(w[3])?, duration(w[5])?));
            continue;
        }
        if let Some(s) = l.strip_prefix("expect string") {
            ev.expected = Expected::String(unquote(s.trim())?);
            continue;
        }
        if l.split_whitespace().next() == Some("expect") {
            let rest = l["expect".len()..].trim_start();
            let (what, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match what {
                "fail" => ev.fail = Some(expectation(tail)?),
                "warn" => ev.warn.push(expectation(tail)?),
                "no_warn" => ev.no_warn = true,
                "info" => ev.info.push(expectation(tail)?),
                "no_info" => ev.no_info = true,
                "ordered" => ev.ordered = true,
                other => return Err(format!("unknown expectation {other:?}")),
            }
            continue;
        }
        if let Some(v) = float(l) {
            ev.expected = Expected::Scalar(v);
            break;
        }
        let (labels, rest) = split_series(l)?;
        series.push(SeriesLine { labels, slots: values(rest)?, start_offsets: Vec::new() });
    }
    if !series.is_empty() {
        ev.expected = Expected::Series(series);
    }
    Ok((ev, used))
}

/// Parses a whole file.
pub fn parse(text: &str) -> Result<Script, String> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.trim_matches([' ', '\t', '\r']))
        .map(|l| if l.starts_with('#') { "" } else { l })
        .collect();
    let mut script = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.is_empty() {
            i += 1;
            continue;
        }
        let body_end = lines[i + 1..].iter().position(|l| l.is_empty()).map_or(lines.len(), |n| i + 1 + n);
        let body = &lines[i + 1..body_end];
        let word = line.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        let at = |e: String| format!("line {}: {e}", i + 1);
        if word == "clear" {
            script.push((i + 1, Command::Clear));
            i += 1;
        } else if word.starts_with("load") {
            let interval = line.split_whitespace().nth(1).ok_or_else(|| at("load without interval".into()))?;
            let interval = duration(interval).map_err(at)?;
            let mut series = Vec::new();
            // An `@st` line waiting for its load line.
            let mut pending: Option<(Labels, Vec<Option<i64>>)> = None;
            for l in body {
                let (labels, rest) = split_series(l).map_err(at)?;
                if let Some(offsets) = rest.strip_prefix("@st") {
                    if pending.is_some() {
                        return Err(at("@st line has no following sample line".into()));
                    }
                    pending = Some((labels, start_offsets(offsets).map_err(at)?));
                    continue;
                }
                let slots = values(rest).map_err(at)?;
                let start_offsets = match pending.take() {
                    None => Vec::new(),
                    Some((st_labels, _)) if st_labels != labels => {
                        return Err(at("@st metric does not match the following sample line metric".into()));
                    }
                    Some((_, offsets)) if offsets.len() != slots.len() => {
                        return Err(at(format!(
                            "@st line has {} values but sample line has {}",
                            offsets.len(),
                            slots.len()
                        )));
                    }
                    Some((_, offsets)) => offsets,
                };
                series.push(SeriesLine { labels, slots, start_offsets });
            }
            if pending.is_some() {
                return Err(at("@st line has no following sample line".into()));
            }
            script.push((i + 1, Command::Load { interval, series, with_nhcb: word == "load_with_nhcb" }));
            i = body_end;
        } else if word.starts_with("eval") {
            let (ev, used) = eval(line, body).map_err(at)?;
            script.push((i + 1, Command::Eval(Box::new(ev))));
            i += 1 + used;
        } else {
            return Err(at(format!("unknown command {line:?}")));
        }
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(text: &str) -> Vec<Slot> {
        values(text).unwrap()
    }

    #[test]
    fn value_sequences_expand_as_the_format_says() {
        use Slot::*;
        assert_eq!(floats("1-1x3"), vec![Float(1.0), Float(0.0), Float(-1.0), Float(-2.0)]);
        assert_eq!(
            floats("-2+4x2 _x2 _ 5x1"),
            vec![Float(-2.0), Float(2.0), Float(6.0), Empty, Empty, Empty, Float(5.0), Float(5.0)]
        );
        let histograms = floats("{{schema:0 sum:1 buckets:[1 2]}}x2 {{}}+{{count:1}}x1");
        assert_eq!(histograms.len(), 5);
        match &histograms[4] {
            Slot::Histogram { h, hint_set: false } => assert_eq!(h.count, 1.0),
            other => panic!("{other:?}"),
        }
        assert_eq!(duration("1m30s").unwrap(), 90_000);
        assert_eq!(duration("10s53ms").unwrap(), 10_053);
        assert!(duration("30s1m").is_err());
    }

    #[test]
    fn start_timestamp_sequences_expand_as_prometheus_parses_them() {
        assert_eq!(
            start_offsets("_ -30s-1mx2 0 +1m -59999msx1 _x2 -0ms").unwrap(),
            vec![
                None,
                Some(-30_000),
                Some(-90_000),
                Some(-150_000),
                Some(0),
                Some(60_000),
                Some(-59_999),
                Some(-59_999),
                None,
                None,
                Some(0)
            ]
        );
        assert_eq!(start_offsets("1ms-1mx1").unwrap(), vec![Some(1), Some(-59_999)]);
        assert!(start_offsets("_x0").is_err() && start_offsets("1m+1m").is_err() && start_offsets("m").is_err());
        let script = parse("load 1m\n  a@st _ -1s\n  a 1 2\n").unwrap();
        let Command::Load { series, .. } = &script[0].1 else { panic!("a load") };
        assert_eq!(series[0].start_offsets, vec![None, Some(-1000)]);
        assert!(parse("load 1m\n  a@st -1s\n  b 1\n").is_err());
        assert!(parse("load 1m\n  a@st -1s -1s\n  a 1\n").is_err());
    }

    #[test]
    fn series_lines_split_into_labels_and_values() {
        let (labels, rest) = split_series(r#"foo{b="x\"}", a='y'} 1 2"#).unwrap();
        assert_eq!(labels, Labels::from_pairs(&[("__name__", "foo"), ("a", "y"), ("b", "x\"}")]));
        assert_eq!(rest, "1 2");
        let (labels, rest) = split_series("{} 3").unwrap();
        assert!(labels.is_empty());
        assert_eq!(rest, "3");
    }
}

//! The evaluator: an expression evaluated at one timestamp at a time.
//!
//! Before evaluation, [`Evaluator::prepare`] walks the expression once and loads every selector's
//! series for the whole time span the query can touch (following `offset`, `@` and subqueries),
//! so that evaluation never goes back to storage. Range queries then evaluate the expression at
//! each step; subqueries evaluate their inner expression at their own aligned steps.
//!
//! The exception is a range query whose whole shape is evaluated series by series over a `rate`
//! family call ([`crate::by_series::read_in_parts`]): that call's selector is selected in parts
//! ([`Queryable::select_in_parts`]) and read a part at a time into reused lists, so a day-long
//! read never holds (or page-faults in) every series' samples at once, as VictoriaMetrics reads
//! them. When the series-by-series path turns out not to apply, the selection is loaded whole
//! ([`Evaluator::load_in_parts_whole`]) and the query goes step by step.

use std::collections::{BTreeMap, HashMap, HashSet};

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use promql_parser::label::{MatchOp as ParserMatchOp, Matchers};
use promql_parser::parser::{AtModifier, Expr, MatrixSelector, Offset, PositionRange, SubqueryExpr, VectorSelector};

use crate::engine::{EngineOptions, QueryOutput};
use crate::error::{Error, Result};
use crate::extended;
use crate::functions::info;
use crate::labels::{Labels, LabelsMap, METRIC_NAME};
use crate::stats::{self, Counters};
use crate::storage::{MatchOp, Matcher, Queryable, SelectedSeries};
use crate::value::{HistogramPoint, Point, Sample, Series, StartTimestamps, Starts, Value};
use crate::{aggregate, binary, functions, is_stale};

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(offset: Option<&Offset>) -> i64 {
    match offset {
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
        None => 0,
    }
}

/// A selector's series selected in parts, and what loading them whole would take.
pub(crate) struct InParts<'a> {
    pub(crate) series: Box<dyn SelectedSeries + 'a>,
    sets: Vec<Vec<Matcher>>,
    mint: i64,
    maxt: i64,
}

/// Where one series' window of a matrix selector was at the last step.
struct RangeCursor {
    from: usize,
    to: usize,
    has_stale: bool,
}

pub(crate) struct Evaluator<'a> {
    storage: &'a dyn Queryable,
    pub(crate) opts: &'a EngineOptions,
    pub(crate) lookback_ms: i64,
    /// Query start and end: what `@ start()` and `@ end()` mean.
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// The query's step; the default step of subqueries for range queries.
    pub(crate) step: i64,
    /// What `step()` answers: the step of a range query, 0 for an instant query.
    pub(crate) query_step: i64,
    /// Loaded series by the address of their selector in the expression tree; shared with
    /// [`Evaluator::fork`]s once loading is done.
    loaded: Arc<HashMap<usize, Vec<Series>>>,
    samples_loaded: usize,
    /// The matrix selectors (by key) that [`Evaluator::prepare`] selects in parts.
    read_in_parts: HashSet<usize>,
    /// Their selections, by key.
    in_parts: HashMap<usize, InParts<'a>>,
    deadline: Instant,
    cancel: Option<Arc<AtomicBool>>,
    /// Annotations by their text, each with the start of the expression it is about (a byte
    /// offset into the query). As in Prometheus, one text is kept once, pointing where it was
    /// last given.
    warnings: BTreeMap<String, usize>,
    infos: BTreeMap<String, usize>,
    /// Label sets without their metric name, by label set: a range query drops the name of the
    /// same series at every step.
    without_name: LabelsMap<Labels>,
    /// Per matrix selector, where each series' window started and ended at the last step.
    range_cursors: HashMap<usize, Vec<RangeCursor>>,
    /// Per aggregation node (by address in the expression tree), the group of each input
    /// series, worked out once for all the steps of a query.
    pub(crate) groupings: FxHashMap<usize, crate::aggregate::Grouping>,
    /// Sample counts and the peak of held samples, when the query asks for statistics
    /// ([`crate::stats`]); `None` otherwise, so that counting costs a check of this `Option`.
    stats: Option<Box<Counters>>,
}

/// The index of the first point after `bound`, searching forward from `hint` when the hint is
/// at or before it (the common case in a range query) and from the start otherwise.
/// Reusable buffers for windows that have stale markers to leave out.
#[derive(Default)]
pub(crate) struct WindowScratch {
    pub(crate) points: Vec<Point>,
    pub(crate) point_starts: Vec<i64>,
    pub(crate) histograms: Vec<HistogramPoint>,
    pub(crate) histogram_starts: Vec<i64>,
}

/// The start timestamps of `range` of a list of samples, when there are any.
pub(crate) fn starts_in(starts: &[i64], range: std::ops::Range<usize>) -> &[i64] {
    starts.get(range).unwrap_or(&[])
}

/// A range window without its stale markers (copied into `scratch` only when it has any), with
/// its start timestamps (`starts` empty or as long as `window`); `None` when nothing is left.
pub(crate) fn live_window<'p>(
    window: &'p [Point],
    starts: &'p [i64],
    may_be_stale: bool,
    scratch: &'p mut Vec<Point>,
    start_scratch: &'p mut Vec<i64>,
) -> Option<(&'p [Point], &'p [i64])> {
    if may_be_stale && window.iter().any(|p| is_stale(p.v)) {
        scratch.clear();
        start_scratch.clear();
        for (i, p) in window.iter().enumerate().filter(|(_, p)| !is_stale(p.v)) {
            scratch.push(*p);
            start_scratch.extend(starts.get(i));
        }
        return (!scratch.is_empty()).then_some((scratch.as_slice(), start_scratch.as_slice()));
    }
    (!window.is_empty()).then_some((window, starts))
}

/// The histograms of a series in `(lo, hi]` without stale markers (copied into `scratch` only
/// when it has any), with their start timestamps (`starts` empty or one per histogram).
pub(crate) fn histogram_window<'p>(
    histograms: &'p [HistogramPoint],
    starts: &'p [i64],
    lo: i64,
    hi: i64,
    scratch: &'p mut Vec<HistogramPoint>,
    start_scratch: &'p mut Vec<i64>,
) -> (&'p [HistogramPoint], &'p [i64]) {
    if histograms.is_empty() {
        return (&[], &[]);
    }
    let from = histograms.partition_point(|p| p.t <= lo);
    let to = histograms.partition_point(|p| p.t <= hi);
    let (window, starts) = (&histograms[from..to], starts_in(starts, from..to));
    if window.iter().any(|p| p.h.is_stale_marker()) {
        scratch.clear();
        start_scratch.clear();
        for (i, p) in window.iter().enumerate().filter(|(_, p)| !p.h.is_stale_marker()) {
            scratch.push(p.clone());
            start_scratch.extend(starts.get(i));
        }
        return (scratch.as_slice(), start_scratch.as_slice());
    }
    (window, starts)
}

/// The newest sample of a series in `(t - lookback, t]`, float or histogram: its timestamp,
/// value and start timestamp (0 when unknown); `None` when there is none or it is a stale marker.
pub(crate) fn newest_sample(s: &Series, t: i64, lookback: i64) -> Option<NewestSample> {
    let idx = s.points.partition_point(|p| p.t <= t);
    let float = (idx > 0).then(|| (s.points[idx - 1], s.start_timestamps.floats.get(idx - 1)));
    let newest_histogram = if s.histograms.is_empty() {
        None
    } else {
        let idx = s.histograms.partition_point(|p| p.t <= t);
        (idx > 0).then(|| (&s.histograms[idx - 1], s.start_timestamps.histograms.get(idx - 1)))
    };
    let (sample_t, v, h, start) = match (float, newest_histogram) {
        (Some((p, _)), Some((hp, st))) if hp.t > p.t => (hp.t, 0.0, Some(hp.h.clone()), st),
        (Some((p, st)), _) => (p.t, p.v, None, st),
        (None, Some((hp, st))) => (hp.t, 0.0, Some(hp.h.clone()), st),
        (None, None) => return None,
    };
    let stale = match &h {
        Some(h) => h.is_stale_marker(),
        None => is_stale(v),
    };
    (sample_t > t - lookback && !stale).then(|| NewestSample {
        t: sample_t,
        v,
        h,
        start_ts: start.copied().unwrap_or(0),
    })
}

/// A histogram a subquery returns, with a reset or not-reset hint made unknown: the subquery
/// may skip the sample the reset happened at, or return it at several steps, so functions over
/// it must compare buckets instead, as Prometheus's subqueries make them.
fn hint_unknown(h: Arc<crate::Histogram>) -> Arc<crate::Histogram> {
    use amber_histogram::CounterResetHint::{NotReset, Reset, Unknown};
    if !matches!(h.counter_reset_hint, NotReset | Reset) {
        return h;
    }
    let mut h = Arc::unwrap_or_clone(h);
    h.counter_reset_hint = Unknown;
    Arc::new(h)
}

/// What [`newest_sample`] found.
pub(crate) struct NewestSample {
    pub(crate) t: i64,
    pub(crate) v: f64,
    pub(crate) h: Option<Arc<crate::Histogram>>,
    pub(crate) start_ts: i64,
}

/// Adds the samples of `other` (the same series loaded for another time range) to `into`, in
/// time order without duplicates, each start timestamp staying beside its sample.
fn merge_loaded(into: &mut Series, other: Series) {
    let (points, floats) = merge_by_time(
        std::mem::take(&mut into.points),
        std::mem::take(&mut into.start_timestamps.floats),
        other.points,
        other.start_timestamps.floats,
        |p| p.t,
    );
    let (histograms, starts) = merge_by_time(
        std::mem::take(&mut into.histograms),
        std::mem::take(&mut into.start_timestamps.histograms),
        other.histograms,
        other.start_timestamps.histograms,
        |p| p.t,
    );
    (into.points, into.histograms) = (points, histograms);
    into.start_timestamps = StartTimestamps { floats, histograms: starts };
}

/// Two lists of samples with their start timestamps (each empty or one per sample) as one, in
/// time order; at equal timestamps the first list's sample stays.
fn merge_by_time<T>(
    a: Vec<T>,
    a_starts: Vec<i64>,
    b: Vec<T>,
    b_starts: Vec<i64>,
    t: impl Fn(&T) -> i64,
) -> (Vec<T>, Vec<i64>) {
    let with_starts = !a_starts.is_empty() || !b_starts.is_empty();
    let padded = |starts: Vec<i64>, n: usize| if starts.is_empty() { vec![0; n] } else { starts };
    let (na, nb) = (a.len(), b.len());
    let mut all: Vec<(T, i64)> =
        a.into_iter().zip(padded(a_starts, na)).chain(b.into_iter().zip(padded(b_starts, nb))).collect();
    all.sort_by_key(|(x, _)| t(x));
    all.dedup_by_key(|(x, _)| t(x));
    let (items, starts): (Vec<T>, Vec<i64>) = all.into_iter().unzip();
    (items, if with_starts { starts } else { Vec::new() })
}

fn advance(points: &[Point], hint: usize, bound: i64) -> usize {
    if hint > points.len() || (hint > 0 && points[hint - 1].t > bound) {
        return points.partition_point(|p| p.t <= bound);
    }
    let mut i = hint;
    while i < points.len() && points[i].t <= bound {
        i += 1;
        if i - hint > 16 {
            // A long jump (a sparse step or a subquery): finish by binary search.
            return i + points[i..].partition_point(|p| p.t <= bound);
        }
    }
    i
}

pub(crate) fn selector_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

/// The matchers of a selector in the engine's form, the metric name included.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>> {
    let Matchers { matchers, or_matchers } = &vs.matchers;
    let sets: Vec<&Vec<promql_parser::label::Matcher>> =
        if or_matchers.is_empty() { vec![matchers] } else { or_matchers.iter().collect() };
    sets.into_iter()
        .map(|set| {
            let mut out = Vec::with_capacity(set.len() + 1);
            if let Some(name) = &vs.name {
                out.push(Matcher { name: METRIC_NAME.into(), op: MatchOp::Equal, value: name.clone() });
            }
            for m in set {
                let op = match &m.op {
                    ParserMatchOp::Equal => MatchOp::Equal,
                    ParserMatchOp::NotEqual => MatchOp::NotEqual,
                    ParserMatchOp::Re(re) => MatchOp::Regex(re.clone()),
                    ParserMatchOp::NotRe(re) => MatchOp::NotRegex(re.clone()),
                };
                out.push(Matcher { name: m.name.clone(), op, value: m.value.clone() });
            }
            Ok(out)
        })
        .collect()
}

impl<'a> Evaluator<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        storage: &'a dyn Queryable,
        opts: &'a EngineOptions,
        lookback_ms: i64,
        start: i64,
        end: i64,
        step: i64,
        deadline: Instant,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Self {
        Evaluator {
            storage,
            opts,
            lookback_ms,
            start,
            end,
            step,
            query_step: 0,
            loaded: Arc::new(HashMap::new()),
            samples_loaded: 0,
            read_in_parts: HashSet::new(),
            in_parts: HashMap::new(),
            deadline,
            cancel,
            warnings: BTreeMap::new(),
            infos: BTreeMap::new(),
            without_name: LabelsMap::default(),
            range_cursors: HashMap::new(),
            groupings: FxHashMap::default(),
            stats: None,
        }
    }

    /// An evaluator over the same loaded data for another thread's share of a range query's
    /// steps. Its caches and warnings start empty; [`Evaluator::absorb`] takes the warnings back.
    pub(crate) fn fork(&self) -> Evaluator<'a> {
        Evaluator {
            loaded: self.loaded.clone(),
            samples_loaded: self.samples_loaded,
            query_step: self.query_step,
            stats: self.stats.as_ref().map(|c| Box::new(c.fork())),
            ..Evaluator::new(
                self.storage,
                self.opts,
                self.lookback_ms,
                self.start,
                self.end,
                self.step,
                self.deadline,
                self.cancel.clone(),
            )
        }
    }

    /// Files an annotation about the expression written at `at` under warnings or infos, by the
    /// prefix of its text.
    pub(crate) fn note(&mut self, at: PositionRange, text: String) {
        let kind = if text.starts_with("PromQL info") { &mut self.infos } else { &mut self.warnings };
        kind.insert(text, at.start);
    }

    /// [`Evaluator::note`] for each of `notes`.
    pub(crate) fn annotate(&mut self, at: PositionRange, notes: Vec<String>) {
        for text in notes {
            self.note(at, text);
        }
    }

    /// Takes the warnings, infos and statistics of a fork.
    pub(crate) fn absorb(&mut self, fork: Evaluator<'a>) {
        self.warnings.extend(fork.warnings);
        self.infos.extend(fork.infos);
        if let (Some(mine), Some(theirs)) = (self.stats.as_deref_mut(), fork.stats.as_deref()) {
            mine.absorb(theirs);
        }
    }

    /// Gathers statistics for a query of `steps` steps from `start`, `interval` apart (an
    /// instant query: one step). Called before [`Evaluator::prepare`], which counts what it loads.
    pub(crate) fn enable_stats(&mut self, start: i64, interval: i64, steps: usize) {
        self.stats = Some(Box::new(Counters::new(start, interval, steps)));
    }

    /// The statistics gathered, if any, taken out of the evaluator.
    pub(crate) fn take_stats(&mut self) -> Option<Box<Counters>> {
        self.stats.take()
    }

    /// The statistics so far, to put back with [`Evaluator::restore_stats`] when an attempt is
    /// abandoned.
    pub(crate) fn save_stats(&self) -> Option<Box<Counters>> {
        self.stats.clone()
    }

    pub(crate) fn restore_stats(&mut self, saved: Option<Box<Counters>>) {
        if let (Some(mine), Some(saved)) = (self.stats.as_deref_mut(), saved) {
            mine.restore(*saved);
        }
    }

    /// Whether reads are being counted now.
    pub(crate) fn counting(&self) -> bool {
        self.stats.as_ref().is_some_and(|c| c.counting)
    }

    /// Makes the step at `t` the one reads count for.
    pub(crate) fn at_step(&mut self, t: i64) {
        if let Some(c) = self.stats.as_deref_mut() {
            c.at_step(t);
        }
    }

    /// Counts `n` samples read by a selector at the current step.
    pub(crate) fn count_read(&mut self, n: u64) {
        if let Some(c) = self.stats.as_deref_mut() {
            c.read(n);
        }
    }

    /// Counts samples read at each of `steps` (`counts` one per step, as gathered when
    /// [`Evaluator::counting`]).
    pub(crate) fn count_reads_at(&mut self, steps: &[i64], counts: &[u64]) {
        if let Some(c) = self.stats.as_deref_mut() {
            for (&t, &n) in steps.iter().zip(counts) {
                c.read_at(t, n);
            }
        }
    }

    /// Samples held now, when statistics are gathered: what [`Evaluator::hold`] measures from.
    pub(crate) fn held(&self) -> Option<u64> {
        self.stats.as_ref().map(|c| c.live())
    }

    /// A result of `size()` samples was computed since [`Evaluator::held`] gave `before`; see
    /// [`Counters::hold`].
    pub(crate) fn hold(&mut self, before: Option<u64>, size: impl FnOnce() -> u64) {
        if let (Some(c), Some(before)) = (self.stats.as_deref_mut(), before) {
            c.hold(before, size());
        }
    }

    /// Marks the subquery at the top of an instant query, whose inner steps' reads count.
    pub(crate) fn set_top_subquery(&mut self, expr: &Expr) {
        if let (Some(c), Expr::Subquery(sq)) = (self.stats.as_deref_mut(), crate::functions::without_parens(expr)) {
            c.top_subquery = Some(sq as *const SubqueryExpr as usize);
        }
    }

    /// Samples loaded by [`Evaluator::prepare`].
    pub(crate) fn samples_loaded(&self) -> usize {
        self.samples_loaded
    }

    pub(crate) fn check_deadline(&self, stage: &'static str) -> Result<()> {
        if self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Canceled(stage));
        }
        if Instant::now() > self.deadline {
            return Err(Error::Timeout(stage));
        }
        Ok(())
    }

    pub(crate) fn at_ms(&self, at: Option<&AtModifier>) -> Option<i64> {
        match at? {
            AtModifier::Start => Some(self.start),
            AtModifier::End => Some(self.end),
            AtModifier::At(t) => Some(match t.duration_since(UNIX_EPOCH) {
                Ok(d) => duration_ms(&d),
                Err(e) => -duration_ms(&e.duration()),
            }),
        }
    }

    /// The span of evaluation times `[mint, maxt]` shifted by a node's `@` and `offset`.
    pub(crate) fn shifted(&self, at: Option<&AtModifier>, offset: Option<&Offset>, mint: i64, maxt: i64) -> (i64, i64) {
        let off = offset_ms(offset);
        match self.at_ms(at) {
            Some(t) => (t - off, t - off),
            None => (mint - off, maxt - off),
        }
    }

    /// Loads every selector's data for evaluation times in `[mint, maxt]`.
    pub(crate) fn prepare(&mut self, expr: &Expr, mint: i64, maxt: i64) -> Result<()> {
        match expr {
            Expr::VectorSelector(vs) => {
                let (lo, hi) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), mint, maxt);
                let (before, after) = extended::widening(vs, false, self.lookback_ms);
                self.load(vs, lo - self.lookback_ms - before, hi + after)
            }
            Expr::MatrixSelector(MatrixSelector { vs, range, .. }) => {
                let (lo, hi) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), mint, maxt);
                let (before, after) = extended::widening(vs, true, self.lookback_ms);
                let (mint, maxt) = (lo - duration_ms(range) - before, hi + after);
                let key = selector_key(vs);
                let sets = selector_matchers(vs)?;
                if let ([set], true) = (sets.as_slice(), self.read_in_parts.contains(&key)) {
                    let series = self.storage.select_in_parts(set, mint, maxt)?;
                    self.in_parts.insert(key, InParts { series, sets, mint, maxt });
                    return Ok(());
                }
                self.load_sets(key, &sets, mint, maxt)
            }
            Expr::Subquery(sq) => {
                let (lo, hi) = self.shifted(sq.at.as_ref(), sq.offset.as_ref(), mint, maxt);
                self.prepare(&sq.expr, lo - duration_ms(&sq.range), hi)
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.prepare(p, mint, maxt)?;
                }
                self.prepare(&a.expr, mint, maxt)
            }
            Expr::Unary(u) => self.prepare(&u.expr, mint, maxt),
            Expr::Binary(b) => {
                self.prepare(&b.lhs, mint, maxt)?;
                self.prepare(&b.rhs, mint, maxt)
            }
            Expr::Paren(p) => self.prepare(&p.expr, mint, maxt),
            Expr::Call(c) if c.func.name == "info" => {
                // The second argument is not evaluated: it says which info series to load, looked
                // up where the first argument's selector is.
                self.prepare(&c.args.args[0], mint, maxt)?;
                let (at, offset) = info::reference(&c.args.args[0]);
                let (lo, hi) = match self.at_ms(at) {
                    Some(t) => (t - offset, t - offset),
                    None => (mint - offset, maxt - offset),
                };
                self.load_sets(info::key(c), &[info::info_matchers(c)?], lo - self.lookback_ms, hi)
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.prepare(a, mint, maxt)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
            Expr::Extension(_) => Err(Error::BadQuery("unsupported expression extension".into())),
        }
    }

    /// Has [`Evaluator::prepare`] select the matrix selectors with these keys in parts.
    pub(crate) fn read_in_parts(&mut self, keys: impl IntoIterator<Item = usize>) {
        self.read_in_parts.extend(keys);
    }

    /// Whether any selection is still to be read in parts.
    pub(crate) fn has_parts(&self) -> bool {
        !self.in_parts.is_empty()
    }

    /// The selection of a matrix selector that [`Evaluator::prepare`] selected in parts.
    pub(crate) fn parts_of(&self, vs: &VectorSelector) -> Option<&InParts<'a>> {
        self.in_parts.get(&selector_key(vs))
    }

    /// Adds samples read from a selection in parts to the query's count (its reader keeps them
    /// within the limit as it reads).
    pub(crate) fn add_loaded(&mut self, n: usize) {
        self.samples_loaded += n;
    }

    /// Loads every selection still to be read in parts whole, for the step-by-step path.
    pub(crate) fn load_in_parts_whole(&mut self) -> Result<()> {
        for (key, InParts { sets, mint, maxt, .. }) in std::mem::take(&mut self.in_parts) {
            self.load_sets(key, &sets, mint, maxt)?;
        }
        Ok(())
    }

    fn load(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<()> {
        self.load_sets(selector_key(vs), &selector_matchers(vs)?, mint, maxt)
    }

    /// Loads the series any of the matcher sets selects under `key`.
    fn load_sets(&mut self, key: usize, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Result<()> {
        let mut found: Vec<Series> = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            let selected = self.storage.select(set, mint, maxt)?;
            if i == 0 {
                found = selected;
                continue;
            }
            // `or` matcher sets can select a series twice.
            let known: HashSet<Labels> = found.iter().map(|f| f.labels.clone()).collect();
            found.extend(selected.into_iter().filter(|s| !known.contains(&s.labels)));
        }
        if sets.len() > 1 {
            found.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        self.samples_loaded += found.iter().map(|s| s.points.len() + s.histograms.len()).sum::<usize>();
        if let Some(c) = self.stats.as_deref_mut() {
            c.loaded(found.iter().map(stats::series_samples).sum());
        }
        if self.samples_loaded > self.opts.limits.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        let entry = Arc::make_mut(&mut self.loaded).entry(key).or_default();
        if entry.is_empty() {
            // Sorted by labels: by storage, or just above.
            *entry = found;
            return Ok(());
        }
        // The same selector can be reached twice (e.g. a subquery inside another): keep the union.
        let mut position: HashMap<Labels, usize> =
            entry.iter().enumerate().map(|(i, e)| (e.labels.clone(), i)).collect();
        for s in found {
            match position.get(&s.labels) {
                Some(&i) => merge_loaded(&mut entry[i], s),
                None => {
                    position.insert(s.labels.clone(), entry.len());
                    entry.push(s);
                }
            }
        }
        entry.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(())
    }

    pub(crate) fn series_of(&self, vs: &VectorSelector) -> &[Series] {
        self.series_of_key(selector_key(vs))
    }

    /// The series loaded under `key`: a selector's address, or what else loaded them.
    pub(crate) fn series_of_key(&self, key: usize) -> &[Series] {
        self.loaded.get(&key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Evaluates `expr` at time `t`.
    pub(crate) fn eval(&mut self, expr: &Expr, t: i64) -> Result<Value> {
        // Parentheses hand their operand's result on: it is held once.
        if self.stats.is_none() || matches!(expr, Expr::Paren(_)) {
            return self.eval_node(expr, t);
        }
        let before = self.held();
        let value = self.eval_node(expr, t)?;
        self.hold(before, || stats::value_samples(&value));
        Ok(value)
    }

    fn eval_node(&mut self, expr: &Expr, t: i64) -> Result<Value> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(Point { t, v: n.val })),
            Expr::StringLiteral(s) => Ok(Value::String { t, s: s.val.clone() }),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(p) => Ok(Value::Scalar(Point { t: p.t, v: -p.v })),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| {
                            let h = s.h.map(|h| {
                                let mut h = Arc::unwrap_or_clone(h);
                                h.mul(-1.0);
                                Arc::new(h)
                            });
                            Sample { v: -s.v, h, drop_name: true, ..s }
                        })
                        .collect(),
                )),
                other => Err(Error::Execution(format!("unary minus on {}", other.type_name()))),
            },
            Expr::VectorSelector(vs) if vs.smoothed => Ok(Value::Vector(extended::smoothed_selector(self, vs, t))),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant_selector(vs, t))),
            Expr::MatrixSelector(ms) => {
                let matrix = if ms.vs.anchored || ms.vs.smoothed {
                    extended::range_selector(self, ms, t)?
                } else {
                    self.range_selector(ms, t)
                };
                if self.counting() {
                    self.count_read(matrix.iter().map(stats::series_samples).sum());
                }
                Ok(Value::Matrix(matrix))
            }
            Expr::Subquery(sq) => Ok(Value::Matrix(self.subquery(sq, t)?)),
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Extension(_) => Err(Error::BadQuery("unsupported expression extension".into())),
        }
    }

    /// The newest sample of each series in `(t - lookback, t]`, unless it is a stale marker;
    /// counted as read, a histogram by its size.
    fn instant_selector(&mut self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let out = self.newest_samples(vs, t);
        if self.counting() {
            self.count_read(out.iter().map(stats::sample_samples).sum());
        }
        out
    }

    /// What `start_timestamp(selector)` reads: the sample [`Evaluator::instant_selector`] picks of
    /// each series, with its start timestamp (0 when it has none). Counted one per series, as
    /// Prometheus counts the samples `timestamp()` and `start_timestamp()` look at.
    pub(crate) fn instant_selector_start_timestamps(&mut self, vs: &VectorSelector, t: i64) -> Vec<(Sample, i64)> {
        let out = self.newest_of_each(vs, t, |s, n| {
            (Sample { labels: s.labels.clone(), t, v: n.v, h: n.h, drop_name: false }, n.start_ts)
        });
        self.count_read(out.len() as u64);
        out
    }

    /// [`Evaluator::instant_selector`] without counting.
    fn newest_samples(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        self.newest_of_each(vs, t, |s, n| Sample { labels: s.labels.clone(), t, v: n.v, h: n.h, drop_name: false })
    }

    /// `f` of each series of `vs` and its newest live sample at `t`, for the series that have one.
    fn newest_of_each<T>(&self, vs: &VectorSelector, t: i64, f: impl Fn(&Series, NewestSample) -> T) -> Vec<T> {
        let (eval_t, _) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), t, t);
        self.series_of(vs).iter().filter_map(|s| newest_sample(s, eval_t, self.lookback_ms).map(|n| f(s, n))).collect()
    }

    /// Calls `f` with each series of a matrix selector and its samples in `(t - range, t]` with
    /// their start timestamps, stale markers left out, borrowing the loaded points rather than
    /// copying them (the hot path of `rate(x[5m])` and the `*_over_time` functions in range
    /// queries).
    pub(crate) fn for_each_range(
        &mut self,
        ms: &MatrixSelector,
        t: i64,
        mut f: impl FnMut(&Series, &[Point], &[HistogramPoint], Starts<'_>),
    ) {
        let vs = &ms.vs;
        let (eval_t, _) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), t, t);
        let lo = eval_t - duration_ms(&ms.range);
        let key = selector_key(vs);
        let Some(series) = self.loaded.get(&key) else { return };
        // Steps mostly move forward: each series' window starts where the last one was found.
        // Whether a series has stale markers at all is worked out once, not per window.
        let cursors = self.range_cursors.entry(key).or_default();
        if cursors.len() != series.len() {
            *cursors = series
                .iter()
                .map(|s| RangeCursor { from: 0, to: 0, has_stale: s.points.iter().any(|p| is_stale(p.v)) })
                .collect();
        }
        let mut scratch = WindowScratch::default();
        let counting = self.stats.as_ref().is_some_and(|c| c.counting);
        let mut read = 0;
        for (s, cursor) in series.iter().zip(cursors.iter_mut()) {
            let from = advance(&s.points, cursor.from, lo);
            let to = advance(&s.points, cursor.to.max(from), eval_t);
            (cursor.from, cursor.to) = (from, to);
            let (histograms, histogram_starts) = histogram_window(
                &s.histograms,
                &s.start_timestamps.histograms,
                lo,
                eval_t,
                &mut scratch.histograms,
                &mut scratch.histogram_starts,
            );
            let floats = live_window(
                &s.points[from..to],
                starts_in(&s.start_timestamps.floats, from..to),
                cursor.has_stale,
                &mut scratch.points,
                &mut scratch.point_starts,
            );
            if counting {
                read += floats.map_or(0, |(w, _)| w.len() as u64) + stats::histograms_samples(histograms);
            }
            match floats {
                Some((window, starts)) => {
                    f(s, window, histograms, Starts { floats: starts, histograms: histogram_starts })
                }
                None if !histograms.is_empty() => {
                    f(s, &[], histograms, Starts { floats: &[], histograms: histogram_starts })
                }
                None => {}
            }
        }
        self.count_read(read);
    }

    /// [`Evaluator::for_each_range`] over all the steps of a range query at once, series by
    /// series, as Prometheus evaluates range functions over a selector: a series' points stay in
    /// cache from one step to the next. Covers `series` (some of the selector's); `f` gets the
    /// index in `series`, the step, the window, its start timestamps, and the window's first
    /// position in the series' points when it is that run of them (not a copy without stale
    /// markers). With `counts` (one per step), adds each window's samples to its step's count.
    pub(crate) fn for_each_series_range(
        &self,
        ms: &MatrixSelector,
        steps: &[i64],
        series: &[Series],
        mut counts: Option<&mut [u64]>,
        mut f: impl FnMut(usize, i64, &[Point], &[i64], Option<usize>),
    ) -> Result<()> {
        let vs = &ms.vs;
        let range = duration_ms(&ms.range);
        let (mut scratch, mut start_scratch) = (Vec::new(), Vec::new());
        for (i, s) in series.iter().enumerate() {
            if i % 256 == 0 {
                self.check_deadline("expression evaluation")?;
            }
            let has_stale = s.points.iter().any(|p| is_stale(p.v));
            let (mut from, mut to) = (0, 0);
            for (k, &t) in steps.iter().enumerate() {
                let (eval_t, _) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), t, t);
                from = advance(&s.points, from, eval_t - range);
                to = advance(&s.points, to.max(from), eval_t);
                let starts = starts_in(&s.start_timestamps.floats, from..to);
                if let Some((window, starts)) =
                    live_window(&s.points[from..to], starts, has_stale, &mut scratch, &mut start_scratch)
                {
                    if let Some(counts) = counts.as_deref_mut() {
                        counts[k] += window.len() as u64;
                    }
                    // A copy without stale markers is shorter than the run it was taken from.
                    let run = (window.len() == to - from).then_some(from);
                    f(i, t, window, starts, run);
                }
            }
        }
        Ok(())
    }

    /// [`Evaluator::instant_selector`] over all the steps of a range query at once, series by
    /// series, for selectors of float series only (`None` when a series has histograms): each
    /// series with the values it has at the steps, in the selector's order.
    pub(crate) fn instant_selector_by_series(
        &mut self,
        vs: &VectorSelector,
        steps: &[i64],
    ) -> Option<Result<Vec<crate::by_series::SeriesPoints>>> {
        let mut counts = self.counting().then(|| vec![0u64; steps.len()]);
        let series = self.series_of(vs);
        if vs.smoothed || series.iter().any(|s| !s.histograms.is_empty()) {
            return None;
        }
        let mut out = Vec::with_capacity(series.len());
        for (i, s) in series.iter().enumerate() {
            if i % 256 == 0 {
                if let Err(e) = self.check_deadline("expression evaluation") {
                    return Some(Err(e));
                }
            }
            let mut points = Vec::new();
            let mut next = 0;
            for (k, &t) in steps.iter().enumerate() {
                let (eval_t, _) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), t, t);
                next = advance(&s.points, next, eval_t);
                // As in `newest_sample`: the newest point at or before the step, if recent and live.
                if let Some(p) = next.checked_sub(1).map(|i| s.points[i]) {
                    if p.t > eval_t - self.lookback_ms && !is_stale(p.v) {
                        points.push(Point { t, v: p.v });
                        if let Some(counts) = counts.as_mut() {
                            counts[k] += 1;
                        }
                    }
                }
            }
            out.push(crate::by_series::SeriesPoints { labels: s.labels.clone(), drop_name: false, points });
        }
        if let Some(counts) = counts {
            self.count_reads_at(steps, &counts);
        }
        Some(Ok(out))
    }

    /// Each series' samples in `(t - range, t]`, stale markers left out.
    pub(crate) fn range_selector(&self, ms: &MatrixSelector, t: i64) -> Vec<Series> {
        let vs = &ms.vs;
        let (eval_t, _) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), t, t);
        let lo = eval_t - duration_ms(&ms.range);
        let mut out = Vec::new();
        let mut scratch = WindowScratch::default();
        for s in self.series_of(vs) {
            let from = s.points.partition_point(|p| p.t <= lo);
            let to = s.points.partition_point(|p| p.t <= eval_t);
            let starts = starts_in(&s.start_timestamps.floats, from..to);
            let (points, point_starts) =
                live_window(&s.points[from..to], starts, true, &mut scratch.points, &mut scratch.point_starts)
                    .unwrap_or_default();
            let (histograms, histogram_starts) = histogram_window(
                &s.histograms,
                &s.start_timestamps.histograms,
                lo,
                eval_t,
                &mut scratch.histograms,
                &mut scratch.histogram_starts,
            );
            let series = Series {
                labels: s.labels.clone(),
                points: points.to_vec(),
                histograms: histograms.to_vec(),
                start_timestamps: StartTimestamps {
                    floats: point_starts.to_vec(),
                    histograms: histogram_starts.to_vec(),
                },
                drop_name: false,
            };
            if !series.is_empty() {
                out.push(series);
            }
        }
        out
    }

    /// Evaluates the inner expression at every multiple of the step in `(t - range, t]`.
    fn subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<Vec<Series>> {
        let (eval_t, _) = self.shifted(sq.at.as_ref(), sq.offset.as_ref(), t, t);
        let step = match &sq.step {
            Some(d) if !d.is_zero() => duration_ms(d),
            _ => self.default_subquery_step(),
        };
        let lo = eval_t - duration_ms(&sq.range);
        let mut inner_t = lo.div_euclid(step) * step;
        if inner_t <= lo {
            inner_t += step;
        }
        // A subquery passed to a function counts as its function's window (its result, below),
        // not by what its inner steps read; the one at the top of an instant query counts those
        // reads (Prometheus's `evalSubquery` and `SubqueryExpr` cases).
        let before = self.held();
        let counted = match self.stats.as_deref_mut() {
            Some(c) if c.top_subquery != Some(sq as *const SubqueryExpr as usize) => {
                Some(std::mem::replace(&mut c.counting, false))
            }
            _ => None,
        };
        let out = self.subquery_steps(sq, inner_t, eval_t, step);
        if let (Some(c), Some(before)) = (self.stats.as_deref_mut(), before) {
            // The inner results held were moved into the subquery's, which its node holds.
            c.release_to(before);
            if let Some(counting) = counted {
                c.counting = counting;
                if let Ok(out) = &out {
                    c.read(out.iter().map(stats::series_samples).sum());
                }
            }
        }
        out
    }

    /// The inner steps of a subquery, from `inner_t` to `eval_t`.
    fn subquery_steps(&mut self, sq: &SubqueryExpr, mut inner_t: i64, eval_t: i64, step: i64) -> Result<Vec<Series>> {
        let mut by_labels: HashMap<Labels, Series> = HashMap::new();
        while inner_t <= eval_t {
            self.check_deadline("subquery evaluation")?;
            match self.eval(&sq.expr, inner_t)? {
                Value::Vector(samples) => {
                    for s in samples {
                        let entry = by_labels
                            .entry(s.labels.clone())
                            .or_insert_with(|| Series::floats(s.labels, Vec::new(), s.drop_name));
                        match s.h {
                            Some(h) => entry.histograms.push(HistogramPoint { t: inner_t, h: hint_unknown(h) }),
                            None => entry.points.push(Point { t: inner_t, v: s.v }),
                        }
                    }
                }
                Value::Scalar(p) => {
                    let entry = by_labels.entry(Labels::default()).or_default();
                    entry.points.push(Point { t: inner_t, v: p.v });
                }
                other => return Err(Error::Execution(format!("subquery of a {}", other.type_name()))),
            }
            inner_t += step;
        }
        let mut out: Vec<Series> = by_labels.into_values().collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn default_subquery_step(&self) -> i64 {
        if self.start == self.end { self.opts.default_subquery_step_ms } else { self.step }
    }

    /// The labels of a sample as they appear in a result: without the metric name when it is
    /// marked for removal.
    pub(crate) fn result_labels(&mut self, s: Sample) -> Sample {
        if !s.drop_name {
            return s;
        }
        let labels = self.without_name.get_or_insert_with(&s.labels, || s.labels.without_metric_name()).clone();
        Sample { labels, drop_name: false, ..s }
    }

    /// Drops metric names marked for removal and refuses duplicate label sets.
    pub(crate) fn finish_vector(&mut self, samples: Vec<Sample>) -> Result<Vec<Sample>> {
        let mut seen = FxHashSet::default();
        seen.reserve(samples.len());
        let mut out = Vec::with_capacity(samples.len());
        for s in samples {
            let s = self.result_labels(s);
            if !seen.insert(s.labels.clone()) {
                return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
            }
            out.push(s);
        }
        Ok(out)
    }

    pub(crate) fn finish_instant(&mut self, value: Value) -> Result<Value> {
        Ok(match value {
            Value::Vector(v) => Value::Vector(self.finish_vector(v)?),
            Value::Matrix(m) => {
                let mut seen = std::collections::HashSet::with_capacity(m.len());
                let mut out = Vec::with_capacity(m.len());
                for mut s in m {
                    if s.drop_name {
                        s.labels = s.labels.without_metric_name();
                        s.drop_name = false;
                    }
                    if !seen.insert(s.labels.clone()) {
                        return Err(Error::Execution("vector cannot contain metrics with the same labelset".into()));
                    }
                    out.push(s);
                }
                Value::Matrix(out)
            }
            other => other,
        })
    }

    /// The query's result with its annotations, each ending in the ` (line:column)` in `query`
    /// of the expression it is about, as Prometheus writes them (none when `query` is empty).
    pub(crate) fn output(self, value: Value, query: &str) -> QueryOutput {
        let texts = |notes: BTreeMap<String, usize>| -> Vec<String> {
            notes
                .into_iter()
                .map(|(text, start)| match query {
                    "" => text,
                    _ => format!("{text} ({})", PositionRange::new(start, start).start_pos_input(query)),
                })
                .collect()
        };
        QueryOutput { value, warnings: texts(self.warnings), infos: texts(self.infos), stats: None }
    }

    /// Evaluates an argument that must be a scalar.
    pub(crate) fn eval_scalar(&mut self, expr: &Expr, t: i64) -> Result<f64> {
        match self.eval(expr, t)? {
            Value::Scalar(p) => Ok(p.v),
            other => Err(Error::Execution(format!("expected scalar, got {}", other.type_name()))),
        }
    }

    pub(crate) fn eval_vector(&mut self, expr: &Expr, t: i64) -> Result<Vec<Sample>> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(Error::Execution(format!("expected instant vector, got {}", other.type_name()))),
        }
    }

    /// Like [`Evaluator::eval_vector`], with each sample's own timestamp: for a plain selector
    /// the time of the stored sample, otherwise the evaluation time (what `timestamp()` reports).
    /// A selector (in parentheses or not: Prometheus takes them off a function's arguments)
    /// counts one read per series, a histogram too, as Prometheus counts what `timestamp()` reads.
    pub(crate) fn eval_vector_with_sample_times(&mut self, expr: &Expr, t: i64) -> Result<Vec<(Sample, i64)>> {
        match expr {
            Expr::VectorSelector(vs) => {
                let (eval_t, _) = self.shifted(vs.at.as_ref(), vs.offset.as_ref(), t, t);
                let samples = self.newest_samples(vs, t);
                self.count_read(samples.len() as u64);
                Ok(samples
                    .into_iter()
                    .map(|s| {
                        let series = self.series_of(vs).iter().find(|x| x.labels == s.labels).expect("selected");
                        let newest = newest_sample(series, eval_t, self.lookback_ms).expect("the selector found it");
                        (s, newest.t)
                    })
                    .collect())
            }
            Expr::Paren(p) => self.eval_vector_with_sample_times(&p.expr, t),
            _ => Ok(self.eval_vector(expr, t)?.into_iter().map(|s| (s, t)).collect()),
        }
    }

    pub(crate) fn eval_matrix(&mut self, expr: &Expr, t: i64) -> Result<Vec<Series>> {
        match self.eval(expr, t)? {
            Value::Matrix(m) => Ok(m),
            other => Err(Error::Execution(format!("expected range vector, got {}", other.type_name()))),
        }
    }
}

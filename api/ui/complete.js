// Completion for the PromQL editor: metric names (with their type from the metadata), functions
// and keywords where an expression starts; label names inside braces and in by/without/on/
// ignoring/group_left/group_right lists; label values inside a matcher's quotes. Names and values
// come from Amber's own API, scoped to the metric being typed, and are cached for a minute.

import { call } from './api.js';

const FUNCTIONS = [
  'abs', 'absent', 'absent_over_time', 'acos', 'acosh', 'asin', 'asinh', 'atan', 'atanh',
  'avg_over_time', 'ceil', 'changes', 'clamp', 'clamp_max', 'clamp_min', 'cos', 'cosh',
  'count_over_time', 'day_of_month', 'day_of_week', 'day_of_year', 'days_in_month', 'deg', 'delta',
  'deriv', 'double_exponential_smoothing', 'exp', 'floor', 'histogram_avg', 'histogram_count',
  'histogram_fraction', 'histogram_quantile', 'histogram_stddev', 'histogram_stdvar', 'histogram_sum',
  'hour', 'idelta', 'increase', 'irate', 'label_join', 'label_replace', 'last_over_time', 'ln',
  'log10', 'log2', 'mad_over_time', 'max_over_time', 'min_over_time', 'minute', 'month', 'pi',
  'predict_linear', 'present_over_time', 'quantile_over_time', 'rad', 'rate', 'resets', 'round',
  'scalar', 'sgn', 'sin', 'sinh', 'sort', 'sort_by_label', 'sort_by_label_desc', 'sort_desc', 'sqrt',
  'stddev_over_time', 'stdvar_over_time', 'sum_over_time', 'tan', 'tanh', 'time', 'timestamp',
  'vector', 'year',
];

const AGGREGATIONS = [
  'avg', 'bottomk', 'count', 'count_values', 'group', 'limit_ratio', 'limitk', 'max', 'min',
  'quantile', 'stddev', 'stdvar', 'sum', 'topk',
];

const KEYWORDS = ['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless'];

const TTL_MS = 60_000;
const cache = new Map();

function cached(key, load) {
  const hit = cache.get(key);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.value;
  const value = load().catch((e) => {
    cache.delete(key);
    throw e;
  });
  cache.set(key, { at: Date.now(), value });
  return value;
}

const match = (metric) => (metric ? { 'match[]': `{__name__=${JSON.stringify(metric)}}` } : {});

function metricNames() {
  return cached('names', async () => {
    const [names, meta] = await Promise.all([
      call('api/v1/label/__name__/values'),
      call('api/v1/metadata').catch(() => ({ data: {} })),
    ]);
    return names.data.map((n) => ({ text: n, kind: meta.data[n]?.[0]?.type ?? 'metric' }));
  });
}

function labelNames(metric) {
  return cached(`labels:${metric}`, async () =>
    (await call('api/v1/labels', match(metric))).data.filter((n) => n !== '__name__').map((n) => ({ text: n, kind: 'label' })));
}

function labelValues(name, metric) {
  return cached(`values:${name}:${metric}`, async () =>
    (await call(`api/v1/label/${encodeURIComponent(name)}/values`, match(metric))).data.map((v) => ({ text: v, kind: 'value' })));
}

// What is being typed at the end of `before` (the text left of the cursor): the kind of thing,
// the partial word to replace, and the metric it belongs to.
export function context(before) {
  // Walk the text once, tracking quotes and the brace we are in.
  let quote = null;
  let braceStart = -1;
  let quoteStart = -1;
  let bracket = false;
  for (let i = 0; i < before.length; i++) {
    const c = before[i];
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      quote = c;
      quoteStart = i;
    } else if (c === '{') braceStart = i;
    else if (c === '}') braceStart = -1;
    else if (c === '[') bracket = true;
    else if (c === ']') bracket = false;
  }
  const metricBefore = (i) => before.slice(0, i).match(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/)?.[1] ?? '';
  if (quote && braceStart >= 0) {
    const m = before.slice(braceStart + 1, quoteStart).match(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*$/);
    if (!m) return null;
    return { kind: 'value', label: m[1], prefix: before.slice(quoteStart + 1), metric: metricBefore(braceStart) };
  }
  if (quote || bracket) return null;
  const word = before.match(/[a-zA-Z_:][a-zA-Z0-9_:]*$/)?.[0] ?? '';
  if (braceStart >= 0) {
    const inside = before.slice(braceStart + 1);
    // After `name=`: nothing to complete until the quote opens.
    if (/(=~|!~|!=|=)\s*$/.test(inside)) return null;
    return { kind: 'label', prefix: word, metric: metricBefore(braceStart) };
  }
  const grouping = before.match(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)$/);
  if (grouping) {
    const metric = before.match(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{[]/)?.[1] ?? '';
    return { kind: 'label', prefix: grouping[2].match(/[a-zA-Z_][a-zA-Z0-9_]*$/)?.[0] ?? '', metric };
  }
  if (!word) return null;
  return { kind: 'expr', prefix: word };
}

async function candidates(ctx) {
  switch (ctx.kind) {
    case 'value':
      return labelValues(ctx.label, ctx.metric);
    case 'label':
      return labelNames(ctx.metric);
    default:
      return [
        ...(await metricNames()),
        ...AGGREGATIONS.map((f) => ({ text: f, kind: 'aggregation', call: true })),
        ...FUNCTIONS.map((f) => ({ text: f, kind: 'function', call: true })),
        ...KEYWORDS.map((k) => ({ text: k, kind: 'keyword' })),
      ];
  }
}

// Prefix matches first, then the rest that contain the prefix, at most `limit`.
export function rank(items, prefix, limit = 100) {
  const p = prefix.toLowerCase();
  const starts = [];
  const contains = [];
  for (const item of items) {
    const t = item.text.toLowerCase();
    if (t === p) continue;
    if (t.startsWith(p)) starts.push(item);
    else if (p && t.includes(p)) contains.push(item);
  }
  return [...starts, ...contains].slice(0, limit);
}

// Attaches completion to `textarea`; `onRun` is called on Enter when no completion is open
// (Shift+Enter inserts a newline).
export function attachCompletion(textarea, list, onRun) {
  let items = [];
  let selected = 0;
  let ctx = null;
  let generation = 0;

  const close = () => {
    items = [];
    list.hidden = true;
    list.replaceChildren();
    textarea.setAttribute('aria-expanded', 'false');
  };

  const render = () => {
    list.replaceChildren(...items.map((item, i) => {
      const li = document.createElement('li');
      li.setAttribute('role', 'option');
      li.dataset.value = item.text;
      li.className = i === selected ? 'selected' : '';
      li.append(Object.assign(document.createElement('span'), { textContent: item.text }));
      li.append(Object.assign(document.createElement('span'), { className: 'kind', textContent: item.kind }));
      li.addEventListener('mousedown', (e) => {
        e.preventDefault();
        accept(i);
      });
      return li;
    }));
    list.hidden = items.length === 0;
    textarea.setAttribute('aria-expanded', String(items.length > 0));
    list.children[selected]?.scrollIntoView({ block: 'nearest' });
  };

  const update = async () => {
    const mine = ++generation;
    const before = textarea.value.slice(0, textarea.selectionStart);
    ctx = context(before);
    if (!ctx) return close();
    let all;
    try {
      all = await candidates(ctx);
    } catch {
      return close();
    }
    if (mine !== generation) return;
    items = rank(all, ctx.prefix);
    selected = 0;
    render();
  };

  const accept = (i) => {
    const item = items[i];
    const pos = textarea.selectionStart;
    const start = pos - ctx.prefix.length;
    let insert = item.text;
    if (ctx.kind === 'value') insert = insert.replaceAll('\\', '\\\\').replaceAll('"', '\\"');
    if (item.call && textarea.value[pos] !== '(') insert += '(';
    textarea.setRangeText(insert, start, pos, 'end');
    close();
    textarea.focus();
    textarea.dispatchEvent(new Event('input'));
  };

  textarea.setAttribute('role', 'combobox');
  textarea.setAttribute('aria-autocomplete', 'list');
  list.setAttribute('role', 'listbox');
  list.hidden = true;
  textarea.addEventListener('input', update);
  textarea.addEventListener('blur', () => setTimeout(close, 150));
  textarea.addEventListener('keydown', (e) => {
    const open = items.length > 0;
    if (open && e.key === 'ArrowDown') {
      selected = (selected + 1) % items.length;
      render();
    } else if (open && e.key === 'ArrowUp') {
      selected = (selected + items.length - 1) % items.length;
      render();
    } else if (open && (e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey))) {
      accept(selected);
    } else if (open && e.key === 'Escape') {
      close();
    } else if (e.key === 'Enter' && !e.shiftKey) {
      close();
      onRun();
    } else if (e.key === ' ' && e.ctrlKey) {
      update();
    } else {
      return;
    }
    e.preventDefault();
  });
}

// The query page: a PromQL editor with completion, a time range (duration, end, step), a graph of
// the range query with its exemplars, and a table of the instant query at the range's end.
// Its state is the URL: #/query?expr=…&tab=graph|table&range=1h&end=<unix seconds>&step=…&trace=…

import { call, el, formatDuration, formatLabels, formatTime, messages, parseDuration, settings } from './api.js';
import { attachCompletion } from './complete.js';
import { drawGraph } from './graph.js';

// Prometheus UI's steps: about 250 points across the graph, at least a second.
const autoStep = (range) => Math.max(Math.floor(range / 250), 1);

const RANGE_STEPS = [60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800, 1209600, 2592000];

export function queryPage(main, { params }) {
  const state = {
    expr: params.get('expr') ?? '',
    tab: params.get('tab') === 'table' ? 'table' : 'graph',
    range: params.get('range') ?? '1h',
    end: params.get('end') ?? '',
    step: params.get('step') ?? '',
    exemplars: params.get('exemplars') !== '0',
    trace: params.get('trace') ?? '',
  };

  const textarea = el('textarea', {
    id: 'expr',
    rows: 1,
    spellcheck: 'false',
    autocapitalize: 'off',
    autocomplete: 'off',
    placeholder: 'Expression (Enter runs it; Shift+Enter for a new line; Ctrl+Space completes)',
    'aria-label': 'PromQL expression',
  });
  textarea.value = state.expr;
  const list = el('ul', { class: 'completions', id: 'completions' });
  const range = el('input', { id: 'range', value: state.range, size: 6, 'aria-label': 'Range' });
  const end = el('input', { id: 'end', type: 'datetime-local', step: 1, 'aria-label': 'End time' });
  if (state.end) end.value = toLocalInput(Number(state.end));
  const step = el('input', { id: 'step', value: state.step, size: 6, placeholder: 'auto', 'aria-label': 'Step' });
  const showExemplars = el('input', { id: 'show-exemplars', type: 'checkbox', checked: state.exemplars });
  const out = el('div', { id: 'messages' });
  const result = el('div', { id: 'result' });
  const detail = el('div', { id: 'exemplar-detail' });
  const tabs = el('div', { class: 'tabs', role: 'tablist' });

  // The next shorter or longer of the usual ranges.
  const shift = (dir) => {
    const r = parseDuration(range.value) || 3600;
    const next = dir < 0
      ? RANGE_STEPS.findLast((s) => s < r) ?? RANGE_STEPS[0]
      : RANGE_STEPS.find((s) => s > r) ?? RANGE_STEPS.at(-1);
    range.value = formatDuration(next);
    run();
  };

  // Writes the form into the URL; the hashchange that follows would re-render the page, so the
  // page runs the query itself and replaces the history entry instead.
  const save = () => {
    const p = new URLSearchParams();
    p.set('expr', textarea.value);
    p.set('tab', state.tab);
    p.set('range', range.value);
    if (end.value) p.set('end', String(fromLocalInput(end.value)));
    if (step.value) p.set('step', step.value);
    if (!showExemplars.checked) p.set('exemplars', '0');
    if (state.trace) p.set('trace', state.trace);
    history.replaceState(null, '', `#/query?${p}`);
  };

  let generation = 0;
  const run = async () => {
    save();
    const mine = ++generation;
    const expr = textarea.value.trim();
    detail.replaceChildren();
    if (!expr) {
      messages(out, {});
      result.replaceChildren(el('p', { class: 'muted' }, 'Enter an expression, e.g. a metric name.'));
      return;
    }
    const rangeSeconds = parseDuration(range.value);
    if (!(rangeSeconds > 0)) return messages(out, { error: `invalid range ${JSON.stringify(range.value)}: use a duration such as 1h or 30m` });
    const endSeconds = end.value ? fromLocalInput(end.value) : Date.now() / 1000;
    const stepSeconds = step.value ? parseDuration(step.value) || Number(step.value) : autoStep(rangeSeconds);
    if (!(stepSeconds > 0)) return messages(out, { error: `invalid step ${JSON.stringify(step.value)}` });
    result.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    try {
      if (state.tab === 'graph') {
        const start = endSeconds - rangeSeconds;
        const [answer, ex, cfg] = await Promise.all([
          call('api/v1/query_range', { query: expr, start, end: endSeconds, step: stepSeconds }, { post: true }),
          showExemplars.checked
            ? call('api/v1/query_exemplars', { query: expr, start, end: endSeconds }, { post: true }).catch((e) => ({ data: [], warnings: [`exemplars: ${e.message}`] }))
            : { data: [] },
          settings(),
        ]);
        if (mine !== generation) return;
        renderGraph(answer, ex, cfg, { start, end: endSeconds, step: stepSeconds });
      } else {
        const answer = await call('api/v1/query', { query: expr, time: endSeconds }, { post: true });
        if (mine !== generation) return;
        messages(out, answer);
        result.replaceChildren(table(answer.data));
      }
    } catch (e) {
      if (mine !== generation) return;
      messages(out, { error: e.message });
      result.replaceChildren();
    }
  };

  const renderGraph = (answer, ex, cfg, window) => {
    const matrix = answer.data.result;
    const histograms = matrix.filter((s) => s.histograms?.length).length;
    const exemplarCount = ex.data.reduce((n, s) => n + s.exemplars.length, 0);
    const notes = [...(answer.infos ?? [])];
    if (histograms) notes.push(`${histograms} series of native histograms are not drawn: graph histogram_quantile(…) or histogram_count(…) of them, or see the Table tab.`);
    messages(out, { warnings: [...(answer.warnings ?? []), ...(ex.warnings ?? [])], infos: notes });
    const summary = el('p', { class: 'muted', id: 'summary' },
      `${matrix.length} series, ${exemplarCount} exemplars, step ${formatDuration(window.step)}`);
    const graph = el('div', { class: 'graph', id: 'graph' });
    result.replaceChildren(summary, graph);
    if (!matrix.length && !exemplarCount) {
      graph.replaceChildren(el('p', { class: 'muted' }, 'No data in this range.'));
      return;
    }
    const u = drawGraph(graph, {
      matrix,
      ...window,
      exemplars: ex.data,
      highlightTrace: state.trace,
      traceIdLabels: cfg.traceIdLabels,
      onExemplar: (p) => showExemplar(detail, p, cfg),
    });
    if (u.exemplarCount < exemplarCount) summary.append(` (the first ${u.exemplarCount} drawn)`);
  };

  for (const [name, label] of [['graph', 'Graph'], ['table', 'Table']]) {
    tabs.append(el('button', {
      type: 'button',
      role: 'tab',
      id: `tab-${name}`,
      class: state.tab === name ? 'active' : '',
      'aria-selected': String(state.tab === name),
      onclick: () => {
        state.tab = name;
        for (const b of tabs.children) {
          b.classList.toggle('active', b.id === `tab-${name}`);
          b.setAttribute('aria-selected', String(b.id === `tab-${name}`));
        }
        run();
      },
    }, label));
  }

  main.append(
    el('div', { class: 'editor' }, textarea, list),
    el('div', { class: 'controls' },
      el('button', { type: 'button', class: 'primary', id: 'run', onclick: run }, 'Execute'),
      el('label', {}, 'Range', el('button', { type: 'button', onclick: () => shift(-1), 'aria-label': 'Shorter range' }, '−'), range,
        el('button', { type: 'button', onclick: () => shift(1), 'aria-label': 'Longer range' }, '+')),
      el('label', {}, 'End', end, el('button', { type: 'button', onclick: () => { end.value = ''; run(); } }, 'now')),
      el('label', {}, 'Step', step),
      el('label', {}, showExemplars, 'Exemplars'),
    ),
    tabs, out, result, detail,
  );
  attachCompletion(textarea, list, run);
  for (const input of [range, end, step]) input.addEventListener('change', run);
  showExemplars.addEventListener('change', run);
  if (state.expr) run();
  else textarea.focus();
}

function showExemplar(detail, { series, exemplar, color }, cfg) {
  const rows = [
    ['Series', el('span', { class: 'mono' }, formatLabels(series))],
    ['Time', `${formatTime(Number(exemplar.timestamp))} (${exemplar.timestamp})`],
    ['Value', el('span', { class: 'mono', id: 'exemplar-value' }, exemplar.value)],
  ];
  for (const [k, v] of Object.entries(exemplar.labels ?? {})) {
    if (cfg.traceIdLabels.includes(k)) {
      const links = [el('a', { href: `#/trace/${encodeURIComponent(v)}`, id: 'exemplar-lookup' }, 'all exemplars of this trace')];
      if (cfg.traceUrlTemplate) {
        const url = cfg.traceUrlTemplate.replaceAll('{trace_id}', encodeURIComponent(v));
        links.unshift(el('a', { href: url, id: 'exemplar-trace-link', target: '_blank', rel: 'noopener' }, 'open trace'), ' · ');
      }
      rows.push([k, el('span', {}, el('span', { class: 'mono', id: 'exemplar-trace-id' }, v), ' — ', ...links)]);
    } else {
      rows.push([k, el('span', { class: 'mono' }, v)]);
    }
  }
  const box = el('div', { class: 'exemplar-detail' }, el('dl', {}, rows.map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])));
  box.style.borderColor = color;
  detail.replaceChildren(el('h2', {}, 'Exemplar'), box);
}

// An instant query's answer as Prometheus's table tab shows it.
function table(data) {
  const { resultType, result } = data;
  if (resultType === 'scalar' || resultType === 'string') {
    return el('div', { class: 'table-wrap' }, el('table', { id: 'result-table' },
      el('tr', {}, el('th', {}, resultType), el('th', { class: 'num' }, 'Value')),
      el('tr', {}, el('td', {}, formatTime(result[0])), el('td', { class: 'num mono' }, result[1]))));
  }
  if (!result.length) return el('p', { class: 'muted' }, 'Empty query result');
  const value = (s) => {
    if (resultType === 'matrix') {
      return [...(s.values ?? []).map(([t, v]) => `${v} @${t}`), ...(s.histograms ?? []).map(([t, h]) => `${histogram(h)} @${t}`)].join('\n');
    }
    return s.value ? s.value[1] : histogram(s.histogram[1]);
  };
  return el('div', { class: 'table-wrap' }, el('table', { id: 'result-table' },
    el('tr', {}, el('th', {}, 'Series'), el('th', { class: 'num' }, 'Value')),
    result.map((s) => el('tr', {}, el('td', { class: 'labels mono' }, formatLabels(s.metric)), el('td', { class: 'num mono pre' }, value(s))))));
}

function histogram(h) {
  return `count ${h.count} sum ${h.sum} (${h.buckets?.length ?? 0} buckets)`;
}

// <input type=datetime-local> speaks local time without a zone.
function toLocalInput(seconds) {
  const d = new Date(seconds * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function fromLocalInput(value) {
  return new Date(value).getTime() / 1000;
}

// Trace lookup: every exemplar that carries a trace id (`/api/v1/exemplars/trace/<id>`), by
// series, each linking to a graph of its series around that moment with the exemplar marked.
// #/trace/<trace id>

import { data, el, formatLabels, formatTime, messages, selectorOf, settings } from './api.js';

// The graph a hit links to: half an hour either side of the exemplar.
const AROUND_SECONDS = 1800;

export function tracePage(main, { rest }) {
  const input = el('input', { id: 'trace-id', value: rest, size: 40, placeholder: 'trace id', 'aria-label': 'Trace id', spellcheck: 'false' });
  const out = el('div', { id: 'messages' });
  const result = el('div', { id: 'trace-result' });
  const lookup = () => {
    const id = input.value.trim();
    if (id) location.hash = `#/trace/${encodeURIComponent(id)}`;
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') lookup();
  });
  main.append(
    el('h2', {}, 'Trace lookup'),
    el('p', { class: 'muted' }, 'Every exemplar stored with this trace id, over the whole retention.'),
    el('div', { class: 'controls' }, input, el('button', { type: 'button', class: 'primary', id: 'lookup', onclick: lookup }, 'Look up')),
    out, result,
  );
  if (rest) show(rest, out, result);
  else input.focus();
}

async function show(traceId, out, result) {
  result.replaceChildren(el('p', { class: 'muted' }, 'Looking up…'));
  let series;
  let cfg;
  try {
    [series, cfg] = await Promise.all([data(`api/v1/exemplars/trace/${encodeURIComponent(traceId)}`), settings()]);
  } catch (e) {
    messages(out, { error: e.message });
    result.replaceChildren();
    return;
  }
  messages(out, {});
  const hits = series.flatMap((s) => s.exemplars.map((e) => ({ series: s.seriesLabels, exemplar: e })));
  if (!hits.length) {
    result.replaceChildren(el('p', { class: 'muted', id: 'trace-empty' }, `No exemplar carries trace id ${traceId}.`));
    return;
  }
  const external = cfg.traceUrlTemplate
    ? el('p', {}, el('a', { href: cfg.traceUrlTemplate.replaceAll('{trace_id}', encodeURIComponent(traceId)), target: '_blank', rel: 'noopener' }, 'Open this trace'))
    : null;
  const rows = hits.map(({ series: labels, exemplar }) => {
    const t = Number(exemplar.timestamp);
    const graph = new URLSearchParams({
      expr: selectorOf(labels),
      range: '1h',
      end: String(Math.round(t + AROUND_SECONDS)),
      trace: traceId,
    });
    const others = Object.entries(exemplar.labels).filter(([k]) => !cfg.traceIdLabels.includes(k));
    return el('tr', { class: 'hit' },
      el('td', { class: 'labels mono' }, formatLabels(labels)),
      el('td', {}, formatTime(t)),
      el('td', { class: 'num mono' }, exemplar.value),
      el('td', { class: 'mono' }, others.map(([k, v]) => `${k}="${v}"`).join(' ')),
      el('td', {}, el('a', { href: `#/query?${graph}`, class: 'graph-link' }, 'graph')));
  });
  result.replaceChildren(
    el('p', { id: 'trace-summary' }, `${hits.length} exemplars in ${series.length} series`),
    ...(external ? [external] : []),
    el('div', { class: 'table-wrap' }, el('table', { id: 'trace-table' },
      el('tr', {}, el('th', {}, 'Series'), el('th', {}, 'Time'), el('th', { class: 'num' }, 'Value'), el('th', {}, 'Other labels'), el('th', {}, '')),
      rows)),
  );
}

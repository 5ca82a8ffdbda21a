// Status: build and runtime information, storage sizes and head and WAL figures (from Amber's
// own /metrics), cardinality (`/api/v1/status/tsdb`: top metrics and label pairs) and the
// settings in force (`/api/v1/status/flags`).

import { data, el, formatBytes, formatTime, messages, text } from './api.js';

// The figures shown as cards: [metric on /metrics (summed over its label sets), title, format].
const FIGURES = [
  ['amber_series', 'series in the index', 'count'],
  ['amber_head_series', 'series in the head', 'count'],
  ['amber_head_samples', 'samples in the head', 'count'],
  ['amber_head_histograms', 'histogram samples in the head', 'count'],
  ['amber_head_exemplars', 'exemplars in the head', 'count'],
  ['amber_head_chunk_bytes', 'head chunks', 'bytes'],
  ['amber_wal_bytes', 'write-ahead log on disk', 'bytes'],
  ['amber_rocksdb_sst_bytes', 'blocks and index on disk (RocksDB SST files)', 'bytes'],
  ['amber_rocksdb_memtable_bytes', 'RocksDB memtables', 'bytes'],
];

// Sums of the samples of each metric in Prometheus's text exposition format.
export function parseMetrics(exposition) {
  const sums = new Map();
  for (const line of exposition.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/);
    if (m) sums.set(m[1], (sums.get(m[1]) ?? 0) + Number(m[3]));
  }
  return sums;
}

export function statusPage(main) {
  const out = el('div', { id: 'messages' });
  const build = el('div', { class: 'cards', id: 'build' });
  const figures = el('div', { class: 'cards', id: 'figures' });
  const cardinality = el('div', { id: 'cardinality' });
  const flags = el('div', { id: 'flags' });
  main.append(
    el('h2', {}, 'Amber'), build,
    el('h2', {}, 'Storage, head and write-ahead log'), figures,
    el('h2', {}, 'Cardinality'), cardinality,
    el('h2', {}, 'Settings in force'), flags,
    out,
  );
  const fail = (e) => messages(out, { error: e.message });
  Promise.all([data('api/v1/status/buildinfo'), data('api/v1/status/runtimeinfo')])
    .then(([b, r]) => build.replaceChildren(
      card('version', b.version), card('revision', b.revision), card('started', formatTime(Date.parse(r.startTime) / 1000)),
      card('retention', r.storageRetention), card('threads', r.goroutineCount), card('cores', r.GOMAXPROCS)))
    .catch(fail);
  text('metrics')
    .then((body) => {
      const sums = parseMetrics(body);
      figures.replaceChildren(...FIGURES.filter(([m]) => sums.has(m)).map(([m, title, kind]) => {
        const v = sums.get(m);
        return card(title, kind === 'bytes' ? formatBytes(v) : v.toLocaleString(), m);
      }));
    })
    .catch(fail);
  data('api/v1/status/tsdb', { limit: 10 })
    .then((t) => {
      const h = t.headStats;
      cardinality.replaceChildren(
        el('div', { class: 'cards' }, card('series', h.numSeries.toLocaleString()), card('label pairs', h.numLabelPairs.toLocaleString()),
          card('head chunks', h.chunkCount.toLocaleString())),
        stats('Top metrics by series', 'Metric', 'Series', t.seriesCountByMetricName, 'top-metrics'),
        stats('Top label pairs by series', 'Label pair', 'Series', t.seriesCountByLabelValuePair, 'top-pairs'),
        stats('Labels with the most values', 'Label', 'Values', t.labelValueCountByLabelName, 'top-labels'),
        stats('Memory of label values by label', 'Label', 'Bytes', t.memoryInBytesByLabelName, 'label-memory'));
    })
    .catch(fail);
  data('api/v1/status/flags')
    .then((f) => flags.replaceChildren(el('div', { class: 'table-wrap' }, el('table', { id: 'flags-table' },
      el('tr', {}, el('th', {}, 'Setting'), el('th', {}, 'Value')),
      Object.entries(f).map(([k, v]) => el('tr', {}, el('td', { class: 'mono' }, k), el('td', { class: 'mono labels' }, v)))))))
    .catch(fail);
}

function card(name, value, title) {
  return el('div', { class: 'card', title }, el('div', { class: 'value' }, value ?? '—'), el('div', { class: 'name' }, name));
}

function stats(title, nameHeader, valueHeader, rows, id) {
  return el('div', {},
    el('h2', {}, title),
    rows.length
      ? el('div', { class: 'table-wrap' }, el('table', { id },
        el('tr', {}, el('th', {}, nameHeader), el('th', { class: 'num' }, valueHeader)),
        rows.map((r) => el('tr', {}, el('td', { class: 'mono labels' }, r.name), el('td', { class: 'num' }, r.value.toLocaleString())))))
      : el('p', { class: 'muted' }, 'No series yet.'));
}

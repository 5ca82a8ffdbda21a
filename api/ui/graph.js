// The graph of a range query: one uPlot line per series over the query's steps, and each
// exemplar as a button laid over the plot at its (time, value), in its series' colour, so it can
// be clicked, focused with the keyboard, and found by a test.

import { el, formatLabels } from './api.js';

const PALETTE = [
  '#e6550d', '#3182bd', '#31a354', '#756bb1', '#d6616b', '#17becf', '#bcbd22', '#8c564b',
  '#e377c2', '#636363', '#fd8d3c', '#6baed6', '#74c476', '#9e9ac8', '#e7969c', '#9edae5',
];

export const MAX_EXEMPLARS = 5000;

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// `matrix` is a range query's result, `exemplars` query_exemplars' answer; `onExemplar` is called
// with {series, exemplar, color} when one is clicked. Returns the uPlot instance.
export function drawGraph(container, { matrix, start, end, step, exemplars, highlightTrace, traceIdLabels, onExemplar }) {
  const n = Math.floor((end - start) / step) + 1;
  const xs = Array.from({ length: n }, (_, i) => start + i * step);
  const floats = matrix.filter((s) => s.values?.length);
  const columns = floats.map((s) => {
    const ys = new Array(n).fill(null);
    for (const [t, v] of s.values) {
      const i = Math.round((t - start) / step);
      if (i >= 0 && i < n) ys[i] = Number(v);
    }
    return ys;
  });
  const colorOf = new Map(floats.map((s, i) => [formatLabels(s.metric), PALETTE[i % PALETTE.length]]));

  const points = [];
  for (const s of exemplars ?? []) {
    const key = formatLabels(s.seriesLabels);
    for (const e of s.exemplars) {
      if (points.length >= MAX_EXEMPLARS) break;
      points.push({ series: s.seriesLabels, exemplar: e, color: colorOf.get(key) ?? cssVar('--accent') });
    }
  }
  const finite = (v) => Number.isFinite(v);
  const exemplarValues = points.map((p) => Number(p.exemplar.value)).filter(finite);

  const fg = cssVar('--fg');
  const grid = cssVar('--grid');
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const opts = {
    width: Math.max(container.clientWidth - 8, 200),
    height: Math.min(400, Math.max(220, Math.round(window.innerHeight * 0.45))),
    scales: {
      x: { time: true },
      y: {
        range: (u, min, max) => {
          const lo = Math.min(min ?? Infinity, ...exemplarValues);
          const hi = Math.max(max ?? -Infinity, ...exemplarValues);
          if (!finite(lo) || !finite(hi)) return [0, 1];
          if (lo === hi) return [lo - Math.abs(lo || 1) * 0.1, hi + Math.abs(hi || 1) * 0.1];
          const pad = (hi - lo) * 0.05;
          return [lo - pad, hi + pad];
        },
      },
    },
    axes: [axis, { ...axis, size: 70 }],
    series: [
      {},
      ...floats.map((s, i) => ({
        label: formatLabels(s.metric),
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        points: { show: false },
      })),
    ],
    legend: { live: true },
    hooks: { draw: [(u) => placeExemplars(u)] },
  };

  const markers = points.map((p, i) => {
    const traceIds = p.exemplar.labels ? Object.entries(p.exemplar.labels).filter(([k]) => traceIdLabels.includes(k)) : [];
    const traceId = traceIds[0]?.[1];
    const b = el('button', {
      type: 'button',
      class: `exemplar${traceId && traceId === highlightTrace ? ' highlight' : ''}`,
      'data-index': i,
      'data-trace-id': traceId,
      'aria-label': `exemplar ${p.exemplar.value} at ${p.exemplar.timestamp}${traceId ? ` trace ${traceId}` : ''}`,
      title: `${p.exemplar.value}${traceId ? `\ntrace ${traceId}` : ''}`,
      onclick: () => {
        for (const m of markers) m.classList.toggle('selected', m === b);
        onExemplar(p);
      },
    });
    b.style.background = p.color;
    return b;
  });

  function placeExemplars(u) {
    const [xmin, xmax] = [u.scales.x.min, u.scales.x.max];
    const [ymin, ymax] = [u.scales.y.min, u.scales.y.max];
    points.forEach((p, i) => {
      const t = Number(p.exemplar.timestamp);
      const v = Number(p.exemplar.value);
      const m = markers[i];
      if (!(t >= xmin && t <= xmax && v >= ymin && v <= ymax)) {
        m.hidden = true;
        return;
      }
      m.hidden = false;
      m.style.left = `${u.valToPos(t, 'x')}px`;
      m.style.top = `${u.valToPos(v, 'y')}px`;
    });
  }

  const u = new uPlot(opts, [xs, ...columns], container);
  u.over.append(...markers);
  placeExemplars(u);
  // Follows the page's width; the next query's graph replaces this one, which then lets go.
  const resize = new ResizeObserver(() => {
    if (!container.isConnected) {
      resize.disconnect();
      u.destroy();
      return;
    }
    u.setSize({ width: Math.max(container.clientWidth - 8, 200), height: opts.height });
  });
  resize.observe(container);
  u.exemplarCount = points.length;
  return u;
}

// Amber's HTTP API as the pages use it: the tenant header, Prometheus's JSON envelope, and the
// formatting shared by every page (label sets, selectors, times, numbers).

const TENANT_KEY = 'amber.tenant';

export function tenant() {
  return localStorage.getItem(TENANT_KEY) || '';
}

export function setTenant(t) {
  if (t) localStorage.setItem(TENANT_KEY, t);
  else localStorage.removeItem(TENANT_KEY);
}

// A failed call, worded as the API words it (`errorType: error`), or the HTTP status.
export class ApiError extends Error {
  constructor(status, errorType, message) {
    super(errorType ? `${errorType}: ${message}` : message);
    this.status = status;
  }
}

// GET (or POST as a form, for queries that may be long) `path` with `params`; resolves to the
// whole envelope ({data, warnings, infos}) of a success.
export async function call(path, params = {}, { post = false } = {}) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one !== undefined && one !== null && one !== '') body.append(k, one);
    }
  }
  const headers = tenant() ? { 'X-Scope-OrgID': tenant() } : {};
  const url = post || !body.toString() ? path : `${path}?${body}`;
  const init = post ? { method: 'POST', headers, body } : { headers };
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, '', `Amber did not answer: ${e.message}`);
  }
  const text = await resp.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ApiError(resp.status, '', `${resp.status} ${resp.statusText}: ${text.trim()}`);
  }
  if (json.status !== 'success') throw new ApiError(resp.status, json.errorType, json.error);
  return json;
}

export async function data(path, params, opts) {
  return (await call(path, params, opts)).data;
}

export async function text(path) {
  const resp = await fetch(path, { headers: tenant() ? { 'X-Scope-OrgID': tenant() } : {} });
  if (!resp.ok) throw new ApiError(resp.status, '', `${resp.status} ${resp.statusText}`);
  return resp.text();
}

let settingsPromise;
// The UI settings Amber was started with ({traceUrlTemplate, traceIdLabels}).
export function settings() {
  settingsPromise ??= fetch('ui/settings.json')
    .then((r) => r.json())
    .catch((e) => {
      settingsPromise = undefined;
      throw e;
    });
  return settingsPromise;
}

// A label set as Prometheus prints it: name{a="b", c="d"}.
export function formatLabels(labels) {
  const { __name__: name, ...rest } = labels;
  const pairs = Object.entries(rest).map(([k, v]) => `${labelName(k)}=${quote(v)}`);
  if (name !== undefined && isMetricName(name)) return `${name}{${pairs.join(', ')}}`;
  if (name !== undefined) pairs.unshift(quote(name));
  return `{${pairs.join(', ')}}`;
}

// The selector that picks exactly the series with `labels` (Prometheus 3 syntax: names that are
// not identifiers are quoted).
export function selectorOf(labels) {
  return formatLabels(labels).replaceAll(', ', ',');
}

function isMetricName(s) {
  return /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(s);
}

function labelName(s) {
  return /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(s) ? s : quote(s);
}

function quote(s) {
  return `"${s.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`;
}

export function formatTime(seconds) {
  const d = new Date(seconds * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

// Prometheus durations (1h30m, 15s, 2d) in seconds; NaN when `s` is not one.
export function parseDuration(s) {
  const units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  const m = s.trim().match(/^((\d+)(ms|s|m|h|d|w|y))+$/);
  if (!m) return NaN;
  let total = 0;
  for (const [, n, u] of s.trim().matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)) total += Number(n) * units[u];
  return total;
}

export function formatDuration(seconds) {
  const parts = [];
  for (const [u, n] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (seconds >= n) {
      parts.push(`${Math.floor(seconds / n)}${u}`);
      seconds %= n;
    }
  }
  return parts.join('') || '0s';
}

// An element with attributes and children: el('td', {class: 'x'}, 'text', child).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// The errors, warnings and infos of an answer, as Prometheus words them.
export function messages(container, { error, warnings = [], infos = [] }) {
  container.replaceChildren(
    ...(error ? [el('div', { class: 'msg error', role: 'alert' }, error)] : []),
    ...warnings.map((w) => el('div', { class: 'msg warning' }, w)),
    ...infos.map((i) => el('div', { class: 'msg info' }, i)),
  );
}

// Small helpers shared by the views: formatting, flattening, colours, smoothing.
// 20 colours picked for distance: each is at least 27 apart from every other in CIELAB (ΔE76; 2.3 is the
// smallest difference people notice, colours 6.9 apart read as one on a chart), with lightness between 40 and
// 70 so every one shows on a white and on a dark background. Chosen greedily (each the farthest from those
// before it), so the first runs get the most distinct ones. A run keeps its colour on every page.
export const PALETTE = ['#1f77e4', '#e8590c', '#2b9a3e', '#e81794', '#9417e8', '#13b1c3', '#8a6d28', '#d87982',
  '#c16ce5', '#c31336', '#94a210', '#1b6698', '#13c313', '#e817d3', '#e89417', '#3c4eec', '#288a6d', '#d879bb',
  '#a24b10', '#61a8ef'];

const assigned = new Map();

// Runs get palette colours in the order they were created (so the first 20 runs never share one); a run the
// page has not been told about falls back to a hash of its id.
export function assignColors(runsOldestFirst) {
  runsOldestFirst.forEach((run, i) => { if (!assigned.has(run.id)) assigned.set(run.id, PALETTE[assigned.size % PALETTE.length]); });
}

export function colorFor(id) {
  if (assigned.has(id)) return assigned.get(id);
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  return PALETTE[(h >>> 0) % PALETTE.length];
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'style') node.style.cssText = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// {a: {b: 1}} -> {"a.b": 1}; wandb-style {"value": v} wrappers are unwrapped.
export function flatten(obj, prefix = '', out = {}) {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    out[prefix] = obj;
    return out;
  }
  const keys = Object.keys(obj);
  if (prefix && keys.length === 1 && keys[0] === 'value') return flatten(obj.value, prefix, out);
  if (!keys.length && prefix) out[prefix] = obj;
  for (const k of keys) flatten(obj[k], prefix ? `${prefix}.${k}` : k, out);
  return out;
}

// A number in the fewest characters that keep `digits` significant digits: 0.0005 is "5e-4", not "5.0000e-4".
export function fmtNumber(v, digits = 6) {
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a < 1e-3 || a >= 1e6) {
    const [mantissa, exponent] = v.toExponential(digits - 1).split('e');
    return `${+mantissa}e${Number(exponent)}`;
  }
  return String(+v.toPrecision(digits));
}

export function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return Number.isInteger(v) && Math.abs(v) < 1e15 ? String(v) : fmtNumber(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// Axis tick labels: as many decimals as the tick spacing needs (a learning-rate axis reads 0.0025, 0.0020, ...,
// not 0.002, 0.002, ...), exponents for very small or large values; on a log axis each tick on its own (1e-5).
export function fmtTicks(ticks, log = false) {
  if (log) return ticks.map((t) => (t === null ? '' : fmtNumber(t, 3)));
  const finite = ticks.filter((t) => t !== null && isFinite(t));
  const maxAbs = finite.reduce((m, t) => Math.max(m, Math.abs(t)), 0);
  let step = Infinity;
  for (let i = 1; i < finite.length; i++) {
    const d = Math.abs(finite[i] - finite[i - 1]);
    if (d > 0 && d < step) step = d;
  }
  if (maxAbs !== 0 && (maxAbs < 1e-3 || maxAbs >= 1e6)) {
    const sci = (t, digits) => {
      const [mantissa, exponent] = t.toExponential(digits - 1).split('e');
      return `${+mantissa}e${Number(exponent)}`;
    };
    for (let digits = 1; digits <= 15; digits++) {
      const out = ticks.map((t) => (t === null ? '' : t === 0 ? '0' : sci(t, digits)));
      const exact = finite.every((t) => Math.abs(Number(sci(t, digits)) - t) <= (isFinite(step) ? step : Math.abs(t)) * 1e-6);
      if (new Set(out).size === new Set(finite).size && exact) return out;
    }
  }
  // Enough decimals that every label is its tick's value (0.25 reads 0.25, not 0.3) and no two labels collide.
  let decimals = isFinite(step) ? Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)) : 0;
  const exact = (d) => finite.every((t) => Math.abs(Number(t.toFixed(d)) - t) <= step * 1e-6);
  for (; decimals < 15; decimals++) {
    const out = ticks.map((t) => (t === null ? '' : t.toFixed(decimals)));
    if (new Set(out).size === new Set(finite).size && exact(decimals)) break;
  }
  return ticks.map((t) => (t === null ? '' : Math.abs(t) < step / 1e6 ? '0' : t.toFixed(decimals)));
}

// Axis tick increments that are whole numbers, for axes of steps (no tick at step 2.5).
export const INTEGER_INCRS = (() => {
  const out = [];
  for (let m = 1; m <= 1e15; m *= 10) out.push(m, 2 * m, 5 * m);
  return out;
})();

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

// One formatter for every time shown: toLocaleString with options builds a formatter per call (0.6 ms each in
// headless Chromium: 37 ms for the 60 start times of a runs table's rows, redrawn on every scroll), this one
// formats the same text in 5 us.
const TIME_FORMAT = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric', hour12: false,
});

export function fmtTime(epoch) {
  if (!epoch) return '';
  return TIME_FORMAT.format(new Date(epoch * 1000));
}

// Exponential moving average with TensorBoard's debiasing; NaN/null points stay gaps.
export function ema(values, weight) {
  if (!(weight > 0)) return values;
  const out = new Array(values.length);
  let last = 0;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined || Number.isNaN(v)) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    count += 1;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}

// trackio 0.43's smoothing: a centred moving average over a window of `size` points (at least 3, at most the
// series' length), read from its 0-100 slider with parseInt; 0 is no smoothing. Gaps stay gaps.
export function movingAverage(values, size) {
  if (!(size > 0)) return values;
  const n = values.length;
  const w = Math.max(3, Math.min(size, n));
  const half = Math.floor(w / 2);
  const sums = new Float64Array(n + 1);
  const counts = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const ok = v !== null && v !== undefined && !Number.isNaN(v);
    sums[i + 1] = sums[i] + (ok ? v : 0);
    counts[i + 1] = counts[i] + (ok ? 1 : 0);
  }
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v === null || v === undefined || Number.isNaN(v)) { out[i] = null; continue; }
    const lo = Math.max(0, i - half);
    const hi = Math.min(n, i + half + 1);
    out[i] = (sums[hi] - sums[lo]) / (counts[hi] - counts[lo]);
  }
  return out;
}

// The `smoothing` URL parameter as trackio reads it: parseInt, clamped to its slider's 0-100.
export function smoothingWindow(raw) {
  const v = parseInt(raw, 10);
  return Number.isNaN(v) ? 0 : Math.max(0, Math.min(100, v));
}

// The `ema` parameter (trackiod's own): an EMA weight in [0, 1).
export function emaWeight(raw) {
  const v = Number(raw);
  return isFinite(v) && v > 0 ? Math.min(0.99, v) : 0;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// A colour of the current theme (a CSS custom property on :root), for what canvases draw.
// Read once per theme: asking for computed style forces a style recalculation, once per chart drawn otherwise.
const themeCache = new Map();
export function themeColor(name) {
  const key = `${document.documentElement.dataset.theme}:${name}`;
  if (!themeCache.has(key)) themeCache.set(key, getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888');
  return themeCache.get(key);
}

// Save `blob` as a file named `name` through a temporary link.
export function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name, style: 'display:none' });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// An error as a sentence: the API's {"error": "..."} answers show their message, not raw JSON.
export function errorText(e) {
  const text = String((e && e.message) || e);
  const m = /^(\S+): (\d{3}) (\{.*\})$/s.exec(text);
  if (!m) return text;
  try {
    const body = JSON.parse(m[3]);
    return body.error ? `${body.error} (${m[2]})` : text;
  } catch {
    return text;
  }
}

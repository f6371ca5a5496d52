// Small helpers shared by the views: formatting, flattening, colours, EMA.
const PALETTE = ['#2f6fdb', '#e4572e', '#17a673', '#a14fd8', '#f0a202', '#0fa3b1', '#d7263d', '#6c8d2f',
  '#ff7eb6', '#5a5a8f', '#b5651d', '#3d9970', '#8e44ad', '#c0392b', '#16a085', '#7f8c8d'];

const assigned = new Map();

// Runs get palette colours in the order they were created (so the first 16 runs never share one); a run the
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

export function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(4) : String(+v.toPrecision(6));
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function fmtTime(epoch) {
  if (!epoch) return '';
  const d = new Date(epoch * 1000);
  return d.toLocaleString(undefined, { hour12: false });
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

// trackio's slider is 0-20; ours is an EMA weight in [0, 1). Larger values are read on trackio's scale.
export function smoothingWeight(raw) {
  const v = Number(raw);
  if (!isFinite(v) || v <= 0) return 0;
  return v < 1 ? v : Math.min(0.99, v / 20);
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

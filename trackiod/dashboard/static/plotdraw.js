// Plain canvas drawings for the run page's charts that are not time series: wandb.plot's presets (line, scatter,
// bar, histogram, line series, curves, confusion matrix), drawn from the chart's table and its fields, and the
// x/y traces of a plotly figure when plotly.js is not bundled. No library: axes with their ranges, one colour
// per series, a legend when there is more than one.
import { fmtValue } from './util.js';

const COLORS = ['#2f6fdb', '#e4572e', '#17a673', '#a14fd8', '#f0a202', '#0fa3b1', '#d7263d', '#6c8d2f'];
const PAD = { l: 52, r: 12, t: 10, b: 34 };

function finite(v) { return typeof v === 'number' && Number.isFinite(v); }

function setup(canvas) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.font = '11px system-ui, sans-serif';
  return { ctx, w: canvas.width - PAD.l - PAD.r, h: canvas.height - PAD.t - PAD.b };
}

function range(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) if (finite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return [0, 1];
  if (hi === lo) return [lo - 0.5, hi + 0.5];
  return [lo, hi];
}

function axes(ctx, w, h, [x0, x1], [y0, y1], xTitle, yTitle) {
  ctx.strokeStyle = '#c8ccd2';
  ctx.strokeRect(PAD.l, PAD.t, w, h);
  ctx.fillStyle = '#5f6b7a';
  ctx.textAlign = 'left';
  ctx.fillText(fmtValue(x0), PAD.l, PAD.t + h + 13);
  ctx.textAlign = 'right';
  ctx.fillText(fmtValue(x1), PAD.l + w, PAD.t + h + 13);
  ctx.fillText(fmtValue(y1), PAD.l - 4, PAD.t + 9);
  ctx.fillText(fmtValue(y0), PAD.l - 4, PAD.t + h);
  ctx.textAlign = 'center';
  if (xTitle) ctx.fillText(xTitle, PAD.l + w / 2, PAD.t + h + 28);
  if (yTitle) {
    ctx.save();
    ctx.translate(12, PAD.t + h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(yTitle, 0, 0);
    ctx.restore();
  }
}

function legend(ctx, w, names) {
  if (names.length < 2) return;
  ctx.textAlign = 'right';
  names.slice(0, 12).forEach((name, i) => {
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillRect(PAD.l + w - 10, PAD.t + 6 + i * 14, 8, 8);
    ctx.fillStyle = '#333';
    ctx.fillText(name, PAD.l + w - 14, PAD.t + 14 + i * 14);
  });
}

// series: [{name, xs, ys}]; mode 'line' joins each series' points in x order, 'points' draws dots. Non-numeric
// x values are placed by their order of first appearance.
export function drawXY(canvas, series, { mode = 'line', xTitle = '', yTitle = '' } = {}) {
  const { ctx, w, h } = setup(canvas);
  const labels = new Map();
  const numeric = series.every((s) => s.xs.every((x) => finite(x) || x === null));
  const xOf = (x) => {
    if (numeric) return x;
    if (!labels.has(x)) labels.set(x, labels.size);
    return labels.get(x);
  };
  const placed = series.map((s) => {
    const pts = s.xs.map((x, i) => [xOf(x), s.ys[i]]).filter(([x, y]) => finite(x) && finite(y));
    if (mode === 'line') pts.sort((a, b) => a[0] - b[0]);
    return { name: s.name, pts };
  });
  const xr = range(placed.flatMap((s) => s.pts.map((p) => p[0])));
  const yr = range(placed.flatMap((s) => s.pts.map((p) => p[1])));
  axes(ctx, w, h, xr, yr, xTitle, yTitle);
  const px = (x) => PAD.l + ((x - xr[0]) / (xr[1] - xr[0])) * w;
  const py = (y) => PAD.t + h - ((y - yr[0]) / (yr[1] - yr[0])) * h;
  placed.forEach((s, i) => {
    ctx.strokeStyle = ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.lineWidth = 1.5;
    if (mode === 'line') {
      ctx.beginPath();
      s.pts.forEach(([x, y], j) => (j ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
      ctx.stroke();
    } else {
      for (const [x, y] of s.pts) { ctx.beginPath(); ctx.arc(px(x), py(y), 2.5, 0, 2 * Math.PI); ctx.fill(); }
    }
  });
  legend(ctx, w, placed.map((s) => s.name));
  return placed.reduce((n, s) => n + s.pts.length, 0);
}

// One horizontal bar per label.
export function drawBars(canvas, labels, values) {
  const { ctx, w, h } = setup(canvas);
  const hi = Math.max(0, ...values.filter(finite));
  const lo = Math.min(0, ...values.filter(finite));
  const span = (hi - lo) || 1;
  const rowH = h / Math.max(1, labels.length);
  const zero = PAD.l + ((0 - lo) / span) * w;
  ctx.textAlign = 'right';
  labels.forEach((label, i) => {
    const v = finite(values[i]) ? values[i] : 0;
    const x = PAD.l + ((Math.min(v, 0) - lo) / span) * w;
    ctx.fillStyle = COLORS[0];
    ctx.fillRect(x, PAD.t + i * rowH + rowH * 0.15, Math.max(1, (Math.abs(v) / span) * w), rowH * 0.7);
    ctx.fillStyle = '#333';
    ctx.fillText(String(label).slice(0, 8), PAD.l - 4, PAD.t + i * rowH + rowH / 2 + 4);
  });
  ctx.strokeStyle = '#c8ccd2';
  ctx.strokeRect(PAD.l, PAD.t, w, h);
  ctx.beginPath(); ctx.moveTo(zero, PAD.t); ctx.lineTo(zero, PAD.t + h); ctx.stroke();
  ctx.fillStyle = '#5f6b7a';
  ctx.textAlign = 'left'; ctx.fillText(fmtValue(lo), PAD.l, PAD.t + h + 13);
  ctx.textAlign = 'right'; ctx.fillText(fmtValue(hi), PAD.l + w, PAD.t + h + 13);
  return labels.length;
}

// The values binned into `bins` equal bins, drawn as columns.
export function drawHistogram(canvas, values, xTitle = '', bins = 30) {
  const { ctx, w, h } = setup(canvas);
  const nums = values.filter(finite);
  const [lo, hi] = range(nums);
  const counts = new Array(bins).fill(0);
  for (const v of nums) counts[Math.min(bins - 1, Math.floor(((v - lo) / (hi - lo)) * bins))] += 1;
  const top = Math.max(1, ...counts);
  axes(ctx, w, h, [lo, hi], [0, top], xTitle, 'count');
  ctx.fillStyle = COLORS[0];
  counts.forEach((n, i) => {
    const bar = (n / top) * h;
    ctx.fillRect(PAD.l + (i / bins) * w, PAD.t + h - bar, Math.max(1, w / bins - 1), bar);
  });
  return nums.length;
}

// A confusion matrix: actual classes down, predicted across, each cell shaded by its count and labelled.
export function drawMatrix(canvas, actual, predicted, counts) {
  const { ctx, w, h } = setup(canvas);
  const rows = [...new Set(actual)];
  const cols = [...new Set(predicted)];
  const cell = new Map(actual.map((a, i) => [`${a}\u0000${predicted[i]}`, counts[i]]));
  const top = Math.max(1e-12, ...counts.filter(finite));
  const cw = w / Math.max(1, cols.length);
  const ch = h / Math.max(1, rows.length);
  ctx.textAlign = 'center';
  rows.forEach((r, i) => cols.forEach((c, j) => {
    const n = cell.get(`${r}\u0000${c}`) || 0;
    const f = Math.sqrt(n / top);
    ctx.fillStyle = `rgb(${Math.round(255 - 208 * f)},${Math.round(255 - 144 * f)},${Math.round(255 - 36 * f)})`;
    ctx.fillRect(PAD.l + j * cw, PAD.t + i * ch, cw, ch);
    ctx.fillStyle = f > 0.6 ? '#fff' : '#333';
    ctx.fillText(fmtValue(n), PAD.l + j * cw + cw / 2, PAD.t + i * ch + ch / 2 + 4);
  }));
  ctx.fillStyle = '#5f6b7a';
  cols.forEach((c, j) => ctx.fillText(String(c).slice(0, 10), PAD.l + j * cw + cw / 2, PAD.t + h + 13));
  ctx.fillText('Predicted', PAD.l + w / 2, PAD.t + h + 28);
  ctx.textAlign = 'right';
  rows.forEach((r, i) => ctx.fillText(String(r).slice(0, 7), PAD.l - 4, PAD.t + i * ch + ch / 2 + 4));
  ctx.strokeStyle = '#c8ccd2';
  ctx.strokeRect(PAD.l, PAD.t, w, h);
  return rows.length * cols.length;
}

function column(columns, rows, name) {
  const i = columns.indexOf(name);
  return i < 0 ? [] : rows.map((r) => r[i]);
}

function grouped(columns, rows, x, y, group) {
  const xs = column(columns, rows, x);
  const ys = column(columns, rows, y);
  if (!group) return [{ name: y, xs, ys }];
  const out = new Map();
  column(columns, rows, group).forEach((g, i) => {
    const key = String(g);
    if (!out.has(key)) out.set(key, { name: key, xs: [], ys: [] });
    out.get(key).xs.push(xs[i]);
    out.get(key).ys.push(ys[i]);
  });
  return [...out.values()];
}

// Draws a stored wandb.plot chart; returns false for a chart kind it does not know (shown as its table).
export function drawChart(canvas, data) {
  const { chart, fields = {}, strings = {}, columns, rows } = data;
  const f = fields;
  if (chart === 'line') return drawXY(canvas, grouped(columns, rows, f.x, f.y, f.stroke), { xTitle: f.x, yTitle: f.y }) >= 0;
  if (chart === 'scatter') return drawXY(canvas, grouped(columns, rows, f.x, f.y, null), { mode: 'points', xTitle: f.x, yTitle: f.y }) >= 0;
  if (chart === 'line_series') {
    return drawXY(canvas, grouped(columns, rows, f.step, f.lineVal, f.lineKey), { xTitle: strings.xname || 'x' }) >= 0;
  }
  if (chart === 'curve') {
    return drawXY(canvas, grouped(columns, rows, f.x, f.y, f.class),
      { xTitle: strings['x-axis-title'] || f.x, yTitle: strings['y-axis-title'] || f.y }) >= 0;
  }
  if (chart === 'bar') return drawBars(canvas, column(columns, rows, f.label), column(columns, rows, f.value)) >= 0;
  if (chart === 'histogram') return drawHistogram(canvas, column(columns, rows, f.value), f.value) >= 0;
  if (chart === 'confusion_matrix') {
    return drawMatrix(canvas, column(columns, rows, f.Actual), column(columns, rows, f.Predicted), column(columns, rows, f.nPredictions)) >= 0;
  }
  return false;
}

const TYPED = { f8: Float64Array, f4: Float32Array, i4: Int32Array, u4: Uint32Array, i2: Int16Array, u2: Uint16Array, i1: Int8Array, u1: Uint8Array };

// A plotly array: a plain list, or plotly 6's typed array ({"dtype": "f8", "bdata": base64}, little-endian).
function plotlyArray(value) {
  if (Array.isArray(value)) return value;
  if (value && typeof value === 'object' && typeof value.bdata === 'string' && TYPED[value.dtype]) {
    const bytes = Uint8Array.from(atob(value.bdata), (c) => c.charCodeAt(0));
    return Array.from(new TYPED[value.dtype](bytes.buffer));
  }
  return null;
}

// A plotly figure's traces that have a y array, drawn as lines (mode 'lines') or points; returns how many
// traces were drawn.
export function drawPlotlyTraces(canvas, figure) {
  const traces = (figure.data || []).map((t) => ({ ...t, x: plotlyArray(t.x), y: plotlyArray(t.y) })).filter((t) => t.y);
  const series = traces.map((t, i) => ({ name: t.name || `trace ${i}`, xs: t.x || t.y.map((_, j) => j), ys: t.y }));
  const points = traces.length && traces.every((t) => (t.mode || '').includes('markers') && !(t.mode || '').includes('lines'));
  const layout = figure.layout || {};
  const title = (axis) => (axis && axis.title && (axis.title.text || axis.title)) || '';
  drawXY(canvas, series, { mode: points ? 'points' : 'line', xTitle: String(title(layout.xaxis)), yTitle: String(title(layout.yaxis)) });
  return traces.length;
}

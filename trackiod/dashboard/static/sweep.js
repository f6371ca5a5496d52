// The sweep view: every run of the project as a line through its config values to a chosen summary metric
// (parallel coordinates), one config key against that metric (scatter), and the best runs (table). Dragging on
// an axis (or a rectangle on the scatter) brushes a range; runs inside every brush are the chart selection.
// All of it is drawn on canvases from typed-array columns (/api/sweep), so 10,000 runs draw exactly, none sampled.
import { getBuffer } from './api.js';
import { colorFor, el, fmtNumber, fmtValue, themeColor } from './util.js';

// Worst to best: the colour a run's line takes from its metric (buckets, so a frame is ~32 strokes, not 10,000).
const RAMP = ['#3b6fb6', '#2f9fc0', '#3cbfa4', '#8fcf6a', '#e3c441', '#f0902e', '#d7301f'];
const BUCKETS = 32;
const MAX_AXES = 16;
const TOP = 20;
export const MAX_SELECTED = 200;

function decode(buf) {
  const headLen = new DataView(buf).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, headLen)));
  let offset = 4 + headLen;
  const take = (c) => { c.values = new Float64Array(buf, offset, header.n); offset += header.n * 8; return c; };
  header.config.forEach(take);
  header.summary.forEach(take);
  return header;
}

function rampColor(t) {
  const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  const a = RAMP[i].match(/\w\w/g).map((h) => parseInt(h, 16));
  const b = RAMP[i + 1].match(/\w\w/g).map((h) => parseInt(h, 16));
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(',')})`;
}
const BUCKET_COLORS = Array.from({ length: BUCKETS }, (_, i) => rampColor(i / (BUCKETS - 1)));

// An axis over one column: its value range and scale (log when positive and spanning more than two decades).
function makeAxis(column) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of column.values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo === Infinity) { lo = 0; hi = 1; }
  const cats = column.categories || null;
  if (cats) { lo = -0.5; hi = cats.length - 0.5; }
  const log = !cats && lo > 0 && hi / lo > 100;
  const f = log ? Math.log10 : (v) => v;
  const a = f(lo);
  const span = f(hi) - a || 1;
  return {
    key: column.key, column, cats, lo, hi, log,
    // 0 at the bottom, 1 at the top; a constant column sits in the middle.
    unit: hi === lo ? () => 0.5 : (v) => (f(v) - a) / span,
    value: (u) => { const g = a + u * span; return log ? 10 ** g : g; },
  };
}

// ``brush`` in the URL: ranges joined by ';', each ``lo..hi@key`` (the key last, so it may hold any character
// but ';'). Categorical axes brush category indexes.
export function parseBrushes(text) {
  const out = new Map();
  for (const part of (text || '').split(';')) {
    const at = part.indexOf('@');
    if (at < 0) continue;
    const [lo, hi] = part.slice(0, at).split('..').map(Number);
    if (Number.isFinite(lo) && Number.isFinite(hi)) out.set(part.slice(at + 1), [Math.min(lo, hi), Math.max(lo, hi)]);
  }
  return out;
}

function brushText(brushes) {
  return [...brushes].map(([key, [lo, hi]]) => `${fmtNumber(lo, 8)}..${fmtNumber(hi, 8)}@${key}`).join(';') || undefined;
}

function defaultMetric(summary) {
  const usable = summary.filter((c) => c.distinct > 1);
  return (usable.find((c) => /loss/i.test(c.key)) || usable[0] || summary[0] || {}).key;
}

// ctx: project, state, setState(patch), select(runIds) (null: back to the default selection), openRun(id),
// isSelected(id), toggle(id).
export async function sweepView(main, ctx) {
  const data = decode(await getBuffer('/api/sweep', { project: ctx.project }));
  if (!data.n) { main.replaceChildren(el('p', { class: 'empty' }, 'This project has no runs yet.')); return; }
  const view = new SweepView(main, data, ctx);
  view.build();
  return view;
}

class SweepView {
  constructor(main, data, ctx) {
    this.main = main;
    this.data = data;
    this.ctx = ctx;
    this.byKey = new Map([...data.config, ...data.summary].map((c) => [c.key, c]));
  }

  get metricKey() {
    const k = this.ctx.state.sweep_metric;
    return this.data.summary.some((c) => c.key === k) ? k : defaultMetric(this.data.summary);
  }

  get minimize() {
    const goal = this.ctx.state.sweep_goal;
    return goal ? goal !== 'max' : /loss|err|perplex|time|mse|mae/i.test(this.metricKey || '');
  }

  build() {
    const { data, ctx } = this;
    const varying = data.config.filter((c) => c.distinct > 1);
    const constant = data.config.length - varying.length;
    this.axesKeys = varying.slice(0, MAX_AXES).map((c) => c.key);
    const metricSel = el('select', { id: 'sweep-metric', onchange: (e) => { ctx.setState({ sweep_metric: e.target.value }); this.update(true); } },
      data.summary.map((c) => el('option', { value: c.key, selected: c.key === this.metricKey }, `metric: ${c.key}`)));
    const goalSel = el('select', { id: 'sweep-goal', onchange: (e) => { ctx.setState({ sweep_goal: e.target.value }); this.update(true); } },
      el('option', { value: 'min', selected: this.minimize }, 'lower is better'),
      el('option', { value: 'max', selected: !this.minimize }, 'higher is better'));
    const xKey = this.scatterKey();
    const xSel = el('select', { id: 'sweep-x', onchange: (e) => { ctx.setState({ sweep_x: e.target.value }); this.update(false); } },
      data.config.map((c) => el('option', { value: c.key, selected: c.key === xKey }, `scatter x: ${c.key}`)));
    const clear = el('button', { id: 'sweep-clear', type: 'button', onclick: () => this.setBrushes(new Map()) }, 'clear brushes');
    this.count = el('span', { id: 'sweep-count', class: 'hint' });
    this.parallel = el('canvas', { id: 'sweep-parallel', class: 'sweep-canvas' });
    this.scatter = el('canvas', { id: 'sweep-scatter', class: 'sweep-canvas' });
    this.table = el('div', { id: 'sweep-best' });
    const notes = [];
    if (varying.length > MAX_AXES) notes.push(`${varying.length - MAX_AXES} more varying config keys are left off the axes (choose them on the scatter).`);
    if (constant) notes.push(`${constant} config key${constant === 1 ? ' is' : 's are'} the same in every run and not drawn.`);
    if (!data.summary.length) notes.push('No run has a numeric summary yet: lines are coloured grey.');
    this.main.replaceChildren(
      el('div', { class: 'controls' }, metricSel, goalSel, xSel, clear, this.count),
      el('p', { class: 'hint' }, 'Drag along an axis to keep a range of it (again to move it, a click to drop it); the runs inside every range become the chart selection. ', ...notes.map((n) => `${n} `)),
      el('div', { class: 'sweep-wrap' }, this.parallel),
      el('div', { class: 'sweep-row' }, el('div', { class: 'sweep-wrap sweep-scatter-wrap' }, this.scatter), this.table),
    );
    this.listen(this.parallel, (x0, y0, x1, y1) => this.brushParallel(x0, y0, x1, y1));
    this.listen(this.scatter, (x0, y0, x1, y1) => this.brushScatter(x0, y0, x1, y1));
    this.update(false);
  }

  scatterKey() {
    const k = this.ctx.state.sweep_x;
    if (this.data.config.some((c) => c.key === k)) return k;
    const varying = this.data.config.filter((c) => c.distinct > 1);
    return ((varying.find((c) => !c.categories) || varying[0] || this.data.config[0]) || {}).key;
  }

  brushes() { return parseBrushes(this.ctx.state.brush); }

  setBrushes(brushes) {
    this.ctx.setState({ brush: brushText(brushes) });
    this.update(true);
  }

  // Which runs pass every brush (1) or not (0), and each run's colour bucket from the metric (-1: no metric).
  compute() {
    const { n } = this.data;
    const keep = new Uint8Array(n).fill(1);
    for (const [key, [lo, hi]] of this.brushes()) {
      const column = this.byKey.get(key);
      if (!column) continue;
      const v = column.values;
      for (let i = 0; i < n; i++) if (!(v[i] >= lo && v[i] <= hi)) keep[i] = 0;
    }
    const metric = this.byKey.get(this.metricKey);
    const bucket = new Int16Array(n).fill(-1);
    this.metricAxis = metric ? makeAxis(metric) : null;
    if (metric) {
      const m = metric.values;
      for (let i = 0; i < n; i++) {
        if (Number.isNaN(m[i])) continue;
        const u = this.metricAxis.unit(m[i]);
        const better = this.minimize ? 1 - u : u;
        bucket[i] = Math.min(BUCKETS - 1, Math.max(0, Math.round(better * (BUCKETS - 1))));
      }
    }
    this.keep = keep;
    this.bucket = bucket;
    let kept = 0;
    for (let i = 0; i < n; i++) kept += keep[i];
    this.kept = kept;
  }

  // The kept runs with a metric, best first.
  ranked() {
    const metric = this.byKey.get(this.metricKey);
    const idx = [];
    for (let i = 0; i < this.data.n; i++) if (this.keep[i] && metric && !Number.isNaN(metric.values[i])) idx.push(i);
    if (!metric) return idx;
    const m = metric.values;
    idx.sort(this.minimize ? (a, b) => m[a] - m[b] : (a, b) => m[b] - m[a]);
    return idx;
  }

  update(selectionChanged) {
    const started = performance.now();
    this.compute();
    const ranked = this.ranked();
    const brushed = this.brushes().size > 0;
    if (selectionChanged) {
      this.ctx.select(brushed ? ranked.slice(0, MAX_SELECTED).map((i) => this.data.runs[i]) : null);
    }
    this.count.textContent = brushed
      ? `${this.kept.toLocaleString('en-US')} of ${this.data.n.toLocaleString('en-US')} runs in the brushes; the best ${Math.min(MAX_SELECTED, ranked.length)} are selected`
      : `${this.data.n.toLocaleString('en-US')} runs`;
    this.drawParallel();
    this.drawScatter();
    this.drawTable(ranked);
    this.main.dataset.drawMs = String(Math.round(performance.now() - started));
  }

  sizeCanvas(canvas, height) {
    const width = Math.max(300, canvas.parentElement.clientWidth - 2);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = '11px system-ui, sans-serif';
    return { g, width, height };
  }

  drawParallel() {
    const { g, width, height } = this.sizeCanvas(this.parallel, 340);
    const axes = this.axesKeys.map((k) => makeAxis(this.byKey.get(k)));
    if (this.metricAxis) axes.push(this.metricAxis);
    const left = 60;
    const right = 70;
    const top = 34;
    const bottom = 24;
    const step = axes.length > 1 ? (width - left - right) / (axes.length - 1) : 0;
    const xs = axes.map((_, j) => left + j * step);
    const ys = (axis, v) => top + (1 - axis.unit(v)) * (height - top - bottom);
    this.pAxes = { axes, xs, top, bottom, height };
    const { n } = this.data;
    const cols = axes.map((a) => a.column.values);
    const path = (i) => {
      let pen = false;
      for (let j = 0; j < axes.length; j++) {
        const v = cols[j][i];
        if (Number.isNaN(v)) { pen = false; continue; }
        const y = ys(axes[j], v);
        if (pen) g.lineTo(xs[j], y); else g.moveTo(xs[j], y);
        pen = true;
      }
    };
    // Runs outside the brushes first, faint; then the kept ones, one stroke per colour bucket, best on top.
    g.lineWidth = 1;
    g.globalAlpha = 0.25;
    g.strokeStyle = themeColor('--line');
    g.beginPath();
    for (let i = 0; i < n; i++) if (!this.keep[i]) path(i);
    g.stroke();
    g.globalAlpha = n > 2000 ? 0.35 : 0.7;
    const groups = Array.from({ length: BUCKETS + 1 }, () => []);
    for (let i = 0; i < n; i++) if (this.keep[i]) groups[this.bucket[i] + 1].push(i);
    let drawn = 0;
    groups.forEach((members, b) => {
      if (!members.length) return;
      g.strokeStyle = b === 0 ? themeColor('--muted') : BUCKET_COLORS[b - 1];
      g.beginPath();
      for (const i of members) path(i);
      g.stroke();
      drawn += members.length;
    });
    g.globalAlpha = 1;
    this.parallel.dataset.lines = String(drawn);
    this.parallel.dataset.axes = axes.map((a) => a.key).join('|');
    const brushes = this.brushes();
    axes.forEach((axis, j) => this.drawAxis(g, axis, xs[j], top, height - bottom, brushes.get(axis.key), j === axes.length - 1 && axis === this.metricAxis));
  }

  drawAxis(g, axis, x, y0, y1, brush, isMetric) {
    g.strokeStyle = themeColor('--axis');
    g.fillStyle = themeColor('--fg');
    g.beginPath();
    g.moveTo(x, y0);
    g.lineTo(x, y1);
    g.stroke();
    const y = (v) => y0 + (1 - axis.unit(v)) * (y1 - y0);
    if (brush) {
      g.fillStyle = themeColor('--accent');
      g.globalAlpha = 0.25;
      const a = y(Math.min(Math.max(brush[1], axis.lo), axis.hi));
      const b = y(Math.max(Math.min(brush[0], axis.hi), axis.lo));
      g.fillRect(x - 7, a, 14, b - a);
      g.globalAlpha = 1;
      g.strokeStyle = themeColor('--accent');
      g.strokeRect(x - 7, a, 14, b - a);
      g.fillStyle = themeColor('--fg');
    }
    g.textAlign = 'center';
    const label = axis.key.length > 18 ? `…${axis.key.slice(-17)}` : axis.key;
    g.font = isMetric ? '600 11px system-ui, sans-serif' : '11px system-ui, sans-serif';
    g.fillText(label, x, y0 - 18);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = themeColor('--muted');
    if (axis.cats) {
      const every = Math.ceil(axis.cats.length / 8);
      // Beside the axis, on a backing of the page's colour, so the lines through the category do not hide it.
      g.textAlign = 'left';
      axis.cats.forEach((c, k) => {
        if (k % every) return;
        const text = c.length > 12 ? `${c.slice(0, 11)}…` : c;
        g.fillStyle = themeColor('--bg');
        g.globalAlpha = 0.8;
        g.fillRect(x + 4, y(k) - 7, g.measureText(text).width + 4, 14);
        g.globalAlpha = 1;
        g.fillStyle = themeColor('--fg');
        g.fillText(text, x + 6, y(k) + 4);
      });
    } else {
      g.fillText(fmtNumber(axis.hi, 4), x, y0 - 5);
      g.fillText(fmtNumber(axis.lo, 4), x, y1 + 14);
    }
  }

  drawScatter() {
    const { g, width, height } = this.sizeCanvas(this.scatter, 300);
    const key = this.scatterKey();
    const column = key && this.byKey.get(key);
    const metric = this.byKey.get(this.metricKey);
    if (!column || !metric) { this.scatter.dataset.points = '0'; return; }
    const xa = makeAxis(column);
    const ya = this.metricAxis;
    const left = 60;
    const right = 16;
    const top = 12;
    const bottom = 34;
    const px = (v) => left + xa.unit(v) * (width - left - right);
    const py = (v) => top + (1 - ya.unit(v)) * (height - top - bottom);
    this.sAxes = { xa, ya, left, right, top, bottom, width, height };
    // Categories spread a little sideways so their runs do not hide each other (deterministic, by run index).
    const jitter = xa.cats ? (i) => ((i * 2654435761) % 1000 / 1000 - 0.5) * 0.5 : () => 0;
    const xv = column.values;
    const yv = metric.values;
    const { n } = this.data;
    g.fillStyle = themeColor('--line');
    for (let i = 0; i < n; i++) {
      if (this.keep[i] || Number.isNaN(xv[i]) || Number.isNaN(yv[i])) continue;
      g.fillRect(px(xv[i] + jitter(i)) - 1.5, py(yv[i]) - 1.5, 3, 3);
    }
    let drawn = 0;
    const groups = Array.from({ length: BUCKETS }, () => []);
    for (let i = 0; i < n; i++) if (this.keep[i] && this.bucket[i] >= 0 && !Number.isNaN(xv[i])) groups[this.bucket[i]].push(i);
    groups.forEach((members, b) => {
      g.fillStyle = BUCKET_COLORS[b];
      for (const i of members) g.fillRect(px(xv[i] + jitter(i)) - 2, py(yv[i]) - 2, 4, 4);
      drawn += members.length;
    });
    this.scatter.dataset.points = String(drawn);
    g.strokeStyle = themeColor('--axis');
    g.strokeRect(left, top, width - left - right, height - top - bottom);
    g.fillStyle = themeColor('--muted');
    g.textAlign = 'left';
    g.fillText(xa.cats ? '' : fmtNumber(xa.lo, 4), left, height - bottom + 14);
    g.textAlign = 'right';
    g.fillText(xa.cats ? '' : fmtNumber(xa.hi, 4), width - right, height - bottom + 14);
    if (xa.cats) { g.textAlign = 'center'; xa.cats.forEach((c, k) => g.fillText(c.length > 14 ? `${c.slice(0, 13)}…` : c, px(k), height - bottom + 14)); }
    g.textAlign = 'center';
    g.fillStyle = themeColor('--fg');
    g.fillText(`${key}${xa.log ? ' (log)' : ''}`, left + (width - left - right) / 2, height - 6);
    g.save();
    g.translate(14, top + (height - top - bottom) / 2);
    g.rotate(-Math.PI / 2);
    g.fillText(`${this.metricKey}${ya.log ? ' (log)' : ''}`, 0, 0);
    g.restore();
    g.textAlign = 'right';
    g.fillStyle = themeColor('--muted');
    g.fillText(fmtNumber(ya.hi, 4), left - 4, top + 10);
    g.fillText(fmtNumber(ya.lo, 4), left - 4, height - bottom);
    const brushes = this.brushes();
    const bx = brushes.get(key);
    const by = brushes.get(this.metricKey);
    if (bx || by) {
      const x0 = bx ? px(Math.max(bx[0], xa.lo)) : left;
      const x1 = bx ? px(Math.min(bx[1], xa.hi)) : width - right;
      const y0 = by ? py(Math.min(by[1], ya.hi)) : top;
      const y1 = by ? py(Math.max(by[0], ya.lo)) : height - bottom;
      g.strokeStyle = themeColor('--accent');
      g.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
  }

  drawTable(ranked) {
    const { data, ctx } = this;
    const metric = this.byKey.get(this.metricKey);
    const shown = ranked.slice(0, TOP);
    const keys = this.axesKeys.slice(0, 6);
    const cell = (column, i) => {
      const v = column.values[i];
      if (Number.isNaN(v)) return '';
      return column.categories ? column.categories[v] : fmtValue(v);
    };
    const head = el('tr', {}, el('th', {}, '#'), el('th', {}, ''), el('th', {}, 'run'),
      el('th', { title: this.metricKey }, `${this.metricKey} ${this.minimize ? '↑' : '↓'}`), ...keys.map((k) => el('th', { title: k }, k)));
    const rows = shown.map((i, rank) => {
      const id = data.runs[i];
      const box = el('input', { type: 'checkbox', checked: ctx.isSelected(id), 'aria-label': `select ${data.names[i]}`, onchange: () => ctx.toggle(id) });
      return el('tr', { 'data-run': id },
        el('td', { class: 'num' }, String(rank + 1)),
        el('td', {}, box),
        el('td', {}, el('span', { class: 'swatch', style: `background:${colorFor(id)}` }),
          el('a', { href: '#', onclick: (e) => { e.preventDefault(); ctx.openRun(id); } }, data.names[i])),
        el('td', { class: 'num', title: String(metric.values[i]) }, cell(metric, i)),
        ...keys.map((k) => el('td', { class: 'num', title: cell(this.byKey.get(k), i) }, cell(this.byKey.get(k), i))));
    });
    const caption = `Best ${shown.length} of ${ranked.length.toLocaleString('en-US')} runs${this.brushes().size ? ' in the brushes' : ''} by ${this.metricKey || 'metric'} (${this.minimize ? 'lowest' : 'highest'} first)`;
    this.table.replaceChildren(el('h3', {}, caption), shown.length
      ? el('table', { class: 'kv sweep-table' }, el('thead', {}, head), el('tbody', {}, rows))
      : el('p', { class: 'empty' }, 'No run in the brushes has this metric.'));
  }

  // Drags on a canvas: onDone(x0, y0, x1, y1) in CSS pixels; a click has x0 == x1 and y0 == y1.
  listen(canvas, onDone) {
    let start = null;
    const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    canvas.addEventListener('pointerdown', (e) => { start = at(e); canvas.setPointerCapture(e.pointerId); e.preventDefault(); });
    canvas.addEventListener('pointerup', (e) => {
      if (!start) return;
      const [x0, y0] = start;
      start = null;
      onDone(x0, y0, ...at(e));
    });
  }

  brushParallel(x0, y0, x1, y1) {
    const { axes, xs, top, bottom, height } = this.pAxes;
    let j = -1;
    let best = 20;
    xs.forEach((x, k) => { if (Math.abs(x - x0) < best) { best = Math.abs(x - x0); j = k; } });
    if (j < 0) return;
    const axis = axes[j];
    const brushes = this.brushes();
    if (Math.abs(y1 - y0) < 3) { brushes.delete(axis.key); this.setBrushes(brushes); return; }
    const u = (y) => 1 - (Math.min(Math.max(y, top), height - bottom) - top) / (height - top - bottom);
    const a = axis.value(u(Math.max(y0, y1)));
    const b = axis.value(u(Math.min(y0, y1)));
    brushes.set(axis.key, [a, b]);
    this.setBrushes(brushes);
  }

  brushScatter(x0, y0, x1, y1) {
    if (!this.sAxes) return;
    const { xa, ya, left, right, top, bottom, width, height } = this.sAxes;
    const brushes = this.brushes();
    if (Math.abs(x1 - x0) < 3 && Math.abs(y1 - y0) < 3) {
      brushes.delete(xa.key);
      brushes.delete(ya.key);
      this.setBrushes(brushes);
      return;
    }
    const ux = (x) => (Math.min(Math.max(x, left), width - right) - left) / (width - left - right);
    const uy = (y) => 1 - (Math.min(Math.max(y, top), height - bottom) - top) / (height - top - bottom);
    if (Math.abs(x1 - x0) >= 3) brushes.set(xa.key, [xa.value(ux(Math.min(x0, x1))), xa.value(ux(Math.max(x0, x1)))]);
    if (Math.abs(y1 - y0) >= 3) brushes.set(ya.key, [ya.value(uy(Math.max(y0, y1))), ya.value(uy(Math.min(y0, y1)))]);
    this.setBrushes(brushes);
  }
}

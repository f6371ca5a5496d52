// Charts of metrics for the selected runs: one uPlot per metric, grouped by key prefix. Each chart asks the
// server for its metric across all selected runs at once, already reduced to the chart's pixel width and
// aligned on one x array; live updates ask only for points after each run's last step and merge them in.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { getChart } from './api.js';
import { colorFor, el, ema, fmtValue, smoothingWeight } from './util.js';

const HEIGHT = 220;
const CONCURRENT_REQUESTS = 4;

// A series' id in a chart: the run's id, or for a series logged with a context the run's id and the context.
function seriesId(s) {
  return s.context ? `${s.run} ${JSON.stringify(s.context)}` : s.run;
}

// {subset: "val"} -> "{subset: val}", the label a context series carries after its run's name.
export function contextLabel(context) {
  return `{${Object.entries(context).map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ')}}`;
}

function toNulls(values) {
  const out = new Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = Number.isNaN(values[i]) ? null : values[i];
  return out;
}

// Merge new points (x ascending) into a chart's aligned table; equal x values share a slot.
function mergeTable(oldX, cols, newX, newCols) {
  const merged = [];
  const oldTo = new Int32Array(oldX.length);
  const newTo = new Int32Array(newX.length);
  let i = 0;
  let j = 0;
  while (i < oldX.length || j < newX.length) {
    if (j >= newX.length || (i < oldX.length && oldX[i] < newX[j])) { oldTo[i++] = merged.length; merged.push(oldX[i - 1]); }
    else if (i >= oldX.length || newX[j] < oldX[i]) { newTo[j++] = merged.length; merged.push(newX[j - 1]); }
    else { oldTo[i++] = merged.length; newTo[j++] = merged.length; merged.push(newX[j - 1]); }
  }
  const out = new Map();
  for (const [run, col] of cols) {
    const next = new Array(merged.length).fill(null);
    for (let k = 0; k < col.length; k++) if (col[k] !== null) next[oldTo[k]] = col[k];
    out.set(run, next);
  }
  for (const [run, col] of newCols) {
    const next = out.get(run) || new Array(merged.length).fill(null);
    for (let k = 0; k < col.length; k++) if (col[k] !== null) next[newTo[k]] = col[k];
    out.set(run, next);
  }
  return { x: merged, cols: out };
}

class Chart {
  constructor(panel, key) {
    this.panel = panel;
    this.key = key;
    this.x = [];
    this.cols = new Map();
    this.contexts = new Map();  // series id -> {run, context} for the series logged with a context
    this.lastStep = {};
    this.plot = null;
    this.reduced = false;
    this.xlabel = el('span', { class: 'xlabel' });
    this.title = el('h4', {}, key, this.xlabel);
    this.note = el('span', { class: 'note' });
    this.tooltip = el('div', { class: 'tooltip' });
    this.body = el('div');
    this.node = el('div', { class: 'chart', 'data-key': key }, this.title, this.note, this.body, this.tooltip);
  }

  width() {
    return Math.max(200, Math.floor(this.node.clientWidth - 14));
  }

  get xaxis() {
    return this.panel.ctx.xaxisFor(this.key);
  }

  params() {
    const c = this.panel.ctx;
    return { project: c.project, key: this.key, xaxis: this.xaxis, width: this.width(), xmin: c.xmin, xmax: c.xmax };
  }

  async load() {
    const c = this.panel.ctx;
    const runs = c.runs.map((r) => r.id);
    if (!runs.length) return;
    const asked = performance.now();
    const { header, x, ys } = await getChart({ ...this.params(), runs });
    this.node.dataset.fetchMs = String(Math.round(performance.now() - asked));
    const converted = performance.now();
    this.x = Array.from(x);
    this.cols = new Map();
    this.contexts = new Map();
    this.lastStep = {};
    header.series.forEach((s, i) => {
      this.cols.set(seriesId(s), toNulls(ys[i]));
      if (s.context) this.contexts.set(seriesId(s), { run: s.run, context: s.context });
      this.noteStep(s);
    });
    this.reduced = header.reduced;
    this.node.dataset.convertMs = String(Math.round(performance.now() - converted));
    this.draw();
  }

  // Fetch only the points logged after each live run's last step; re-reduce when too many piled up.
  async update(liveRuns) {
    const c = this.panel.ctx;
    const ids = liveRuns.filter((id) => c.runs.some((r) => r.id === id));
    if (!ids.length) return;
    if (c.xmin || c.xmax || !['step', 'time', 'relative'].includes(this.xaxis)) return this.load();
    const after = ids.filter((id) => this.lastStep[id] !== undefined && this.lastStep[id] !== null)
      .map((id) => `${id}:${this.lastStep[id]}`);
    const { header, x, ys } = await getChart({ ...this.params(), runs: ids, after });
    if (header.reduced) return this.load();
    const fresh = new Map();
    header.series.forEach((s, i) => {
      if (s.points > 0) fresh.set(seriesId(s), toNulls(ys[i]));
      if (s.context && !this.contexts.has(seriesId(s))) this.contexts.set(seriesId(s), { run: s.run, context: s.context });
      this.noteStep(s);
    });
    if (!fresh.size) return;
    const merged = mergeTable(this.x, this.cols, Array.from(x), fresh);
    this.x = merged.x;
    this.cols = merged.cols;
    if (this.x.length > 8 * this.width()) return this.load();
    this.draw(true);
  }

  // A run's last step is the highest of its series' (plain and context): the next live request starts after it.
  noteStep(s) {
    if (s.last_step === null || s.last_step === undefined) return;
    const known = this.lastStep[s.run];
    if (known === null || known === undefined || s.last_step > known) this.lastStep[s.run] = s.last_step;
  }

  seriesData() {
    const c = this.panel.ctx;
    const weight = smoothingWeight(c.smoothing);
    const series = [{ label: this.xaxis }];
    const data = [this.x];
    const bands = [];
    const showRaw = weight > 0 && c.runs.length <= 20;
    const prepare = (col) => (c.logy ? col.map((v) => (v !== null && v > 0 ? v : null)) : col);
    const addLine = (label, col, color, extra = {}) => {
      if (showRaw) {
        series.push({ label: `${label} (raw)`, stroke: `${color}44`, width: 1, spanGaps: true, points: { show: false }, raw: true });
        data.push(col);
      }
      series.push({ label, stroke: color, width: 1, spanGaps: true, points: { show: false }, color, ...extra });
      data.push(weight > 0 ? ema(col, weight) : col);
    };
    for (const [label, runs] of this.panel.lines()) {
      const cols = runs.map((r) => this.cols.get(r.id)).filter(Boolean).map(prepare);
      if (!cols.length) continue;
      const color = colorFor(runs[0].id);
      if (cols.length === 1) { addLine(label, cols[0], color, { run: runs[0].id }); continue; }
      // A group: the mean of its runs, over a band from their min to their max at each x.
      const n = this.x.length;
      const mean = new Array(n).fill(null);
      const lo = new Array(n).fill(null);
      const hi = new Array(n).fill(null);
      for (let i = 0; i < n; i++) {
        let sum = 0;
        let count = 0;
        for (const col of cols) {
          const v = col[i];
          if (v === null || v === undefined) continue;
          sum += v;
          count += 1;
          if (lo[i] === null || v < lo[i]) lo[i] = v;
          if (hi[i] === null || v > hi[i]) hi[i] = v;
        }
        if (count) mean[i] = sum / count;
      }
      const band = { stroke: `${color}66`, width: 0.5, spanGaps: true, points: { show: false }, band: true };
      series.push({ ...band, label: `${label} max` });
      data.push(hi);
      series.push({ ...band, label: `${label} min` });
      data.push(lo);
      bands.push({ series: [series.length - 2, series.length - 1], fill: `${color}26` });
      addLine(`${label} mean (${cols.length} runs)`, mean, color);
    }
    // Series logged with a context (log(..., context={...})): a dashed line of their run's colour each.
    const shown = new Map(c.runs.map((r) => [r.id, r]));
    for (const [id, { run, context }] of this.contexts) {
      const col = this.cols.get(id);
      if (!col || !shown.has(run)) continue;
      addLine(`${shown.get(run).name} ${contextLabel(context)}`, prepare(col), colorFor(run), { run, dash: [6, 4], context: true });
    }
    this.node.dataset.contexts = String(this.contexts.size);
    return { series, data, bands };
  }

  draw(live = false) {
    const started = performance.now();
    this.drawInner(live);
    this.node.dataset.drawMs = String(Math.round(performance.now() - started));
  }

  drawInner(live) {
    const c = this.panel.ctx;
    const { series, data, bands } = this.seriesData();
    const points = data.slice(1).reduce((n, col) => n + col.length, 0);
    this.node.dataset.series = String(series.length - 1);
    this.node.dataset.lines = String(series.filter((s) => s.color).length);
    this.node.dataset.bands = String(bands.length);
    this.node.dataset.xaxis = this.xaxis;
    this.xlabel.textContent = this.xaxis === 'step' ? '' : ` · x: ${this.xaxis === 'time' ? 'wall time' : this.xaxis === 'relative' ? 'seconds since start' : this.xaxis}`;
    this.node.dataset.points = String(points);
    this.note.textContent = this.reduced ? 'min/max per pixel' : '';
    if (live && this.plot && this.plot.series.length === series.length) {
      this.plot.setData(data);
      return;
    }
    if (this.plot) this.plot.destroy();
    const isTime = this.xaxis === 'time';
    const opts = {
      width: this.width(),
      height: HEIGHT,
      legend: { show: false },
      scales: { x: { time: isTime }, y: { distr: c.logy ? 3 : 1 } },
      axes: [{ label: isTime ? '' : (this.xaxis === 'relative' ? 'seconds' : this.xaxis), size: 40 }, { size: 60 }],
      series,
      bands,
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const lo = u.posToVal(u.select.left, 'x');
          const hi = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          this.panel.zoom(lo, hi);
        }],
        setCursor: [(u) => this.hover(u)],
      },
    };
    this.plot = new uPlot(opts, data, this.body);
    this.plot.over.addEventListener('dblclick', () => this.panel.zoom(null, null));
    this.plot.over.addEventListener('mouseleave', () => { this.tooltip.style.display = 'none'; });
  }

  hover(u) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left < 0) { this.tooltip.style.display = 'none'; return; }
    const rows = [];
    for (let s = 1; s < u.series.length; s++) {
      if (u.series[s].raw || u.series[s].band) continue;
      const v = u.data[s][idx];
      if (v !== null && v !== undefined) rows.push([u.series[s].label, v, u.series[s].color]);
    }
    rows.sort((a, b) => b[1] - a[1]);
    const xv = u.data[0][idx];
    let xText = this.xaxis === 'time' ? new Date(xv * 1000).toLocaleString() : fmtValue(xv);
    if (this.reduced && this.xaxis === 'step') xText = `≈ ${Math.round(xv)}`;  // a pixel column, not one step
    this.tooltip.replaceChildren(
      el('div', {}, el('b', {}, `${this.xaxis} ${xText}`)),
      ...rows.slice(0, 10).map(([label, v, color]) => el('div', { class: 'tip-row' },
        el('span', { class: 'swatch', style: `background:${color}` }),
        `${label}: ${fmtValue(v)}`)),
      ...(rows.length > 10 ? [el('div', {}, `… ${rows.length - 10} more`)] : []),
    );
    this.tooltip.style.display = rows.length ? 'block' : 'none';
    const left = u.cursor.left + 60;
    this.tooltip.style.left = `${Math.min(left, this.node.clientWidth - 200)}px`;
    this.tooltip.style.top = `${u.cursor.top + 30}px`;
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

// All charts of one page: sections by key prefix ("train/loss" goes under "train").
export class ChartPanel {
  constructor(container, ctx, onZoom) {
    this.container = container;
    this.ctx = ctx;
    this.onZoom = onZoom;
    this.charts = [];
  }

  build(keys) {
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const sections = new Map();
    for (const key of keys) {
      const cut = key.lastIndexOf('/');
      const group = cut > 0 ? key.slice(0, cut) : 'charts';
      if (!sections.has(group)) sections.set(group, []);
      sections.get(group).push(key);
    }
    const nodes = [];
    for (const [group, groupKeys] of sections) {
      const grid = el('div', { class: 'grid', style: `--per-row:${this.ctx.perRow}` });
      const header = el('h3', { onclick: () => { grid.hidden = !grid.hidden; } }, `${group} (${groupKeys.length})`);
      for (const key of groupKeys) {
        const chart = new Chart(this, key);
        this.charts.push(chart);
        grid.append(chart.node);
      }
      nodes.push(el('section', { class: 'section', 'data-group': group }, header, grid));
    }
    this.container.replaceChildren(...nodes);
  }

  async loadAll() {
    document.body.dataset.ready = '0';
    const started = performance.now();
    const queue = [...this.charts];
    const errors = [];
    const worker = async () => {
      while (queue.length) {
        const chart = queue.shift();
        try { await chart.load(); } catch (e) { errors.push(e); chart.note.textContent = String(e.message || e); }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENT_REQUESTS }, worker));
    window.trackiodReadyMs = performance.now() - started;
    document.body.dataset.ready = '1';
    return errors;
  }

  async updateLive(liveRuns) {
    for (const chart of this.charts) {
      try { await chart.update(liveRuns); } catch (e) { chart.note.textContent = String(e.message || e); }
    }
    document.body.dataset.liveTick = String(Number(document.body.dataset.liveTick || 0) + 1);
  }

  // What to draw: one line per run, or with aggregate=group one line (mean, min-max band) per run group.
  lines() {
    const out = new Map();
    for (const run of this.ctx.runs) {
      const grouped = this.ctx.aggregate === 'group' && run.group;
      const label = grouped ? `group ${run.group}` : run.name;
      const key = grouped ? `g:${run.group}` : `r:${run.id}`;
      if (!out.has(key)) out.set(key, [label, []]);
      out.get(key)[1].push(run);
    }
    return [...out.values()];
  }

  redraw() {
    for (const chart of this.charts) if (chart.x.length) chart.draw();
  }

  zoom(lo, hi) {
    this.onZoom(lo, hi);
  }

  destroy() {
    for (const c of this.charts) c.destroy();
    this.charts = [];
  }
}

// Charts of metrics for the selected runs: one uPlot per metric, grouped by key prefix. Each chart asks the
// server for its metric across all selected runs at once, already reduced to the chart's pixel width and
// aligned on one x array; live updates ask only for points after each run's last step and merge them in.
// Under each chart a legend (click an entry to hide that run or group in every chart); over it export (CSV of
// the plotted data, PNG), fullscreen, and a handle to drag the chart to another place in its section.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { getChart } from './api.js';
import { download, el, ema, fmtTicks, fmtValue, INTEGER_INCRS, movingAverage, themeColor } from './util.js';

const CONCURRENT_REQUESTS = 4;
const LEGEND_SHOWN = 8;

// A series' id in a chart: the run's id, or for a series logged with a context the run's id and the context.
// In a rank view (ranks=all|band) another rank's series, or the band's min and max, is the run's id and the rank.
function seriesId(s) {
  if (s.rank !== undefined) return `${s.run}#rank:${s.rank}`;
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
  constructor(panel, key, title) {
    this.panel = panel;
    this.key = key;
    this.x = [];
    this.cols = new Map();
    this.contexts = new Map();  // series id -> {run, context} for the series logged with a context
    this.lastStep = {};
    this.plot = null;
    this.reduced = false;
    this.legendOpen = false;
    this.xlabel = el('span', { class: 'xlabel' });
    this.note = el('span', { class: 'note' });
    const tool = (action, label, text) => el('button', { type: 'button', class: 'tool', 'data-action': action, title: label, 'aria-label': label, onclick: () => this.action(action) }, text);
    this.tools = el('span', { class: 'chart-tools' },
      tool('csv', 'download the plotted data as CSV', 'CSV'), tool('png', 'download as PNG', 'PNG'),
      tool('fullscreen', 'fullscreen (Esc to leave)', '⤢'));
    this.handle = el('span', { class: 'drag-handle', title: 'drag to move this chart', draggable: 'true' }, '⠿');
    this.title = el('h4', { title: key }, this.handle, el('span', { class: 'title-text' }, title), this.xlabel);
    this.header = el('div', { class: 'chart-head' }, this.title, this.note, this.tools);
    this.tooltip = el('div', { class: 'tooltip' });
    this.body = el('div', { class: 'plot' });
    this.legend = el('div', { class: 'legend' });
    this.node = el('div', { class: 'chart', 'data-key': key }, this.header, this.body, this.legend, this.tooltip);
    this.handle.addEventListener('dragstart', (e) => {
      e.dataTransfer.setData('text/x-trackiod-chart', key);
      e.dataTransfer.effectAllowed = 'move';
      this.node.classList.add('dragging');
    });
    this.handle.addEventListener('dragend', () => this.node.classList.remove('dragging'));
    this.node.addEventListener('dragover', (e) => {
      if (!e.dataTransfer.types.includes('text/x-trackiod-chart')) return;
      e.preventDefault();
      this.node.classList.add('drop-target');
    });
    this.node.addEventListener('dragleave', () => this.node.classList.remove('drop-target'));
    this.node.addEventListener('drop', (e) => {
      e.preventDefault();
      this.node.classList.remove('drop-target');
      const from = e.dataTransfer.getData('text/x-trackiod-chart');
      if (from && from !== key) this.panel.move(from, key);
    });
  }

  width() {
    return Math.max(200, Math.floor(this.body.clientWidth || this.node.clientWidth - 16));
  }

  height(width) {
    if (this.node.classList.contains('fullscreen')) return Math.max(300, window.innerHeight - 150);
    return Math.round(Math.max(220, Math.min(380, width * 0.42)));
  }

  get xaxis() {
    return this.panel.ctx.xaxisFor(this.key);
  }

  params() {
    const c = this.panel.ctx;
    return { project: c.project, key: this.key, xaxis: this.xaxis, width: this.width(), xmin: c.xmin, xmax: c.xmax, ranks: c.ranks };
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
    this.rankSeries = new Map();  // series id -> {run, rank} for ranks other than 0 (ranks=all)
    this.rankCount = {};  // run -> ranks, for multi-rank runs in a rank view
    this.lastStep = {};
    header.series.forEach((s, i) => {
      this.cols.set(seriesId(s), toNulls(ys[i]));
      if (s.context) this.contexts.set(seriesId(s), { run: s.run, context: s.context });
      this.noteRank(s);
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
    // A run this chart has no points of yet (started after the page opened) is fetched whole with the others.
    if (ids.some((id) => this.lastStep[id] === undefined)) return this.load();
    const after = ids.filter((id) => this.lastStep[id] !== null).map((id) => `${id}:${this.lastStep[id]}`);
    const { header, x, ys } = await getChart({ ...this.params(), runs: ids, after });
    if (header.reduced) return this.load();
    const fresh = new Map();
    header.series.forEach((s, i) => {
      if (s.points > 0) fresh.set(seriesId(s), toNulls(ys[i]));
      if (s.context && !this.contexts.has(seriesId(s))) this.contexts.set(seriesId(s), { run: s.run, context: s.context });
      this.noteRank(s);
      this.noteStep(s);
    });
    if (!fresh.size) return;
    const merged = mergeTable(this.x, this.cols, Array.from(x), fresh);
    this.x = merged.x;
    this.cols = merged.cols;
    if (this.x.length > 8 * this.width()) return this.load();
    this.draw(true);
  }

  noteRank(s) {
    if (s.ranks) this.rankCount[s.run] = s.ranks;
    if (typeof s.rank === 'number') this.rankSeries.set(seriesId(s), { run: s.run, rank: s.rank });
  }

  // A run's last step is the highest of its series' (plain and context): the next live request starts after it.
  // A run without points here yet is noted as null, so the next live tick asks for all of its points.
  noteStep(s) {
    const known = this.lastStep[s.run];
    if (s.last_step === null || s.last_step === undefined) {
      if (known === undefined) this.lastStep[s.run] = null;
      return;
    }
    if (known === null || known === undefined || s.last_step > known) this.lastStep[s.run] = s.last_step;
  }

  smooth(col) {
    const c = this.panel.ctx;
    if (c.smoothing > 0) return movingAverage(col, c.smoothing);
    if (c.ema > 0) return ema(col, c.ema);
    return col;
  }

  seriesData() {
    const c = this.panel.ctx;
    const smoothed = c.smoothing > 0 || c.ema > 0;
    // On a log x axis the points at x <= 0 (step 0) cannot be placed: the table starts after them.
    let from = 0;
    if (c.logx) while (from < this.x.length && !(this.x[from] > 0)) from += 1;
    const cut = (col) => (from ? col.slice(from) : col);
    const series = [{ label: this.xaxis }];
    const data = [cut(this.x)];
    const bands = [];
    const showRaw = smoothed && c.runs.length <= 20;
    const prepare = (col) => cut(c.logy ? col.map((v) => (v !== null && v > 0 ? v : null)) : col);
    const hidden = this.panel.hidden;
    const addLine = (label, col, color, legend, extra = {}) => {
      const show = !hidden.has(legend.key);
      if (showRaw) {
        series.push({ label: `${label} (raw)`, stroke: `${color}44`, width: 1, spanGaps: true, points: { show: false }, raw: true, show, legendKey: legend.key });
        data.push(col);
      }
      series.push({ label, stroke: color, width: 1, spanGaps: true, points: { show: false }, color, show, legendKey: legend.key, legendLabel: legend.label, ...extra });
      data.push(smoothed ? this.smooth(col) : col);
    };
    for (const line of this.panel.lines()) {
      const cols = line.runs.map((r) => this.cols.get(r.id)).filter(Boolean).map(prepare);
      if (!cols.length) continue;
      if (!line.aggregate) {
        const id = line.runs[0].id;
        const ranks = this.rankCount[id];
        const lo = this.cols.get(`${id}#rank:min`);
        const hi = this.cols.get(`${id}#rank:max`);
        // The rank view's band: the run's line is the mean across its ranks, between their min and max.
        if (lo && hi) {
          const show = !hidden.has(line.legend.key);
          const band = { stroke: `${line.color}66`, width: 0.5, spanGaps: true, points: { show: false }, band: true, show, legendKey: line.legend.key };
          series.push({ ...band, label: `${line.label} max of ${ranks} ranks` });
          data.push(prepare(hi));
          series.push({ ...band, label: `${line.label} min of ${ranks} ranks` });
          data.push(prepare(lo));
          if (show) bands.push({ series: [series.length - 2, series.length - 1], fill: `${line.color}26` });
        }
        const label = !ranks ? line.label : lo ? `${line.label} mean of ${ranks} ranks` : `${line.label} rank 0`;
        addLine(label, cols[0], line.color, line.legend, { run: id });
        continue;
      }
      // A group: the mean of its runs, over a band from their min to their max at each x.
      const n = data[0].length;
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
      const show = !hidden.has(line.legend.key);
      const band = { stroke: `${line.color}66`, width: 0.5, spanGaps: true, points: { show: false }, band: true, show, legendKey: line.legend.key };
      series.push({ ...band, label: `${line.label} max` });
      data.push(hi);
      series.push({ ...band, label: `${line.label} min` });
      data.push(lo);
      if (show) bands.push({ series: [series.length - 2, series.length - 1], fill: `${line.color}26` });
      addLine(`${line.label} mean (${cols.length} runs)`, mean, line.color, line.legend);
    }
    // Series logged with a context (log(..., context={...})): a dashed line of their run's colour each.
    const shown = new Map(c.runs.map((r) => [r.id, r]));
    for (const [id, { run, context }] of this.contexts) {
      const col = this.cols.get(id);
      if (!col || !shown.has(run)) continue;
      const label = `${shown.get(run).name} ${contextLabel(context)}`;
      addLine(label, prepare(col), c.colorOf(shown.get(run)), { key: `ctx:${id}`, label }, { run, dash: [6, 4], context: true });
    }
    // ranks=all: every other rank of a run, a dotted line of its run's colour (hidden with its run).
    const lineOf = new Map(this.panel.lines().filter((l) => !l.aggregate).map((l) => [l.runs[0].id, l]));
    for (const [id, { run, rank }] of this.rankSeries || []) {
      const col = this.cols.get(id);
      const line = lineOf.get(run);
      if (!col || !line) continue;
      addLine(`${line.label} rank ${rank}`, prepare(col), line.color, line.legend, { run, rank, dash: [2, 3] });
    }
    this.node.dataset.ranks = String((this.rankSeries || new Map()).size);
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
    this.node.dataset.visible = String(series.filter((s) => s.color && s.show).length);
    this.node.dataset.smoothing = c.smoothing > 0 ? `window:${c.smoothing}` : c.ema > 0 ? `ema:${c.ema}` : '';
    this.xlabel.textContent = this.xaxis === 'step' ? '' : ` · x: ${xTitle(this.xaxis)}`;
    this.node.dataset.points = String(points);
    this.note.textContent = this.reduced ? 'min/max per pixel' : '';
    this.note.title = this.reduced ? 'more points than pixels: each pixel column shows the min and max of its points' : '';
    this.renderLegend(series);
    if (live && this.plot && this.plot.series.length === series.length) {
      this.plot.setData(data);
      return;
    }
    if (this.plot) this.plot.destroy();
    const isTime = this.xaxis === 'time';
    const integerX = !isTime && this.xaxis !== 'relative' && data[0].every(Number.isInteger);
    const axisColor = themeColor('--axis');
    const gridColor = themeColor('--grid');
    const axis = { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor, width: 1 }, font: '11px system-ui, sans-serif', labelFont: '11px system-ui, sans-serif' };
    const width = this.width();
    const opts = {
      width,
      height: this.height(width),
      legend: { show: false },
      // A log x axis spans the data, not the decades around it (steps 1-300 do not stretch to 1000).
      scales: { x: { time: isTime, distr: c.logx ? 3 : 1, ...(c.logx ? { range: (u, lo, hi) => [lo, hi] } : {}) }, y: { distr: c.logy ? 3 : 1 } },
      axes: [
        { ...axis, label: xTitle(this.xaxis), labelSize: 18, size: 34, ...(integerX ? { incrs: INTEGER_INCRS } : {}),
          ...(isTime ? {} : { values: (u, ticks) => this.noteTicks('xticks', fmtTicks(ticks, c.logx)) }) },
        { ...axis, size: axisSize, values: (u, ticks) => this.noteTicks('yticks', fmtTicks(ticks, c.logy)) },
      ],
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

  // The tick labels drawn (the canvas has no text to read back): the browser tests check them.
  noteTicks(name, labels) {
    this.node.dataset[name] = JSON.stringify(labels);
    return labels;
  }

  // One entry per line (run, group, or context series), at most LEGEND_SHOWN until "+N more" opens the rest.
  renderLegend(series) {
    const entries = new Map();
    for (const s of series.slice(1)) {
      if (s.raw || s.band || !s.legendKey || entries.has(s.legendKey)) continue;
      entries.set(s.legendKey, { label: s.legendLabel || s.label, color: s.color, dash: !!s.dash });
    }
    const extra = entries.size - LEGEND_SHOWN;
    const listed = this.legendOpen || extra <= 0 ? [...entries] : [...entries].slice(0, LEGEND_SHOWN);
    const items = listed.map(([key, e]) => el('button', {
      type: 'button', class: `legend-item${this.panel.hidden.has(key) ? ' off' : ''}`, 'data-legend': key, title: `${e.label} (click to hide or show)`,
      onclick: () => this.panel.toggleHidden(key),
    }, el('span', { class: `swatch${e.dash ? ' dashed' : ''}`, style: `background:${e.color}` }), e.label));
    const more = extra > 0 ? el('button', { type: 'button', class: 'legend-more', onclick: () => { this.legendOpen = !this.legendOpen; this.renderLegend(series); } },
      this.legendOpen ? 'fewer' : `+${extra} more`) : null;
    this.legend.replaceChildren(...items, ...(more ? [more] : []));
    this.node.dataset.legend = String(entries.size);
  }

  action(name) {
    if (name === 'csv') download(`${fileName(this.key)}.csv`, new Blob([this.csv()], { type: 'text/csv' }));
    else if (name === 'png') this.png();
    else if (name === 'fullscreen') this.panel.fullscreen(this);
  }

  // The plotted data as drawn (after smoothing, zoom and reduction): x, then one column per series shown.
  csv() {
    if (!this.plot) return '';
    const u = this.plot;
    const cols = [0];
    for (let s = 1; s < u.series.length; s++) if (u.series[s].show) cols.push(s);
    const quote = (v) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
    const lines = [cols.map((s) => quote(s === 0 ? this.xaxis : u.series[s].label)).join(',')];
    const n = u.data[0].length;
    for (let i = 0; i < n; i++) {
      const row = cols.map((s) => { const v = u.data[s][i]; return v === null || v === undefined ? '' : String(v); });
      if (row.slice(1).some((v) => v !== '')) lines.push(row.join(','));
    }
    return `${lines.join('\n')}\n`;
  }

  png() {
    if (!this.plot) return;
    const source = this.plot.ctx.canvas;
    const canvas = document.createElement('canvas');
    canvas.width = source.width;
    canvas.height = source.height + 28;
    const g = canvas.getContext('2d');
    g.fillStyle = themeColor('--bg');
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = themeColor('--fg');
    g.font = '600 14px system-ui, sans-serif';
    g.fillText(this.key, 8, 19);
    g.drawImage(source, 0, 28);
    canvas.toBlob((blob) => download(`${fileName(this.key)}.png`, blob), 'image/png');
  }

  hover(u) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left < 0) { this.tooltip.style.display = 'none'; return; }
    const rows = [];
    for (let s = 1; s < u.series.length; s++) {
      if (u.series[s].raw || u.series[s].band || !u.series[s].show) continue;
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
    this.tooltip.style.top = `${u.cursor.top + 40}px`;
  }

  destroy() {
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

// The y axis is as wide as its longest tick label (a 1e-5 axis, a 1,000,000 axis), so no digit is clipped.
function axisSize(u, values) {
  if (!values) return 50;
  const longest = values.reduce((m, v) => Math.max(m, String(v || '').length), 0);
  return Math.max(36, Math.ceil(longest * 6.6) + 16);
}

function xTitle(xaxis) {
  if (xaxis === 'time') return 'wall time';
  if (xaxis === 'relative') return 'time since the run started (s)';
  return xaxis;
}

function fileName(key) {
  return key.replace(/[^\w.-]+/g, '_');
}

// All charts of one page: sections by key prefix ("train/loss" goes under "train"), titled within their section
// ("loss"), in the order the URL's `order` names (dragging a chart rewrites it).
export class ChartPanel {
  constructor(container, ctx, onZoom) {
    this.container = container;
    this.ctx = ctx;
    this.onZoom = onZoom;
    this.charts = [];
    this.hidden = new Set();
    this.full = null;
    this.onKey = (e) => { if (e.key === 'Escape' && this.full) this.fullscreen(this.full); };
    document.addEventListener('keydown', this.onKey);
  }

  build(keys) {
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const rank = new Map((this.ctx.order || []).map((k, i) => [k, i]));
    const ordered = keys.map((k, i) => [k, i]).sort((a, b) => (rank.has(a[0]) ? rank.get(a[0]) : 1e9 + a[1]) - (rank.has(b[0]) ? rank.get(b[0]) : 1e9 + b[1])).map((e) => e[0]);
    const sections = new Map();
    for (const key of ordered) {
      const cut = key.lastIndexOf('/');
      const group = cut > 0 ? key.slice(0, cut) : 'charts';
      if (!sections.has(group)) sections.set(group, []);
      sections.get(group).push(key);
    }
    const nodes = [];
    for (const [group, groupKeys] of sections) {
      // A chart alone in its section (or a section of fewer charts than a row holds) spreads over the row.
      const perRow = this.ctx.perRow === 'auto' ? 'auto' : Math.min(this.ctx.perRow, groupKeys.length);
      const grid = el('div', { class: `grid${perRow === 'auto' ? ' auto' : ''}`, style: perRow === 'auto' ? '' : `--per-row:${perRow}` });
      const header = el('h3', { onclick: () => { grid.hidden = !grid.hidden; header.classList.toggle('closed', grid.hidden); } }, group, el('span', { class: 'count' }, String(groupKeys.length)));
      for (const key of groupKeys) {
        const short = group !== 'charts' && key.startsWith(`${group}/`) ? key.slice(group.length + 1) : key;
        const chart = new Chart(this, key, short);
        this.charts.push(chart);
        grid.append(chart.node);
      }
      nodes.push(el('section', { class: 'section', 'data-group': group }, this.ctx.accordionHidden ? null : header, grid));
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

  // What to draw: one line per run, coloured by its run or (with group_by) by its group; with aggregate=group
  // one line per group, the mean of its runs over a min-max band. Each line names its legend entry.
  lines() {
    const c = this.ctx;
    const out = new Map();
    for (const run of c.runs) {
      const group = c.groupOf(run);
      const aggregate = c.aggregate === 'group' && group !== null;
      if (aggregate) {
        const key = `g:${group}`;
        if (!out.has(key)) out.set(key, { label: c.groupLabel(group), runs: [], aggregate: true, color: c.groupColor(group), legend: { key, label: c.groupLabel(group) } });
        out.get(key).runs.push(run);
        continue;
      }
      const legend = c.groupBy && group !== null ? { key: `g:${group}`, label: c.groupLabel(group) } : { key: `r:${run.id}`, label: run.name };
      out.set(`r:${run.id}`, { label: run.name, runs: [run], aggregate: false, color: c.colorOf(run), legend, group });
    }
    const lines = [...out.values()];
    // With group_by the legend lists the groups in their sorted order (the order their colours were given in).
    if (c.groupBy) {
      const rank = (line) => c.groupRank(line.aggregate ? line.legend.key.slice(2) : line.group);
      lines.sort((a, b) => rank(a) - rank(b));
    }
    return lines;
  }

  toggleHidden(key) {
    if (this.hidden.has(key)) this.hidden.delete(key);
    else this.hidden.add(key);
    this.redraw();
  }

  // Move chart `from` to where chart `to` is (within its section), and keep the new order in the URL.
  move(from, to) {
    const a = this.charts.find((c) => c.key === from);
    const b = this.charts.find((c) => c.key === to);
    if (!a || !b || a.node.parentNode !== b.node.parentNode) return;
    const grid = b.node.parentNode;
    const nodes = [...grid.children];
    grid.insertBefore(a.node, nodes.indexOf(a.node) < nodes.indexOf(b.node) ? b.node.nextSibling : b.node);
    const order = [...this.container.querySelectorAll('.chart')].map((n) => n.dataset.key);
    this.charts.sort((x, y) => order.indexOf(x.key) - order.indexOf(y.key));
    this.ctx.setOrder(order);
  }

  fullscreen(chart) {
    const leaving = this.full === chart;
    if (this.full) this.full.node.classList.remove('fullscreen');
    this.full = leaving ? null : chart;
    if (!leaving) chart.node.classList.add('fullscreen');
    document.body.classList.toggle('has-fullscreen', !leaving);
    if (chart.x.length) chart.draw();
  }

  redraw() {
    for (const chart of this.charts) if (chart.x.length) chart.draw();
  }

  zoom(lo, hi) {
    this.onZoom(lo, hi);
  }

  destroy() {
    document.removeEventListener('keydown', this.onKey);
    document.body.classList.remove('has-fullscreen');
    for (const c of this.charts) c.destroy();
    this.charts = [];
  }
}

// The system panel: /api/system's charts (docs/dashboard.md), one per node series, grouped in sections (GPU
// power, energy, GPU utilisation, GPU memory, CPU, memory, disk and network). x is seconds since each run's
// start, so runs that ran at different times line up; the server already reduced each chart to its width.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { colorFor, el, fmtDuration, fmtTicks, fmtValue, themeColor } from './util.js';

const UNITS = ['', 'K', 'M', 'G', 'T'];

export function fmtUnit(v, unit) {
  if (v === null || v === undefined) return '';
  if (unit === 'bytes' || unit === 'bytes/s') {
    let i = 0;
    let x = Math.abs(v);
    while (x >= 1024 && i < UNITS.length - 1) { x /= 1024; i += 1; }
    // Under 1 KiB the unit is plain bytes ("512 B", not "512 iB").
    const prefix = i === 0 ? 'B' : `${UNITS[i]}iB`;
    return `${(Math.sign(v) * x).toFixed(x >= 100 || i === 0 ? 0 : 1)} ${prefix}${unit === 'bytes/s' ? '/s' : ''}`;
  }
  if (unit === 'J') return Math.abs(v) >= 3.6e5 ? `${(v / 3.6e6).toFixed(3)} kWh` : `${fmtValue(+v.toPrecision(4))} J`;
  return `${fmtValue(+Number(v).toPrecision(4))}${unit ? ` ${unit}` : ''}`;
}

// The value axis' width in pixels for its tick labels (6.8 px a character at 11 px, plus tick and gap).
export function valueAxisSize(values) {
  if (!values || !values.length) return 70;
  return Math.max(40, Math.ceil(Math.max(...values.map((v) => String(v).length)) * 6.8) + 18);
}

// Ticks of a short run in seconds with the decimals their spacing needs (0.25s, not 0.3s), longer ones as
// durations (1m 30s).
function fmtSecondTicks(ticks) {
  const span = ticks.length > 1 ? ticks[ticks.length - 1] - ticks[0] : ticks[0];
  if (span >= 20) return ticks.map((t) => fmtDuration(t));
  return fmtTicks(ticks).map((t) => (t === '' ? '' : `${t}s`));
}

// A series key as a title with its unit: gpu.0.power_w -> "GPU 0 · power (W)".
const SUFFIX_UNITS = [['_bytes_per_s', ''], ['_bytes', ''], ['_pct', ' (%)'], ['_percent', ' (%)'], ['percent', '(%)'], ['_w', ' (W)'], ['_c', ' (°C)'], ['_j', '']];
function words(name) {
  for (const [suffix, unit] of SUFFIX_UNITS) {
    if (name.endsWith(suffix)) return `${name.slice(0, -suffix.length).replace(/_/g, ' ')}${unit}`.trim() || name;
  }
  return name.replace(/_/g, ' ');
}

function title(key) {
  const gpu = /^gpu\.(\d+)\.(.+)$/.exec(key);
  if (gpu) return `GPU ${gpu[1]} · ${words(gpu[2])}`;
  if (key === 'gpu.energy_j') return 'GPU energy since the run started (the GPUs it used)';
  if (key.startsWith('process.')) return `the run's processes · ${words(key.slice(8))}`;
  return words(key.replace(/\./g, ' · '));
}

function energyTable(energy, runs) {
  const rows = Object.entries(energy);
  if (!rows.length) return el('p', { class: 'empty' }, 'No GPU energy was attributed to the selected runs.');
  const name = (id) => (runs.find((r) => r.id === id) || { name: id }).name;
  return el('table', { class: 'kv', id: 'energy-table' },
    el('tr', {}, ['run', 'GPU energy', 'kWh', 'GPU hours', 'CO2eq', 'GPUs'].map((h) => el('th', {}, h))),
    rows.map(([id, e]) => el('tr', { 'data-run': id },
      el('td', {}, el('span', { class: 'swatch', style: `background:${colorFor(id)}` }), name(id)),
      el('td', {}, fmtUnit(e.gpu_joules, 'J')),
      el('td', {}, e.gpu_kwh.toPrecision(3)),
      el('td', {}, e.gpu_hours.toPrecision(3)),
      el('td', {}, e.co2eq_kg === null ? 'no grid intensity' : `${(e.co2eq_kg * 1000).toPrecision(3)} g`),
      el('td', {}, e.gpus.map((g) => `${g.host}:${g.index} ${g.name}`).join(', ')))));
}

function drawChart(node, chart, runs) {
  const name = (id) => (runs.find((r) => r.id === id) || { name: id }).name;
  const width = Math.max(200, node.clientWidth - 14);
  const unit = chart.unit;
  const grid = themeColor('--grid');
  const axis = { stroke: themeColor('--axis'), grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: '11px system-ui, sans-serif', labelFont: '11px system-ui, sans-serif' };
  const opts = {
    width, height: 200, legend: { show: true, live: true },
    scales: { x: { time: false } },
    axes: [
      { ...axis, label: 'time since the run started', labelSize: 18, size: 34, values: (u, ticks) => fmtSecondTicks(ticks) },
      // As wide as the longest label ("95.4 MiB/s"), so its first digit is not cut off.
      { ...axis, size: (u, values) => valueAxisSize(values),
        values: (u, ticks) => ticks.map((t) => fmtUnit(t, unit)) },
    ],
    series: [
      { label: 'time', value: (u, v) => (v === null ? '' : fmtDuration(v)) },
      ...chart.series.map((s) => ({
        label: name(s.run), stroke: colorFor(s.run), width: 1.5, spanGaps: true, points: { show: false },
        value: (u, v) => fmtUnit(v, unit),
      })),
    ],
  };
  return new uPlot(opts, [chart.x, ...chart.series.map((s) => s.y)], node);
}

export function systemCharts(main, data, runs) {
  const sections = new Map();
  for (const chart of data.charts) {
    if (!sections.has(chart.section)) sections.set(chart.section, []);
    sections.get(chart.section).push(chart);
  }
  const parts = [el('h2', {}, 'System')];
  const hosts = [...new Set(runs.map((r) => r.host).filter(Boolean))];
  parts.push(el('p', { class: 'hint' },
    `Sampled on ${hosts.join(', ') || 'the runs\' hosts'}; each run's host over its own time (x: time since it started). `
    + 'Series reach the database in chunks, so a running run\'s last 30 s may not show yet.'));
  const pending = [];
  for (const [section, charts] of sections) {
    if (section === 'Energy') continue;
    const grid = el('div', { class: 'grid', style: '--per-row:2' });
    parts.push(el('section', { class: 'section', 'data-group': section }, el('h3', { onclick: () => { grid.hidden = !grid.hidden; } }, section), grid));
    for (const chart of charts) {
      const node = el('div', { class: 'chart system-chart', 'data-key': chart.key, 'data-series': String(chart.series.length) },
        el('h4', { title: chart.key }, title(chart.key)), el('span', { class: 'note' }, chart.reduced ? 'min/max per pixel' : ''));
      grid.append(node);
      pending.push([node, chart]);
    }
  }
  const energyCharts = sections.get('Energy') || [];
  const energyGrid = el('div', { class: 'grid', style: '--per-row:2' });
  for (const chart of energyCharts) {
    const node = el('div', { class: 'chart system-chart', 'data-key': chart.key, 'data-series': String(chart.series.length) },
      el('h4', { title: chart.key }, title(chart.key)));
    energyGrid.append(node);
    pending.push([node, chart]);
  }
  parts.splice(2, 0, el('section', { class: 'section', 'data-group': 'Energy' }, el('h3', {}, 'Energy'),
    energyTable(data.energy, runs), energyGrid));
  main.replaceChildren(...parts);
  for (const [node, chart] of pending) drawChart(node, chart, runs);
}

// The run page's media: one card per rich-value key (/api/media lists them, /api/media/values gives each one's
// values). Images with a step slider; tables a page at a time; histograms as a heatmap over steps with a step
// slider for one step's bars; HTML in a sandboxed frame; arrays as shape, dtype and statistics; galleries (a
// logged list) side by side; videos and audio in the browser's own players (a gif video as an image); 3-D objects
// as a download; plotly figures with plotly.js when a page has it, else their x/y traces drawn plainly; wandb.plot
// charts drawn from their table (plotdraw.js). Files load from /media/PATH, the traversal-safe media route, with
// the page's token cookie when one is needed.
import { getJSON } from './api.js';
import { drawChart, drawPlotlyTraces } from './plotdraw.js';
import { el, fmtValue } from './util.js';

const PAGE = 25;

function mediaUrl(path) {
  return `/media/${path.split('/').map(encodeURIComponent).join('/')}`;
}

function slider(steps, initial, onChange) {
  const label = el('span', { class: 'step-label' }, `step ${steps[initial]}`);
  const input = el('input', { type: 'range', min: 0, max: steps.length - 1, step: 1, value: initial, class: 'step-slider' });
  input.oninput = () => { label.textContent = `step ${steps[input.value]}`; onChange(Number(input.value)); };
  if (steps.length < 2) input.disabled = true;
  return el('div', { class: 'step-control' }, input, ' ', label);
}

async function imageCard(body, values) {
  const img = el('img', { class: 'media-image', alt: '' });
  const caption = el('div', { class: 'caption' });
  const show = (i) => {
    const v = values[i];
    img.src = mediaUrl(v.path);
    img.dataset.step = String(v.step);
    img.alt = v.caption || `step ${v.step}`;
    caption.textContent = `${v.caption || ''}${v.caption ? ' · ' : ''}${v.width}×${v.height}, step ${v.step}`;
  };
  show(values.length - 1);
  body.append(slider(values.map((v) => v.step), values.length - 1, show), el('div', { class: 'image-frame' }, img), caption);
}

function cell(value) {
  if (value && typeof value === 'object' && value._type === 'image-file') {
    return el('img', { class: 'cell-image', src: mediaUrl(value.path), alt: value.caption || '' });
  }
  if (value && typeof value === 'object' && typeof value._type === 'string' && value._type.endsWith('-file')) {
    return fileElement(value._type.slice(0, -5), value);  // video, audio or 3-D cells
  }
  return fmtValue(value);
}

async function tableCard(body, params, first) {
  let page = first;
  const table = el('table', { class: 'kv media-table' });
  const info = el('span', { class: 'page-info' });
  const prev = el('button', { type: 'button', class: 'prev' }, '‹ previous');
  const next = el('button', { type: 'button', class: 'next' }, 'next ›');
  const stepPick = el('select', { class: 'table-step', 'aria-label': 'step' }, first.steps.map((s) => el('option', { value: s, selected: s === first.step }, `step ${s}`)));
  const load = async (offset, step) => {
    page = await getJSON('/api/media/values', { ...params, offset, limit: PAGE, step });
    render();
  };
  const render = () => {
    table.replaceChildren(
      el('tr', {}, page.columns.map((c) => el('th', {}, c))),
      ...page.rows.map((row) => el('tr', {}, row.map((v) => el('td', {}, cell(v))))));
    const end = page.offset + page.rows.length;
    info.textContent = page.total ? `rows ${page.offset + 1}–${end} of ${page.total}` : (page.error || 'no rows');
    prev.disabled = page.offset <= 0;
    next.disabled = end >= page.total;
  };
  prev.onclick = () => load(Math.max(0, page.offset - PAGE), page.step);
  next.onclick = () => load(page.offset + PAGE, page.step);
  stepPick.onchange = () => load(0, stepPick.value);
  render();
  body.append(el('div', { class: 'table-nav' }, first.steps.length > 1 ? stepPick : null, prev, next, info), el('div', { class: 'table-scroll' }, table));
}

// A colour from white (no count) to the accent blue (the most counts of the whole heatmap).
function shade(fraction) {
  const f = Math.sqrt(Math.max(0, Math.min(1, fraction)));
  return `rgb(${Math.round(255 - 208 * f)},${Math.round(255 - 144 * f)},${Math.round(255 - 36 * f)})`;
}

function drawHeatmap(canvas, heat, marked) {
  const ctx = canvas.getContext('2d');
  const { steps, edges, counts } = heat;
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1e-12, ...counts.flat());
  const colW = w / steps.length;
  const rowH = h / (edges.length - 1);
  counts.forEach((row, i) => {
    row.forEach((n, j) => {
      if (n <= 0) return;
      ctx.fillStyle = shade(n / max);
      // Low values at the bottom, as on a y axis.
      ctx.fillRect(Math.floor(i * colW), Math.floor(h - (j + 1) * rowH), Math.ceil(colW), Math.ceil(rowH));
    });
  });
  if (marked !== null) {
    ctx.strokeStyle = '#e4572e';
    ctx.lineWidth = 2;
    ctx.strokeRect(marked * colW + 1, 1, Math.max(2, colW - 2), h - 2);
  }
}

function drawBars(canvas, hist) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const lo = hist.bins[0];
  const span = (hist.bins[hist.bins.length - 1] - lo) || 1;
  const max = Math.max(1e-12, ...hist.values);
  ctx.fillStyle = '#2f6fdb';
  hist.values.forEach((n, i) => {
    const x0 = ((hist.bins[i] - lo) / span) * w;
    const x1 = ((hist.bins[i + 1] - lo) / span) * w;
    const bar = (n / max) * (h - 4);
    ctx.fillRect(x0, h - bar, Math.max(1, x1 - x0 - 1), bar);
  });
}

async function histogramCard(body, data) {
  const width = Math.max(300, Math.min(900, body.clientWidth || 600));
  const heat = el('canvas', { class: 'heatmap', width, height: 180 });
  const bars = el('canvas', { class: 'histogram-bars', width, height: 120 });
  const steps = data.heatmap.steps;
  const edges = data.heatmap.edges;
  const axis = el('div', { class: 'axis-note' });
  const show = (i) => {
    drawHeatmap(heat, data.heatmap, i);
    const v = data.values[i];
    drawBars(bars, v);
    axis.textContent = `step ${v.step}: ${v.values.length} bins from ${fmtValue(v.bins[0])} to ${fmtValue(v.bins[v.bins.length - 1])}, `
      + `${fmtValue(v.values.reduce((a, b) => a + b, 0))} values`;
  };
  body.append(
    el('div', { class: 'axis-note' }, `value ${fmtValue(edges[0])} (bottom) to ${fmtValue(edges[edges.length - 1])} (top), over steps ${steps[0]}–${steps[steps.length - 1]}`
      + (data.values.length < 2 ? '' : ` (${steps.length} steps shown)`)),
    heat,
    slider(steps, steps.length - 1, show),
    bars,
    axis,
  );
  show(steps.length - 1);
  body.closest('.media-card').dataset.steps = String(steps.length);
}

function htmlCard(body, values) {
  const v = values[values.length - 1];
  // No allow-same-origin: the frame's scripts run in an opaque origin and cannot read the dashboard's API.
  body.append(el('iframe', { class: 'media-html', sandbox: 'allow-scripts', src: mediaUrl(v.path), title: `HTML at step ${v.step}` }),
    el('div', { class: 'caption' }, `step ${v.step}${values.length > 1 ? ` (the latest of ${values.length})` : ''}`));
}

function arrayCard(body, values) {
  body.append(el('table', { class: 'kv' },
    el('tr', {}, ['step', 'dtype', 'shape', 'min', 'max', 'mean', 'first values'].map((h) => el('th', {}, h))),
    values.map((v) => el('tr', {}, el('td', {}, String(v.step)), el('td', {}, v.dtype), el('td', {}, `[${v.shape.join(', ')}]`),
      el('td', {}, fmtValue(v.min)), el('td', {}, fmtValue(v.max)), el('td', {}, fmtValue(v.mean)),
      el('td', { class: 'mono' }, (v.preview || []).map(fmtValue).join(', ') + (v.shape.reduce((a, b) => a * b, 1) > 8 ? ', …' : ''))))));
}

// One file value as the browser shows it: an image, a player, or a download link.
function fileElement(kind, v) {
  const src = mediaUrl(v.path);
  if (kind === 'image' || (kind === 'video' && v.format === 'gif')) {
    return el('img', { class: 'media-image', src, alt: v.caption || `step ${v.step}`, 'data-kind': kind });
  }
  if (kind === 'video') return el('video', { class: 'media-video', src, controls: true, loop: true, muted: true, preload: 'metadata', style: 'max-width:100%;max-height:320px;min-width:192px;image-rendering:pixelated' });
  if (kind === 'audio') return el('audio', { class: 'media-audio', src, controls: true, preload: 'metadata' });
  const name = v.path.split('/').pop();
  return el('a', { class: 'media-download', href: src, download: name }, `download ${v.format || kind} (${name})`);
}

function describe(kind, v) {
  const parts = [];
  if (v.caption) parts.push(v.caption);
  if (kind === 'video') parts.push(`${v.format}${v.frames ? `, ${v.frames} frames` : ''}${v.fps ? ` at ${v.fps} fps` : ''}${v.width ? `, ${v.width}×${v.height}` : ''}`);
  if (kind === 'audio') parts.push(`${v.format}${v.sample_rate ? `, ${v.sample_rate} Hz` : ''}${v.channels ? `, ${v.channels} ch` : ''}${v.duration ? `, ${fmtValue(v.duration)} s` : ''}`);
  if (kind === 'object3d') parts.push(`3-D ${v.format}: not drawn here, download it to view`);
  if (kind === 'image' && v.width) parts.push(`${v.width}×${v.height}`);
  return parts.join(' · ');
}

// A step slider over values; show(v) fills the frame for one step and returns the caption's start.
function stepped(body, values, frame, show) {
  const caption = el('div', { class: 'caption' });
  const pick = (i) => { frame.dataset.step = String(values[i].step); caption.textContent = `${show(values[i])} step ${values[i].step}`; };
  body.append(slider(values.map((v) => v.step), values.length - 1, pick), frame, caption);
  pick(values.length - 1);
}

function fileCard(body, kind, values) {
  const frame = el('div', { class: 'image-frame' });
  stepped(body, values, frame, (v) => {
    frame.replaceChildren(fileElement(kind, v));
    const text = describe(kind, v);
    return text ? `${text} ·` : '';
  });
}

function galleryCard(body, values) {
  const frame = el('div', { class: 'media-gallery', style: 'display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start' });
  stepped(body, values, frame, (v) => {
    frame.replaceChildren(...v.items.map((item) => el('figure', { class: 'gallery-item', 'data-kind': item.kind, style: 'margin:0;max-width:220px' },
      fileElement(item.kind, { ...item, step: v.step }), el('figcaption', { class: 'caption' }, describe(item.kind, item)))));
    return `${v.items.length} item${v.items.length === 1 ? '' : 's'} ·`;
  });
}

async function plotlyCard(body, values) {
  const v = values[values.length - 1];
  const figure = await (await fetch(mediaUrl(v.path), { credentials: 'same-origin' })).json();
  const link = el('a', { class: 'media-download', href: mediaUrl(v.path), download: v.path.split('/').pop() }, 'download the figure (JSON)');
  const note = `step ${v.step}${values.length > 1 ? ` (the latest of ${values.length})` : ''}`;
  if (window.Plotly) {
    const div = el('div', { class: 'plotly-figure' });
    body.append(div, el('div', { class: 'caption' }, note, ' · ', link));
    await window.Plotly.newPlot(div, figure.data, figure.layout || {});
    return;
  }
  const canvas = el('canvas', { class: 'plotly-fallback', width: Math.max(300, Math.min(900, body.clientWidth || 600)), height: 260, style: 'width:100%' });
  body.append(canvas, el('div', { class: 'caption' },
    `plotly.js is not bundled with this dashboard: ${drawPlotlyTraces(canvas, figure)} x/y trace(s) drawn plainly; `, link, ` · ${note}`));
}

async function plotCard(body, params, first) {
  const title = el('div', { class: 'chart-title' });
  const canvas = el('canvas', { class: 'plot-chart', width: Math.max(300, Math.min(900, body.clientWidth || 600)), height: 280, style: 'width:100%;display:block' });
  const note = el('div', { class: 'caption' });
  const extra = el('div', { class: 'table-scroll' });
  const stepPick = el('select', { class: 'table-step', 'aria-label': 'step' }, first.steps.map((s) => el('option', { value: s, selected: s === first.step }, `step ${s}`)));
  const render = (data) => {
    title.textContent = (data.strings && data.strings.title) || '';
    canvas.dataset.chart = data.chart || '';
    const drawn = !data.error && drawChart(canvas, data);
    canvas.style.display = drawn ? 'block' : 'none';
    extra.replaceChildren();
    if (!drawn) {
      extra.append(el('table', { class: 'kv media-table' }, el('tr', {}, data.columns.map((c) => el('th', {}, c))),
        data.rows.slice(0, PAGE).map((row) => el('tr', {}, row.map((c) => el('td', {}, fmtValue(c)))))));
    }
    const shown = data.total > data.rows.length ? ` (the first ${data.rows.length} of ${data.total} rows)` : ` (${data.total} rows)`;
    note.textContent = data.error || `${data.spec}${drawn ? '' : ': a custom chart, shown as its table'}${shown}, step ${data.step}`;
  };
  stepPick.onchange = async () => render(await getJSON('/api/media/values', { ...params, step: stepPick.value }));
  body.append(first.steps.length > 1 ? stepPick : '', title, canvas, extra, note);
  render(first);
}

export async function mediaSection(host, project, runId, keys) {
  const cards = keys.map((k) => {
    const body = el('div', { class: 'media-body' });
    const node = el('div', { class: `media-card ${k.kind}`, 'data-key': k.key, 'data-kind': k.kind },
      el('h4', {}, k.key, el('span', { class: 'xlabel' }, ` · ${k.kind}, ${k.count} step${k.count === 1 ? '' : 's'}`)), body);
    return [k, node, body];
  });
  host.replaceChildren(el('div', { class: 'media-grid' }, cards.map(([, node]) => node)));
  await Promise.all(cards.map(async ([k, node, body]) => {
    const params = { project, run: runId, key: k.key };
    try {
      const data = await getJSON('/api/media/values', k.kind === 'table' ? { ...params, limit: PAGE } : params);
      if (k.kind === 'image') await imageCard(body, data.values);
      else if (k.kind === 'table') await tableCard(body, params, data);
      else if (k.kind === 'histogram') await histogramCard(body, data);
      else if (k.kind === 'html') htmlCard(body, data.values);
      else if (k.kind === 'gallery') galleryCard(body, data.values);
      else if (k.kind === 'video' || k.kind === 'audio' || k.kind === 'object3d') fileCard(body, k.kind, data.values);
      else if (k.kind === 'plotly') await plotlyCard(body, data.values);
      else if (k.kind === 'plot') await plotCard(body, params, data);
      else arrayCard(body, data.values);
      node.dataset.ready = '1';
    } catch (e) {
      body.append(el('p', { class: 'error' }, String(e.message || e)));
    }
  }));
}

// The dashboard's entry point: reads the state from the URL, loads the project's runs, shows the page the
// state names, and polls for changes (new runs, new points) while live updates are on.
import { getJSON } from './api.js';
import { ChartPanel } from './charts.js';
import { matches, rowsToRuns, sortRuns, tableColumns, VirtualTable } from './runs.js';
import { readURL, setState, state } from './state.js';
import { assignColors, debounce, el } from './util.js';
import { alertsView, diffView, projectsView, runView, systemView } from './views.js';

const DEFAULT_SELECTION = 10;
const app = { info: null, runs: [], byId: new Map(), keys: [], stepMetrics: {}, now: 0, panel: null, sidebar: null, table: null, polling: false };
const $ = (id) => document.getElementById(id);

function status(text) { $('status').textContent = text; }

function applyChrome() {
  document.body.classList.toggle('sidebar-hidden', state.sidebar === 'hidden');
  document.body.classList.toggle('sidebar-collapsed', state.sidebar === 'collapsed');
  document.body.classList.toggle('navbar-hidden', state.navbar === 'hidden');
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.view === (state.view || 'charts'));
}

// ------------------------------------------------------------------ runs and selection
async function loadRuns(pending = null) {
  const payload = await (pending || getJSON('/api/runs', { project: state.project }));
  app.runs = rowsToRuns(payload);
  app.now = payload.now;
  app.byId = new Map(app.runs.map((r) => [r.id, r]));
  assignColors([...app.runs].sort((a, b) => a.created_at - b.created_at));
}

function resolve(ref) {
  return app.byId.get(ref) || app.runs.find((r) => r.name === ref);
}

function selectedRuns() {
  if (state.runs === undefined) return app.runs.slice(0, DEFAULT_SELECTION);
  const out = [];
  for (const ref of state.runs) {
    const run = resolve(ref);
    if (run && !out.includes(run)) out.push(run);
  }
  return out;
}

function isSelected(run) { return selectedRuns().includes(run); }

function setSelection(runs) {
  setState({ runs: runs.map((r) => r.id) });
  refreshTables();
  route();
}

function toggle(run) {
  const current = selectedRuns();
  setSelection(current.includes(run) ? current.filter((r) => r !== run) : [...current, run]);
}

function visibleRuns() {
  const shown = app.runs.filter((r) => matches(r, state.q, state.state));
  return sortRuns(shown, state.sort, app.now);
}

function refreshTables() {
  const rows = visibleRuns();
  if (app.sidebar) app.sidebar.setRows(rows, app.now);
  if (app.table) { app.table.options.sort = state.sort; app.table.setRows(rows, app.now); }
  status(`${app.runs.length} runs, ${selectedRuns().length} selected`);
}

function setupSidebar() {
  $('run-search').value = state.q || '';
  $('state-filter').value = state.state || '';
  $('run-search').oninput = debounce((e) => { setState({ q: e.target.value }); refreshTables(); }, 150);
  $('state-filter').onchange = (e) => { setState({ state: e.target.value }); refreshTables(); };
  $('select-visible').onclick = () => setSelection(visibleRuns().slice(0, 200));
  $('select-none').onclick = () => setSelection([]);
  app.sidebar = new VirtualTable($('run-list'), {
    columns: [{ key: 'name', label: 'name', width: 170 }, { key: 'state', label: 'state', width: 70 }],
    isSelected, onToggle: toggle, onOpen: toggle, header: false,
  });
}

// ------------------------------------------------------------------ pages
const chartCtx = {
  get project() { return state.project; },
  get runs() { return app.chartRuns || []; },
  xaxisFor(key) { return state.xaxis || app.stepMetrics[key] || 'step'; },
  get smoothing() { return state.smoothing; },
  get logy() { return state.logy === '1'; },
  get aggregate() { return state.aggregate; },
  get xmin() { return state.xmin; },
  get xmax() { return state.xmax; },
  get perRow() { return Number(state.plots_per_row) || (state.sidebar === 'hidden' && (state.metrics || []).length === 1 ? 1 : 2); },
};

async function chartKeys(runs) {
  const data = await getJSON('/api/keys', { project: state.project, runs: runs.map((r) => r.id) });
  app.stepMetrics = data.step_metrics || {};
  app.keys = data.keys;
  let keys = data.keys.filter((k) => k.kind === 'scalar' && !k.key.startsWith('_')).map((k) => k.key);
  if (state.metrics && state.metrics.length) keys = state.metrics.filter((m) => data.keys.some((k) => k.key === m));
  if (state.metric_filter) {
    try {
      const re = new RegExp(state.metric_filter);
      keys = keys.filter((k) => re.test(k));
    } catch { /* an unfinished pattern while typing: show everything */ }
  }
  return keys;
}

function controls() {
  const numeric = app.keys.filter((k) => k.kind === 'scalar').map((k) => k.key);
  const xaxis = el('select', { id: 'xaxis', onchange: (e) => { setState({ xaxis: e.target.value || undefined, xmin: undefined, xmax: undefined }); route(); } },
    el('option', { value: '' }, 'x: default (step or step_metric)'),
    ['step', 'time', 'relative', ...numeric].map((k) => el('option', { value: k, selected: state.xaxis === k }, k === 'time' ? 'wall time' : k === 'relative' ? 'relative time' : k)));
  const smooth = el('input', { id: 'smoothing', type: 'range', min: 0, max: 0.99, step: 0.01, value: state.smoothing || 0 });
  const smoothLabel = el('span', {}, String(state.smoothing || 0));
  smooth.oninput = (e) => { smoothLabel.textContent = e.target.value; setState({ smoothing: e.target.value === '0' ? undefined : e.target.value }); app.panel.redraw(); };
  const logy = el('input', { id: 'logy', type: 'checkbox', checked: state.logy === '1', onchange: (e) => { setState({ logy: e.target.checked ? '1' : undefined }); app.panel.redraw(); } });
  const filter = el('input', { id: 'metric-filter', type: 'search', placeholder: 'metric filter (regex)', value: state.metric_filter || '' });
  filter.oninput = debounce((e) => { setState({ metric_filter: e.target.value || undefined }); route(); }, 300);
  const aggregate = el('select', { id: 'aggregate', onchange: (e) => { setState({ aggregate: e.target.value || undefined }); app.panel.redraw(); } },
    el('option', { value: '' }, 'a line per run'),
    el('option', { value: 'group', selected: state.aggregate === 'group' }, 'mean per group, min–max band'));
  const live = el('input', { id: 'live', type: 'checkbox', checked: state.live !== '0', onchange: (e) => setState({ live: e.target.checked ? undefined : '0' }) });
  const zoomed = state.xmin || state.xmax;
  return el('div', { class: 'controls' },
    xaxis,
    el('label', {}, 'smoothing ', smooth, ' ', smoothLabel),
    el('label', {}, logy, ' log y'),
    aggregate,
    filter,
    el('label', {}, live, ' live'),
    zoomed ? el('button', { id: 'reset-zoom', onclick: () => zoom(null, null) }, 'reset zoom') : null,
    el('button', { id: 'copy-link', onclick: () => navigator.clipboard && navigator.clipboard.writeText(location.href) }, 'copy link'),
    el('button', { id: 'embed', onclick: () => embedCode() }, 'embed'),
  );
}

function embedCode() {
  const url = new URL(location.href);
  url.searchParams.set('sidebar', 'hidden');
  url.searchParams.set('navbar', 'hidden');
  url.searchParams.delete('token');
  const code = `<iframe src="${url.toString()}" width="100%" height="600" frameborder="0"></iframe>`;
  if (navigator.clipboard) navigator.clipboard.writeText(code);
  window.prompt('Embed code (a token-protected dashboard needs ?token=... added):', code);
}

function zoom(lo, hi) {
  setState({ xmin: lo === null ? undefined : String(lo), xmax: hi === null ? undefined : String(hi) });
  route();
}

async function chartsPage(main, runs, header = null) {
  app.chartRuns = runs;
  if (app.panel) app.panel.destroy();
  const host = el('div', { id: 'charts' });
  app.panel = new ChartPanel(host, chartCtx, zoom);
  const keys = await chartKeys(runs);
  const parts = [controls(), host];
  if (header) parts.unshift(header);
  if (!runs.length) host.append(el('p', { class: 'empty' }, 'Select runs in the sidebar to chart them.'));
  else if (!keys.length) host.append(el('p', { class: 'empty' }, 'The selected runs have no numeric metrics yet.'));
  main.replaceChildren(...parts);
  if (!runs.length || !keys.length) { document.body.dataset.ready = '1'; return; }
  app.panel.build(keys);
  const errors = await app.panel.loadAll();
  if (errors.length) status(`${errors.length} chart(s) failed: ${errors[0].message}`);
}

async function route() {
  applyChrome();
  const main = $('main');
  const view = state.view || 'charts';
  document.body.dataset.view = view;
  document.body.dataset.ready = '0';
  app.table = null;
  try {
    if (view === 'runs') {
      main.replaceChildren(el('div', { id: 'runs-table', class: 'vtable', style: 'height:calc(100vh - 70px)' }));
      app.table = new VirtualTable($('runs-table'), {
        columns: tableColumns(app.runs), header: true, sort: state.sort, isSelected, onToggle: toggle,
        onOpen: (run) => { setState({ view: 'run', run: run.id }, true); route(); },
        onSort: (key) => { setState({ sort: state.sort === key ? `-${key}` : key }); refreshTables(); },
      });
      refreshTables();
    } else if (view === 'run' && state.run) {
      const host = el('div');
      await runView(main, state.project, state.run, host, app.runs);
      const run = resolve(state.run);
      await chartsPage(host, run ? [run] : []);
    } else if (view === 'diff') {
      diffView(main, selectedRuns());
    } else if (view === 'system') {
      await systemView(main, state.project, selectedRuns());
    } else if (view === 'alerts') {
      await alertsView(main, state.project, app.runs);
    } else {
      await chartsPage(main, selectedRuns());
    }
  } catch (e) {
    main.replaceChildren(el('p', { class: 'error' }, String(e.message || e)));
  }
  document.body.dataset.ready = '1';
}

// ------------------------------------------------------------------ live updates
async function poll() {
  if (state.live === '0' || !state.project || app.polling) return;
  app.polling = true;
  try {
    const payload = await getJSON('/api/runs', { project: state.project, updated_after: app.now });
    const changed = rowsToRuns(payload);
    app.now = payload.now;
    let added = false;
    for (const run of changed) {
      const old = app.byId.get(run.id);
      if (old) Object.assign(old, run, { _configFlat: undefined, _summaryFlat: undefined, _search: undefined });
      else { app.runs.unshift(run); app.byId.set(run.id, run); assignColors([run]); added = true; }
    }
    if (changed.length || added) refreshTables();
    const view = state.view || 'charts';
    const live = changed.map((r) => r.id);
    if ((view === 'charts' || view === 'run') && app.panel && live.length) {
      const before = app.keys.length;
      const keys = await chartKeys(app.chartRuns || []);
      if (keys.length !== app.panel.charts.length || app.keys.length !== before) await route();
      else await app.panel.updateLive(live);
    }
  } catch (e) {
    status(`live update failed: ${e.message || e}`);
  } finally {
    app.polling = false;
  }
}

async function openProject(name) {
  setState({ project: name, runs: undefined, view: undefined }, true);
  await start();
}

async function start() {
  readURL();
  applyChrome();
  // The runs are the biggest answer: ask for them at once, alongside the projects.
  const runsPending = state.project ? getJSON('/api/runs', { project: state.project }) : null;
  if (runsPending) runsPending.catch(() => {});
  const { projects } = await getJSON('/api/projects');
  const picker = $('project-picker');
  picker.replaceChildren(el('option', { value: '' }, 'projects…'), ...projects.map((p) => el('option', { value: p.name, selected: p.name === state.project }, p.name)));
  picker.onchange = (e) => (e.target.value ? openProject(e.target.value) : (setState({ project: undefined }, true), start()));
  if (!state.project) {
    document.body.dataset.view = 'projects';
    await projectsView($('main'), openProject);
    document.body.dataset.ready = '1';
    return;
  }
  await loadRuns(runsPending);
  setupSidebar();
  refreshTables();
  await route();
}

async function main() {
  const info = getJSON('/api/info');
  info.catch(() => {});
  for (const a of document.querySelectorAll('#tabs a')) {
    a.onclick = () => { setState({ view: a.dataset.view === 'charts' ? undefined : a.dataset.view }, true); route(); };
  }
  window.addEventListener('popstate', () => start());
  window.addEventListener('resize', debounce(() => route(), 300));
  await start();
  app.info = await info;
  setInterval(poll, Math.max(0.5, app.info.poll_interval_s) * 1000);
}

main().catch((e) => { $('main').replaceChildren(el('p', { class: 'error' }, String(e.message || e))); });

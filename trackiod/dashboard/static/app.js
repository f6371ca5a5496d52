// The dashboard's entry point: reads the state from the URL, loads the project's runs, shows the page the
// state names, and polls for changes (new runs, new points) while live updates are on.
import { getJSON } from './api.js';
import { ChartPanel } from './charts.js';
import { flatOf, matches, rowsToRuns, sortRuns, tableColumns, VirtualTable } from './runs.js';
import { readURL, setState, state } from './state.js';
import { assignColors, colorFor, debounce, el, emaWeight, errorText, PALETTE, smoothingWindow } from './util.js';
import { galleryView } from './gallery.js';
import { sweepView } from './sweep.js';
import { alertsView, diffView, projectsView, runView, systemView } from './views.js';

const DEFAULT_SELECTION = 10;
const PER_ROW = ['auto', '1', '2', '3', '4', '5', '6'];
const THEME_KEY = 'trackiod-theme';
const app = {
  info: null, runs: [], byId: new Map(), keys: [], stepMetrics: {}, now: 0, panel: null, sidebar: null, table: null,
  polling: false, hidden: new Set(), badXaxis: false, groups: new Map(),
};
const $ = (id) => document.getElementById(id);

function status(text) { $('status').textContent = text; }

// Dark or light: the URL's `theme` (trackio's `__theme`) first, then the toggle's choice, else the system's.
function themeName() {
  const chosen = state.theme || localStorage.getItem(THEME_KEY);
  if (chosen === 'dark' || chosen === 'light') return chosen;
  return window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

function applyTheme() {
  const theme = themeName();
  if (document.documentElement.dataset.theme === theme) return false;
  document.documentElement.dataset.theme = theme;
  $('theme-toggle').textContent = theme === 'dark' ? '☀' : '☾';
  $('theme-toggle').title = theme === 'dark' ? 'light mode' : 'dark mode';
  return true;
}

function toggleTheme() {
  const next = themeName() === 'dark' ? 'light' : 'dark';
  localStorage.setItem(THEME_KEY, next);
  if (state.theme) setState({ theme: next });
  if (applyTheme()) redrawForTheme();
}

function redrawForTheme() {
  const view = state.view || 'charts';
  if ((view === 'charts' || view === 'run') && app.panel) app.panel.redraw();
  else if (view === 'system' || view === 'sweep') route();
}

function applyChrome() {
  applyTheme();
  document.body.classList.toggle('sidebar-hidden', state.sidebar === 'hidden');
  document.body.classList.toggle('sidebar-collapsed', state.sidebar === 'collapsed');
  document.body.classList.toggle('navbar-hidden', state.navbar === 'hidden');
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.view === (state.view || 'charts'));
}

// ------------------------------------------------------------------ runs and selection
async function loadRuns(pending = null) {
  const payload = await (pending || getJSON('/api/runs', { project: state.project, format: 'columns' }));
  performance.mark('runs-parsed');
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

// On a run's page the sidebar marks that run (the one charted); elsewhere the selection.
function isSelected(run) {
  if (state.view === 'run' && state.run) return run === resolve(state.run);
  return selectedRuns().includes(run);
}

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
  status(`${app.runs.length.toLocaleString('en-US')} runs, ${selectedRuns().length} selected`);
}

function setupSidebar() {
  $('run-search').value = state.q || '';
  $('state-filter').value = state.state || '';
  $('run-search').oninput = debounce((e) => { setState({ q: e.target.value }); refreshTables(); }, 150);
  $('state-filter').onchange = (e) => { setState({ state: e.target.value }); refreshTables(); };
  $('select-visible').onclick = () => setSelection(visibleRuns().slice(0, 200));
  $('select-none').onclick = () => setSelection([]);
  app.sidebar = new VirtualTable($('run-list'), {
    columns: [{ key: 'name', label: 'name', width: 140 }, { key: 'state', label: 'state', width: 72 }],
    isSelected, onToggle: toggle, onOpen: toggle, header: false,
  });
}

// ------------------------------------------------------------------ groups (group_by: any config key)
function groupByKey() {
  const key = state.group_by;
  if (!key) return null;
  return key.startsWith('config.') ? key.slice(7) : key;
}

// The run's group: with group_by, the value of that config key (or its run group for `group`); without, its run
// group (what aggregate=group averages over). null: no group.
function groupOf(run) {
  const key = groupByKey();
  if (!key) return run.group || null;
  const value = key === 'group' ? run.group : flatOf(run, 'config')[key];
  return value === undefined || value === null ? '(none)' : typeof value === 'object' ? JSON.stringify(value) : String(value);
}

// Group colours follow the sorted group values over all of the project's runs, so a group keeps its colour
// whichever runs are selected.
function groupColor(group) {
  if (!app.groups.has(group)) {
    const values = [...new Set(app.runs.map(groupOf).filter((g) => g !== null))];
    values.sort((a, b) => (isFinite(a) && isFinite(b) ? Number(a) - Number(b) : a.localeCompare(b)));
    app.groups = new Map(values.map((g, i) => [g, PALETTE[i % PALETTE.length]]));
  }
  return app.groups.get(group) || PALETTE[0];
}

function configKeys() {
  const counts = new Map();
  for (const r of app.runs.slice(0, 2000)) for (const k of Object.keys(flatOf(r, 'config'))) counts.set(k, (counts.get(k) || 0) + 1);
  return [...counts.keys()].sort();
}

// ------------------------------------------------------------------ pages
const chartCtx = {
  get project() { return state.project; },
  get runs() { return app.chartRuns || []; },
  xaxisFor(key) { return (!app.badXaxis && state.xaxis) || app.stepMetrics[key] || 'step'; },
  get smoothing() { return smoothingWindow(state.smoothing); },
  get ema() { return emaWeight(state.ema); },
  get logy() { return state.logy === '1'; },
  get logx() { return state.logx === '1'; },
  get aggregate() { return state.aggregate; },
  get ranks() { return ['all', 'band'].includes(state.ranks) ? state.ranks : undefined; },
  get groupBy() { return groupByKey(); },
  groupOf,
  groupLabel(group) { return groupByKey() ? `${groupByKey()}: ${group}` : `group ${group}`; },
  groupColor,
  groupRank(group) { groupColor(group); return [...app.groups.keys()].indexOf(group); },
  colorOf(run) { return groupByKey() ? groupColor(groupOf(run)) : colorFor(run.id); },
  get xmin() { return state.xmin; },
  get xmax() { return state.xmax; },
  get order() { return state.order; },
  setOrder(order) { setState({ order }); },
  get accordionHidden() { return state.accordion === 'hidden'; },
  get perRow() {
    if (state.plots_per_row === 'auto') return 'auto';
    const n = parseInt(state.plots_per_row, 10);
    if (n >= 1 && n <= 6) return n;
    return state.sidebar === 'hidden' && (state.metrics || []).length === 1 ? 1 : 2;
  },
};

// What the sweep view needs of the page: its state, and the selection its brushes and table change.
const sweepCtx = {
  get project() { return state.project; },
  state,
  setState(patch) { setState(patch); },
  select(ids) { setState({ runs: ids === null ? undefined : ids }); refreshTables(); },
  isSelected(id) { const run = resolve(id); return !!run && selectedRuns().includes(run); },
  toggle(id) { const run = resolve(id); if (run) { const current = selectedRuns(); setState({ runs: (current.includes(run) ? current.filter((r) => r !== run) : [...current, run]).map((r) => r.id) }); refreshTables(); } },
  openRun(id) { setState({ view: 'run', run: id }, true); route(); },
};

// The keys to chart, and why there are none when there are none (shown instead of an empty page).
async function chartKeys(runs) {
  const data = await getJSON('/api/keys', { project: state.project, runs: runs.map((r) => r.id) });
  app.stepMetrics = data.step_metrics || {};
  app.rankRuns = data.ranks || {};
  app.keys = data.keys;
  const scalars = data.keys.filter((k) => k.kind === 'scalar').map((k) => k.key);
  app.badXaxis = !!state.xaxis && !['step', 'time', 'relative'].includes(state.xaxis) && !scalars.includes(state.xaxis);
  let keys = scalars.filter((k) => !k.startsWith('_'));
  let empty = 'The selected runs have no numeric metrics yet.';
  if (state.metrics && state.metrics.length) {
    keys = state.metrics.filter((m) => scalars.includes(m));
    if (!keys.length) empty = `None of the metrics named in the URL (${state.metrics.join(', ')}) is logged by the selected runs.`;
  }
  if (state.metric_filter && keys.length) {
    try {
      const re = new RegExp(state.metric_filter);
      const before = keys.length;
      keys = keys.filter((k) => re.test(k));
      if (!keys.length) empty = `No metric matches the filter /${state.metric_filter}/ (${before} metrics logged).`;
    } catch { /* an unfinished pattern while typing: show everything */ }
  }
  // x = a metric: that metric against itself is a diagonal line, not a chart.
  if (state.xaxis && !app.badXaxis) keys = keys.filter((k) => k !== state.xaxis);
  keys.empty = empty;
  return keys;
}

function controls() {
  const numeric = app.keys.filter((k) => k.kind === 'scalar').map((k) => k.key);
  const xaxis = el('select', { id: 'xaxis', onchange: (e) => { setState({ xaxis: e.target.value || undefined, xmin: undefined, xmax: undefined }); route(); } },
    el('option', { value: '' }, 'x: default (step or step_metric)'),
    ['step', 'time', 'relative', ...numeric].map((k) => el('option', { value: k, selected: state.xaxis === k }, k === 'time' ? 'wall time' : k === 'relative' ? 'relative time' : k)));
  // trackio's smoothing: a centred moving-average window of 0-100 points; trackiod's EMA weight beside it.
  const window_ = smoothingWindow(state.smoothing);
  const smooth = el('input', { id: 'smoothing', type: 'range', min: 0, max: 100, step: 1, value: window_, title: 'moving-average window (points), trackio\'s scale' });
  const smoothLabel = el('span', { class: 'value' }, String(window_));
  smooth.oninput = (e) => { smoothLabel.textContent = e.target.value; setState({ smoothing: e.target.value === '0' ? undefined : e.target.value }); app.panel.redraw(); };
  const emaInput = el('input', { id: 'ema', type: 'number', min: 0, max: 0.99, step: 0.05, value: emaWeight(state.ema) || '', placeholder: '0', title: 'EMA weight in [0, 1) (used when the window is 0)' });
  emaInput.onchange = (e) => { setState({ ema: emaWeight(e.target.value) ? String(emaWeight(e.target.value)) : undefined }); app.panel.redraw(); };
  const logy = el('input', { id: 'logy', type: 'checkbox', checked: state.logy === '1', onchange: (e) => { setState({ logy: e.target.checked ? '1' : undefined }); app.panel.redraw(); } });
  const logx = el('input', { id: 'logx', type: 'checkbox', checked: state.logx === '1', onchange: (e) => { setState({ logx: e.target.checked ? '1' : undefined }); app.panel.redraw(); } });
  const perRow = el('select', { id: 'plots-per-row', title: 'charts per row', onchange: (e) => { setState({ plots_per_row: e.target.value || undefined }); route(); } },
    el('option', { value: '' }, 'per row: default'),
    PER_ROW.map((v) => el('option', { value: v, selected: state.plots_per_row === v }, `per row: ${v}`)));
  const groupBy = el('select', { id: 'group-by', title: 'colour runs by a config key', onchange: (e) => { app.groups = new Map(); app.hidden.clear(); setState({ group_by: e.target.value || undefined }); route(); } },
    el('option', { value: '' }, 'colour: per run'),
    el('option', { value: 'group', selected: state.group_by === 'group' }, 'group by: run group'),
    configKeys().map((k) => el('option', { value: k, selected: groupByKey() === k && state.group_by !== 'group' }, `group by: ${k}`)));
  const filter = el('input', { id: 'metric-filter', type: 'search', placeholder: 'metric filter (regex)', value: state.metric_filter || '' });
  filter.oninput = debounce((e) => { setState({ metric_filter: e.target.value || undefined }); route(); }, 300);
  const aggregate = el('select', { id: 'aggregate', onchange: (e) => { setState({ aggregate: e.target.value || undefined }); app.panel.redraw(); } },
    el('option', { value: '' }, 'a line per run'),
    el('option', { value: 'group', selected: state.aggregate === 'group' }, 'mean per group, min–max band'));
  if (state.group_by && !configKeys().includes(groupByKey()) && groupByKey() !== 'group') {
    groupBy.append(el('option', { value: state.group_by, selected: true }, `group by: ${groupByKey()}`));
  }
  // The rank view, offered when a charted run was logged by several ranks (docs/ranks.md).
  const ranks = Object.keys(app.rankRuns || {}).length ? el('select', { id: 'ranks', title: 'how to draw runs logged by several ranks', onchange: (e) => { setState({ ranks: e.target.value || undefined }); route(); } },
    el('option', { value: '' }, 'ranks: rank 0'),
    el('option', { value: 'band', selected: state.ranks === 'band' }, 'ranks: mean, min–max band'),
    el('option', { value: 'all', selected: state.ranks === 'all' }, 'ranks: every rank')) : null;
  const live = el('input', { id: 'live', type: 'checkbox', checked: state.live !== '0', onchange: (e) => setState({ live: e.target.checked ? undefined : '0' }) });
  const zoomed = state.xmin || state.xmax;
  return el('div', { class: 'controls' },
    xaxis,
    el('label', {}, 'smoothing ', smooth, ' ', smoothLabel),
    el('label', {}, 'EMA ', emaInput),
    el('label', {}, logx, ' log x'),
    el('label', {}, logy, ' log y'),
    perRow,
    groupBy,
    aggregate,
    ranks,
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
  app.panel.hidden = app.hidden;
  const keys = await chartKeys(runs);
  const parts = [controls(), host];
  if (header) parts.unshift(header);
  if (app.badXaxis) {
    parts.splice(parts.length - 1, 0, el('p', { class: 'warning', id: 'xaxis-unknown' },
      `x axis "${state.xaxis}" is not logged by the selected runs, so the charts use their default x axis. `
      + 'Choose step, wall time, relative time or a logged metric above.'));
  }
  if (!runs.length) host.append(el('p', { class: 'empty' }, 'Select runs in the sidebar to chart them.'));
  else if (!keys.length) host.append(el('p', { class: 'empty', id: 'no-charts' }, keys.empty));
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
  if (app.sidebar) refreshTables();
  try {
    if (view === 'runs') {
      main.replaceChildren(el('div', { id: 'runs-table', class: 'vtable', style: 'height:calc(100vh - 70px)' }));
      app.table = new VirtualTable($('runs-table'), {
        columns: tableColumns(app.runs), header: true, sort: state.sort, isSelected, onToggle: toggle,
        onOpen: (run) => { setState({ view: 'run', run: run.id }, true); route(); },
        onSort: (key) => { setState({ sort: state.sort === key ? `-${key}` : key }); refreshTables(); },
      });
      app.table.setRows(visibleRuns(), app.now);  // the sidebar was filled above
    } else if (view === 'run' && state.run) {
      const host = el('div');
      const run = resolve(state.run);
      if (run && app.sidebar) app.sidebar.reveal(run);
      if (await runView(main, state.project, state.run, host, app.runs)) await chartsPage(host, run ? [run] : []);
    } else if (view === 'gallery') {
      await galleryView(main, {
        get project() { return state.project; }, state,
        setState(patch) { setState(patch); route(); },
        selected() { return selectedRuns().map((r) => r.id); },
      });
    } else if (view === 'sweep') {
      await sweepView(main, sweepCtx);
    } else if (view === 'diff') {
      diffView(main, selectedRuns());
    } else if (view === 'system') {
      await systemView(main, state.project, selectedRuns());
    } else if (view === 'alerts') {
      await alertsView(main, state.project, app.runs, state.levels || [], (levels) => { setState({ levels }); route(); });
    } else {
      await chartsPage(main, selectedRuns());
    }
  } catch (e) {
    main.replaceChildren(el('p', { class: 'error' }, errorText(e)));
  }
  document.body.dataset.ready = '1';
}

// The runs the current page charts: a run started after the page opened joins the default selection (the newest
// runs) or a selection that names it.
function wantedChartRuns() {
  const view = state.view || 'charts';
  if (view === 'run') { const run = resolve(state.run); return run ? [run] : []; }
  return selectedRuns();
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
    if (added) app.groups = new Map();
    if (changed.length || added) refreshTables();
    const view = state.view || 'charts';
    const live = changed.map((r) => r.id);
    if ((view === 'charts' || view === 'run') && app.panel && live.length) {
      const wanted = wantedChartRuns().map((r) => r.id).join(',');
      if (wanted !== (app.chartRuns || []).map((r) => r.id).join(',')) { await route(); return; }
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
  performance.mark('start');
  readURL();
  applyChrome();
  // The runs are the biggest answer: ask for them at once, alongside the projects.
  const runsPending = state.project ? getJSON('/api/runs', { project: state.project, format: 'columns' }) : null;
  if (runsPending) runsPending.catch(() => {});
  const { projects } = await getJSON('/api/projects');
  const picker = $('project-picker');
  const known = projects.some((p) => p.name === state.project);
  // Without a project there are no runs to list nor pages of them to switch to: the sidebar and tabs go.
  document.body.classList.toggle('no-project', !known);
  picker.replaceChildren(el('option', { value: '' }, 'projects…'), ...projects.map((p) => el('option', { value: p.name, selected: p.name === state.project }, p.name)));
  picker.onchange = (e) => (e.target.value ? openProject(e.target.value) : (setState({ project: undefined }, true), start()));
  if (!state.project) {
    document.body.dataset.view = 'projects';
    await projectsView($('main'), openProject);
    document.body.dataset.ready = '1';
    return;
  }
  if (!known) {
    document.body.dataset.view = 'no-project';
    $('main').replaceChildren(el('div', { class: 'empty', id: 'no-project' },
      el('p', {}, `There is no project named "${state.project}" in this database.`),
      projects.length ? el('p', {}, 'Projects: ', projects.flatMap((p, i) => [i ? ', ' : '', el('a', { href: `?project=${encodeURIComponent(p.name)}`, 'data-project': p.name }, p.name)]))
        : el('p', {}, 'No project has been logged yet.')));
    if (runsPending) runsPending.catch(() => {});
    status('');
    document.body.dataset.ready = '1';
    return;
  }
  await loadRuns(runsPending);
  performance.mark('runs-built');
  setupSidebar();
  await route();  // which fills the sidebar first
  performance.mark('page-drawn');
}

async function main() {
  const info = getJSON('/api/info');
  info.catch(() => {});
  for (const a of document.querySelectorAll('#tabs a')) {
    a.onclick = () => { setState({ view: a.dataset.view === 'charts' ? undefined : a.dataset.view }, true); route(); };
  }
  window.addEventListener('popstate', () => start());
  // An edit written by the daemon: reload the runs (names, tags) and the page; a deleted run's page goes.
  window.addEventListener('trackiod:runs-changed', async (e) => {
    if (e.detail && e.detail.deleted) setState({ view: 'runs', run: undefined, runs: (state.runs || []).filter((r) => r !== e.detail.deleted) }, true);
    await loadRuns();
    refreshTables();
    await route();
  });
  $('theme-toggle').onclick = toggleTheme;
  if (window.matchMedia) window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => { if (applyTheme()) redrawForTheme(); });
  window.addEventListener('resize', debounce(() => route(), 300));
  await start();
  app.info = await info;
  setInterval(poll, Math.max(0.5, app.info.poll_interval_s) * 1000);
}

main().catch((e) => { $('main').replaceChildren(el('p', { class: 'error' }, errorText(e))); document.body.dataset.ready = '1'; });

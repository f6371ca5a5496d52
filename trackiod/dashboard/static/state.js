// The page's state lives in the URL, so a link (or an iframe's src) reproduces a view. trackio 0.43's parameters
// are read with trackio's meanings (project, run_ids, x_axis, smoothing on its 0-100 window scale, metrics,
// metric_filter, plots_per_row, sidebar, navbar, accordion, xmin, xmax, __theme, and its page paths /runs,
// /system, /run); trackiod's own (view, run, ema, logy, logx, group_by, order, ...) are kept. docs/dashboard.md
// lists them all.
const ALIASES = {
  selected_project: 'project', run_ids: 'runs', x_axis: 'xaxis', 'x-axis': 'xaxis', selected_run: 'run',
  selected_run_id: 'run', __theme: 'theme',
};
const LISTS = new Set(['runs', 'metrics', 'order', 'levels', 'gallery_keys']);
const KEYS = ['project', 'view', 'run', 'runs', 'metrics', 'metric_filter', 'xaxis', 'smoothing', 'ema', 'logy', 'logx',
  'sidebar', 'navbar', 'accordion', 'xmin', 'xmax', 'plots_per_row', 'group_by', 'order', 'theme', 'q', 'state', 'sort',
  'live', 'aggregate', 'token', 'sweep_metric', 'sweep_goal', 'sweep_x', 'brush', 'ranks', 'levels', 'gallery_runs', 'gallery_keys', 'step_min', 'step_max'];
// trackio's page paths; the page then also follows `view` when both are given.
const PATH_VIEWS = { '/runs': 'runs', '/system': 'system', '/run': 'run', '/metrics': 'charts' };
// trackio reads `metrics` as names only when every entry is a plain name ([\w./-]); otherwise as a pattern.
const PLAIN_NAME = /^[\w./-]+$/;

export const state = {};

export function readURL() {
  const params = new URLSearchParams(location.search);
  for (const k of KEYS) delete state[k];
  for (const [rawKey, value] of params) {
    const key = ALIASES[rawKey] || rawKey;
    if (!KEYS.includes(key)) continue;
    state[key] = LISTS.has(key) ? value.split(',').map((v) => v.trim()).filter(Boolean) : value;
  }
  // A trackiod link from before trackio's scale was followed (smoothing=0.6, an EMA weight) keeps its meaning.
  if (state.smoothing !== undefined && /^0?\.\d+$/.test(state.smoothing)) {
    if (state.ema === undefined) state.ema = state.smoothing;
    delete state.smoothing;
  }
  if (state.metrics && state.metrics.length && !state.metrics.every((m) => PLAIN_NAME.test(m))) {
    if (!state.metric_filter) state.metric_filter = params.get('metrics');
    delete state.metrics;
  }
  const pathView = PATH_VIEWS[location.pathname.replace(/\/+$/, '')];
  if (pathView && state.view === undefined && pathView !== 'charts') state.view = pathView;
  if (state.run !== undefined && state.view === undefined && params.has('selected_run_id')) state.view = 'run';
  return state;
}

// Write the state back to the address bar (replacing the entry: moving a slider is not a page to go back to).
export function writeURL(push = false) {
  const params = new URLSearchParams();
  for (const k of KEYS) {
    const v = state[k];
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && !v.length)) continue;
    params.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  // Off a trackio page path the view is in `view`, so the path goes back to the root.
  const path = PATH_VIEWS[location.pathname.replace(/\/+$/, '')] ? '/' : location.pathname;
  const url = `${path}?${params.toString()}`;
  if (url !== `${location.pathname}${location.search}`) {
    if (push) history.pushState(null, '', url);
    else history.replaceState(null, '', url);
  }
}

export function setState(patch, push = false) {
  Object.assign(state, patch);
  writeURL(push);
}

// The page's state lives in the URL, so a link (or an iframe's src) reproduces a view. Parameter names follow
// trackio's where it has one (project, runs, metrics, metric_filter, sidebar, navbar, xaxis, smoothing, xmin,
// xmax, plots_per_row); docs/dashboard.md lists them all.
const ALIASES = { selected_project: 'project', run_ids: 'runs', x_axis: 'xaxis', 'x-axis': 'xaxis', selected_run: 'run', selected_run_id: 'run' };
const LISTS = new Set(['runs', 'metrics']);
const KEYS = ['project', 'view', 'run', 'runs', 'metrics', 'metric_filter', 'xaxis', 'smoothing', 'logy', 'sidebar',
  'navbar', 'xmin', 'xmax', 'plots_per_row', 'q', 'state', 'sort', 'live', 'aggregate', 'token'];

export const state = {};

export function readURL() {
  const params = new URLSearchParams(location.search);
  for (const k of KEYS) delete state[k];
  for (const [rawKey, value] of params) {
    const key = ALIASES[rawKey] || rawKey;
    if (!KEYS.includes(key)) continue;
    state[key] = LISTS.has(key) ? value.split(',').filter(Boolean) : value;
  }
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
  const url = `${location.pathname}?${params.toString()}`;
  if (url !== `${location.pathname}${location.search}`) {
    if (push) history.pushState(null, '', url);
    else history.replaceState(null, '', url);
  }
}

export function setState(patch, push = false) {
  Object.assign(state, patch);
  writeURL(push);
}

// The pages other than charts and the runs table: projects, a run, a config diff, the system panel.
import { getJSON } from './api.js';
import { colorFor, el, flatten, fmtDuration, fmtTime, fmtValue } from './util.js';

export async function projectsView(main, open) {
  const { projects } = await getJSON('/api/projects');
  if (!projects.length) {
    main.replaceChildren(el('p', { class: 'empty' }, 'No projects yet: log a run with trackio_shim and it appears here.'));
    return;
  }
  main.replaceChildren(el('h2', {}, 'Projects'), el('div', { class: 'projects' }, projects.map((p) =>
    el('a', { href: '#', 'data-project': p.name, onclick: (e) => { e.preventDefault(); open(p.name); } },
      `${p.name} — ${p.runs} runs${p.running ? `, ${p.running} running` : ''}, last update ${fmtTime(p.last_update)}`))));
}

function kvTable(obj, diffKeys = null) {
  const flat = flatten(obj || {});
  const keys = Object.keys(flat).sort();
  if (!keys.length) return el('p', { class: 'empty' }, 'none');
  return el('table', { class: 'kv' }, keys.map((k) => el('tr', {}, el('th', {}, k),
    el('td', { class: diffKeys && diffKeys.has(k) ? 'diff' : '' }, fmtValue(flat[k])))));
}

export async function runView(main, project, runId, chartsHost) {
  const run = await getJSON('/api/run', { project, run: runId });
  const media = await getJSON('/api/media', { project, run: runId });
  const end = run.ended_at || (run.state === 'running' ? Date.now() / 1000 : run.updated_at);
  const facts = {
    id: run.id, state: run.state, started: fmtTime(run.created_at), duration: fmtDuration(end - run.created_at),
    host: run.host, group: run.group, job_type: run.job_type, tags: (run.tags || []).join(', '), notes: run.notes,
    steps: run.last_step === null ? '' : run.last_step + 1, exit_code: run.exit_code,
  };
  const energy = run.energy
    ? kvTable(run.energy)
    : el('p', { class: 'empty' }, 'No energy recorded for this run (GPU sampling stores it once it is available).');
  const mediaNode = media.items.length
    ? el('div', {}, media.items.map((m) => el('div', {}, `${m.key} @ step ${m.step}`)))
    : el('p', { class: 'empty' }, 'No media logged (images, tables and histograms show here once media is stored).');
  main.replaceChildren(
    el('h2', {}, el('span', { class: 'swatch', style: `background:${colorFor(run.id)}` }), run.name),
    kvTable(facts),
    el('h3', {}, 'Config'), kvTable(run.config),
    el('h3', {}, 'Summary'), kvTable(run.summary),
    el('h3', {}, 'Energy'), energy,
    el('h3', {}, 'Media'), mediaNode,
    el('h3', {}, 'Metrics'), chartsHost,
  );
  return run;
}

export function diffView(main, runs) {
  if (runs.length < 2) {
    main.replaceChildren(el('p', { class: 'empty' }, 'Select two or more runs to compare their config.'));
    return;
  }
  const flats = runs.map((r) => flatten(r.config || {}));
  const keys = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort();
  const differs = (k) => new Set(flats.map((f) => JSON.stringify(f[k]))).size > 1;
  let onlyDiff = true;
  const table = el('table', { class: 'kv', id: 'config-diff' });
  const render = () => {
    const shown = keys.filter((k) => !onlyDiff || differs(k));
    table.replaceChildren(
      el('tr', {}, el('th', {}, 'key'), runs.map((r) => el('th', {}, el('span', { class: 'swatch', style: `background:${colorFor(r.id)}` }), r.name))),
      ...shown.map((k) => el('tr', { 'data-key': k }, el('th', {}, k),
        flats.map((f) => el('td', { class: differs(k) ? 'diff' : '' }, fmtValue(f[k]))))),
    );
    if (!shown.length) table.append(el('tr', {}, el('td', {}, 'no differences')));
  };
  const toggle = el('input', { type: 'checkbox', checked: true, onchange: (e) => { onlyDiff = e.target.checked; render(); } });
  render();
  main.replaceChildren(el('h2', {}, `Config diff (${runs.length} runs)`), el('label', {}, toggle, ' differences only'), table);
}

export async function systemView(main, project, runs) {
  const data = await getJSON('/api/system', { project, runs: runs.map((r) => r.id) });
  if (!data.available || !data.series.length) {
    main.replaceChildren(el('h2', {}, 'System'), el('p', { class: 'empty', id: 'system-empty' },
      'No system metrics stored yet. GPU power, utilisation and memory, energy, CPU and memory appear here, '
      + 'aligned to each run\'s time, once the daemon samples them (GPU and system sampling).'));
    return;
  }
  const { systemCharts } = await import('./system.js');
  systemCharts(main, data, runs);
}

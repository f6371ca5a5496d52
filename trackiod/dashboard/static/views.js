// The pages other than charts and the runs table: projects, a run, a config diff, the system panel.
import { getJSON } from './api.js';
import { editSection } from './runedit.js';
import { colorFor, el, flatten, fmtDuration, fmtTime, fmtValue } from './util.js';

export async function projectsView(main, open) {
  const { projects } = await getJSON('/api/projects');
  if (!projects.length) {
    main.replaceChildren(el('p', { class: 'empty' }, 'No projects yet: log a run with trackio_shim and it appears here.'));
    return;
  }
  const plural = (n, word) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
  main.replaceChildren(el('h2', {}, 'Projects'), el('div', { class: 'projects' }, projects.map((p) =>
    el('a', { href: '#', 'data-project': p.name, onclick: (e) => { e.preventDefault(); open(p.name); } },
      el('span', { class: 'project-name' }, p.name),
      el('span', { class: 'project-meta' }, `${plural(p.runs, 'run')}${p.running ? `, ${p.running} running` : ''} · last update ${fmtTime(p.last_update)}`)))));
}

function kvTable(obj, diffKeys = null) {
  const flat = flatten(obj || {});
  const keys = Object.keys(flat).sort();
  if (!keys.length) return el('p', { class: 'empty' }, 'none');
  return el('table', { class: 'kv' }, keys.map((k) => el('tr', {}, el('th', {}, k),
    el('td', { class: diffKeys && diffKeys.has(k) ? 'diff' : '' }, fmtValue(flat[k])))));
}

// The run's page; returns the run, or null when there is none (the page then says so and links to the table).
export async function runView(main, project, runId, chartsHost, runs) {
  let run;
  try {
    run = await getJSON('/api/run', { project, run: runId });
  } catch (e) {
    if (!/: 404 /.test(String(e.message))) throw e;
    main.replaceChildren(el('div', { class: 'empty', id: 'run-missing' },
      el('p', {}, `There is no run "${runId}" in project "${project}" (neither an id nor a name of one of its runs).`),
      el('p', {}, el('a', { href: `?project=${encodeURIComponent(project)}&view=runs` }, 'See the project\'s runs'))));
    return null;
  }
  const [media, alerts, artifacts] = await Promise.all([
    getJSON('/api/media', { project, run: runId }),
    getJSON('/api/alerts', { project, run: runId }),
    getJSON('/api/artifacts', { project, run: runId }),
  ]);
  const end = run.ended_at || (run.state === 'running' ? Date.now() / 1000 : run.updated_at);
  const facts = {
    id: run.id, state: run.state, started: fmtTime(run.created_at), duration: fmtDuration(end - run.created_at),
    host: run.host, group: run.group, job_type: run.job_type, tags: (run.tags || []).join(', '), notes: run.notes,
    steps: run.last_step === null ? '' : run.last_step + 1, exit_code: run.exit_code,
  };
  const mediaHost = el('div', { id: 'media' });
  main.replaceChildren(
    el('h2', {}, el('span', { class: 'swatch', style: `background:${colorFor(run.id)}` }), run.name),
    kvTable(facts),
    el('details', { class: 'edit' }, el('summary', {}, 'Edit name, tags, notes'), editSection(project, run)),
    el('h3', {}, 'Config'), kvTable(run.config),
    el('h3', {}, 'Summary'), kvTable(run.summary),
    el('h3', {}, 'Energy'), energySection(run.energy),
    el('h3', {}, `Alerts (${alerts.alerts.length})`), alertsTable(alerts.alerts, runs || [], false),
    el('h3', {}, 'Media'), mediaHost,
    el('h3', {}, 'Artifacts and files'), artifactsSection(artifacts, run.files || []),
    el('h3', {}, 'Metrics'),
    // replaceChildren writes a null as the text "null": an absent hint is left out of the list instead.
    ...(run.contexts && run.contexts.length
      ? [el('p', { class: 'hint' }, `Series logged with a context are drawn as dashed lines in their metric's chart: `
        + run.contexts.map((c) => `${c.key} ${contextText(c.context)}`).join(', '))]
      : []),
    chartsHost,
  );
  if (media.keys.length) {
    const { mediaSection } = await import('./media.js');
    await mediaSection(mediaHost, project, run.id, media.keys);
  } else {
    mediaHost.append(el('p', { class: 'empty' }, 'No media logged: images, tables, histograms, HTML and arrays logged with wandb.Image, wandb.Table, … show here.'));
  }
  return run;
}

function contextText(context) {
  return `{${Object.entries(context).map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ')}}`;
}

function energySection(e) {
  if (!e) return el('p', { class: 'empty', id: 'energy-empty' }, 'No GPU energy recorded for this run (no GPU was seen in use by it).');
  const co2 = e.co2eq_kg === null ? 'no grid intensity set (TRACKIOD_GRID_G_PER_KWH)' : `${(e.co2eq_kg * 1000).toPrecision(4)} g CO2eq (${e.grid_g_per_kwh} g/kWh${e.location ? `, ${e.location}` : ''})`;
  return el('div', { id: 'energy' },
    el('table', { class: 'kv' },
      [['GPU energy', `${e.gpu_joules.toPrecision(4)} J`], ['kWh', e.gpu_kwh.toPrecision(4)], ['GPU hours', e.gpu_hours.toPrecision(4)],
        ['emissions', co2], ['estimated from power readings', `${(e.estimated_fraction * 100).toFixed(0)} %`]]
        .map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))),
    el('table', { class: 'kv' },
      el('tr', {}, ['GPU', 'model', 'seen by', 'energy (J)', 'GPU hours'].map((h) => el('th', {}, h))),
      e.gpus.map((g) => el('tr', {}, el('td', {}, `${g.host}:${g.index}`), el('td', {}, g.name), el('td', {}, g.seen_by.join(', ')),
        el('td', {}, g.joules.toPrecision(4)), el('td', {}, g.gpu_hours.toPrecision(3))))));
}

function artifactsSection(artifacts, files) {
  const rows = [
    ...artifacts.produced.map((a) => ['produced', a]),
    ...artifacts.used.map((a) => ['used', a]),
  ];
  const parts = [];
  if (rows.length) {
    parts.push(el('table', { class: 'kv', id: 'artifacts-table' },
      el('tr', {}, ['', 'artifact', 'type', 'aliases', 'files', 'size', 'digest'].map((h) => el('th', {}, h))),
      rows.map(([how, a]) => el('tr', { 'data-how': how },
        el('td', {}, how), el('td', {}, `${a.project}/${a.name}:${a.version}`), el('td', {}, a.type),
        el('td', {}, a.aliases.join(', ')), el('td', {}, String(a.file_count)), el('td', {}, fmtValue(a.size)),
        el('td', { class: 'mono' }, String(a.digest).slice(0, 12))))));
  }
  if (files.length) {
    parts.push(el('table', { class: 'kv', id: 'files-table' },
      el('tr', {}, ['saved file', 'size', 'policy', 'sha256'].map((h) => el('th', {}, h))),
      files.map((f) => el('tr', {}, el('td', {}, f.name), el('td', {}, fmtValue(f.size)), el('td', {}, f.policy),
        el('td', { class: 'mono' }, String(f.sha256).slice(0, 12))))));
  }
  if (!parts.length) return el('p', { class: 'empty' }, 'No artifacts produced or used, no files saved.');
  return el('div', {}, parts);
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
  if (!runs.length) {
    main.replaceChildren(el('h2', {}, 'System'), el('p', { class: 'empty', id: 'system-empty' }, 'Select runs in the sidebar to see their hosts\' GPUs, CPU and memory.'));
    return;
  }
  const width = Math.max(200, Math.floor((main.clientWidth - 60) / 2));
  const data = await getJSON('/api/system', { project, runs: runs.map((r) => r.id), width });
  if (!data.charts.length && !Object.keys(data.energy).length) {
    main.replaceChildren(el('h2', {}, 'System'), el('p', { class: 'empty', id: 'system-empty' },
      data.available
        ? 'No system samples cover the selected runs\' hosts and times (was the daemon sampling while they ran? TRACKIOD_SAMPLE_INTERVAL_S).'
        : 'No system metrics stored yet: the daemon samples GPUs (through NVML), CPU and memory while runs are live.'));
    return;
  }
  const { systemCharts } = await import('./system.js');
  systemCharts(main, data, runs);
}

// The alerts panel: a toggle per level (with its count) filters the list; the levels shown are kept in the URL
// (``levels=WARN,ERROR``; none named: every level).
const LEVELS = ['INFO', 'WARN', 'ERROR'];
export async function alertsView(main, project, runs, levels = [], setLevels = () => {}) {
  const shown = levels.map((l) => l.toUpperCase()).filter((l) => LEVELS.includes(l));
  const { alerts, levels: counts = {} } = await getJSON('/api/alerts', { project, level: shown });
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const chips = LEVELS.map((level) => {
    const on = !shown.length || shown.includes(level);
    return el('button', {
      type: 'button', class: `level-filter level ${level.toLowerCase()}${on ? ' on' : ''}`, 'data-level': level, 'aria-pressed': String(on),
      onclick: () => {
        const next = new Set(shown.length ? shown : LEVELS);
        if (next.has(level)) next.delete(level); else next.add(level);
        setLevels(next.size === LEVELS.length ? [] : [...next]);
      },
    }, `${level} ${counts[level] || 0}`);
  });
  main.replaceChildren(el('h2', {}, `Alerts (${total})`), el('div', { class: 'controls', id: 'alert-levels' }, 'levels: ', ...chips),
    shown.length && !alerts.length && total ? el('p', { class: 'empty', id: 'alerts-filtered' }, `No ${shown.join(' or ')} alerts; ${total} of other levels.`) : alertsTable(alerts, runs, true));
}

export function alertsTable(alerts, runs, withRun) {
  if (!alerts.length) return el('p', { class: 'empty', id: 'alerts-empty' }, 'No alerts. run.alert(title, text, level) records one here.');
  const name = (id, fallback) => (runs.find((r) => r.id === id) || { name: fallback || id }).name;
  return el('table', { class: 'kv alerts', id: 'alerts-table' },
    el('tr', {}, ['when', 'level', withRun ? 'run' : null, 'step', 'title', 'text', 'delivery'].filter(Boolean).map((h) => el('th', {}, h))),
    alerts.map((a) => el('tr', { 'data-level': a.level },
      el('td', {}, fmtTime(a.ts)),
      el('td', {}, el('span', { class: `level ${String(a.level).toLowerCase()}` }, a.level)),
      withRun ? el('td', {}, el('a', { href: `?project=${encodeURIComponent(a.project)}&view=run&run=${encodeURIComponent(a.run_id)}` }, name(a.run_id, a.run_name))) : null,
      el('td', {}, a.step === null ? '' : String(a.step)),
      el('td', {}, el('b', {}, a.title)),
      el('td', { class: 'text' }, a.text),
      el('td', { title: a.last_error || '' }, a.status + (a.attempts > 1 ? ` (${a.attempts} tries)` : '')))));
}

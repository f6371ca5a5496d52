// The runs: rows from /api/runs, filtering, sorting, and a virtual table that draws only the rows in view, so
// 10,000 runs cost the same to show as 30.
import { colorFor, el, flatten, fmtDuration, fmtTime, fmtValue } from './util.js';

const ROW = 24;
// The first column: the checkbox, and in the header the number of runs (up to 6 digits without an ellipsis).
const FIRST = 64;

export function rowsToRuns(payload) {
  if (payload.format === 'columns') return columnsToRuns(payload);
  const cols = payload.columns;
  return payload.rows.map((r) => {
    const run = {};
    for (let i = 0; i < cols.length; i++) run[cols[i]] = r[i];
    return run;
  });
}

// The columnar answer (/api/runs?format=columns): each field, config key and summary key named once. A run's
// config and summary objects are built from the columns only when something reads them (the visible rows, a
// sort or a group by a config key), not for all 10,000 runs at load. They arrive flattened, so they serve as
// their own flat forms; a live update that assigns a nested config (row answers) is flattened as before.
function pick(entries, i) {
  const out = {};
  for (const [key, values] of entries) {
    const v = values[i];
    if (v !== null) out[key] = v;
  }
  return out;
}

class ColumnRun {
  constructor(columns, i) {
    this._columns = columns;
    this._i = i;
    this._parts = { config: undefined, summary: undefined };
    this._flat = { config: undefined, summary: undefined };
    this._nested = false;
    this._own = undefined;
  }

  part(name) {
    if (this._parts[name] === undefined) this._parts[name] = pick(this._columns[name], this._i);
    return this._parts[name];
  }

  flat(name) {
    if (this._flat[name] === undefined) this._flat[name] = this._nested ? flatten(this.part(name)) : this.part(name);
    return this._flat[name];
  }

  get config() { return this.part('config'); }
  set config(v) { this._parts.config = v; this._nested = true; }
  get summary() { return this.part('summary'); }
  set summary(v) { this._parts.summary = v; this._nested = true; }
  get _configFlat() { return this.flat('config'); }
  set _configFlat(v) { this._flat.config = v; }
  get _summaryFlat() { return this.flat('summary'); }
  set _summaryFlat(v) { this._flat.summary = v; }
}

// The base fields (id, name, state, ...) are read from their columns too, through accessors on a class made for
// this answer, so building 10,000 runs writes no field; a field set later (a live update) is kept per run.
function columnsToRuns(payload) {
  const columns = { config: Object.entries(payload.config), summary: Object.entries(payload.summary) };
  class AnswerRun extends ColumnRun {}
  for (const [name, values] of Object.entries(payload.base)) {
    Object.defineProperty(AnswerRun.prototype, name, {
      get() { return this._own !== undefined && name in this._own ? this._own[name] : values[this._i]; },
      set(v) { if (this._own === undefined) this._own = {}; this._own[name] = v; },
      enumerable: true,
      configurable: true,
    });
  }
  const runs = new Array(payload.n);
  for (let i = 0; i < payload.n; i++) runs[i] = new AnswerRun(columns, i);
  COLUMNS_OF.set(runs, columns);
  return runs;
}

// The columns a run list was built from (columnsToRuns), so the table's column choice counts keys in them.
const COLUMNS_OF = new WeakMap();

// How many of the first `sample` runs have each config (or summary) key: counted in the columns the runs came
// from, without building 2,000 runs' objects; runs added later by live updates (at the front) are read one by one.
function keyCounts(runs, part, sample) {
  const counts = new Map();
  const columns = COLUMNS_OF.get(runs);
  const add = (key, n) => { if (n) counts.set(key, (counts.get(key) || 0) + n); };
  let first = 0;
  if (columns) {
    while (first < sample && !(runs[first] instanceof ColumnRun)) first++;
    for (const [key, values] of columns[part]) {
      let n = 0;
      const end = Math.min(values.length, sample - first);
      for (let i = 0; i < end; i++) if (values[i] !== null) n++;
      add(key, n);
    }
  }
  for (let i = 0; i < (columns ? first : sample); i++) for (const k of Object.keys(flatOf(runs[i], part))) add(k, 1);
  return counts;
}

export function duration(run, now) {
  const end = run.ended_at || (run.state === 'running' ? now : run.updated_at);
  return end - run.created_at;
}

export function flatOf(run, part) {
  const cacheKey = `_${part}Flat`;
  if (!run[cacheKey]) run[cacheKey] = flatten(run[part] || {});
  return run[cacheKey];
}

export function matches(run, query, stateFilter) {
  if (stateFilter && run.state !== stateFilter) return false;
  if (!query) return true;
  const q = query.toLowerCase();
  if (!run._search) {
    run._search = [run.name, run.id, run.group, run.host, run.job_type, ...(run.tags || [])]
      .filter(Boolean).join(' ').toLowerCase();
  }
  return run._search.includes(q);
}

export function sortRuns(runs, sort, now) {
  if (!sort) return runs;
  const desc = sort.startsWith('-');
  const key = desc ? sort.slice(1) : sort;
  const get = (r) => {
    if (key === 'duration') return duration(r, now);
    if (key.startsWith('config.')) return flatOf(r, 'config')[key.slice(7)];
    if (key.startsWith('summary.')) return flatOf(r, 'summary')[key.slice(8)];
    if (key === 'tags') return (r.tags || []).join(',');
    return r[key];
  };
  const out = runs.slice();
  out.sort((a, b) => {
    const va = get(a);
    const vb = get(b);
    if (va === vb) return 0;
    if (va === undefined || va === null) return 1;
    if (vb === undefined || vb === null) return -1;
    const cmp = typeof va === 'number' && typeof vb === 'number' ? va - vb : String(va).localeCompare(String(vb));
    return desc ? -cmp : cmp;
  });
  return out;
}

// Columns: the fixed ones, then config and summary keys found in the runs (the most common first).
export function tableColumns(runs, limit = 24) {
  const base = [
    { key: 'name', label: 'name', width: 200 },
    { key: 'state', label: 'state', width: 80 },
    { key: 'duration', label: 'duration', width: 80 },
    { key: 'created_at', label: 'started', width: 150 },
    { key: 'host', label: 'host', width: 110 },
    { key: 'tags', label: 'tags', width: 120 },
    { key: 'group', label: 'group', width: 100 },
    { key: 'last_step', label: 'steps', width: 70 },
  ];
  const extra = [];
  for (const part of ['config', 'summary']) {
    const counts = keyCounts(runs, part, Math.min(runs.length, 2000));
    const keys = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, limit).map((e) => e[0]);
    for (const k of keys) extra.push({ key: `${part}.${k}`, label: `${part === 'config' ? 'c' : 's'}:${k}`, width: 110 });
  }
  return [...base, ...extra];
}

export function cellText(run, key, now) {
  switch (key) {
    case 'duration': return fmtDuration(duration(run, now));
    case 'created_at': return fmtTime(run.created_at);
    case 'tags': return (run.tags || []).join(', ');
    case 'last_step': return run.last_step === null || run.last_step === undefined ? '' : String(run.last_step + 1);
    default:
      if (key.startsWith('config.')) return fmtValue(flatOf(run, 'config')[key.slice(7)]);
      if (key.startsWith('summary.')) return fmtValue(flatOf(run, 'summary')[key.slice(8)]);
      return fmtValue(run[key]);
  }
}

export class VirtualTable {
  // options: columns, isSelected(run), onToggle(run), onOpen(run), sort, onSort(key), header (bool)
  constructor(container, options) {
    this.container = container;
    this.options = options;
    this.rows = [];
    this.now = Date.now() / 1000;
    // The header is its own node, kept across scrolls (rebuilt only when the count, sort or columns change), so a
    // scroll redraws the rows alone and a click on a column name never lands on a header being replaced.
    this.head = options.header ? el('div', { class: 'row head' }) : null;
    this.headState = '';
    this.body = el('div');
    this.spacer = el('div', { class: 'spacer' }, this.head, this.body);
    this.container.replaceChildren(this.spacer);
    this.container.addEventListener('scroll', () => this.render());
    this.pending = false;
  }

  // Scroll so that `run` is in view (the run page's own run in the sidebar).
  reveal(run) {
    const i = this.rows.indexOf(run);
    if (i < 0) return;
    const top = (this.options.header ? ROW : 0) + i * ROW;
    if (top < this.container.scrollTop || top + ROW > this.container.scrollTop + this.container.clientHeight) {
      this.container.scrollTop = Math.max(0, top - this.container.clientHeight / 2);
    }
    this.render();
  }

  setRows(rows, now) {
    this.rows = rows;
    this.now = now;
    this.render();
  }

  render() {
    const { columns, header } = this.options;
    const top = header ? ROW : 0;
    const totalWidth = columns.reduce((w, c) => w + c.width, FIRST);
    this.spacer.style.height = `${top + this.rows.length * ROW}px`;
    this.spacer.style.width = `${totalWidth}px`;
    const first = Math.max(0, Math.floor((this.container.scrollTop - top) / ROW) - 5);
    const count = Math.ceil(this.container.clientHeight / ROW) + 10;
    // Columns too: the rows draw only the columns in view (and a screen's width either side); the header draws
    // them all (one row), so every column's name is there to find and click.
    const left = this.container.scrollLeft - this.container.clientWidth;
    const right = this.container.scrollLeft + 2 * this.container.clientWidth;
    let skipped = 0;
    let x = FIRST;
    const shown = [];
    for (const c of columns) {
      if (x + c.width < left) skipped += c.width;
      else if (x <= right) shown.push(c);
      x += c.width;
    }
    const gap = skipped ? el('div', { class: 'cell gap', style: `width:${skipped}px` }) : null;
    const nodes = [];
    if (header) {
      const headState = `${this.rows.length}|${this.options.sort}|${columns.map((c) => c.key).join(',')}`;
      if (headState !== this.headState) {
        this.headState = headState;
        const cells = columns.map((c) => {
          const mark = this.options.sort === c.key ? ' ▲' : this.options.sort === `-${c.key}` ? ' ▼' : '';
          return el('div', { class: 'cell', style: `width:${c.width}px`, title: c.key, onclick: () => this.options.onSort(c.key) }, c.label + mark);
        });
        this.head.replaceChildren(
          el('div', { class: 'cell count', style: `width:${FIRST}px`, title: `${this.rows.length} runs` }, String(this.rows.length)), ...cells);
      }
      this.head.style.cssText = `top:${this.container.scrollTop}px;width:${totalWidth}px`;
    }
    for (let i = first; i < Math.min(this.rows.length, first + count); i++) {
      const run = this.rows[i];
      const selected = this.options.isSelected(run);
      const box = el('input', { type: 'checkbox', checked: selected, 'aria-label': `select ${run.name}` });
      box.addEventListener('click', (e) => { e.stopPropagation(); this.options.onToggle(run); });
      const cells = shown.map((c) => {
        if (c.key === 'name') {
          return el('div', { class: 'cell', style: `width:${c.width}px`, 'data-col': c.key, title: `${run.name} (${run.id})` },
            el('span', { class: 'swatch', style: `background:${colorFor(run.id)}` }), run.name);
        }
        if (c.key === 'state') {
          return el('div', { class: 'cell', style: `width:${c.width}px`, 'data-col': c.key }, el('span', { class: `state ${run.state}` }, run.state));
        }
        const text = cellText(run, c.key, this.now);
        return el('div', { class: 'cell', style: `width:${c.width}px`, 'data-col': c.key, title: text }, text);
      });
      nodes.push(el('div', {
        class: `row${selected ? ' selected' : ''}`, style: `top:${top + i * ROW}px;width:${totalWidth}px`,
        'data-run': run.id, onclick: () => this.options.onOpen(run),
      }, el('div', { class: 'cell', style: `width:${FIRST}px` }, box), gap && gap.cloneNode(), ...cells));
    }
    this.body.replaceChildren(...nodes);
  }
}

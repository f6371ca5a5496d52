// Draws /api/system's series (documented in docs/dashboard.md): one chart per key, x in seconds since each
// run's start, one line per run. The daemon stores no system series yet; this renders them once it does.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { colorFor, el } from './util.js';

export function systemCharts(main, data, runs) {
  const byKey = new Map();
  for (const s of data.series) {
    if (!byKey.has(s.key)) byKey.set(s.key, []);
    byKey.get(s.key).push(s);
  }
  const grid = el('div', { class: 'grid', style: '--per-row:2' });
  main.replaceChildren(el('h2', {}, 'System'), grid);
  for (const [key, list] of byKey) {
    const node = el('div', { class: 'chart', 'data-key': key }, el('h4', {}, key));
    grid.append(node);
    const xs = [...new Set(list.flatMap((s) => s.x))].sort((a, b) => a - b);
    const cols = list.map((s) => {
      const at = new Map(s.x.map((x, i) => [x, s.y[i]]));
      return xs.map((x) => (at.has(x) ? at.get(x) : null));
    });
    const name = (id) => (runs.find((r) => r.id === id) || { name: id }).name;
    new uPlot({
      width: Math.max(200, node.clientWidth - 14), height: 200, legend: { show: true },
      series: [{ label: 'seconds' }, ...list.map((s) => ({ label: name(s.run), stroke: colorFor(s.run), spanGaps: true, points: { show: false } }))],
    }, [xs, ...cols], node);
  }
}

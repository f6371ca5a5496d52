// The media gallery: the images (and video, audio) logged by the project's runs side by side, newest step first,
// filtered by run (the selected runs, or all), key and step range; the filters live in the URL.
import { getJSON } from './api.js';
import { colorFor, el } from './util.js';

const PAGE = 60;

function mediaUrl(path) {
  const token = new URLSearchParams(location.search).get('token');
  return `/media/${path.split('/').map(encodeURIComponent).join('/')}${token ? `?token=${encodeURIComponent(token)}` : ''}`;
}

function card(item) {
  const src = mediaUrl(item.path);
  const body = item.kind === 'video' ? el('video', { src, controls: true, preload: 'metadata' })
    : item.kind === 'audio' ? el('audio', { src, controls: true, preload: 'none' })
      : el('img', { src, loading: 'lazy', alt: item.caption || `${item.key} at step ${item.step}` });
  return el('figure', { class: 'gallery-item', 'data-run': item.run, 'data-key': item.key, 'data-step': String(item.step) },
    body,
    el('figcaption', {},
      el('span', { class: 'swatch', style: `background:${colorFor(item.run)}` }), el('b', {}, item.run_name || item.run),
      el('span', { class: 'hint' }, ` ${item.key} · step ${item.step}`),
      item.caption ? el('div', { class: 'caption' }, item.caption) : null));
}

// ctx: project, state, setState(patch), selected() (the selected run ids).
export async function galleryView(main, ctx) {
  const { state } = ctx;
  const scope = state.gallery_runs === 'all' ? 'all' : 'selected';
  const runs = scope === 'all' ? undefined : ctx.selected();
  const params = {
    project: ctx.project, runs, keys: state.gallery_keys, step_min: state.step_min, step_max: state.step_max, limit: PAGE,
  };
  const first = await getJSON('/api/gallery', params);
  const grid = el('div', { id: 'gallery', class: 'gallery' }, first.items.map(card));
  let shown = first.items.length;
  const more = el('button', { id: 'gallery-more', type: 'button' }, 'more');
  more.onclick = async () => {
    const next = await getJSON('/api/gallery', { ...params, offset: shown });
    grid.append(...next.items.map(card));
    shown += next.items.length;
    more.hidden = shown >= next.total;
    count.textContent = `${shown} of ${next.total}`;
  };
  more.hidden = shown >= first.total;
  const count = el('span', { id: 'gallery-count', class: 'hint' }, `${shown} of ${first.total}`);
  const reroute = (patch) => ctx.setState(patch);
  const scopeSel = el('select', { id: 'gallery-runs', onchange: (e) => reroute({ gallery_runs: e.target.value === 'all' ? 'all' : undefined }) },
    el('option', { value: 'selected', selected: scope === 'selected' }, `runs: the ${runs ? runs.length : ''} selected`),
    el('option', { value: 'all', selected: scope === 'all' }, 'runs: all of the project'));
  const chosen = new Set(state.gallery_keys || []);
  const keySel = el('select', { id: 'gallery-key', onchange: (e) => reroute({ gallery_keys: e.target.value ? [e.target.value] : undefined }) },
    el('option', { value: '' }, 'keys: all'),
    first.keys.map((k) => el('option', { value: k.key, selected: chosen.has(k.key) }, `${k.key} (${k.count})`)));
  const [lo, hi] = first.steps;
  const stepInput = (id, name, value, placeholder) => el('input', {
    id, type: 'number', value: value ?? '', placeholder: placeholder ?? '', style: 'width:90px',
    onchange: (e) => reroute({ [name]: e.target.value === '' ? undefined : String(parseInt(e.target.value, 10)) }),
  });
  main.replaceChildren(
    el('div', { class: 'controls' }, scopeSel, keySel,
      el('label', {}, 'steps ', stepInput('gallery-step-min', 'step_min', state.step_min, lo), ' – ', stepInput('gallery-step-max', 'step_max', state.step_max, hi)),
      count),
    first.items.length ? grid : el('p', { class: 'empty', id: 'gallery-empty' }, first.keys.length
      ? 'No media matches these filters.'
      : `The ${scope === 'all' ? '' : 'selected '}runs logged no images, video or audio (wandb.Image, wandb.Video, wandb.Audio).`),
    more);
}

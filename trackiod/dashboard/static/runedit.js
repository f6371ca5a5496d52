// A run's name, tags and notes, edited on its page, and its deletion. The page never writes the store: the
// server passes each edit to the daemon (the single writer) and answers with the run as stored, which is shown.
// After a change the page reloads its runs ('trackiod:runs-changed' on window).
import { postJSON } from './api.js';
import { el } from './util.js';

export function editSection(project, run) {
  const name = el('input', { id: 'edit-name', type: 'text', value: run.name || '', maxlength: 128, 'aria-label': 'run name' });
  const tags = el('input', { id: 'edit-tags', type: 'text', value: (run.tags || []).join(', '), placeholder: 'tag, tag', 'aria-label': 'tags' });
  const notes = el('textarea', { id: 'edit-notes', rows: 3, 'aria-label': 'notes' });
  notes.value = run.notes || '';
  const message = el('span', { id: 'edit-message', class: 'hint' });
  const changed = (detail) => window.dispatchEvent(new CustomEvent('trackiod:runs-changed', { detail }));
  const save = el('button', { id: 'edit-save', type: 'button' }, 'Save');
  save.onclick = async () => {
    message.textContent = 'saving…';
    try {
      const stored = await postJSON('/api/run/edit', {
        project, run: run.id, name: name.value,
        tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean), notes: notes.value,
      });
      message.textContent = `saved: ${stored.name}`;
      changed({ run: stored.id });
    } catch (e) {
      message.textContent = `not saved: ${e.message}`;
    }
  };
  const remove = el('button', { id: 'edit-delete', type: 'button', class: 'danger' }, 'Delete run');
  remove.onclick = async () => {
    if (!window.confirm(`Delete run "${run.name}" (${run.id}) and all its data? This cannot be undone.`)) return;
    try {
      await postJSON('/api/run/delete', { project, run: run.id });
      changed({ deleted: run.id });
    } catch (e) {
      message.textContent = `not deleted: ${e.message}`;
    }
  };
  return el('div', { id: 'run-edit', class: 'run-edit' },
    el('label', {}, 'name ', name), el('label', {}, 'tags ', tags), el('label', { class: 'notes' }, 'notes ', notes),
    el('div', {}, save, ' ', remove, ' ', message));
}

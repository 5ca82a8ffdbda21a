// Exemplar diagnostics: per metric family and source, the samples and exemplars that arrived
// (`/api/v1/status/exemplars`), with the families that get samples but no exemplars flagged, and
// the checklist of where exemplars go missing (the Flask example README's, served by Amber).

import { data, el, formatTime, messages, text } from './api.js';

export function exemplarsPage(main) {
  const out = el('div', { id: 'messages' });
  const onlyFlagged = el('input', { type: 'checkbox', id: 'only-flagged' });
  const result = el('div', { id: 'families' });
  const checklist = el('div', { class: 'checklist', id: 'checklist' });
  main.append(
    el('h2', {}, 'Exemplars by metric family'),
    el('p', { class: 'muted' }, 'What arrived since Amber started, per family and source. Families with samples but no exemplars are flagged: if they should carry trace ids, see the checklist below.'),
    el('div', { class: 'controls' }, el('label', {}, onlyFlagged, 'Only flagged families')),
    out, result,
    el('h2', {}, 'Where exemplars go missing'),
    checklist,
  );
  let rows = [];
  const render = () => {
    const shown = rows.filter((r) => !onlyFlagged.checked || flagged(r));
    if (!rows.length) {
      result.replaceChildren(el('p', { class: 'muted' }, 'Nothing has arrived yet for this tenant.'));
      return;
    }
    result.replaceChildren(el('div', { class: 'table-wrap' }, el('table', { id: 'families-table' },
      el('tr', {}, ['Family', 'Source', 'Samples', 'Exemplars', 'Last sample', 'Last exemplar', ''].map((h, i) => el('th', { class: i >= 2 && i <= 3 ? 'num' : '' }, h))),
      shown.map((r) => el('tr', { class: flagged(r) ? 'flagged' : '', 'data-family': r.family, 'data-source': r.source },
        el('td', { class: 'mono' }, r.family),
        el('td', {}, r.source === 'otlp' ? 'OTLP' : 'remote write'),
        el('td', { class: 'num' }, r.samples.toLocaleString()),
        el('td', { class: 'num' }, r.exemplars.toLocaleString()),
        el('td', {}, r.lastSample === null ? '—' : formatTime(r.lastSample)),
        el('td', {}, r.lastExemplar === null ? '—' : formatTime(r.lastExemplar)),
        el('td', {}, flagged(r) ? el('span', { class: 'badge' }, 'no exemplars') : ''))))));
  };
  onlyFlagged.addEventListener('change', render);
  data('api/v1/status/exemplars')
    .then((d) => {
      // Flagged families first, then by name.
      rows = d.sort((a, b) => Number(flagged(b)) - Number(flagged(a)) || a.family.localeCompare(b.family));
      render();
    })
    .catch((e) => messages(out, { error: e.message }));
  text('ui/exemplar-checklist.html')
    .then((html) => {
      // Amber's own rendering of a file in its repository, not user input.
      checklist.innerHTML = html;
      checklist.querySelector('h2')?.remove();
    })
    .catch((e) => checklist.replaceChildren(e.message));
}

const flagged = (r) => r.samples > 0 && r.exemplars === 0;

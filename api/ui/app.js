// The page's router: `#/<page>/<rest>?<params>` picks one of the pages below, which renders into
// <main>. Every page's state is in its URL, so a link or a reload shows the same thing.

import { setTenant, tenant } from './api.js';
import { queryPage } from './query.js';
import { tracePage } from './trace.js';
import { exemplarsPage } from './exemplars.js';
import { statusPage } from './status.js';

const pages = { query: queryPage, trace: tracePage, exemplars: exemplarsPage, status: statusPage };

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, search = ''] = hash.split('?');
  const [name, ...rest] = path.split('/');
  const page = pages[name] ? name : 'query';
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  const main = document.getElementById('page');
  main.replaceChildren();
  main.dataset.page = page;
  pages[page](main, { rest: rest.map(decodeURIComponent).join('/'), params: new URLSearchParams(search) });
}

const THEME_KEY = 'amber.theme';

function applyTheme() {
  const t = localStorage.getItem(THEME_KEY);
  if (t) document.documentElement.dataset.theme = t;
  else delete document.documentElement.dataset.theme;
}

document.getElementById('theme').addEventListener('click', () => {
  const dark = getComputedStyle(document.documentElement).getPropertyValue('--dark').trim() === '1';
  localStorage.setItem(THEME_KEY, dark ? 'light' : 'dark');
  applyTheme();
  route();
});

const tenantInput = document.getElementById('tenant');
tenantInput.value = tenant();
tenantInput.addEventListener('change', () => {
  setTenant(tenantInput.value.trim());
  route();
});

applyTheme();
window.addEventListener('hashchange', route);
route();

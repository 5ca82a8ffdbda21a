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
const systemDark = matchMedia('(prefers-color-scheme: dark)');

// The toggle's choice, else the system's.
function applyTheme() {
  document.documentElement.dataset.theme = localStorage.getItem(THEME_KEY) || (systemDark.matches ? 'dark' : 'light');
}

document.getElementById('theme').addEventListener('click', () => {
  localStorage.setItem(THEME_KEY, document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark');
  applyTheme();
  route(); // The graph's canvas takes its colours when drawn.
});
systemDark.addEventListener('change', () => {
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

// The demo chat: messages from the hub's demo API, sent through the kit's outbox (so a
// message written offline goes out when the connection returns), notifications through the
// hub, and the whole app available offline from the service worker's cache.
import { Tidings, features } from '/tidings/tidings.js';

const push = new Tidings({ serviceWorker: '/sw.js', topics: ['chat'] });
const $ = (id) => document.getElementById(id);
const pending = new Map(); // outbox id -> message shown as pending
let messages = [];

function render() {
  const me = localStorage.getItem('author');
  const list = $('messages');
  list.replaceChildren(...[...messages, ...pending.values()].map((m) => {
    const item = document.createElement('li');
    if (m.author === me) item.classList.add('mine');
    if (m.pending) item.classList.add('pending');
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.author;
    const when = document.createElement('span');
    when.className = 'when';
    when.textContent = new Date(m.at * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const text = document.createElement('div');
    text.textContent = m.text;
    item.append(who, when, text);
    return item;
  }));
  list.lastElementChild?.scrollIntoView({ block: 'end' });
}

async function load() {
  try {
    const answer = await fetch('/demo/api/messages');
    if (answer.ok) messages = (await answer.json()).messages;
    // The service worker answers from its cache when the network does not.
    showNetwork(answer.headers.get('x-tidings-cache') !== 'hit' && navigator.onLine);
  } catch {
    showNetwork(false);
  }
  render();
}

function showNetwork(online = navigator.onLine) {
  $('network').textContent = online ? 'online' : 'offline';
  $('network').classList.toggle('off', !online);
}

/** Shows `text`, with a button that runs `action.run` when there is an action. */
function showNotice(text, action) {
  const notice = $('notice');
  notice.replaceChildren(text);
  if (action) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = action.label;
    button.addEventListener('click', () => {
      notice.hidden = true;
      action.run();
    });
    notice.append(' ', button);
  }
  notice.hidden = false;
}

async function showNotifyButton() {
  const state = await push.state().catch(() => ({ supported: false }));
  $('notify').hidden = !state.supported || state.permission === 'denied';
  $('notify').textContent = state.subscribed ? 'Turn off notifications' : 'Turn on notifications';
  $('notify').dataset.subscribed = state.subscribed ? 'yes' : 'no';
}

$('compose').addEventListener('submit', async (event) => {
  event.preventDefault();
  const author = $('author').value.trim();
  const text = $('text').value.trim();
  if (!author || !text) return;
  localStorage.setItem('author', author);
  const id = await push.send('/demo/api/messages', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ author, text }),
  });
  pending.set(id, { author, text, at: Date.now() / 1000, pending: true });
  $('text').value = '';
  render();
});

$('notify').addEventListener('click', async () => {
  try {
    if ($('notify').dataset.subscribed === 'yes') await push.unsubscribe();
    else await push.subscribe();
    $('notice').hidden = true;
  } catch (e) {
    showNotice(`Notifications are not on: ${e.message}`);
  }
  showNotifyButton();
});

push.onOutbox(async (event) => {
  if (event.result === 'retry') return;
  if (event.result === 'set-aside') {
    // Kept in the outbox, and shown as pending, until the user says.
    const why = event.status ? `HTTP ${event.status}` : event.error;
    showNotice(`A message could not be sent yet (${why}).`, { label: 'Try again', run: () => push.retryOutbox(event.id) });
    return;
  }
  pending.delete(event.id);
  if (event.result === 'failed') showNotice(`A message could not be sent (HTTP ${event.status}).`);
  await load();
});

addEventListener('online', () => showNetwork(true));
addEventListener('offline', () => showNetwork(false));
document.addEventListener('visibilitychange', () => { if (!document.hidden) { load(); push.badge(0); } });

$('author').value = localStorage.getItem('author') || '';
showNetwork();
await load();
setInterval(() => { if (!document.hidden && navigator.onLine) load(); }, 3000);
if (features().serviceWorker) {
  push.sync().then(showNotifyButton).catch((e) => console.warn('tidings sync', e));
  push.periodicRefresh(15 * 60 * 1000).catch(() => {});
  push.badge(0).catch(() => {});
}

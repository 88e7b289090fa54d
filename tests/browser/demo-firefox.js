// The demo app of `tidings hub --demo` in a real Firefox ESR (driven over WebDriver BiDi,
// which Firefox speaks itself), subscribed through `tidings serve`. Prints what it saw as JSON.
// It asks the test (a line on stdout, answered on stdin) to restart the push service.
// Usage: node --experimental-websocket demo-firefox.js <firefox> <profile> <home> <hub url>
//          <push service metrics url> <hub API key> <screenshot.png>
const fs = require('node:fs');
const { Firefox } = require('./bidi.js');
const { until, run } = require('./wait.js');

const [binary, profile, home, hub, metrics, apiKey, screenshot] = process.argv.slice(2);
const auth = { authorization: `Bearer ${apiKey}` };
// Asks the test to do something (a line on stdout) and waits for its answer (a line on stdin).
const lines = require('node:readline').createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(request) {
  console.log(request);
  const { value } = await lines.next();
  if (value !== 'done') throw new Error(`the test answered ${value}`);
}
const subscriptions = async () => (await (await fetch(`${hub}/api/v1/subscriptions`, { headers: auth })).json()).subscriptions;


const shownNotifications = `navigator.serviceWorker.ready.then((r) => r.getNotifications())
  .then((ns) => ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag })))`;

async function main() {
  const firefox = await Firefox.launch(binary, profile, home);
  const result = {};
  try {
    await firefox.navigate(`${hub}/`);
    await firefox.evaluate('navigator.serviceWorker.ready.then(() => true)');
    // Firefox drops subscribe() calls made before its push connection is up.
    await until('Firefox to connect to the push service', async () =>
      /tidings_user_agents_online\S* [1-9]/.test(await (await fetch(metrics)).text()));
    await until('the notifications button', () => firefox.evaluate(`!document.querySelector('#notify').hidden`));
    result.buttonBefore = await firefox.evaluate(`document.querySelector('#notify').textContent`);
    await firefox.click('#notify');
    result.subscribed = await until('the subscription at the hub', async () => {
      const list = await subscriptions();
      return list.length ? list : null;
    });
    result.buttonAfter = await until('the button to change', async () => {
      const text = await firefox.evaluate(`document.querySelector('#notify').textContent`);
      return text.includes('off') ? text : null;
    });

    // A message through the UI: the outbox sends it (Firefox has no Background Sync: the
    // page asks the service worker at once), and the hub notifies the topic "chat".
    await firefox.evaluate(`(() => { document.querySelector('#author').value = 'Ada';
      document.querySelector('#text').value = 'Hello from Firefox';
      document.querySelector('#compose').requestSubmit(); return true; })()`);
    result.posted = await until('the message at the server', async () =>
      (await (await fetch(`${hub}/demo/api/messages`)).json()).messages.filter((m) => m.text === 'Hello from Firefox').length);
    result.chatNotification = await until('the chat notification', async () => {
      const shown = await firefox.evaluate(shownNotifications);
      return shown.find((n) => n.body === 'Hello from Firefox');
    });
    result.badge = await until('the badge', () => firefox.evaluate(`(async () => {
      const { Tidings } = await import('/tidings/tidings.js');
      return new Tidings({ serviceWorker: '/sw.js' }).unread(); })()`));

    // The app's backend sends a notification object through the REST API.
    const send = await fetch(`${hub}/api/v1/sends`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ to: { topic: 'chat' }, notification: { title: 'From the backend', body: 'REST API', tag: 'news' } }),
    });
    result.restStatus = send.status;
    result.restNotification = await until('the REST notification', async () => {
      const shown = await firefox.evaluate(shownNotifications);
      return shown.find((n) => n.title === 'From the backend');
    });
    await until('the message on screen', () => firefox.evaluate(`document.querySelectorAll('li:not(.pending)').length > 0`));
    fs.writeFileSync(screenshot, await firefox.screenshot());

    // The push service forgets this browser (restarted on an empty data directory): Firefox
    // gets a new uaid at its next hello, drops its subscription and fires
    // pushsubscriptionchange; the kit subscribes again and the hub replaces the endpoint.
    const before = result.subscribed[0].id;
    await ask('restart-push-service');
    result.resubscribed = await until('the replaced subscription', async () => {
      const list = await subscriptions();
      return list.length === 1 && list[0].id !== before ? list : null;
    }, 90000);
    const again = await fetch(`${hub}/api/v1/sends`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ to: { topic: 'chat' }, notification: { title: 'After the change', body: 'new endpoint' } }),
    });
    result.afterChangeStatus = again.status;
    result.afterChange = await until('the notification after the change', async () => {
      const shown = await firefox.evaluate(shownNotifications);
      return shown.find((n) => n.title === 'After the change');
    });

    // Turning notifications off removes the subscription from the hub.
    await firefox.click('#notify');
    result.afterUnsubscribe = await until('the hub to forget it', async () => ((await subscriptions()).length === 0 ? 'empty' : null));
  } finally {
    await firefox.close();
  }
  return result;
}

run(main);

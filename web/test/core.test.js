// Unit tests of the kit's pure parts, with node's test runner: node --test web/test/
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_ATTEMPTS, afterAttempt, authOf, backoff, base64UrlToBytes, bytesToBase64Url, clickTarget, dueItems, hubError, isHubUrl, knownSubscription, registeredRecord,
  oldSubscription, outboxCounts, outboxItem, outcome, parsePush, revived, route, sameKey, staleCaches, subscriptionRequest,
} from '../tidings-core.js';

test('a Declarative Web Push message gives its notification, badge and URLs', () => {
  const text = JSON.stringify({
    web_push: 8030,
    notification: {
      title: 'Hi', body: 'there', navigate: 'https://app.example/chat', tag: 'chat',
      actions: [{ action: 'reply', title: 'Reply', navigate: 'https://app.example/reply' }, { title: 'no action name' }],
    },
    app_badge: 3,
  });
  const shown = parsePush(text, { title: 'App' });
  assert.equal(shown.title, 'Hi');
  assert.equal(shown.declarative, true);
  assert.equal(shown.mutable, false);
  assert.equal(shown.badge, 3);
  assert.deepEqual(shown.options.actions, [{ action: 'reply', title: 'Reply' }]);
  assert.deepEqual(shown.options.data, { navigate: 'https://app.example/chat', actions: { reply: 'https://app.example/reply' } });
  assert.equal(shown.options.body, 'there');
  assert.equal('icon' in shown.options, false, 'absent members are left out, not undefined');
});

test('text, data messages and empty pushes still show a notification', () => {
  assert.deepEqual(parsePush('plain words', { title: 'App', navigate: '/inbox' }).options, { body: 'plain words', data: { navigate: '/inbox' } });
  const data = parsePush('{"kind":"sync","body":"3 new"}', { title: 'App' });
  assert.deepEqual([data.title, data.options.body, data.data.kind, data.declarative], ['App', '3 new', 'sync', false]);
  assert.equal(parsePush(null, { title: 'App' }).title, 'App');
  // Not declarative: wrong marker, or no title.
  assert.equal(parsePush('{"web_push":8031,"notification":{"title":"x"}}').declarative, false);
  assert.equal(parsePush('{"web_push":8030,"notification":{}}').declarative, false);
  assert.equal(parsePush('{"web_push":8030,"notification":{"title":"x"},"app_badge":-1}').badge, undefined);
  assert.equal(parsePush('{"web_push":8030,"notification":{"title":"x"},"mutable":true}').mutable, true);
});

test('a click goes to the action URL, else the notification URL', () => {
  const data = { navigate: '/a', actions: { open: 'https://app.example/b' } };
  assert.equal(clickTarget(data, 'open', 'https://app.example'), 'https://app.example/b');
  assert.equal(clickTarget(data, '', 'https://app.example'), 'https://app.example/a');
  assert.equal(clickTarget(null, '', 'https://app.example'), 'https://app.example/');
});

test('requests are routed by kind', () => {
  const config = { origin: 'https://app.example', apiPrefix: '/api/', staticPattern: /\.css$/, noCache: /^\/api\/session/ };
  const r = (url, extra = {}) => route({ url, method: 'GET', mode: 'cors', destination: '', ...extra }, config);
  assert.equal(r('https://app.example/', { mode: 'navigate', destination: 'document' }), 'network-first');
  assert.equal(r('https://app.example/app.js', { destination: 'script' }), 'cache-first');
  assert.equal(r('https://app.example/style.css'), 'cache-first');
  assert.equal(r('https://app.example/api/messages'), 'network-first');
  assert.equal(r('https://app.example/api/session'), 'network-only');
  assert.equal(r('https://app.example/api/messages', { method: 'POST' }), 'network-only');
  assert.equal(r('https://cdn.example/lib.js', { destination: 'script' }), 'network-only');
});

test('only other versions of our caches are stale', () => {
  assert.deepEqual(staleCaches(['app-v1', 'app-v2', 'other-v1', 'app'], 'app', 'v2'), ['app-v1']);
});

test('outbox items keep their order, back off and end on the right answers', () => {
  const a = outboxItem('https://app.example/api/m', { method: 'post', headers: { 'Content-Type': 'application/json' }, body: '{}' }, 1000, 'a');
  const b = outboxItem('https://app.example/api/m', {}, 500, 'b');
  assert.deepEqual([a.method, a.headers['content-type'], a.id, a.attempts, a.setAside], ['POST', 'application/json', 'a', 0, false]);
  assert.deepEqual(dueItems([a, b], 1000).map((i) => i.id), ['b', 'a']);
  const { result, item: later } = afterAttempt(a, null, 'offline', 2000, () => 0.5);
  assert.equal(result, 'retry');
  assert.deepEqual([later.attempts, later.nextAttemptAt, later.lastError, later.setAside], [1, 4000, 'offline', false]);
  assert.deepEqual(dueItems([later], 3999), []);
  assert.equal(afterAttempt(a, 503, null, 2000).item.lastError, 'HTTP 503');
  assert.equal(backoff(30, () => 1), 720000);
  assert.deepEqual([201, 204, 409].map(outcome), ['done', 'done', 'done']);
  assert.deepEqual([401, 403].map(outcome), ['set-aside', 'set-aside']);
  assert.deepEqual([400, 404, 413].map(outcome), ['drop', 'drop', 'drop']);
  assert.deepEqual([null, 408, 429, 500, 503].map(outcome), ['retry', 'retry', 'retry', 'retry', 'retry']);
  assert.deepEqual([201, 409, 400].map((status) => afterAttempt(a, status, null, 2000)), [
    { result: 'sent', item: null }, { result: 'sent', item: null }, { result: 'failed', item: null },
  ]);
  assert.notEqual(outboxItem('/x').id, outboxItem('/x').id);
});

test('an item refused with 401 or 403, or failing too often, is set aside and holds nothing back', () => {
  const a = outboxItem('https://app.example/api/m', {}, 100, 'a');
  const b = outboxItem('https://app.example/api/m', {}, 200, 'b');
  for (const status of [401, 403]) {
    const { result, item } = afterAttempt(a, status, null, 1000);
    assert.equal(result, 'set-aside');
    assert.deepEqual([item.setAside, item.attempts, item.lastError], [true, 1, `HTTP ${status}`]);
  }
  // Retried until the last attempt fails.
  let item = a;
  for (let attempt = 1; attempt < MAX_ATTEMPTS; attempt++) {
    const after = afterAttempt(item, 500, null, 1000);
    assert.equal(after.result, 'retry', `attempt ${attempt}`);
    item = after.item;
  }
  const last = afterAttempt(item, null, 'TypeError: NetworkError', 1000);
  assert.equal(last.result, 'set-aside');
  assert.deepEqual([last.item.attempts, last.item.setAside, last.item.lastError], [MAX_ATTEMPTS, true, 'TypeError: NetworkError']);
  // Set aside, it is never due, so the next one goes out; revived, it is due again at once.
  assert.deepEqual(dueItems([last.item, b], Infinity).map((i) => i.id), ['b']);
  const again = revived(last.item, 5000);
  assert.deepEqual([again.setAside, again.attempts, again.nextAttemptAt], [false, 0, 5000]);
  assert.deepEqual(dueItems([again, b], 5000).map((i) => i.id), ['a', 'b']);
  assert.deepEqual(outboxCounts([last.item, b, { ...b, id: 'c' }]), { pending: 2, setAside: 1 });
  assert.deepEqual(outboxCounts([]), { pending: 0, setAside: 0 });
  // Items of the kit's first version have no flag: pending.
  const { setAside, ...old } = b;
  assert.deepEqual([dueItems([old], Infinity).length, outboxCounts([old]).pending], [1, 1]);
});

test('outbox requests to the hub are told apart', () => {
  assert.equal(isHubUrl('https://app.example/demo/api/messages', '', 'https://app.example'), true);
  assert.equal(isHubUrl('https://cdn.example/x', '', 'https://app.example'), false);
  assert.equal(isHubUrl('https://push.example/api/subscriptions', 'https://push.example', 'https://app.example'), true);
  assert.equal(isHubUrl('https://app.example/api/m', 'https://push.example', 'https://app.example'), false);
});

test('the subscription the hub knows, and the request that registers one', () => {
  const current = { endpoint: 'https://push.example/new', keys: { p256dh: 'P', auth: 'new-auth' } };
  assert.equal(authOf({ toJSON: () => current }), 'new-auth');

  // What the hub accepted last, and the first version's endpoint-only record.
  const record = { endpoint: 'https://push.example/old', auth: 'old-auth', topics: ['news'] };
  assert.equal(knownSubscription(record, 'https://push.example/older'), record);
  assert.deepEqual(knownSubscription(undefined, 'https://push.example/old'), { endpoint: 'https://push.example/old', auth: null, key: null, topics: null });
  assert.equal(knownSubscription(undefined, undefined), null);

  // The proof a sync gives: the hub's record when it names another endpoint, else the current one.
  const now = { endpoint: current.endpoint, auth: 'new-auth' };
  assert.equal(oldSubscription(record, now), record);
  assert.equal(oldSubscription(null, now), now);
  assert.equal(oldSubscription({ endpoint: current.endpoint, auth: null, topics: null }, now), now);

  // Another endpoint with its auth: replace, proven.
  assert.deepEqual(subscriptionRequest(record, current, { topics: ['chat'], userToken: 'jwt' }), {
    path: '/api/subscriptions/replace',
    body: { old_endpoint: record.endpoint, old_auth: 'old-auth', subscription: current, topics: ['chat'], user_token: 'jwt' },
  });
  // The same endpoint, none, or one whose auth is unknown: a plain POST.
  assert.deepEqual(subscriptionRequest(now, current, { topics: ['chat'] }), { path: '/api/subscriptions', body: { subscription: current, topics: ['chat'] } });
  assert.deepEqual(subscriptionRequest(null, current), { path: '/api/subscriptions', body: { subscription: current } });
  assert.equal(subscriptionRequest({ endpoint: record.endpoint, auth: null }, current).path, '/api/subscriptions');
  // Topics null keep the hub's; a null user token removes the user.
  assert.deepEqual(subscriptionRequest(null, current, { topics: null, userToken: null }).body, { subscription: current, user_token: null });
});

test("the hub's refusals become errors with their code", () => {
  const exists = hubError(409, '{"error":"subscription_exists","message":"registered with other keys"}');
  assert.deepEqual([exists.status, exists.code, exists.message], [409, 'subscription_exists', 'hub: 409 subscription_exists: registered with other keys']);
  const proxy = hubError(502, '<h1>Bad gateway</h1>');
  assert.deepEqual([proxy.status, proxy.code, proxy.message], [502, null, 'hub: 502 <h1>Bad gateway</h1>']);
  assert.equal(hubError(403, '{"error":"csrf"}').code, 'csrf');
});

test('application server keys compare as bytes', () => {
  const key = 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4';
  const bytes = base64UrlToBytes(key);
  assert.equal(bytes.length, 65);
  assert.equal(sameKey(bytes.buffer, key), true);
  assert.equal(sameKey(bytes.slice(1).buffer, key), false);
  assert.equal(sameKey(null, key), false);
});

test('the record of a registered subscription keeps its proof and its key', () => {
  const key = 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4';
  assert.equal(bytesToBase64Url(base64UrlToBytes(key)), key);
  const subscription = {
    endpoint: 'https://push.example/1',
    options: { applicationServerKey: base64UrlToBytes(key).buffer },
    toJSON: () => ({ endpoint: 'https://push.example/1', keys: { p256dh: 'p', auth: 'the-auth' } }),
  };
  assert.deepEqual(registeredRecord(subscription, ['news']), { endpoint: 'https://push.example/1', auth: 'the-auth', key, topics: ['news'] });
  assert.equal(registeredRecord({ ...subscription, options: {} }, []).key, null);
});

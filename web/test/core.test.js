// Unit tests of the kit's pure parts, with node's test runner: node --test web/test/
import test from 'node:test';
import assert from 'node:assert/strict';
import { backoff, base64UrlToBytes, clickTarget, dueItems, outboxItem, outcome, parsePush, retried, route, sameKey, staleCaches } from '../tidings-core.js';

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
  assert.deepEqual([a.method, a.headers['content-type'], a.id, a.attempts], ['POST', 'application/json', 'a', 0]);
  assert.deepEqual(dueItems([a, b], 1000).map((i) => i.id), ['b', 'a']);
  const later = retried(a, 'offline', 2000, () => 0.5);
  assert.deepEqual([later.attempts, later.nextAttemptAt, later.lastError], [1, 4000, 'offline']);
  assert.deepEqual(dueItems([later], 3999), []);
  assert.equal(backoff(30, () => 1), 720000);
  assert.deepEqual([201, 204, 409].map(outcome), ['done', 'done', 'done']);
  assert.deepEqual([400, 403, 413].map(outcome), ['drop', 'drop', 'drop']);
  assert.deepEqual([null, 408, 429, 500, 503].map(outcome), ['retry', 'retry', 'retry', 'retry', 'retry']);
  assert.notEqual(outboxItem('/x').id, outboxItem('/x').id);
});

test('application server keys compare as bytes', () => {
  const key = 'BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4';
  const bytes = base64UrlToBytes(key);
  assert.equal(bytes.length, 65);
  assert.equal(sameKey(bytes.buffer, key), true);
  assert.equal(sameKey(bytes.slice(1).buffer, key), false);
  assert.equal(sameKey(null, key), false);
});

// npm web-push broadcasting to a subscription list the way an app server would: stream the
// JSON lines, prepare each request with generateRequestDetails (encryption + VAPID), send it
// over a keep-alive agent, at most CONCURRENCY in flight.
// Usage: node web-push-broadcast.js FILE LIMIT CONCURRENCY VAPID_JSON
// Prints {"sent": N, "accepted": N, "seconds": S}.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const readline = require('readline');
const webpush = require(path.join(__dirname, '../../../tests/interop/node_modules/web-push'));

const [file, limit, concurrency, vapidFile] = process.argv.slice(2);
const vapid = JSON.parse(fs.readFileSync(vapidFile, 'utf8'));
const options = { vapidDetails: { subject: 'mailto:bench@example.com', ...vapid }, TTL: 60 };
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) });
const payload = 'x'.repeat(100);

function send(subscription) {
  const details = webpush.generateRequestDetails(subscription, payload, options);
  return new Promise((resolve) => {
    const request = http.request(details.endpoint, { method: 'POST', headers: details.headers, agent }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode === 201));
    });
    request.on('error', () => resolve(false));
    request.end(details.body);
  });
}

(async () => {
  const lines = readline.createInterface({ input: fs.createReadStream(file) });
  const start = process.hrtime.bigint();
  let sent = 0;
  let accepted = 0;
  const inFlight = new Set();
  for await (const line of lines) {
    if (sent >= Number(limit)) break;
    sent++;
    const task = send(JSON.parse(line)).then((ok) => {
      if (ok) accepted++;
      inFlight.delete(task);
    });
    inFlight.add(task);
    if (inFlight.size >= Number(concurrency)) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.stdout.write(JSON.stringify({ sent, accepted, seconds }));
  agent.destroy();
})();

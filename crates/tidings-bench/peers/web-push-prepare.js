// npm web-push preparing requests as fast as it can, for the same workload as
// `tidings-bench prepare`: encrypt a 100-byte payload and sign VAPID, per subscription.
// Usage: node web-push-prepare.js SECONDS  (prints {"requests": N, "seconds": S})
'use strict';
const path = require('path');
const crypto = require('crypto');
const webpush = require(path.join(__dirname, '../../../tests/interop/node_modules/web-push'));

const seconds = Number(process.argv[2] || 5);
const vapid = webpush.generateVAPIDKeys();
const subscriptions = Array.from({ length: 1000 }, (_, i) => {
  const ua = crypto.createECDH('prime256v1');
  ua.generateKeys();
  return {
    endpoint: `https://push${i % 4}.example.net/wpush/v2/${i}`,
    keys: { p256dh: ua.getPublicKey('base64url'), auth: crypto.randomBytes(16).toString('base64url') },
  };
});
const payload = 'x'.repeat(100);
const options = { vapidDetails: { subject: 'mailto:bench@example.com', ...vapid }, TTL: 60 };

let requests = 0;
const start = process.hrtime.bigint();
const end = start + BigInt(Math.round(seconds * 1e9));
let now = start;
while (now < end) {
  for (let i = 0; i < 50; i++) {
    webpush.generateRequestDetails(subscriptions[requests % subscriptions.length], payload, options);
    requests++;
  }
  now = process.hrtime.bigint();
}
process.stdout.write(JSON.stringify({ requests, seconds: Number(now - start) / 1e9 }));

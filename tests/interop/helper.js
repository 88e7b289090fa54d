// Runs one operation of npm web-push / http_ece / jsonwebtoken for Tidings' interop tests.
// Usage: node helper.js <command>   (input: one JSON object on stdin; output: JSON on stdout)
'use strict';
const crypto = require('crypto');
const ece = require('http_ece');
const webpush = require('web-push');
const jwt = require('jsonwebtoken');

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const unb64 = (text) => Buffer.from(text, 'base64url');

function ecdh(privateKey) {
  const key = crypto.createECDH('prime256v1');
  key.setPrivateKey(unb64(privateKey));
  return key;
}

function publicKeyObject(raw65) {
  const raw = unb64(raw65);
  return crypto.createPublicKey({
    format: 'jwk',
    key: { kty: 'EC', crv: 'P-256', x: b64(raw.subarray(1, 33)), y: b64(raw.subarray(33, 65)) },
  });
}

const commands = {
  // Decrypt a Web Push body as a user agent would: {encoding, body, privateKey, auth, salt?, dh?}.
  decrypt(input) {
    const params = { version: input.encoding, privateKey: ecdh(input.privateKey), authSecret: input.auth };
    if (input.encoding === 'aesgcm') Object.assign(params, { salt: input.salt, dh: input.dh });
    return { plaintext: b64(ece.decrypt(unb64(input.body), params)) };
  },
  // The request npm web-push would send: {subscription, payload, encoding, ttl, vapid}.
  request(input) {
    const details = webpush.generateRequestDetails(input.subscription, input.payload, {
      vapidDetails: input.vapid,
      contentEncoding: input.encoding,
      TTL: input.ttl,
    });
    const headers = {};
    for (const [name, value] of Object.entries(details.headers)) headers[name.toLowerCase()] = String(value);
    return { endpoint: details.endpoint, headers, body: details.body ? b64(details.body) : '' };
  },
  // VAPID headers from npm web-push: {audience, subject, publicKey, privateKey, encoding}.
  'vapid-headers'(input) {
    return webpush.getVapidHeaders(input.audience, input.subject, input.publicKey, input.privateKey, input.encoding);
  },
  // Verify a JWT with jsonwebtoken: {token, publicKey, audience}; throws when invalid.
  'verify-jwt'(input) {
    const claims = jwt.verify(input.token, publicKeyObject(input.publicKey), {
      algorithms: ['ES256'],
      audience: input.audience,
    });
    return { claims };
  },
  keys() {
    return webpush.generateVAPIDKeys();
  },
  // Sign a hub user token as an app's backend would, with jsonwebtoken: {secret (base64url),
  // sub, jti, expiresIn (seconds)}.
  'sign-user-token'(input) {
    const token = jwt.sign({ sub: input.sub, jti: input.jti }, Buffer.from(input.secret, 'base64url'), {
      algorithm: 'HS256',
      expiresIn: input.expiresIn,
    });
    return { token };
  },
  // Send for real with web-push's request (sendNotification insists on https, so the
  // request it prepares goes out through node's http module): {subscription, payload,
  // encoding, ttl, vapid}. Answers {status}.
  async send(input) {
    const details = webpush.generateRequestDetails(input.subscription, input.payload, {
      vapidDetails: input.vapid,
      contentEncoding: input.encoding,
      TTL: input.ttl,
    });
    const http = require(details.endpoint.startsWith('https:') ? 'https' : 'http');
    const status = await new Promise((resolve, reject) => {
      const request = http.request(details.endpoint, { method: details.method, headers: details.headers }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode));
      });
      request.on('error', reject);
      request.end(details.body || undefined);
    });
    return { status };
  },
};

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const command = commands[process.argv[2]];
  if (!command) {
    console.error(`unknown command ${process.argv[2]}; known: ${Object.keys(commands).join(', ')}`);
    process.exit(2);
  }
  try {
    const text = Buffer.concat(chunks).toString() || '{}';
    Promise.resolve(command(JSON.parse(text)))
      .then((result) => process.stdout.write(JSON.stringify(result)))
      .catch((error) => {
        console.error(String(error && error.message ? error.message : error));
        process.exit(1);
      });
  } catch (error) {
    console.error(String(error && error.message ? error.message : error));
    process.exit(1);
  }
});

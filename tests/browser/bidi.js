// A minimal WebDriver BiDi client for Debian's Firefox ESR, which speaks BiDi itself (no
// geckodriver): start Firefox with --remote-debugging-port, open a session, and call
// commands. Node 20 needs --experimental-websocket for the global WebSocket.
const { spawn } = require('node:child_process');
const net = require('node:net');

const freePort = () => new Promise((resolve) => {
  const server = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

class Firefox {
  /** Starts Firefox headless on `profile` (with HOME set to `home`) and opens a BiDi session. */
  static async launch(binary, profile, home) {
    const port = await freePort();
    const child = spawn(binary, ['--headless', '--no-remote', '--profile', profile, '--remote-debugging-port', String(port)], {
      env: { ...process.env, HOME: home, MOZ_HEADLESS: '1', MOZ_CRASHREPORTER_DISABLE: '1' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Firefox did not start BiDi:\n${log}`)), 30000);
      child.stderr.on('data', (chunk) => {
        log += chunk;
        if (log.includes('WebDriver BiDi listening')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const firefox = new Firefox(child, new WebSocket(`ws://127.0.0.1:${port}/session`));
    await new Promise((resolve, reject) => {
      firefox.socket.onopen = resolve;
      firefox.socket.onerror = () => reject(new Error('cannot connect to BiDi'));
    });
    await firefox.send('session.new', { capabilities: {} });
    const tree = await firefox.send('browsingContext.getTree', {});
    firefox.context = tree.contexts[0].context;
    return firefox;
  }

  constructor(child, socket) {
    this.child = child;
    this.socket = socket;
    this.next = 1;
    this.waiting = new Map();
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      const pending = message.id && this.waiting.get(message.id);
      if (!pending) return;
      this.waiting.delete(message.id);
      if (message.type === 'error') pending.reject(new Error(`${message.error}: ${message.message}`));
      else pending.resolve(message.result);
    };
  }

  send(method, params) {
    const id = this.next++;
    this.socket.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  navigate(url) {
    return this.send('browsingContext.navigate', { context: this.context, url, wait: 'complete' });
  }

  /** Evaluates an async expression in the page; its result must be JSON-serialisable. */
  async evaluate(expression) {
    const result = await this.send('script.evaluate', {
      expression: `(async () => JSON.stringify(await (${expression})))()`,
      target: { context: this.context },
      awaitPromise: true,
    });
    if (result.type === 'exception') throw new Error(`${expression}: ${result.exceptionDetails.text}`);
    return JSON.parse(result.result.value ?? 'null');
  }

  /** A real click (with user activation) in the middle of the element `selector`. */
  async click(selector) {
    const box = await this.evaluate(`(() => { const r = document.querySelector(${JSON.stringify(selector)}).getBoundingClientRect();
      return { x: Math.round(r.x + r.width / 2), y: Math.round(r.y + r.height / 2) }; })()`);
    await this.send('input.performActions', {
      context: this.context,
      actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions: [
        { type: 'pointerMove', x: box.x, y: box.y }, { type: 'pointerDown', button: 0 }, { type: 'pointerUp', button: 0 }] }],
    });
  }

  async screenshot() {
    return Buffer.from((await this.send('browsingContext.captureScreenshot', { context: this.context })).data, 'base64');
  }

  async close() {
    try {
      await this.send('session.end', {});
    } catch {
      // Closing anyway.
    }
    this.socket.close();
    this.child.kill();
  }
}

module.exports = { Firefox };

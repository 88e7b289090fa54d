// Drives Debian's Chromium (headless, through playwright-core) through the hub's admin
// page: a wrong secret is refused, the right one logs in, the test-notification form
// queues a send to a topic, and the send appears as done in the list.
// Usage: node admin.js <hub url> <admin secret> <topic> <title> <screenshot.png>
const { launch } = require('./chromium.js');
const { run } = require('./wait.js');

const [hub, secret, topic, title, screenshot] = process.argv.slice(2);

async function main() {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${hub}/admin`);
    await page.fill('#secret', 'not the secret at all');
    await page.click('button[type=submit]');
    const refused = (await page.textContent('.error')).trim();
    await page.fill('#secret', secret);
    await page.click('button[type=submit]');
    await page.waitForSelector('#sends');
    const before = await page.locator('#sends tr').count();
    await page.selectOption('#to', `topic:${topic}`);
    await page.fill('#title', title);
    await page.fill('#body', 'sent from the admin page');
    await page.click('form[action="/admin/send"] button');
    await page.waitForSelector('#sends');
    let row = '';
    for (let i = 0; i < 100; i++) {
      row = (await page.locator('#sends tr').nth(1).textContent()) || '';
      if ((await page.locator('#sends tr').count()) > before && row.includes('done')) break;
      await page.waitForTimeout(100);
      await page.reload();
    }
    const stats = await page.textContent('.stats');
    await page.screenshot({ path: screenshot, fullPage: true });
    return { refused, row, stats };
  } finally {
    await browser.close();
  }
}
run(main);

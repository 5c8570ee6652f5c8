// Two headless Chromiums with fake media join one call through tokensvc with the browser
// example (examples/browser), one fetching its token with TokenSource, one with plain fetch;
// each must receive the other's audio, no request of the page may fail (a favicon 404, say), and
// Leave must take one out of the call. Environment: PAGE_URL (the served example), SERVICE_URL,
// TENANT_TOKEN (a tenant's bearer token), CHROMIUM (the browser), SCREENSHOTS (a folder).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chromium } from 'playwright-core';

const FLAGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required', '--no-sandbox'];

function pageUrl(name, fetcher) {
  const settings = new URLSearchParams({
    service: process.env.SERVICE_URL, tenant: process.env.TENANT_TOKEN, room: 'browser-call',
    name, fetcher, join: '1',
  });
  return `${process.env.PAGE_URL}#${settings}`;
}

async function open(name, fetcher) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: FLAGS });
  const page = await browser.newPage();
  const failed = [];
  page.on('console', (message) => console.log(`[${name}] ${message.text()}`));
  page.on('response', (response) => {
    if (response.status() >= 400) failed.push(`${response.status()} ${response.url()}`);
  });
  await page.goto(pageUrl(name, fetcher));
  return { name, browser, page, failed };
}

async function heard(side, other) {
  // Bytes of the other's audio received: above zero within a minute (ICE, then RTP).
  await side.page.waitForFunction(
    (who) => window.call.state === 'failed' || (window.call.others[who] || 0) > 0,
    other, { timeout: 60000, polling: 500 });
  return side.page.evaluate(() => window.call);
}

test('two browsers hear each other through tokensvc', async () => {
  const sides = [await open('alice', 'tokensource'), await open('bob', 'fetch')];
  try {
    const [alice, bob] = await Promise.all([heard(sides[0], 'bob'), heard(sides[1], 'alice')]);
    for (const side of sides) {
      await side.page.screenshot({ path: `${process.env.SCREENSHOTS}/${side.name}.png` });
    }
    assert.equal(alice.error, null);
    assert.equal(bob.error, null);
    assert.equal(alice.identity, 'alice');
    assert.ok(alice.others.bob > 0, `alice received ${alice.others.bob} bytes from bob`);
    assert.ok(bob.others.alice > 0, `bob received ${bob.others.alice} bytes from alice`);
    console.log(`bytes received: alice from bob ${alice.others.bob}, bob from alice ${bob.others.alice}`);
    for (const side of sides) assert.deepEqual(side.failed, [], `${side.name}'s failed requests`);
    // Bob presses Leave: his page says so and can join again; Alice no longer lists him.
    await sides[1].page.click('#leave');
    await sides[1].page.waitForFunction(() => window.call.state === 'left the room',
      null, { timeout: 20000 });
    assert.equal(await sides[1].page.isEnabled('#go'), true);
    await sides[0].page.waitForFunction(() => !('bob' in window.call.others),
      null, { timeout: 30000, polling: 500 });
    console.log('bob left; alice no longer lists him');
  } finally {
    await Promise.all(sides.map((side) => side.browser.close()));
  }
});

// Two headless Chromiums with fake media join one call through tokensvc with the browser
// example (examples/browser), one fetching its token with TokenSource, one with plain fetch;
// each must receive the other's audio. Environment: PAGE_URL (the served example), SERVICE_URL,
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
  page.on('console', (message) => console.log(`[${name}] ${message.text()}`));
  await page.goto(pageUrl(name, fetcher));
  return { name, browser, page };
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
  } finally {
    await Promise.all(sides.map((side) => side.browser.close()));
  }
});

// The tenant's console in a real headless Chromium, driven step by step by
// tests/test_console_browser.py over stdin/stdout: each step waits for a line from the test and
// answers with one. Environment: CONSOLE_URL (acme's one-use URL), OTHER_URL (globex's),
// CHROMIUM, SCREENSHOTS (a folder), ENDPOINT_ID (acme's failing endpoint), OPERATOR_URL (the
// operator's console) and ADMIN_TOKEN.
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { chromium } from 'playwright-core';

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function told(word) {
  const { value, done } = await lines.next();
  assert.equal(done, false, `the test ended before "${word}"`);
  const [said, ...rest] = value.trim().split(' ');
  assert.equal(said, word);
  return rest;
}

function say(...words) {
  process.stdout.write(`STEP ${words.join(' ')}\n`);
}

async function listed(page) {
  // The identities the calls page lists now, by room.
  return page.evaluate(() => Array.from(document.querySelectorAll('#rooms tr[data-identity]'),
    (row) => row.dataset.identity));
}

async function shoot(page, name) {
  await page.screenshot({ path: `${process.env.SCREENSHOTS}/${name}.png`, fullPage: true });
}

test('the console shows a tenant its calls, usage and webhooks', { timeout: 170000 }, async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    const page = await context.newPage();
    page.on('dialog', (dialog) => dialog.accept());
    const failed = [];
    page.on('response', (response) => {
      if (response.status() >= 400) failed.push(`${response.status()} ${response.url()}`);
    });
    await page.goto(process.env.CONSOLE_URL);
    assert.match(page.url(), /\/console\/calls$/);
    assert.equal(new URL(page.url()).searchParams.get('ticket'), null);
    say('open');

    // Two participants join: both listed within 2 s.
    await told('joined');
    let started = Date.now();
    await page.waitForFunction(() => ['alice', 'bob'].every(
      (who) => document.querySelector(`#rooms tr[data-identity="${who}"]`)), null,
    { timeout: 10000, polling: 50 });
    const joinedMs = Date.now() - started;
    say('listed', joinedMs);
    await shoot(page, 'calls');

    // One leaves: dropped within 2 s.
    await told('left');
    started = Date.now();
    await page.waitForFunction(() => !document.querySelector('#rooms tr[data-identity="bob"]'),
      null, { timeout: 10000, polling: 50 });
    const leftMs = Date.now() - started;
    assert.deepEqual(await listed(page), ['alice']);
    say('dropped', leftMs);

    // End the room from the page (the dialog accepted).
    await told('end');
    await page.click('form[action$="/calls/end"] button');
    await page.waitForSelector('.notice');
    await page.waitForFunction(() => !document.querySelector('#rooms article.room'), null,
      { timeout: 10000, polling: 100 });
    say('ended');

    // Usage over the period the test names: the rows of the table, the CSV link's period.
    const [from, to] = await told('usage');
    await page.goto(`${new URL('usage', page.url())}?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&step=hour`);
    await page.waitForFunction(() => document.getElementById('usage-chart').dataset.drawn === 'true',
      null, { timeout: 10000 });
    const rows = await page.evaluate(() => Array.from(document.querySelectorAll('#usage-rooms tbody tr'),
      (row) => Array.from(row.children, (cell) => cell.textContent.trim())));
    await shoot(page, 'usage');
    say('rows', JSON.stringify(rows));

    // The failing endpoint's delivery: its attempts, then a retry from the page delivers it.
    await told('webhooks');
    await page.goto(`${new URL('webhooks', page.url())}?status=failed&endpoint_id=${process.env.ENDPOINT_ID}`);
    const row = page.locator('#deliveries tbody tr').first();
    const id = await row.getAttribute('data-delivery');
    const attempts = Number(await row.locator('td.attempts').textContent());
    const shown = await row.textContent();
    assert.ok(attempts >= 1, `attempts ${attempts}`);
    assert.match(shown, /500/);
    await row.locator('button', { hasText: 'Retry' }).click();
    await page.waitForSelector('.notice');
    let status = '';
    for (let tries = 0; tries < 40 && status !== 'delivered'; tries += 1) {
      await page.goto(`${new URL('webhooks', page.url())}?endpoint_id=${process.env.ENDPOINT_ID}`);
      status = await page.locator(`#deliveries tr[data-delivery="${id}"]`).getAttribute('data-status');
      if (status !== 'delivered') await page.waitForTimeout(250);
    }
    assert.equal(status, 'delivered');
    await shoot(page, 'webhooks');
    say('delivered', id, attempts);

    // The audit page: the tenant's own trail, newest first.
    await told('audit');
    await page.goto(new URL('audit', page.url()).toString());
    const actions = await page.evaluate(() => Array.from(document.querySelectorAll('#audit tbody tr'),
      (row) => row.dataset.action));
    await shoot(page, 'audit');
    say('audited', JSON.stringify(actions));

    // Another tenant's session sees none of it; the used ticket opens nothing.
    await told('others');
    const other = await browser.newContext();
    const theirs = await other.newPage();
    await theirs.goto(process.env.OTHER_URL);
    for (const path of ['calls', 'usage', 'webhooks']) {
      await theirs.goto(new URL(path, theirs.url()).toString());
      const text = await theirs.content();
      for (const secret of ['console-call', 'alice', 'bob', process.env.ENDPOINT_ID, id]) {
        assert.equal(text.includes(secret), false, `globex's ${path} page shows ${secret}`);
      }
    }
    const again = await (await browser.newContext()).newPage();
    const answer = await again.goto(process.env.CONSOLE_URL);
    assert.equal(answer.status(), 403);
    assert.match(await again.textContent('main'), /used already/);
    // At a phone's width every page still fits (wide tables scroll inside themselves).
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 375, height: 700 });
    for (const path of ['calls', 'usage', 'webhooks', 'audit']) {
      await phone.goto(new URL(path, page.url()).toString());
      const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the ${path} page is ${overflow}px wider than a phone`);
    }
    assert.deepEqual(failed, []);
    say('checked');

    // The operator signs in, suspends acme from the operator's console, and acme's open console
    // (on its calls page) then says so by itself.
    await told('operator');
    const desk = await (await browser.newContext({ viewport: { width: 1100, height: 760 } })).newPage();
    desk.on('dialog', (dialog) => dialog.accept());
    await desk.goto(process.env.OPERATOR_URL);
    assert.match(desk.url(), /\/admin\/console\/login$/);
    await desk.fill('#admin-token', process.env.ADMIN_TOKEN);
    await desk.click('form.login button');
    await desk.waitForSelector('#tenants tr[data-tenant="acme"][data-status="active"]');
    await page.goto(new URL('calls', page.url()).toString());
    const acme = desk.locator('#tenants tr[data-tenant="acme"]');
    await acme.locator('input[name="reason"]').fill('Invoice 1042 is 30 days overdue');
    started = Date.now();
    await acme.locator('button', { hasText: 'Suspend' }).click();
    await desk.waitForSelector('#tenants tr[data-tenant="acme"][data-status="suspended"]');
    await page.waitForFunction(() => /suspended/.test(document.querySelector('h1').textContent),
      null, { timeout: 15000, polling: 50 });
    const suspendedMs = Date.now() - started;
    assert.match(await page.textContent('main'), /Invoice 1042 is 30 days overdue/);
    await shoot(desk, 'operator');
    await shoot(page, 'suspended');
    say('suspended', suspendedMs);
    await told('finish');
    say('done');
  } finally {
    await browser.close();
  }
});

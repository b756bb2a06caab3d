// Citizen notices and the DPO register, generated from the policy files, in a real browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, accessibilityViolations, describe } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  demo?.stop();
});

/**
 * Opens `path` with JavaScript off (how citizens may browse), then audits it with axe. With
 * `signInAs`, the page first sends to the demonstration provider's pick-list, where the
 * button named `signInAs` signs in and comes back to `path`.
 */
async function visitAccessible(path, { signInAs } = {}) {
  const noJs = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
  const page = await noJs.newPage();
  let resp = await page.goto(`${demo.base}${path}`);
  if (signInAs) {
    assert.match(await page.locator('body').innerText(), /Démonstration/, 'sent to the demo provider');
    [resp] = await Promise.all([
      page.waitForResponse((r) => r.url() === `${demo.base}${path}`),
      page.getByRole('button', { name: signInAs }).click(),
    ]);
  }
  assert.equal(resp.status(), 200, path);
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  assert.equal(await page.locator('h1').count(), 1, `${path} has one h1`);
  const text = await page.locator('body').innerText();
  // The audit context shares the session, if any.
  const audit = await browser.newContext({ bypassCSP: true, storageState: await noJs.storageState() });
  const probe = await audit.newPage();
  await probe.goto(`${demo.base}${path}`);
  const violations = await accessibilityViolations(probe);
  assert.deepEqual(violations, [], `${path}:\n${describe(violations)}`);
  await audit.close();
  await noJs.close();
  return text;
}

test('the notices index lists every processing activity', async () => {
  const text = await visitAccessible('/.guichet/informations');
  assert.match(text, /cantine/i);
  assert.match(text, /lettre d'information|newsletter/i);
});

test('a notice tells the citizen, in plain French, why, how long, and their rights', async () => {
  const text = await visitAccessible('/.guichet/informations/cantine');
  assert.match(text, /CNIL/);
  assert.match(text, /droit/i);
  assert.match(text, /conserv/i);
});

test('the DPO register page is accessible, to the DPO signed in as an agent', async () => {
  const text = await visitAccessible('/.guichet/dpo/registre', { signInAs: /Nadia BERGER/ });
  assert.match(text, /registre/i);
});

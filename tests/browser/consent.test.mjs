// Consent in the demo, as a citizen lives it: the newsletter asks for consent, giving it takes
// one click on the consent page, the receipt downloads, withdrawing takes no more clicks than
// giving, and the newsletter refuses on the very next request. Without JavaScript.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, accessibilityViolations, describe } from './harness.mjs';

let demo;
let browser;
let context;

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  context = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR', acceptDownloads: true });
});

after(async () => {
  await browser?.close();
  demo?.stop();
});

test('giving, proving and withdrawing consent to the newsletter', async () => {
  const page = await context.newPage();
  await page.goto(`${demo.base}/lettre-information/`);
  // Sign in with the demo provider, then the gateway asks for consent.
  await Promise.all([page.waitForURL(/consentement/), page.getByRole('button', { name: /Angela DUBOIS/ }).click()]);
  assert.equal(await page.locator('input[type=checkbox]:checked, input[type=radio]:checked').count(), 0, 'nothing pre-selected');
  assert.match(await page.locator('body').innerText(), /Si vous dites non/);

  // Accessibility of the consent page (axe needs JavaScript: same URL in a JS tab, same cookies).
  const probe = await context.browser().newContext({ locale: 'fr-FR', bypassCSP: true, storageState: await context.storageState() });
  const p2 = await probe.newPage();
  await p2.goto(page.url());
  const violations = await accessibilityViolations(p2);
  await probe.close();
  assert.deepEqual(violations, [], describe(violations));

  // Giving: one click, back to the newsletter.
  let giveClicks = 0;
  await Promise.all([
    page.waitForURL(/\/lettre-information\/$/),
    page.getByRole('button', { name: /Je donne mon accord pour : Lettre/ }).click().then(() => giveClicks++),
  ]);
  assert.match(await page.locator('h1').innerText(), /Lettre d'information/);

  // The receipt downloads from the consent page.
  await page.goto(`${demo.base}/.guichet/consentement/`);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: /Télécharger le reçu signé de mon dernier choix/ }).click(),
  ]);
  assert.match(download.suggestedFilename(), /^recu-consentement-\d+\.jws$/);

  // Withdrawing: one click too (from the same page).
  let withdrawClicks = 0;
  await Promise.all([
    page.waitForURL(/consentement\/\?fait=/),
    page.getByRole('button', { name: /Je retire mon accord pour : Lettre/ }).click().then(() => withdrawClicks++),
  ]);
  assert.ok(withdrawClicks <= giveClicks, `withdrawing took ${withdrawClicks} clicks, giving ${giveClicks}`);

  // The very next request to the newsletter is refused (sent back to the consent page).
  await page.goto(`${demo.base}/lettre-information/`);
  assert.match(page.url(), /\/\.guichet\/consentement\/\?retour=/);
});

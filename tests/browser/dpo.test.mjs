// The DPO's console and the supervision view in Chromium with JavaScript off: every page
// axe-clean at 1280 px and 320 px, no sideways scrolling, charts drawn as SVG images beside
// their data tables, no script; the DPO's forms work without JavaScript.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, accessibilityViolations, describe } from './harness.mjs';

let demo;
let browser;
let dpo;
let elected;

/** A JavaScript-off context signed in as the agent named `who`, through `path`. */
async function signedIn(who, path) {
  const context = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
  const page = await context.newPage();
  await page.goto(`${demo.base}${path}`);
  await Promise.all([page.waitForURL((u) => u.pathname === path), page.getByRole('button', { name: who }).click()]);
  await page.close();
  return context;
}

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
  dpo = await signedIn(/Nadia BERGER/, '/.guichet/dpo/');
  elected = await signedIn(/Élise MOREAU/, '/.guichet/pilotage/');
});

after(async () => {
  await browser?.close();
  demo?.stop();
});

/** axe on `url` at `width` px with `context`'s session (axe needs JavaScript: another context). */
async function audit(url, width, context) {
  const js = await browser.newContext({
    locale: 'fr-FR', bypassCSP: true, viewport: { width, height: 900 }, storageState: await context.storageState(),
  });
  const page = await js.newPage();
  await page.goto(url);
  const violations = await accessibilityViolations(page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await js.close();
  assert.deepEqual(violations, [], `${url} at ${width} px:\n${describe(violations)}`);
  assert.ok(!overflow, `${url} scrolls sideways at ${width} px`);
}

async function check(context, path) {
  const page = await context.newPage();
  const resp = await page.goto(`${demo.base}${path}`);
  assert.equal(resp.status(), 200, path);
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  assert.equal(await page.locator('h1').count(), 1, `${path} has one h1`);
  assert.equal(await page.locator('script').count(), 0, `${path} needs no JavaScript`);
  await audit(page.url(), 1280, context);
  await audit(page.url(), 320, context);
  return page;
}

test('every DPO page is axe-clean at 1280 and 320 px, with charts beside their tables', async () => {
  const paths = ['/.guichet/dpo/', '/.guichet/dpo/demandes?statut=toutes', '/.guichet/dpo/consentements',
    '/.guichet/dpo/journal', '/.guichet/dpo/conservation', '/.guichet/dpo/incidents'];
  for (const path of paths) {
    const page = await check(dpo, path);
    if (path === '/.guichet/dpo/') {
      const charts = page.locator('figure svg[role="img"]');
      assert.equal(await charts.count(), 3, 'three charts');
      assert.equal(await page.locator('figure table').count(), 3, 'each with its data table');
    }
    await page.close();
  }
});

test('the DPO verifies the journal without JavaScript', async () => {
  const page = await dpo.newPage();
  await page.goto(`${demo.base}/.guichet/dpo/journal`);
  await page.getByRole('button', { name: 'Vérifier le journal maintenant' }).click();
  // The demo seeds months of entries at start: they are covered by a signed checkpoint within seconds.
  assert.match(await page.locator('#verification').innerText(), /journal est (intact|ALTÉRÉ)/);
  await page.close();
});

test('the supervision view and its monthly report are axe-clean and name no one', async () => {
  for (const path of ['/.guichet/pilotage/', '/.guichet/pilotage/rapport']) {
    const page = await check(elected, path);
    const text = await page.locator('body').innerText();
    assert.doesNotMatch(text, /demo_habitant|demo_abonne/, `${path} shows no pseudonym`);
    await page.close();
  }
  // The DPO's console stays closed to the elected official.
  const page = await elected.newPage();
  const resp = await page.goto(`${demo.base}/.guichet/dpo/`);
  assert.equal(resp.status(), 403);
  await page.close();
});

test("the archivist's elimination lists are axe-clean, without JavaScript, and the seeded list waits for her visa", async () => {
  const archivist = await signedIn(/Anne DUBOIS/, '/.guichet/archives/');
  const home = await archivist.newPage();
  await home.goto(`${demo.base}/.guichet/agent/`);
  await Promise.all([home.waitForURL((u) => u.pathname === '/.guichet/archives/'), home.getByRole('link', { name: 'Archives', exact: true }).click()]);
  await home.close();
  const page = await check(archivist, '/.guichet/archives/');
  const link = page.locator('main table a').first();
  assert.ok(await link.count() > 0, 'the seeded list is listed');
  const path = new URL(await link.getAttribute('href'), page.url()).pathname;
  await page.close();
  const list = await check(archivist, path);
  assert.equal(await list.getByRole('button', { name: 'Donner mon visa' }).count(), 1, 'the visa is a plain form');
  await list.close();
  await archivist.close();
});

/** axe on the HTML `page` shows (a POST's answer cannot be loaded again by address), at `width` px. */
async function auditShown(page, width) {
  const html = await page.content();
  const js = await browser.newContext({ locale: 'fr-FR', bypassCSP: true, viewport: { width, height: 900 } });
  const probe = await js.newPage();
  await probe.goto(`${demo.base}/.guichet/health/live`);
  await probe.setContent(html);
  const violations = await accessibilityViolations(probe);
  const overflow = await probe.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await js.close();
  assert.deepEqual(violations, [], `${page.url()} (as shown) at ${width} px:\n${describe(violations)}`);
  assert.ok(!overflow, `${page.url()} scrolls sideways at ${width} px`);
}

test("the DPO's sector join and anonymous-record erase work without JavaScript and their answers are axe-clean", async () => {
  const page = await dpo.newPage();
  await page.goto(`${demo.base}/.guichet/dpo/demandes?statut=toutes`);
  // A request's card: the join needs a reason from the list.
  await page.locator('summary', { hasText: 'Relier les secteurs de la personne' }).first().click();
  const form = page.locator('form', { hasText: 'Relier les secteurs' }).first();
  await form.getByLabel('Raison').selectOption('inspection');
  await Promise.all([page.waitForLoadState(), form.getByRole('button', { name: 'Relier les secteurs' }).click()]);
  assert.match(await page.locator('[role="status"]').first().innerText(), /Secteurs reliés|ne peuvent pas être reliés/);
  await auditShown(page, 1280);
  await auditShown(page, 320);
  // The anonymous record form, at the bottom of the queue: refused for what is not a record.
  await page.goto(`${demo.base}/.guichet/dpo/demandes`);
  const erase = page.locator('form', { hasText: 'Effacer un enregistrement anonyme' });
  await erase.getByLabel(/Identifiant de l'enregistrement/).fill('citoyen-1');
  await erase.getByLabel('Service').selectOption('voirie');
  await erase.getByLabel('Raison').selectOption('subject_request');
  await Promise.all([page.waitForLoadState(), erase.getByRole('button', { name: "Effacer l'enregistrement" }).click()]);
  assert.match(await page.locator('[role="status"]').first().innerText(), /pas un enregistrement anonyme/);
  await auditShown(page, 320);
  await page.close();
});

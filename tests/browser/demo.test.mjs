// The demo, as a newcomer sees it: accessible pages that work without JavaScript, and the
// town-hall application showing exactly what the gateway sent it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDemo, launchBrowser, accessibilityViolations, describe, enrolAtCanteen } from './harness.mjs';

const out = join(dirname(fileURLToPath(import.meta.url)), 'out');
let demo;
let browser;
let context;

before(async () => {
  mkdirSync(out, { recursive: true });
  demo = await startDemo();
  browser = await launchBrowser();
  // Every page must work without JavaScript.
  context = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
});

after(async () => {
  await browser?.close();
  demo?.stop();
});

async function open(path) {
  const page = await context.newPage();
  const resp = await page.goto(`${demo.base}${path}`);
  return { page, resp };
}

async function assertAccessible(page) {
  // The pages run without JavaScript; axe needs it, so check the same URL in a JS-enabled tab.
  const jsContext = await browser.newContext({ locale: 'fr-FR', bypassCSP: true });
  const probe = await jsContext.newPage();
  await probe.goto(page.url());
  const violations = await accessibilityViolations(probe);
  await jsContext.close();
  assert.deepEqual(violations, [], describe(violations));
}

test('the home page is French, accessible and reached through the gateway', async () => {
  const { page, resp } = await open('/');
  assert.equal(resp.status(), 200);
  assert.ok(resp.headers()['x-request-id'], 'the gateway adds X-Request-Id');
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  assert.equal(await page.locator('h1').count(), 1);
  await page.screenshot({ path: join(out, 'home.png'), fullPage: true });
  await assertAccessible(page);
});

test('a citizen signs in with the demo provider and the application receives only a pseudonym and allowed claims', async () => {
  const { page } = await open('/cantine');
  // Not signed in: the gateway sends the browser to the demonstration identity provider.
  assert.match(await page.locator('body').innerText(), /Démonstration/);
  await page.screenshot({ path: join(out, 'idp-pick-list.png'), fullPage: true });
  await assertAccessible(page);
  await Promise.all([page.waitForURL(/\/cantine$/), page.getByRole('button', { name: /Angela DUBOIS/ }).click()]);
  await assertAccessible(page);
  await enrolAtCanteen(page);
  assert.match(page.url(), /\/cantine\/\d+$/);
  const text = await page.locator('body').innerText();
  assert.match(text, /Zoé/);
  assert.match(text, /x-forwarded-proto/i, 'the record page lists the headers the application received');
  assert.doesNotMatch(text, /x-forwarded-for/i, "the citizen's address is not sent: the route does not declare it");
  assert.match(text, /x-request-id/i);
  assert.match(text, /x-guichet-subject/i, 'the application receives a pseudonym');
  assert.match(text, /x-guichet-claim-given-name/i, 'and the claims this route allows');
  assert.doesNotMatch(text, /x-guichet-claim-birthdate/i, 'but not the others');
  assert.doesNotMatch(text, /guichet-session/i, "the gateway's session cookie never reaches the application");
  await page.screenshot({ path: join(out, 'cantine-record.png'), fullPage: true });
  await assertAccessible(page);

  // The application itself stored tokens: its diagnostic page (declared without personal
  // data, so the gateway reveals nothing there) shows them to an agent, never the values.
  const stored = await asAgent('/recu', /Lucie MARTIN/, 'recu-tokens.png');
  assert.match(stored, /gch[12]\./, 'the application stored field tokens');
  assert.doesNotMatch(stored, /Zoé|parent@example\.fr/, 'and never the values in clear');
  // The canteen's back-office list: the school service sees the child's name through the
  // gateway; the civil-status agent, whose role the policy does not list, sees placeholders.
  const school = await asAgent('/recu/cantine', /Sophie LEROY/, 'recu-cantine-scolaire.png');
  assert.match(school, /Zoé/);
  assert.doesNotMatch(school, /gch[12]\./);
  const other = await asAgent('/recu/cantine', /Lucie MARTIN/, 'recu-cantine-autre-agent.png');
  assert.match(other, /\[donnée protégée\]/);
  assert.doesNotMatch(other, /Zoé|gch[12]\./);
});

test('logging out takes one button on an accessible confirmation page', async () => {
  // The citizen signed in by the previous test: a GET shows the confirmation, ends nothing.
  const { page, resp } = await open('/.guichet/deconnexion');
  assert.equal(resp.status(), 200);
  assert.match(await page.locator('h1').innerText(), /Se déconnecter/);
  // axe runs with JavaScript in another tab: give it the session so it sees the same page.
  const jsContext = await browser.newContext({ locale: 'fr-FR', bypassCSP: true });
  await jsContext.addCookies(await context.cookies());
  const probe = await jsContext.newPage();
  await probe.goto(page.url());
  assert.match(await probe.locator('h1').innerText(), /Se déconnecter/);
  const violations = await accessibilityViolations(probe);
  await jsContext.close();
  assert.deepEqual(violations, [], describe(violations));
  await page.screenshot({ path: join(out, 'logout-confirm.png'), fullPage: true });
  // The button posts the logout: the demo provider then says the person is signed out.
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Me déconnecter' }).click()]);
  await page.waitForURL((u) => !u.pathname.startsWith('/.guichet/deconnexion'));
  assert.match(await page.locator('body').innerText(), /déconnecté/);
});

/** Signs in at the demo provider as the agent named `who` and returns the text of `path`. */
async function asAgent(path, who, screenshot) {
  const agentContext = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
  const page = await agentContext.newPage();
  await page.goto(`${demo.base}${path}`);
  await Promise.all([page.waitForURL((u) => u.pathname === path), page.getByRole('button', { name: who }).click()]);
  const text = await page.locator('body').innerText();
  await page.screenshot({ path: join(out, screenshot), fullPage: true });
  await agentContext.close();
  return text;
}

test('gateway error pages are plain French and accessible', async () => {
  const { page, resp } = await open('/.guichet/page-inexistante');
  assert.equal(resp.status(), 404);
  assert.match(await page.locator('h1').innerText(), /Page introuvable/);
  assert.match(await page.locator('body').innerText(), /Que faire/);
  await page.screenshot({ path: join(out, 'error-404.png') });
  await assertAccessible(page);
});

// "Mes données" and every citizen page of the gateway, in Chromium with JavaScript off: axe-clean
// at 1280 px and 320 px, the hub one click away from each, a right in three screens, and "who
// saw my data" showing an agent's look a moment before (and nothing to another citizen).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDemo, launchBrowser, accessibilityViolations, describe, enrolAtCanteen } from './harness.mjs';

// Screenshots: tests/browser/out/ by default; `UPDATE_SCREENSHOTS=1` writes the ones the
// documentation shows into docs/privacy-centre/ (then optimise them: docs/privacy-centre.md).
const here = dirname(fileURLToPath(import.meta.url));
const out = process.env.UPDATE_SCREENSHOTS ? join(here, '..', '..', 'docs', 'privacy-centre') : join(here, 'out');
const HUB = '/.guichet/mes-donnees/';
let demo;
let browser;
let angela;

/** A JavaScript-off context signed in at the demo provider as the person named `who`. */
async function signedIn(who) {
  const context = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
  const page = await context.newPage();
  await page.goto(`${demo.base}${HUB}`);
  await Promise.all([page.waitForURL((u) => u.pathname === HUB), page.getByRole('button', { name: who }).click()]);
  await page.close();
  return context;
}

before(async () => {
  mkdirSync(out, { recursive: true });
  demo = await startDemo();
  browser = await launchBrowser();
  angela = await signedIn(/Angela DUBOIS/);
});

after(async () => {
  await browser?.close();
  demo?.stop();
});

/** axe on `url` at `width` px, with `context`'s session (axe needs JavaScript: another tab). */
async function audit(url, width, context, shot) {
  const js = await browser.newContext({
    locale: 'fr-FR', bypassCSP: true, viewport: { width, height: 900 }, storageState: await context.storageState(),
  });
  const page = await js.newPage();
  await page.goto(url);
  const violations = await accessibilityViolations(page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  if (shot) await page.screenshot({ path: join(out, shot.replace('{w}', String(width))), fullPage: true });
  await js.close();
  assert.deepEqual(violations, [], `${url} at ${width} px:\n${describe(violations)}`);
  assert.ok(!overflow, `${url} scrolls sideways at ${width} px`);
}

const CITIZEN_PAGES = [
  ['hub', HUB],
  ['consent', '/.guichet/consentement/'],
  ['notices', '/.guichet/informations'],
  ['notice-cantine', '/.guichet/informations/cantine'],
  ['accessibility', '/.guichet/accessibilite'],
  ['logout', '/.guichet/deconnexion'],
  ['right-step-1', '/.guichet/mes-donnees/droits/acces'],
  ['right-step-2', '/.guichet/mes-donnees/droits/acces/confirmer?activite=toutes'],
  ['error-404', '/.guichet/page-inexistante'],
];

test('every citizen page is axe-clean at 1280 and 320 px, and the hub is one click away', async () => {
  for (const [name, path] of CITIZEN_PAGES) {
    const page = await angela.newPage();
    await page.goto(`${demo.base}${path}`);
    assert.equal(await page.getAttribute('html', 'lang'), 'fr');
    assert.equal(await page.locator('h1').count(), 1, `${path} has one h1`);
    assert.equal(await page.locator('script').count(), 0, `${path} needs no JavaScript`);
    const html = await page.content();
    assert.ok(Buffer.byteLength(html) < 50 * 1024, `${path} weighs less than 50 KB with its CSS`);
    await audit(page.url(), 1280, angela, `centre-${name}-{w}.png`);
    await audit(page.url(), 320, angela, `centre-${name}-{w}.png`);
    // One click to the hub, from the header.
    await Promise.all([
      page.waitForURL((u) => u.pathname === HUB),
      page.getByRole('navigation', { name: 'Menu du compte' }).getByRole('link', { name: 'Mes données' }).click(),
    ]);
    await page.close();
  }
});

test('a right takes three screens and files an online request', async () => {
  const page = await angela.newPage();
  await page.goto(`${demo.base}${HUB}`);
  let screens = 0;
  await Promise.all([page.waitForURL(/droits\/acces$/), page.locator('a[href="/.guichet/mes-donnees/droits/acces"]').click()]);
  screens += 1;
  assert.match(await page.locator('body').innerText(), /Étape 1 sur 3/);
  assert.match(await page.locator('body').innerText(), /Comment ça marche/);
  await page.getByLabel('Tous les services').check();
  await Promise.all([page.waitForURL(/confirmer/), page.getByRole('button', { name: 'Continuer' }).click()]);
  screens += 1;
  const confirm = await page.locator('body').innerText();
  assert.match(confirm, /Étape 2 sur 3/);
  assert.match(confirm, /Ce qui va se passer/);
  assert.match(confirm, /La mairie peut refuser/);
  assert.match(confirm, /Réponse au plus tard le\s+\d{1,2} [a-zéû]+ \d{4}/);
  await page.screenshot({ path: join(out, 'centre-right-confirm.png'), fullPage: true });
  await Promise.all([page.waitForURL(/demandes\/DR-/), page.getByRole('button', { name: 'Je confirme ma demande' }).click()]);
  screens += 1;
  const done = await page.locator('body').innerText();
  assert.match(done, /Étape 3 sur 3/);
  const reference = (await page.locator('.reference').innerText()).trim();
  assert.match(reference, /^DR-/);
  await page.screenshot({ path: join(out, 'centre-right-done.png'), fullPage: true });
  await audit(page.url(), 320, angela);
  assert.ok(screens <= 3, `${screens} screens`);
  // The request is in the hub, made online.
  await page.goto(`${demo.base}${HUB}`);
  const row = await page.locator('tr', { hasText: reference }).innerText();
  assert.match(row, /En ligne/);
  // Sent to the services at once: some answer by hand, so it waits for them.
  assert.match(row, /En attente des services|Terminée/);
  await page.close();
});

test('"who saw my data" shows an agent looking a moment before, and nothing to another citizen', async () => {
  // Angela enrols her child at the canteen (values sealed by the gateway).
  const page = await angela.newPage();
  await page.goto(`${demo.base}/cantine`);
  await enrolAtCanteen(page);
  // Before any agent looked.
  await page.goto(`${demo.base}${HUB}`);
  assert.match(await page.locator('#consultations ~ p').first().innerText(), /chaque fois, nous le notons/i);
  // The school service opens the canteen list through the gateway.
  const agent = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
  const agentPage = await agent.newPage();
  await agentPage.goto(`${demo.base}/recu/cantine`);
  await Promise.all([
    agentPage.waitForURL((u) => u.pathname === '/recu/cantine'),
    agentPage.getByRole('button', { name: /Sophie LEROY/ }).click(),
  ]);
  assert.match(await agentPage.locator('body').innerText(), /Zoé/);
  await agent.close();
  // Angela sees it: date, service, role, purpose; never the agent's name.
  await page.goto(`${demo.base}${HUB}`);
  const seen = await page.locator('table', { hasText: 'Quelles données' }).innerText();
  assert.match(seen, /agent-scolaire/);
  assert.match(seen, /Cantine/i);
  assert.match(seen, /\d{1,2} [a-zéû]+ \d{4} à \d{1,2} h \d{2}/, 'a French local date');
  assert.doesNotMatch(seen, /Sophie|LEROY/);
  await page.screenshot({ path: join(out, 'centre-hub-who-saw.png'), fullPage: true });
  await page.close();
  // Another citizen sees nothing of it.
  const other = await signedIn(/Noms composés/);
  const otherPage = await other.newPage();
  await otherPage.goto(`${demo.base}${HUB}`);
  const text = await otherPage.locator('body').innerText();
  assert.match(text, /Aucun agent n'a vu vos données/);
  assert.doesNotMatch(text, /agent-scolaire/);
  await other.close();
});

/** axe on the HTML `page` shows (a POST's answer cannot be loaded again by address), at
 * `width` px, in a JavaScript tab; a screenshot when `shot` is given. */
async function auditShown(page, width, shot) {
  const html = await page.content();
  const js = await browser.newContext({ locale: 'fr-FR', bypassCSP: true, viewport: { width, height: 900 } });
  const probe = await js.newPage();
  await probe.goto(`${demo.base}/.guichet/health/live`);
  await probe.setContent(html);
  const violations = await accessibilityViolations(probe);
  const overflow = await probe.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  if (shot) await probe.screenshot({ path: join(out, shot.replace('{w}', String(width))), fullPage: true });
  await js.close();
  assert.deepEqual(violations, [], `${page.url()} (as shown) at ${width} px:\n${describe(violations)}`);
  assert.ok(!overflow, `${page.url()} scrolls sideways at ${width} px`);
}

/** Angela asks for a code on her consent page: that page, and the code she reads out. */
async function angelasCode() {
  const mine = await angela.newPage();
  await mine.goto(`${demo.base}/.guichet/consentement/`);
  await Promise.all([mine.waitForURL(/consentement/), mine.getByRole('button', { name: "Obtenir un code pour l'agent" }).click()]);
  return { mine, code: (await mine.locator('#code-agent').innerText()).trim() };
}

/** The counter agent (Claire MOREAU) signs in from `path`, JavaScript off, and lands on
 * `landing`: the context and its page. */
async function counterAgentAt(path, landing = path) {
  const counter = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
  const page = await counter.newPage();
  await page.goto(`${demo.base}${path}`);
  await Promise.all([
    page.waitForURL((u) => u.pathname === landing),
    page.getByRole('button', { name: /Claire MOREAU/ }).click(),
  ]);
  return { counter, page };
}

test('an agent files a right with a citizen at the counter in three screens', async () => {
  // Angela asks for a code on her consent page and reads it out.
  const { mine, code } = await angelasCode();
  assert.match(code, /\w/);
  // The counter agent signs in and opens the assisted mode.
  const { counter, page } = await counterAgentAt('/.guichet/guichet-agent/');
  let screens = 1;
  assert.match(await page.locator('body').innerText(), /Étape 1 sur 3/);
  assert.equal(await page.locator('script').count(), 0, 'no JavaScript');
  await audit(page.url(), 1280, counter, 'assisted-1-{w}.png');
  await audit(page.url(), 320, counter, 'assisted-1-{w}.png');
  await page.getByLabel('Effacer mes données').check();
  await page.getByLabel('Pour quel service ?').selectOption({ label: "Lettre d'information municipale" });
  await page.getByLabel('Au guichet').check();
  await page.getByLabel("Carte d'identité").check();
  await page.getByLabel(/Code lu par l'usager/).fill(code);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Continuer' }).click()]);
  screens += 1;
  const two = await page.locator('body').innerText();
  assert.match(two, /Étape 2 sur 3/);
  assert.match(two, /Réponse au plus tard le\s+\d{1,2} [a-zéû]+ \d{4}/);
  await auditShown(page, 1280, 'assisted-2-{w}.png');
  await auditShown(page, 320, 'assisted-2-{w}.png');
  await Promise.all([page.waitForURL(/guichet-agent\/demandes\/DR-/), page.getByRole('button', { name: 'Enregistrer la demande' }).click()]);
  screens += 1;
  assert.match(await page.locator('body').innerText(), /Étape 3 sur 3/);
  const reference = (await page.locator('.reference').innerText()).trim();
  assert.match(reference, /^DR-/);
  await audit(page.url(), 1280, counter, 'assisted-3-{w}.png');
  await audit(page.url(), 320, counter, 'assisted-3-{w}.png');
  assert.ok(screens <= 3, `${screens} screens`);
  await counter.close();
  // The request is Angela's, made at the counter.
  await mine.goto(`${demo.base}${HUB}`);
  const row = await mine.locator('tr', { hasText: reference }).innerText();
  assert.match(row, /Au guichet/);
  assert.match(row, /Effacer mes données/);
  await mine.close();
});

test('"Télécharger mes données" at the end of the access procedure', async () => {
  const page = await angela.newPage();
  await page.goto(`${demo.base}/.guichet/mes-donnees/droits/acces`);
  await page.getByLabel('Inscription à la cantine scolaire').check();
  await Promise.all([page.waitForURL(/confirmer/), page.getByRole('button', { name: 'Continuer' }).click()]);
  await Promise.all([page.waitForURL(/demandes\/DR-/), page.getByRole('button', { name: 'Je confirme ma demande' }).click()]);
  // The demo application answers at once; the page says when it is ready, and offers it then.
  for (let i = 0; i < 50 && (await page.getByRole('link', { name: 'Télécharger mes données' }).count()) === 0; i += 1) {
    assert.match(await page.locator('#telecharger ~ p').first().innerText(), /prêtes le \d{1,2} [a-zéû]+ \d{4} au plus tard/);
    await page.waitForTimeout(100);
    await page.getByRole('link', { name: 'Voir si elles sont prêtes' }).click();
  }
  assert.match(await page.locator('body').innerText(), /Vos données sont prêtes/);
  await audit(page.url(), 1280, angela, 'centre-download-{w}.png');
  await audit(page.url(), 320, angela, 'centre-download-{w}.png');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Télécharger mes données' }).click(),
  ]);
  assert.match(download.suggestedFilename(), /^mes-donnees-DR-[0-9A-Z-]+\.zip$/);
  await page.close();
});

test('the newsletter shows the gateway bar, axe-clean', async () => {
  const page = await angela.newPage();
  await page.goto(`${demo.base}/.guichet/consentement/`);
  const give = page.getByRole('button', { name: /Je donne mon accord pour : Lettre/ });
  if (await give.count()) await Promise.all([page.waitForLoadState(), give.click()]);
  await page.goto(`${demo.base}/lettre-information/`);
  const bar = page.getByRole('navigation', { name: 'Vos données à la mairie' });
  assert.equal(await bar.count(), 1);
  assert.equal(await bar.getByRole('link', { name: 'Mes données' }).count(), 1);
  assert.equal(await bar.getByRole('link', { name: 'Se déconnecter' }).count(), 1);
  assert.equal(await page.locator('script').count(), 0);
  await audit(page.url(), 1280, angela, 'bar-{w}.png');
  await audit(page.url(), 320, angela, 'bar-{w}.png');
});

test('a notice with its easy-to-read version', async () => {
  const page = await angela.newPage();
  await page.goto(`${demo.base}/.guichet/informations/cantine`);
  assert.match(await page.locator('#facile').innerText(), /En bref, avec des mots simples/);
  await audit(page.url(), 1280, angela, 'notice-falc-{w}.png');
  await page.close();
});

// Each right from the hub's link, with JavaScript off: at most three screens,
// each axe-clean at 1280 and 320 px. "Corriger" lists the service's fields by their labels.
const RIGHTS = [
  ['rectification', 'cantine', 'Corriger'],
  ['effacement', 'lettre-information', 'Effacer'],
  ['limitation', 'cantine', 'Geler'],
  ['opposition', 'cantine', "S'opposer"],
];

for (const [slug, activity] of RIGHTS) {
  test(`the ${slug} right takes three screens from the hub, axe-clean at 320 px, without JavaScript`, async () => {
    const page = await angela.newPage();
    await page.goto(`${demo.base}${HUB}`);
    let screens = 0;
    // The service's own list of rights on the hub, once she used the service (earlier tests);
    // run alone, the first screen by its address.
    const link = page.locator(`a[href="/.guichet/mes-donnees/droits/${slug}?activite=${activity}"]`).first();
    if (await link.count()) {
      await Promise.all([page.waitForURL(new RegExp(`droits/${slug}\\?`)), link.click()]);
    } else {
      await page.goto(`${demo.base}/.guichet/mes-donnees/droits/${slug}`);
    }
    screens += 1;
    assert.equal(await page.locator('script').count(), 0, 'no JavaScript');
    assert.match(await page.locator('body').innerText(), /Étape 1 sur 3/);
    await audit(page.url(), 1280, angela);
    await audit(page.url(), 320, angela);
    await page.locator(`input[value="${activity}"]`).check();
    await Promise.all([page.waitForURL(/confirmer/), page.getByRole('button', { name: 'Continuer' }).click()]);
    screens += 1;
    assert.match(await page.locator('body').innerText(), /Étape 2 sur 3/);
    await audit(page.url(), 1280, angela, `centre-${slug}-2-{w}.png`);
    await audit(page.url(), 320, angela, `centre-${slug}-2-{w}.png`);
    if (slug === 'rectification') {
      // The fields by the policy's labels; the new value typed in.
      assert.equal(await page.getByLabel("Régime alimentaire de l'enfant").count(), 1);
      // What cannot be corrected here (the school, a `pass` field) is named, with where to go.
      const offline = await page.locator('#pas-en-ligne ~ ul').first().innerText();
      assert.match(offline, /École/);
      assert.equal(await page.getByLabel('École').count(), 0, 'no input for a field not sealed');
      assert.match(await page.locator('body').innerText(), /venez à l'accueil de la mairie/);
      await page.getByLabel('Adresse e-mail du parent').fill('parent.nouveau@example.fr');
    }
    await Promise.all([page.waitForURL(/demandes\/DR-/), page.getByRole('button', { name: 'Je confirme ma demande' }).click()]);
    screens += 1;
    assert.match(await page.locator('body').innerText(), /Étape 3 sur 3/);
    const reference = (await page.locator('.reference').innerText()).trim();
    assert.match(reference, /^DR-/);
    await audit(page.url(), 1280, angela);
    await audit(page.url(), 320, angela);
    assert.ok(screens <= 3, `${screens} screens`);
    await page.goto(`${demo.base}${HUB}`);
    assert.match(await page.locator('tr', { hasText: reference }).innerText(), /En ligne/);
    await page.close();
  });
}

test('an agent types the corrected value of a rectification at the counter', async () => {
  const { mine, code } = await angelasCode();
  const { counter, page } = await counterAgentAt('/.guichet/guichet-agent/');
  let screens = 1;
  await page.getByLabel('Corriger mes données').check();
  await page.getByLabel('Pour quel service ?').selectOption({ label: 'Inscription à la cantine scolaire' });
  await page.getByLabel('Au guichet').check();
  await page.getByLabel("Carte d'identité").check();
  await page.getByLabel(/Code lu par l'usager/).fill(code);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Continuer' }).click()]);
  screens += 1;
  assert.match(await page.locator('body').innerText(), /Étape 2 sur 3/);
  // The same fields as on the citizen's own screen, by their labels; the school is named apart.
  await page.getByLabel('Adresse e-mail du parent').fill('parent.guichet@example.fr');
  assert.match(await page.locator('#pas-en-ligne ~ ul').first().innerText(), /École/);
  await auditShown(page, 1280, 'assisted-rectification-2-{w}.png');
  await auditShown(page, 320, 'assisted-rectification-2-{w}.png');
  await Promise.all([page.waitForURL(/guichet-agent\/demandes\/DR-/), page.getByRole('button', { name: 'Enregistrer la demande' }).click()]);
  screens += 1;
  assert.match(await page.locator('body').innerText(), /Étape 3 sur 3/);
  const reference = (await page.locator('.reference').innerText()).trim();
  assert.ok(screens <= 3, `${screens} screens`);
  await counter.close();
  await mine.goto(`${demo.base}${HUB}`);
  const row = await mine.locator('tr', { hasText: reference }).innerText();
  assert.match(row, /Au guichet/);
  assert.match(row, /Corriger/);
  await mine.close();
});

test('an agent goes back from screen 2 and keeps the typed value', async () => {
  const { mine, code } = await angelasCode();
  await mine.close();
  const { counter, page } = await counterAgentAt('/.guichet/guichet-agent/');
  await page.getByLabel('Corriger mes données').check();
  await page.getByLabel('Pour quel service ?').selectOption({ label: 'Inscription à la cantine scolaire' });
  await page.getByLabel('Au guichet').check();
  await page.getByLabel("Carte d'identité").check();
  await page.getByLabel(/Code lu par l'usager/).fill(code);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Continuer' }).click()]);
  await page.getByText('Étape 2 sur 3').waitFor();
  await page.getByLabel('Adresse e-mail du parent').fill('parent.retour@example.fr');
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: "Revenir à l'étape 1" }).click()]);
  await page.getByText('Étape 1 sur 3').waitFor();
  // Screen 1 as the agent left it.
  assert.ok(await page.getByLabel('Corriger mes données').isChecked());
  assert.equal(await page.getByLabel(/Code lu par l'usager/).inputValue(), code);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Continuer' }).click()]);
  await page.getByText('Étape 2 sur 3').waitFor();
  // The value typed before going back is still in its input.
  assert.equal(await page.getByLabel('Adresse e-mail du parent').inputValue(), 'parent.retour@example.fr');
  await counter.close();
});

test('an agent signing in without a return address lands on "Espace agent"', async () => {
  const { counter, page } = await counterAgentAt('/.guichet/agent/connexion', '/.guichet/agent/');
  assert.match(await page.locator('h1').innerText(), /Espace agent/);
  await counter.close();
});

test('a counter agent finds the assisted mode by clicking, from "Espace agent"', async () => {
  const { counter, page } = await counterAgentAt('/.guichet/agent/');
  // The header leads agents to their space, not to the citizens' "Mes données".
  const menu = page.getByRole('navigation', { name: 'Menu du compte' });
  assert.equal(await menu.getByRole('link', { name: 'Espace agent' }).count(), 1);
  assert.equal(await menu.getByRole('link', { name: 'Mes données' }).count(), 0);
  assert.equal(await page.locator('script').count(), 0, 'no JavaScript');
  await audit(page.url(), 1280, counter, 'agent-space-{w}.png');
  await audit(page.url(), 320, counter, 'agent-space-{w}.png');
  // From any gateway page, one click to the space, one more to the assisted mode.
  await page.goto(`${demo.base}/.guichet/informations`);
  await Promise.all([page.waitForURL((u) => u.pathname === '/.guichet/agent/'), menu.getByRole('link', { name: 'Espace agent' }).click()]);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.guichet/guichet-agent/'),
    page.getByRole('link', { name: 'Faire une demande avec un usager' }).click(),
  ]);
  assert.match(await page.locator('body').innerText(), /Étape 1 sur 3/);
  await counter.close();
});

test('a counter agent prints the letter of a citizen without e-mail and marks it sent, by clicking', async () => {
  // A citizen without an online account files at the counter: no e-mail, so a letter.
  const { counter, page } = await counterAgentAt('/.guichet/agent/');
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.guichet/guichet-agent/'),
    page.getByRole('link', { name: 'Faire une demande avec un usager' }).click(),
  ]);
  await page.getByLabel('Effacer mes données').check();
  await page.getByLabel('Pour quel service ?').selectOption({ label: "Lettre d'information municipale" });
  await page.getByLabel('Au guichet').check();
  await page.getByLabel('Passeport').check();
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Continuer' }).click()]);
  await Promise.all([page.waitForURL(/guichet-agent\/demandes\/DR-/), page.getByRole('button', { name: 'Enregistrer la demande' }).click()]);
  const reference = (await page.locator('.reference').innerText()).trim();
  assert.match(reference, /^DR-/);
  // From any gateway page: "Espace agent", then "Lettres à envoyer".
  const menu = page.getByRole('navigation', { name: 'Menu du compte' });
  await Promise.all([page.waitForURL((u) => u.pathname === '/.guichet/agent/'), menu.getByRole('link', { name: 'Espace agent' }).click()]);
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.guichet/agent/courriers/'),
    page.getByRole('link', { name: 'Lettres à envoyer' }).click(),
  ]);
  assert.equal(await page.locator('script').count(), 0, 'no JavaScript');
  const row = page.locator('li.carte', { hasText: reference });
  assert.match(await row.innerText(), /Votre demande a bien été reçue/);
  assert.match(await row.innerText(), /\d{1,2} [a-zéû]+ \d{4} à \d{1,2} h \d{2}/, 'a French local date');
  await audit(page.url(), 1280, counter, 'letters-{w}.png');
  await audit(page.url(), 320, counter, 'letters-{w}.png');
  // The printable letter: the reference, and the address block left blank to write by hand.
  await Promise.all([page.waitForURL(/\/agent\/courriers\/[0-9a-f]+$/), row.getByRole('link', { name: 'Imprimer la lettre' }).click()]);
  assert.match(await page.locator('main').innerText(), new RegExp(reference));
  assert.equal((await page.locator('address.to').innerText()).trim(), '');
  await audit(page.url(), 1280, counter, 'letter-{w}.png');
  await audit(page.url(), 320, counter, 'letter-{w}.png');
  // Posted: "Lettre envoyée", and it leaves the list.
  await page.goBack();
  await Promise.all([
    page.waitForURL((u) => u.search === '?envoyee=1'),
    page.locator('li.carte', { hasText: reference }).getByRole('button', { name: 'Lettre envoyée' }).click(),
  ]);
  assert.match(await page.locator('body').innerText(), /la lettre est envoyée/);
  assert.equal(await page.locator('li.carte', { hasText: reference }).count(), 0);
  await counter.close();
});

test('"Saisir pour un usager": the agent enters a street report for Angela; the application gets tokens; Angela sees the entry', async () => {
  const { mine, code } = await angelasCode();
  await mine.close();
  // The counter agent (role `accueil`) reaches the page by clicking from "Espace agent".
  const { counter, page } = await counterAgentAt('/.guichet/agent/');
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.guichet/guichet-agent/usager'),
    page.getByRole('link', { name: 'Saisir pour un usager' }).click(),
  ]);
  assert.equal(await page.locator('script').count(), 0, 'no JavaScript');
  await audit(page.url(), 1280, counter, 'assisted-entry-{w}.png');
  await audit(page.url(), 320, counter, 'assisted-entry-{w}.png');
  await page.getByLabel('Au guichet').check();
  await page.getByLabel("Code lu par l'usager").fill(code);
  await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Choisir cet usager' }).click()]);
  assert.match(await page.locator('#usager-choisi').innerText(), /Au guichet/);
  await audit(page.url(), 320, counter, 'assisted-entry-chosen-{w}.png');
  // The service's form, reached by clicking from the card, filled for Angela.
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/voirie/signalements/'),
    page.locator('#formulaires').getByRole('link', { name: "Signalement d'un problème sur la voirie" }).click(),
  ]);
  await page.getByLabel('Lieu du problème').fill('12 rue des Lilas');
  await page.getByLabel('Description du problème').fill('Lampadaire cassé');
  await page.getByLabel('Votre nom').fill('Angela Dubois');
  await page.getByLabel('Votre adresse e-mail').fill('angela.dubois@example.fr');
  await Promise.all([
    page.waitForURL(/\/voirie\/signalements\/\d+$/),
    page.getByRole('button', { name: 'Envoyer le signalement' }).click(),
  ]);
  const shown = await page.locator('body').innerText();
  assert.match(shown, /Lampadaire cassé/, 'the fields the policy passes in clear');
  assert.doesNotMatch(shown, /Angela Dubois|angela\.dubois@/, 'the agent does not see what they typed once sealed');
  assert.match(shown, /\[donnée protégée\]/);
  await counter.close();
  // The application stored tokens, never the values (its diagnostic page, not revealed).
  const clerk = await browser.newContext({ javaScriptEnabled: false, locale: 'fr-FR' });
  const list = await clerk.newPage();
  await list.goto(`${demo.base}/recu`);
  await Promise.all([list.waitForURL((u) => u.pathname === '/recu'), list.getByRole('button', { name: /Lucie MARTIN/ }).click()]);
  const stored = await list.locator('body').innerText();
  assert.match(stored, /Signalements sur la voirie/);
  assert.match(stored, /gch2\./, 'the application received tokens');
  assert.doesNotMatch(stored, /Angela Dubois|angela\.dubois@/);
  await clerk.close();
  // Angela sees the entry in "who saw my data": service, role, channel, date; never the agent.
  const hub = await angela.newPage();
  await hub.goto(`${demo.base}${HUB}`);
  const seen = await hub.locator('table', { hasText: 'Quelles données' }).innerText();
  assert.match(seen, /L'agent a saisi vos données pour vous \(au guichet\)/);
  assert.match(seen, /Agent : accueil/);
  assert.match(seen, /voirie/i);
  assert.match(seen, /\d{1,2} [a-zéû]+ \d{4} à \d{1,2} h \d{2}/, 'a French local date');
  assert.doesNotMatch(seen, /Claire|MOREAU/);
  await hub.close();
});

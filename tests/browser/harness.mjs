// Shared helpers for the browser tests: start the real `guichet demo` binary on free loopback
// ports, drive Debian's Chromium with playwright-core, and run axe-core on a page.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const GUICHET_BIN = process.env.GUICHET_BIN ?? join(here, '..', '..', 'target', 'debug', 'guichet');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** `n` distinct loopback ports nothing listens on right now (all held open until every one is
 * chosen, so the kernel cannot hand out the same port twice). */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i += 1) {
      const srv = createServer();
      await new Promise((resolve, reject) => {
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', resolve);
      });
      servers.push(srv);
    }
    return servers.map((srv) => srv.address().port);
  } finally {
    await Promise.all(servers.map((srv) => new Promise((resolve) => srv.close(resolve))));
  }
}

/** Starts `guichet demo` and resolves once its liveness probe answers. A port chosen free can
 * be taken by another process (another test's client socket) before the demo binds it: the
 * demo then exits at once saying so, and is started again on other ports. */
export async function startDemo() {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startDemoOnce();
    } catch (e) {
      if (!e.portTaken || attempt === 5) throw e;
    }
  }
}

async function startDemoOnce() {
  const [port, adminPort] = await freePorts(2);
  const dataDir = mkdtempSync(join(tmpdir(), 'guichet-browser-'));
  const child = spawn(
    GUICHET_BIN,
    ['demo', '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--data-dir', dataDir],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GUICHET_LOG: 'warn' } },
  );
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15000;
  for (;;) {
    if (child.exitCode !== null) {
      const e = new Error(`guichet demo exited early:\n${output}`);
      e.portTaken = output.includes('Address already in use');
      throw e;
    }
    try {
      const r = await fetch(`${base}/.guichet/health/live`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`guichet demo did not answer within 15 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { base, child, output: () => output, stop: () => child.kill('SIGTERM') };
}

/** Headless Chromium with the flags this closed network needs. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Runs axe-core for WCAG 2.1 A and AA on the page; returns the violations. */
export async function accessibilityViolations(page) {
  await page.addScriptTag({ content: AXE_SOURCE });
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }));
}

/** A readable message for failed accessibility assertions. */
export function describe(violations) {
  return violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.join(', ')}`).join('\n');
}

/** Fills and sends the demo canteen form on `page` (at `/cantine`, signed in), by the labels:
 * filling by label also proves every input has a label bound to it. */
export async function enrolAtCanteen(page) {
  await page.getByLabel("Prénom(s) de l'enfant").fill('Zoé');
  await page.getByLabel("Nom de famille de l'enfant").fill('Martin');
  await page.getByLabel("Date de naissance de l'enfant").fill('2018-04-02');
  await page.getByLabel('École').selectOption({ index: 1 });
  await page.getByLabel('Votre adresse e-mail').fill('parent@example.fr');
  await Promise.all([page.waitForURL(/\/cantine\/\d+$/), page.getByRole('button', { name: /Envoyer/ }).click()]);
}

// The registration page in a real browser: Playwright (playwright-core, no browser download)
// drives Debian's Chromium headless. Usage: node browser.mjs CONFIG.json; writes the results
// JSON named in the config. Every request the page makes is recorded: none may leave the
// page's origin, and none may carry the password (plaintext, base64, URL-encoded).
import { readFileSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// The owner's password comes from the environment, so no file of the run holds it.
config.password = process.env.LINKPAGE_E2E_PASSWORD;
const origin = new URL(config.base).origin;
const results = [];
const check = (name, ok, detail = '') => results.push({ name, ok: Boolean(ok), detail: String(detail).slice(0, 800) });
const requests = [];
const external = [];
let sealBody = null;

function passwordForms(pw) {
  const b64 = Buffer.from(pw, 'utf8').toString('base64');
  return [pw, encodeURIComponent(pw), b64, b64.replace(/=+$/, ''), Buffer.from(pw, 'utf8').toString('base64url')];
}

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
// A fresh profile per run: launch() uses a new temporary user-data-dir. The test server's
// certificate comes from a throwaway CA, hence ignoreHTTPSErrors.
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 900, height: 860 } });
await context.route('**/*', (route) => {
  const url = route.request().url();
  if (new URL(url).origin !== origin) {
    external.push(url);
    return route.abort();
  }
  return route.continue();
});
context.on('request', (r) => {
  requests.push({ url: r.url(), method: r.method(), headers: r.headers(), body: r.postData() || '' });
  if (r.method() === 'POST' && r.url().endsWith('/api/seal')) sealBody = r.postData();
});

async function openLink(url) {
  const page = await context.newPage();
  const response = await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.state !== 'loading', null, { timeout: 15000 });
  return { page, response };
}

async function state(page) {
  return page.evaluate(() => ({ state: document.body.dataset.state, reason: document.body.dataset.reason || '' }));
}

async function shot(page, name) {
  await page.screenshot({ path: `${config.shots}/linkpage-${name}.png`, fullPage: true });
}

async function refusedPage(name, url, reason, screenshot) {
  const { page } = await openLink(url);
  const s = await state(page);
  check(`${name}: refused with the ${reason} page`, s.state === 'refused' && s.reason === reason, JSON.stringify(s));
  const text = await page.locator('#refused').innerText();
  if (screenshot) await shot(page, screenshot);
  await page.close();
  return text;
}

try {
  // 1. Open, check, type, submit.
  const { page, response } = await openLink(config.links.owner);
  const headers = response.headers();
  check('page: Content-Security-Policy as configured', headers['content-security-policy'] === config.csp, headers['content-security-policy']);
  for (const [name, value] of [['referrer-policy', 'no-referrer'], ['cache-control', 'no-store'],
    ['x-content-type-options', 'nosniff'], ['strict-transport-security', 'max-age=31536000']]) {
    check(`page: ${name}: ${value}`, headers[name] === value, headers[name]);
  }
  check('page: shows the form', (await state(page)).state === 'form', JSON.stringify(await state(page)));
  const details = await page.locator('#details').innerText();
  check('page: shows the account', details.includes(config.username), details);
  check('page: shows the SMTP server', details.includes(config.smtpHost), details);
  check('page: shows namespace/name', details.includes(config.credential), details);
  check('page: shows who asked', details.includes(config.requestedBy), details);
  check('page: shows the expiry', /Link expires/.test(details), details);
  check('page: the token is gone from the address bar', !page.url().includes('#'), page.url());
  await shot(page, 'form');

  // CSP in force: an injected external image and inline script are blocked by the browser.
  const violations = await page.evaluate(async () => {
    const seen = [];
    document.addEventListener('securitypolicyviolation', (e) => seen.push(e.violatedDirective));
    const img = document.createElement('img');
    img.src = 'https://cdn.example.invalid/pixel.png';
    document.body.append(img);
    const s = document.createElement('script');
    s.textContent = 'window.__inline = 1';
    document.body.append(s);
    await new Promise((r) => setTimeout(r, 300));
    img.remove();
    s.remove();
    return { seen, inline: window.__inline === 1 };
  });
  check('CSP: injected inline script does not run', !violations.inline, JSON.stringify(violations));
  check('CSP: the browser reports the violations', violations.seen.length >= 2, JSON.stringify(violations));

  await page.fill('#password', config.password);
  await page.fill('#password2', config.password);
  await page.click('#submit');
  await page.waitForFunction(() => document.body.dataset.state !== 'form', null, { timeout: 15000 });
  const done = await state(page);
  check('submit: sealed and stored', done.state === 'done', JSON.stringify(done) + (await page.locator('main').innerText()));
  const doneText = await page.locator('#done').innerText();
  const fingerprint = (doneText.match(/sha256:[0-9a-f]{64}/) || [''])[0];
  check('submit: the page shows the fingerprint and how to verify', fingerprint && doneText.includes('kubectl get mcred'), doneText);
  check('submit: the password fields are cleared', (await page.inputValue('#password')) === '');
  await shot(page, 'sealed');
  await page.close();

  // 2. Every request so far: same origin, no password in any form.
  const forms = passwordForms(config.password);
  const leaking = requests.filter((r) => forms.some((f) => r.url.includes(f) || r.body.includes(f) || JSON.stringify(r.headers).includes(f)));
  check('requests: the password appears in none (plaintext, base64, URL-encoded)', leaking.length === 0, JSON.stringify(leaking.map((r) => r.url)));
  check('requests: the seal POST carries ciphertext fields only', sealBody && ['encryptedDataKey', 'nonce', 'ciphertext', 'aadSha256'].every((k) => sealBody.includes(k)), sealBody);
  check('requests: the token is never in a URL', requests.every((r) => !r.url.includes(config.ownerToken)), JSON.stringify(requests.map((r) => r.url)));

  // 3. Refusals: used, expired, already sealed; tampered, foreign and unknown look the same.
  await refusedPage('second use', config.links.owner, 'used', 'used');
  await refusedPage('expired link', config.links.expired, 'expired', 'expired');
  await refusedPage('credential already sealed, no --replace', config.links.sealed, 'already_sealed', 'already-sealed');
  const tampered = await refusedPage('tampered token', config.links.tampered, 'unknown', 'unknown');
  const foreign = await refusedPage("another request's token", config.links.foreign, 'unknown');
  const unknown = await refusedPage('unknown name', config.links.unknownName, 'unknown');
  check('tampered, foreign and unknown: the same page', tampered === foreign && foreign === unknown, [tampered, foreign, unknown].join(' | '));

  // 4. Brute force from this client: limited, while the service stays up (checked by run.py
  // from another address).
  const probe = await context.newPage();
  await probe.goto(`${config.base}/`);
  const codes = await probe.evaluate(async (n) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      const token = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[b % 64]).join('').slice(0, 43);
      const r = await fetch('/api/open', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ namespace: 'e2e', name: 'billing', token }) });
      out.push(r.status);
    }
    return out;
  }, config.bruteForce);
  await probe.close();
  const first429 = codes.indexOf(429);
  check(`brute force: ${config.bruteForce} bad tokens are rate-limited (429)`, first429 >= 0 && first429 <= config.badTokenLimit, codes.join(','));
  check('brute force: once limited, every guess is refused', first429 >= 0 && codes.slice(first429).every((c) => c === 429), codes.join(','));
  await refusedPage('rate-limited client', config.links.tampered, 'rate_limited', 'rate-limited');

  check('no request left the origin', external.length === 0, external.join(' '));
} catch (e) {
  check('browser suite ran to the end', false, e.stack || e);
} finally {
  await browser.close();
}
writeFileSync(config.out, JSON.stringify({ results, sealBody, requests: requests.length }, null, 1));

// Browser sign-in in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is downloaded) opens the gateway, is sent to the sign-in page, signs
// in through the form, sees the MLflow UI (whose script calls /ajax-api/ with the cookie), and signs out.
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumProblem, launchChromium } from './helpers/chromium.ts';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { startMlflowUpstream, type MlflowUpstream } from './helpers/mlflow-upstream.ts';

const PROBLEM = chromiumProblem();
const title = `browser sign-in in headless Chromium${PROBLEM ? ` (skipped: ${PROBLEM})` : ''}`;

describe.skipIf(PROBLEM !== undefined)(title, () => {
  let upstream: MlflowUpstream;
  let gw: TestGateway;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    upstream = await startMlflowUpstream();
    gw = await startTestGateway({ upstream: upstream.url, users: { alice: 'alice-password' } });
    browser = await launchChromium();
    // The gateway's certificate is self-signed; this browser profile trusts it as a user would after accepting it.
    context = await browser.newContext({ ignoreHTTPSErrors: true });
    page = await context.newPage();
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    await upstream?.close();
  });

  it('is sent to the sign-in page, and a wrong password is shown as such', async () => {
    await page.goto(`${gw.url}/#/experiments/1`);
    expect(page.url()).toBe(`${gw.url}/-/login?next=%2F#/experiments/1`);
    await expect(page.getByRole('heading', { level: 1 }).textContent()).resolves.toBe('Sign in to MLflow');

    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForLoadState();
    await expect(page.getByRole('alert').textContent()).resolves.toBe('Invalid user name or password.');
    await expect(page.getByLabel('User name').inputValue()).resolves.toBe('alice');
    expect((await context.cookies()).filter((cookie) => cookie.name.includes('mlgate'))).toEqual([]);
  });

  it('signs in through the form and sees the MLflow UI, whose own calls carry the session', async () => {
    await page.getByLabel('Password').fill('alice-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${gw.url}/#/experiments/1`); // back where the user was, MLflow's route included

    await expect(page.locator('#user').textContent()).resolves.toBe('alice');
    await page.waitForFunction(() => document.getElementById('experiments')?.textContent !== 'loading');
    // No experiment alice may read: MLflow's answer for none leaves the empty list out.
    await expect(page.locator('#experiments').textContent()).resolves.toBe('200 {}');
    const call = upstream.requests.filter((r) => r.url === '/ajax-api/2.0/mlflow/experiments/search').at(-1)!;
    expect(call.method).toBe('POST');
    expect(call.headers['x-forwarded-user']).toBe('alice');
    expect(call.headers.cookie).toBeUndefined();

    const [cookie] = (await context.cookies()).filter((c) => c.name.includes('mlgate'));
    expect(cookie).toMatchObject({ name: '__Host-mlgate-session', path: '/', httpOnly: true, secure: true, sameSite: 'Lax' });
    expect(cookie!.expires * 1000).toBeGreaterThan(Date.now() + 11 * 3600_000);
    // HttpOnly: the page's scripts cannot read it.
    await expect(page.evaluate(() => document.cookie)).resolves.not.toContain('mlgate');
  });

  it('signs out, lands on the sign-in page, and can no longer reach the UI', async () => {
    const signedIn = await context.cookies();
    await page.goto(`${gw.url}/-/logout`);
    await expect(page.locator('main').textContent()).resolves.toContain('Signed in as alice');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${gw.url}/-/login?signed-out`);
    await expect(page.getByRole('status').textContent()).resolves.toBe('You have signed out.');
    expect((await context.cookies()).filter((cookie) => cookie.name.includes('mlgate'))).toEqual([]);

    await page.goto(`${gw.url}/`);
    expect(page.url()).toBe(`${gw.url}/-/login?next=%2F`);
    const call = await context.request.post(`${gw.url}/ajax-api/2.0/mlflow/experiments/search`, { data: '{}', headers: { origin: gw.url } });
    expect(call.status()).toBe(401);

    // The signed-out cookie, put back (as a copy kept elsewhere would be), is refused and cleared.
    await context.addCookies(signedIn);
    await page.goto(`${gw.url}/`);
    expect(page.url()).toBe(`${gw.url}/-/login?next=%2F`);
    expect((await context.cookies()).filter((cookie) => cookie.name.includes('mlgate'))).toEqual([]);
  });
});

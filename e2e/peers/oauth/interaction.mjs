// The sign-in page of the test authorization server, used by the device flow and the
// authorization-code flow. A person (or e2e/lib/mailcred_e2e/oauth.py, which scripts it) enters
// a mailbox address and the peers' OAuth login password; one POST signs in AND consents to the
// requested scopes, so a scripted approval is two requests. oidc-provider's own devInteractions
// are off: they accept any login without a password.
//
//   GET  /interaction/UID          the form (login, password)
//   POST /interaction/UID/login    login=ADDRESS&password=...  -> 303 back into oidc-provider
//   POST /interaction/UID/abort    -> access_denied
import { timingSafeEqual } from 'node:crypto';

const MAX_BODY = 16 * 1024;

async function readForm(ctx) {
  let size = 0;
  const chunks = [];
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > MAX_BODY) ctx.throw(413, 'form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(uid, details, message) {
  const client = escapeHtml(details.params.client_id);
  const scope = escapeHtml(details.params.scope ?? '');
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>mailcred test sign-in</title></head>
<body><h1>Sign in</h1><p>${escapeHtml(message)}</p>
<p>Client <code>${client}</code> asks for <code>${scope}</code>.</p>
<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login">
<input type="email" name="login" placeholder="mailbox address" required autofocus>
<input type="password" name="password" placeholder="password" required>
<button type="submit">Sign in and allow</button></form>
<form id="abort" method="post" action="/interaction/${escapeHtml(uid)}/abort"><button type="submit">Deny</button></form>
</body></html>`;
}

export function interactionRoutes(provider, config) {
  const mailboxes = new Set(config.mailboxes);
  const pattern = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/;
  return async function interactions(ctx, next) {
    const match = pattern.exec(ctx.path);
    if (!match) return next();
    ctx.set('Cache-Control', 'no-store');
    const [, uid, action] = match;
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) ctx.throw(400, 'interaction does not match the session cookie');

    if (!action && ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = page(uid, details, `Sign-in for ${details.prompt.name}`);
      return undefined;
    }
    if (ctx.method !== 'POST') ctx.throw(405, 'method not allowed');

    let result;
    if (action === '/abort') {
      result = { error: 'access_denied', error_description: 'the user denied the request' };
    } else {
      const form = await readForm(ctx);
      const login = form.get('login') ?? '';
      if (!mailboxes.has(login) || !sameSecret(form.get('password') ?? '', config.loginPassword)) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = page(uid, details, 'Wrong mailbox or password');
        return undefined;
      }
      // Consent in the same step: a grant for every scope the client asked for.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: login, clientId: details.params.client_id });
      if (details.params.scope) grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      result = { login: { accountId: login }, consent: { grantId } };
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return undefined;
  };
}

// A Google-style token endpoint for service accounts (RFC 7523 JWT-bearer grant), which
// oidc-provider does not serve. It checks the assertion as Google documents it for
// domain-wide delegation and answers in Google's shapes:
//   POST /token   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT
//     header alg RS256 (kid, when present, = the key file's private_key_id)
//     iss = client_email, aud = token_uri, scope = space-separated and all authorized for the
//     service account, exp - iat <= 3600, iat not in the future, exp not passed,
//     sub = the mailbox (optional; without it the token opens no mailbox)
//   -> 200 {access_token, expires_in, token_type: "Bearer", scope}
//   -> 400 {error: invalid_grant | invalid_scope | unauthorized_client | unsupported_grant_type
//           | invalid_request, error_description}
//   POST /revoke  token=...      (Google's revocation endpoint shape) -> 200 {} | 400 invalid_token
// The access token is minted by oidc-provider itself (a ClientCredentials token of the service
// account's client, scope https://mail.google.com/ stored as this server's `mail`), so
// dovecot's one introspection endpoint checks it like any other and oidc-provider's
// revocation and expiry apply. The service-account key pair is made per start (server.mjs).
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:https';

import { decodeProtectedHeader, importSPKI, jwtVerify } from 'jose';

const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const MAX_BODY = 64 * 1024;
const MAX_LIFETIME = 3600;
// Same machine, same clock: only what whole-second iat values need.
const LEEWAY = 5;

class OAuthError extends Error {
  constructor(error, description, status = 400) {
    super(description);
    this.error = error;
    this.status = status;
  }
}

function writeServiceAccountKey(config, publicBase, { publicKey, privateKey }) {
  const spki = publicKey.export({ type: 'spki', format: 'pem' });
  const sa = config.serviceAccount;
  const key = {
    type: 'service_account',
    project_id: sa.projectId,
    private_key_id: createHash('sha1').update(spki).digest('hex'),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    client_email: sa.clientEmail,
    client_id: sa.clientId,
    // Every URL points at this loopback server: a client library never reaches Google.
    auth_uri: `${publicBase}/auth`,
    token_uri: `${publicBase}/token`,
    auth_provider_x509_cert_url: `${publicBase}/certs`,
    client_x509_cert_url: `${publicBase}/certs/${encodeURIComponent(sa.clientEmail)}`,
    universe_domain: 'googleapis.com',
  };
  writeFileSync(sa.keyFile, `${JSON.stringify(key, null, 2)}\n`, { mode: 0o600 });
  return { spki, keyId: key.private_key_id, tokenUri: key.token_uri };
}

async function readForm(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new OAuthError('invalid_request', 'request body too large', 413);
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function jwtBearerServer({ tls, config, provider, tokenLog, mintedFor, keyPair }) {
  const publicBase = `https://localhost:${config.jwtBearerPort}`;
  const { spki, keyId, tokenUri } = writeServiceAccountKey(config, publicBase, keyPair);
  const sa = config.serviceAccount;
  const authorizedScopes = new Set(sa.authorizedScopes);
  const mailboxes = new Set(config.mailboxes);
  const publicKey = importSPKI(spki, 'RS256');

  // Checks the assertion; returns {sub, scope} or throws OAuthError with Google's wording.
  async function verifyAssertion(assertion) {
    let header;
    try {
      header = decodeProtectedHeader(assertion);
    } catch {
      throw new OAuthError('invalid_grant', 'Invalid JWT: malformed');
    }
    if (header.alg !== 'RS256') throw new OAuthError('invalid_grant', `Invalid JWT: alg ${header.alg} is not RS256`);
    if (header.kid !== undefined && header.kid !== keyId) throw new OAuthError('invalid_grant', 'Invalid JWT Signature.');
    let payload;
    try {
      // jose checks nothing but the signature here: every claim rule below is Google's, ours.
      ({ payload } = await jwtVerify(assertion, await publicKey, { algorithms: ['RS256'], clockTolerance: 1e9 }));
    } catch {
      throw new OAuthError('invalid_grant', 'Invalid JWT Signature.');
    }
    const now = Math.floor(Date.now() / 1000);
    const { iss, aud, scope, iat, exp, sub } = payload;
    if (iss !== sa.clientEmail) throw new OAuthError('invalid_grant', 'Invalid JWT: iss is not the service account');
    if (aud !== tokenUri) throw new OAuthError('invalid_grant', `Invalid JWT: aud must be ${tokenUri}`);
    if (!Number.isInteger(iat) || !Number.isInteger(exp)) throw new OAuthError('invalid_grant', 'Invalid JWT: iat and exp must be integers');
    if (exp - iat > MAX_LIFETIME || exp <= iat || iat > now + LEEWAY || exp < now - LEEWAY) {
      throw new OAuthError('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
    }
    if (typeof scope !== 'string' || !scope.trim()) throw new OAuthError('invalid_scope', 'Empty or missing scope not allowed.');
    const scopes = scope.trim().split(/ +/);
    if (!scopes.every((s) => authorizedScopes.has(s))) {
      throw new OAuthError('unauthorized_client', 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.');
    }
    if (sub !== undefined && !mailboxes.has(sub)) throw new OAuthError('invalid_grant', 'Invalid email or User ID');
    return { sub, scopes };
  }

  async function token(req, res) {
    const form = await readForm(req);
    const grantType = form.get('grant_type');
    let sub;
    try {
      if (grantType !== GRANT) throw new OAuthError('unsupported_grant_type', `Invalid grant_type: ${grantType ?? ''}`);
      const assertion = form.get('assertion');
      if (!assertion) throw new OAuthError('invalid_request', 'Missing required parameter: assertion');
      const checked = await verifyAssertion(assertion);
      sub = checked.sub;
      const client = await provider.Client.find(sa.clientId);
      // Google's mail scope is this server's `mail` scope, the one dovecot requires; the answer
      // echoes the scope as requested, as Google does.
      const grantedScope = checked.scopes.map((s) => (s === sa.mailScope ? 'mail' : s)).join(' ');
      const minted = new provider.ClientCredentials({ client, scope: grantedScope });
      // Without `sub` the token is the service account's own and opens no mailbox.
      mintedFor.set(minted, sub ?? sa.clientEmail);
      const accessToken = await minted.save();
      tokenLog.write({ endpoint: 'jwt-bearer', outcome: 'ok', client_id: sa.clientId, grant_type: GRANT, username: mintedFor.get(minted) });
      reply(res, 200, { access_token: accessToken, expires_in: minted.expiration, scope: checked.scopes.join(' '), token_type: 'Bearer' });
    } catch (err) {
      if (!(err instanceof OAuthError)) throw err;
      tokenLog.write({ endpoint: 'jwt-bearer', outcome: 'error', client_id: sa.clientId, grant_type: grantType ?? '-', error: err.error });
      reply(res, err.status, { error: err.error, error_description: err.message });
    }
  }

  async function revoke(req, res) {
    const value = (await readForm(req)).get('token') ?? '';
    const found = value ? await provider.ClientCredentials.find(value) : undefined;
    if (!found || found.clientId !== sa.clientId) {
      reply(res, 400, { error: 'invalid_token', error_description: 'Token expired or revoked' });
      return;
    }
    await found.destroy();
    reply(res, 200, {});
  }

  return createServer(tls, (req, res) => {
    const path = new URL(req.url, publicBase).pathname;
    const route = req.method === 'POST' && { '/token': token, '/revoke': revoke }[path];
    if (!route) {
      reply(res, 404, { error: 'not_found', error_description: `${req.method} ${path}` });
      return;
    }
    route(req, res).catch((err) => {
      console.error('jwt-bearer: internal error:', err?.message);
      if (!res.headersSent) reply(res, err.status ?? 500, { error: err.error ?? 'internal_failure', error_description: 'internal error' });
    });
  });
}

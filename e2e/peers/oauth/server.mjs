// The OAuth 2.0 test peers: oidc-provider (the real, OpenID-certified authorization server) and
// a Google-style JWT-bearer token endpoint (jwt-bearer.mjs), both over HTTPS on 127.0.0.1 with
// the peers' test CA. Started by e2e/peers/start.sh; see e2e/peers/README.md "OAuth".
//
// Usage: node server.mjs CONFIG.json      (written by start.sh, mode 600)
// Writes, before it listens: the private_key_jwt client's private key (PEM) and the Google
// service-account JSON key file, into the paths the config names. Logs one line per token
// request to config.tokenLog (tokenlog.mjs) and its own diagnostics to stdout; never a token.
import { generateKeyPair, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { promisify } from 'node:util';

// Two RSA-2048 key pairs take 0.2-2 s each on a loaded machine: made on libuv's thread pool,
// in parallel with each other and with loading oidc-provider (imported only after this).
const rsaKeyPairs = Promise.all([1, 2].map(() => promisify(generateKeyPair)('rsa', { modulusLength: 2048 })));
const { default: Provider, errors } = await import('oidc-provider');
const { interactionRoutes } = await import('./interaction.mjs');
const { jwtBearerServer } = await import('./jwt-bearer.mjs');
const { TokenLog } = await import('./tokenlog.mjs');

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tokenLog = new TokenLog(config.tokenLog);
const tls = { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) };
const issuer = `https://localhost:${config.port}`;
const mailboxes = new Set(config.mailboxes);

// ---- keys made per start: nothing secret is committed -------------------------------------
const [clientKey, serviceAccountKey] = await rsaKeyPairs;
writeFileSync(config.clientKeyPem, clientKey.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
const clientJwk = { ...clientKey.publicKey.export({ format: 'jwk' }), kid: config.clientKeyId, alg: 'RS256', use: 'sig' };

// ID tokens (authorization code with `openid`) are signed with an EC key: fast to make.
const { privateKey: signingKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = { ...signingKey.export({ format: 'jwk' }), kid: 'peers-es256', alg: 'ES256', use: 'sig' };

// ---- clients --------------------------------------------------------------------------------
// One table: oidc-provider metadata plus our own per-client test knobs (rotate, ttl, mailbox).
const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code';
const loopbackRedirects = ['http://127.0.0.1/callback', 'http://127.0.0.1/', 'http://localhost/callback'];
const clients = [
  { // confidential, client_secret_post: client credentials, and delegated grants without rotation
    client_id: config.clients.secret, client_secret: config.clientSecret,
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['client_credentials', 'refresh_token', DEVICE, 'authorization_code'],
    response_types: ['code'], redirect_uris: ['https://localhost/callback'],
    knobs: { rotate: false, ttl: config.accessTokenTtl, mailbox: config.defaultMailbox },
  },
  { // confidential, client_secret_post, refresh tokens rotated (a reused one revokes the grant)
    client_id: config.clients.rotate, client_secret: config.clientSecret,
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['refresh_token', DEVICE], response_types: [],
    knobs: { rotate: true, ttl: config.accessTokenTtl, mailbox: config.defaultMailbox },
  },
  { // confidential, private_key_jwt (RFC 7523 client assertion, RS256, kid below)
    client_id: config.clients.jwt, token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256', jwks: { keys: [clientJwk] },
    grant_types: ['client_credentials', 'refresh_token', DEVICE], response_types: [],
    knobs: { rotate: false, ttl: config.accessTokenTtl, mailbox: config.defaultMailbox },
  },
  { // public native app: device flow and authorization code + PKCE with a loopback redirect
    client_id: config.clients.native, token_endpoint_auth_method: 'none', application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token', DEVICE], response_types: ['code'],
    redirect_uris: loopbackRedirects,
    knobs: { rotate: true, ttl: config.accessTokenTtl, mailbox: config.defaultMailbox },
  },
  { // access tokens that expire within seconds, for expiry tests
    client_id: config.clients.short, client_secret: config.clientSecret,
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['client_credentials', 'refresh_token', DEVICE], response_types: [],
    knobs: { rotate: false, ttl: config.shortTtl, mailbox: config.defaultMailbox },
  },
  { // dovecot's oauth2 passdb: introspection only (HTTP Basic from the URL's userinfo)
    client_id: config.clients.introspect, client_secret: config.introspectSecret,
    token_endpoint_auth_method: 'client_secret_basic', grant_types: [], response_types: [],
    knobs: {},
  },
  { // the Google service account: its tokens are minted by jwt-bearer.mjs, never at /token
    client_id: config.serviceAccount.clientId, token_endpoint_auth_method: 'none',
    grant_types: [], response_types: [],
    knobs: { ttl: config.accessTokenTtl },
  },
];
const knobs = new Map(clients.map((c) => [c.client_id, c.knobs]));
const clientMetadata = clients.map(({ knobs: _, ...metadata }) => metadata);

// ---- which mailbox a token may open: the `username` dovecot compares with the SASL user ---
// Every token names one; dovecot's passdb also requires the `mail` scope (dovecot-oauth2.conf
// `scope = mail`), so a token without it is refused cleanly (AUTHENTICATIONFAILED).
// Client credentials pick a mailbox with the scope `mailbox:ADDRESS` (Microsoft's app tokens
// name no user; dovecot needs one), else get the client's default mailbox. Delegated tokens
// name the account that signed in. jwt-bearer.mjs sets the mailbox (`sub`) of what it mints.
const mintedFor = new WeakMap();
function mailboxOf(ctx, token) {
  if (mintedFor.has(token)) return mintedFor.get(token);
  if (token.kind === 'AccessToken') return token.accountId;
  // The requested scope as sent: oidc-provider drops scopes it does not know (an unknown
  // mailbox) from token.scope, and that must be an error, not the default mailbox.
  const requested = String(ctx?.oidc?.body?.scope ?? token.scope ?? '').split(' ');
  const picked = requested.filter((s) => s.startsWith('mailbox:')).map((s) => s.slice('mailbox:'.length));
  if (picked.length > 1) throw new errors.InvalidScope('at most one mailbox: scope', picked.join(' '));
  const mailbox = picked[0] ?? knobs.get(token.clientId)?.mailbox;
  if (!mailboxes.has(mailbox)) throw new errors.InvalidScope('unknown mailbox', `mailbox:${mailbox}`);
  return mailbox;
}

// Per client: the short-TTL client's tokens expire within seconds. `client` is unset when
// jwt-bearer.mjs mints outside a request.
function accessTokenTtl(_ctx, token, client) {
  return knobs.get(client?.clientId ?? token.clientId)?.ttl ?? config.accessTokenTtl;
}

const provider = new Provider(issuer, {
  clients: clientMetadata,
  jwks: { keys: [signingJwk] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // `mailbox:ADDRESS` scopes are listed so that they stay in the token (and its introspection).
  scopes: ['openid', 'offline_access', 'mail', ...config.mailboxes.map((m) => `mailbox:${m}`)],
  responseTypes: ['code'],
  // The accounts are the peers' mailboxes; the sign-in page checks the password.
  findAccount: async (_ctx, sub) => (mailboxes.has(sub)
    ? { accountId: sub, claims: async () => ({ sub }) }
    : undefined),
  extraTokenClaims: async (ctx, token) => {
    const username = mailboxOf(ctx, token);
    return username ? { username } : undefined;
  },
  rotateRefreshToken: (ctx) => knobs.get(ctx.oidc.client.clientId)?.rotate === true,
  ttl: {
    AccessToken: accessTokenTtl,
    ClientCredentials: accessTokenTtl,
    DeviceCode: 600,
    Grant: 14 * 24 * 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 14 * 24 * 3600,
    Session: 3600,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // OAuth 2.1 / RFC 9700: PKCE for every client, confidential ones too.
  pkce: { required: () => true },
  // Plain text: a scripted client's error message shows what went wrong.
  renderError: async (ctx, out) => {
    ctx.type = 'text/plain; charset=utf-8';
    ctx.body = `${out.error}: ${out.error_description ?? ''}\n`;
  },
});
// No reverse proxy in front: X-Forwarded-* headers are not trusted.
provider.proxy = false;

provider.on('grant.success', (ctx) => tokenLog.grant(ctx, 'ok'));
provider.on('grant.error', (ctx, err) => tokenLog.grant(ctx, 'error', err));
provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err?.message));

provider.use(interactionRoutes(provider, config));

const oidcServer = createServer(tls, provider.callback());
const jwtServer = jwtBearerServer({ tls, config, provider, tokenLog, mintedFor, keyPair: serviceAccountKey });

await new Promise((resolve) => oidcServer.listen(config.port, '127.0.0.1', resolve));
await new Promise((resolve) => jwtServer.listen(config.jwtBearerPort, '127.0.0.1', resolve));
console.log(`oauth peers ready: ${issuer} and https://localhost:${config.jwtBearerPort}/token`);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    oidcServer.close();
    jwtServer.close();
    process.exit(0);
  });
}

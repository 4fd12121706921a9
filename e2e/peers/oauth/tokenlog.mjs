// One line per token request, appended to the peers' token-request log (PEERS_OAUTH_TOKEN_LOG):
//   2026-12-02T00:40:00.123Z endpoint=oidc outcome=ok client_id=mailcred-secret grant_type=client_credentials username=app@example.test
//   2026-12-02T00:40:01.456Z endpoint=jwt-bearer outcome=error client_id=- grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer error=invalid_grant
// Fields are space-free key=value pairs, so `grep -c 'outcome=ok client_id=X'` counts requests.
// The bench counts the token requests of a run with it. Never a token, secret or assertion.
import { appendFileSync } from 'node:fs';

function clean(value) {
  return String(value ?? '-').replace(/[^A-Za-z0-9@._:\/-]/g, '_').slice(0, 200) || '-';
}

export class TokenLog {
  constructor(path) {
    this.path = path;
    appendFileSync(path, '', { mode: 0o644 });
  }

  write(fields) {
    const line = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${clean(v)}`)
      .join(' ');
    // Synchronous: the line is in the file before the HTTP answer leaves, so a test that
    // counts right after its request sees it.
    appendFileSync(this.path, `${new Date().toISOString()} ${line}\n`);
  }

  // oidc-provider's grant.success / grant.error events (the token endpoint).
  grant(ctx, outcome, err) {
    const entities = ctx.oidc?.entities ?? {};
    const token = entities.AccessToken ?? entities.ClientCredentials;
    this.write({
      endpoint: 'oidc',
      outcome,
      client_id: ctx.oidc?.client?.clientId ?? ctx.oidc?.params?.client_id,
      grant_type: ctx.oidc?.params?.grant_type,
      username: outcome === 'ok' ? token?.extra?.username : undefined,
      error: err?.error,
    });
  }
}

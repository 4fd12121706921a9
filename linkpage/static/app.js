// mailcred registration page. Seals the password in the browser (WebCrypto) exactly as
// docs/envelope.md says: AES-256-GCM over the padded payload with the envelope's associated
// data, the data key wrapped with RSA-OAEP-SHA-256. Only ciphertext leaves this page.
// What the page shows about the account is read from the associated data itself, so the owner
// sees exactly what the password will be bound to.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const SECTIONS = ['loading', 'form', 'done', 'refused'];
  const TITLES = {
    unknown: 'This link is not valid',
    used: 'This link was used already',
    expired: 'This link has expired',
    already_sealed: 'This credential already has a password',
    rate_limited: 'Too many attempts',
    changed: 'The credential changed',
    bad_request: 'The page sent something the service refused',
    key_not_configured: 'The service is not set up for this key',
    invalid_request: 'The request is incomplete',
    unavailable: 'The service is unavailable',
  };
  const AAD_MAGIC = 'mailcred.io/envelope\0';

  function show(id) {
    for (const s of SECTIONS) $(s).hidden = s !== id;
    document.body.dataset.state = id;
  }

  function refuse(label, message) {
    $('refused-title').textContent = TITLES[label] || 'The password was not stored';
    $('refused-message').textContent = message || '';
    document.body.dataset.reason = label;
    show('refused');
  }

  // #<namespace>/<name>/<token>: the fragment never reaches any server.
  function parseLink() {
    const parts = location.hash.slice(1).split('/');
    if (parts.length !== 3 || parts.some((p) => p.length === 0)) return null;
    try {
      return { namespace: decodeURIComponent(parts[0]), name: decodeURIComponent(parts[1]), token: parts[2] };
    } catch (e) {
      return null;
    }
  }

  async function post(path, body) {
    let response;
    try {
      response = await fetch(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
      });
    } catch (e) {
      return { ok: false, data: { error: 'unavailable', message: 'The registration service could not be reached.' } };
    }
    let data;
    try {
      data = await response.json();
    } catch (e) {
      data = { error: 'unavailable', message: `The service answered ${response.status}.` };
    }
    return { ok: response.ok, data };
  }

  function b64(bytes) {
    let s = '';
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
  }

  function unb64(text) {
    const s = atob(text);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  // The canonical associated data, read back field by field (docs/envelope.md, step 4).
  function parseAad(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const text = new TextDecoder('utf-8', { fatal: true });
    let at = 0;
    const take = (n) => {
      if (at + n > bytes.length) throw new Error('associated data is truncated');
      const out = bytes.subarray(at, at + n);
      at += n;
      return out;
    };
    const u8 = () => take(1)[0];
    const u16 = () => { const v = view.getUint16(at); take(2); return v; };
    const u32 = () => { const v = view.getUint32(at); take(4); return v; };
    const field = () => text.decode(take(u32()));
    if (text.decode(take(AAD_MAGIC.length)) !== AAD_MAGIC) throw new Error('not mailcred associated data');
    const out = { version: u32(), provider: field(), keyId: field(), wrapping: field() };
    if (field() !== 'mailcred.io/namespace') throw new Error('no namespace');
    out.namespace = field();
    if (field() !== 'mailcred.io/name') throw new Error('no name');
    out.name = field();
    out.username = field();
    out.endpoints = [];
    for (let n = u8(); n > 0; n--) {
      const e = { kind: field(), host: field(), port: u16(), tls: field(), insecure: u8() === 1 };
      e.hasCa = u8() === 1;
      if (e.hasCa) take(32);
      out.endpoints.push(e);
    }
    if (at !== bytes.length) throw new Error('trailing bytes in associated data');
    return out;
  }

  function row(dl, term, value, cls) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    if (cls) dd.className = cls;
    dl.append(dt, dd);
  }

  function describe(info, bound) {
    const dl = $('details');
    dl.replaceChildren();
    row(dl, 'Account', bound.username);
    for (const e of bound.endpoints) {
      const tls = e.insecure ? `${e.tls} (NO TLS: the password crosses the network in plaintext)` : e.tls;
      row(dl, `${e.kind.toUpperCase()} server`, `${e.host}:${e.port}, ${tls}${e.hasCa ? ', private CA' : ''}`, e.insecure ? 'warn' : '');
    }
    row(dl, 'Credential', `${bound.namespace}/${bound.name}`);
    row(dl, 'Requested by', info.requestedBy);
    row(dl, 'Link expires', new Date(info.expiresAt).toLocaleString());
    if (info.hasSecret) row(dl, 'Replaces', 'the password stored today', 'warn');
    $('form-user').textContent = bound.username;
    $('form-key').textContent = `${bound.provider} key ${bound.keyId}`;
  }

  // u16 length (big-endian) || UTF-8 password || zeros, to a multiple of 64 bytes.
  function payload(password, maxBytes) {
    if (/[\0\r\n]/.test(password)) throw new Error('The password contains a line break or NUL, which mail servers cannot take.');
    const bytes = new TextEncoder().encode(password);
    if (bytes.length === 0) throw new Error('Type the password.');
    if (bytes.length > maxBytes) throw new Error(`The password is longer than ${maxBytes} bytes.`);
    const out = new Uint8Array(Math.ceil((2 + bytes.length) / 64) * 64);
    out[0] = bytes.length >> 8;
    out[1] = bytes.length & 0xff;
    out.set(bytes, 2);
    bytes.fill(0);
    return out;
  }

  async function sealInBrowser(info, password) {
    const p = payload(password, info.maxPasswordBytes);
    try {
      const rsa = await crypto.subtle.importKey('spki', unb64(info.publicKey), { name: 'RSA-OAEP', hash: 'SHA-256' }, false, ['wrapKey']);
      const dataKey = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt']);
      const nonce = crypto.getRandomValues(new Uint8Array(12));
      const ciphertext = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonce, additionalData: unb64(info.aad), tagLength: 128 }, dataKey, p);
      const wrapped = await crypto.subtle.wrapKey('raw', dataKey, rsa, { name: 'RSA-OAEP' });
      return { encryptedDataKey: b64(new Uint8Array(wrapped)), nonce: b64(nonce), ciphertext: b64(new Uint8Array(ciphertext)) };
    } finally {
      p.fill(0);
    }
  }

  function formError(message) {
    $('form-error').textContent = message;
    $('form-error').hidden = !message;
  }

  function sealed(result) {
    const dl = $('done-details');
    dl.replaceChildren();
    row(dl, 'Credential', `${result.namespace}/${result.name}`);
    row(dl, 'Fingerprint', result.fingerprint);
    $('verify').textContent =
      `kubectl get mcred ${result.name} -n ${result.namespace} -o jsonpath='{.status.sealedSecretFingerprint}'\n` +
      `# should print ${result.fingerprint}\n` +
      `kubectl mailcred verify -f <(kubectl get mcred ${result.name} -n ${result.namespace} -o yaml)   # needs decrypt rights`;
    show('done');
  }

  async function main() {
    const link = parseLink();
    if (!link) {
      refuse('unknown', 'This link is incomplete. Check that you copied all of it, or ask for a new one.');
      return;
    }
    // Drop the token from the address bar and history once read.
    history.replaceState(null, '', location.pathname);
    const opened = await post('/api/open', link);
    if (!opened.ok) {
      refuse(opened.data.error, opened.data.message);
      return;
    }
    const info = opened.data;
    let bound;
    try {
      bound = parseAad(unb64(info.aad));
    } catch (e) {
      refuse('bad_request', `The service sent associated data the page cannot read (${e.message}).`);
      return;
    }
    describe(info, bound);
    show('form');
    $('password').focus();

    $('seal-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const first = $('password');
      const second = $('password2');
      if (first.value !== second.value) {
        formError('The two passwords differ.');
        return;
      }
      formError('');
      $('submit').disabled = true;
      let envelope;
      try {
        envelope = await sealInBrowser(info, first.value);
      } catch (e) {
        formError(e.message);
        $('submit').disabled = false;
        return;
      }
      first.value = '';
      second.value = '';
      const stored = await post('/api/seal', { ...link, aadSha256: info.aadSha256, ...envelope });
      if (stored.ok) sealed(stored.data);
      else refuse(stored.data.error, stored.data.message);
    });
  }

  main();
})();

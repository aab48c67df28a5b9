// The signer's key: a NON-extractable Ed25519 CryptoKey made by WebCrypto and kept in this
// browser's IndexedDB (structured clone keeps the key object; its private bytes can never be
// read out, by us or by a script). Plus RFC 8785 canonical JSON and base64url, so the page
// signs exactly the bytes the server and any independent verifier recompute.
'use strict';
const Keystore = (() => {
  const DB = 'liftwatch', STORE = 'signing-keys';

  function open() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, {keyPath: 'person_id'});
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  async function tx(mode, fn) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
      t.oncomplete = () => { db.close(); resolve(req.result); };
      t.onerror = () => { db.close(); reject(t.error); };
    });
  }

  const get = (personId) => tx('readonly', (s) => s.get(Number(personId)));
  const put = (record) => tx('readwrite', (s) => s.put(record));
  const remove = (personId) => tx('readwrite', (s) => s.delete(Number(personId)));

  function supported() {
    if (!window.isSecureContext) return 'error_insecure';
    if (!window.crypto || !crypto.subtle || !window.indexedDB) return 'error_no_webcrypto';
    return '';
  }

  async function generate() {
    // extractable = false: the private key cannot be exported (the public key always can)
    return crypto.subtle.generateKey({name: 'Ed25519'}, false, ['sign', 'verify']);
  }

  function b64url(buf) {
    let s = '';
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  async function publicKeyB64(publicKey) {
    return b64url(await crypto.subtle.exportKey('raw', publicKey));
  }

  // RFC 8785: object keys sorted by UTF-16 code units, no whitespace, strings and numbers as
  // ECMAScript's JSON.stringify writes them (which is what the RFC prescribes)
  function jcs(value) {
    if (value === null || typeof value !== 'object') {
      if (typeof value === 'number' && !Number.isFinite(value)) throw new Error('JCS: non-finite number');
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) return '[' + value.map(jcs).join(',') + ']';
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + jcs(value[k])).join(',') + '}';
  }

  const utf8 = (s) => new TextEncoder().encode(s);

  async function sha256hex(text) {
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', utf8(text)));
    return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function sign(privateKey, payload) {
    return b64url(await crypto.subtle.sign({name: 'Ed25519'}, privateKey, utf8(jcs(payload))));
  }

  return {get, put, remove, supported, generate, publicKeyB64, jcs, sha256hex, sign};
})();

// Enrolment page (and the key line on the order lists): does this browser hold an active key
// of this person? Create one (WebCrypto, non-extractable), register its public key with the
// password, and keep it in IndexedDB; revoke registered keys.
'use strict';
(() => {
  const state = document.getElementById('device-key');
  const personId = state?.dataset.personId;
  const form = document.getElementById('enrol-form');
  const onKeysPage = !!document.getElementById('keys-page');

  async function describe() {
    if (!state) return;
    const problem = Keystore.supported();
    if (problem) { state.textContent = LW.t(problem); state.classList.add('error-box'); return; }
    const rec = await Keystore.get(personId);
    if (!rec) {
      state.textContent = LW.t('keys_device_none');
      if (!onKeysPage) { state.append(' '); state.append(link()); }
      return;
    }
    let keys = [];
    try { keys = await LW.api('GET', '/api/v1/keys'); } catch (e) { state.textContent = e.message; return; }
    const active = keys.some((k) => k.key_id === rec.key_id && k.status === 'active');
    state.textContent = LW.t(active ? 'keys_device_has' : 'keys_device_stale', {id: rec.key_id});
    if (!active && !onKeysPage) { state.append(' '); state.append(link()); }
  }

  function link() {
    const a = document.createElement('a');
    a.href = '/keys';
    a.textContent = LW.t('sign_enrol_first');
    return a;
  }

  if (form) {
    const err = document.getElementById('enrol-error');
    const pwErr = document.getElementById('enrol-password-error');
    const ok = document.getElementById('enrol-result');
    const pw = document.getElementById('enrol-password');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      LW.show(err, ''); LW.show(pwErr, ''); LW.show(ok, '');
      pw.removeAttribute('aria-invalid');
      const problem = Keystore.supported();
      if (problem) { LW.show(err, LW.t(problem)); return; }
      if (!pw.value) { LW.show(pwErr, LW.t('error_password_required')); pw.setAttribute('aria-invalid', 'true'); pw.focus(); return; }
      const button = document.getElementById('enrol-button');
      button.disabled = true;
      try {
        const pair = await Keystore.generate();
        const publicKey = await Keystore.publicKeyB64(pair.publicKey);
        const label = document.getElementById('key-label').value || navigator.userAgent.slice(0, 100);
        const k = await LW.api('POST', '/api/v1/keys', {public_key: publicKey, label, password: pw.value});
        // only a key the server accepted is kept
        await Keystore.put({person_id: Number(personId), key_id: k.key_id, privateKey: pair.privateKey,
                            publicKey: pair.publicKey, public_key: publicKey, enrolled_at: k.enrolled_at});
        pw.value = '';
        LW.show(ok, LW.t('keys_created', {id: k.key_id}));
        setTimeout(() => location.reload(), 800);
      } catch (e) {
        if (e.field === 'password') { LW.show(pwErr, e.message); pw.setAttribute('aria-invalid', 'true'); pw.focus(); }
        else LW.show(err, e.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  for (const b of document.querySelectorAll('button.revoke')) {
    b.addEventListener('click', async () => {
      const err = document.getElementById('enrol-error');
      try {
        await LW.api('POST', '/api/v1/keys/' + b.dataset.keyId + '/revoke');
        const rec = await Keystore.get(personId);
        if (rec && String(rec.key_id) === b.dataset.keyId) await Keystore.remove(personId);
        location.reload();
      } catch (e) { LW.show(err, e.message); }
    });
  }

  describe();
})();

// Sign (technician: performed) or countersign (user unit: confirmed) a work order in the
// browser: the password again, the signing payload from the server, a check that the record
// it names hashes to what the server says, an Ed25519 signature over the payload's RFC 8785
// bytes with the key held in IndexedDB, and the signature posted back.
'use strict';
(() => {
  const section = document.getElementById('sign-section');
  if (!section) return;
  const orderId = section.dataset.workOrderId;
  const personId = section.dataset.personId;
  const form = document.getElementById('sign-form');
  const pw = document.getElementById('sign-password');
  const pwErr = document.getElementById('sign-password-error');
  const err = document.getElementById('sign-error');
  const ok = document.getElementById('sign-result');
  const keyState = document.getElementById('sign-key-state');

  function fail(message, field) {
    if (field === 'password') { LW.show(pwErr, message); pw.setAttribute('aria-invalid', 'true'); pw.focus(); }
    else LW.show(err, message);
  }

  function enrolLink() {
    const a = document.createElement('a');
    a.href = '/keys';
    a.textContent = LW.t('sign_enrol_first');
    return a;
  }

  async function init() {
    const problem = Keystore.supported();
    if (problem) { LW.show(err, LW.t(problem)); document.getElementById('sign-button').disabled = true; return; }
    if (!(await Keystore.get(personId))) {
      keyState.textContent = LW.t('sign_no_key') + ' ';
      keyState.append(enrolLink());
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    LW.show(err, ''); LW.show(pwErr, ''); LW.show(ok, '');
    pw.removeAttribute('aria-invalid');
    if (!pw.value) { fail(LW.t('error_password_required'), 'password'); return; }
    const rec = await Keystore.get(personId);
    if (!rec) { fail(LW.t('sign_no_key')); return; }
    const button = document.getElementById('sign-button');
    button.disabled = true;
    ok.textContent = LW.t('sign_working'); ok.hidden = false;
    try {
      const sp = await LW.api('GET', '/api/v1/work-orders/' + orderId + '/signing-payload');
      // what we sign names this record: check its digest here rather than trust it
      if ((await Keystore.sha256hex(Keystore.jcs(sp.record))) !== sp.record_sha256 ||
          sp.payload.record_sha256 !== sp.record_sha256) {
        throw new LW.ApiError(0, {detail: LW.t('sign_record_mismatch')});
      }
      const payload = {...sp.payload, signed_at: new Date().toISOString()};
      const signature = await Keystore.sign(rec.privateKey, payload);
      const out = await LW.api('POST', '/api/v1/work-orders/' + orderId + '/signatures',
                               {payload, signature, key_id: rec.key_id, password: pw.value});
      pw.value = '';
      LW.show(ok, LW.t('sign_done', {seq: out.ledger_seq, status: LW.t('wo_status_' + out.status)}));
      setTimeout(() => location.reload(), 1200);
    } catch (e) {
      LW.show(ok, '');
      fail(e.message, e.field);
      if (e.code === 'unknown_key' || e.code === 'key_revoked') { keyState.textContent = ''; keyState.append(enrolLink()); }
      button.disabled = false;
    }
  });

  init();
})();

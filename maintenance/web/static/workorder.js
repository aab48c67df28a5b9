// The technician's work order: check in, then save each checklist item as soon as it is
// filled (PUT .../items/{code}); the server's error is shown next to the field it names.
'use strict';
(() => {
  const checkin = document.getElementById('checkin-form');
  if (checkin) {
    checkin.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const err = document.getElementById('checkin-error');
      LW.show(err, '');
      const body = {};
      if (document.getElementById('checkin-gps').checked && navigator.geolocation) {
        try {
          const pos = await new Promise((ok, fail) => navigator.geolocation.getCurrentPosition(ok, fail, {timeout: 10000}));
          body.lat = pos.coords.latitude;
          body.lon = pos.coords.longitude;
        } catch (e) { /* no position: check in without it */ }
      }
      try {
        await LW.api('POST', '/api/v1/work-orders/' + checkin.dataset.workOrderId + '/check-in', body);
        location.reload();
      } catch (e) { LW.show(err, e.message); }
    });
  }

  const list = document.getElementById('checklist');
  if (!list) return;
  const orderId = list.dataset.workOrderId;
  const progress = document.getElementById('progress');
  const total = Number(progress.dataset.total);

  function updateProgress() {
    const done = list.querySelectorAll('fieldset.item.done').length;
    progress.textContent = LW.t('checklist_progress', {a: done, b: total});
    const button = document.getElementById('sign-button');
    const hint = document.getElementById('sign-needs-items');
    if (button) button.disabled = done < total;
    if (hint) hint.hidden = done >= total;
  }

  function clearErrors(fs) {
    for (const p of fs.querySelectorAll('.field-error')) LW.show(p, '');
    for (const el of fs.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  }

  async function save(fs) {
    const code = fs.dataset.code;
    const result = fs.querySelector('[name=result]').value;
    const valueInput = fs.querySelector('[name=measured_value]');
    const note = fs.querySelector('[name=note]').value;
    const saved = document.getElementById('s-' + code);
    if (!result) return;  // nothing to save until a result is chosen
    const body = {result, note};
    if (valueInput && valueInput.value.trim() !== '') {
      const v = Number(valueInput.value);
      if (!Number.isFinite(v)) { showError(fs, 'measured_value', LW.t('error_number')); return; }
      body.measured_value = v;
    } else {
      body.measured_value = null;
    }
    clearErrors(fs);
    saved.textContent = '…';
    try {
      await LW.api('PUT', '/api/v1/work-orders/' + orderId + '/items/' + encodeURIComponent(code), body);
      fs.classList.add('done');
      saved.textContent = '✓ ' + LW.t('saved');
    } catch (e) {
      fs.classList.remove('done');
      saved.textContent = '';
      showError(fs, e.field, e.message);
    }
    updateProgress();
  }

  function showError(fs, field, message) {
    const code = fs.dataset.code;
    const known = ['result', 'measured_value', 'note'].includes(field) ? field : 'result';
    LW.show(document.getElementById('e-' + code + '-' + known), message);
    const input = fs.querySelector('[name=' + known + ']');
    if (input) input.setAttribute('aria-invalid', 'true');
  }

  for (const fs of list.querySelectorAll('fieldset.item')) {
    for (const el of fs.querySelectorAll('select, input')) el.addEventListener('change', () => save(fs));
  }
  updateProgress();
})();

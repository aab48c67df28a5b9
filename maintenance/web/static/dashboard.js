// Dashboard: acknowledge without a reload, re-read the open alerts (the list and the kind x
// severity matrix above it) every few seconds, and switch the map's colouring between risk
// grade and status.
'use strict';
(() => {
  const table = document.getElementById('alerts');
  const tbody = table.tBodies[0];
  const form = document.getElementById('alert-filters');
  const updated = document.getElementById('alerts-updated');
  const ackError = document.getElementById('ack-error');
  const count = document.getElementById('alerts-count');
  const canAck = table.dataset.canAck === '1';
  const matrix = document.getElementById('alert-matrix');
  let busy = false;
  let matrixShown = null;  // the counts the matrix was last built from (JSON): unchanged, it is left alone
  // the column names, for the narrow layout where each row is a card (CSS shows data-label)
  const labels = [...table.tHead.rows[0].cells].map((th) => th.textContent);

  function cell(text, cls) {
    const td = document.createElement('td');
    if (cls) td.className = cls;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function ackCell(a) {
    const td = cell(undefined, 'ack');
    if (a.acknowledged_at) {
      td.textContent = LW.t('acknowledged_by', {who: a.acknowledged_by, t: LW.time(a.acknowledged_at)});
    } else if (canAck) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = LW.t('acknowledge');
      b.setAttribute('aria-label', LW.t('acknowledge_alert', {unit: a.unit_id, kind: LW.t('kind_' + a.kind)}));
      b.addEventListener('click', () => acknowledge(a.alert_id, td));
      td.append(b);
    } else {
      td.textContent = '—';
    }
    return td;
  }

  function row(a) {
    const tr = document.createElement('tr');
    tr.dataset.alertId = a.alert_id;
    tr.className = 'sev-row-' + a.severity;
    const unit = cell();
    const link = document.createElement('a');
    link.href = '/units/' + encodeURIComponent(a.unit_id);
    link.textContent = a.unit_id;
    unit.append(link);
    const sev = cell();
    const badge = document.createElement('span');
    badge.className = 'sev sev-' + a.severity;
    badge.textContent = LW.t('sev_' + a.severity);
    sev.append(badge);
    tr.append(unit, cell(LW.t('kind_' + a.kind)), sev, cell(a.reason, 'reason'), cell(LW.time(a.opened_at)), ackCell(a));
    [...tr.cells].forEach((td, i) => { td.dataset.label = labels[i]; });
    return tr;
  }

  function link(href, text) {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    return a;
  }

  // the same table as dashboard.html draws: a row per kind with open alerts (in the page's
  // order of kinds), a cell per severity (a link filtering the list, or 0), the row's total
  function matrixRows(counts) {
    const kinds = matrix.dataset.kinds.split(' ');
    const severities = matrix.dataset.severities.split(' ');
    const by = {};
    for (const c of counts) (by[c.kind] ??= {})[c.severity] = c.count;
    const rows = [];
    for (const k of kinds) {
      if (!by[k]) continue;
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.scope = 'row';
      th.append(link('/dashboard?' + new URLSearchParams({kind: k}), LW.t('kind_' + k)));
      tr.append(th);
      let total = 0;
      for (const s of severities) {
        const n = by[k][s] || 0;
        total += n;
        const td = cell(n ? undefined : '0');
        if (n) td.append(link('/dashboard?' + new URLSearchParams({kind: k, severity: s}), String(n)));
        tr.append(td);
      }
      tr.append(cell(String(total)));
      rows.push(tr);
    }
    if (!rows.length) {
      const tr = document.createElement('tr');
      tr.className = 'empty';
      const td = cell(LW.t('alerts_none'));
      td.colSpan = severities.length + 2;
      tr.append(td);
      rows.push(tr);
    }
    return rows;
  }

  function showMatrix(counts) {
    const body = matrix.tBodies[0];
    const seen = JSON.stringify(counts);
    // a keyboard user on one of its links keeps it; the next refresh brings the change
    if (seen === matrixShown || body.contains(document.activeElement)) return;
    body.replaceChildren(...matrixRows(counts));
    matrixShown = seen;
  }

  async function acknowledge(id, td) {
    LW.show(ackError, '');
    try {
      const a = await LW.api('POST', '/api/v1/alerts/' + id + '/acknowledge');
      const fresh = ackCell(a);
      fresh.dataset.label = td.dataset.label;
      td.replaceWith(fresh);
    } catch (e) {
      LW.show(ackError, LW.t('ack_failed', {e: e.message}));
      if (e.code === 'already_acknowledged') refresh(true);
    }
  }

  // force: even while the keyboard focus is in the list (a refresh would take the focused row
  // away from under a keyboard user; it waits until the focus leaves the list)
  async function refresh(force) {
    if (busy || document.hidden || (!force && tbody.contains(document.activeElement))) return;
    busy = true;
    const q = new URLSearchParams({status: 'open', order: 'priority', limit: table.dataset.limit});
    for (const [k, v] of new FormData(form)) {
      if (!v) continue;
      if (k === 'ack') q.set('acknowledged', v === 'yes' ? 'true' : 'false'); else q.set(k, v);
    }
    try {
      const [alerts, counts] = await Promise.all([
        LW.api('GET', '/api/v1/alerts?' + q),
        matrix ? LW.api('GET', '/api/v1/alerts/summary') : null,
      ]);
      const rows = alerts.map(row);
      if (!rows.length) {
        const tr = document.createElement('tr');
        tr.className = 'empty';
        const td = cell(LW.t('alerts_none'));
        td.colSpan = 6;
        tr.append(td);
        rows.push(tr);
      }
      tbody.replaceChildren(...rows);
      count.textContent = LW.t('alerts_shown', {n: alerts.length, total: alerts.total ?? alerts.length});
      if (counts) showMatrix(counts);
      updated.textContent = LW.t('alerts_updated', {t: LW.time(new Date().toISOString())});
    } catch (e) {
      updated.textContent = e.message;
    } finally {
      busy = false;
    }
  }

  // the server-rendered buttons are forms (they work without JavaScript); take them over
  for (const f of document.querySelectorAll('form.ack-form')) {
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      acknowledge(f.dataset.alertId, f.closest('td'));
    });
  }
  setInterval(() => refresh(false), Number(table.dataset.refreshMs) || 30000);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(false); });

  const map = document.getElementById('unit-map');
  const colour = document.getElementById('map-colour');
  if (map && colour) {
    colour.addEventListener('change', (ev) => {
      map.dataset.colour = ev.target.value;
      map.closest('figure').dataset.colour = ev.target.value;
    });
  }
})();

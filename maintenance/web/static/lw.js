// Shared by every page: texts in the page's language, JSON API calls with the session's
// CSRF token, readable errors (in the page's language for every error code i18n.py names
// as apierr_<code>, the API's own detail otherwise), times in the display time zone.
'use strict';
const LW = (() => {
  const node = document.getElementById('lw-i18n');
  const texts = node ? JSON.parse(node.textContent) : {};
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || '';
  const tz = document.documentElement.dataset.tz || undefined;

  function t(key, values) {
    let s = texts[key] ?? key;
    for (const [k, v] of Object.entries(values || {})) s = s.replaceAll('{' + k + '}', String(v));
    return s;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(body.detail || ('HTTP ' + status));
      this.status = status;
      this.code = body.error || '';
      this.field = body.field || '';
    }
  }

  // fetch JSON from our own API; throws ApiError with a message a person can read
  async function api(method, url, body) {
    const headers = {Accept: 'application/json'};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
    let r;
    try {
      r = await fetch(url, {method, headers, credentials: 'same-origin',
                            body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (e) {
      throw new ApiError(0, {error: 'network', detail: t('error_network')});
    }
    const text = await r.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch (e) { data = {detail: text.slice(0, 300)}; }
    if (!r.ok) {
      if (r.status === 401 && data.error === 'not_authenticated') data.detail = t('error_session');
      if (data.error === 'csrf') data.detail = t('error_csrf');
      if (r.status >= 500) data.detail = t('error_500');
      // the API's detail is English; a code the pages know is said in the page's language
      else if (texts['apierr_' + data.error]) data.detail = texts['apierr_' + data.error];
      throw new ApiError(r.status, data);
    }
    const total = r.headers.get('X-Total-Count');  // lists: the count before paging
    if (total !== null && Array.isArray(data)) Object.defineProperty(data, 'total', {value: Number(total)});
    return data;
  }

  const fmt = new Intl.DateTimeFormat('sv-SE', {timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit',
                                                hour: '2-digit', minute: '2-digit', hour12: false});
  function time(iso) { return iso ? fmt.format(new Date(iso)).replace(',', '') : '—'; }

  function show(el, message) {
    if (!el) return;
    el.textContent = message || '';
    el.hidden = !message;
  }

  return {t, api, time, show, ApiError};
})();

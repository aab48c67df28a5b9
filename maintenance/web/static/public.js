// The passenger's page: keep "status now" current without a reload.
'use strict';
(() => {
  const live = document.getElementById('live-status');
  if (!live) return;
  const label = live.querySelector('.sr-only');
  async function refresh() {
    if (document.hidden) return;
    try {
      const u = await LW.api('GET', '/api/v1/public/units/' + encodeURIComponent(live.dataset.unitId));
      live.className = 'live live-' + u.live;
      live.replaceChildren(label, document.createTextNode(LW.t('live_' + u.live)));
    } catch (e) { /* keep what is shown; the next round tries again */ }
  }
  setInterval(refresh, Math.max(Number(live.dataset.refreshMs) || 30000, 1000));
})();

// account-monitor UI: live updates for a server-rendered page. Optional: every page works
// without it (Refresh link). It only ever sets textContent and attributes: whatever a
// platform sends (handles, reasons) stays text, and the strict CSP needs nothing inline.
(function () {
  'use strict';

  // Durations and "how long ago" in the same words as monitor/ui/text.py.
  function span(seconds) {
    var whole = Math.max(0, Math.round(seconds));
    if (whole < 60) { return whole + ' s'; }
    var minutes = Math.floor(whole / 60), secs = whole % 60;
    if (minutes < 60) {
      return (minutes >= 10 || !secs) ? minutes + ' min' : minutes + ' min ' + secs + ' s';
    }
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48) { return minutes ? hours + ' h ' + minutes + ' min' : hours + ' h'; }
    var days = Math.floor(hours / 24);
    hours = hours % 24;
    return hours ? days + ' days ' + hours + ' h' : days + ' days';
  }

  function relative(ts, now) {
    var delta = now - ts;
    if (Math.abs(delta) < 30) { return 'just now'; }
    return delta > 0 ? span(delta) + ' ago' : 'in ' + span(-delta);
  }

  function refreshTimes() {
    var now = Date.now() / 1000;
    document.querySelectorAll('time[datetime]').forEach(function (el) {
      var ms = Date.parse(el.getAttribute('datetime'));
      if (isFinite(ms)) { el.textContent = relative(ms / 1000, now); }
    });
  }

  function keyOf(platform, handle) { return JSON.stringify([platform, handle]); }

  // The elements that show one account (overview rows, the account page's status block).
  var live = new Map();
  document.querySelectorAll('[data-live]').forEach(function (el) {
    live.set(keyOf(el.getAttribute('data-platform'), el.getAttribute('data-handle')), el);
  });

  function part(el, testid) { return el.querySelector('[data-testid="' + testid + '"]'); }

  function setSince(cell, account) {
    if (!cell) { return; }
    cell.textContent = '';
    if (account.since === null) { cell.textContent = 'unknown'; return; }
    var time = document.createElement('time');
    time.setAttribute('datetime', account.since_iso);
    time.textContent = relative(account.since, Date.now() / 1000);
    var utc = document.createElement('span');
    utc.className = 'utc';
    utc.textContent = cell.hasAttribute('data-short') ? account.since_utc_short : account.since_utc;
    cell.appendChild(time);
    cell.appendChild(document.createTextNode(' '));
    cell.appendChild(utc);
  }

  function showAccount(account) {
    var el = live.get(keyOf(account.platform, account.handle));
    if (!el) { return false; }
    var was = el.getAttribute('data-status');
    el.setAttribute('data-status', account.status);
    el.setAttribute('data-state', account.state);
    var label = part(el, 'state-label'), reason = part(el, 'state-reason');
    if (label) { label.textContent = account.label; }
    if (reason) { reason.textContent = account.reason; }
    setSince(part(el, 'since-cell'), account);
    // An outage opened or closed: the page's outage lists no longer tell the whole story.
    return (was === 'down') === (account.status === 'down');
  }

  function showSummary(summary) {
    var headline = document.querySelector('[data-testid="summary"]');
    if (headline && headline.textContent !== summary.headline) {
      headline.textContent = summary.headline;
    }
    document.querySelectorAll('[data-testid="summary-count"]').forEach(function (el) {
      var n = summary.counts[el.getAttribute('data-status')];
      if (typeof n === 'number') { el.textContent = String(n); }
    });
    var down = summary.counts.down || 0;
    document.title = document.title.replace(/ \(\d+ down\)$/, '') + (down ? ' (' + down + ' down)' : '');
  }

  function stale() {
    var notice = document.querySelector('[data-testid="stale-notice"]');
    if (notice) { notice.hidden = false; }
  }

  var status = document.querySelector('[data-testid="live-status"]');
  function say(text) { if (status) { status.textContent = text; } }

  refreshTimes();
  setInterval(refreshTimes, 30000);
  if (!window.EventSource || !live.size && !document.querySelector('[data-testid="summary"]')) {
    return;
  }
  var overview = !!document.querySelector('[data-testid="accounts"], [data-testid="no-accounts"]');
  var source = new EventSource('/ui/events');
  source.addEventListener('open', function () { say('Live: changes appear here as they happen.'); });
  source.addEventListener('error', function () { say('Live updates interrupted; reconnecting…'); });
  source.addEventListener('account', function (e) {
    var account = JSON.parse(e.data);
    if (!showAccount(account) && overview) { stale(); }
    document.documentElement.setAttribute('data-last-event', e.lastEventId);
  });
  source.addEventListener('summary', function (e) { showSummary(JSON.parse(e.data)); });
  source.addEventListener('reload', function () { stale(); });
}());

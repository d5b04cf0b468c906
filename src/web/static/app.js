/*
 * The Sonogate dashboard: a small client of the JSON API under /api, no framework, no build step.
 * Pages are hash routes (#/studies, #/study/<uid>, ...). Everything shown is built with DOM calls
 * and textContent (never innerHTML), so data from DICOM headers cannot inject markup; the
 * Content-Security-Policy allows this file and nothing inline.
 */
'use strict';

(() => {
  // background: set while a live update re-renders the page; those requests do not keep the session alive
  // frames: the frame shown per multi-frame instance (SOP Instance UID -> 1-based), kept across live re-renders
  const state = { user: null, csrf: null, events: null, refreshTimer: null, background: false, frames: {} };
  const main = document.getElementById('main');

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '–');
  const fmtMs = (ms) => (ms === null || ms === undefined ? '–' : ms < 1000 ? `${Math.round(ms)} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60000).toFixed(1)} min`);
  const pct = (p) => (p === null || p === undefined ? '–' : `${(p * 100).toFixed(1)} %`);
  const studyLink = (uid, text) => h('a', { href: `#/study/${encodeURIComponent(uid)}` }, text || uid);
  const badge = (s) => h('span', { class: `badge ${s}` }, s);
  const labelBadge = (l) => (l ? h('span', { class: `badge label-${l}` }, l) : h('span', { class: 'muted' }, '–'));
  const isAdmin = () => state.user && state.user.role === 'admin';
  // the overlay's words (LOW_AGREEMENT in src/report/common.ts), so the dashboard and the PACS say the same
  const DISAGREE = 'Networks disagree: uncertain call';
  const DISAGREE_WHY =
    "The model's networks disagree on this image's malignancy (the spread of their probabilities is above the model's cut): " +
    'the call is uncertain whatever its probability; read the image. The SR and the key object selection say so too.';
  /** The warning beside an image's call where the model's networks disagree on it (nothing otherwise). */
  const disagreeWarning = (i) =>
    i.lowAgreement
      ? h(
          'span',
          { class: 'badge disagree', role: 'note', title: `${DISAGREE_WHY}${typeof i.networkSpread === 'number' ? ` Spread ${i.networkSpread.toFixed(3)}.` : ''}` },
          `⚠ ${DISAGREE}`,
        )
      : null;

  /** An instance's preview; a multi-frame instance gets a slider that picks the frame shown. */
  function thumbnail(base, i) {
    const src = (f) => `${base}/instances/${encodeURIComponent(i.sopInstanceUid)}/image.png?w=160${f > 1 ? `&frame=${f}` : ''}`;
    const chosen = Math.min(state.frames[i.sopInstanceUid] || 1, i.frames || 1);
    const img = h('img', { class: 'thumb', loading: 'lazy', src: src(chosen), alt: i.frames > 1 ? `frame ${chosen} of ${i.frames}` : 'thumbnail' });
    if (!(i.frames > 1)) return img;
    const label = h('span', { class: 'small muted frame-number' }, `frame ${chosen} / ${i.frames}`);
    const slider = h('input', {
      type: 'range',
      class: 'frame-slider',
      min: 1,
      max: i.frames,
      value: chosen,
      'aria-label': `frame of instance ${i.sopInstanceUid}`,
      // the label follows the drag; the image is fetched once the slider is let go
      oninput: (e) => (label.textContent = `frame ${e.target.value} / ${i.frames}`),
      onchange: (e) => {
        const f = Number(e.target.value);
        state.frames[i.sopInstanceUid] = f;
        img.src = src(f);
        img.alt = `frame ${f} of ${i.frames}`;
      },
    });
    return h('div', { class: 'frames' }, img, slider, label);
  }

  function table(headers, rows, empty) {
    if (!rows.length) return h('p', { class: 'muted' }, empty || 'Nothing here.');
    return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))), h('tbody', {}, rows));
  }

  function card(title, ...body) {
    return h('section', { class: 'card' }, h('h3', {}, title), ...body);
  }

  function flash(message, kind) {
    const el = h('div', { class: `flash ${kind || 'info'}`, role: 'status' }, message);
    document.body.append(el);
    setTimeout(() => el.remove(), 5000);
  }

  function sendsSummary(s) {
    const parts = [];
    if (s.sent) parts.push(h('span', { class: 'ok' }, `${s.sent} sent`));
    if (s.pending - s.retrying > 0) parts.push(h('span', {}, `${s.pending - s.retrying} pending`));
    if (s.retrying) parts.push(h('span', { class: 'warn' }, `${s.retrying} retrying`));
    if (s.failed) parts.push(h('span', { class: 'bad' }, `${s.failed} failed`));
    return parts.length ? parts.flatMap((p, i) => (i ? [', ', p] : [p])) : h('span', { class: 'muted' }, '–');
  }

  // ------------------------------------------------------------------ API

  class Unauthenticated extends Error {}

  async function api(method, url, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    if (state.background && method === 'GET') headers['X-Sonogate-Background'] = '1';
    const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
    if (res.status === 401 && url !== '/api/login') {
      // signed in until now: the session ended on the server (timeout, sign-out elsewhere, reset).
      // Several requests may find that out at once: the first one says why, the others must not
      // redraw the sign-in form without the reason
      if (state.user) showLogin('Your session ended. Sign in again.');
      else if (!document.getElementById('login')) showLogin();
      throw new Unauthenticated('sign in first');
    }
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) throw new Error((data && (data.message || data.error)) || `${res.status} ${res.statusText}`);
    return data;
  }

  async function act(method, url, body, done) {
    try {
      const r = await api(method, url, body);
      // done(r) gives the message, or { text, bad: true } for an answer that reports a failure
      const said = done ? done(r) : null;
      if (said) flash(typeof said === 'string' ? said : said.text, typeof said === 'string' || !said.bad ? 'ok' : 'bad');
      await render();
      return r;
    } catch (e) {
      if (!(e instanceof Unauthenticated)) flash(e.message, 'bad');
      return null;
    }
  }

  // ------------------------------------------------------------------ session

  function showLogin(message) {
    state.user = null;
    state.csrf = null;
    if (state.events) state.events.close();
    state.events = null;
    document.getElementById('nav').hidden = true;
    document.getElementById('who').hidden = true;
    const error = h('p', { class: 'error', id: 'login-error', role: 'alert' }, message || '');
    const form = h(
      'form',
      { id: 'login', class: 'login', autocomplete: 'on' },
      h('h1', {}, 'Sign in'),
      h('label', {}, 'User name', h('input', { id: 'username-input', name: 'username', autocomplete: 'username', required: true, autofocus: true })),
      h('label', {}, 'Password', h('input', { id: 'password-input', name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
      h('button', { type: 'submit' }, 'Sign in'),
      error,
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      try {
        const r = await api('POST', '/api/login', { username: fd.get('username'), password: fd.get('password') });
        signedIn(r);
        if (!location.hash || location.hash === '#/' || location.hash === '#/login') location.hash = '#/overview';
        else render();
      } catch (e) {
        error.textContent = e.message;
      }
    });
    main.replaceChildren(form);
  }

  function signedIn(r) {
    state.user = r.user;
    state.csrf = r.csrfToken;
    document.getElementById('nav').hidden = false;
    document.getElementById('who').hidden = false;
    document.getElementById('username').textContent = `${r.user.username} (${r.user.role})`;
    startLive();
  }

  function startLive() {
    if (state.events) return;
    const live = document.getElementById('live');
    const es = new EventSource('/api/events');
    state.events = es;
    es.addEventListener('hello', () => live.classList.add('on'));
    es.addEventListener('change', () => {
      clearTimeout(state.refreshTimer);
      state.refreshTimer = setTimeout(() => render(true), 250);
    });
    es.onerror = async () => {
      live.classList.remove('on');
      // an EventSource refused with 401 never reconnects: if the session ended, say so
      try {
        const r = await fetch('/api/session', { credentials: 'same-origin', headers: { Accept: 'application/json', 'X-Sonogate-Background': '1' } });
        if (r.status === 401 && state.user) showLogin('Your session ended. Sign in again.');
      } catch {
        /* the gateway is restarting: the stream reconnects by itself */
      }
    };
  }

  document.getElementById('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/api/logout');
    } catch {
      /* signed out anyway */
    }
    // the next person to sign in starts on the overview, not on this user's last page
    history.replaceState(null, '', location.pathname);
    showLogin('Signed out.');
  });

  // ------------------------------------------------------------------ pages

  async function overviewPage() {
    const o = await api('GET', '/api/overview?tz=' + -new Date().getTimezoneOffset());
    const t = o.today;
    const q = o.queue;
    const stat = (label, value, cls, id) => h('div', { class: `stat ${cls || ''}`, id }, h('div', { class: 'value' }, String(value)), h('div', { class: 'label' }, label));
    return [
      h('h1', {}, 'Overview'),
      h(
        'div',
        { class: 'stats' },
        stat('studies received today', t.studiesReceived, '', 'stat-received'),
        stat('processed today', t.studiesProcessed, 'ok', 'stat-processed'),
        stat('failed today', t.studiesFailed + t.instancesFailed, t.studiesFailed + t.instancesFailed ? 'bad' : '', 'stat-failed'),
        stat('results sent today', t.resultsSent, '', 'stat-sent'),
        stat('queue (receiving / queued / running)', `${q.receiving} / ${q.queued} / ${q.running}`, '', 'stat-queue'),
        stat('sends pending / retrying / failed', `${q.sendsPending - q.sendsRetrying} / ${q.sendsRetrying} / ${q.sendsFailed}`, q.sendsRetrying || q.sendsFailed ? 'warn' : '', 'stat-sends'),
        storageStat(o.storage, stat),
      ),
      h(
        'div',
        { class: 'cards' },
        card(
          'Latency today',
          h('p', {}, 'From the last instance received to results filed (includes the quiet period): median ', h('b', {}, fmtMs(o.latencyMs.processing.median)), ', worst ', h('b', {}, fmtMs(o.latencyMs.processing.worst)), ` (${o.latencyMs.processing.studies} studies).`),
          h('p', {}, 'To all results delivered: median ', h('b', {}, fmtMs(o.latencyMs.delivery.median)), ', worst ', h('b', {}, fmtMs(o.latencyMs.delivery.worst)), '.'),
        ),
        card(
          'Model',
          h('p', {}, h('b', { id: 'model-name' }, `${o.model.name} ${o.model.version}`)),
          h('p', {}, 'Inference on ', h('b', { id: 'model-provider' }, o.model.provider.toUpperCase())),
        ),
        card(
          'Labels today',
          Object.keys(t.byLabel).length ? h('p', {}, Object.entries(t.byLabel).map(([k, v]) => [labelBadge(k), ` ${v}  `])) : h('p', { class: 'muted' }, 'No studies processed today.'),
        ),
      ),
      h('h2', {}, 'Latest studies'),
      studiesTable(o.recent),
    ];
  }

  /** Bytes as the storage cap counts them (GB = 10^9 bytes, as housekeeping.maxStorageGB). */
  function fmtBytes(n) {
    if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
    return `${Math.round(n / 1e3)} KB`;
  }

  /** "storage: X of Y GB": received images and results by the database's account, against housekeeping.maxStorageGB. */
  function storageStat(s, stat) {
    const over = s.capBytes > 0 && s.bytes > s.capBytes;
    const el = s.capBytes > 0
      ? stat(over ? 'storage, over the cap' : 'storage of the cap', `${fmtBytes(s.bytes)} of ${fmtBytes(s.capBytes)}`, over ? 'warn' : '', 'stat-storage')
      : stat('storage (no cap)', fmtBytes(s.bytes), '', 'stat-storage');
    el.title = 'Received images not yet deleted and result files, as the database records them (housekeeping.maxStorageGB bounds this). Not counted: the database file itself, and files no record points to.';
    return el;
  }

  function studiesTable(items, filtered = false) {
    return table(
      ['Received', 'Patient', 'Patient ID', 'Description', 'Status', 'Label', 'Malignancy', 'Images', 'Results'],
      items.map((s) =>
        h(
          'tr',
          { dataset: { studyUid: s.studyUid, status: s.status } },
          h('td', {}, studyLink(s.studyUid, fmtTime(s.lastReceivedAt))),
          h('td', { class: 'patient' }, s.patientName || '–'),
          h('td', {}, s.patientId || '–'),
          h('td', {}, s.studyDescription || '–'),
          h('td', { class: 'status' }, badge(s.status)),
          h(
            'td',
            {},
            labelBadge(s.label),
            s.lowAgreement
              ? [' ', h('span', { class: 'badge disagree', role: 'img', 'aria-label': `${DISAGREE} on an image of this study`, title: `An image of this study: ${DISAGREE.toLowerCase()}. ${DISAGREE_WHY}` }, '⚠')]
              : null,
          ),
          h('td', {}, pct(s.malignancyProbability)),
          h('td', {}, String(s.instances)),
          h('td', { class: 'sends' }, sendsSummary(s.sends)),
        ),
      ),
      filtered ? 'No study matches these filters.' : 'No studies yet. Send one with dcmsend.',
    );
  }

  async function studiesPage(params) {
    const q = new URLSearchParams();
    for (const k of ['status', 'label', 'from', 'to', 'offset']) if (params.get(k)) q.set(k, params.get(k));
    // From / To are days in this browser's time zone, as the times on the page are
    if (params.get('from') || params.get('to')) q.set('tz', String(-new Date().getTimezoneOffset()));
    q.set('limit', '25');
    const r = await api('GET', `/api/studies?${q}`);
    const select = (name, options) =>
      h(
        'select',
        { name },
        h('option', { value: '' }, 'any'),
        options.map((o) => h('option', { value: o, selected: params.get(name) === o }, o)),
      );
    const form = h(
      'form',
      { class: 'filters', id: 'study-filters' },
      h('label', {}, 'From ', h('input', { type: 'date', name: 'from', value: params.get('from') || '' })),
      h('label', {}, 'To ', h('input', { type: 'date', name: 'to', value: params.get('to') || '' })),
      h('label', {}, 'Status ', select('status', ['receiving', 'queued', 'processing', 'processed', 'failed'])),
      h('label', {}, 'Label ', select('label', ['normal', 'benign', 'malignant', 'none'])),
      h('button', { type: 'submit' }, 'Filter'),
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const next = new URLSearchParams();
      for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
      location.hash = `#/studies?${next}`;
    });
    const page = (offset) => {
      const p = new URLSearchParams(params);
      p.set('offset', String(Math.max(0, offset)));
      return `#/studies?${p}`;
    };
    const from = r.total ? r.offset + 1 : 0;
    const to = Math.min(r.total, r.offset + r.items.length);
    return [
      h('h1', {}, 'Studies'),
      form,
      studiesTable(r.items, ['from', 'to', 'status', 'label'].some((k) => params.get(k)) || Number(params.get('offset')) > 0),
      h(
        'p',
        { class: 'pager' },
        r.offset > 0 ? h('a', { href: page(r.offset - r.limit) }, '‹ newer') : null,
        ` ${from}–${to} of ${r.total} `,
        to < r.total ? h('a', { href: page(r.offset + r.limit) }, 'older ›') : null,
      ),
    ];
  }

  function lesionText(l) {
    if (!l) return '–';
    const u = l.unit === 'mm' ? 'mm' : 'px (uncalibrated)';
    const area = l.unit === 'mm' ? `${l.area.toFixed(1)} mm²` : `${Math.round(l.area)} px²`;
    return `${l.longAxis.toFixed(1)} × ${l.shortAxis.toFixed(1)} ${u}, ${area}`;
  }

  async function studyPage(uid) {
    const d = await api('GET', `/api/studies/${encodeURIComponent(uid)}`);
    const s = d.study;
    const base = `/api/studies/${encodeURIComponent(uid)}`;
    const actions = d.canAct
      ? h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', id: 'rerun', onclick: () => act('POST', `${base}/rerun`, {}, (r) => (r.started ? 'Re-run started.' : 'Re-run queued.')) }, 'Re-run analysis'),
          h('button', { type: 'button', id: 'resend', onclick: () => act('POST', `${base}/resend`, {}, (r) => `${r.sends} result sends queued.`) }, 'Re-send results'),
          h(
            'button',
            {
              type: 'button',
              id: 'delete',
              class: 'danger',
              onclick: async () => {
                if (!confirm('Delete this study, its images and its results from Sonogate? (The PACS keeps what it received.)')) return;
                const r = await act('POST', `${base}/delete`, {}, () => 'Study deleted.');
                if (r) location.hash = '#/studies';
              },
            },
            'Delete',
          ),
        )
      : null;
    const overlays = d.instances.filter((i) => i.overlaySopInstanceUid);
    const disagreeing = d.instances.filter((i) => i.status === 'analysed' && i.lowAgreement);
    const stages = Object.entries(d.stageTimesMs);
    return [
      h('p', {}, h('a', { href: '#/studies' }, '‹ Studies')),
      h('h1', {}, s.patientName || 'Unnamed patient', ' ', h('span', { class: 'muted small' }, s.patientId ? `ID ${s.patientId}` : '')),
      h(
        'div',
        { class: 'summary', id: 'study-summary' },
        h('span', { id: 'study-status' }, badge(s.status)),
        ' ',
        h('span', { id: 'study-label' }, labelBadge(s.label)),
        s.malignancyProbability !== null ? h('span', {}, ` malignancy ${pct(s.malignancyProbability)}`) : null,
        disagreeing.length
          ? h('p', { class: 'warn', id: 'study-disagree' }, `⚠ ${DISAGREE} on ${disagreeing.length === 1 ? 'one image' : `${disagreeing.length} images`} of this study: read ${disagreeing.length === 1 ? 'it' : 'them'} whatever the probability.`)
          : null,
        s.errorReason ? h('p', { class: 'bad' }, `${s.errorReason}: ${s.errorMessage || ''}`) : null,
      ),
      h(
        'dl',
        { class: 'meta' },
        h('dt', {}, 'Study UID'),
        h('dd', { class: 'uid' }, s.studyUid),
        h('dt', {}, 'Description'),
        h('dd', {}, s.studyDescription || '–'),
        h('dt', {}, 'Accession'),
        h('dd', {}, s.accessionNumber || '–'),
        h('dt', {}, 'From'),
        h('dd', {}, `${s.callingAe || '?'} (${s.callingHost || '?'})`),
        h('dt', {}, 'Received'),
        h('dd', {}, `${fmtTime(s.firstReceivedAt)} – ${fmtTime(s.lastReceivedAt)}`),
        h('dt', {}, 'Processed'),
        h('dd', {}, `${fmtTime(s.processedAt)} (run ${s.runCount})`),
      ),
      actions,
      h('h2', {}, 'Result overlay'),
      overlays.length
        ? h(
            'div',
            { class: 'overlays' },
            overlays.map((i) =>
              h(
                'figure',
                {},
                h('img', { class: 'overlay', src: `${base}/outputs/${encodeURIComponent(i.overlaySopInstanceUid)}/image.png`, alt: `AI overlay of instance ${i.sopInstanceUid}` }),
                h('figcaption', {}, labelBadge(i.label), ` ${pct(i.probability)} · lesion ${lesionText(i.lesion)}`, i.lowAgreement ? ' ' : null, disagreeWarning(i)),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'No overlay (yet).'),
      h('h2', {}, 'Instances'),
      table(
        ['Image', 'SOP Instance UID', 'Status', 'Label', 'Probability', 'Malignancy', 'Lesions', 'Largest lesion', 'Frames', 'Times'],
        d.instances.map((i) =>
          h(
            'tr',
            {},
            h(
              'td',
              {},
              i.purgedAt
                ? h('span', { class: 'muted small' }, 'deleted by retention')
                : thumbnail(base, i),
            ),
            h('td', { class: 'uid' }, i.sopInstanceUid),
            h('td', {}, badge(i.status), i.reason ? h('div', { class: 'small bad' }, `${i.reason}: ${i.message || ''}`) : null),
            h('td', {}, labelBadge(i.label), i.lowAgreement ? h('div', {}, disagreeWarning(i)) : null),
            h('td', {}, pct(i.probability)),
            h('td', {}, pct(i.malignancyProbability)),
            h('td', {}, i.lesionCount === null ? '–' : String(i.lesionCount)),
            h('td', {}, lesionText(i.lesion)),
            h('td', {}, i.frames === null ? '–' : String(i.frames)),
            h('td', { class: 'small' }, i.timingsMs ? Object.entries(i.timingsMs).map(([k, v]) => `${k} ${fmtMs(v)}`).join(' · ') : '–'),
          ),
        ),
      ),
      h('h2', {}, 'Time per stage'),
      stages.length ? h('p', { id: 'stage-times' }, stages.map(([k, v]) => h('span', { class: 'chip' }, `${k} ${fmtMs(v)}`))) : h('p', { class: 'muted' }, 'Not processed yet.'),
      h('h2', {}, 'Sent to'),
      table(
        ['Destination', 'Object', 'Status', 'Attempts', 'Last error', 'Sent', ''],
        d.sends.map((x) => {
          const out = d.outputs.find((o) => o.sopInstanceUid === x.outputSopUid);
          const shown = x.status === 'pending' && x.attempts > 0 ? 'retrying' : x.status;
          return h(
            'tr',
            { dataset: { sendId: String(x.id), status: shown } },
            h('td', {}, `${x.destination} (${x.aeTitle}@${x.host}:${x.port})`),
            h('td', {}, out ? out.kind.toUpperCase() : '?'),
            h('td', { class: 'send-status' }, badge(shown)),
            h('td', {}, String(x.attempts)),
            h('td', { class: 'small bad' }, x.lastError || ''),
            h('td', {}, fmtTime(x.sentAt)),
            h('td', {}, d.canAct && x.status !== 'sent' ? h('button', { type: 'button', class: 'small', onclick: () => act('POST', `/api/sends/${x.id}/retry`, {}, () => 'Retry queued.') }, 'Retry') : null),
          );
        }),
        'Nothing to send (yet).',
      ),
      h('h2', {}, 'Jobs'),
      table(
        ['Job', 'Run', 'Status', 'Queued', 'Started', 'Finished', 'Error'],
        d.jobs.map((j) => h('tr', {}, h('td', {}, String(j.id)), h('td', {}, j.run === null ? '–' : String(j.run)), h('td', {}, badge(j.status)), h('td', {}, fmtTime(j.createdAt)), h('td', {}, fmtTime(j.startedAt)), h('td', {}, fmtTime(j.finishedAt)), h('td', { class: 'small bad' }, j.errorReason ? `${j.errorReason}: ${j.errorMessage || ''}` : ''))),
      ),
      h('h2', {}, 'Events'),
      table(
        ['When', 'Event', 'Detail'],
        d.events.map((e) => h('tr', {}, h('td', {}, fmtTime(e.at)), h('td', {}, e.kind), h('td', { class: 'small' }, e.detail === null ? '' : typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail)))),
      ),
      h('h2', {}, 'Audit'),
      auditTable(d.audit),
    ];
  }

  async function failuresPage() {
    const f = await api('GET', '/api/failures');
    const admin = isAdmin();
    const button = (text, onclick, cls) => (admin ? h('button', { type: 'button', class: `small ${cls || ''}`, onclick }, text) : null);
    return [
      h('h1', {}, 'Failures'),
      h('h2', {}, 'Result sends'),
      f.sends.length && admin ? h('p', {}, h('button', { type: 'button', id: 'retry-all', onclick: () => act('POST', '/api/sends/retry', {}, (r) => `${r.sends} sends queued again.`) }, 'Retry all')) : null,
      table(
        ['Study', 'Destination', 'Object', 'State', 'Attempts', 'Reason', 'Last try', ''],
        f.sends.map((x) =>
          h(
            'tr',
            { dataset: { sendId: String(x.id) } },
            h('td', {}, studyLink(x.studyUid)),
            h('td', {}, x.destination),
            h('td', {}, (x.kind || '?').toUpperCase()),
            h('td', {}, badge(x.status === 'pending' ? 'retrying' : x.status)),
            h('td', {}, String(x.attempts)),
            h('td', { class: 'small bad' }, x.lastError || ''),
            h('td', {}, fmtTime(x.updatedAt)),
            h('td', {}, button('Retry', () => act('POST', `/api/sends/${x.id}/retry`, {}, () => 'Retry queued.')), ' ', button('Discard', () => act('POST', `/api/sends/${x.id}/discard`, {}, () => 'Send discarded.'), 'danger')),
          ),
        ),
        'No failed sends.',
      ),
      h('h2', {}, 'Studies'),
      table(
        ['Study', 'Patient', 'Reason', 'When', ''],
        f.studies.map((s) =>
          h(
            'tr',
            {},
            h('td', {}, studyLink(s.studyUid)),
            h('td', { class: 'patient' }, s.patientName || '–'),
            h('td', { class: 'small bad' }, `${s.errorReason || '?'}: ${s.errorMessage || ''}`),
            h('td', {}, fmtTime(s.updatedAt)),
            h(
              'td',
              {},
              button('Retry', () => act('POST', `/api/studies/${encodeURIComponent(s.studyUid)}/rerun`, {}, () => 'Re-run queued.')),
              ' ',
              button('Discard', () => act('POST', `/api/failures/studies/${encodeURIComponent(s.studyUid)}/discard`, {}, () => 'Discarded.'), 'danger'),
            ),
          ),
        ),
        'No failed studies.',
      ),
      h('h2', {}, 'Instances'),
      table(
        ['SOP Instance UID', 'Study', 'From', 'Reason', 'Received', ''],
        f.instances.map((i) =>
          h(
            'tr',
            {},
            h('td', { class: 'uid' }, i.sopInstanceUid),
            h('td', {}, i.studyUid ? studyLink(i.studyUid) : h('span', { class: 'muted' }, 'unreadable header')),
            h('td', {}, `${i.callingAe || '?'} (${i.callingHost || '?'})`),
            h('td', { class: 'small bad' }, `${i.reason || '?'}: ${i.message || ''}`),
            h('td', {}, fmtTime(i.receivedAt)),
            h('td', {}, button('Discard', () => act('POST', `/api/failures/instances/${encodeURIComponent(i.sopInstanceUid)}/discard`, {}, () => 'Discarded.'), 'danger')),
          ),
        ),
        'No failed instances.',
      ),
    ];
  }

  async function destinationsPage() {
    const r = await api('GET', '/api/destinations');
    return [
      h('h1', {}, 'Destinations'),
      table(
        ['Name', 'Address', 'Sent', 'Pending', 'Retrying', 'Failed', 'Last success', 'Last error', 'Connection test', ''],
        r.items.map((d) =>
          h(
            'tr',
            { dataset: { destination: d.name } },
            h('td', {}, d.name, d.configured ? '' : h('div', { class: 'small muted' }, 'return to sender')),
            h('td', {}, d.aeTitle ? `${d.aeTitle}@${d.host}:${d.port}` : '–'),
            h('td', {}, String(d.sent)),
            h('td', {}, String(d.pending - d.retrying)),
            h('td', { class: d.retrying ? 'warn' : '' }, String(d.retrying)),
            h('td', { class: d.failed ? 'bad' : '' }, String(d.failed)),
            h('td', {}, fmtTime(d.lastSuccessAt)),
            h('td', { class: 'small' }, d.lastError ? [h('span', { class: 'bad' }, d.lastError.error), h('div', { class: 'muted' }, fmtTime(d.lastError.at))] : '–'),
            h('td', { class: 'echo' }, d.lastEcho ? h('span', { class: d.lastEcho.ok ? 'ok' : 'bad' }, d.lastEcho.ok ? `OK in ${fmtMs(d.lastEcho.ms)}` : d.lastEcho.error, h('div', { class: 'small muted' }, `${fmtTime(d.lastEcho.at)} by ${d.lastEcho.by}`)) : '–'),
            h(
              'td',
              {},
              d.configured ? h('button', { type: 'button', class: 'small echo-button', onclick: () => act('POST', `/api/destinations/${encodeURIComponent(d.name)}/echo`, {}, (x) => (x.ok ? `C-ECHO to ${d.name}: OK` : { text: `C-ECHO to ${d.name} failed: ${x.error}`, bad: true })) }, 'Test (C-ECHO)') : null,
              ' ',
              r.canAct && d.retrying + d.failed > 0 ? h('button', { type: 'button', class: 'small', onclick: () => act('POST', '/api/sends/retry', { destination: d.name }, (x) => `${x.sends} sends queued again.`) }, 'Retry failed') : null,
            ),
          ),
        ),
        'No destinations configured.',
      ),
    ];
  }

  // a small Markdown subset (headings, paragraphs, lists, tables, code, bold, italics, links) built as DOM nodes
  function inline(text) {
    const out = [];
    const re = /(`[^`]+`|\*\*[^*]+\*\*|\*[^*]+\*|\[[^\]]+\]\([^)\s]+\))/g;
    let last = 0;
    for (const m of text.matchAll(re)) {
      out.push(text.slice(last, m.index));
      const t = m[0];
      if (t.startsWith('`')) out.push(h('code', {}, t.slice(1, -1)));
      else if (t.startsWith('**')) out.push(h('strong', {}, t.slice(2, -2)));
      else if (t.startsWith('*')) out.push(h('em', {}, t.slice(1, -1)));
      else {
        const [, label, href] = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(t);
        out.push(/^https?:\/\//.test(href) ? h('a', { href, rel: 'noopener noreferrer', target: '_blank' }, label) : label);
      }
      last = m.index + t.length;
    }
    out.push(text.slice(last));
    return out;
  }

  function markdown(src) {
    const lines = src.replace(/\r\n/g, '\n').split('\n');
    const out = [];
    let i = 0;
    const cells = (l) => l.trim().replace(/^\||\|$/g, '').split('|').map((c) => c.trim());
    while (i < lines.length) {
      const l = lines[i];
      if (/^```/.test(l)) {
        const code = [];
        for (i++; i < lines.length && !/^```/.test(lines[i]); i++) code.push(lines[i]);
        i++;
        out.push(h('pre', {}, code.join('\n')));
      } else if (/^#{1,6}\s/.test(l)) {
        const n = /^#+/.exec(l)[0].length;
        out.push(h(`h${Math.min(6, n + 1)}`, {}, inline(l.slice(n).trim())));
        i++;
      } else if (/^\s*\|/.test(l) && i + 1 < lines.length && /^\s*\|?\s*:?-+/.test(lines[i + 1])) {
        const head = cells(l);
        const rows = [];
        for (i += 2; i < lines.length && /^\s*\|/.test(lines[i]); i++) rows.push(cells(lines[i]));
        out.push(h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', {}, inline(c))))), h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, inline(c))))))));
      } else if (/^\s*([-*]|\d+\.)\s/.test(l)) {
        const ordered = /^\s*\d+\./.test(l);
        const items = [];
        for (; i < lines.length && /^\s*([-*]|\d+\.)\s/.test(lines[i]); i++) items.push(h('li', {}, inline(lines[i].replace(/^\s*([-*]|\d+\.)\s/, ''))));
        out.push(h(ordered ? 'ol' : 'ul', {}, items));
      } else if (!l.trim()) {
        i++;
      } else {
        const para = [];
        for (; i < lines.length && lines[i].trim() && !/^(#{1,6}\s|```|\s*\||\s*([-*]|\d+\.)\s)/.test(lines[i]); i++) para.push(lines[i].trim());
        out.push(h('p', {}, inline(para.join(' '))));
      }
    }
    return out;
  }

  function metricsTable(metrics) {
    const rows = [];
    const walk = (prefix, v) => {
      if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
      else rows.push(h('tr', {}, h('td', {}, prefix), h('td', {}, typeof v === 'number' ? String(Math.round(v * 10000) / 10000) : JSON.stringify(v))));
    };
    walk('', metrics);
    return table(['Metric', 'Value'], rows, 'No metrics in model.json.');
  }

  async function modelPage() {
    const m = await api('GET', '/api/model');
    return [
      h('h1', {}, 'Model'),
      h('p', {}, h('b', {}, `${m.name} ${m.version}`), ` — inference on ${m.provider.toUpperCase()}`),
      h('h2', {}, 'Metrics (model.json)'),
      m.metrics ? metricsTable(m.metrics) : h('p', { class: 'muted' }, 'model.json has no metrics.'),
      m.training ? [h('h2', {}, 'Training'), metricsTable(m.training)] : null,
      h('h2', {}, 'Model card'),
      m.card ? h('article', { class: 'card markdown', id: 'model-card' }, markdown(m.card)) : h('p', { class: 'warn', id: 'model-card-missing' }, `No model card: ${m.cardFile} is missing next to model.json.`),
    ];
  }

  function auditTable(items) {
    return table(
      ['When', 'Who', 'Action', 'Outcome', 'Study', 'Target', 'Address', 'Detail'],
      items.map((a) =>
        h(
          'tr',
          {},
          h('td', {}, fmtTime(a.at)),
          h('td', {}, a.username || '–', a.role ? h('span', { class: 'muted small' }, ` (${a.role})`) : null),
          h('td', {}, a.action),
          h('td', {}, badge(a.outcome)),
          h('td', {}, a.studyUid ? studyLink(a.studyUid) : '–'),
          h('td', {}, a.target || '–'),
          h('td', { class: 'small' }, a.ip || '–'),
          h('td', { class: 'small' }, a.detail || ''),
        ),
      ),
      'No entries.',
    );
  }

  async function auditPage(params) {
    const offset = Number(params.get('offset') || 0);
    const r = await api('GET', `/api/audit?limit=50&offset=${offset}`);
    return [
      h('h1', {}, 'Audit log'),
      auditTable(r.items),
      h(
        'p',
        { class: 'pager' },
        offset > 0 ? h('a', { href: `#/audit?offset=${Math.max(0, offset - 50)}` }, '‹ newer') : null,
        ` ${r.total ? offset + 1 : 0}–${offset + r.items.length} of ${r.total} `,
        offset + r.items.length < r.total ? h('a', { href: `#/audit?offset=${offset + 50}` }, 'older ›') : null,
      ),
    ];
  }

  async function routingPage() {
    const r = await api('GET', '/api/routing');
    const edit = !!r.canEdit;
    const a = r.analyze;
    const list = (v) => (v && v.length ? v.join(', ') : '');
    const shown = (v) => (v === null || v === undefined || v === '' || (Array.isArray(v) && !v.length) ? 'any' : Array.isArray(v) ? v.join(', ') : String(v));
    const splitList = (text) => text.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
    const form = h('form', { id: 'routing-form', class: 'routing', autocomplete: 'off' });
    const markDirty = () => (form.dataset.dirty = '1');
    form.addEventListener('input', markDirty);
    form.addEventListener('change', markDirty);

    const source = (key, f, fileText) =>
      f.source === 'dashboard'
        ? [
            h('span', { class: 'badge dashboard', dataset: { source: 'dashboard' } }, 'dashboard'),
            h('div', { class: 'small muted' }, `changed by ${f.changedBy || '–'}, ${fmtTime(f.changedAt)}; file: ${fileText}`),
            edit
              ? h('button', {
                  type: 'button',
                  class: 'small danger revert',
                  dataset: { key },
                  // the page is drawn again afterwards: unsaved edits of the other fields are put back
                  onclick: async () => {
                    const fieldKey = (el) => el.closest('tr')?.dataset.key || (el.name ? `destinations.${el.name}.enabled` : '');
                    const kept = form.dataset.dirty
                      ? [...form.querySelectorAll('input')].filter((el) => fieldKey(el) !== key).map((el) => [fieldKey(el), el.type === 'checkbox' ? el.checked : el.value])
                      : [];
                    await act('POST', '/api/routing/revert', { keys: [key] }, () => `${key} follows the config file again.`);
                    const again = document.getElementById('routing-form');
                    if (!again || !kept.length) return;
                    for (const [k, v] of kept) {
                      const el = [...again.querySelectorAll('input')].find((x) => fieldKey(x) === k);
                      if (el && el.type === 'checkbox') el.checked = v;
                      else if (el) el.value = v;
                    }
                    again.dataset.dirty = '1';
                  },
                }, 'Revert to config file')
              : null,
          ]
        : h('span', { class: 'badge file', dataset: { source: 'file' } }, 'config file');

    const textInput = (id, value, placeholder) => h('input', { id, name: id, value, placeholder, size: 40, disabled: !edit });
    const fields = [
      ['routing.analyze.bodyParts', 'Body parts (BodyPartExamined, comma separated; empty = any)', a.bodyParts, textInput('routing-bodyParts', list(a.bodyParts.value), 'e.g. BREAST'), shown(a.bodyParts.file)],
      ['routing.analyze.requireBodyPart', 'Require BodyPartExamined (an instance without it is skipped)', a.requireBodyPart, h('input', { id: 'routing-requireBodyPart', name: 'requireBodyPart', type: 'checkbox', checked: a.requireBodyPart.value, disabled: !edit }), a.requireBodyPart.file ? 'yes' : 'no'],
      ['routing.analyze.studyDescription', 'Study description (regular expression, case-insensitive; empty = any)', a.studyDescription, textInput('routing-studyDescription', a.studyDescription.value || '', 'e.g. breast|mamm'), shown(a.studyDescription.file)],
      ['routing.analyze.stations', 'Stations (StationName, comma separated; empty = any)', a.stations, textInput('routing-stations', list(a.stations.value), 'e.g. US01'), shown(a.stations.file)],
    ];
    const analyzeTable = table(
      ['Setting', 'Value', 'Source'],
      fields.map(([key, label, f, input, fileText]) =>
        h('tr', { dataset: { key } }, h('td', {}, h('label', { for: input.id }, label), h('div', { class: 'small muted uid' }, key)), h('td', {}, edit ? input : h('span', { class: 'value' }, key.endsWith('requireBodyPart') ? (f.value ? 'yes' : 'no') : shown(f.value))), h('td', {}, source(key, f, fileText))),
      ),
    );
    const destTable = table(
      ['Destination', 'Address', 'Results sent there', 'Source'],
      r.destinations.map((d) => {
        const key = `destinations.${d.name}.enabled`;
        const onOff = h('span', {}, d.enabled.value ? ' on' : ' off');
        const box = h('input', { type: 'checkbox', class: 'destination-enabled', name: d.name, checked: d.enabled.value, disabled: !edit, dataset: { destination: d.name }, onchange: (e) => (onOff.textContent = e.target.checked ? ' on (not saved)' : ' off (not saved)') });
        return h(
          'tr',
          { dataset: { destination: d.name } },
          h('td', {}, d.name),
          h('td', {}, `${d.aeTitle}@${d.host}:${d.port}`),
          h('td', {}, edit ? h('label', {}, box, onOff) : h('span', { class: d.enabled.value ? 'ok' : 'warn' }, d.enabled.value ? 'on' : 'off')),
          h('td', {}, source(key, d.enabled, 'on')),
        );
      }),
      'No destinations configured.',
    );

    form.append(h('h2', {}, 'Which instances are analysed'), analyzeTable, h('h2', {}, 'Where results go'), destTable);
    const anyOverride = [a.bodyParts, a.requireBodyPart, a.studyDescription, a.stations, ...r.destinations.map((d) => d.enabled)].some((f) => f.source === 'dashboard');
    if (edit) {
      form.append(
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'submit', id: 'routing-save' }, 'Save'),
          anyOverride ? h('button', { type: 'button', id: 'routing-revert-all', class: 'danger', onclick: () => act('POST', '/api/routing/revert', {}, () => 'Routing follows the config file again.') }, 'Revert all to config file') : null,
        ),
      );
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const description = form.querySelector('#routing-studyDescription').value.trim();
        const body = {
          analyze: {
            bodyParts: splitList(form.querySelector('#routing-bodyParts').value),
            requireBodyPart: form.querySelector('#routing-requireBodyPart').checked,
            studyDescription: description === '' ? null : description,
            stations: splitList(form.querySelector('#routing-stations').value),
          },
          destinations: Object.fromEntries([...form.querySelectorAll('input.destination-enabled')].map((x) => [x.dataset.destination, x.checked])),
        };
        const done = await act('PUT', '/api/routing', body, (x) => (Object.keys(x.changes).length ? `Saved: ${Object.keys(x.changes).join(', ')}. Applies to the next studies.` : 'Nothing changed.'));
        if (done) delete form.dataset.dirty;
      });
    }
    return [
      h('h1', {}, 'Routing'),
      h(
        'p',
        { class: 'muted' },
        'Which ultrasound instances are analysed and which configured destinations get the results. Values changed here are kept in the database, override the config file (also after a restart) and apply to the next studies; a study already being processed keeps the rules it started with.',
      ),
      edit ? null : h('p', { class: 'muted' }, 'Read only: changing routing needs the admin role.'),
      form,
    ];
  }

  async function usersPage() {
    const own = h(
      'form',
      { id: 'own-password', class: 'inline-form' },
      h('label', {}, 'Current password', h('input', { name: 'current', type: 'password', autocomplete: 'current-password', required: true })),
      h('label', {}, 'New password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 10 })),
      h('button', { type: 'submit' }, 'Change my password'),
    );
    own.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const fd = new FormData(own);
      try {
        await api('POST', '/api/session/password', { current: fd.get('current'), password: fd.get('password') });
        showLogin('Password changed: sign in with the new one.');
      } catch (e) {
        if (!(e instanceof Unauthenticated)) flash(e.message, 'bad');
      }
    });
    const mine = card('My password', h('p', { class: 'muted' }, 'At least 10 characters. Changing it signs you out everywhere.'), own);
    if (!isAdmin()) return [h('h1', {}, 'Account'), mine];

    const r = await api('GET', '/api/users');
    const rows = r.items.map((u) => {
      const role = h('select', { class: 'user-role', 'aria-label': `role of ${u.username}` }, ['admin', 'viewer'].map((x) => h('option', { value: x, selected: x === u.role }, x)));
      role.addEventListener('change', () => act('POST', `/api/users/${encodeURIComponent(u.username)}/role`, { role: role.value }, () => `${u.username} is now ${role.value}.`));
      const reset = h('button', { type: 'button', class: 'small' }, 'Reset password');
      reset.addEventListener('click', () => {
        const password = window.prompt(`New password for ${u.username} (at least 10 characters; their sessions end):`);
        if (password) act('POST', `/api/users/${encodeURIComponent(u.username)}/password`, { password }, () => `Password of ${u.username} changed.`);
      });
      const remove = h('button', { type: 'button', class: 'small danger', disabled: u.username === state.user.username }, 'Remove');
      remove.addEventListener('click', () => {
        if (window.confirm(`Remove the account ${u.username}? Their sessions end.`)) act('POST', `/api/users/${encodeURIComponent(u.username)}/delete`, {}, () => `${u.username} removed.`);
      });
      return h('tr', { dataset: { user: u.username } }, h('td', {}, u.username), h('td', {}, role), h('td', {}, fmtTime(u.lastLoginAt)), h('td', {}, fmtTime(u.createdAt)), h('td', {}, reset, ' ', remove));
    });
    const add = h(
      'form',
      { id: 'add-user', class: 'inline-form' },
      h('label', {}, 'User name', h('input', { name: 'username', required: true, autocomplete: 'off' })),
      h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 10 })),
      h('label', {}, 'Role', h('select', { name: 'role' }, h('option', { value: 'viewer' }, 'viewer'), h('option', { value: 'admin' }, 'admin'))),
      h('button', { type: 'submit' }, 'Add user'),
    );
    add.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const fd = new FormData(add);
      const username = fd.get('username');
      await act('POST', '/api/users', { username, password: fd.get('password'), role: fd.get('role') }, () => `${username} added.`);
    });
    return [
      h('h1', {}, 'Users'),
      h('p', { class: 'muted' }, 'Admins may re-run, re-send, delete and change routing; viewers only look. Every change here is in the audit log; passwords are stored as bcrypt hashes only.'),
      table(['user', 'role', 'last sign-in', 'created', ''], rows),
      card('Add a user', add),
      mine,
    ];
  }

  async function configPage() {
    const r = await api('GET', '/api/config');
    return [
      h('h1', {}, 'Running configuration'),
      h('p', { class: 'muted' }, `As read from the config file; read only; secrets masked. Session secret: ${r.sessionSecret}.`),
      h('p', { class: 'muted' }, 'Routing (routing.analyze, destinations on/off) may be changed on the ', h('a', { href: '#/routing' }, 'Routing'), ' page; what is changed there overrides this.'),
      h('pre', { id: 'config' }, JSON.stringify(r.config, null, 2)),
    ];
  }

  // ------------------------------------------------------------------ router

  const PAGES = {
    overview: overviewPage,
    studies: studiesPage,
    study: (params, rest) => studyPage(decodeURIComponent(rest)),
    failures: failuresPage,
    destinations: destinationsPage,
    model: modelPage,
    audit: auditPage,
    routing: routingPage,
    config: configPage,
    users: usersPage,
  };

  let rendering = 0;

  /** Renders the current route; `quiet` (live refresh) keeps the scroll position and shows no loading state. */
  async function render(quiet) {
    if (!state.user) return;
    const hash = location.hash.replace(/^#\/?/, '') || 'overview';
    const [pathPart, query] = hash.split('?');
    const [name, ...rest] = pathPart.split('/');
    const page = PAGES[name] || overviewPage;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.route === (name === 'study' ? 'studies' : name));
    const scroll = window.scrollY;
    // inputs being typed in, and unsaved changes of a form (the Routing page), survive a live refresh:
    // checked before it starts and again when its data is in, since typing may begin in between
    const typing = 'input:not([type=range]):not([type=checkbox]):not([type=radio]):not([type=button]):not([type=submit]), select, textarea';
    const editing = () => (main.contains(document.activeElement) && document.activeElement.matches(typing)) || !!main.querySelector('form[data-dirty]');
    if (quiet && editing()) return;
    // the latest render that goes ahead wins; one that skipped itself (above) must not cancel one in flight
    const ticket = ++rendering;
    try {
      state.background = !!quiet;
      // who is signed in, read again with every page: another admin may have changed this user's role
      const session = api('GET', '/api/session').catch(() => null);
      const pending = page(new URLSearchParams(query || ''), rest.join('/'));
      state.background = false;
      const content = await pending;
      const me = await session;
      if (ticket !== rendering || !state.user) return;
      if (me && me.user && (me.user.role !== state.user.role || me.user.username !== state.user.username)) {
        // the page was built for the old role (its buttons): show the role and build it again
        state.user = me.user;
        document.getElementById('username').textContent = `${me.user.username} (${me.user.role})`;
        setTimeout(() => render(), 0);
        return;
      }
      if (quiet && editing()) return;
      main.replaceChildren(...[content].flat(Infinity).filter(Boolean));
      if (quiet) window.scrollTo(0, scroll);
      main.dataset.page = name;
      main.dataset.renderedAt = String(Date.now());
    } catch (e) {
      if (e instanceof Unauthenticated || ticket !== rendering) return;
      main.replaceChildren(h('p', { class: 'error' }, e.message));
    }
  }

  window.addEventListener('hashchange', () => render());

  (async () => {
    try {
      const r = await fetch('/api/session', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (r.ok) {
        signedIn(await r.json());
        render();
      } else showLogin();
    } catch {
      showLogin('The gateway does not answer.');
    }
  })();
})();

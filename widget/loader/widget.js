/*! Parley chat widget loader.
 *
 * Embed:  <script src="https://RELAY/widget.js" data-site="SITE_KEY" async></script>
 *   data-site  (required) the site key
 *   data-lang  (optional) "en" | "ko"; default: the browser language (ko* -> Korean, else English)
 *   data-identity (optional) a signed identity token from the site's server (see Parley.identify)
 *
 * Page API, window.Parley (calls made before the chat panel has loaded are queued):
 *   Parley.open()              show the chat panel (loading it first if needed)
 *   Parley.close()             hide it
 *   Parley.toggle()            open or close
 *   Parley.identify(token)     the visitor is signed in: `token` is an HS256 JWT the site's server
 *                              signed with the site's identity secret (PROTOCOL.md §15), or a
 *                              function returning a fresh one (or a promise of one), called on
 *                              every connect. The relay verifies it; this browser then has the
 *                              person's history. Not sent anywhere else.
 *   Parley.identify({name, email})
 *                              unverified details, kept by the panel (they prefill its forms)
 *   Parley.reset()             the site's logout: forgets this browser's chat (token, unsent
 *                              messages, identity) and goes on as a new anonymous visitor
 *   Parley.on('message', cb)   cb(detail) for every new message from an agent or a bot, where
 *   Parley.off('message', cb)  detail = {conversation_id, seq, at, text, author: {role, id?, name?}};
 *                              the same detail is dispatched as window event 'parley:message'
 *
 * Footprint on the page: one <parley-chat data-parley-host> element at the end of <body> (its
 * open shadow root holds everything, styled by constructed stylesheets, so a style-src 'self'
 * CSP is fine) and window.Parley. localStorage ("parley:KEY:*": visitor token, unsent messages,
 * read marker) is written only once the visitor opens the chat or sends; sessionStorage
 * "parley:KEY:entered" keeps when this browsing session reached the site (for "time on site").
 * The launcher is drawn at once; the wasm panel is fetched on the launcher's first hover, focus
 * or click, or right away for a returning visitor (who then gets live messages and unread counts).
 *
 * Co-browse: the co-browse module (/widget/cobrowse.js + cobrowse_bg.wasm) is imported only when
 * the panel says sharing was allowed (or the visitor opens "What was shared"), never before.
 * While sharing it draws an indicator with a Stop button in the same shadow root and keeps a log
 * of what was sent in sessionStorage "parley:cobrowse:CONVERSATION".
 * Proactive greetings: /api/sites/KEY may list rules {id, url, after_seconds, returning?, text}.
 * The first rule whose url pattern (`*` = anything) matches location.pathname, whose `returning`
 * matches (a visitor token is stored) and that this browser has not been shown yet gets a bubble
 * by the launcher after `after_seconds` (text set with textContent). Clicking it opens the chat,
 * and the panel asks the relay to store the rule's text as the bot's first message.
 * Trade-off: "once per visitor" needs memory across visits, so showing a bubble writes
 * localStorage "parley:KEY:greeted" (the shown rule ids, nothing personal) BEFORE the visitor
 * engages — the one exception to "no storage until engaged", and only on sites that configure
 * greetings. sessionStorage would forget on every new tab session (greeting again and again);
 * a cookie would travel to the site's server. If storage is blocked, no bubble is shown at all.
 */
(() => {
  'use strict';
  if (window.Parley) return;
  const me = document.currentScript || document.querySelector('script[data-site]');
  if (!me) return;
  const key = me.getAttribute('data-site') || '';
  let base = location.origin;
  try {
    base = new URL(me.src, location.href).origin;
  } catch (e) {}
  const want = (me.getAttribute('data-lang') || '').toLowerCase();
  const lang = want == 'ko' || want == 'en' ? want : /^ko\b/i.test(navigator.language || '') ? 'ko' : 'en';
  const LABEL = lang == 'ko' ? ['채팅 열기', '채팅 닫기', '읽지 않은 메시지 '] : ['Open chat', 'Close chat', ' unread'];
  const pre = 'parley:' + key + ':';
  const listeners = new Set();
  const queue = [];
  let handle, loading, site, launcher, badge, icons, dead = false;
  // The signed identity, until the panel takes it (not a queued call: it must not load the panel).
  let signed = me.getAttribute('data-identity') || null;
  let ready;
  const siteKnown = new Promise((r) => (ready = r));

  const call = (fn, arg) => {
    if (dead) return;
    if (handle) return handle[fn](arg);
    queue.push([fn, arg]);
    if (fn == 'open' || fn == 'toggle') load();
  };
  window.Parley = Object.freeze({
    open: () => call('open'),
    close: () => call('close'),
    toggle: () => call('toggle'),
    identify: (info) =>
      typeof info == 'string' || typeof info == 'function'
        ? handle
          ? handle.identify(info)
          : (signed = info)
        : call('identify', Object(info)),
    reset: () => {
      signed = null;
      try {
        for (const k of ['token', 'outbox', 'read']) localStorage.removeItem(pre + k);
      } catch (e) {}
      if (handle) handle.reset();
    },
    on: (ev, cb) => ev == 'message' && typeof cb == 'function' && listeners.add(cb),
    off: (ev, cb) => ev == 'message' && listeners.delete(cb),
  });

  try {
    if (!sessionStorage.getItem(pre + 'entered')) sessionStorage.setItem(pre + 'entered', '' + Date.now());
  } catch (e) {}

  const host = document.createElement('parley-chat');
  host.setAttribute('data-parley-host', '');
  const root = host.attachShadow({ mode: 'open' });

  // Callbacks given to the panel (see widget/src/host.rs).
  let unread = 0;
  // The launcher's name says how many messages wait ("Open chat, 2 unread").
  const label = (open) => {
    const n = unread > 99 ? '99+' : unread;
    launcher.setAttribute('aria-label', LABEL[+open] + (unread ? ', ' + (lang == 'ko' ? LABEL[2] + n + '개' : n + LABEL[2]) : ''));
  };
  const onUnread = (n) => {
    unread = n;
    badge.textContent = n > 99 ? '99+' : '' + n;
    badge.hidden = !n;
    label(launcher.getAttribute('aria-expanded') == 'true');
  };
  const onOpen = (open, restoreFocus) => {
    label(open);
    launcher.setAttribute('aria-expanded', '' + open);
    icons[0].toggleAttribute('hidden', open);
    icons[1].toggleAttribute('hidden', !open);
    if (!open && restoreFocus) launcher.focus();
  };
  const onMessage = (detail) => {
    for (const cb of listeners) {
      try {
        cb(detail);
      } catch (e) {
        console.error(e);
      }
    }
    window.dispatchEvent(new CustomEvent('parley:message', { detail }));
  };

  // Co-browse, driven by the panel (see widget/src/host.rs, onCobrowse).
  let cobLoading, session, cobWant;
  const cobrowse = () =>
    cobLoading ||
    (cobLoading = import(base + '/widget/cobrowse.js')
      .then(async (m) => {
        await m.default({ module_or_path: base + '/widget/cobrowse_bg.wasm' });
        return m;
      })
      .catch((e) => {
        cobLoading = null;
        console.error('Parley: could not load co-browse', e);
      }));
  const onCobrowse = (cmd, arg) => {
    if (cmd == 'start') {
      cobWant = arg;
      cobrowse().then((m) => {
        // Stopped (or restarted) while the module was loading: nothing to do here.
        if (!m || session || cobWant !== arg) return;
        session = m.start(root, {
          lang,
          agent: arg.agent,
          conversation: arg.conversation,
          send: (n, data, index, count) => handle.cobrowseSend(n, data, index, count),
          stop: () => {
            session = cobWant = null;
            handle.cobrowseStop();
          },
        });
      });
    } else if (cmd == 'stop') {
      cobWant = null;
      if (session) session.stop();
      session = null;
    } else if (cmd == 'log') {
      cobrowse().then((m) => m && m.showLog(root, { lang, conversation: arg.conversation }));
    } else if (session) {
      if (cmd == 'highlight') session.highlight(arg);
      else if (cmd == 'resync') session.resync();
    }
  };

  const load = () =>
    loading ||
    (loading = siteKnown
      .then(async () => {
        const m = await import(base + '/widget/panel.js');
        await m.default({ module_or_path: base + '/widget/panel_bg.wasm' });
        handle = m.mount(root, {
          base,
          site: key,
          name: site.name,
          lang,
          agentsOnline: site.agents_online,
          onUnread,
          onOpen,
          onMessage,
          onCobrowse,
        });
        if (signed) handle.identify(signed);
        for (const [fn, arg] of queue.splice(0)) handle[fn](arg);
      })
      .catch((e) => {
        loading = null;
        console.error('Parley: could not load the chat panel', e);
      }));

  const NS = 'http://www.w3.org/2000/svg';
  const svg = (d) => {
    const s = document.createElementNS(NS, 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS(NS, 'path');
    p.setAttribute('d', d);
    s.append(p);
    return s;
  };

  const draw = (info) => {
    info = info || {};
    const color = /^#([0-9a-f]{3}){1,2}$/i.test(info.color) ? info.color : '#2563eb';
    site = { name: typeof info.name == 'string' && info.name ? info.name : 'Chat', agents_online: info.agents_online };
    // Dark or light text on the accent, by its luminance.
    const hex = color.length == 4 ? color.replace(/\w/g, '$&$&') : color;
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.substr(i, 2), 16));
    const on = 0.299 * r + 0.587 * g + 0.114 * b > 170 ? '#111' : '#fff';
    // A page zoomed with CSS `zoom` would scale the widget off screen: undo it on the host.
    const zoom = 1 / (document.body.currentCSSZoom || 1);
    const sheet = new CSSStyleSheet();
    // `all: initial !important` on :host beats any page rule (important declarations of the inner
    // context win), so `* { all: unset !important }` and friends cannot touch the widget.
    sheet.replaceSync(
      `:host{all:initial!important;display:block!important;zoom:${zoom}!important;--parley-accent:${color}!important;--parley-on-accent:${on}!important}` +
        '[hidden]{display:none!important}' +
        '.parley-launcher{all:initial;box-sizing:border-box;position:fixed;right:20px;bottom:20px;z-index:2147483647;width:58px;height:58px;border-radius:50%;' +
        'background:var(--parley-accent);color:var(--parley-on-accent);cursor:pointer;display:flex;align-items:center;justify-content:center;' +
        'box-shadow:0 4px 16px rgba(0,0,0,.25);transition:transform .15s}' +
        '.parley-launcher:hover{transform:scale(1.06)}' +
        '@media (prefers-reduced-motion:reduce){.parley-launcher{transition:none}.parley-launcher:hover{transform:none}}' +
        '.parley-launcher:focus-visible{outline:3px solid #1a73e8;outline-offset:3px}' +
        '.parley-launcher svg{width:28px;height:28px;fill:currentColor}' +
        '.parley-bubble{all:initial;box-sizing:border-box;position:fixed;right:20px;bottom:90px;z-index:2147483647;max-width:260px;padding:10px 14px;' +
        'border-radius:12px;background:#fff;color:#111;font:14px/1.4 system-ui,sans-serif;box-shadow:0 4px 16px rgba(0,0,0,.25);cursor:pointer;white-space:pre-wrap}' +
        '.parley-badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 6px;box-sizing:border-box;border-radius:10px;' +
        'background:#e5322d;color:#fff;font:700 12px/20px system-ui,sans-serif;text-align:center}'
    );
    root.adoptedStyleSheets = [sheet];
    launcher = document.createElement('button');
    launcher.className = 'parley-launcher';
    launcher.type = 'button';
    launcher.setAttribute('aria-label', LABEL[0]);
    launcher.setAttribute('aria-expanded', 'false');
    launcher.setAttribute('aria-haspopup', 'dialog');
    icons = [
      svg('M6 4h12a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H9l-5 4V6a2 2 0 0 1 2-2z'),
      svg('M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z'),
    ];
    icons[1].toggleAttribute('hidden', true);
    badge = document.createElement('span');
    badge.className = 'parley-badge';
    badge.hidden = true;
    launcher.append(icons[0], icons[1], badge);
    launcher.addEventListener('pointerenter', load);
    launcher.addEventListener('focus', load);
    launcher.addEventListener('click', () => (handle ? handle.toggle() : queue.some((q) => q[0] == 'open') || call('open')));
    launcher.addEventListener('keydown', (e) => e.key == 'Escape' && handle && handle.isOpen() && handle.close());
    root.append(launcher);
    document.body.append(host);
    // In the top layer the widget ignores the page's transforms, filters, `contain` and
    // z-indexes (a `transform` on <html> or <body> would otherwise pin `position: fixed` to them).
    try {
      host.popover = 'manual';
      host.showPopover();
    } catch (e) {}
    ready();
    let returning = false;
    try {
      returning = !!(localStorage.getItem(pre + 'token') || localStorage.getItem(pre + 'outbox'));
    } catch (e) {}
    if (returning || queue.length) load();
    greet(info.greetings, returning);
  };

  // Proactive greetings (see the header): at most one bubble per page view.
  const greet = (rules, returning) => {
    if (!Array.isArray(rules)) return;
    let shown;
    try {
      shown = JSON.parse(localStorage.getItem(pre + 'greeted') || '[]');
    } catch (e) {
      return;
    }
    const esc = (t) => t.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    const g = rules.find(
      (g) =>
        g && typeof g.id == 'string' && typeof g.text == 'string' && !shown.includes(g.id) &&
        (typeof g.returning != 'boolean' || g.returning == returning) &&
        new RegExp('^' + String(g.url || '*').split('*').map(esc).join('.*') + '$').test(location.pathname)
    );
    if (!g) return;
    setTimeout(() => {
      if (handle && handle.isOpen()) return;
      try {
        localStorage.setItem(pre + 'greeted', JSON.stringify(shown.concat(g.id)));
      } catch (e) {
        return;
      }
      const b = document.createElement('button');
      b.className = 'parley-bubble';
      b.type = 'button';
      b.textContent = g.text;
      b.addEventListener('click', () => {
        b.remove();
        call('greet', g.id);
        call('open');
      });
      launcher.addEventListener('click', () => b.remove());
      root.append(b);
    }, (g.after_seconds >>> 0) * 1000);
  };

  const start = () =>
    fetch(base + '/api/sites/' + encodeURIComponent(key), { credentials: 'omit' })
      .then(
        (r) => {
          if (r.ok) return r.json();
          // The relay is up but failing: chat may recover, so draw with defaults like when it is down.
          if (r.status >= 500) return {};
          throw r.status == 404
            ? `unknown site key "${key}": check data-site on the widget.js script tag (the relay answered 404 unknown_site)`
            : `the relay refused site "${key}" (HTTP ${r.status})`;
        },
        // Network failure (relay down): draw anyway; the panel keeps retrying its socket.
        () => ({})
      )
      .then(draw, (why) => {
        dead = true;
        queue.length = 0;
        console.error('Parley: ' + why);
      });

  if (document.body) start();
  else document.addEventListener('DOMContentLoaded', start);
})();

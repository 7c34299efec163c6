// Parley console boot: loads the wasm app. A file, not an inline script, so the console can be
// served under a Content-Security-Policy without 'unsafe-inline'.
import init from '/console/console.js';
init({ module_or_path: '/console/console_bg.wasm' });

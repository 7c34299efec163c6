//! The panel's stylesheet, adopted into the shadow root as a constructed stylesheet: it is not
//! subject to the host page's `style-src` CSP, and page rules cannot reach inside the shadow.
//! The accent colour comes from the loader as the custom property `--parley-accent` on `:host`.

use wasm_bindgen::JsValue;
use web_sys::{CssStyleSheet, ShadowRoot};

const CSS: &str = r#"
[hidden]{display:none!important}
.parley-panel{position:fixed;right:20px;bottom:92px;z-index:2147483647;box-sizing:border-box;
display:flex;flex-direction:column;width:370px;max-width:calc(100vw - 24px);height:560px;
max-height:calc(100vh - 120px);background:#fff;color:#1f2328;border-radius:14px;overflow:hidden;
box-shadow:0 12px 40px rgba(0,0,0,.22);font:14px/1.45 system-ui,-apple-system,"Segoe UI",
"Apple SD Gothic Neo","Malgun Gothic",sans-serif;text-align:left}
.parley-panel *{box-sizing:border-box}
@media (max-width:480px){.parley-panel{right:0;bottom:auto;top:var(--parley-vv-top,0);width:100vw;
max-width:100vw;height:var(--parley-vv-h,100%);max-height:none;border-radius:0}}
.parley-head{display:flex;align-items:center;gap:8px;padding:12px 14px;background:var(--parley-accent);
color:var(--parley-on-accent)}
.parley-heading{flex:1;min-width:0}
.parley-title{margin:0;font-size:16px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.parley-conn{display:flex;align-items:center;gap:6px;font-size:12px;opacity:.9}
.parley-conn::before{content:"";width:8px;height:8px;border-radius:50%;background:#f5a623}
.parley-conn[data-state=online]::before{background:#3ccf6e}
.parley-conn[data-state=offline]::before{background:#9aa0a6}
.parley-close,.parley-save{all:unset;cursor:pointer;width:44px;height:44px;border-radius:8px;text-align:center;
font-size:22px;line-height:44px;color:inherit}
.parley-close:hover,.parley-save:hover{background:rgba(255,255,255,.18)}
.parley-close:focus-visible,.parley-save:focus-visible,.parley-send:focus-visible,.parley-messages:focus-visible{outline:2px solid #1a73e8;outline-offset:2px}
.parley-notice,.parley-queue{margin:0;padding:10px 14px;background:#fff8e1;color:#5d4300;font-size:13px;border-bottom:1px solid #f1e3b0}
.parley-messages{flex:1;margin:0;padding:12px;list-style:none;overflow-y:auto;overscroll-behavior:contain;
background:#f6f7f9;display:flex;flex-direction:column;gap:8px}
.parley-msg[data-cont]{margin-top:-5px}
.parley-msg{max-width:82%;align-self:flex-start}
.parley-msg[data-role=visitor]{align-self:flex-end;text-align:right}
.parley-text{display:inline-block;text-align:left;padding:8px 12px;border-radius:14px;background:#fff;
border:1px solid #e3e5e8;white-space:pre-wrap;word-break:keep-all;overflow-wrap:anywhere}
.parley-msg[data-role=visitor] .parley-text{background:var(--parley-accent);color:var(--parley-on-accent);border-color:transparent}
.parley-meta,.parley-note{font-size:11px;color:#6b7280;margin:0 4px 2px}
.parley-note{margin:2px 4px 0}
.parley-pending .parley-text{opacity:.65}
.parley-failed .parley-text{background:#fdecea!important;color:#8a1c12!important;border-color:#f5c2bd!important}
.parley-failed .parley-note{color:#b3261e}
.parley-sys{align-self:center;max-width:100%;text-align:center}
.parley-sys .parley-text{background:none;border:0;padding:2px 8px;color:#6b7280;font-size:12px}
.parley-link{display:inline-block;margin:4px 4px 0;font-size:13px;color:#1a56c4;text-decoration:underline}
.parley-quicks{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}
.parley-quick{font:inherit;font-size:14px;cursor:pointer;min-height:44px;min-width:44px;padding:8px 14px;
border-radius:22px;border:1px solid var(--parley-accent);background:#fff;color:#1f2328}
.parley-quick:hover{background:#eef2f7}
.parley-quick:focus-visible,.parley-link:focus-visible{outline:2px solid #1a73e8;outline-offset:2px}
.parley-sys[data-kind=handoff] .parley-text{color:#5d4300;background:#fff8e1;border-radius:10px}
.parley-sys .parley-quicks{justify-content:center}
.parley-typing{margin:0;padding:4px 14px;font-size:12px;font-style:italic;color:#6b7280;background:#f6f7f9}
.parley-composer{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-end;padding:10px;border-top:1px solid #e3e5e8;background:#fff}
.parley-composer textarea{flex:1;resize:none;min-height:44px;max-height:120px;padding:9px 11px;
border:1px solid #d0d4d9;border-radius:10px;font:inherit;font-size:16px;color:inherit;background:#fff}
.parley-email{flex:1 1 100%;padding:8px 11px;border:1px solid #d0d4d9;border-radius:10px;font:inherit;font-size:16px}
.parley-composer textarea:focus{outline:2px solid var(--parley-accent);outline-offset:0;border-color:transparent}
.parley-send{all:unset;cursor:pointer;display:flex;align-items:center;justify-content:center;
width:44px;height:44px;border-radius:10px;background:var(--parley-accent);color:var(--parley-on-accent)}
.parley-rate{padding:8px 14px;border-top:1px solid #e3e5e8}
.parley-rate p{margin:0 0 6px}
.parley-rate textarea{display:block;width:100%;margin:6px 0;font:inherit}
.parley-score{margin-right:10px}
@media (prefers-color-scheme:dark){.parley-panel{background:#1e1f22;color:#e8e8e8}
.parley-messages,.parley-typing{background:#141517}
.parley-text{background:#2a2c30;border-color:#3a3d42}
.parley-composer,.parley-rate{background:#1e1f22;border-color:#3a3d42}
.parley-composer textarea,.parley-email{background:#141517;color:#e8e8e8;border-color:#54585e}
.parley-quick{background:#2a2c30;color:#e8e8e8}.parley-quick:hover{background:#34373c}
.parley-meta,.parley-note,.parley-sys .parley-text,.parley-typing{color:#a8acb3}
.parley-link{color:#8ab4f8}}
.parley-sr{position:fixed;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap}
"#;

/// Appends the panel's sheet to the shadow root's adopted stylesheets (the loader's stay first).
pub fn adopt(root: &ShadowRoot) -> Result<(), JsValue> {
    let sheet = CssStyleSheet::new()?;
    sheet.replace_sync(CSS)?;
    let sheets = js_sys::Array::from(&root.adopted_style_sheets());
    sheets.push(&sheet);
    root.set_adopted_style_sheets(&sheets);
    Ok(())
}

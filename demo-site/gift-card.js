// <gift-card-field>: the checkout's gift-card input built as a web component with an open
// shadow root, the way design systems build fields. Co-browse masks it like any field: the
// privacy rules hold inside shadow roots (README "Co-browse privacy markers").
class GiftCardField extends HTMLElement {
  connectedCallback() {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: 'open' });
    const style = document.createElement('style');
    style.textContent =
      ':host{display:block;margin:0 0 14px}' +
      'label{display:block;font-weight:600;margin-bottom:4px}' +
      'input{width:100%;box-sizing:border-box;padding:8px 10px;border:1px solid #cbd5e1;' +
      'border-radius:6px;font:inherit}' +
      '.hint{color:#64748b;font-size:.9em;margin:4px 0 0}';
    const label = document.createElement('label');
    label.htmlFor = 'gift-card';
    label.textContent = 'Gift card number';
    const input = document.createElement('input');
    input.id = 'gift-card';
    input.type = 'text';
    input.autocomplete = 'off';
    input.placeholder = 'XXXX-XXXX-XXXX';
    const hint = document.createElement('p');
    hint.className = 'hint';
    hint.textContent = 'The card balance is taken off the total.';
    root.append(style, label, input, hint);
  }
}
customElements.define('gift-card-field', GiftCardField);

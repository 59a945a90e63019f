// TwinLens console: keyboard-first review, the heatmap overlay, drag-and-drop upload.
// Loaded from /console/static (the CSP allows no inline script); everything works
// without it through the forms, which is also what these keys press.
"use strict";

(function () {
  const typing = (el) => el && (el.isContentEditable || /^(TEXTAREA|SELECT)$/.test(el.tagName) ||
    (el.tagName === "INPUT" && !/^(radio|checkbox|range|button|submit)$/.test(el.type)));

  function press(id) {
    const button = document.getElementById(id);
    if (!button || button.disabled) return false;
    const form = button.form;
    if (form && form.requestSubmit) form.requestSubmit(button); else button.click();
    return true;
  }

  function pickLabel(n) {
    const primary = document.querySelector("fieldset[data-primary=true]");
    if (!primary) return false;
    const inputs = primary.querySelectorAll("input[type=radio], input[type=checkbox]");
    const input = inputs[n - 1];
    if (!input) return false;
    if (input.type === "radio") input.checked = true; else input.checked = !input.checked;
    input.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  function toggleHelp() {
    const help = document.getElementById("help");
    if (!help) return false;
    if (help.open) help.close(); else help.showModal();
    return true;
  }

  function toggleHeatmap() {
    const toggle = document.getElementById("heatmap-toggle");
    if (!toggle) return false;
    toggle.checked = !toggle.checked;
    toggle.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const help = document.getElementById("help");
    if (help && help.open && event.key !== "?") return; // the dialog handles Esc itself
    let handled = false;
    if (/^[1-9]$/.test(event.key)) handled = pickLabel(Number(event.key));
    else if (event.key === "a") handled = press("accept");
    else if (event.key === "x") handled = press("reject");
    else if (event.key === "s") handled = press("skip");
    else if (event.key === "u") handled = press("undo");
    else if (event.key === "h") handled = toggleHeatmap();
    else if (event.key === "?") handled = toggleHelp();
    if (handled) event.preventDefault();
  }

  function heatmapControls() {
    const heatmap = document.getElementById("heatmap");
    const toggle = document.getElementById("heatmap-toggle");
    const opacity = document.getElementById("heatmap-opacity");
    if (!heatmap) return;
    if (toggle) toggle.addEventListener("change", () => heatmap.classList.toggle("off", !toggle.checked));
    if (opacity) {
      const apply = () => { heatmap.style.opacity = String(Number(opacity.value) / 100); };
      opacity.addEventListener("input", apply);
      apply();
    }
  }

  function dropzone() {
    const zone = document.getElementById("dropzone");
    const input = document.getElementById("image");
    const preview = document.getElementById("preview");
    if (!zone || !input) return;
    const show = () => {
      const file = input.files && input.files[0];
      if (!preview) return;
      if (file && file.type.startsWith("image/")) { preview.src = URL.createObjectURL(file); preview.hidden = false; }
      else { preview.hidden = true; }
    };
    ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; show(); }
    });
    input.addEventListener("change", show);
  }

  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit=true]").forEach((select) =>
      select.addEventListener("change", () => select.form.submit()));
  }

  function refreshWhilePending() {
    const pending = document.querySelector("[data-refresh]");
    if (pending) setTimeout(() => window.location.reload(), Number(pending.dataset.refresh) || 1500);
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.body.dataset.page === "case") {
      document.addEventListener("keydown", onKey);
      const helpButton = document.getElementById("help-button");
      if (helpButton) helpButton.addEventListener("click", toggleHelp);
    }
    heatmapControls();
    dropzone();
    autosubmit();
    refreshWhilePending();
  });
})();

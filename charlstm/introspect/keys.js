// The keys of the pages that write with a model: Ctrl+Enter (⌘+Enter on a
// Mac) presses `generate` from anywhere on the page, as a click would (not
// while it is disabled), and Escape presses `stop`. A key held down does not
// start run after run, and an Escape that ends an input method's composition
// is the input method's.
function pressWithKeys(generate, stop) {
  document.addEventListener("keydown", (e) => {
    if (e.repeat || e.isComposing) return;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate.click(); }
    else if (e.key === "Escape") stop.click();
  });
}

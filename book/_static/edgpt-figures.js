// Diagrams and output figures that stay readable on a phone (issue 14).
//
// Mermaid diagrams: sphinxcontrib-mermaid stretches every SVG to the width of
// the column, so a wide flowchart shrank to 3-5 px text on a 390 px phone and
// to 7-11 px on a desktop, while a narrow one was blown up to 34 px.  Here each
// diagram is shown at its natural size (mermaid's 16 px text), scaled down to
// fit the column only while its text stays at least MIN_DIAGRAM_FONT px; a
// diagram still wider than that scrolls sideways inside its own box.  A
// left-to-right flowchart that would need that scrolling is laid out top to
// bottom instead when that fits better (edgpt-mermaid.mjs, loaded from here
// on pages with a diagram), so most diagrams fit a phone without scrolling.
//
// Output figures (matplotlib PNGs): on a narrow column a wide figure is not
// shrunk below MIN_FIGURE_SCALE of its natural size (tick labels of about
// 10 px); it scrolls sideways instead.  Every figure links to its PNG, so a
// tap or click opens it at full size.  On a desktop they fit the column as before.
(() => {
  "use strict";

  const MIN_DIAGRAM_FONT = 12;   // px, smallest text a diagram is scaled down to
  const MERMAID_FONT = 16;       // px, mermaid's default fontSize
  const MIN_FIGURE_SCALE = 0.75; // of a figure's natural width, on narrow columns
  const NARROW_COLUMN = 640;     // px, a column narrower than this is a phone's

  const isNarrow = (el) => el.clientWidth > 0 && el.clientWidth < NARROW_COLUMN;

  const contentWidth = (el) => {
    const style = getComputedStyle(el);
    return el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  };

  // A short line under a box that is wider than the screen.
  const hintFor = (box, text) => {
    let hint = box.nextElementSibling;
    if (!hint || !hint.classList.contains("edgpt-scroll-hint")) {
      hint = document.createElement("p");
      hint.className = "edgpt-scroll-hint";
      hint.setAttribute("aria-hidden", "true");
      hint.textContent = text;
      box.after(hint);
    }
    return hint;
  };

  const markOverflow = (box, overflows, text) => {
    box.classList.toggle("edgpt-overflows", overflows);
    if (overflows) hintFor(box, text);
  };

  // ------------------------------------------------------------- diagrams

  // The module that picks each flowchart's direction before mermaid renders
  // (on window "load"; a script inserted now delays that event until it ran).
  const here = document.currentScript && document.currentScript.src;
  const loadLayoutChooser = () => {
    if (!here) return;
    const script = document.createElement("script");
    script.type = "module";
    script.src = new URL("edgpt-mermaid.mjs", here).href;
    document.head.appendChild(script);
  };

  const sizeDiagram = (pre) => {
    const svg = pre.querySelector(":scope > svg");
    if (!svg || !svg.viewBox || !svg.viewBox.baseVal || !svg.viewBox.baseVal.width) return;
    const natural = svg.viewBox.baseVal.width;
    const column = contentWidth(pre);
    const floor = MIN_DIAGRAM_FONT / MERMAID_FONT;
    const scale = Math.min(1, Math.max(column / natural, floor));
    svg.style.width = `${Math.round(natural * scale)}px`;
    svg.style.height = "auto";
    pre.dataset.edgptScale = scale.toFixed(3);
    markOverflow(pre, natural * scale > column + 1, "Scroll sideways to see the whole diagram.");
  };

  const watchDiagrams = () => {
    const pres = [...document.querySelectorAll("pre.mermaid")];
    if (pres.length) loadLayoutChooser();
    for (const pre of pres) {
      sizeDiagram(pre);
      // mermaid replaces the text with an SVG, possibly later (lazy rendering,
      // re-rendering when the colour theme changes): size every new SVG.
      new MutationObserver(() => sizeDiagram(pre)).observe(pre, { childList: true });
    }
    return pres;
  };

  // ------------------------------------------------------------- figures

  const sizeFigure = (box) => {
    const img = box.querySelector("img");
    if (!img || !img.naturalWidth) return;
    const column = box.clientWidth;
    if (isNarrow(box)) {
      img.style.minWidth = `${Math.round(img.naturalWidth * MIN_FIGURE_SCALE)}px`;
    } else {
      img.style.minWidth = "";
    }
    markOverflow(box, img.getBoundingClientRect().width > column + 1,
                 "Scroll sideways, or tap the figure to open it at full size.");
  };

  const wrapFigures = () => {
    const boxes = [];
    for (const img of document.querySelectorAll(".cell_output > img, .cell_output .output > img")) {
      if (img.closest(".edgpt-figure")) continue;
      const box = document.createElement("div");
      box.className = "edgpt-figure";
      const link = document.createElement("a");
      link.className = "edgpt-figure-link";
      link.href = img.currentSrc || img.src;
      link.title = "Open the figure at full size";
      img.before(box);
      link.appendChild(img);
      box.appendChild(link);
      boxes.push(box);
      if (img.complete) sizeFigure(box);
      else img.addEventListener("load", () => sizeFigure(box), { once: true });
    }
    return boxes;
  };

  const start = () => {
    const pres = watchDiagrams();
    const boxes = wrapFigures();
    let pending = false;
    window.addEventListener("resize", () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        pres.forEach(sizeDiagram);
        boxes.forEach(sizeFigure);
      });
    });
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

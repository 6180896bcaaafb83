// Loaded by edgpt-figures.js on pages that have a mermaid diagram, before
// sphinxcontrib-mermaid renders them on window "load".
//
// A left-to-right flowchart wider than its column would need sideways
// scrolling even at the smallest text edgpt-figures.js allows (12 px). For
// such a diagram, this renders the same graph top to bottom off screen and,
// when that fits the column better, shows it that way (phones mostly; on a
// desktop only the long chains). A diagram that fits is left as written.
import mermaid from "./mermaid/mermaid.esm.min.mjs";

const MIN_SCALE = 12 / 16; // the smallest text, over mermaid's 16 px
const LR = /^(\s*(?:flowchart|graph)\s+)(?:LR|RL)\b/;
const SUBGRAPH_LR = /^(\s*direction\s+)(?:LR|RL)\b/gm;

const dedent = (text) => {
  const lines = text.replace(/^\s*\n/, "").split("\n");
  const indents = lines.filter((l) => l.trim()).map((l) => l.match(/^\s*/)[0].length);
  const cut = indents.length ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(cut)).join("\n").trim();
};

const topDown = (text) => text.replace(LR, "$1TB").replace(SUBGRAPH_LR, "$1TB");

let probes = 0;
const naturalWidth = async (text) => {
  const { svg } = await mermaid.render(`edgpt-probe-${probes++}`, text);
  const box = svg.match(/viewBox="\s*[-\d.e]+[\s,]+[-\d.e]+[\s,]+([\d.e]+)/);
  return box ? parseFloat(box[1]) : NaN;
};

const columnWidth = (pre) => {
  const style = getComputedStyle(pre);
  return pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
};

// Sideways scrolling a diagram of natural width `width` needs in `column`.
const overflow = (width, column) => Math.max(0, width * MIN_SCALE - column);

const chooseLayout = async (pre) => {
  if (pre.dataset.edgptLayout || pre.getAttribute("data-processed") === "true") return;
  pre.dataset.edgptLayout = "as written";
  const text = dedent(pre.textContent);
  const flipped = topDown(text);
  const column = columnWidth(pre);
  if (flipped === text || !(column > 0)) return;
  try {
    const asWritten = overflow(await naturalWidth(text), column);
    if (!(asWritten > 0)) return;
    if (overflow(await naturalWidth(flipped), column) < asWritten) {
      pre.textContent = flipped;
      pre.dataset.edgptLayout = "top to bottom";
      // sphinxcontrib-mermaid re-renders from this copy when the colour theme changes.
      pre.setAttribute("data-original-code", pre.innerHTML);
    }
  } catch (error) {
    // A diagram that does not parse is left to mermaid, which reports it.
    console.warn("edgpt: could not measure a diagram", error);
  }
};

const run = mermaid.run.bind(mermaid);
mermaid.run = async (options = {}) => {
  const nodes = options.nodes
    ? [...options.nodes]
    : [...document.querySelectorAll(options.querySelector || ".mermaid")];
  for (const pre of nodes) await chooseLayout(pre);
  return run(options);
};
document.documentElement.dataset.edgptMermaid = "ready";

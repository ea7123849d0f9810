// A small Markdown renderer for answers: every character of the model's text is escaped
// first, and only the markup made here is HTML. Links keep http(s) and mailto only.
// Streaming-friendly: an unclosed code fence renders as code up to the end.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function inline(text) {
  // Code spans first, so nothing inside them is read as markup.
  return text.split(/(`[^`]+`)/).map((part) => {
    if (part.length > 1 && part.startsWith("`") && part.endsWith("`")) {
      return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
    }
    let html = escapeHtml(part);
    html = html.replace(/\[([^\]]+)\]\(([^()\s]+)\)/g, (whole, label, url) =>
      /^(https?:|mailto:)/i.test(url)
        ? `<a href="${url}" rel="noopener noreferrer" target="_blank">${label}</a>`
        : label);
    html = html.replace(/\*\*(?=\S)(.+?)\*\*/g, "<strong>$1</strong>");
    html = html.replace(/__(?=\S)(.+?)__/g, "<strong>$1</strong>");
    html = html.replace(/(^|[^*\w])\*(?=\S)([^*]+?)\*(?!\w)/g, "$1<em>$2</em>");
    html = html.replace(/(^|[^_\w])_(?=\S)([^_]+?)_(?!\w)/g, "$1<em>$2</em>");
    return html;
  }).join("");
}

const LIST_ITEM = /^\s*([-*+]|\d+[.)])\s+(.*)$/;

/** HTML for `text`; safe to assign to innerHTML. */
export function renderMarkdown(text) {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+#.-]*)/);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i += 1; // the closing fence
      const lang = fence[2] ? ` data-lang="${escapeHtml(fence[2])}"` : "";
      out.push(`<pre${lang}><code>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      const level = Math.min(heading[1].length + 2, 6); // inside a message: h3 and below
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }
    const item = line.match(LIST_ITEM);
    if (item) {
      const tag = /\d/.test(item[1]) ? "ol" : "ul";
      const items = [];
      while (i < lines.length && LIST_ITEM.test(lines[i])) {
        items.push(`<li>${inline(lines[i].match(LIST_ITEM)[2])}</li>`);
        i += 1;
      }
      out.push(`<${tag}>${items.join("")}</${tag}>`);
      continue;
    }
    if (line.startsWith(">")) {
      const quoted = [];
      while (i < lines.length && lines[i].startsWith(">")) {
        quoted.push(lines[i].replace(/^>\s?/, ""));
        i += 1;
      }
      out.push(`<blockquote>${renderMarkdown(quoted.join("\n"))}</blockquote>`);
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !LIST_ITEM.test(lines[i])
           && !/^\s*(```|~~~|#{1,6}\s|>)/.test(lines[i])) {
      para.push(inline(lines[i]));
      i += 1;
    }
    out.push(`<p>${para.join("<br>")}</p>`);
  }
  return out.join("");
}

// Embeddings and rerank: order a handful of documents for a query, with /v1/rerank's scores
// (rerank models) or the cosine similarity of /v1/embeddings vectors (embeddings models).

import { $, apiJson, el, showError } from "./api.js";

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / (Math.sqrt(na * nb) || 1);
}

async function byRerank(model, query, documents) {
  const reply = await apiJson("/v1/rerank", { json: { model, query, documents } });
  return { tokens: reply.usage?.total_tokens,
    results: reply.results.map((r) => ({ index: r.index, score: r.relevance_score })) };
}

async function byEmbeddings(model, query, documents) {
  const reply = await apiJson("/v1/embeddings", { json: { model, input: [query, ...documents] } });
  const vectors = reply.data.sort((a, b) => a.index - b.index).map((d) => d.embedding);
  const results = documents.map((_, i) => ({ index: i, score: cosine(vectors[0], vectors[i + 1]) }));
  results.sort((a, b) => b.score - a.score);
  return { tokens: reply.usage?.total_tokens, results, dimensions: vectors[0].length };
}

export function initRank(served) {
  const kinds = {};
  served.onChange(() => {
    const models = [...served.of("rerank"), ...served.of("embeddings")];
    for (const m of models) kinds[m.id] = m.capability;
    const select = $("rank-model");
    const keep = select.value;
    select.replaceChildren(...models.map((m) =>
      new Option(`${m.id} (${m.capability === "rerank" ? "rerank" : "embeddings, cosine"})`, m.id)));
    if (models.some((m) => m.id === keep)) select.value = keep;
  });

  $("rank-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const model = $("rank-model").value;
    const query = $("rank-query").value.trim();
    const documents = $("rank-docs").value.split("\n").map((d) => d.trim()).filter(Boolean);
    showError($("rank-error"), null);
    $("rank-send").disabled = true;
    const started = performance.now();
    try {
      const rank = kinds[model] === "rerank" ? byRerank : byEmbeddings;
      const { results, tokens, dimensions } = await rank(model, query, documents);
      const top = Math.max(...results.map((r) => Math.abs(r.score)), 1e-9);
      $("rank-results").replaceChildren(...results.map((r) => {
        const bar = el("meter", { min: "0", max: "1", value: String(Math.max(0, r.score) / top),
          "aria-hidden": "true" });
        return el("li", {}, el("span", { class: "score", text: r.score.toFixed(4) }), bar,
          el("span", { class: "doc", text: documents[r.index] }));
      }));
      $("rank-stats").textContent = [`${((performance.now() - started) / 1000).toFixed(2)} s`,
        tokens && `${tokens} tokens`, dimensions && `${dimensions} dimensions`]
        .filter(Boolean).join(" · ");
    } catch (error) {
      showError($("rank-error"), error);
    } finally {
      $("rank-send").disabled = false;
    }
  });
  return {};
}

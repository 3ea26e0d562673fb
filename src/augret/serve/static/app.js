// augret search page: no framework, no build step, no third-party code.
// Untrusted strings (query text, item texts, errors) are only ever set as textContent.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const drop = $("drop");
  const fileInput = $("image");
  const preview = $("preview");
  const hint = $("drop-hint");
  const clearBtn = $("clear-image");
  const results = $("results");
  const errorBox = $("error");
  const busy = $("busy");
  const submit = $("submit");
  let imageFile = null;
  let authRequired = false;
  let objectUrls = [];

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function apiHeaders() {
    const key = $("api-key").value.trim();
    return key ? { "X-API-Key": key } : {};
  }

  function setImage(file) {
    if (preview.src) URL.revokeObjectURL(preview.src);
    imageFile = file || null;
    if (imageFile) {
      preview.src = URL.createObjectURL(imageFile);
      preview.hidden = false;
      hint.hidden = true;
      clearBtn.hidden = false;
    } else {
      preview.removeAttribute("src");
      preview.hidden = true;
      hint.hidden = false;
      clearBtn.hidden = true;
      fileInput.value = "";
    }
  }

  drop.addEventListener("click", (e) => {
    if (e.target !== clearBtn) fileInput.click();
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
  });
  fileInput.addEventListener("change", () => setImage(fileInput.files[0]));
  clearBtn.addEventListener("click", (e) => { e.stopPropagation(); setImage(null); });
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => {
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) setImage(file);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])]
      .find((i) => i.type.startsWith("image/"));
    if (item) setImage(item.getAsFile());
  });

  async function loadInfo() {
    try {
      const r = await fetch("/healthz");
      const info = await r.json();
      authRequired = Boolean(info.auth);
      $("key-row").hidden = !authRequired;
      const k = $("k");
      k.max = info.max_k;
      k.value = info.default_k;
      const task = $("task");
      for (const name of info.tasks || []) {
        const opt = document.createElement("option");
        opt.value = name;
        opt.textContent = name;
        task.appendChild(opt);
      }
      const parts = [`${info.retriever} retrieval`, `pool ${info.pool}`,
        `${Number(info.items).toLocaleString()} items`];
      if (info.encoder) parts.push(`encoder ${info.encoder}`);
      parts.push(info.enhancer ? `query enhancement: ${info.enhancer.model}`
        : "no query enhancement");
      $("index-info").textContent = parts.join(" · ");
    } catch (err) {
      $("index-info").textContent = "the service did not answer /healthz";
    }
  }

  function thumbnail(hit) {
    const box = document.createElement("div");
    box.className = "thumb";
    if (!hit.image_url) {
      box.classList.add("textonly");
      box.textContent = "¶";
      return box;
    }
    const img = document.createElement("img");
    img.alt = `image of ${hit.id}`;
    img.loading = "lazy";
    if (authRequired) {
      fetch(hit.image_url, { headers: apiHeaders() })
        .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
        .then((blob) => {
          const url = URL.createObjectURL(blob);
          objectUrls.push(url);
          img.src = url;
        })
        .catch(() => { img.alt = "image unavailable"; });
    } else {
      img.src = hit.image_url;
    }
    box.appendChild(img);
    return box;
  }

  function card(hit) {
    const fig = document.createElement("figure");
    fig.className = "card";
    fig.dataset.id = hit.id;
    fig.appendChild(thumbnail(hit));
    const cap = document.createElement("figcaption");
    const head = document.createElement("div");
    head.className = "head";
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `#${hit.rank}`;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = Number(hit.score).toFixed(4);
    score.title = "score";
    head.append(rank, score);
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = `${hit.id} · ${hit.modality || "?"}`;
    cap.append(head, id);
    if (hit.text) {
      const text = document.createElement("p");
      text.className = "text";
      text.textContent = hit.text;
      text.title = hit.text;
      cap.appendChild(text);
    }
    fig.appendChild(cap);
    return fig;
  }

  function showQuery(data) {
    const q = data.query;
    $("q-original").textContent = q.original || (imageFile ? "(image only)" : "");
    $("q-rewritten").textContent = q.rewritten || "(image only)";
    const status = $("q-status");
    const enh = q.enhancement;
    status.className = "badge" + (enh ? ` ${enh.status}` : "");
    status.textContent = enh ? `${enh.route}: ${enh.status}` : "not enhanced";
    status.title = enh && enh.error ? enh.error : "";
    $("q-instruction-row").hidden = !q.instruction;
    $("q-instruction").textContent = q.instruction || "";
    $("q-meta").textContent = `${data.hits.length} results in ${data.took_ms} ms`;
    $("query-info").hidden = false;
  }

  function showHits(hits) {
    objectUrls.forEach((u) => URL.revokeObjectURL(u));
    objectUrls = [];
    results.replaceChildren();
    if (!hits.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No results.";
      results.appendChild(p);
      return;
    }
    for (const hit of hits) results.appendChild(card(hit));
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showError("");
    const text = $("text").value;
    if (!text.trim() && !imageFile) {
      showError("Type a query or add an image.");
      return;
    }
    const body = new FormData();
    if (text.trim()) body.append("text", text);
    if (imageFile) body.append("image", imageFile, imageFile.name || "image");
    for (const name of ["task", "modality", "k"]) {
      const value = $(name).value;
      if (value) body.append(name, value);
    }
    submit.disabled = true;
    busy.hidden = false;
    try {
      const r = await fetch("/search", { method: "POST", body, headers: apiHeaders() });
      let data = null;
      try { data = await r.json(); } catch (err) { data = null; }
      if (!r.ok) {
        const msg = data && data.error ? data.error.message : `HTTP ${r.status}`;
        showError(`Search failed (${r.status}): ${msg}`);
        return;
      }
      showQuery(data);
      showHits(data.hits);
      results.dataset.state = "done";
    } catch (err) {
      showError(`Search failed: ${err.message}`);
    } finally {
      submit.disabled = false;
      busy.hidden = true;
    }
  });

  loadInfo();
})();

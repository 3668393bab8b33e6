// The page of `mpanet-tf serve`: query, filters, ranked thumbnails, adding images. No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
let queryFile = null;
let thumbnails = [];  // object URLs of the shown thumbnails, revoked when replaced

function token() { return sessionStorage.getItem("mpanet-token") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers["Authorization"] = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("this service needs its token");
  }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadGallery() {
  const info = await (await api("/v1/gallery")).json();
  $("gallery-count").textContent = `gallery: ${info.count} images` + (info.persons ? `, ${info.persons} persons` : "");
  const checked = new Set(selected("camera"));
  $("cameras").replaceChildren(...info.cameras.map((camera) => {
    const label = document.createElement("label");
    label.className = "chip";
    const box = Object.assign(document.createElement("input"), { type: "checkbox", name: "camera", value: camera });
    box.checked = checked.has(camera);
    box.addEventListener("change", search);
    label.append(box, " " + camera);
    return label;
  }));
  $("camera-filter").hidden = info.cameras.length === 0;
}

function selected(name) {
  return [...document.querySelectorAll(`input[name=${name}]:checked`)].map((box) => box.value);
}

function card(hit, personOfQuery) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.entryId = hit.entry_id;
  if (personOfQuery !== "" && hit.person_id !== null) {
    item.classList.add(String(hit.person_id) === personOfQuery ? "match" : "other");
  }
  const img = document.createElement("img");
  img.alt = `entry ${hit.entry_id}`;
  const name = hit.source.split("/").pop();
  const label = document.createElement("div");
  label.className = "meta";
  label.innerHTML = `<b class="rank">#${hit.rank}</b> <span class="dist">${hit.distance.toFixed(4)}</span>`;
  const tags = document.createElement("div");
  tags.className = "tags";
  for (const [text, cls] of [[hit.camera !== null ? "cam " + hit.camera : null, "cam"],
                             [hit.modality, hit.modality === "infrared" ? "ir" : "vis"],
                             [hit.person_id !== null ? "id " + hit.person_id : null, "pid"]]) {
    if (text) tags.append(Object.assign(document.createElement("span"), { className: "tag " + cls, textContent: text }));
  }
  item.title = `${name} (entry ${hit.entry_id})` + (hit.time ? `, ${hit.time}` : "");
  item.append(img, label, tags);
  api(hit.thumbnail).then((r) => r.blob()).then((blob) => {
    const url = URL.createObjectURL(blob);
    thumbnails.push(url);
    img.src = url;
  }).catch((error) => status(error.message, true));
  return item;
}

async function search() {
  if (!queryFile) return;
  const params = new URLSearchParams({ top_k: $("top-k").value || "10" });
  for (const camera of selected("camera")) params.append("camera", camera);
  for (const modality of selected("modality")) params.append("modality", modality);
  if ($("ann").checked) params.set("ann", "true");
  status("searching…");
  const started = performance.now();
  try {
    const result = await (await api("/v1/search?" + params, { method: "POST", body: queryFile })).json();
    thumbnails.forEach((url) => URL.revokeObjectURL(url));
    thumbnails = [];
    const person = $("query-person").value.trim();
    $("results").replaceChildren(...result.results.map((hit) => card(hit, person)));
    $("summary").textContent = `${result.results.length} of ${result.gallery_size} gallery images`;
    status(`searched in ${Math.round(performance.now() - started)} ms`);
  } catch (error) {
    status(error.message, true);
  }
}

function setQuery(file) {
  if (!file) return;
  queryFile = file;
  const preview = $("query-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-hint").hidden = true;
  search();
}

async function add(event) {
  event.preventDefault();
  const files = $("add-files").files;
  if (!files.length) { status("choose images to add", true); return; }
  const form = new FormData();
  for (const file of files) form.append("image", file, file.name);
  for (const [field, id] of [["person_id", "add-person"], ["camera", "add-camera"], ["modality", "add-modality"]]) {
    if ($(id).value.trim()) form.append(field, $(id).value.trim());
  }
  if ($("add-time").value) form.append("time", new Date($("add-time").value).toISOString());
  status("adding…");
  $("add-status").textContent = "";
  try {
    const result = await (await api("/v1/gallery", { method: "POST", body: form })).json();
    $("add-status").textContent = `added entries ${result.added.join(", ")}`;
    $("add-form").reset();
    await loadGallery();
    await search();
  } catch (error) {
    status(error.message, true);
  }
}

function init() {
  $("query-file").addEventListener("change", (e) => setQuery(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setQuery(e.dataTransfer.files[0]);
  });
  for (const box of document.querySelectorAll("input[name=modality]")) box.addEventListener("change", search);
  $("top-k").addEventListener("change", search);
  $("ann").addEventListener("change", search);
  $("query-person").addEventListener("input", search);
  $("add-form").addEventListener("submit", add);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("mpanet-token", $("token").value.trim());
    $("token-form").hidden = true;
    loadGallery().then(search).catch((error) => status(error.message, true));
  });
  loadGallery().catch((error) => status(error.message, true));
}

init();

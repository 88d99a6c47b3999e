// The page: pick an image and a model, compress and decompress it with the service, and look at the result
// beside the original and beside AVIF, WebP and JPEG at about the same bytes. Plain ES modules, no build step.

import { Api, ApiError } from "./api.js";
import { inverse, jpegOrientation, orient, swaps } from "./orientation.js";
import { countClasses, readLabelMap } from "./png.js";
import { splitter, View, Viewport } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "gancodec-api-key";
const CLASSICAL = { avif: "AVIF", webp: "WebP", jpeg: "JPEG" };
const MASK_TINT = "rgb(40, 220, 110)";
const LABEL_TINT = [230, 40, 160, 110];

const api = new Api();
const view = new View();
const state = {
  models: [],
  file: null, // the uploaded File
  image: null, // {width, height (as shown), stored: [width, height], orientation, pixels: promise of RGBA (PSNR)}
  sources: new Map(), // name -> {label, url}
  urls: [], // object URLs to revoke when the image changes
  mask: null, // canvas at image size: opaque where painted "keep"
  labels: null, // {file, width, height, ids, counts, tint: canvas}
  lastPoint: null,
  run: 0, // increments per compression, so a slow answer for an older image is dropped
};

const number = new Intl.NumberFormat("en");

function model() {
  return state.models.find((entry) => entry.id === $("model").value);
}

function selective() {
  return Boolean(model()?.modes.includes("sc"));
}

function stem(name) {
  return (name || "image").replace(/\.[^.]+$/, "") || "image";
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(error) {
  const box = $("error");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = error.message || String(error);
  box.hidden = false;
  if (error instanceof ApiError && error.status === 401) {
    $("key-box").open = true;
    $("api-key").focus();
  }
}

// ---- Models -------------------------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  try {
    // Older versions of an id stay installed to decode their files; compression by id uses the first listed.
    const listed = await api.models();
    state.models = listed.filter((entry, i) => listed.findIndex((other) => other.id === entry.id) === i);
  } catch (error) {
    state.models = [];
    select.replaceChildren(new Option("(models unavailable)", ""));
    showError(error);
    return;
  }
  showError(null);
  const previous = select.value;
  select.replaceChildren(
    ...state.models.map((entry) => {
      const bound = entry.max_bits_per_pixel.toFixed(3);
      const text = `${entry.id}${entry.default ? " (default)" : ""}, ≤ ${bound} bpp`;
      return new Option(text, entry.id, false, previous ? entry.id === previous : entry.default);
    }),
  );
  if (!state.models.length) select.replaceChildren(new Option("(no model installed)", ""));
  onModelChange();
}

function onModelChange() {
  const entry = model();
  const coding =
    entry?.kind === "hybrid"
      ? `Hybrid: an AVIF image ${entry.downsampling}x smaller on each side, painted back by a learned upscaler; ` +
        `files of at most ${entry.max_bits_per_pixel.toFixed(3)} bits per pixel, header included.`
      : `Latent: ${entry?.latent_channels} channels, ${entry?.levels} levels, ${entry?.downsampling}x ` +
        `down-sampling: at most ${entry?.max_bits_per_pixel.toFixed(3)} bits per pixel before the file's header.`;
  $("model-info").textContent = entry
    ? `Modes: ${entry.modes.join(", ")}. ${coding} Version ${entry.version}, fingerprint ${entry.fingerprint}.`
    : "";
  $("sc").hidden = !selective();
  if (state.labels?.ids) showClasses(); // class names and the ids the model knows differ between models
  drawOverlay();
}

// ---- The image ----------------------------------------------------------------------------------------------

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

async function pixelsOf(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, canvas.width, canvas.height).data;
}

function psnr(a, b) {
  if (!a || !b || a.length !== b.length) return null;
  let sum = 0;
  for (let i = 0; i < a.length; i += 4) {
    for (let c = 0; c < 3; c++) {
      const d = a[i + c] - b[i + c];
      sum += d * d;
    }
  }
  const mse = sum / ((a.length / 4) * 3);
  return mse === 0 ? 100 : Math.min(100, 10 * Math.log10((255 * 255) / mse));
}

async function setImage(file) {
  if (!file) return;
  showError(null);
  state.run += 1;
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  state.sources = new Map();
  state.file = file;
  const url = objectUrl(file);
  const img = $("left-img");
  img.src = url;
  try {
    await img.decode();
  } catch {
    showError(new Error(`${file.name}: the browser cannot show this file; the service may still read it`));
  }
  const width = img.naturalWidth;
  const height = img.naturalHeight;
  // The upload's pixels, for PSNR; null where the browser cannot decode it.
  // Shown turned as its EXIF orientation says (JPEG); masks and label maps are in the file's stored orientation.
  const orientation = jpegOrientation(new Uint8Array(await file.slice(0, 1 << 17).arrayBuffer()));
  const stored = swaps(orientation) ? [height, width] : [width, height];
  state.image = { width, height, stored, orientation, pixels: pixelsOf(file).catch(() => null) };
  state.sources.set("original", { label: "Original", url });
  const turned = orientation === 1 ? "" : ` Shown turned (EXIF orientation ${orientation}); a painted mask is turned back.`;
  $("image-info").textContent = `${file.name}: ${width} x ${height} pixels, ${number.format(file.size)} bytes.${turned}`;
  $("placeholder").hidden = true;
  resetMask();
  state.labels = null;
  $("labels").value = "";
  $("labels-info").textContent = "";
  $("classes").hidden = true;
  clearResults();
  view.setImage(width, height);
  refreshSources();
  setStatus("Ready to compress.");
}

function clearResults() {
  $("results").hidden = true;
  $("stats-body").replaceChildren();
  $("timing").textContent = "";
  for (const id of ["download-gcx", "download-png"]) {
    const link = $(id);
    link.hidden = true;
    link.removeAttribute("href");
  }
  for (const viewport of tiles) viewport.remove();
  tiles = [];
  $("grid").replaceChildren();
}

// ---- Left, right and the split ------------------------------------------------------------------------------

function refreshSources() {
  const options = [...state.sources].map(([name, source]) => [name, source.label]);
  for (const [id, fallback] of [
    ["left-source", "original"],
    ["right-source", "gancodec"],
  ]) {
    const select = $(id);
    const current = select.value;
    select.replaceChildren(...options.map(([name, label]) => new Option(label, name)));
    select.value = state.sources.has(current) ? current : state.sources.has(fallback) ? fallback : "";
  }
  showSources();
}

function showSources() {
  const left = state.sources.get($("left-source").value);
  const right = state.sources.get($("right-source").value);
  const leftImg = $("left-img");
  const rightImg = $("right-img");
  leftImg.src = left ? left.url : "";
  leftImg.alt = left ? `${left.label} (left)` : "";
  if (right) {
    rightImg.src = right.url;
    rightImg.alt = `${right.label} (right)`;
  } else {
    rightImg.removeAttribute("src");
    rightImg.alt = "";
  }
  const split = Boolean(right);
  $("right-box").hidden = !split;
  $("divider").hidden = !split;
  $("split").disabled = !split;
}

function applySplit(percent) {
  $("right-box").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("divider").style.left = `${percent}%`;
  $("split").setAttribute("aria-valuetext", `${percent}% left, ${100 - percent}% right`);
}

// ---- Keep-mask and label map (selective compression models only) ---------------------------------------------

function resetMask() {
  const canvas = document.createElement("canvas");
  canvas.width = state.image?.width || 1;
  canvas.height = state.image?.height || 1;
  state.mask = canvas;
  const overlay = $("overlay");
  overlay.width = canvas.width;
  overlay.height = canvas.height;
  drawOverlay();
}

function maskActive() {
  return selective() && $("use-mask").checked && state.image;
}

function drawOverlay() {
  const overlay = $("overlay");
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, overlay.width, overlay.height);
  if (!selective()) return;
  if (state.labels?.tint) context.drawImage(state.labels.tint, 0, 0);
  if (maskActive() && state.mask) {
    context.globalAlpha = 0.45;
    context.drawImage(state.mask, 0, 0);
    context.globalAlpha = 1;
  }
}

function paint(x, y, phase) {
  const context = state.mask.getContext("2d");
  const erase = $("brush-erase").checked;
  context.globalCompositeOperation = erase ? "destination-out" : "source-over";
  context.strokeStyle = context.fillStyle = MASK_TINT;
  context.lineWidth = Number($("brush-size").value);
  context.lineCap = context.lineJoin = "round";
  const from = phase === "start" || !state.lastPoint ? [x, y] : state.lastPoint;
  context.beginPath();
  context.moveTo(...from);
  context.lineTo(x, y);
  context.stroke();
  state.lastPoint = phase === "end" ? null : [x, y];
  drawOverlay();
}

function fillMask(keep) {
  const context = state.mask.getContext("2d");
  context.globalCompositeOperation = "source-over";
  context.clearRect(0, 0, state.mask.width, state.mask.height);
  if (keep) {
    context.fillStyle = MASK_TINT;
    context.fillRect(0, 0, state.mask.width, state.mask.height);
  }
  drawOverlay();
}

/**
 * The mask as the service wants it: a PNG of the image's size as stored in the file (before the EXIF turn the
 * page shows), white = keep, black = may be synthesised.
 */
async function maskPng() {
  const { width, height } = state.mask;
  const painted = state.mask.getContext("2d").getImageData(0, 0, width, height).data;
  const out = new OffscreenCanvas(width, height);
  const context = out.getContext("2d");
  const image = context.createImageData(width, height);
  for (let i = 0; i < painted.length; i += 4) {
    const value = painted[i + 3] >= 128 ? 255 : 0;
    image.data[i] = image.data[i + 1] = image.data[i + 2] = value;
    image.data[i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  const turnedBack = orient(out, inverse(state.image.orientation));
  return new Promise((resolve) => turnedBack.toBlob(resolve, "image/png"));
}

function className(id) {
  const names = model()?.classes;
  return Array.isArray(names) && names[id] ? `${names[id]} (${id})` : `class ${id}`;
}

async function setLabels(file) {
  state.labels = null;
  $("classes").hidden = true;
  $("class-list").replaceChildren();
  if (!file) {
    $("labels-info").textContent = "";
    drawOverlay();
    return;
  }
  let map;
  try {
    map = await readLabelMap(await file.arrayBuffer());
  } catch (error) {
    $("labels-info").textContent = `${file.name}: ${error.message}. It will be sent as it is.`;
    state.labels = { file, counts: new Map() };
    return;
  }
  state.labels = { file, ...map, counts: countClasses(map.ids), tint: null };
  showClasses();
}

/** The label map's description and one checkbox per class it holds, named as the chosen model names them. */
function showClasses() {
  const labels = state.labels;
  const chosen = new Set(chosenClasses());
  const notes = [];
  if (state.image && (state.image.stored[0] !== labels.width || state.image.stored[1] !== labels.height)) {
    notes.push(`It is not the image's size (${state.image.stored.join(" x ")}): the service will refuse it.`);
  }
  if (!labels.single) notes.push("It has colour channels: the service wants one channel (grey or palette).");
  const known = model()?.classes?.length;
  const unknown = [...labels.counts.keys()].filter((id) => known && id >= known);
  if (unknown.length) notes.push(`This model knows ids 0-${known - 1} only, not ${unknown.join(", ")}.`);
  $("labels-info").textContent =
    `${labels.file.name}: ${labels.width} x ${labels.height}, ${labels.counts.size} classes. ${notes.join(" ")}`.trim();
  const total = labels.width * labels.height;
  const rows = [...labels.counts].map(([id, count]) => {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = `class-${id}`;
    box.value = String(id);
    box.checked = chosen.has(box.value);
    box.addEventListener("change", drawLabelTint);
    const label = document.createElement("label");
    label.htmlFor = box.id;
    label.textContent = `${className(id)}: ${((100 * count) / total).toFixed(1)}% of the image`;
    const row = document.createElement("div");
    row.append(box, label);
    return row;
  });
  $("class-list").replaceChildren(...rows);
  $("classes").hidden = rows.length === 0;
  drawLabelTint();
}

function chosenClasses() {
  return [...$("class-list").querySelectorAll("input:checked")].map((box) => box.value);
}

function drawLabelTint() {
  const labels = state.labels;
  if (!labels?.ids) return;
  const chosen = new Set(chosenClasses().map(Number));
  const canvas = document.createElement("canvas");
  canvas.width = labels.width;
  canvas.height = labels.height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(labels.width, labels.height);
  labels.ids.forEach((id, i) => {
    if (chosen.has(id)) image.data.set(LABEL_TINT, i * 4);
  });
  context.putImageData(image, 0, 0);
  labels.tint = orient(canvas, state.image?.orientation || 1); // shown over the turned picture
  drawOverlay();
}

// ---- Compress, decompress, compare --------------------------------------------------------------------------

async function compressImage(event) {
  event.preventDefault();
  if (!state.file) {
    showError(new Error("Choose an image first."));
    $("image").focus();
    return;
  }
  showError(null);
  const run = ++state.run;
  const current = () => run === state.run;
  const button = $("compress");
  button.disabled = true;
  document.body.setAttribute("aria-busy", "true");
  clearResults();
  state.sources = new Map([["original", state.sources.get("original")]]);
  refreshSources();
  try {
    const fields = { image: state.file, model: $("model").value, detail: $("detail").checked };
    if (maskActive()) fields.mask = await maskPng();
    if (selective() && state.labels) {
      fields.labels = state.labels.file;
      fields.synthesize = chosenClasses();
    }
    setStatus("Compressing…");
    let started = performance.now();
    const ours = await api.compress(fields);
    const compressMs = performance.now() - started;
    if (!current()) return;
    setStatus(`Decoding ${number.format(ours.bytes)} bytes…`);
    started = performance.now();
    const png = await api.decompress(ours.bitstream);
    const decompressMs = performance.now() - started;
    if (!current()) return;
    const name = stem(state.file.name);
    const pngUrl = objectUrl(png);
    state.sources.set("gancodec", { label: `gancodec (${ours.model})`, url: pngUrl });
    refreshSources();
    setLink("download-gcx", objectUrl(ours.bitstream), `${name}.gcx`);
    setLink("download-png", pngUrl, `${name}.${ours.model}.png`);
    const reconstructed = await pixelsOf(png).catch(() => null);
    const rows = [
      {
        name: "gancodec",
        label: "gancodec",
        setting: ours.model,
        bytes: ours.bytes,
        bpp: ours.bpp,
        psnr: psnr(await state.image.pixels, reconstructed),
        url: pngUrl,
      },
    ];
    showStats(rows);
    const timing = `Compress ${Math.round(compressMs)} ms, decompress ${Math.round(decompressMs)} ms`;
    $("timing").textContent = `${timing} (measured in the browser, network included).`;
    $("results").hidden = false;
    setStatus(
      `Compressed to ${number.format(ours.bytes)} bytes (${ours.bpp.toFixed(4)} bpp). Encoding AVIF, WebP and JPEG at the same size…`,
    );

    started = performance.now();
    let comparison;
    try {
      comparison = await api.compare(state.file, ours.bytes);
    } catch (error) {
      if (!current()) return;
      showError(error);
      setStatus(
        `Compressed to ${number.format(ours.bytes)} bytes (${ours.bpp.toFixed(4)} bpp); the comparison failed.`,
      );
      showTiles(rows);
      return;
    }
    const compareMs = performance.now() - started;
    if (!current()) return;
    for (const result of comparison.results) {
      // The file itself: the browser decodes AVIF, WebP and JPEG (a PNG decoding when the server sent one).
      const url = result.png ? `data:image/png;base64,${result.png}` : `data:${result.media_type};base64,${result.file}`;
      const label = CLASSICAL[result.codec] || result.codec;
      state.sources.set(result.codec, { label: `${label} (quality ${result.quality})`, url });
      rows.push({
        name: result.codec,
        label,
        setting: `quality ${result.quality}${result.over_target ? " (lowest)" : ""}`,
        bytes: result.bytes,
        bpp: result.bpp,
        psnr: result.psnr,
        url,
      });
    }
    refreshSources();
    showStats(rows);
    showTiles(rows);
    $("timing").textContent =
      `${timing}, classical codecs ${Math.round(compareMs)} ms (measured in the browser, network included).`;
    setStatus(`Done: ${number.format(ours.bytes)} bytes, ${ours.bpp.toFixed(4)} bpp.`);
  } catch (error) {
    if (!current()) return;
    showError(error);
    setStatus("Failed.");
  } finally {
    if (current()) {
      button.disabled = false;
      document.body.removeAttribute("aria-busy");
    }
  }
}

function setLink(id, url, filename) {
  const link = $(id);
  link.href = url;
  link.download = filename;
  link.hidden = false;
}

function showStats(rows) {
  $("stats-body").replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.codec = row.name;
      const cells = [
        row.label,
        row.setting,
        number.format(row.bytes),
        row.bpp.toFixed(4),
        row.psnr == null ? "–" : row.psnr.toFixed(2),
      ];
      cells.forEach((text, i) => {
        const cell = document.createElement(i ? "td" : "th");
        if (!i) cell.scope = "row";
        cell.textContent = text;
        tr.append(cell);
      });
      return tr;
    }),
  );
}

let tiles = [];

function showTiles(rows) {
  for (const viewport of tiles) viewport.remove();
  tiles = [];
  const grid = $("grid");
  grid.replaceChildren();
  for (const row of rows) {
    const figure = document.createElement("figure");
    figure.className = "tile";
    figure.dataset.codec = row.name;
    const box = document.createElement("div");
    box.className = "viewport";
    box.tabIndex = 0;
    box.setAttribute("role", "group");
    box.setAttribute("aria-roledescription", "image viewer");
    box.setAttribute("aria-label", `${row.label}, ${row.bytes} bytes`);
    box.setAttribute("aria-describedby", "viewer-help");
    const layerBox = document.createElement("div");
    layerBox.className = "layer-box";
    const layer = document.createElement("div");
    layer.className = "layer";
    const img = document.createElement("img");
    img.src = row.url;
    img.alt = `${row.label}: ${row.setting}`;
    layer.append(img);
    layerBox.append(layer);
    box.append(layerBox);
    const caption = document.createElement("figcaption");
    const text = document.createElement("span");
    text.textContent = `${row.label}, ${row.setting}: ${number.format(row.bytes)} bytes, ${row.bpp.toFixed(4)} bpp`;
    const show = document.createElement("button");
    show.type = "button";
    show.textContent = "Show on the right";
    show.setAttribute("aria-label", `Show ${row.label} on the right of the split view`);
    show.addEventListener("click", () => {
      $("right-source").value = row.name;
      showSources();
      $("viewer").focus();
    });
    caption.append(text, show);
    figure.append(box, caption);
    grid.append(figure);
    tiles.push(new Viewport(box, view));
  }
  view.update();
}

// ---- Wiring -------------------------------------------------------------------------------------------------

function init() {
  new Viewport($("viewer"), view, { painting: () => maskActive() && $("paint").checked, onPaint: paint });
  view.listeners.add(() => {
    const main = [...view.viewports][0];
    $("zoom-level").textContent = view.width ? `${Math.round(main.scale() * 100)}%` : "fit";
  });
  splitter($("viewer"), $("divider"), $("split"), applySplit);

  const key = sessionStorage.getItem(KEY_STORAGE) || "";
  api.key = key;
  $("api-key").value = key;
  $("api-key").addEventListener("change", () => {
    api.key = $("api-key").value.trim();
    sessionStorage.setItem(KEY_STORAGE, api.key);
    loadModels();
  });

  $("image").addEventListener("change", () => setImage($("image").files[0]));
  for (const target of [$("drop"), $("viewer")]) {
    target.addEventListener("dragover", (event) => {
      event.preventDefault();
      $("drop").classList.add("over");
    });
    target.addEventListener("dragleave", () => $("drop").classList.remove("over"));
    target.addEventListener("drop", (event) => {
      event.preventDefault();
      $("drop").classList.remove("over");
      const file = event.dataTransfer.files[0];
      if (!file) return;
      const files = new DataTransfer();
      files.items.add(file);
      $("image").files = files.files;
      setImage(file);
    });
  }

  $("model").addEventListener("change", onModelChange);
  $("use-mask").addEventListener("change", () => {
    $("mask-tools").hidden = !$("use-mask").checked;
    drawOverlay();
  });
  $("brush-size").addEventListener("input", () => {
    $("brush-size-value").textContent = $("brush-size").value;
  });
  $("mask-all").addEventListener("click", () => fillMask(true));
  $("mask-none").addEventListener("click", () => fillMask(false));
  $("labels").addEventListener("change", () => setLabels($("labels").files[0]));

  $("left-source").addEventListener("change", showSources);
  $("right-source").addEventListener("change", showSources);
  const main = () => [...view.viewports][0];
  const centre = (factor) => {
    const element = $("viewer");
    if (!view.width) return;
    view.zoomAt(main(), factor, element.clientWidth / 2, element.clientHeight / 2);
  };
  $("zoom-in").addEventListener("click", () => centre(1.5));
  $("zoom-out").addEventListener("click", () => centre(1 / 1.5));
  $("zoom-fit").addEventListener("click", () => view.fit());
  $("zoom-one").addEventListener("click", () => view.actualSize(main()));
  $("form").addEventListener("submit", compressImage);

  refreshSources();
  loadModels();
}

init();

// The page: read a photo (upload, webcam or an example), convert and classify it in the browser (notebook 10).
// The model is notebook 08's CNN exported to ONNX (model/model.onnx, with its rule in model/model.json), run by
// ONNX Runtime Web on WebAssembly; the photo pipeline is pipeline.js. Nothing leaves the browser.
import * as ort from "./vendor/ort.wasm.min.mjs";
import * as P from "./pipeline.js";

const MAX_BYTES = 50_000_000; // a larger file is refused before it is read
const OOD_MESSAGE = "This does not look like any Fashion-MNIST class."; // as the Python app says it
const $ = (id) => document.getElementById(id);

ort.env.wasm.wasmPaths = new URL("./vendor/", import.meta.url).href;
ort.env.wasm.numThreads = 1; // threads need cross-origin isolation, which a static host such as Pages cannot set

async function openCv() {
  let cv = window.cv;
  if (!cv) throw new Error("OpenCV.js did not load (vendor/opencv.js is missing: run make web)");
  if (cv instanceof Promise) cv = await cv;
  if (!cv.Mat) await new Promise((resolve) => { cv.onRuntimeInitialized = resolve; });
  return cv;
}

async function load() {
  const rule = await fetch("model/model.json").then((response) => {
    if (!response.ok) throw new Error("model/model.json is missing: run notebook 10");
    return response.json();
  });
  const [cv, session] = await Promise.all([
    openCv(),
    ort.InferenceSession.create("model/model.onnx", { executionProviders: ["wasm"] }),
  ]);
  return { cv, session, rule };
}

// A JPEG ends with its end-of-image marker and a PNG with its IEND chunk; browsers draw a truncated file
// anyway (grey where data is missing), where Python's Pillow refuses it.
function checkComplete(bytes) {
  const tail = bytes.subarray(Math.max(0, bytes.length - 1024));
  const has = (pattern) => tail.some((_, i) => pattern.every((b, j) => tail[i + j] === b));
  if (bytes[0] === 0xff && bytes[1] === 0xd8 && !has([0xff, 0xd9])) {
    throw new P.PhotoError("the JPEG file is damaged or truncated (it has no end marker)");
  }
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && !has([0x49, 0x45, 0x4e, 0x44])) {
    throw new P.PhotoError("the PNG file is damaged or truncated (it has no IEND chunk)");
  }
}

// A file or blob -> {rgb, width, height}: upright (EXIF orientation applied), transparency on white.
async function decode(blob) {
  if (blob.size > MAX_BYTES) {
    throw new P.PhotoError(`the file is ${(blob.size / 1e6).toFixed(0)} MB, over the limit of ${MAX_BYTES / 1e6} MB`);
  }
  checkComplete(new Uint8Array(await blob.arrayBuffer()));
  const url = URL.createObjectURL(blob);
  try {
    const image = new Image();
    await new Promise((resolve, reject) => {
      image.onload = resolve;
      image.onerror = () => reject(new P.PhotoError("not an image file this browser can read (JPEG, PNG, WebP, ...)"));
      image.src = url;
    });
    const width = image.naturalWidth, height = image.naturalHeight;
    if (width * height > P.MAX_PIXELS) {
      throw new P.PhotoError(`${width} x ${height} pixels is over the limit of ${P.MAX_PIXELS.toLocaleString("en")}; ` +
        "shrink the photo first");
    }
    if (Math.min(width, height) < P.MIN_SIDE) {
      throw new P.PhotoError(`${width} x ${height} pixels is too small; it needs ${P.MIN_SIDE} on each side`);
    }
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.fillStyle = "#fff";
    context.fillRect(0, 0, width, height);
    context.drawImage(image, 0, 0);
    const rgba = context.getImageData(0, 0, width, height).data;
    const rgb = new Uint8Array(width * height * 3);
    for (let p = 0; p < width * height; p++) {
      rgb[p * 3] = rgba[p * 4];
      rgb[p * 3 + 1] = rgba[p * 4 + 1];
      rgb[p * 3 + 2] = rgba[p * 4 + 2];
    }
    return { rgb, width, height };
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function classify(app, blob) {
  const { rgb, width, height } = await decode(blob);
  const conversion = P.toFashionMnist(app.cv, rgb, width, height);
  const batch = new Float32Array(2 * 784);
  batch.set(conversion.image);
  batch.set(P.mirror(conversion.image), 784);
  const outputs = await app.session.run({ [app.rule.input]: new ort.Tensor("float32", batch, [2, 28, 28, 1]) });
  const logits = Array.from(outputs[app.session.outputNames[0]].data);
  const [plain, mirrored] = [logits.slice(0, 10), logits.slice(10, 20)];
  const result = P.decide(plain, app.rule.flip_tta === false ? plain : mirrored, app.rule.ood);
  return { ...result, conversion };
}

function drawPhoto({ photo, width, height, mask }) {
  const canvas = $("photo");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let p = 0; p < width * height; p++) {
    const dim = mask[p] ? 1 : 0.35; // the background faded, the item as it is
    for (let c = 0; c < 3; c++) pixels.data[p * 4 + c] = 255 - dim * (255 - photo[p * 3 + c]);
    pixels.data[p * 4 + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
}

function drawImage28(image) {
  const canvas = $("image28");
  canvas.width = 28;
  canvas.height = 28;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(28, 28);
  image.forEach((v, i) => {
    pixels.data.fill(Math.round(255 * (1 - v)), i * 4, i * 4 + 3); // dark item on white, as notebooks plot it
    pixels.data[i * 4 + 3] = 255;
  });
  context.putImageData(pixels, 0, 0);
}

function show(result) {
  $("error").hidden = true;
  $("answer").textContent = `${result.answer} ${Math.round(100 * result.probability)}%`;
  $("verdict").textContent = result.inDistribution
    ? `Looks like a Fashion-MNIST item: ${result.answer}.`
    : `${OOD_MESSAGE} Best guess: ${result.answer}.`;
  $("warnings").replaceChildren(...result.conversion.warnings.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
  drawPhoto(result.conversion.steps);
  drawImage28(result.conversion.image);
  const rows = P.MERGED_NAMES.map((name, i) => {
    const row = document.createElement("tr");
    const p = result.merged[i];
    row.innerHTML = `<td></td><td>${(100 * p).toFixed(1)}%</td><td><div class="bar" style="width:${Math.round(200 * p)}px"></div></td>`;
    row.firstChild.textContent = name === "Shoes" ? P.SHOES_GROUP : name;
    return row;
  });
  $("probabilities").tBodies[0].replaceChildren(...rows);
}

function showError(error) {
  const known = error instanceof P.PhotoError;
  $("error").textContent = known ? `This photo cannot be used: ${error.message}.` : `Something went wrong: ${error.message}`;
  $("error").hidden = false;
  $("answer").textContent = "";
  $("verdict").textContent = "";
  $("warnings").replaceChildren();
  if (!known) console.error(error);
}

async function run(app, blob) {
  try {
    const result = await classify(app, blob);
    show(result);
    if (window.fmnist.firstAnswerMs === null) window.fmnist.firstAnswerMs = performance.now();
    return result;
  } catch (error) {
    showError(error);
    return null;
  }
}

async function startWebcam(app) {
  const video = $("video");
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch (error) {
    showError(new P.PhotoError(`the webcam is not available (${error.name}); upload a photo instead`));
    return;
  }
  video.hidden = false;
  $("snap").hidden = false;
  $("snap").onclick = () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => run(app, blob), "image/png");
  };
}

// For tests and the curious: window.fmnist.classifyUrl("examples/x.jpg") -> the answer, as plain data.
window.fmnist = { firstAnswerMs: null, ready: null, classifyUrl: null };
window.fmnist.ready = (async () => {
  let app;
  try {
    app = await load();
  } catch (error) {
    $("status").textContent = `The page could not start: ${error.message}`;
    throw error;
  }
  window.fmnist.classifyUrl = async (url) => {
    const result = await run(app, await (await fetch(url)).blob());
    if (!result) return { error: $("error").textContent };
    const { answer, label, probability, inDistribution, oodScore } = result;
    const { image, steps } = result.conversion;
    return { answer, label, probability, inDistribution, oodScore, method: steps.method, image: Array.from(image) };
  };
  $("file").onchange = (event) => event.target.files[0] && run(app, event.target.files[0]);
  $("webcam").onclick = () => startWebcam(app);
  const examples = await fetch("examples/examples.json").then((response) => response.json());
  for (const { file, label } of examples) {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `a held-out photo labelled "${label}"`;
    button.innerHTML = `<img alt="${label}" src="examples/${file}">`;
    button.onclick = async () => run(app, await (await fetch(`examples/${file}`)).blob());
    $("examples").append(button);
  }
  $("status").textContent = "Ready: choose a photo.";
  document.body.dataset.state = "ready";
  await run(app, await (await fetch(`examples/${examples[0].file}`)).blob()); // one answer at once, as an example
  return true;
})();

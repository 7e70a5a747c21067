// The photo pipeline and decision rule of fmnist_utils/photos.py, in the browser (notebook 10).
//
// A photo (RGB bytes, as the page decodes it) becomes a Fashion-MNIST image as in Python: shrink to 128 pixels,
// find the item with OpenCV's GrabCut (OpenCV.js, the same library as Python's cv2) or, when GrabCut finds next
// to nothing or nearly everything, by its colour difference from the border (Otsu's cut-off), crop, negate,
// resize the longest edge to 28 with Pillow's Lanczos filter, sharpen with Pillow's unsharp mask and centre on
// 28x28. The resize and sharpening are written here with Pillow's integer arithmetic, so that the 28x28 image
// matches Python's pixel for pixel when the decoded photo does. Then the rule: flip test-time augmentation
// (mean logits of the image and its mirror), softmax, the three shoe classes summed into one answer, and the
// out-of-distribution score (MSP at a temperature) against the threshold chosen in notebook 08.
//
// Every function takes plain typed arrays, so the module runs in a browser and in Node (tests/test_web.py).

export const CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
  "Bag", "Ankle boot"];
export const SHOES = [5, 7, 9];
export const SHOES_GROUP = "Shoes (sandal, sneaker or ankle boot)";
export const MERGED_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Shoes", "Shirt", "Bag"];
const SHOES_COLUMN = 5;
const MERGED_COLUMN = [0, 1, 2, 3, 4, 5, 6, 5, 7, 5]; // class -> column of MERGED_NAMES

export const MIN_SIDE = 28;
export const MAX_PIXELS = 40_000_000;
const WORKING_SIDE = 128;
const BORDER = 0.04;
const MIN_WORKING_SIDE = 16;
const GRABCUT_RANGE = [0.05, 0.8];
const EMPTY_ITEM = 0.15;

export class PhotoError extends Error {}

export const MASK_WARNINGS = {
  colour: "GrabCut did not find the item; it was separated by its colour difference from the photo's border.",
  rectangle: "The item could not be separated from the background; the whole photo inside a thin border was " +
    "used. Keep the whole item in the frame, with a margin, on a background of another colour.",
};
const EMPTY_WARNING = "The item is nearly invisible in the 28x28 image (a light item on a light background?): " +
  "the answer means little. Try a darker background.";

// Python's round() and numpy's np.round: halves go to the even neighbour.
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// --- Pillow's Lanczos resampling (8 bits per pixel, one or more channels interleaved) ----------------------------

const PRECISION_BITS = 22; // Pillow: 32 - 8 - 2 bits of fixed point
const sinc = (x) => (x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x));
const lanczos = (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0);

// Integer weights of each output sample: {bounds: [first, count] per output, weights: Int32 per tap}.
function coefficients(inSize, in0, in1, outSize) {
  const scale = (in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * taps);
  for (let out = 0; out < outSize; out++) {
    const centre = in0 + (out + 0.5) * scale;
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const count = Math.min(Math.trunc(centre + support + 0.5), inSize) - first;
    const raw = new Float64Array(count);
    let sum = 0;
    for (let i = 0; i < count; i++) {
      raw[i] = lanczos((i + first - centre + 0.5) / filterScale);
      sum += raw[i];
    }
    for (let i = 0; i < count; i++) {
      const w = sum !== 0 ? raw[i] / sum : raw[i];
      weights[out * taps + i] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[out * 2] = first;
    bounds[out * 2 + 1] = count;
  }
  return { bounds, weights, taps };
}

const clip8 = (sum) => Math.min(255, Math.max(0, sum >> PRECISION_BITS));

// Resample along one axis: `along` 0 = x, 1 = y. src is (height, width, channels) uint8.
function resamplePass(src, width, height, channels, outSize, along, in0 = 0, in1 = null) {
  const inSize = along === 0 ? width : height;
  const { bounds, weights, taps } = coefficients(inSize, in0, in1 ?? inSize, outSize);
  const outW = along === 0 ? outSize : width;
  const outH = along === 0 ? height : outSize;
  const out = new Uint8Array(outW * outH * channels);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const o = along === 0 ? x : y;
      const first = bounds[o * 2], count = bounds[o * 2 + 1];
      for (let c = 0; c < channels; c++) {
        let sum = 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < count; i++) {
          const at = along === 0 ? (y * width + first + i) : ((first + i) * width + x);
          sum += src[at * channels + c] * weights[o * taps + i];
        }
        out[(y * outW + x) * channels + c] = clip8(sum);
      }
    }
  }
  return out;
}

// Pillow's Image.resize(size, LANCZOS) of (height, width, channels) uint8: horizontal pass, then vertical.
export function resizeLanczos(src, width, height, channels, outW, outH, box = null) {
  const [x0, y0, x1, y1] = box ?? [0, 0, width, height];
  let image = src, w = width;
  if (outW !== width || x0 !== 0 || x1 !== outW) {
    image = resamplePass(image, w, height, channels, outW, 0, x0, x1);
    w = outW;
  }
  if (outH !== height || y0 !== 0 || y1 !== outH) image = resamplePass(image, w, height, channels, outH, 1, y0, y1);
  return image === src ? src.slice() : image;
}

// Pillow's Image.thumbnail((side, side)) size: the aspect ratio kept, never enlarged; null when it fits already.
function thumbnailSize(width, height, side) {
  if (side >= width && side >= height) return null;
  const aspect = width / height;
  const roundAspect = (n, key) => Math.max(key(Math.floor(n)) <= key(Math.ceil(n)) ? Math.floor(n) : Math.ceil(n), 1);
  if (side / side >= aspect) return [roundAspect(side * aspect, (n) => Math.abs(aspect - n / side)), side];
  return [side, roundAspect(side / aspect, (n) => (n === 0 ? 0 : Math.abs(aspect - side / n)))];
}

// Pillow's thumbnail: first a box average by a whole factor (reducing_gap 2), then Lanczos to the final size.
// The box step follows Image.reduce on the whole photo, which differs from Pillow's reduce of a box around the
// support only at the photo's last pixels; the committed photos (at most 128 pixels) skip both steps.
export function thumbnail(rgb, width, height, side = WORKING_SIDE) {
  const size = thumbnailSize(width, height, side);
  if (!size) return { rgb, width, height };
  const fx = Math.max(1, Math.trunc(width / size[0] / 2));
  const fy = Math.max(1, Math.trunc(height / size[1] / 2));
  let src = rgb, w = width, h = height;
  if (fx > 1 || fy > 1) {
    w = Math.ceil(width / fx);
    h = Math.ceil(height / fy);
    src = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) {
          let sum = 0, n = 0;
          for (let yy = y * fy; yy < Math.min(height, (y + 1) * fy); yy++) {
            for (let xx = x * fx; xx < Math.min(width, (x + 1) * fx); xx++) {
              sum += rgb[(yy * width + xx) * 3 + c];
              n++;
            }
          }
          src[(y * w + x) * 3 + c] = Math.trunc((sum + n / 2) / n);
        }
      }
    }
    const box = [0, 0, width / fx, height / fy];
    return { rgb: resizeLanczos(src, w, h, 3, size[0], size[1], box), width: size[0], height: size[1] };
  }
  return { rgb: resizeLanczos(src, w, h, 3, size[0], size[1]), width: size[0], height: size[1] };
}

// --- Pillow's UnsharpMask(radius=1, percent=60, threshold=2) on a greyscale image ------------------------------

function boxBlurLine(line, out, radius, floatRadius) {
  const last = line.length - 1;
  const ww = Math.trunc(Math.fround(16777216 / Math.fround(floatRadius * 2 + 1)));
  const fw = Math.trunc((16777216 - (radius * 2 + 1) * ww) / 2);
  const edgeA = Math.min(radius + 1, line.length);
  const edgeB = Math.max(line.length - radius - 1, 0);
  const at = (i) => line[Math.min(Math.max(i, 0), last)];
  let acc = line[0] * (radius + 1);
  for (let x = 0; x < edgeA - 1; x++) acc += line[x];
  acc += line[last] * (radius - edgeA + 1);
  for (let x = 0; x <= last; x++) {
    acc += at(x + radius) - at(x - radius - 1);
    const bulk = acc * ww + (at(x - radius - 1) + at(x + radius + 1)) * fw;
    out[x] = Math.floor((bulk + 8388608) / 16777216);
  }
}

function gaussianRadius(radius, passes) {
  // Pillow's box radius for a Gaussian of this radius made of `passes` box blurs, in float32 as Pillow computes it.
  const f = Math.fround;
  const sigma2 = f(f(radius * radius) / passes);
  const L = f(Math.sqrt(12 * sigma2 + 1));
  const l = f(Math.floor((L - 1) / 2));
  let a = f(f(2 * l + 1) * f(f(l * f(l + 1)) - f(3 * sigma2)));
  a = f(a / f(6 * f(sigma2 - f(f(l + 1) * f(l + 1)))));
  return f(l + a);
}

export function unsharpMask(grey, width, height, radius = 1, percent = 60, threshold = 2) {
  const box = gaussianRadius(radius, 3);
  const whole = Math.trunc(box);
  const blurred = Uint8Array.from(grey);
  const row = new Uint8Array(width), rowOut = new Uint8Array(width);
  for (let pass = 0; pass < 3; pass++) {
    for (let y = 0; y < height; y++) {
      row.set(blurred.subarray(y * width, (y + 1) * width));
      boxBlurLine(row, rowOut, whole, box);
      blurred.set(rowOut, y * width);
    }
  }
  const col = new Uint8Array(height), colOut = new Uint8Array(height);
  for (let pass = 0; pass < 3; pass++) {
    for (let x = 0; x < width; x++) {
      for (let y = 0; y < height; y++) col[y] = blurred[y * width + x];
      boxBlurLine(col, colOut, whole, box);
      for (let y = 0; y < height; y++) blurred[y * width + x] = colOut[y];
    }
  }
  const out = new Uint8Array(grey.length);
  for (let i = 0; i < grey.length; i++) {
    const diff = grey[i] - blurred[i];
    out[i] = Math.abs(diff) > threshold ? Math.min(255, Math.max(0, grey[i] + Math.trunc((diff * percent) / 100))) : grey[i];
  }
  return out;
}

// --- Finding the item ---------------------------------------------------------------------------------------------

function borderPixels(height, width) {
  return [Math.max(1, roundHalfEven(height * BORDER)), Math.max(1, roundHalfEven(width * BORDER))];
}

// The median colour of the photo's outer border (numpy's median of the four strips, corners counted twice).
export function backgroundColour(rgb, width, height) {
  const [bh, bw] = borderPixels(height, width);
  const channels = [[], [], []];
  const take = (y, x) => { for (let c = 0; c < 3; c++) channels[c].push(rgb[(y * width + x) * 3 + c]); };
  for (let y = 0; y < bh; y++) for (let x = 0; x < width; x++) take(y, x);
  for (let y = height - bh; y < height; y++) for (let x = 0; x < width; x++) take(y, x);
  for (let y = 0; y < height; y++) for (let x = 0; x < bw; x++) take(y, x);
  for (let y = 0; y < height; y++) for (let x = width - bw; x < width; x++) take(y, x);
  return channels.map((values) => {
    values.sort((a, b) => a - b);
    const mid = values.length >> 1;
    return values.length % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  });
}

// The largest 4-connected region of a mask (Uint8Array 0/1), holes filled: scipy.ndimage's label and
// binary_fill_holes with their default (4-connected) structure; ties go to the region met first in raster order.
export function largestRegion(mask, width, height) {
  const labels = new Int32Array(mask.length);
  const stack = [];
  let best = 0, bestSize = 0, next = 0;
  const flood = (start, label, inside) => {
    let size = 0;
    stack.push(start);
    labels[start] = label;
    while (stack.length) {
      const p = stack.pop();
      size++;
      const x = p % width, y = (p - x) / width;
      for (const q of [x > 0 ? p - 1 : -1, x < width - 1 ? p + 1 : -1, y > 0 ? p - width : -1, y < height - 1 ? p + width : -1]) {
        if (q >= 0 && !labels[q] && inside(q)) {
          labels[q] = label;
          stack.push(q);
        }
      }
    }
    return size;
  };
  for (let p = 0; p < mask.length; p++) {
    if (mask[p] && !labels[p]) {
      const size = flood(p, ++next, (q) => mask[q]);
      if (size > bestSize) [best, bestSize] = [next, size];
    }
  }
  if (!best) return Uint8Array.from(mask);
  // Fill holes: everything not the region and not reachable from the border through non-region pixels.
  const region = (p) => labels[p] === best;
  const outside = new Uint8Array(mask.length);
  const seeds = [];
  for (let x = 0; x < width; x++) seeds.push(x, (height - 1) * width + x);
  for (let y = 0; y < height; y++) seeds.push(y * width, y * width + width - 1);
  for (const s of seeds) {
    if (region(s) || outside[s]) continue;
    outside[s] = 1;
    stack.push(s);
    while (stack.length) {
      const p = stack.pop();
      const x = p % width, y = (p - x) / width;
      for (const q of [x > 0 ? p - 1 : -1, x < width - 1 ? p + 1 : -1, y > 0 ? p - width : -1, y < height - 1 ? p + width : -1]) {
        if (q >= 0 && !outside[q] && !region(q)) {
          outside[q] = 1;
          stack.push(q);
        }
      }
    }
  }
  return Uint8Array.from(outside, (o) => 1 - o);
}

const share = (mask) => mask.reduce((a, b) => a + b, 0) / mask.length;

// By colour alone: distance from the border's median colour, Otsu's cut-off (OpenCV), largest region.
export function colourMask(cv, rgb, width, height) {
  const background = backgroundColour(rgb, width, height);
  const distance = new Float64Array(width * height);
  let top = 0;
  for (let p = 0; p < distance.length; p++) {
    let sum = 0;
    for (let c = 0; c < 3; c++) sum += (rgb[p * 3 + c] - background[c]) ** 2;
    distance[p] = Math.sqrt(sum);
    top = Math.max(top, distance[p]);
  }
  const scaled = cv.matFromArray(height, width, cv.CV_8UC1, Array.from(distance, (d) => roundHalfEven((255 * d) / Math.max(top, 1))));
  const item = new cv.Mat();
  try {
    cv.threshold(scaled, item, 0, 1, cv.THRESH_BINARY + cv.THRESH_OTSU);
    return largestRegion(Uint8Array.from(item.data), width, height);
  } finally {
    scaled.delete();
    item.delete();
  }
}

// GrabCut from "the outer border is background", as fmnist_utils.photos.item_mask: [mask, method].
export function itemMask(cv, rgb, width, height, iterations = 5) {
  const [bh, bw] = borderPixels(height, width);
  const bgr = new Uint8Array(rgb.length);
  for (let p = 0; p < width * height; p++) {
    bgr[p * 3] = rgb[p * 3 + 2];
    bgr[p * 3 + 1] = rgb[p * 3 + 1];
    bgr[p * 3 + 2] = rgb[p * 3];
  }
  const image = cv.matFromArray(height, width, cv.CV_8UC3, bgr);
  const mask = cv.Mat.zeros(height, width, cv.CV_8UC1);
  const background = new cv.Mat(), foreground = new cv.Mat();
  let item;
  try {
    cv.setRNGSeed(0);
    cv.grabCut(image, mask, new cv.Rect(bw, bh, width - 2 * bw, height - 2 * bh), background, foreground,
      iterations, cv.GC_INIT_WITH_RECT);
    item = largestRegion(Uint8Array.from(mask.data, (v) => (v === cv.GC_FGD || v === cv.GC_PR_FGD ? 1 : 0)), width, height);
  } catch (error) {
    throw new PhotoError("GrabCut could not separate an item from the background");
  } finally {
    image.delete();
    mask.delete();
    background.delete();
    foreground.delete();
  }
  const inRange = (m) => share(m) >= GRABCUT_RANGE[0] && share(m) <= GRABCUT_RANGE[1];
  if (inRange(item)) return [item, "grabcut"];
  item = colourMask(cv, rgb, width, height);
  if (inRange(item)) return [item, "colour"];
  item = new Uint8Array(width * height);
  for (let y = bh; y < height - bh; y++) item.fill(1, y * width + bw, y * width + width - bw);
  return [item, "rectangle"];
}

// --- The conversion -------------------------------------------------------------------------------------------------

// An RGB photo (Uint8Array, height x width x 3) -> {image: Float32Array(784) in [0, 1], item light on black,
// steps: {photo, width, height, mask, method, box}, warnings: [sentences]}.
export function toFashionMnist(cv, rgb, width, height) {
  if (Math.min(width, height) < MIN_SIDE) {
    throw new PhotoError(`${width} x ${height} pixels is too small; it needs ${MIN_SIDE} on each side`);
  }
  const small = thumbnail(rgb, width, height);
  if (Math.min(small.width, small.height) < MIN_WORKING_SIDE) {
    throw new PhotoError(`${width} x ${height} pixels is too thin to hold an item ` +
      `(longer side over ${WORKING_SIDE / MIN_WORKING_SIDE} times the shorter)`);
  }
  const [mask, method] = itemMask(cv, small.rgb, small.width, small.height);
  let top = small.height, left = small.width, bottom = 0, right = 0;
  for (let y = 0; y < small.height; y++) {
    for (let x = 0; x < small.width; x++) {
      if (mask[y * small.width + x]) {
        top = Math.min(top, y); bottom = Math.max(bottom, y + 1);
        left = Math.min(left, x); right = Math.max(right, x + 1);
      }
    }
  }
  const cropW = right - left, cropH = bottom - top;
  const f = Math.fround;
  const grey = new Uint8Array(cropW * cropH);
  for (let y = 0; y < cropH; y++) {
    for (let x = 0; x < cropW; x++) {
      const p = (y + top) * small.width + x + left;
      if (!mask[p]) continue;
      const [r, g, b] = [small.rgb[p * 3], small.rgb[p * 3 + 1], small.rgb[p * 3 + 2]];
      const luma = f(f(f(f(r * f(0.299)) + f(g * f(0.587))) + f(b * f(0.114))) / 255);
      grey[y * cropW + x] = roundHalfEven(f(f(1 - luma) * 255));
    }
  }
  const scale = 28 / Math.max(cropW, cropH);
  const outW = Math.max(1, roundHalfEven(cropW * scale)), outH = Math.max(1, roundHalfEven(cropH * scale));
  const resized = unsharpMask(resizeLanczos(grey, cropW, cropH, 1, outW, outH), outW, outH);
  const image = new Float32Array(28 * 28);
  const dx = Math.floor((28 - outW) / 2), dy = Math.floor((28 - outH) / 2);
  let brightest = 0;
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const v = f(resized[y * outW + x] / 255);
      image[(y + dy) * 28 + x + dx] = v;
      brightest = Math.max(brightest, v);
    }
  }
  const warnings = MASK_WARNINGS[method] ? [MASK_WARNINGS[method]] : [];
  if (brightest < EMPTY_ITEM) warnings.push(EMPTY_WARNING);
  if (brightest > 0) for (let i = 0; i < image.length; i++) image[i] = f(image[i] / brightest);
  return { image, warnings, steps: { photo: small.rgb, width: small.width, height: small.height, mask, method,
    box: [top, left, bottom, right] } };
}

// --- The decision rule ----------------------------------------------------------------------------------------------

export function mirror(image) {
  const out = new Float32Array(784);
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) out[y * 28 + x] = image[y * 28 + 27 - x];
  return out;
}

export function softmax(logits, temperature = 1) {
  const scaled = logits.map((v) => v / temperature);
  const top = Math.max(...scaled);
  const e = scaled.map((v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

export function mergeShoes(probabilities) {
  const merged = new Array(MERGED_NAMES.length).fill(0);
  probabilities.forEach((p, i) => { merged[MERGED_COLUMN[i]] += p; });
  return merged;
}

// Two logit rows (the image and its mirror, 10 each) and the rule {method, temperature, threshold} ->
// the answer of fmnist_utils.photos.classify.
export function decide(logits, mirrored, rule) {
  const mean = logits.map((v, i) => (v + mirrored[i]) / 2);
  const probabilities = softmax(mean);
  const merged = mergeShoes(probabilities);
  const column = merged.indexOf(Math.max(...merged));
  let classIndex = probabilities.indexOf(Math.max(...probabilities));
  if (column === SHOES_COLUMN) classIndex = SHOES.reduce((a, b) => (probabilities[b] > probabilities[a] ? b : a));
  if (rule.method !== "msp") throw new Error(`this page knows only the 'msp' score, not ${rule.method}`);
  const oodScore = 1 - Math.max(...mergeShoes(softmax(mean, rule.temperature)));
  return {
    classIndex,
    label: CLASS_NAMES[classIndex],
    answer: column === SHOES_COLUMN ? SHOES_GROUP : CLASS_NAMES[classIndex],
    probability: merged[column],
    merged,
    probabilities,
    oodScore,
    inDistribution: oodScore <= rule.threshold,
  };
}

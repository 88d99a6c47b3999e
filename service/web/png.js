// A small PNG reader for label maps: the class id of each pixel is its first sample (the palette index of a
// palette PNG, the grey value of a greyscale one, the red value otherwise), read from the file itself because
// a canvas would give a palette's colours rather than its indices. Non-interlaced PNGs only.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/**
 * {width, height, ids: Uint32Array (row-major), single: whether it has one channel (grey or palette), as the
 * service wants label maps} from the bytes of a PNG file.
 */
export async function readLabelMap(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8 || SIGNATURE.some((value, i) => bytes[i] !== value)) throw new Error("not a PNG file");
  const data = new DataView(buffer);
  let header = null;
  const chunks = [];
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = data.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      header = {
        width: data.getUint32(at + 8),
        height: data.getUint32(at + 12),
        depth: bytes[at + 16],
        colour: bytes[at + 17],
        interlace: bytes[at + 20],
      };
    } else if (type === "IDAT") {
      chunks.push(body);
    } else if (type === "IEND") {
      break;
    }
    at += 12 + length;
  }
  if (!header || !chunks.length) throw new Error("the PNG has no image data");
  const { width, height, depth, colour, interlace } = header;
  if (interlace) throw new Error("interlaced PNGs cannot be read here");
  if (!(colour in CHANNELS)) throw new Error(`unknown PNG colour type ${colour}`);
  const raw = await inflate(new Blob(chunks));
  const bitsPerPixel = CHANNELS[colour] * depth;
  const step = Math.max(1, bitsPerPixel >> 3); // bytes between a byte and the one the filters refer to
  const stride = Math.ceil((width * bitsPerPixel) / 8);
  if (raw.length < height * (stride + 1)) throw new Error("the PNG's image data is truncated");
  const ids = new Uint32Array(width * height);
  let previous = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const start = y * (stride + 1);
    const filter = raw[start];
    const row = raw.slice(start + 1, start + 1 + stride);
    for (let i = 0; i < stride; i++) {
      const left = i >= step ? row[i - step] : 0;
      const up = previous[i];
      const corner = i >= step ? previous[i - step] : 0;
      if (filter === 1) row[i] += left;
      else if (filter === 2) row[i] += up;
      else if (filter === 3) row[i] += (left + up) >> 1;
      else if (filter === 4) row[i] += paeth(left, up, corner);
      else if (filter !== 0) throw new Error(`bad PNG row filter ${filter}`);
    }
    for (let x = 0; x < width; x++) {
      let id;
      if (depth === 8) id = row[x * (bitsPerPixel >> 3)];
      else if (depth === 16) id = (row[x * (bitsPerPixel >> 3)] << 8) | row[x * (bitsPerPixel >> 3) + 1];
      else {
        const bit = x * bitsPerPixel;
        id = (row[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
      }
      ids[y * width + x] = id;
    }
    previous = row;
  }
  return { width, height, ids, single: colour === 0 || colour === 3 };
}

/** Map of class id to pixel count. */
export function countClasses(ids) {
  const counts = new Map();
  for (const id of ids) counts.set(id, (counts.get(id) || 0) + 1);
  return new Map([...counts].sort((a, b) => a[0] - b[0]));
}

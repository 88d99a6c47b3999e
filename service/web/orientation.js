// EXIF orientation. Browsers show a JPEG turned as its EXIF orientation says, while the service wants masks
// and label maps in the orientation stored in the file (before any turn). The page paints in the turned
// picture and turns the mask back before sending it.

/** The EXIF orientation (1-8) of a JPEG file's bytes; 1 (as stored) when absent or not a JPEG. */
export function jpegOrientation(bytes) {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return 1;
  let at = 2;
  while (at + 4 <= bytes.length && bytes[at] === 0xff) {
    const marker = bytes[at + 1];
    if (marker === 0xda || marker === 0xd9) break; // image data: no more metadata
    const length = (bytes[at + 2] << 8) | bytes[at + 3];
    const exif = [0x45, 0x78, 0x69, 0x66, 0, 0].every((value, i) => bytes[at + 4 + i] === value);
    if (marker === 0xe1 && exif) return tiffOrientation(bytes, at + 10, at + 2 + length);
    at += 2 + length;
  }
  return 1;
}

function tiffOrientation(bytes, tiff, end) {
  const little = bytes[tiff] === 0x49;
  const u16 = (at) => (little ? bytes[at] | (bytes[at + 1] << 8) : (bytes[at] << 8) | bytes[at + 1]);
  const u32 = (at) => (little ? u16(at) + u16(at + 2) * 65536 : u16(at) * 65536 + u16(at + 2));
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return 1;
  for (let i = 0, count = u16(ifd); i < count && ifd + 14 + i * 12 <= end; i++) {
    const entry = ifd + 2 + i * 12;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

/** The orientation that undoes `orientation`: the turns by a quarter swap, the rest undo themselves. */
export function inverse(orientation) {
  return { 6: 8, 8: 6 }[orientation] || orientation;
}

/** Whether the orientation swaps width and height. */
export function swaps(orientation) {
  return orientation >= 5;
}

/**
 * A new canvas holding `source` (canvas or image) transformed as EXIF `orientation` says: 2 mirrors left-right,
 * 3 turns 180°, 4 mirrors top-bottom, 5 transposes, 6 turns 90° clockwise, 7 transverses, 8 turns 90° anticlockwise.
 */
export function orient(source, orientation) {
  const w = source.width;
  const h = source.height;
  const canvas = document.createElement("canvas");
  canvas.width = swaps(orientation) ? h : w;
  canvas.height = swaps(orientation) ? w : h;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  const matrices = {
    1: [1, 0, 0, 1, 0, 0],
    2: [-1, 0, 0, 1, w, 0],
    3: [-1, 0, 0, -1, w, h],
    4: [1, 0, 0, -1, 0, h],
    5: [0, 1, 1, 0, 0, 0],
    6: [0, 1, -1, 0, h, 0],
    7: [0, -1, -1, 0, h, w],
    8: [0, -1, 1, 0, 0, w],
  };
  context.setTransform(...(matrices[orientation] || matrices[1]));
  context.drawImage(source, 0, 0);
  return canvas;
}

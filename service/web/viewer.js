// Synchronised zoom and pan: one View (the image point at the centre and a zoom relative to "fit") shared by
// every Viewport, so each shows the same part of the image whatever its size.

const MIN_ZOOM = 0.5;
const MAX_SCALE = 64; // screen pixels per image pixel at most
const KEY_PAN = 0.1; // arrow keys move by this fraction of the visible width or height

export class View {
  constructor() {
    this.width = 0;
    this.height = 0;
    this.cx = 0;
    this.cy = 0;
    this.zoom = 1;
    this.viewports = new Set();
    this.listeners = new Set();
  }

  setImage(width, height) {
    this.width = width;
    this.height = height;
    this.fit();
  }

  fit() {
    this.cx = this.width / 2;
    this.cy = this.height / 2;
    this.zoom = 1;
    this.update();
  }

  /** Zoom so that `viewport` shows image pixels 1:1. */
  actualSize(viewport) {
    this.zoom = 1 / viewport.fitScale();
    this.update();
  }

  pan(dx, dy) {
    this.cx += dx;
    this.cy += dy;
    this.update();
  }

  /** Multiply the zoom by `factor`, keeping the image point under (px, py) of `viewport` where it is. */
  zoomAt(viewport, factor, px, py) {
    const [ix, iy] = viewport.toImage(px, py);
    const maxZoom = Math.max(MIN_ZOOM, MAX_SCALE / viewport.fitScale());
    this.zoom = Math.min(maxZoom, Math.max(MIN_ZOOM, this.zoom * factor));
    const scale = viewport.scale();
    this.cx = ix - (px - viewport.element.clientWidth / 2) / scale;
    this.cy = iy - (py - viewport.element.clientHeight / 2) / scale;
    this.update();
  }

  update() {
    this.cx = Math.min(this.width, Math.max(0, this.cx));
    this.cy = Math.min(this.height, Math.max(0, this.cy));
    for (const viewport of this.viewports) viewport.apply();
    for (const listener of this.listeners) listener(this);
  }
}

export class Viewport {
  /**
   * element: the box; its `.layer` descendants get the transform. options.onPaint(x, y, phase) takes pointer
   * drags instead of panning while options.painting() is true (x, y in image pixels; phase start|move|end).
   */
  constructor(element, view, options = {}) {
    this.element = element;
    this.view = view;
    this.options = options;
    view.viewports.add(this);
    this.observer = new ResizeObserver(() => this.apply());
    this.observer.observe(element);
    this.listen();
  }

  remove() {
    this.view.viewports.delete(this);
    this.observer.disconnect();
  }

  fitScale() {
    const { width, height } = this.view;
    if (!width || !height) return 1;
    return Math.min(this.element.clientWidth / width, this.element.clientHeight / height) || 1;
  }

  scale() {
    return this.fitScale() * this.view.zoom;
  }

  /** Viewport pixel (relative to the element's top left) to image pixel. */
  toImage(px, py) {
    const s = this.scale();
    return [
      this.view.cx + (px - this.element.clientWidth / 2) / s,
      this.view.cy + (py - this.element.clientHeight / 2) / s,
    ];
  }

  apply() {
    const { width, height, cx, cy } = this.view;
    const s = this.scale();
    const tx = this.element.clientWidth / 2 - cx * s;
    const ty = this.element.clientHeight / 2 - cy * s;
    for (const layer of this.element.querySelectorAll(".layer")) {
      layer.style.width = `${width}px`;
      layer.style.height = `${height}px`;
      layer.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    }
    // Past 2x, show pixels as squares: artefacts are what people zoom in for.
    this.element.classList.toggle("pixelated", s >= 2);
  }

  local(event) {
    const rect = this.element.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  listen() {
    const element = this.element;
    let last = null;
    let painting = false;
    element.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || event.defaultPrevented) return;
      element.setPointerCapture(event.pointerId);
      last = this.local(event);
      painting = Boolean(this.options.painting?.());
      if (painting) this.options.onPaint(...this.toImage(...last), "start");
      element.classList.add("dragging");
    });
    element.addEventListener("pointermove", (event) => {
      if (!last || !element.hasPointerCapture(event.pointerId)) return;
      const now = this.local(event);
      if (painting) {
        this.options.onPaint(...this.toImage(...now), "move");
      } else {
        const s = this.scale();
        this.view.pan((last[0] - now[0]) / s, (last[1] - now[1]) / s);
      }
      last = now;
    });
    const end = (event) => {
      if (!last) return;
      if (painting) this.options.onPaint(...this.toImage(...this.local(event)), "end");
      last = null;
      painting = false;
      element.classList.remove("dragging");
    };
    element.addEventListener("pointerup", end);
    element.addEventListener("pointercancel", end);
    element.addEventListener(
      "wheel",
      (event) => {
        if (!this.view.width) return;
        event.preventDefault();
        const [px, py] = this.local(event);
        this.view.zoomAt(this, Math.exp(-event.deltaY * 0.0015), px, py);
      },
      { passive: false },
    );
    element.addEventListener("keydown", (event) => {
      if (event.target !== element || !this.view.width || event.altKey || event.ctrlKey || event.metaKey) return;
      const w = element.clientWidth;
      const h = element.clientHeight;
      const s = this.scale();
      const actions = {
        ArrowLeft: () => this.view.pan((-w * KEY_PAN) / s, 0),
        ArrowRight: () => this.view.pan((w * KEY_PAN) / s, 0),
        ArrowUp: () => this.view.pan(0, (-h * KEY_PAN) / s),
        ArrowDown: () => this.view.pan(0, (h * KEY_PAN) / s),
        "+": () => this.view.zoomAt(this, 1.5, w / 2, h / 2),
        "=": () => this.view.zoomAt(this, 1.5, w / 2, h / 2),
        "-": () => this.view.zoomAt(this, 1 / 1.5, w / 2, h / 2),
        0: () => this.view.fit(),
        1: () => this.view.actualSize(this),
      };
      const action = actions[event.key];
      if (action) {
        event.preventDefault();
        action();
      }
    });
  }
}

/**
 * The split: `range` (an <input type=range>, 0-100) is the accessible control; dragging `divider` with a pointer
 * moves it too. `onChange(percent)` clips the right-hand layer.
 */
export function splitter(viewer, divider, range, onChange) {
  const set = (percent) => {
    range.value = String(Math.round(Math.min(100, Math.max(0, percent))));
    onChange(Number(range.value));
  };
  range.addEventListener("input", () => onChange(Number(range.value)));
  divider.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault(); // the viewer below must not start a pan
    event.stopPropagation();
    divider.setPointerCapture(event.pointerId);
  });
  divider.addEventListener("pointermove", (event) => {
    if (!divider.hasPointerCapture(event.pointerId)) return;
    const rect = viewer.getBoundingClientRect();
    set(((event.clientX - rect.left) / rect.width) * 100);
  });
  onChange(Number(range.value));
  return set;
}

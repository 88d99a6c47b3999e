// The service's endpoints, called relative to the page (so the page also works behind a path prefix).
// Every error the service answers is problem+json (RFC 9457); it comes back here as an ApiError.

export class ApiError extends Error {
  constructor(status, problem) {
    const title = problem.title || `HTTP ${status}`;
    super(problem.detail ? `${title}: ${problem.detail}` : title);
    this.status = status;
    this.type = problem.type || "about:blank";
    this.problem = problem;
  }
}

export class Api {
  constructor() {
    this.key = "";
  }

  headers(extra = {}) {
    return this.key ? { ...extra, "X-API-Key": this.key } : extra;
  }

  async request(path, init = {}) {
    let response;
    try {
      response = await fetch(path, { ...init, headers: this.headers(init.headers) });
    } catch (error) {
      throw new ApiError(0, { title: "The service cannot be reached", detail: String(error.message || error) });
    }
    if (!response.ok) {
      let problem = {};
      try {
        problem = await response.json();
      } catch {
        problem = { title: `HTTP ${response.status} ${response.statusText}` };
      }
      throw new ApiError(response.status, problem);
    }
    return response;
  }

  async models() {
    return (await this.request("models")).json();
  }

  /** POST /compress; fields: {image, model, detail, mask, labels, synthesize[]}. */
  async compress(fields) {
    const form = new FormData();
    form.append("image", fields.image, fields.image.name || "image");
    if (fields.model) form.append("model", fields.model);
    if (fields.detail === false) form.append("detail", "false");
    if (fields.mask) form.append("mask", fields.mask, "mask.png");
    if (fields.labels) form.append("labels", fields.labels, "labels.png");
    for (const name of fields.synthesize || []) form.append("synthesize", name);
    const response = await this.request("compress", { method: "POST", body: form });
    const header = (name) => response.headers.get(`Gancodec-${name}`);
    return {
      bitstream: await response.blob(),
      model: header("Model"),
      width: Number(header("Width")),
      height: Number(header("Height")),
      bytes: Number(header("Bytes")),
      bpp: Number(header("Bpp")),
    };
  }

  /** POST /decompress with the raw bitstream; the PNG back. */
  async decompress(bitstream) {
    const response = await this.request("decompress", {
      method: "POST",
      body: bitstream,
      headers: { "Content-Type": "application/octet-stream" },
    });
    return response.blob();
  }

  /** POST /compare: AVIF, WebP and JPEG at about targetBytes (the files only: the browser decodes them). */
  async compare(image, targetBytes) {
    const form = new FormData();
    form.append("image", image, image.name || "image");
    form.append("target_bytes", String(targetBytes));
    form.append("decoded", "false");
    return (await this.request("compare", { method: "POST", body: form })).json();
  }
}

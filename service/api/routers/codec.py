"""POST /compress and POST /decompress.

Everything that can be judged from headers (formats by magic bytes, pixel counts, mask sizes, the bitstream's
container and model) is checked on the event loop before a job is queued, so bad requests never take a
worker; decoding pixels and running the graphs happen on the limiter's workers. Jobs are module-level functions
given bytes and model ids, so that they can run in worker processes, which hold their own models.
"""

from __future__ import annotations

import hashlib
import io
from functools import partial
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from PIL import Image
from starlette.datastructures import UploadFile as StarletteUploadFile

from service.api import problems
from service.api.forms import check_single, single_valued
from service.api.problems import Problem, ProblemType
from service.api.runtime import RuntimeDep
from service.api.security import API_KEY
from service.codec import (
    Bitstream,
    CodecError,
    ImageInfo,
    Registry,
    bits_per_pixel,
    check_selective,
    class_ids,
    compress,
    encode_png,
    probe_image,
    reconstruct,
    unpack,
)

router = APIRouter(tags=["codec"], dependencies=[API_KEY])

BITSTREAM_MEDIA_TYPE = "application/octet-stream"
MULTIPART = "multipart/form-data"
OutputFormat = Literal["png", "webp"]

_BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
_HEADERS = {
    "Gancodec-Model": ("Id of the model that made the bitstream.", "string"),
    "Gancodec-Width": ("Image width in pixels.", "integer"),
    "Gancodec-Height": ("Image height in pixels.", "integer"),
    "Gancodec-Bytes": ("Size of the bitstream, header included.", "integer"),
    "Gancodec-Bpp": ("Bits per pixel of the bitstream: 8 * bytes / (width * height).", "number"),
}
_HEADER_DOCS = {name: {"description": text, "schema": {"type": kind}} for name, (text, kind) in _HEADERS.items()}
_SERVICE_PROBLEMS = (
    ProblemType.MALFORMED_BODY,
    ProblemType.UNAUTHORIZED,
    ProblemType.REQUEST_TIMEOUT,
    ProblemType.UPLOAD_TOO_LARGE,
    ProblemType.INVALID_REQUEST,
    ProblemType.OVERLOADED,
    ProblemType.INTERNAL_ERROR,
    ProblemType.INFERENCE_FAILED,
    ProblemType.QUEUE_TIMEOUT,
    ProblemType.PROCESSING_TIMEOUT,
)


def _ok(description: str, media_types: list[str], headers: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": description, "content": {m: {"schema": _BINARY} for m in media_types}, "headers": headers}
    }


@router.post(
    "/compress",
    operation_id="compress",
    summary="Compress an image (PNG, JPEG or WebP) to a .gcx bitstream",
    response_class=Response,
    dependencies=[single_valued("image", "mask", "labels", "model", "detail")],
    responses={
        **_ok(
            "The bitstream; ETag is the quoted sha256 of its bytes.",
            [BITSTREAM_MEDIA_TYPE],
            {"ETag": {"description": "sha256 of the bitstream, quoted.", "schema": {"type": "string"}}, **_HEADER_DOCS},
        ),
        **problems.responses(
            *_SERVICE_PROBLEMS,
            ProblemType.IMAGE_TOO_LARGE,
            ProblemType.UNSUPPORTED_FORMAT,
            ProblemType.INVALID_IMAGE,
            ProblemType.MASK_SIZE_MISMATCH,
            ProblemType.INVALID_SELECTION,
            ProblemType.SC_UNSUPPORTED,
            ProblemType.UNKNOWN_MODEL,
        ),
    },
)
async def compress_image(
    runtime: RuntimeDep,
    image: Annotated[UploadFile, File(description="PNG, JPEG or WebP, recognised by its magic bytes.")],
    mask: Annotated[
        UploadFile | None,
        File(
            description="PNG of the image's size: white = keep exactly, black = may be synthesised (sc models). "
            "Alone, it keeps its white region and synthesises the rest without a label map."
        ),
    ] = None,
    labels: Annotated[
        UploadFile | None,
        File(
            description="PNG of the image's size holding class ids as grey levels or palette indices (sc models). "
            "Alone, it keeps everything and conditions the generator on it."
        ),
    ] = None,
    model: Annotated[str | None, Form(description="Model id; the server's default when absent.")] = None,
    synthesize: Annotated[
        list[str] | None,
        Form(
            description="Class names or ids of the label map whose regions may be synthesised (sc models; needs "
            "labels). Repeat the field or separate names by commas; GET /models lists each model's classes."
        ),
    ] = None,
    detail: Annotated[
        bool,
        Form(
            description="GC: store the original's detail energy by scale (5 bytes), which the decoder restores; "
            "false gives a smoother image with a little higher PSNR. SC files never carry it."
        ),
    ] = True,
) -> Response:
    max_pixels = runtime.settings.max_pixels
    data = await image.read()
    info = _probe("image", data, max_pixels)
    maps = {name: await upload.read() for name, upload in (("mask", mask), ("labels", labels)) if upload is not None}
    for name, map_data in maps.items():
        _check_map(name, map_data, info, max_pixels)
    if synthesize and labels is None:
        raise Problem(ProblemType.INVALID_REQUEST, "synthesize names classes of the label map: send labels too")
    chosen = runtime.registry.get(model)
    if maps or synthesize:
        check_selective(chosen.manifest)
        class_ids(chosen.manifest, synthesize or ())
    job = partial(
        _compress,
        data=data,
        model_id=chosen.id,
        mask=maps.get("mask"),
        labels=maps.get("labels"),
        synthesize=synthesize,
        max_pixels=max_pixels,
        detail=detail,
    )
    bitstream = await runtime.limiter.run("compress", job)
    parsed = unpack(bitstream, max_pixels)
    runtime.metrics.bits_per_pixel.labels(chosen.id).observe(_bpp(parsed))
    etag = f'"{hashlib.sha256(bitstream).hexdigest()}"'
    return Response(bitstream, media_type=BITSTREAM_MEDIA_TYPE, headers={"ETag": etag, **_describe(parsed)})


@router.post(
    "/decompress",
    operation_id="decompress",
    summary="Decompress a .gcx bitstream to PNG or WebP",
    response_class=Response,
    responses={
        **_ok("The image, lossless (WebP with format=webp).", ["image/png", "image/webp"], _HEADER_DOCS),
        **problems.responses(
            *_SERVICE_PROBLEMS,
            ProblemType.IMAGE_TOO_LARGE,
            ProblemType.UNSUPPORTED_MEDIA_TYPE,
            ProblemType.CORRUPT_BITSTREAM,
            ProblemType.UNKNOWN_MODEL,
            ProblemType.MODEL_MISMATCH,
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The bitstream as the raw body, or as the multipart file field `bitstream`.",
            "content": {
                BITSTREAM_MEDIA_TYPE: {"schema": _BINARY},
                MULTIPART: {
                    "schema": {
                        "type": "object",
                        "title": "DecompressForm",
                        "required": ["bitstream"],
                        "properties": {"bitstream": {**_BINARY, "description": "A .gcx file."}},
                    }
                },
            },
        }
    },
)
async def decompress_image(
    request: Request,
    runtime: RuntimeDep,
    output_format: Annotated[OutputFormat, Query(alias="format", description="Image format of the answer.")] = "png",
) -> Response:
    max_pixels = runtime.settings.max_pixels
    data = await _read_bitstream(request)
    bitstream = unpack(data, max_pixels)
    runtime.registry.for_header(bitstream.header)
    job = partial(_decompress, data=data, max_pixels=max_pixels, output_format=output_format)
    image = await runtime.limiter.run("decompress", job)
    return Response(image, media_type=f"image/{output_format}", headers=_describe(bitstream))


async def _read_bitstream(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == BITSTREAM_MEDIA_TYPE:
        return await request.body()
    if media_type == MULTIPART:
        async with request.form() as form:
            check_single(form, ["bitstream"])
            field = form.get("bitstream")
            if not isinstance(field, StarletteUploadFile):
                raise Problem(ProblemType.INVALID_REQUEST, "the form needs a file field named bitstream")
            return await field.read()
    raise Problem(
        ProblemType.UNSUPPORTED_MEDIA_TYPE,
        f"send the bitstream as {BITSTREAM_MEDIA_TYPE} or as the {MULTIPART} file field bitstream, "
        f"not as {media_type or 'a body without Content-Type'}",
    )


def _probe(name: str, data: bytes, max_pixels: int) -> ImageInfo:
    """probe_image, with the form field named in the problem's detail."""
    try:
        return probe_image(data, max_pixels)
    except CodecError as error:
        problem = problems.from_codec_error(error)
        raise Problem(problem.kind, f"{name}: {error}") from None


def _check_map(name: str, data: bytes, image: ImageInfo, max_pixels: int) -> None:
    """Masks and label maps must be PNGs (lossless, so class ids and edges survive) of the image's size."""
    info = _probe(name, data, max_pixels)
    if info.format != "PNG":
        raise Problem(ProblemType.UNSUPPORTED_FORMAT, f"{name}: must be a PNG, not {info.format}")
    if (info.width, info.height) != (image.width, image.height):
        raise Problem(
            ProblemType.MASK_SIZE_MISMATCH,
            f"{name}: is {info.width}x{info.height}, the image {image.width}x{image.height}",
        )


def _compress(
    models: Registry,
    *,
    data: bytes,
    model_id: str,
    mask: bytes | None,
    labels: bytes | None,
    synthesize: list[str] | None,
    max_pixels: int,
    detail: bool,
) -> bytes:
    model = models.get(model_id)
    return compress(data, model, mask, labels, synthesize, max_pixels=max_pixels, restore_detail=detail)


def _decompress(models: Registry, *, data: bytes, max_pixels: int, output_format: OutputFormat) -> bytes:
    """The bitstream was checked before it was queued; parsing it again here costs a checksum."""
    bitstream = unpack(data, max_pixels)
    pixels = reconstruct(bitstream, models.for_header(bitstream.header))
    return encode_png(pixels) if output_format == "png" else _encode_webp(pixels)


def _encode_webp(pixels: np.ndarray) -> bytes:
    """Lossless, so PNG and WebP answers carry the same pixels."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


def _bpp(bitstream: Bitstream) -> float:
    return bits_per_pixel(bitstream.size, bitstream.header.width, bitstream.header.height)


def _describe(bitstream: Bitstream) -> dict[str, str]:
    header = bitstream.header
    return {
        "Gancodec-Model": header.model_id,
        "Gancodec-Width": str(header.width),
        "Gancodec-Height": str(header.height),
        "Gancodec-Bytes": str(bitstream.size),
        "Gancodec-Bpp": f"{_bpp(bitstream):.6g}",
    }

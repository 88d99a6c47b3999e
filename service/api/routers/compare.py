"""POST /compare: the same image through AVIF, WebP and JPEG at about a given byte count (what the web page shows
beside our reconstruction). Same limits, limiter and API-key rule as /compress; the search is in baselines.py."""

from __future__ import annotations

import base64
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel, Field

from service.api import baselines, problems
from service.api.baselines import Codec
from service.api.forms import single_valued
from service.api.problems import Problem, ProblemType
from service.api.runtime import RuntimeDep
from service.api.security import API_KEY
from service.codec import CodecError, Registry, decode_image, encode_png, probe_image

router = APIRouter(tags=["codec"], dependencies=[API_KEY])

MAX_TARGET_BYTES = 1 << 30
_BASE64: dict[str, Any] = {"contentEncoding": "base64"}


class CodecResult(BaseModel):
    codec: Codec
    media_type: str = Field(description="Media type of `file`: image/avif, image/webp or image/jpeg.")
    quality: int = Field(description="The quality setting chosen: 0-100 for AVIF and WebP, 1-95 for JPEG.")
    bytes: int = Field(description="Size of the encoded file.")
    bpp: float = Field(description="Bits per pixel of the encoded file: 8 * bytes / (width * height).")
    over_target: bool = Field(description="Even the codec's lowest quality is larger than target_bytes.")
    psnr: float = Field(description="PSNR of the decoded file against the uploaded image, in dB (at most 100).")
    file: str = Field(description="The encoded file, base64.", json_schema_extra=_BASE64)
    png: str | None = Field(
        description="The encoded file decoded again, as a lossless PNG, base64: what its decoder shows. "
        "null when the request set decoded=false.",
        json_schema_extra=_BASE64,
    )


class Comparison(BaseModel):
    width: int = Field(description="Image width in pixels (after EXIF rotation).")
    height: int = Field(description="Image height in pixels (after EXIF rotation).")
    target_bytes: int
    results: list[CodecResult] = Field(description="One entry per codec asked for, in the order asked.")


@router.post(
    "/compare",
    operation_id="compareCodecs",
    dependencies=[single_valued("image", "target_bytes", "decoded")],
    summary="Encode an image with AVIF, WebP and JPEG at about a target byte count",
    description=(
        "For each codec, the highest quality setting whose file is at most `target_bytes` (found by bisection; "
        "the lowest setting, marked `over_target`, when none fits). Pass the size of a .gcx bitstream to see "
        "classical codecs at the same rate. Encoded by the server with Pillow. An image wider or taller than a "
        "codec allows (WebP 16383, JPEG 65500, AVIF 65536 pixels) is refused with image-too-large."
    ),
    responses={
        200: {"description": "One result per codec: quality chosen, size, rate, PSNR, the file and its decoding."},
        **problems.responses(
            ProblemType.MALFORMED_BODY,
            ProblemType.UNAUTHORIZED,
            ProblemType.REQUEST_TIMEOUT,
            ProblemType.UPLOAD_TOO_LARGE,
            ProblemType.IMAGE_TOO_LARGE,
            ProblemType.UNSUPPORTED_FORMAT,
            ProblemType.INVALID_REQUEST,
            ProblemType.INVALID_IMAGE,
            ProblemType.OVERLOADED,
            ProblemType.INTERNAL_ERROR,
            ProblemType.QUEUE_TIMEOUT,
            ProblemType.PROCESSING_TIMEOUT,
        ),
    },
)
async def compare_codecs(
    runtime: RuntimeDep,
    image: Annotated[UploadFile, File(description="PNG, JPEG or WebP, recognised by its magic bytes.")],
    target_bytes: Annotated[
        int, Form(ge=1, le=MAX_TARGET_BYTES, description="Byte budget per codec, e.g. the size of a .gcx file.")
    ],
    codecs: Annotated[list[Codec] | None, Form(description="Codecs to run, repeatable; all three when absent.")] = None,
    decoded: Annotated[
        bool,
        Form(description="Also return each file decoded again as a PNG (`png`); false leaves it null (smaller)."),
    ] = True,
) -> Comparison:
    max_pixels = runtime.settings.max_pixels
    data = await image.read()
    try:
        info = probe_image(data, max_pixels)
    except CodecError as error:
        raise Problem(problems.from_codec_error(error).kind, f"image: {error}") from None
    chosen = tuple(dict.fromkeys(codecs)) if codecs else baselines.CODECS
    refused = baselines.too_large(chosen, info.width, info.height)
    if refused:
        limits = ", ".join(f"{codec} {baselines.ENCODERS[codec].max_side}" for codec in refused)
        raise Problem(
            ProblemType.IMAGE_TOO_LARGE,
            f"image: {info.width}x{info.height} is wider or taller than these codecs allow ({limits} pixels a "
            "side); ask for the others with the codecs field",
        )
    job = partial(_compare, data=data, max_pixels=max_pixels, target_bytes=target_bytes, codecs=chosen, decoded=decoded)
    return await runtime.limiter.run("compare", job)


def _compare(
    models: Registry, *, data: bytes, max_pixels: int, target_bytes: int, codecs: tuple[Codec, ...], decoded: bool
) -> Comparison:
    """A job like the codec's, on the same workers (it decodes an untrusted image too), that needs no model."""
    pixels = decode_image(data, max_pixels).pixels
    height, width = pixels.shape[:2]
    results = [
        CodecResult(
            codec=result.codec,
            media_type=result.media_type,
            quality=result.quality,
            bytes=len(result.data),
            bpp=result.bpp,
            over_target=result.over_target,
            psnr=round(result.psnr, 4),
            file=base64.b64encode(result.data).decode("ascii"),
            png=base64.b64encode(encode_png(result.pixels)).decode("ascii") if decoded else None,
        )
        for result in baselines.compare(pixels, target_bytes, codecs)
    ]
    return Comparison(width=width, height=height, target_bytes=target_bytes, results=results)

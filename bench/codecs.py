"""The classical codecs we compare with, each through its real file format, swept over its quality setting.

Every codec writes a complete file into memory (headers included; that is what a user would store) and reads it back
with the same library. Settings are listed lowest first and always include the codec's lowest: the fewest bytes it can
produce, which at our rates is where the comparison happens.

| name | library | setting |
|---|---|---|
| jpeg | Pillow (libjpeg-turbo), 4:2:0, optimised Huffman tables | quality 1-95 |
| webp | Pillow (libwebp), method 6 (slowest, smallest) | quality 0-95 |
| avif | Pillow's own AVIF plugin (libavif + its AV1 encoder), speed 6, 4:2:0 | quality 0-90 |
| hevc | pillow-heif (libheif + x265, HEVC intra in HEIF: the closest thing to BPG here), 4:2:0 | quality 0-90 |
| jpeg2000 | Pillow (OpenJPEG), 9/7 wavelet, rate control to a target bits per pixel | target bpp |
| jpegxl | pillow-jxl-plugin (libjxl), effort 7 | quality 0-90 |

What a user would pick instead at our rates: downscale, code the small image, upscale after decoding. `avif-down`
is made directly at no more than our file's bytes (AT_OUR_BYTES), not swept: Lanczos down by 2, 3 and 4, AVIF as
above at the highest quality that fits, Lanczos back up; the factor with the best PSNR is kept. `avif-down-sr` is
the same at a quarter of each side, enlarged by Real-ESRGAN (`realesrgan-x4plus`, which our [train] extra ships;
bench/enlargers.py) instead of Lanczos: what a user with that network would run.
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, features

from bench.enlargers import LANCZOS, Enlarger, PretrainedNetwork, lanczos
from service.codec.base import highest_within

Setting = int | float

OURS = "ours"
"""The codec name our points carry; their setting is the model id (each rate point is one installed model id)."""
OURS_LABEL = "gancodec (ours)"


@dataclass(frozen=True)
class Encoded:
    """One real round trip: the file's bytes, the decoded pixels and the time each direction took."""

    data: bytes
    decoded: np.ndarray
    encode_seconds: float
    decode_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    """What the codec chose on its own, recorded with the point (downscaled: the factor and the quality)."""


@dataclass(frozen=True)
class Made:
    """A file made for a byte target, and how: what the sheet and the blind comparisons show and record."""

    setting: Setting | str
    data: bytes
    decoded: np.ndarray
    factor: int = 1
    """Downscaled by this much before coding (1: not at all)."""
    over_budget: bool = False
    """No setting fits the target: this is the fewest bytes the codec can write, more than it was allowed."""

    @property
    def name(self) -> str:
        """'q40', '1/3, q40', 'rate-controlled', or a model id."""
        if isinstance(self.setting, str):
            return self.setting
        quality = "rate-controlled" if isinstance(self.setting, float) else f"q{self.setting}"
        return quality if self.factor == 1 else f"1/{self.factor}, {quality}"


def pillow_encode(image: np.ndarray, fmt: str, **options: object) -> bytes:
    """The complete file Pillow writes (headers included), in memory: its length is the rate."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pillow_decode(data: bytes, fmt: str) -> np.ndarray:
    """Decode with the named format's reader only (no format guessing), to RGB uint8."""
    with Image.open(io.BytesIO(data), formats=[fmt]) as decoded:
        return np.asarray(decoded.convert("RGB"))


@dataclass(frozen=True)
class Codec:
    """A classical codec: how to write a file at a setting, how to read it back, and the settings swept."""

    name: str
    label: str
    fmt: str
    """Pillow's format name, used for both saving and opening."""
    setting_name: str
    settings: tuple[Setting, ...]
    """The sweep, lowest first; settings[0] is the codec's lowest quality."""
    options: Callable[[Setting, int], dict[str, object]]
    """(setting, pixels) -> Pillow save options."""
    search_range: tuple[int, int] | None = None
    """Integer settings that closest_to_bytes may try (None: a continuous rate target)."""
    version: Callable[[], str] = field(default=lambda: "")
    available: Callable[[], bool] = field(default=lambda: True)

    def encode(self, image: np.ndarray, setting: Setting) -> bytes:
        pixels = image.shape[0] * image.shape[1]
        return pillow_encode(image, self.fmt, **self.options(setting, pixels))

    def decode(self, data: bytes) -> np.ndarray:
        return pillow_decode(data, self.fmt)

    def round_trip(self, image: np.ndarray, setting: Setting) -> Encoded:
        start = time.perf_counter()
        data = self.encode(image, setting)
        middle = time.perf_counter()
        decoded = self.decode(data)
        end = time.perf_counter()
        return Encoded(data, decoded, middle - start, end - middle)

    def describe(self) -> dict[str, object]:
        """What identifies this codec's output: part of every cache key and of the JSON."""
        return {"name": self.name, "label": self.label, "setting": self.setting_name, "version": self.version()}

    def near_bytes(self, image: np.ndarray, target: int) -> Made:
        """The file nearest `target` bytes, by ratio (closest_to_bytes), decoded."""
        setting, data = closest_to_bytes(self, image, target)
        return Made(setting, data, self.decode(data))

    def within(self, image: np.ndarray, target: int) -> Made:
        """The highest setting whose file is at most `target` bytes, decoded; where even the lowest is larger, the
        lowest, flagged over budget."""
        if self.search_range is None:
            raise ValueError(f"{self.name} is aimed at a rate, not searched: it has no highest setting within bytes")
        encode = _memoised(self, image)
        setting = highest_within(encode, *self.search_range, target)
        if setting is None:
            setting = self.search_range[0]
        return Made(setting, encode(setting), self.decode(encode(setting)), over_budget=len(encode(setting)) > target)


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _pillow_version(feature: str) -> Callable[[], str]:
    return lambda: f"pillow {_package_version('pillow')}, {feature} {features.version(feature) or 'missing'}"


def _heif_ready() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return "x265" in str(pillow_heif.libheif_info().get("encoders", {}))


def _heif_version() -> str:
    import pillow_heif

    info = pillow_heif.libheif_info()
    return f"pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}, {info.get('HEIF')}"


def _jxl_ready() -> bool:
    try:
        import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
    except ImportError:
        return False
    return True


QUALITIES = (0, 2, 5, 10, 20, 30, 45, 60, 75, 90)
"""Quality sweep for the codecs whose scale starts at 0; dense at the bottom, where our rates are."""

CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec(
            "jpeg",
            "JPEG",
            "JPEG",
            "quality",
            (1, 2, 4, 7, 10, 15, 25, 40, 60, 80, 95),
            lambda q, _: {"quality": int(q), "optimize": True, "subsampling": "4:2:0"},
            (1, 95),
            _pillow_version("libjpeg_turbo"),
        ),
        Codec(
            "webp",
            "WebP",
            "WEBP",
            "quality",
            (*QUALITIES, 95),
            lambda q, _: {"quality": int(q), "method": 6},
            (0, 100),
            _pillow_version("webp"),
            lambda: bool(features.check("webp")),
        ),
        Codec(
            "avif",
            "AVIF",
            "AVIF",
            "quality",
            QUALITIES,
            lambda q, _: {"quality": int(q), "speed": 6, "subsampling": "4:2:0"},
            (0, 100),
            _pillow_version("avif"),
            lambda: bool(features.check("avif")),
        ),
        Codec(
            "hevc",
            "HEVC (HEIF, x265)",
            "HEIF",
            "quality",
            QUALITIES,
            lambda q, _: {"quality": int(q), "chroma": 420},
            (0, 100),
            _heif_version,
            _heif_ready,
        ),
        Codec(
            "jpeg2000",
            "JPEG 2000",
            "JPEG2000",
            "target bpp",
            (0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.7, 1.0),
            lambda bpp, _: {"quality_mode": "rates", "quality_layers": [24.0 / bpp], "irreversible": True},
            None,
            _pillow_version("jpg_2000"),
            lambda: bool(features.check("jpg_2000")),
        ),
        Codec(
            "jpegxl",
            "JPEG XL",
            "JXL",
            "quality",
            QUALITIES,
            lambda q, _: {"quality": int(q), "effort": 7},
            (0, 100),
            lambda: f"pillow-jxl-plugin {_package_version('pillow-jxl-plugin')}",
            _jxl_ready,
        ),
    )
}
"""JPEG 2000's target is a compression ratio against 24-bit RGB, so `target bpp` is met up to its headers."""


@dataclass(frozen=True)
class Downscaled:
    """A codec applied to a Lanczos-downscaled image and Lanczos-upscaled after decoding: at our rates, what a user
    does instead of coding every pixel. Made at no more than a byte budget (our file's bytes), never swept."""

    name: str
    label: str
    codec: Codec
    factors: tuple[int, ...] = (2, 3, 4)
    enlarger: Enlarger = LANCZOS

    def available(self) -> bool:
        return self.codec.available() and self.enlarger.available()

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": self.label,
            "setting": f"at most our file's bytes: {self.codec.label} at its highest fitting {self.codec.setting_name}"
            f" after a Lanczos downscale by {', '.join(map(str, self.factors))} (the best PSNR kept)",
            "version": self.codec.version(),
            **self.enlarger.describe(),
        }

    def _size(self, image: np.ndarray, factor: int) -> tuple[int, int]:
        return max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor))

    def _made(self, image: np.ndarray, factor: int, target: int) -> tuple[Made, float]:
        """The factor's file at the highest quality within `target` bytes, decoded and enlarged back, and the
        seconds that decoding and enlarging took."""
        small = self.codec.within(lanczos(image, *self._size(image, factor)), target)
        start = time.perf_counter()
        enlarged = self.enlarger.enlarge(self.codec.decode(small.data), image.shape[1], image.shape[0])
        seconds = time.perf_counter() - start
        return Made(small.setting, small.data, enlarged, factor, small.over_budget), seconds

    def _chosen(self, image: np.ndarray, target: int) -> tuple[Made, float]:
        """Of every factor's file, the one with the best PSNR (a person would pick by eye; PSNR is the fair
        automatic pick); where no factor fits, the smallest file, over budget."""
        from bench.metrics import psnr  # bench.metrics imports torch: only when this codec runs

        made = [self._made(image, factor, target) for factor in self.factors]
        fitting = [m for m in made if not m[0].over_budget]
        if not fitting:
            return min(made, key=lambda m: len(m[0].data))
        return max(fitting, key=lambda m: psnr(image, m[0].decoded))

    def within(self, image: np.ndarray, target: int) -> Made:
        """The best factor's file within `target` bytes, enlarged back (_chosen)."""
        return self._chosen(image, target)[0]

    near_bytes = within

    def round_trip(self, image: np.ndarray, target: int) -> Encoded:
        """The chosen file, timed: its encode made again (downscale and code); its decode and enlargement as timed
        while choosing, so a slow enlarger runs once per factor (the choice itself is not timed)."""
        chosen, decode_seconds = self._chosen(image, target)
        start = time.perf_counter()
        data = self.codec.encode(lanczos(image, *self._size(image, chosen.factor)), chosen.setting)
        encode_seconds = time.perf_counter() - start
        details = {"factor": chosen.factor, "quality": chosen.setting, "over_budget": chosen.over_budget}
        return Encoded(data, chosen.decoded, encode_seconds, decode_seconds, details)


_REAL_ESRGAN = PretrainedNetwork("realesrgan-x4plus")
AT_OUR_BYTES: dict[str, Downscaled] = {
    codec.name: codec
    for codec in (
        Downscaled("avif-down", "AVIF, downscaled", CODECS["avif"]),
        Downscaled(
            "avif-down-sr", "AVIF, downscaled, + Real-ESRGAN", CODECS["avif"], (_REAL_ESRGAN.factor,), _REAL_ESRGAN
        ),
    )
}
"""Codecs made per image at no more than our file's bytes at each rate point (bench.evaluate), not swept."""
AnyCodec = Codec | Downscaled


def label(name: str) -> str:
    """The name a reader sees for a codec name found in the points (ours, a classical codec, or anything else)."""
    if name == OURS:
        return OURS_LABEL
    known = {**CODECS, **AT_OUR_BYTES}
    return known[name].label if name in known else name


def _chosen(table: dict[str, Any], names: Sequence[str] | None) -> dict[str, Any]:
    return table if names is None else {name: table[name] for name in table if name in names}


def available(names: Sequence[str] | None = None) -> dict[str, Codec]:
    """The named classical codecs (default: all) that this machine can run, in CODECS order."""
    return {name: codec for name, codec in _chosen(CODECS, names).items() if codec.available()}


def available_at_our_bytes(names: Sequence[str] | None = None) -> dict[str, Downscaled]:
    """The named AT_OUR_BYTES codecs (default: all) that this machine can run."""
    return {name: codec for name, codec in _chosen(AT_OUR_BYTES, names).items() if codec.available()}


def missing(names: Sequence[str] | None = None) -> list[str]:
    """The named codecs of either kind (default: all) whose library is not installed here: recorded, so a gap is
    never silent."""
    chosen = {**_chosen(CODECS, names), **_chosen(AT_OUR_BYTES, names)}
    return [name for name, codec in chosen.items() if not codec.available()]


def _distance(size: int, target: int) -> float:
    """How far a size is from a target, by ratio: 2x over and 2x under are equally far."""
    return abs(math.log(max(size, 1) / max(target, 1)))


def _memoised(codec: Codec, image: np.ndarray) -> Callable[[Setting], bytes]:
    """codec.encode(image, setting), each setting encoded once: searches revisit their neighbours."""
    return functools.cache(lambda setting: codec.encode(image, setting))


def closest_to_bytes(codec: Codec, image: np.ndarray, target: int) -> tuple[Setting, bytes]:
    """The setting (and file) whose size is nearest `target` bytes, by ratio; the lowest setting if none gets as small.

    Integer settings: bisection for the highest setting at or under the target, then the nearer of it and the next.
    A rate target (JPEG 2000): aim at the target, then correct the aim by the measured ratio a few times.
    """
    if codec.search_range is None:
        pixels = image.shape[0] * image.shape[1]
        aim = 8.0 * target / pixels
        trials: list[tuple[Setting, bytes]] = []
        for _ in range(4):
            data = codec.encode(image, aim)
            trials.append((aim, data))
            aim *= target / max(len(data), 1)
        return min(trials, key=lambda t: _distance(len(t[1]), target))
    low, high = codec.search_range
    encode = _memoised(codec, image)
    fitting = highest_within(encode, low, high, target)
    if fitting is None:
        return low, encode(low)
    nearest = (fitting, fitting + 1) if fitting < high else (fitting,)
    best = min(nearest, key=lambda s: _distance(len(encode(s)), target))
    return best, encode(best)

"""A model directory's manifest.json: read, validate and fingerprint it (the contract with models/export.py).

Format version 2 adds what selective compression (SC) needs: the label map's class names and resolution. GC
models keep version 1, so older runtimes still load them; they refuse SC models, whose generator they could
not feed.

Format version 3 is the hybrid codec (service/codec/base.py): a `base_layer` section says how the image is made
small and coded by AVIF, the one graph (`generator`, the upscaler) paints the full image from the decoded base, and
each rate point is a target in bits per pixel instead of a count of latent channels. There is no encoder graph, no
quantiser and no entropy table. A hybrid model with mode sc names classes as version 2 does, its label map at the
base's resolution; they do not enter its fingerprint, since its files decode without them (pipeline.py).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from service.codec.base import BaseLayer
from service.codec.container import FINGERPRINT_BYTES, MODEL_ID_PATTERN
from service.codec.entropy import MAX_PRECISION, context_count
from service.codec.errors import InvalidModel

FORMAT = "gancodec-model"
FORMAT_VERSION = 1
SELECTIVE_FORMAT_VERSION = 2
HYBRID_FORMAT_VERSION = 3
MAX_CLASSES = 256
MANIFEST_NAME = "manifest.json"
GRAPHS = ("encoder", "generator")
HYBRID_GRAPHS = ("generator",)
INT8_SUFFIX = "_int8"
"""Optional graphs: a graph's name plus this is the graph with its inner convolutions in int8 (models/quantize.py),
which the CPU runs in its place."""
OPTIONAL_GRAPHS = tuple(name + INT8_SUFFIX for name in GRAPHS)
KNOWN_MODES = ("gc", "sc")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FINGERPRINT_DOMAIN = b"gancodec-model-fingerprint-v1\x00"
_CONTEXT_TAG = b"contexts-above3-left\x00"
_BASE_LAYER_TAG = b"base-layer-avif\x00"
MAX_BITS_PER_PIXEL = 24.0
CONTEXT_KIND = "above3-left"
"""entropy.contexts.kind: a symbol's context is the three symbols above it and the one to its left; the symbols
are coded in wavefronts (entropy.py)."""


@dataclass(frozen=True)
class RatePoint:
    """One rate of a model with nested latent channels: files code only the first `channels` of them."""

    id: str
    channels: int
    metrics: dict[str, Any] = field(default_factory=dict)
    bits_per_pixel: float = 0.0
    """Hybrid models: the file size the encoder aims at, per pixel of the image (it never goes over, where the
    base layer's lowest quality fits); 0 for latent models, whose size follows from the image."""


@dataclass(frozen=True)
class Manifest:
    directory: Path
    id: str
    version: str
    graph_files: dict[str, Path]
    """Absolute path of each graph ("encoder", "generator", and their int8 variants where there are any)."""
    graph_sha256: dict[str, str]
    latent_channels: int
    centres: tuple[float, ...]
    downsampling: int
    noise_channels: int
    modes: tuple[str, ...]
    precision: int
    frequencies: tuple[tuple[int, ...], ...]
    """Static tables: one per latent channel."""
    context_frequencies: tuple[tuple[tuple[int, ...], ...], ...] = ()
    """Optional context tables: per latent channel, one per context of the coded neighbours (entropy.py)."""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    """SC: the label map's class names by id; empty for GC-only models."""
    label_downsampling: int = 0
    """SC: the label map is carried at 1/this of the image's resolution (a power of two dividing downsampling)."""
    rate_points: tuple[RatePoint, ...] = ()
    """Nested rates, each installed under its own id; empty: one rate, all channels, under the manifest's id."""
    default_rate_point: str = ""
    base_layer: BaseLayer | None = None
    """Hybrid models (format version 3): how the base image is made and coded; None for latent models."""

    @property
    def selective(self) -> bool:
        return "sc" in self.modes

    @property
    def conditioned(self) -> bool:
        """Whether the generator takes the preservation mask and label map: latent SC models' does; a hybrid
        model's upscaler paints from the base alone, in either mode."""
        return self.selective and not self.hybrid

    @property
    def hybrid(self) -> bool:
        return self.base_layer is not None

    def entropy_tables(self, channels: int) -> tuple[tuple[Any, ...], ...]:
        """The tables that code the first `channels` latent channels: the context tables where there are any."""
        return (self.context_frequencies or self.frequencies)[:channels]

    @property
    def points(self) -> tuple[RatePoint, ...]:
        """The rates this model codes at, each a model id of its own."""
        return self.rate_points or (RatePoint(self.id, self.latent_channels, self.metrics),)

    @property
    def default_point(self) -> RatePoint:
        return next((p for p in self.points if p.id == self.default_rate_point), self.points[-1])

    def fingerprint(self, point: RatePoint | None = None) -> bytes:
        """8 bytes naming everything decoding depends on: the graphs (int8 variants too, where there are any),
        the quantiser/entropy tables and, for nested rates, how many channels the file codes.

        sha256 over a fixed binary layout (docs/bitstream.md), not over JSON text, so the manifest's formatting
        and free-form fields (metrics, training) do not change it.
        """
        digest = self._digest.copy()
        if self.rate_points:
            digest.update(struct.pack("<I", (point or self.default_point).channels))
        return digest.digest()[:FINGERPRINT_BYTES]

    @cached_property
    def _digest(self) -> Any:
        digest = hashlib.sha256(_FINGERPRINT_DOMAIN)
        for name in self.graphs:
            digest.update(bytes.fromhex(self.graph_sha256[name]))
        for name in OPTIONAL_GRAPHS:
            if name in self.graph_sha256:
                digest.update(name.encode() + b"\x00" + bytes.fromhex(self.graph_sha256[name]))
        levels = len(self.centres)
        digest.update(struct.pack("<4I", self.latent_channels, levels, self.downsampling, self.noise_channels))
        digest.update(struct.pack(f"<{levels}d", *self.centres))
        digest.update(struct.pack("<I", self.precision))
        for row in self.frequencies:
            digest.update(struct.pack(f"<{levels}I", *row))
        if self.context_frequencies:
            digest.update(_CONTEXT_TAG)
            for channel in self.context_frequencies:
                for row in channel:
                    digest.update(struct.pack(f"<{levels}I", *row))
        if self.conditioned:  # a hybrid file decodes without its mask or labels
            digest.update(struct.pack("<2I", len(self.classes), self.label_downsampling))
        if self.base_layer is not None:
            digest.update(_BASE_LAYER_TAG)
        return digest

    @property
    def graphs(self) -> tuple[str, ...]:
        """The graphs the model must have: the upscaler alone (as `generator`) for hybrid models."""
        return HYBRID_GRAPHS if self.hybrid else GRAPHS


def load_manifest(directory: Path) -> Manifest:
    """Read and validate `directory`/manifest.json, including each graph's sha256 against the file on disk."""
    path = directory / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidModel(f"{path}: cannot read the manifest: {error}") from None
    try:
        manifest = _parse(directory.resolve(), data)
    except KeyError as error:
        raise InvalidModel(f"{path}: invalid manifest: missing field {error}") from None
    except (TypeError, ValueError) as error:
        raise InvalidModel(f"{path}: invalid manifest: {error}") from None
    for name in manifest.graph_files:
        actual = sha256_file(manifest.graph_files[name])
        if actual != manifest.graph_sha256[name]:
            raise InvalidModel(f"{manifest.graph_files[name]}: sha256 {actual} differs from the manifest's")
    return manifest


_NUMERIC_ARRAY = re.compile(r"\[[-+0-9.eE,\s\[\]]*\]")


def manifest_text(data: dict[str, Any]) -> str:
    """manifest.json's text: indented for reading, each array of numbers (frequency tables, context tables,
    centres) on one line, so that thousands of table entries do not become thousands of lines."""
    indented = json.dumps(data, indent=1)
    return (
        _NUMERIC_ARRAY.sub(lambda match: json.dumps(json.loads(match.group()), separators=(",", ":")), indented) + "\n"
    )


def sha256_file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise InvalidModel(f"cannot read graph {path}: {error}") from None


def _parse(directory: Path, data: Any) -> Manifest:
    if not isinstance(data, dict):
        raise TypeError("the manifest is not a JSON object")
    version = data["format_version"]
    versions = (FORMAT_VERSION, SELECTIVE_FORMAT_VERSION, HYBRID_FORMAT_VERSION)
    if data["format"] != FORMAT or version not in versions:
        raise ValueError(f"expected format {FORMAT!r} version {', '.join(map(str, versions))}")
    model_id = _typed(data, "id", str)
    if not MODEL_ID_PATTERN.fullmatch(model_id):
        raise ValueError(f"id {model_id!r} is not 1-64 characters of [A-Za-z0-9._-]")
    graph_files, graph_sha256 = _graphs(directory, data, HYBRID_GRAPHS if version == HYBRID_FORMAT_VERSION else GRAPHS)
    if version == HYBRID_FORMAT_VERSION:
        return _parse_hybrid(directory, data, model_id, graph_files, graph_sha256)
    channels = _positive(data, "latent_channels")
    centres = tuple(float(_check(c, (int, float), "a centre")) for c in _typed(data, "centres", list))
    if not 2 <= len(centres) <= 256 or not all(math.isfinite(c) for c in centres):
        raise ValueError("centres must be 2-256 finite numbers")
    if any(a >= b for a, b in itertools.pairwise(centres)):
        raise ValueError("centres must be strictly increasing")
    noise_channels = _typed(data, "noise_channels", int)
    if noise_channels < 0:
        raise ValueError("noise_channels must be >= 0")
    modes = _modes(data)
    downsampling = _positive(data, "downsampling")
    classes, label_downsampling = (), 0
    if "sc" in modes:
        if version != SELECTIVE_FORMAT_VERSION:
            raise ValueError(f"mode sc needs format version {SELECTIVE_FORMAT_VERSION} (classes, label_downsampling)")
        classes, label_downsampling = _selective(data, downsampling)
    entropy = _typed(data, "entropy", dict)
    precision = _typed(entropy, "precision", int)
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"entropy.precision must be in 1..{MAX_PRECISION}")
    frequencies = tuple(
        tuple(_check(f, int, "a frequency") for f in _check(row, list, "a frequency table"))
        for row in _typed(entropy, "frequencies", list)
    )
    if len(frequencies) != channels:
        raise ValueError(f"entropy.frequencies needs one table per latent channel ({channels})")
    for row in frequencies:
        if len(row) != len(centres) or min(row) < 1 or sum(row) != 1 << precision:
            raise ValueError(f"each frequency table needs {len(centres)} integers >= 1 summing to 2**{precision}")
    context_frequencies = _context_tables(entropy, channels, len(centres), precision) if "contexts" in entropy else ()
    rate_points, default_rate_point = _rate_points(data, channels)
    return Manifest(
        directory=directory,
        id=model_id,
        version=str(data["version"]),
        graph_files=graph_files,
        graph_sha256=graph_sha256,
        latent_channels=channels,
        centres=centres,
        downsampling=downsampling,
        noise_channels=noise_channels,
        modes=modes,
        precision=precision,
        frequencies=frequencies,
        context_frequencies=context_frequencies,
        training=_typed(data, "training", dict) if "training" in data else {},
        metrics=_typed(data, "metrics", dict) if "metrics" in data else {},
        classes=classes,
        label_downsampling=label_downsampling,
        rate_points=rate_points,
        default_rate_point=default_rate_point,
    )


def _graphs(directory: Path, data: dict[str, Any], required: tuple[str, ...]) -> tuple[dict[str, Path], dict[str, str]]:
    """Each required graph's file (a plain name inside the model directory) and sha256, and its int8 variant's
    where the manifest names one."""
    graph_files, graph_sha256 = {}, {}
    graphs = _typed(data, "graphs", dict)
    for name in required + tuple(name + INT8_SUFFIX for name in required if name + INT8_SUFFIX in graphs):
        entry = graphs[name]
        file = _typed(entry, "file", str)
        resolved = (directory / file).resolve()
        if resolved.parent != directory:
            raise ValueError(f"graph file {file!r} must be a plain file name inside the model directory")
        sha = _typed(entry, "sha256", str).lower()
        if not _SHA256.fullmatch(sha):
            raise ValueError(f"graphs.{name}.sha256 is not 64 hex digits")
        graph_files[name], graph_sha256[name] = resolved, sha
    return graph_files, graph_sha256


def _parse_hybrid(
    directory: Path, data: dict[str, Any], model_id: str, graph_files: dict[str, Path], graph_sha256: dict[str, str]
) -> Manifest:
    """Format version 3: the base layer's settings and rate points in bits per pixel."""
    section = _typed(data, "base_layer", dict)
    if _typed(section, "codec", str) != "avif":
        raise ValueError("base_layer.codec must be 'avif'")
    factor = _positive(section, "factor")
    speed = _typed(section, "speed", int)
    subsampling = _typed(section, "subsampling", str)
    if factor not in (2, 3, 4) or not 0 <= speed <= 10 or subsampling not in ("4:2:0", "4:4:4"):
        raise ValueError("base_layer needs factor 2-4, speed 0-10 and subsampling '4:2:0' or '4:4:4'")
    if "rate_points" not in data:
        raise KeyError("rate_points")
    rate_points, default_rate_point = _rate_points(data, 3, hybrid=True)
    modes = _modes(data) if "modes" in data else ("gc",)
    classes, label_downsampling = _selective(data, factor) if "sc" in modes else ((), 0)
    if classes and label_downsampling != factor:
        raise ValueError("a hybrid model's label map is at the base's resolution: label_downsampling = factor")
    return Manifest(
        directory=directory,
        id=model_id,
        version=str(data["version"]),
        graph_files=graph_files,
        graph_sha256=graph_sha256,
        latent_channels=3,
        centres=(),
        downsampling=factor,
        noise_channels=0,
        modes=modes,
        precision=0,
        frequencies=(),
        training=_typed(data, "training", dict) if "training" in data else {},
        metrics=_typed(data, "metrics", dict) if "metrics" in data else {},
        classes=classes,
        label_downsampling=label_downsampling,
        rate_points=rate_points,
        default_rate_point=default_rate_point,
        base_layer=BaseLayer(factor, speed, subsampling),
    )


def _context_tables(
    entropy: dict[str, Any], channels: int, levels: int, precision: int
) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """entropy.contexts: per channel, one table per context of the coded neighbours (`context_count(levels)`)."""
    contexts = _typed(entropy, "contexts", dict)
    if _typed(contexts, "kind", str) != CONTEXT_KIND:
        raise ValueError(f"entropy.contexts.kind must be {CONTEXT_KIND!r}")
    tables = _typed(contexts, "frequencies", list)
    if len(tables) != channels or any(
        not isinstance(channel, list) or len(channel) != context_count(levels) for channel in tables
    ):
        raise ValueError(f"entropy.contexts.frequencies needs {context_count(levels)} tables per latent channel")
    parsed = tuple(
        tuple(tuple(_check(f, int, "a frequency") for f in _check(row, list, "a frequency table")) for row in channel)
        for channel in tables
    )
    for channel in parsed:
        for row in channel:
            if len(row) != levels or min(row) < 1 or sum(row) != 1 << precision:
                raise ValueError(f"each context table needs {levels} integers >= 1 summing to 2**{precision}")
    return parsed


def _rate_points(data: dict[str, Any], channels: int, hybrid: bool = False) -> tuple[tuple[RatePoint, ...], str]:
    """Optional rates, and which is the default: unique ids, each coding 1..latent_channels nested channels (latent
    models), or each aiming at its own bits per pixel (hybrid models, all channels)."""
    if "rate_points" not in data:
        return (), ""
    points = []
    for entry in _typed(data, "rate_points", list):
        point_id = _typed(_check(entry, dict, "a rate point"), "id", str)
        if not MODEL_ID_PATTERN.fullmatch(point_id):
            raise ValueError(f"rate point id {point_id!r} is not 1-64 characters of [A-Za-z0-9._-]")
        metrics = _typed(entry, "metrics", dict) if "metrics" in entry else {}
        if hybrid:
            bpp = float(_typed(entry, "bits_per_pixel", (int, float)))
            if not 0 < bpp <= MAX_BITS_PER_PIXEL:
                raise ValueError(f"rate point {point_id}: bits_per_pixel must be in (0, {MAX_BITS_PER_PIXEL:g}]")
            points.append(RatePoint(point_id, channels, metrics, bpp))
            continue
        count = _positive(entry, "channels")
        if count > channels:
            raise ValueError(f"rate point {point_id} codes {count} channels of {channels}")
        points.append(RatePoint(point_id, count, metrics))
    rates = [p.bits_per_pixel for p in points] if hybrid else [p.channels for p in points]
    if not points or len({p.id for p in points}) != len(points) or len(set(rates)) != len(points):
        raise ValueError("rate_points must be a non-empty list with unique ids and rates")
    default = _typed(data, "default_rate_point", str) if "default_rate_point" in data else points[-1].id
    if default not in {p.id for p in points}:
        raise ValueError(f"default_rate_point {default!r} is not one of the rate points")
    return tuple(points), default


def _modes(data: dict[str, Any]) -> tuple[str, ...]:
    modes = tuple(_typed(data, "modes", list))
    if not modes or any(mode not in KNOWN_MODES for mode in modes):
        raise ValueError(f"modes must be a non-empty subset of {list(KNOWN_MODES)}")
    return modes


def _selective(data: dict[str, Any], downsampling: int) -> tuple[tuple[str, ...], int]:
    """Class names (unique, no commas: requests list them comma-separated) and the label map's resolution."""
    classes = tuple(_check(name, str, "a class name") for name in _typed(data, "classes", list))
    if not 1 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be 1-{MAX_CLASSES} unique names")
    # Not numbers: ASCII digits name a class by id (selection.CLASS_ID). str.isdigit() refuses other scripts' digits
    # too ('٣', '²'): no longer ambiguous, since ids are ASCII only, but they still read as numbers.
    if any(not name.strip() or name != name.strip() or "," in name or name.isdigit() for name in classes):
        raise ValueError("class names must be non-empty, without commas or surrounding spaces, and not numbers")
    label_downsampling = _positive(data, "label_downsampling")
    ratio, rest = divmod(downsampling, label_downsampling)
    if rest or ratio & (ratio - 1):
        raise ValueError("label_downsampling must divide downsampling by a power of two")
    return classes, label_downsampling


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    return _check(data[key], kind, key)


def _check(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """`value` if it is of `kind`; JSON booleans are refused where numbers are expected."""
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{what} has the wrong type ({type(value).__name__})")
    return value


def _positive(data: dict[str, Any], key: str) -> int:
    value = _typed(data, key, int)
    if value < 1:
        raise ValueError(f"{key} must be >= 1")
    return value

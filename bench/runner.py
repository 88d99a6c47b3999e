"""Measure every subject (our codec at each model, each classical codec at each setting, each codec made at our
bytes at each model) on one image at a time, through the real encode and decode paths, taking what the cache
already holds."""

from __future__ import annotations

import importlib.metadata
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bench import learned
from bench.cache import PointCache, key_of
from bench.codecs import OURS, Codec, Downscaled, Encoded, Setting
from bench.images import TestImage
from bench.metrics import METRICS_VERSION, Reference, SwdSettings
from service.codec import Registry, compress, decompress
from service.codec.container import DETAIL_VERSION
from service.codec.model import default_providers


@dataclass(frozen=True)
class Subject:
    """One thing to measure on every image: a codec at one setting."""

    codec: str
    setting: Setting | str
    identity: dict[str, Any]
    """Everything besides the image and the budget that decides the result (library versions, model fingerprint)."""
    round_trip: Callable[[np.ndarray, int | None], Encoded] = field(compare=False, repr=False)
    """(image, byte budget) -> the real round trip; the budget is None unless `budget` names a rate point."""
    budget: str | None = None
    """The rate point (our model id) whose file on the same image is this subject's byte budget."""


def classical_subjects(codecs: Iterable[Codec]) -> list[Subject]:
    """Every setting of every codec's sweep, lowest first."""
    subjects = []
    for codec in codecs:
        for setting in codec.settings:
            subjects.append(
                Subject(codec.name, setting, codec.describe(), lambda x, _, c=codec, s=setting: c.round_trip(x, s))
            )
    return subjects


def at_our_bytes_subjects(
    codecs: Iterable[Downscaled], model_ids: Iterable[str], slow_ids: Collection[str]
) -> list[Subject]:
    """Each codec made at no more than our file's bytes, once per rate point (a slow one, enlarged by a network,
    only at `slow_ids`); list them after ours_subjects."""
    return [
        Subject(codec.name, model_id, codec.describe(), lambda x, budget, c=codec: c.round_trip(x, budget), model_id)
        for codec in codecs
        for model_id in model_ids
        if not codec.enlarger.slow or model_id in slow_ids
    ]


def ours_subjects(registry: Registry, model_ids: Iterable[str]) -> list[Subject]:
    """One subject per model id (each rate point of a nested-rate model is its own id), warmed up first so that its
    timings leave out onnxruntime's session start."""
    subjects = []
    for model_id in model_ids:
        model = registry.get(model_id)
        warm = np.zeros((64, 64, 3), np.uint8)
        decompress(compress(warm, model), registry)

        def round_trip(image: np.ndarray, _budget: int | None, model=model) -> Encoded:
            start = time.perf_counter()
            data = compress(image, model)
            middle = time.perf_counter()
            decoded = decompress(data, registry)
            return Encoded(data, decoded, middle - start, time.perf_counter() - middle)

        identity = {
            "name": OURS,
            "model": model.id,
            "channels": model.channels,
            "fingerprint": model.fingerprint.hex(),
            "format_version": DETAIL_VERSION,  # what the pipeline does around the graphs (detail restoration)
            "hybrid_base": "compact",  # hybrid files store their base without the AVIF boxes (compact_avif.py)
            "onnxruntime": importlib.metadata.version("onnxruntime"),
            "providers": list(model.options.providers or default_providers()),
        }
        subjects.append(Subject(OURS, model.id, identity, round_trip))
    return subjects


@dataclass
class Learned:
    """The weight-needing measures that can run here (None where they cannot) and why not."""

    lpips: learned.Lpips | None = None
    fid: learned.FidFeatures | None = None
    status: dict[str, str] = field(default_factory=dict)

    @classmethod
    def detect(cls, enabled: bool = True) -> Learned:
        found = cls()
        for name, status, build in (
            ("lpips", learned.lpips_status, learned.Lpips),
            ("fid", learned.fid_status, learned.FidFeatures),
        ):
            reason = status() if enabled else "turned off (--no-learned)"
            if reason is None:
                setattr(found, name, build())
                found.status[name] = "runs (weights found locally)"
            else:
                found.status[name] = f"not run: {reason}"
        return found


@dataclass
class Evaluator:
    """Measures each subject on one image at a time, and keeps the counts and FID features the report needs."""

    subjects: list[Subject]
    cache: PointCache
    learned: Learned
    machine: str
    swd_settings: SwdSettings = field(default_factory=SwdSettings)
    measured: int = 0
    reused: int = 0
    fid_features: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    """(codec, setting) -> feature arrays per image; ("original", "") holds the originals'."""

    def _key(self, image: TestImage, subject: Subject, budget: int | None) -> str:
        """Everything that decides a point's numbers, so a cached point is reused exactly when it would not change
        (a subject made within our bytes: those bytes, not our model's fingerprint)."""
        return key_of(
            {
                "image": image.sha256,
                "codec": subject.identity,
                "setting": subject.setting,
                "budget": budget,
                "metrics": METRICS_VERSION,
                "swd": asdict(self.swd_settings),
                "lpips": self.learned.lpips is not None,
            }
        )

    def evaluate(self, image: TestImage, progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
        """Every subject's point on this image (bytes, bpp, metrics, encode and decode seconds)."""
        reference: Reference | None = None
        points = []
        our_bytes: dict[str, int] = {}
        for subject in self.subjects:
            if subject.budget is not None and subject.budget not in our_bytes:
                raise ValueError(f"{subject.codec} is made within {subject.budget}'s bytes: list that rate point first")
            budget = None if subject.budget is None else our_bytes[subject.budget]
            key = self._key(image, subject, budget)
            point = self.cache.get(image.sha256, key)
            features = self.cache.get_array(image.sha256, key) if self.learned.fid else None
            if point is None or (self.learned.fid is not None and features is None):
                if reference is None:
                    reference = Reference(image.pixels, self.swd_settings)
                progress(f"{image.name}: {subject.codec} {subject.setting}")
                point, decoded = self._measure(image, subject, budget, reference)
                self.cache.put(image.sha256, key, point)
                if self.learned.fid is not None:
                    features = self.learned.fid(decoded)
                    self.cache.put_array(image.sha256, key, features)
                self.measured += 1
            else:
                self.reused += 1
            if features is not None:
                self.fid_features[(subject.codec, str(subject.setting))].append(features)
            if subject.codec == OURS:
                our_bytes[str(subject.setting)] = point["bytes"]
            points.append(point)
        if self.learned.fid is not None:
            self.fid_features[("original", "")].append(self._original_features(image))
        return points

    def _measure(
        self, image: TestImage, subject: Subject, budget: int | None, reference: Reference
    ) -> tuple[dict[str, Any], np.ndarray]:
        result = subject.round_trip(image.pixels, budget)
        width, height = image.size
        point: dict[str, Any] = {
            "codec": subject.codec,
            "setting": subject.setting,
            "image": image.name,
            "bytes": len(result.data),
            "bpp": 8.0 * len(result.data) / (width * height),
            "encode_seconds": result.encode_seconds,
            "decode_seconds": result.decode_seconds,
            "machine": self.machine,
            **result.details,
        }
        point.update(reference.measure(result.decoded))
        if self.learned.lpips is not None:
            point["lpips"] = self.learned.lpips(image.pixels, result.decoded)
        return point, result.decoded

    def _original_features(self, image: TestImage) -> np.ndarray:
        key = key_of({"image": image.sha256, "original": True, "fid": learned.FID_WEIGHTS})
        features = self.cache.get_array(image.sha256, key)
        if features is None:
            assert self.learned.fid is not None
            features = self.learned.fid(image.pixels)
            self.cache.put_array(image.sha256, key, features)
        return features

    def fid(self) -> dict[str, dict[str, float]]:
        """Patch FID of each (codec, setting) against the originals, over all images evaluated so far."""
        originals = self.fid_features.get(("original", ""))
        if not originals:
            return {}
        reference = np.concatenate(originals)
        results: dict[str, dict[str, float]] = defaultdict(dict)
        for (codec, setting), arrays in self.fid_features.items():
            if codec != "original":
                results[codec][setting] = learned.frechet_distance(reference, np.concatenate(arrays))
        return dict(results)

    def reset_fid(self) -> None:
        """FID is per set: start a new set's features."""
        self.fid_features.clear()

"""The installed models: discovered from the zoo and caller-given directories, looked up by id or by a file's header."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from service.codec.container import Header
from service.codec.errors import ModelMismatch, UnknownModel
from service.codec.manifest import MANIFEST_NAME, load_manifest
from service.codec.model import Model, RuntimeOptions

ZOO = Path(__file__).resolve().parent.parent / "zoo"
"""Models shipped with the package: service/zoo/<model-id>/."""
PREFERRED_DEFAULT = "gc-hybrid-0.04"


def model_directories(root: Path) -> list[Path]:
    """`root` itself if it holds a manifest, else its sub-directories that do (sorted, so discovery is stable)."""
    if (root / MANIFEST_NAME).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(child for child in root.iterdir() if (child / MANIFEST_NAME).is_file())


class Registry:
    """Models by id; several versions of one id may coexist, and a file finds its own by fingerprint."""

    def __init__(self, models: Iterable[Model], default_id: str | None = None) -> None:
        self._models = list(models)
        self._default_id = default_id

    @classmethod
    def discover(
        cls,
        extra_dirs: Sequence[Path] = (),
        *,
        include_zoo: bool = True,
        default_id: str | None = None,
        options: RuntimeOptions | None = None,
    ) -> Registry:
        """Load every model under `extra_dirs` (each a model directory or a folder of them), then the zoo.

        Earlier directories win when two give the same id, so an operator's directory overrides the zoo for
        compression; decoding still finds any installed version by its fingerprint. Broken models raise
        InvalidModel: a service should not start with half its models silently missing.
        """
        roots = [*extra_dirs, ZOO] if include_zoo else list(extra_dirs)
        seen: set[Path] = set()
        models = []
        for root in roots:
            for directory in model_directories(root):
                if directory.resolve() not in seen:
                    seen.add(directory.resolve())
                    models.extend(Model(load_manifest(directory), options).rate_points())
        return cls(models, default_id)

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    @property
    def default_id(self) -> str:
        """The configured default, else gc-hybrid-0.04 when installed, else the only installed model (or the
        default rate point of the only installed model with several)."""
        if self._default_id is not None:
            return self._default_id
        ids = sorted({model.id for model in self._models})
        if PREFERRED_DEFAULT in ids:
            return PREFERRED_DEFAULT
        if len(ids) == 1:
            return ids[0]
        directories = {model.manifest.directory for model in self._models}
        if len(directories) == 1:
            return self._models[0].manifest.default_point.id
        if not ids:
            raise UnknownModel("no models are installed (add a model directory with --model-dir)")
        raise UnknownModel(f"several models are installed ({', '.join(ids)}): choose one by id")

    def get(self, model_id: str | None = None) -> Model:
        """The model to compress with: the first installed with `model_id` (None: the default)."""
        wanted = model_id or self.default_id
        for model in self._models:
            if model.id == wanted:
                return model
        raise UnknownModel(f"model {wanted!r} is not installed; installed: {self._installed()}")

    def for_header(self, header: Header) -> Model:
        """The exact model that made a file, matched by id and fingerprint."""
        same_id = [model for model in self._models if model.id == header.model_id]
        for model in same_id:
            if model.fingerprint == header.fingerprint:
                return model
        made_by = f"the file was made by model {header.model_id!r} (fingerprint {header.fingerprint.hex()})"
        if same_id:
            installed = ", ".join(model.fingerprint.hex() for model in same_id)
            raise ModelMismatch(
                f"{made_by}, but the installed {header.model_id!r} is a different model (fingerprint {installed})"
            )
        raise UnknownModel(f"{made_by}, which is not installed; installed: {self._installed()}")

    def _installed(self) -> str:
        return ", ".join(sorted({model.id for model in self._models})) or "none"

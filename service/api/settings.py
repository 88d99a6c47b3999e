"""The service's settings, all read from `GANCODEC_*` environment variables (docs/service.md lists them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.codec import DEFAULT_MAX_PIXELS, DEFAULT_TILE_PIXELS, MIN_TILE_PIXELS, RuntimeOptions

ENV_PREFIX = "GANCODEC_"


class Settings(BaseSettings):
    """Each field is the environment variable `GANCODEC_<FIELD>`; lists are plain separated strings, not JSON."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    model_dirs: Annotated[list[Path], NoDecode] = Field(
        default=[],
        description=f"Model directories, or folders of them, loaded before the zoo ({os.pathsep}-separated).",
    )
    include_zoo: bool = Field(default=True, description="Also load the models shipped in service/zoo.")
    model: str | None = Field(
        default=None, description="Default model id (unset: gc-hybrid-0.04 if installed, else the only model)."
    )
    threads: Annotated[int, Field(ge=0)] = Field(
        default=0, description="onnxruntime intra-op threads per graph (0: one per core)."
    )
    providers: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="onnxruntime execution providers in order, comma-separated (empty: CUDA if available, then CPU).",
    )
    max_upload_bytes: PositiveInt = Field(
        default=32 * 1024 * 1024, description="Largest request body, checked before any parsing (413)."
    )
    max_pixels: PositiveInt = Field(
        default=DEFAULT_MAX_PIXELS, description="Largest image or bitstream, width * height, read from headers (413)."
    )
    tile_pixels: Annotated[int, Field(ge=MIN_TILE_PIXELS)] = Field(
        default=DEFAULT_TILE_PIXELS,
        description="Largest region a network runs on at once; larger images go in overlapping tiles (bounds memory).",
    )
    int8: bool = Field(
        default=True,
        description="On the CPU, run a model's int8 graphs where it has them (faster; false: the float graphs).",
    )
    concurrency: PositiveInt = Field(default=1, description="Codec jobs running at once (one worker each).")
    isolation: Literal["process", "thread"] = Field(
        default="process",
        description="Where jobs run: worker processes, killed and replaced when a job runs past compute_timeout; "
        "or the server's threads (starts faster, but an overrunning job keeps its worker until it ends).",
    )
    queue_size: Annotated[int, Field(ge=0)] = Field(
        default=16, description="Jobs allowed to wait for a slot; beyond them requests get 429."
    )
    queue_timeout: PositiveFloat = Field(default=30.0, description="Seconds a job may wait for a slot (then 503).")
    compute_timeout: PositiveFloat = Field(default=120.0, description="Seconds a job may run (then 503).")
    read_timeout: PositiveFloat = Field(default=30.0, description="Seconds to receive a whole request body (then 408).")
    header_timeout: PositiveFloat = Field(
        default=10.0,
        description="Seconds to receive a request's line and headers, from the connection's start or the next "
        "request's first byte; then the connection is closed (gancodec serve).",
    )
    keep_alive_timeout: PositiveFloat = Field(
        default=5.0, description="Seconds an idle kept-alive connection stays open (gancodec serve)."
    )
    max_connections: PositiveInt = Field(
        default=256,
        description="Connections served at once; a request on one more gets uvicorn's plain-text 503 (gancodec serve).",
    )
    max_header_bytes: PositiveInt = Field(
        default=16384,
        description="Largest request line and headers; beyond it uvicorn answers 400 and closes (gancodec serve).",
    )
    retry_after: PositiveInt = Field(default=5, description="Seconds in the Retry-After header of 429 and 503 answers.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default=[],
        description="Accepted X-API-Key values, comma-separated; several allow rotation. Empty: no key needed.",
    )

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        return _split(value, os.pathsep)

    @field_validator("providers", "api_keys", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return _split(value, ",")

    @field_validator("model_dirs")
    @classmethod
    def _directories_exist(cls, dirs: list[Path]) -> list[Path]:
        # A mistyped directory would otherwise start a service without the operator's models.
        missing = [str(path) for path in dirs if not path.is_dir()]
        if missing:
            raise ValueError(f"not a directory: {', '.join(missing)}")
        return dirs

    @property
    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(
            intra_op_threads=self.threads,
            providers=tuple(self.providers) or None,
            tile_pixels=self.tile_pixels,
            int8=self.int8,
        )


def _split(value: object, separator: str) -> object:
    """Environment strings to lists (empty entries dropped); lists given in code pass through."""
    if isinstance(value, str):
        return [entry.strip() for entry in value.split(separator) if entry.strip()]
    return value

"""Exceptions with stable machine-readable codes, so callers (CLI, REST problem+json) need not parse messages."""

from __future__ import annotations


class CodecError(Exception):
    """Base of every error the codec reports on purpose; `code` is stable, the message is for people."""

    code = "codec-error"


class UnsupportedFormat(CodecError):
    """The input is not one of the accepted image formats (PNG, JPEG, WebP)."""

    code = "unsupported-format"


class InvalidImage(CodecError):
    """The input claims an accepted format but cannot be decoded (truncated, corrupt, odd pixel layout)."""

    code = "invalid-image"


class ImageTooLarge(CodecError):
    """An image, or a bitstream's declared size, exceeds the caller's pixel cap."""

    code = "image-too-large"


class CorruptBitstream(CodecError):
    """The bytes are not a valid gancodec file: wrong magic, version, lengths, checksum or payload."""

    code = "corrupt-bitstream"


class UnknownModel(CodecError):
    """No installed model has the requested id (or the id that made a file)."""

    code = "unknown-model"


class ModelMismatch(UnknownModel):
    """A model with the file's id is installed, but it is not the one that made the file (fingerprints differ)."""

    code = "model-mismatch"


class InvalidModel(CodecError):
    """A model directory is broken: bad manifest, missing graph, hash mismatch, or graphs that fail to load."""

    code = "invalid-model"


class InferenceError(CodecError):
    """onnxruntime failed while running a graph, or the graph returned an unexpected shape."""

    code = "inference-failed"


class SelectiveUnsupported(CodecError):
    """A mask, label map or classes to synthesise were given, but the model does only global compression (GC)."""

    code = "sc-unsupported"


class InvalidSelection(CodecError):
    """A mask, label map or class selection that does not fit the model: unknown class names, class ids the
    model does not know, classes to synthesise without a label map, a label map that is not single-channel."""

    code = "invalid-selection"


class MaskSizeMismatch(InvalidSelection):
    """A mask or label map whose size differs from the image's."""

    code = "mask-size-mismatch"

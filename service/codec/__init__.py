"""The gancodec runtime: compress images to .gcx files and back with exported ONNX models (no torch needed)."""

from service.codec.container import Bitstream, Header, Mode, unpack
from service.codec.errors import (
    CodecError,
    CorruptBitstream,
    ImageTooLarge,
    InferenceError,
    InvalidImage,
    InvalidModel,
    InvalidSelection,
    MaskSizeMismatch,
    ModelMismatch,
    SelectiveUnsupported,
    UnknownModel,
    UnsupportedFormat,
)
from service.codec.imageio import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    ImageInfo,
    decode_image,
    decode_label_map,
    decode_mask,
    encode_png,
    probe_image,
)
from service.codec.manifest import Manifest, load_manifest
from service.codec.model import DEFAULT_TILE_PIXELS, MIN_TILE_PIXELS, Model, RuntimeOptions
from service.codec.pipeline import bits_per_pixel, compress, decompress, decompress_png, is_tiled, reconstruct
from service.codec.registry import Registry
from service.codec.selection import Selection, check_selective, class_ids, select

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TILE_PIXELS",
    "MIN_TILE_PIXELS",
    "Bitstream",
    "CodecError",
    "CorruptBitstream",
    "DecodedImage",
    "Header",
    "ImageInfo",
    "ImageTooLarge",
    "InferenceError",
    "InvalidImage",
    "InvalidModel",
    "InvalidSelection",
    "Manifest",
    "MaskSizeMismatch",
    "Mode",
    "Model",
    "ModelMismatch",
    "Registry",
    "RuntimeOptions",
    "Selection",
    "SelectiveUnsupported",
    "UnknownModel",
    "UnsupportedFormat",
    "bits_per_pixel",
    "check_selective",
    "class_ids",
    "compress",
    "decode_image",
    "decode_label_map",
    "decode_mask",
    "decompress",
    "decompress_png",
    "encode_png",
    "is_tiled",
    "load_manifest",
    "probe_image",
    "reconstruct",
    "select",
    "unpack",
]

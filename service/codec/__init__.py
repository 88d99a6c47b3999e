"""The gancodec runtime: compress images to .gcx files and back with exported ONNX models (no torch needed)."""

from service.codec.container import Bitstream, Header, Mode, unpack
from service.codec.errors import (
    CodecError,
    CorruptBitstream,
    ImageTooLarge,
    InferenceError,
    InvalidImage,
    InvalidModel,
    ModelMismatch,
    UnknownModel,
    UnsupportedFormat,
)
from service.codec.imageio import DEFAULT_MAX_PIXELS, DecodedImage, ImageInfo, decode_image, encode_png, probe_image
from service.codec.manifest import Manifest, load_manifest
from service.codec.model import Model, RuntimeOptions
from service.codec.pipeline import bits_per_pixel, compress, decompress, decompress_png, reconstruct
from service.codec.registry import Registry

__all__ = [
    "DEFAULT_MAX_PIXELS",
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
    "Manifest",
    "Mode",
    "Model",
    "ModelMismatch",
    "Registry",
    "RuntimeOptions",
    "UnknownModel",
    "UnsupportedFormat",
    "bits_per_pixel",
    "compress",
    "decode_image",
    "decompress",
    "decompress_png",
    "encode_png",
    "load_manifest",
    "probe_image",
    "reconstruct",
    "unpack",
]

"""The trainable codec: encoder -> quantiser -> generator, with the entropy model of the symbols.

A selective (SC) codec also takes a preservation mask and a semantic label map: only the latent under the
mask is kept (and coded), and the generator paints the rest from the label map. The mask and the label map
reach the networks at their own resolutions exactly as the runtime derives them (service/codec/selection.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.config import ModelConfig
from models.networks import Encoder, Generator
from models.quantizer import ChannelEntropyModel, Quantizer
from service.codec.selection import KEPT_FRACTION


@dataclass
class CodecOutput:
    reconstruction: Tensor
    latent: Tensor
    """Unquantised encoder output w."""
    symbol_bits: Tensor
    """Bits of the hard symbols under the entropy model (trains the model's frequencies)."""
    soft_bits: Tensor
    """Differentiable rate of the encoder through the soft assignment."""
    range_penalty: Tensor
    preserved: Tensor | None = None
    """SC: where the latent was kept, at the image's resolution (B, 1, H, W); the distortion counts only there."""
    labels: Tensor | None = None
    """SC: the one-hot label map the generator saw, at the image's resolution, for the discriminator."""


def latent_mask(keep: Tensor, factor: int) -> Tensor:
    """(B, 1, H, W) in {0, 1} -> the blocks more than KEPT_FRACTION of whose pixels are kept, in {0, 1}."""
    return (F.avg_pool2d(keep, factor) > KEPT_FRACTION).float()


def label_map(ids: Tensor, classes: int, factor: int, keep: Tensor | None = None) -> Tensor:
    """Class ids (B, H, W) -> one-hot (B, classes, H/factor, W/factor) of each block's majority class, ties to
    the lowest id, among the kept pixels of a kept block (`keep` (B, 1, H, W); None: nothing kept); -1 marks a
    withheld label map, which becomes all zeros (no class)."""
    present = (ids >= 0).unsqueeze(1)
    onehot = F.one_hot(ids.clamp(min=0), classes).permute(0, 3, 1, 2).float() * present
    counts = F.avg_pool2d(onehot, factor)
    if keep is not None:
        counts = torch.where(latent_mask(keep, factor).bool(), F.avg_pool2d(onehot * keep, factor), counts)
    majority = F.one_hot(counts.argmax(dim=1), classes).permute(0, 3, 1, 2).float()
    return majority * (counts.amax(dim=1, keepdim=True) > 0)


class GenerativeCodec(nn.Module):
    def __init__(self, config: ModelConfig, soft_assignment_sigma: float = 1.0) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = Quantizer(config.centres, soft_assignment_sigma)
        self.generator = Generator(config)
        self.entropy_model = ChannelEntropyModel(config.latent_channels, config.levels)

    def noise(self, latent: Tensor) -> Tensor:
        """Noise channels from the fixed prior (standard normal), drawn anew for each image."""
        b, _, h, w = latent.shape
        return torch.randn(b, self.config.noise_channels, h, w, device=latent.device, dtype=latent.dtype)

    def decode(self, latent: Tensor, keep: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """SC: `latent` already masked; `keep` at the latent's resolution, `labels` one-hot at the label map's."""
        if self.config.noise_channels:
            latent = torch.cat([latent, self.noise(latent)], dim=1)
        return self.generator(latent, keep, labels)

    def forward(
        self, image: Tensor, keep: Tensor | None = None, labels: Tensor | None = None, channels: Tensor | None = None
    ) -> CodecOutput:
        """SC codecs take `keep`, the pixels to preserve (B, 1, H, W) in {0, 1} (None: all), and `labels`,
        class ids (B, H, W) with -1 for a withheld map (None: withheld); GC codecs take the image alone.
        `channels` (B,) picks each image's rate point: only its first k latent channels are kept and coded."""
        w = self.encoder(image)
        q = self.quantizer(w.float())
        latent, kept, onehot, coded = q.latent, None, None, None
        if self.config.selective:
            kept, onehot = self.selection(image, keep, labels)
            latent, coded = latent * kept, kept
        if channels is not None:
            used = self.channel_mask(channels)
            latent = latent * used
            coded = used if coded is None else coded * used
        return CodecOutput(
            reconstruction=self.decode(latent, kept, onehot),
            latent=w,
            symbol_bits=self.entropy_model.symbol_bits(q.symbols, coded),
            soft_bits=self.entropy_model.soft_bits(q.assignment, coded),
            range_penalty=self.quantizer.range_penalty(w.float()),
            preserved=None if kept is None else F.interpolate(kept, scale_factor=self.config.downsampling),
            labels=None if onehot is None else F.interpolate(onehot, scale_factor=self.config.label_downsampling),
        )

    def channel_mask(self, channels: Tensor) -> Tensor:
        """(B,) channel counts -> (B, C, 1, 1) in {0, 1}, one for each of an image's first k channels."""
        index = torch.arange(self.config.latent_channels, device=channels.device)
        return (index[None, :] < channels[:, None]).float()[:, :, None, None]

    def selection(self, image: Tensor, keep: Tensor | None, labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """The mask at the latent's resolution and the one-hot label map at its own, from pixel-level inputs."""
        batch, _, height, width = image.shape
        if keep is None:
            keep = image.new_ones(batch, 1, height, width)
        if labels is None:
            labels = torch.full((batch, height, width), -1, dtype=torch.long, device=image.device)
        kept = latent_mask(keep, self.config.downsampling)
        return kept, label_map(labels, len(self.config.classes), self.config.label_downsampling, keep)

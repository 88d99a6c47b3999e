"""The trainable codec: encoder -> quantiser -> generator, with the entropy model of the symbols."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.config import ModelConfig
from models.networks import Encoder, Generator
from models.quantizer import ChannelEntropyModel, Quantizer


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

    def decode(self, latent: Tensor) -> Tensor:
        if self.config.noise_channels:
            latent = torch.cat([latent, self.noise(latent)], dim=1)
        return self.generator(latent)

    def forward(self, image: Tensor) -> CodecOutput:
        w = self.encoder(image)
        q = self.quantizer(w.float())
        return CodecOutput(
            reconstruction=self.decode(q.latent),
            latent=w,
            symbol_bits=self.entropy_model.symbol_bits(q.symbols),
            soft_bits=self.entropy_model.soft_bits(q.assignment),
            range_penalty=self.quantizer.range_penalty(w.float()),
        )

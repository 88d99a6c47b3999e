"""Scalar quantisation to L fixed centres, and the static per-channel entropy model of the symbols."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from service.codec.entropy import integer_frequencies


@dataclass
class Quantized:
    """What the quantiser gives the loss: the decoder's input, the symbols and the soft assignment."""

    latent: Tensor
    """Nearest centres in the forward pass, identity gradient backwards (straight-through)."""
    symbols: Tensor
    """Index of the nearest centre, int64, shape (B, C, h, w)."""
    assignment: Tensor
    """Softmax over negative squared distances to the centres, shape (B, C, h, w, L)."""


class Quantizer(nn.Module):
    """Hard nearest-centre quantisation forwards, soft assignment for the rate's gradient (paper, eq. 2)."""

    def __init__(self, centres: tuple[float, ...], sigma: float) -> None:
        super().__init__()
        self.register_buffer("centres", torch.tensor(centres, dtype=torch.float32))
        self.sigma = sigma

    def forward(self, w: Tensor) -> Quantized:
        distance = (w.unsqueeze(-1) - self.centres).pow(2)
        symbols = distance.argmin(dim=-1)
        hard = self.centres[symbols]
        assignment = F.softmax(-self.sigma * distance, dim=-1)
        return Quantized(latent=w + (hard - w).detach(), symbols=symbols, assignment=assignment)

    def range_penalty(self, w: Tensor) -> Tensor:
        """Squared excess beyond the outer centres' rounding interval, so values cannot drift away."""
        bound = self.centres.abs().max() + 0.5
        return F.relu(w.abs() - bound).pow(2).mean()


class ChannelEntropyModel(nn.Module):
    """One categorical distribution over the L symbols per latent channel (the paper's static model).

    Its logits learn the symbols' frequencies by maximum likelihood on the detached hard symbols;
    the encoder is pushed towards cheap symbols through the soft assignment's cross-entropy.
    """

    def __init__(self, channels: int, levels: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(channels, levels))

    def log_probs(self) -> Tensor:
        return F.log_softmax(self.logits, dim=-1)

    def symbol_bits(self, symbols: Tensor, keep: Tensor | None = None) -> Tensor:
        """Bits to code `symbols` (B, C, h, w) under the model; gradients reach the logits only.

        `keep` (B, 1, h, w) in {0, 1}: SC codes only the symbols under the preservation mask.
        """
        log_p = self.log_probs()
        channel = torch.arange(symbols.shape[1], device=symbols.device).view(1, -1, 1, 1)
        information = -log_p[channel, symbols]
        return (information if keep is None else information * keep).sum() / math.log(2)

    def soft_bits(self, assignment: Tensor, keep: Tensor | None = None) -> Tensor:
        """Cross-entropy of the soft assignment (B, C, h, w, L) under detached frequencies (SC: under `keep`)."""
        log_p = self.log_probs().detach().view(1, -1, 1, 1, assignment.shape[-1])
        information = -(assignment * log_p).sum(dim=-1)
        return (information if keep is None else information * keep).sum() / math.log(2)

    def frequency_tables(self, precision: int = 16) -> list[list[int]]:
        """Integer frequencies per channel summing to 2**precision, each at least 1 (decodable)."""
        return integer_frequencies(self.log_probs().exp().double().detach().numpy(), precision).tolist()

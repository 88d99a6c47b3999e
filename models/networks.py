"""Encoder, generator and multi-scale discriminator (Agustsson et al. 2019, figure 2 and section 5)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.config import ModelConfig, Norm, Upsample


class ChannelNorm(nn.Module):
    """Normalises across channels at each position (HiFiC), so channel means, i.e. colour, survive."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def make_norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "channel":
        return ChannelNorm(channels)
    return nn.Identity()


def conv_block(c_in: int, c_out: int, kernel: int, stride: int, norm: Norm) -> nn.Sequential:
    """Reflection-padded convolution (odd kernel), normalisation, ReLU."""
    return nn.Sequential(
        nn.ReflectionPad2d(kernel // 2),
        nn.Conv2d(c_in, c_out, kernel, stride=stride),
        make_norm(norm, c_out),
        nn.ReLU(inplace=True),
    )


class Encoder(nn.Module):
    """x in [0, 1] -> unquantised latent w with 16x fewer rows and columns."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths, depth = config.encoder_widths, config.end_depth
        if depth:
            # One slot for the shuffled head, empty ones for the layers it replaces: the later layers keep the
            # parameter names of the full-resolution form, so one can start from the other (warm start).
            head = nn.Sequential(
                nn.PixelUnshuffle(config.end_scale),
                conv_block(3 * config.end_scale**2, widths[depth], 3, 1, config.norm),
            )
            layers = [head, *(nn.Identity() for _ in range(depth))]
        else:
            layers = [conv_block(3, widths[0], 7, 1, config.norm)]
        layers += [conv_block(a, b, 3, 2, config.norm) for a, b in itertools.pairwise(widths[depth:])]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(widths[-1], config.latent_channels, 3)]
        self.net = nn.Sequential(*layers)
        self.factor = config.downsampling
        self.bypass = nn.Conv2d(3, config.latent_channels, 1) if config.linear_bypass else None

    def forward(self, x: Tensor) -> Tensor:
        x = x * 2.0 - 1.0
        w = self.net(x)
        if self.bypass is not None:
            w = w + self.bypass(F.avg_pool2d(x, self.factor))
        return w


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: Norm) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            make_norm(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


# Which of a 3x3 kernel's taps (along one axis) fall on each of the two low-resolution rows that an output
# row of "nearest 2x up-sampling, reflection pad 1, 3x3 convolution" reads, for even (0) and odd (1) rows.
_PHASE_TAPS = torch.tensor(
    [
        [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]],  # even row 2i: row i-1 <- tap 0; row i <- taps 1, 2
        [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # odd row 2i+1: row i <- taps 0, 1; row i+1 <- tap 2
    ]
)


class NearestUpsampleBlock(nn.Sequential):
    """Nearest 2x up-sampling, reflection padding, a 3x3 convolution, normalisation and ReLU, with the first
    three computed as a sub-pixel convolution.

    The same function as running the layers in turn (they are held to name the parameters as checkpoints do),
    without ever making the up-sampled, padded input: every output pixel of the plain form reads a 2x2
    neighbourhood of the input, so one 2x2 convolution with four kernels per output channel (one per pixel
    phase, folded from the 3x3 kernel) followed by a pixel shuffle gives the result with 4/9 of the
    multiply-adds and none of the full-resolution intermediates that dominated decoding time.
    """

    def __init__(self, c_in: int, c_out: int, norm: Norm) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c_in, c_out, 3),
            make_norm(norm, c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        conv: nn.Conv2d = self[2]
        taps = _PHASE_TAPS.to(conv.weight)
        # Kernels ordered (out channel, row phase, column phase) with the phases reversed, so that the pixel
        # shuffle puts odd phases first and the result is the wanted image shifted by one pixel.
        kernels = torch.einsum("akt,blu,oitu->oabikl", taps.flip(0), taps.flip(0), conv.weight)
        kernels = kernels.reshape(-1, conv.in_channels, 2, 2)
        y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels, conv.bias.repeat_interleave(4))
        return self[4](self[3](F.pixel_shuffle(y, 2)[..., 1:-1, 1:-1]))


def upsample_block(c_in: int, c_out: int, kind: Upsample, norm: Norm) -> nn.Sequential:
    if kind == "nearest":
        return NearestUpsampleBlock(c_in, c_out, norm)
    up = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
    return nn.Sequential(up, make_norm(norm, c_out), nn.ReLU(inplace=True))


class LabelFeatures(nn.Module):
    """F (SC): the one-hot label map at its own resolution -> features at the latent's, for the generator."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        ratio, rest = divmod(config.downsampling, config.label_downsampling)
        if rest or ratio & (ratio - 1):
            raise ValueError(
                f"label_downsampling {config.label_downsampling} must divide the down-sampling "
                f"{config.downsampling} by a power of two"
            )
        steps = ratio.bit_length() - 1
        widths = config.label_widths
        if len(widths) <= steps:
            raise ValueError(f"label_widths needs more than {steps} entries to reach the latent's resolution")
        layers = [conv_block(len(config.classes), widths[0], 3, 1, config.norm)]
        layers += [
            conv_block(a, b, 3, 2 if i < steps else 1, config.norm)
            for i, (a, b) in enumerate(itertools.pairwise(widths))
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, labels: Tensor) -> Tensor:
        return self.net(labels)


class Generator(nn.Module):
    """Quantised latent (plus optional noise channels) -> image, roughly in [0, 1]; callers clamp.

    An SC generator also takes the preservation mask at the latent's resolution (the masked latent is zero
    where nothing was kept, and zero is also a centre, so the mask says which zeros are real) and the
    one-hot label map, whose features F computes.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = config.generator_widths
        inputs = config.latent_channels + config.noise_channels
        self.label_features = LabelFeatures(config) if config.selective else None
        if config.selective:
            inputs += 1 + config.label_widths[-1]
        layers = [conv_block(inputs, widths[0], 3, 1, config.norm)]
        layers += [ResidualBlock(widths[0], config.norm) for _ in range(config.residual_blocks)]
        depth, scale = config.end_depth, config.end_scale
        body = widths[: len(widths) - depth]
        layers += [upsample_block(a, b, config.upsample, config.norm) for a, b in itertools.pairwise(body)]
        if depth:
            # One ReLU layer before the shuffle: the finest texture is made here, and a linear map of the body's
            # features could only interpolate it.
            tail = nn.Sequential(
                conv_block(body[-1], body[-1], 3, 1, config.norm),
                nn.ReflectionPad2d(1),
                nn.Conv2d(body[-1], 3 * scale**2, 3),
                nn.PixelShuffle(scale),
            )
            layers.append(tail)
        else:
            layers += [nn.ReflectionPad2d(3), nn.Conv2d(widths[-1], 3, 7)]
        self.net = nn.Sequential(*layers)
        self.factor = config.downsampling
        self.bypass = nn.Conv2d(inputs, 3, 1) if config.linear_bypass else None

    def forward(self, latent: Tensor, mask: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        if self.label_features is not None:
            latent = torch.cat([latent, mask, self.label_features(labels)], dim=1)
        x = self.net(latent)
        if self.bypass is not None:
            x = x + F.interpolate(self.bypass(latent), scale_factor=self.factor, mode="bilinear", align_corners=False)
        return x * 0.5 + 0.5


class PatchDiscriminator(nn.Module):
    """A PatchGAN (pix2pixHD) that also returns its intermediate features for feature matching."""

    def __init__(self, widths: tuple[int, ...], norm: Norm, in_channels: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            stride = 1 if i == len(widths) - 1 else 2
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, width, 4, stride=stride, padding=2),
                    make_norm(norm, width) if i > 0 else nn.Identity(),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            c_in = width
        blocks.append(nn.Conv2d(c_in, 1, 4, padding=2))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """PatchGANs at full, 1/2 and 1/4 scale; each returns [features..., patch scores].

    For SC models each scale also sees the one-hot label map beside the image (conditional GAN), so the
    synthesised texture is judged against the class it should show.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels = 3 + len(config.classes)
        self.scales = nn.ModuleList(
            PatchDiscriminator(config.discriminator_widths, config.norm, channels)
            for _ in range(config.discriminator_scales)
        )

    def forward(self, x: Tensor, labels: Tensor | None = None) -> list[list[Tensor]]:
        """x: images in [0, 1]; labels (SC only): the one-hot label map at the images' resolution."""
        outputs = []
        x = x * 2.0 - 1.0
        if labels is not None:
            x = torch.cat([x, labels], dim=1)
        for i, disc in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(disc(x))
        return outputs


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

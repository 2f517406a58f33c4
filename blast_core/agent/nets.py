"""Building blocks of DreamerV2 with Keras' initialisation and norm constants (spec §2.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blast_core.config import DecoderConfig, EncoderConfig

# Keras defaults, which DreamerV2 relies on: BatchNorm momentum 0.99 (torch counts 1 - 0.99),
# epsilon 1e-3 for both norms.
BN_MOMENTUM = 0.01
NORM_EPS = 1e-3


def init_(module: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases for every dense and conv layer (Keras defaults)."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def dense(inp: int, out: int) -> nn.Linear:
    return init_(nn.Linear(inp, out))


class BatchNorm1d(nn.BatchNorm1d):
    """BatchNorm in fp32 whatever its input (a bf16 matmul's output under autocast)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float())


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm in fp32 whatever its input (a bf16 convolution's output under autocast)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float())


class MLP(nn.Module):
    """`layers` x (Dense, ELU) and a linear output of size `out` (the heads, actor and critic).

    `onehot=(stoch, discrete)` says the input is feat = [z, h], whose first stoch·discrete
    columns are z's one-hot groups: the fast path then runs the first layer as `onehot_linear`."""

    def __init__(self, inp: int, out: int, layers: int, units: int,
                 onehot: tuple[int, int] | None = None):
        super().__init__()
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(inp if i == 0 else units, units), nn.ELU()]
        mods.append(nn.Linear(units if layers else inp, out))
        self.net = init_(nn.Sequential(*mods))
        self.onehot = onehot

    def forward(self, x: Tensor) -> Tensor:
        if self.onehot and gather_ok(x):
            x = self.net[1:](onehot_linear(x, self.net[0], *self.onehot))
        else:
            x = self.net(x)
        return x.float()  # fp32 outputs under bf16 autocast: losses and distributions


class _InputGrad(torch.autograd.Function):
    """The identity on `out`; backward also gives `z` the gradient a dense layer `out = W z`
    passes to its input, grad @ W (the straight-through gradient of a one-hot z)."""

    @staticmethod
    def forward(ctx, out: Tensor, z: Tensor, weight: Tensor) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(weight)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        (weight,) = ctx.saved_tensors
        return grad, grad @ weight if ctx.needs_input_grad[1] else None, None


def gather_ok(x: Tensor) -> bool:
    """Whether a layer reading x may run as `onehot_linear` (and the decoder's last layer as
    `_SubPixelConvT`): in fp32 (under autocast the layers stay torch's own), on CPU. These
    trade FLOPs for more, smaller kernels, which pays where the update is FLOP-bound (CPU) and
    is unmeasured where it is launch-bound (GPU; there embedding_bag's backward also adds
    atomically, which deterministic mode refuses)."""
    return x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")


def onehot_linear(x: Tensor, layer: nn.Linear, groups: int, classes: int) -> Tensor:
    """`layer(x)` for an x whose first groups·classes columns hold at most one nonzero per group
    of `classes` (z of feat = [z, h]: one-hot samples, or zeros where a state was reset).

    z's part of the product is then a sum of `groups` weight columns, each scaled by its entry:
    an embedding-bag lookup instead of a matmul over all groups·classes columns (16 columns
    instead of 1024 at the MiniGrid size, where z is 63% of feat), and the weight's gradient
    is a scatter of as many rows. The same products as the matmul, summed in another order.
    z's own gradient, where it needs one (dynamics backpropagation), is the matmul's."""
    n = groups * classes
    lead, x = x.shape[:-1], x.reshape(-1, x.shape[-1])
    z = x[:, :n]
    index, value = onehot_index(z.detach().reshape(-1, groups, classes))
    index = index + torch.arange(0, n, classes, device=x.device)
    w_z = layer.weight[:, :n]
    out = F.embedding_bag(index, w_z.t().contiguous(), per_sample_weights=value, mode="sum")
    out = out + F.linear(x[:, n:], layer.weight[:, n:], layer.bias)
    if z.requires_grad and torch.is_grad_enabled():
        out = _InputGrad.apply(out, z, w_z.detach())
    return out.reshape(*lead, -1)


def onehot_index(z: Tensor) -> tuple[Tensor, Tensor]:
    """(index, value) of the one nonzero entry of each group [..., classes] of z, (0, 0) for an
    all-zero group: argmax and gather, as products with [0, 1, ..., classes−1] and with ones.

    A straight-through sample's nonzero is (1 + p) − p, within an ulp of 1, and its other
    entries are exactly 0, so the weighted sum is the index to within 1e-5 (rounded back) and
    the plain sum is the entry itself. A CPU argmax over 32 classes costs ~10x as much."""
    lead, classes = z.shape[:-1], z.shape[-1]
    flat = z.reshape(-1, classes)
    ramp = torch.arange(classes, device=z.device, dtype=z.dtype)
    # Two matrix-vector products: one [N, classes] @ [classes, 2] matmul is 30x slower on CPU.
    index = torch.mv(flat, ramp).round().long()
    return index.view(lead), torch.mv(flat, torch.ones_like(ramp)).view(lead)


class LayerNormGRU(nn.Module):
    """DreamerV2's GRU cell: one dense layer over [x, h], LayerNorm over all 3·deter
    pre-activations, reset gate applied to the candidate's pre-activation, update bias −1.
    Not torch.nn.GRUCell, whose reset gate and normalisation differ."""

    def __init__(self, inp: int, size: int):
        super().__init__()
        self.size = size
        self.linear = dense(inp + size, 3 * size)
        self.norm = nn.LayerNorm(3 * size, eps=NORM_EPS)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return self.cell(self.linear(torch.cat([x, h], -1)), h)

    def split_weight(self) -> tuple[Tensor, Tensor]:
        """(W_x, W_h): the columns of the dense layer that read x and h. Loops whose x half can be
        computed ahead (for all steps at once, or per input class) add it to `h @ W_h.T`."""
        inp = self.linear.in_features - self.size
        return self.linear.weight[:, :inp], self.linear.weight[:, inp:]

    def cell(self, pre: Tensor, h: Tensor) -> Tensor:
        """The cell from the dense layer's output `pre` = W [x, h] + b onwards."""
        parts = self.norm(pre.float())  # under bf16 autocast the state stays fp32
        reset, cand, update = parts.split(self.size, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1)
        return update * cand + (1 - update) * h


class Encoder(nn.Module):
    """Stride-2 'valid' convolutions with depth·2^i channels, each followed by [BatchNorm] and ELU.
    64x64 -> 31 -> 14 -> 6 -> 2; output 2·2·8·depth features."""

    def __init__(self, cfg: EncoderConfig, size: int = 64, channels: int = 3):
        super().__init__()
        mods: list[nn.Module] = []
        inp = channels
        for i, k in enumerate(cfg.kernels):
            out = cfg.depth * 2**i
            mods.append(nn.Conv2d(inp, out, k, stride=2))
            if cfg.norm == "batch":
                mods.append(BatchNorm2d(out, eps=NORM_EPS, momentum=BN_MOMENTUM))
            mods.append(nn.ELU())
            inp = out
        self.net = init_(nn.Sequential(*mods))
        with torch.no_grad():
            self.out = self.net(torch.zeros(1, channels, size, size)).numel()
        self.size = size

    def forward(self, image: Tensor) -> Tensor:
        """image: float [..., 3, H, W] in [-0.5, 0.5] -> [..., out]; all frames in one call."""
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:])
        # oneDNN's and cuDNN's convolutions are faster on NHWC (1.3x on the paper encoder on
        # 2 CPU cores, mostly the first, 3-channel layer); the values are the same.
        x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).reshape(*lead, -1)


class Decoder(nn.Module):
    """Dense to 32·depth, then stride-2 transposed convolutions 1 -> 5 -> 13 -> 30 -> 64 with ELU
    between them; the output is the mean of a unit-variance Normal over all pixels."""

    def __init__(self, cfg: DecoderConfig, feat: int, channels: int = 3,
                 onehot: tuple[int, int] | None = None):
        super().__init__()
        self.depth = 32 * cfg.depth
        self.linear = dense(feat, self.depth)
        self.onehot = onehot  # as in MLP: feat's first columns are z's one-hot groups
        mods: list[nn.Module] = []
        inp = self.depth
        n = len(cfg.kernels)
        for i, k in enumerate(cfg.kernels):
            last = i == n - 1
            out = channels if last else cfg.depth * 2 ** (n - i - 2)
            mods.append(nn.ConvTranspose2d(inp, out, k, stride=2))
            if not last:
                mods.append(nn.ELU())
            inp = out
        self.net = init_(nn.Sequential(*mods))

    def forward(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        gather = gather_ok(feat)
        x = onehot_linear(feat, self.linear, *self.onehot) \
            if self.onehot and gather else self.linear(feat)
        x = self._first_as_matmul(x.reshape(-1, self.depth))
        x = self.net[1:-1](x.contiguous(memory_format=torch.channels_last))
        last = self.net[-1]
        x = _SubPixelConvT.apply(x, last.weight, last.bias) if gather else last(x)
        return x.reshape(*lead, *x.shape[1:]).float()  # the image NLL in fp32 under autocast

    def _first_as_matmul(self, x: Tensor) -> Tensor:
        """The first transposed convolution reads a 1x1 map, so each output pixel is one matmul
        column: out[n, o, i, j] = sum_c x[n, c] W[c, o, i, j] + b[o]. oneDNN runs it as a
        convolution at ~4 GFLOP/s on 2 cores; as a matmul it runs at the machine's matmul peak."""
        conv = self.net[0]
        _, out, kh, kw = conv.weight.shape
        bias = conv.bias.repeat_interleave(kh * kw)
        return F.linear(x, conv.weight.flatten(1).T, bias).view(-1, out, kh, kw)


class _SubPixelConvT(torch.autograd.Function):
    """A stride-2 transposed convolution whose forward runs as a regular convolution and a pixel
    shuffle; its backward is torch's own transposed-convolution backward.

    Output pixel (2i + p, 2j + q) reads only the kernel taps of parity (p, q):
        out[2i+p] = sum_u x_pad[i + u] W[2(T-1-u) + p],   T = ceil(k / 2), x padded by T-1,
    so one convolution with 4·C_out channels (one per parity, kernels flipped and subsampled;
    an odd k gets a zero tap) followed by pixel_shuffle(2) gives every output pixel with the same
    products. For the decoder's last layer (48 -> 3 channels, 30x30 -> 64x64) oneDNN's
    transposed convolution runs at ~17 GFLOP/s on one core, this forward ~2.4x faster; for the
    wider layers it is not faster, so only the last layer uses it (docs/benchmarks.md)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, weight)
        cin, cout, k, _ = weight.shape
        taps = (k + 1) // 2
        w = F.pad(weight, (0, 2 * taps - k, 0, 2 * taps - k))
        w = w.view(cin, cout, taps, 2, taps, 2).flip(2, 4)      # [c, o, u, p, v, q]
        w = w.permute(1, 3, 5, 0, 2, 4).reshape(4 * cout, cin, taps, taps)
        y = F.pixel_shuffle(F.conv2d(x, w, bias.repeat_interleave(4), padding=taps - 1), 2)
        size = [(n - 1) * 2 + k for n in x.shape[-2:]]
        return y[..., :size[0], :size[1]]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        x, weight = ctx.saved_tensors
        return torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[1]], [2, 2], [0, 0], [1, 1], True, [0, 0], 1,
            list(ctx.needs_input_grad))


def elu_dense(inp: int, out: int, norm: str = "none") -> nn.Sequential:
    """Dense -> [BatchNorm1d] -> ELU: the hidden layers of the RSSM."""
    mods: list[nn.Module] = [dense(inp, out)]
    if norm == "batch":
        mods.append(BatchNorm1d(out, eps=NORM_EPS, momentum=BN_MOMENTUM))
    mods.append(nn.ELU())
    return nn.Sequential(*mods)


def preprocess(image: Tensor) -> Tensor:
    """uint8 [..., H, W, C] -> float [..., C, H, W] in [-0.5, 0.5]."""
    return image.movedim(-1, -3).float() / 255.0 - 0.5


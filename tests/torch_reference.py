"""Independent PyTorch (NCHW) test oracle for the stra-jax port.

Written from the spec in docs/stra-reference.md (not copied from any public
code).  It provides:

* ``resnet50(num_classes=1000, last_stride=2)`` -- ResNet-50 v1.5 with the
  torchvision state_dict layout (25,557,032 parameters for 1000 classes).
* ``stra_resnet50(num_classes, ...)`` -- the StRA-ResNet-50: same stem and
  layer1..layer3, layer4 made of StRA bottlenecks whose ``conv2`` is a
  ``LocalAttn`` (local attention + optional ``ModeAttention``), and a
  ``global_avg_pool`` / ``classifier`` head.  ``forward`` returns a dict
  ``{"embedding", "logits", "diversity"}``.
* ``randomize_bn_stats(model, seed)`` -- non-trivial BatchNorm statistics and
  conv biases, so that tests notice wrong BN handling.

There is no module-level state: every LocalAttn keeps its last diversity term
on ``self.last_ld`` and the network sums them.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["resnet50", "stra_resnet50", "randomize_bn_stats",
           "Bottleneck", "LocalAttn", "ModeAttention", "ResNet50", "StRAResNet50"]


def _gate(x, kind):
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "softmax":
        return torch.softmax(x, dim=1)  # across the G (head) axis
    raise ValueError(f"unknown gate {kind!r}")


class ModeAttention(nn.Module):
    """Mode attention over the G channel blocks of S (B, C, H, W)."""

    def __init__(self, channels, heads, gate="sigmoid", interaction=True):
        super().__init__()
        G = heads
        self.G, self.gate, self.interaction = G, gate, interaction
        self.gap_weight = nn.Sequential(
            nn.Conv2d(channels, 8 * G, 1, groups=G, bias=True),
            nn.BatchNorm2d(8 * G),
            nn.Tanh(),
            nn.Conv2d(8 * G, G, 1, groups=G, bias=True),
            nn.BatchNorm2d(G),
        )
        self.bn = nn.BatchNorm2d(G)
        self.bn2 = nn.BatchNorm2d(G)  # exists even when interaction is off
        self.last_ld = None

    def forward(self, s):
        B, C, H, W = s.shape
        G = self.G
        n = C // G
        m = self.gap_weight(s).view(B, G, H * W).softmax(dim=-1).view(B, G, H, W)
        sv = s.view(B, G, n, H, W)
        z = torch.einsum("bghw,bgnhw->bgn", m, sv)                      # (B,G,n)
        sim = torch.einsum("bgnhw,bgn->bghw", sv, z)
        r = _gate(self.bn(sim), self.gate)
        y = r[:, :, None] * z[..., None, None] + sv                       # (B,G,n,H,W)
        if self.interaction:
            p = torch.bmm(z, z.transpose(1, 2))                              # (B,G,G)
            p = F.normalize(p, dim=2)
            p = torch.softmax(p * math.sqrt(G), dim=2)
            z2 = torch.bmm(p, z)                                             # (B,G,n)
            sim2 = torch.einsum("bgnhw,bgn->bghw", y, z2)
            r2 = _gate(self.bn2(sim2), self.gate)
            y = r2[:, :, None] * z2[..., None, None] + y
        self.last_ld = G - m.amax(dim=1).sum(dim=(1, 2))                  # (B,)
        return y.reshape(B, C, H, W)


class LocalAttn(nn.Module):
    """Local (K x K window) multi-head attention replacing a 3x3 conv."""

    def __init__(self, channels, heads=8, kernel_size=3, reduction=4, stride=1,
                 dilation=1, gate="sigmoid", mode_attention=True,
                 mode_interaction=True):
        super().__init__()
        G, K = heads, kernel_size
        assert channels % G == 0
        self.C, self.G, self.K, self.stride = channels, G, K, stride
        self.mask_conv = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, groups=G, bias=True,
                      stride=stride),
            nn.BatchNorm2d(channels // reduction),
            nn.Tanh(),
            nn.Conv2d(channels // reduction, G * (1 + K * K), 1, groups=G, bias=True),
            nn.BatchNorm2d(G * (1 + K * K)),
        )
        self.value_conv = nn.Conv2d(channels, channels, 1, groups=G, bias=False)
        pad = ((K - 1) * dilation + 2 - stride) // 2
        self.unfold = nn.Unfold(kernel_size=K, dilation=dilation, stride=1, padding=pad)
        self.moe = (ModeAttention(channels, G, gate, mode_interaction)
                    if mode_attention else None)
        self.last_ld = None

    def forward(self, x):
        if self.stride != 1:
            raise NotImplementedError("LocalAttn oracle only supports stride 1")
        B, C, H, W = x.shape
        G, K, n = self.G, self.K, self.C // self.G
        t = self.mask_conv(x)
        nu = t[:, :G]                                                        # (B,G,H,W)
        omega = t[:, G:G + G * K * K].reshape(B, G, K * K, H, W)
        nu_u = self.unfold(nu).view(B, G, K * K, H, W)
        a = torch.softmax(omega + nu_u, dim=2)
        v = self.unfold(self.value_conv(x)).view(B, G, n, K * K, H, W)
        out = (a[:, :, None] * v).sum(dim=3).reshape(B, C, H, W)
        if self.moe is None:
            self.last_ld = out.new_zeros(B)
            return out
        out = self.moe(out)
        self.last_ld = self.moe.last_ld
        return out


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, conv2=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv2 if conv2 is not None else nn.Conv2d(
            planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + idt)


def _make_layer(inplanes, planes, blocks, stride, conv2_factory=None):
    layers = []
    for i in range(blocks):
        s = stride if i == 0 else 1
        ds = None
        if i == 0 and (s != 1 or inplanes != planes * 4):
            ds = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=s, bias=False),
                               nn.BatchNorm2d(planes * 4))
        conv2 = conv2_factory(planes, s) if conv2_factory is not None else None
        layers.append(Bottleneck(inplanes, planes, s, ds, conv2))
        inplanes = planes * 4
    return nn.Sequential(*layers)


def _init_weights(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class _Trunk(nn.Module):
    """Stem + layer1..layer3 (shared by both networks)."""

    def _build_trunk(self):
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _make_layer(64, 64, 3, 1)
        self.layer2 = _make_layer(256, 128, 4, 2)
        self.layer3 = _make_layer(512, 256, 6, 2)

    def _trunk(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class ResNet50(_Trunk):
    def __init__(self, num_classes=1000, last_stride=2):
        super().__init__()
        self._build_trunk()
        self.layer4 = _make_layer(1024, 512, 3, last_stride)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)
        _init_weights(self)

    def forward(self, x):
        x = self.layer4(self._trunk(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class StRAResNet50(_Trunk):
    def __init__(self, num_classes, heads=8, kernel_size=3, reduction=4, last_stride=1,
                 gate="sigmoid", mode_attention=True, mode_interaction=True):
        super().__init__()
        self._build_trunk()

        def local_attn(planes, stride):
            return LocalAttn(planes, heads, kernel_size, reduction, stride, 1,
                             gate, mode_attention, mode_interaction)

        self.layer4 = _make_layer(1024, 512, 3, last_stride, local_attn)
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                             nn.Conv2d(2048, 512, 1, bias=False),
                                             nn.BatchNorm2d(512))
        self.classifier = nn.Linear(512, num_classes)
        _init_weights(self)

    def forward(self, x):
        x = self.layer4(self._trunk(x))
        emb = torch.flatten(self.global_avg_pool(x), 1)
        div = sum(blk.conv2.last_ld for blk in self.layer4)
        return {"embedding": emb, "logits": self.classifier(emb), "diversity": div}


def resnet50(num_classes=1000, last_stride=2):
    return ResNet50(num_classes, last_stride)


def stra_resnet50(num_classes, heads=8, kernel_size=3, reduction=4, last_stride=1,
                  gate="sigmoid", mode_attention=True, mode_interaction=True):
    return StRAResNet50(num_classes, heads, kernel_size, reduction, last_stride,
                        gate, mode_attention, mode_interaction)


@torch.no_grad()
def randomize_bn_stats(model, seed=0):
    """Give every BatchNorm random stats/affine and every conv bias a small value."""
    g = torch.Generator().manual_seed(seed)

    def randn(t):
        return torch.randn(t.shape, generator=g, dtype=t.dtype)

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.3 * randn(m.running_mean))
            m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=g))
            m.weight.copy_(1.0 + 0.2 * randn(m.weight))
            m.bias.copy_(0.3 * randn(m.bias))
        elif isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.copy_(0.05 * randn(m.bias))
    return model

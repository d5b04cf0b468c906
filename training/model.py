"""Attention U-Net (Oktay et al., 2018, arXiv:1804.03999) with a classification head.

Input: N x 1 x H x W, pixels already scaled per model.json ((p*scale-mean)/std, i.e. 0..1).
The network first standardises each image by its own mean and standard deviation
(robust to scanner gain), so brightness differences between hospitals do not shift it.
Outputs: mask_logits N x 1 x H x W, class_logits N x 3 (normal, benign, malignant).

The class head sees the deepest features twice: averaged over the whole image, and averaged
under the network's own lesion mask (mask-guided pooling), so the benign/malignant decision
looks at the lesion rather than at the surrounding tissue. The mask is detached there: the
class loss does not bend the segmentation. H and W must be multiples of 16.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mobilenet import SKIP_CHANNELS, MobileNetV2Encoder


def conv_block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection: alpha = sigmoid(psi(relu(Wg g + Wx x)))."""

    def __init__(self, f_g, f_x, f_int):
        super().__init__()
        self.w_g = nn.Sequential(nn.Conv2d(f_g, f_int, 1, bias=False), nn.BatchNorm2d(f_int))
        self.w_x = nn.Sequential(nn.Conv2d(f_x, f_int, 1, bias=False), nn.BatchNorm2d(f_int))
        self.psi = nn.Sequential(nn.Conv2d(f_int, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, g, x):
        a = self.psi(F.relu(self.w_g(g) + self.w_x(x), inplace=True))
        return x * a


class Up(nn.Module):
    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                nn.ReLU(inplace=True))
        self.gate = AttentionGate(cout, cskip, max(cskip // 2, 8))
        self.conv = conv_block(cout + cskip, cout)

    def forward(self, g, skip):
        g = self.up(g)
        return self.conv(torch.cat([self.gate(g, skip), g], dim=1))


class AttentionUNet(nn.Module):
    def __init__(self, base=16, n_classes=3, dropout=0.3):
        super().__init__()
        f = [base, base * 2, base * 4, base * 8, base * 16]
        self.enc = nn.ModuleList([conv_block(1, f[0])] + [conv_block(f[i], f[i + 1]) for i in range(4)])
        self.ups = nn.ModuleList([Up(f[i + 1], f[i], f[i]) for i in reversed(range(4))])
        self.head = nn.Conv2d(f[0], 1, 1)
        self.cls = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * (f[4] + f[3]), n_classes))

    def forward(self, x):
        mask_logits, pooled = self.features(x)
        return mask_logits, self.cls(pooled)

    def features(self, x):
        """Mask logits and the class head's input (the pooled features), before the head."""
        mu = x.mean(dim=(2, 3), keepdim=True)
        sd = x.std(dim=(2, 3), keepdim=True)
        x = (x - mu) / (sd + 1e-3)
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        bottleneck = skips[-1]
        y = bottleneck
        decoded = []
        for up, skip in zip(self.ups, reversed(skips[:-1])):
            y = up(y, skip)
            decoded.append(y)
        mask_logits = self.head(y)
        return mask_logits, mask_guided_pool(bottleneck, decoded[0], mask_logits)


class MobileAttentionUNet(nn.Module):
    """The same Attention U-Net decoder (attention gates on every skip) and the same mask-guided
    class head on a MobileNetV2 encoder (training/mobilenet.py), which can start from ImageNet
    weights instead of random ones. The encoder's skips are at /2, /4, /8 and /16 of the input; the
    decoder stops at /2 and its mask logits are resized bilinearly to the input (as the 128 x 128
    networks' are). The grey picture, standardised per image as in AttentionUNet and halved (about
    the spread of ImageNet's -1..1 pixels), is fed as R = G = B. H and W must be multiples of 32."""

    def __init__(self, n_classes=3, dropout=0.3, widths=(128, 64, 32, 24)):
        super().__init__()
        self.encoder = MobileNetV2Encoder(1)
        cins = (320,) + widths[:-1]
        self.ups = nn.ModuleList([Up(cin, skip, w) for cin, skip, w in zip(cins, reversed(SKIP_CHANNELS), widths)])
        self.head = nn.Conv2d(widths[-1], 1, 1)
        self.cls = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * (1280 + widths[0]), n_classes))

    def forward(self, x):
        mask_logits, pooled = self.features(x)
        return mask_logits, self.cls(pooled)

    def features(self, x):
        h, w = x.shape[-2:]
        mu = x.mean(dim=(2, 3), keepdim=True)
        sd = x.std(dim=(2, 3), keepdim=True)
        skips, y, last = self.encoder(0.5 * (x - mu) / (sd + 1e-3))
        decoded = []
        for up, skip in zip(self.ups, reversed(skips)):
            y = up(y, skip)
            decoded.append(y)
        half = self.head(y)
        return (F.interpolate(half, size=(h, w), mode="bilinear", align_corners=False),
                mask_guided_pool(last, decoded[0], half))


def network_for(state):
    """An untrained network of the architecture these weights (a state dict) were saved from."""
    if "encoder.stem.conv.weight" in state:
        return MobileAttentionUNet()
    return AttentionUNet(state["enc.0.0.weight"].shape[0])


def mask_guided_pool(deep, decoded, mask_logits):
    """The class head's input: the deepest features and the first decoder stage's (at twice the
    deepest resolution), each averaged over the frame and under the network's own mask, which is
    detached so the class loss does not bend the outline."""
    w = torch.sigmoid(mask_logits).detach()
    # a plain int: the ratio is fixed by the architecture (8 for both networks), and the ONNX trace
    # hands back shapes as tensors, which pooling does not take as a kernel size
    w_decoded = F.avg_pool2d(w, int(mask_logits.shape[-1]) // int(decoded.shape[-1]))
    w_deep = F.avg_pool2d(w_decoded, 2)
    return torch.cat([deep.mean(dim=(2, 3)), decoded.mean(dim=(2, 3)),
                      _masked_mean(deep, w_deep), _masked_mean(decoded, w_decoded)], dim=1)


def _masked_mean(f, w):
    return (f * w).sum(dim=(2, 3)) / (w.sum(dim=(2, 3)) + 1e-3)

"""A2FSeg in PyTorch: the same architecture as a2fseg's `src/model/`, built from its
`config.json`, with parameter names equal to the tensor names of `model.safetensors`
(so `load_state_dict(strict=True)` proves the mapping is 1:1).

Only for the benchmark comparison in `benches/reference/run.py`; not used by the crate or
its tests. Tensors are `[B, C, D, H, W]` = `[.., z, y, x]` as in the crate.
"""

import json
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MODALITIES = ["t1", "t1c", "t2", "flair"]


def load_safetensors(path):
    """name -> float32 numpy array, for files of f32 tensors (the format a2fseg writes).

    Parsed by hand (8-byte little-endian header length, JSON header, raw data) so that the
    reference needs only numpy and torch.
    """
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[base + start : base + end], dtype="<f4")
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def features(cfg):
    return [min(cfg["base_features"] << s, cfg["max_features"]) for s in range(cfg["poolings"] + 1)]


def out_channels(cfg):
    return 3 if cfg["targets"] == "regions" else 4


def heads_per_msfe(cfg):
    return cfg["poolings"] if cfg["deep_supervision"] else 1


def ds_weights(cfg):
    n = heads_per_msfe(cfg)
    if n == 1:
        return [1.0]
    w = [0.5**l for l in range(n)]
    w[-1] = 0.0
    s = sum(w)
    return [x / s for x in w]


def conv(cin, cout, k, stride=1, bias=True):
    return nn.Conv3d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)


class InstanceNorm(nn.Module):
    """Instance normalisation with affine `gamma` / `beta` (the crate's names)."""

    def __init__(self, channels, eps):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        return F.instance_norm(x, weight=self.gamma, bias=self.beta, eps=self.eps)


class ConvBlock(nn.Module):
    """Conv3d(k3, bias) -> InstanceNorm(affine) -> LeakyReLU."""

    def __init__(self, cin, cout, stride, cfg):
        super().__init__()
        self.conv = conv(cin, cout, 3, stride)
        self.norm = InstanceNorm(cout, cfg["norm_epsilon"])
        self.slope = cfg["leaky_slope"]

    def forward(self, x):
        return F.leaky_relu(self.norm(self.conv(x)), self.slope)


class Stage(nn.Module):
    def __init__(self, blocks, up=None):
        super().__init__()
        if up is not None:
            self.up = up
        self.convs = nn.ModuleList(blocks)

    def forward(self, x):
        for c in self.convs:
            x = c(x)
        return x


class Msfe(nn.Module):
    """nnU-Net-style 3D U-Net: strided-conv encoder, transposed-conv decoder, 1x1x1 heads."""

    def __init__(self, cfg):
        super().__init__()
        f = features(cfg)
        n = cfg["convs_per_stage"]
        enc = []
        for s in range(cfg["poolings"] + 1):
            cin = 1 if s == 0 else f[s - 1]
            blocks = [
                ConvBlock(cin if i == 0 else f[s], f[s], 2 if (s > 0 and i == 0) else 1, cfg)
                for i in range(n)
            ]
            enc.append(Stage(blocks))
        self.encoder = nn.ModuleList(enc)
        dec = []
        for l in range(cfg["poolings"]):
            up = nn.ConvTranspose3d(f[l + 1], f[l], 2, stride=2, bias=False)
            blocks = [ConvBlock(2 * f[l] if i == 0 else f[l], f[l], 1, cfg) for i in range(n)]
            dec.append(Stage(blocks, up))
        self.decoder = nn.ModuleList(dec)
        k = out_channels(cfg)
        self.heads = nn.ModuleList(
            [conv(f[l], k, 1, bias=False) for l in range(heads_per_msfe(cfg))]
        )

    def decode(self, x, levels):
        skips = []
        for s, stage in enumerate(self.encoder):
            x = stage(x)
            if s + 1 < len(self.encoder):
                skips.append(x)
        outs = []
        for l in reversed(range(len(self.decoder))):
            d = self.decoder[l]
            x = d(torch.cat([d.up(x), skips.pop()], 1))
            if l < levels:
                outs.append(x)
        return outs[::-1]

    def features(self, x):
        return self.decode(x, 1)[0]

    def forward(self, x):
        levels = self.decode(x, len(self.heads))
        return levels[0], [h(f) for h, f in zip(self.heads, levels)]


class Msfes(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        for m in MODALITIES:
            setattr(self, m, Msfe(cfg))


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["base_features"]
        for m in MODALITIES:
            setattr(self, m, conv(2 * c, cfg["attention_channels"], cfg["attention_kernel"]))


class Fusion(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c, k = cfg["base_features"], out_channels(cfg)
        if cfg["fusion"] == "adaptive":
            self.attention = Attention(cfg)
        self.average_head = conv(c, k, 1, bias=False)
        if cfg["fusion"] == "adaptive":
            self.fused_head = conv(c, k, 1, bias=False)
        elif cfg["fusion"] == "hemis":
            self.fused_head = conv(2 * c, k, 1, bias=False)


class A2fseg(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.msfe = Msfes(cfg)
        self.fusion = Fusion(cfg)

    def fuse(self, feats):
        """feats: list of (modality, [B, C, D, H, W]) in canonical order ->
        (average logits, final logits, attention list or None)."""
        mean = sum(f for _, f in feats) / len(feats)
        average = self.fusion.average_head(mean)
        kind = self.cfg["fusion"]
        if kind == "adaptive":
            exps = [
                torch.exp(torch.sigmoid(getattr(self.fusion.attention, m)(torch.cat([mean, f], 1))))
                for m, f in feats
            ]
            denom = sum(exps)
            weights = [e / denom for e in exps]
            fused = sum(w * f for w, (_, f) in zip(weights, feats))
            att = [(m, w) for (m, _), w in zip(feats, weights)]
            return average, self.fusion.fused_head(fused), att
        if kind == "hemis":
            var = sum((f - mean) ** 2 for _, f in feats) / len(feats)
            return average, self.fusion.fused_head(torch.cat([mean, var], 1)), None
        return average, average, None

    def forward(self, inputs):
        """inputs: dict modality -> [B, 1, D, H, W]. Returns (per_modality, average,
        fused, attention) like the crate's A2fsegOutput."""
        feats, per = [], []
        for m in MODALITIES:
            if m in inputs:
                f, logits = getattr(self.msfe, m)(inputs[m])
                feats.append((m, f))
                per.append((m, logits))
        average, fused, att = self.fuse(feats)
        return per, average, fused, att


def load_model(folder):
    """The model of an a2fseg model folder (config.json + model.safetensors)."""
    with open(f"{folder}/config.json") as f:
        cfg = json.load(f)
    model = A2fseg(cfg)
    weights = load_safetensors(f"{folder}/model.safetensors")
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, cfg


def target_channels(cfg, classes):
    """classes [B, D, H, W] int -> [B, K, D, H, W] float."""
    c = classes.unsqueeze(1)
    if cfg["targets"] == "regions":
        chans = [c > 0, (c == 1) | (c == 3), c == 3]
    else:
        chans = [c == k for k in range(4)]
    return torch.cat([t.float() for t in chans], 1)


def head_loss(cfg, logits, classes):
    b, k, d, h, w = logits.shape
    y = target_channels(cfg, classes)
    voxels = b * d * h * w
    if cfg["targets"] == "regions":
        x = logits
        bce = x.clamp_min(0) - x * y + torch.log1p(torch.exp(-x.abs()))
        ce = bce.sum() / (voxels * k)
        probs, start = torch.sigmoid(x), 0
    else:
        logp = F.log_softmax(logits, 1)
        ce = -(logp * y).sum() / voxels
        probs, start = logp.exp(), 1
    probs, y = probs[:, start:], y[:, start:]
    kd = k - start

    def per_channel(t):
        return t.transpose(0, 1).reshape(kd, -1).sum(1)

    inter = per_channel(probs * y)
    denom = per_channel(probs) + per_channel(y)
    s = cfg["dice_smooth"]
    dice = (2 * inter + s) / (denom + s)
    return ce + (1 - dice.mean())


def loss(cfg, output, classes):
    """Eq. 5: Σ_m Σ_l w_l L(head_l of MSFE m) + L(average) + L(adaptive)."""
    per, average, fused, _ = output
    weights = ds_weights(cfg)
    total = head_loss(cfg, average, classes)
    for _, logits in per:
        for l, lg in enumerate(logits):
            w = weights[l] if l < len(weights) else 0.0
            if w == 0.0:
                continue
            f = 1 << l
            total = total + w * head_loss(cfg, lg, classes[:, ::f, ::f, ::f])
    if cfg["fusion"] != "average":
        total = total + head_loss(cfg, fused, classes)
    return total


def probabilities(cfg, logits):
    return torch.sigmoid(logits) if cfg["targets"] == "regions" else torch.softmax(logits, 1)


def window_starts(length, patch, step):
    """The crate's infer::window_starts (round half away from zero)."""
    if length <= patch or patch == 0:
        return [0]
    span = length - patch
    stride = max(patch * step, 1.0)
    import math

    steps = math.ceil(span / stride) + 1
    actual = span / (steps - 1)
    return [min(int(math.floor(i * actual + 0.5)), length - patch) for i in range(steps)]


def gaussian_importance(patch):
    """[z, y, x] float32 map, sigma = patch / 8, max 1 (the crate's gaussian_importance)."""
    axes = []
    for n in patch:
        c = (n - 1) / 2.0
        sigma = max(n / 8.0, np.finfo(np.float64).tiny)
        i = np.arange(n, dtype=np.float64) - c
        axes.append(np.exp(-i * i / (2 * sigma * sigma)))
    gx, gy, gz = axes
    g = gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    g = (g / g.max()).astype(np.float32)
    return np.maximum(g, np.finfo(np.float32).tiny)


def sliding_window(images, patch, step, channels, fn):
    """images: list of [z, y, x] float32 arrays (one grid); patch [x, y, z]; fn(list of
    [1, 1, pz, py, px] tensors) -> [channels, pz, py, px] numpy. Gaussian-weighted blend,
    zero padding where the case is smaller than the patch. Returns [channels, z, y, x]."""
    dz, dy, dx = images[0].shape
    px, py, pz = patch
    acc = np.zeros((channels, dz, dy, dx), np.float32)
    weight = np.zeros((dz, dy, dx), np.float32)
    g = gaussian_importance(patch)
    for z0 in window_starts(dz, pz, step):
        for y0 in window_starts(dy, py, step):
            for x0 in window_starts(dx, px, step):
                ez, ey, ex = min(pz, dz - z0), min(py, dy - y0), min(px, dx - x0)
                patches = []
                for im in images:
                    p = np.zeros((pz, py, px), np.float32)
                    p[:ez, :ey, :ex] = im[z0 : z0 + ez, y0 : y0 + ey, x0 : x0 + ex]
                    patches.append(torch.from_numpy(p)[None, None])
                out = fn(patches)
                gw = g[:ez, :ey, :ex]
                weight[z0 : z0 + ez, y0 : y0 + ey, x0 : x0 + ex] += gw
                acc[:, z0 : z0 + ez, y0 : y0 + ey, x0 : x0 + ex] += out[:, :ez, :ey, :ex] * gw
    return acc / weight


def predict_case(model, cfg, images, mods, step=0.5):
    """Probabilities [K, z, y, x] of one subset through the full forward pass per window
    (the crate's Predictor::predict_case without TTA)."""
    k = out_channels(cfg)

    def fn(patches):
        with torch.no_grad():
            _, _, fused, _ = model(dict(zip(mods, patches)))
            return probabilities(cfg, fused)[0].numpy()

    return sliding_window([images[m] for m in mods], cfg["patch_size"], step, k, fn)


def predict_subsets(model, cfg, images, subsets, step=0.5):
    """Probabilities per subset (list of modality lists) with each needed MSFE run once per
    window (the crate's Predictor::predict_subsets)."""
    k = out_channels(cfg)
    union = [m for m in MODALITIES if any(m in s for s in subsets)]

    def fn(patches):
        with torch.no_grad():
            feats = {m: getattr(model.msfe, m).features(p) for m, p in zip(union, patches)}
            outs = []
            for s in subsets:
                _, fused, _ = model.fuse([(m, feats[m]) for m in MODALITIES if m in s])
                outs.append(probabilities(cfg, fused)[0].numpy())
            return np.concatenate(outs, 0)

    out = sliding_window([images[m] for m in union], cfg["patch_size"], step, k * len(subsets), fn)
    return [out[i * k : (i + 1) * k] for i in range(len(subsets))]

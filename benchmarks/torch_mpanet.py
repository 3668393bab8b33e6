"""BENCHMARK-ONLY PyTorch MPANet train step: the authors' network, heads, losses and optimizer.

Not part of mpanet_tf (the project never imports torch). Run it from a throwaway venv:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0+cpu numpy
    /tmp/torchvenv/bin/python benchmarks/torch_mpanet.py [--batch 16] [--steps 3] [--profile]

Written from docs/design.md (§1-§3.1), in the authors' form (NCHW float32, ``nn.Module``s,
``torch.optim.Adam(weight_decay=5e-4)``, i.e. coupled L2): torchvision-layout ResNet-50 with last
stride 1 (BatchNorm2d, eps 1e-5, momentum 0.1), a MAM after layer3 and after layer4, PAM (6 maps,
plain mean pooling, [parts, global] = 14336-d), BatchNorm1d neck with its bias frozen, the shared
classifier, the visible/infrared classifiers and their EMA copies (updated in the forward, before
the step), and every loss term: CE, 0.5 L_sep, L_cc (margin 0.7), 2 x 0.5 (CE_vis + CE_ir),
2.5 KL. Input: a fixed batch of ``--batch`` 384x128 images, P identities x K=4, IR/VIS interleaved.

Prints one JSON line ``{"images_per_s": ..., "images_per_cpu_s": ..., "step_s": [...], ...}`` after
``--warmup`` untimed steps and ``--steps`` timed ones; ``--profile`` adds a per-phase (forward,
backward, optimizer) and per-op-type breakdown from ``torch.profiler``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 395
IMAGES_PER_ID = 4


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class MAM(nn.Module):
    """m = sigmoid(W2 relu(W1 GAP(x))); out = m x + (1 - m) IN(x) (design.md §1.2)."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.channel_attention = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False), nn.Sigmoid())
        self.IN = nn.InstanceNorm2d(channels, track_running_stats=False)

    def forward(self, x):
        m = self.channel_attention(F.adaptive_avg_pool2d(x, 1))
        return m * x + (1 - m) * self.IN(x)


class ResNet50(nn.Module):
    def __init__(self, last_stride=1):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(64, 3, 1)
        self.layer2 = self._stage(128, 4, 2)
        self.layer3 = self._stage(256, 6, 2)
        self.MAM3 = MAM(1024)
        self.layer4 = self._stage(512, 3, last_stride)
        self.MAM4 = MAM(2048)

    def _stage(self, planes, blocks, stride):
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.MAM3(self.layer3(self.layer2(self.layer1(x))))
        return self.MAM4(self.layer4(x))


class MPANet(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, num_parts=6):
        super().__init__()
        self.backbone = ResNet50()
        self.num_parts = num_parts
        self.spatial_attention = nn.Conv2d(2048, num_parts, 1)
        nn.init.zeros_(self.spatial_attention.bias)
        dim = 2048 * (num_parts + 1)
        self.bn_neck = nn.BatchNorm1d(dim)
        self.bn_neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        self.visible_classifier = nn.Linear(dim, num_classes, bias=False)
        self.infrared_classifier = nn.Linear(dim, num_classes, bias=False)
        self.visible_classifier_ = nn.Linear(dim, num_classes, bias=False).requires_grad_(False)
        self.infrared_classifier_ = nn.Linear(dim, num_classes, bias=False).requires_grad_(False)
        self.visible_classifier_.weight.data.copy_(self.visible_classifier.weight.data)
        self.infrared_classifier_.weight.data.copy_(self.infrared_classifier.weight.data)
        self.update_rate = 0.2

    def forward(self, images, labels, infrared, k_size=IMAGES_PER_ID):
        feats = self.backbone(images)                                       # (B, 2048, h, w)
        b, c, h, w = feats.shape
        masks = torch.sigmoid(self.spatial_attention(feats))                # (B, p, h, w)
        parts = torch.einsum("bphw,bchw->bpc", masks, feats) / (h * w)
        global_feat = feats.mean(dim=(2, 3))
        features = torch.cat([parts.reshape(b, -1), global_feat], dim=1)    # (B, 14336)
        bn = self.bn_neck(features)
        loss_id = F.cross_entropy(self.classifier(bn), labels)
        flat = masks.reshape(b, self.num_parts, -1)
        gram = torch.bmm(flat, flat.transpose(1, 2))
        upper = torch.triu(torch.ones(self.num_parts, self.num_parts, dtype=torch.bool), diagonal=1)
        loss_sep = gram[:, upper].sum() / (b * self.num_parts * (self.num_parts - 1) / 2)
        loss_cc = center_cluster_loss(features.float(), labels, k_size, 0.7)
        visible = ~infrared
        logits_v = self.visible_classifier(bn[visible])
        logits_i = self.infrared_classifier(bn[infrared])
        ce_v = F.cross_entropy(logits_v, labels[visible])
        ce_i = F.cross_entropy(logits_i, labels[infrared])
        with torch.no_grad():
            r = self.update_rate
            self.visible_classifier_.weight.data.mul_(1 - r).add_(self.visible_classifier.weight.data, alpha=r)
            self.infrared_classifier_.weight.data.mul_(1 - r).add_(self.infrared_classifier.weight.data, alpha=r)
            mean_v = self.infrared_classifier_(bn[visible].detach())
            mean_i = self.visible_classifier_(bn[infrared].detach())
            target = F.log_softmax(torch.cat([mean_v, mean_i]), dim=1)
        specific = F.softmax(torch.cat([logits_v, logits_i]), dim=1)
        loss_kl = F.kl_div(target, specific, reduction="batchmean")        # KL(P_specific || Q_mean)
        return loss_id + 0.5 * loss_sep + loss_cc + 2 * 0.5 * (ce_v + ce_i) + 2.5 * loss_kl


def center_cluster_loss(features, labels, k_size, margin):
    """Pull to the batch centre of the identity + push between centres (design.md §2.3)."""
    same = (labels[:, None] == labels[None, :]).float()
    centers = same @ features / same.sum(dim=1, keepdim=True)
    pull = (features - centers).pow(2).sum(dim=1).sqrt().mean()
    anchors = centers[::k_size]
    dist = (anchors.pow(2).sum(1, keepdim=True) + centers.pow(2).sum(1)[None] - 2 * anchors @ centers.t())
    dist = dist.clamp(min=1e-12).sqrt()
    other = labels[::k_size][:, None] != labels[None, :]
    push = (F.relu(margin - dist) * other).sum(dim=1) / other.sum(dim=1)
    return pull + push.mean()


def make_batch(batch):
    images = torch.rand(batch, 3, 384, 128) * 4 - 2                        # ~ImageNet-normalised
    labels = torch.arange(batch // IMAGES_PER_ID).repeat_interleave(IMAGES_PER_ID)
    infrared = torch.arange(batch) % 2 == 0
    return images, labels, infrared


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="train batch, a multiple of 4 (default 16)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--profile", action="store_true", help="per-phase and per-op-type breakdown")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = MPANet().train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3.5e-4,
                                 weight_decay=5e-4)
    images, labels, infrared = make_batch(args.batch)
    phases = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def step(timed_phases=False):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = model(images, labels, infrared)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        if timed_phases:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2)):
                phases[name] += dt
        return float(loss.detach())  # the loss in hand: the step has finished

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    warmup = time.perf_counter() - start
    times = []
    cpu = time.process_time()
    for _ in range(args.steps):
        t = time.perf_counter()
        step(timed_phases=True)
        times.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu
    result = {"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "batch": args.batch, "cpu_s": cpu, "step_s": [round(t, 3) for t in times], "warmup_s": round(warmup, 2),
              "images_per_s": args.batch * len(times) / sum(times),
              "images_per_cpu_s": args.batch * len(times) / cpu,
              "phase_s": {k: round(v / args.steps, 3) for k, v in phases.items()}}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        table = {}
        for event in prof.key_averages():
            table[event.key] = table.get(event.key, 0.0) + event.self_cpu_time_total / 1e6
        result["op_self_s"] = dict(sorted(((k, round(v, 4)) for k, v in table.items() if v > 0.002),
                                          key=lambda kv: -kv[1]))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

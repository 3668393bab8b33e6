"""BENCHMARK-ONLY PyTorch reference: what this machine gives PyTorch on the same backbone.

Not part of mpanet_tf (the project never imports torch). Needs a separate, throwaway venv:

    python3 -m venv /tmp/torchbench && /tmp/torchbench/bin/pip install torch==2.13.0 numpy
    /tmp/torchbench/bin/python benchmarks/torch_reference.py [--batch 32] [--train-batch 16]

A torchvision-layout ResNet-50 (Bottleneck v1.5, stride on the 3x3 conv) with last stride 1 (the
authors' backbone, design.md §1.1), written here with torch.nn because torchvision is not installed,
at 384x128 NCHW float32: inference (``eval()``, ``inference_mode``) on ``--batch`` images and one
SGD train step (forward, mean of the 2048-d pooled feature as a stand-in loss, backward, step) on
``--train-batch`` images. MAM, PAM and the heads are left out: they cost < 2% of the FLOPs. Prints
images/s and images per CPU-second (this process, all threads) over ``--repeats`` timed calls after
2 warm-up calls. Results go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

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


class ResNet50(nn.Module):
    def __init__(self, last_stride=1):
        super().__init__()
        self.inplanes = 64
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        self.layer1 = self._stage(64, 3, 1)
        self.layer2 = self._stage(128, 4, 2)
        self.layer3 = self._stage(256, 6, 2)
        self.layer4 = self._stage(512, 3, last_stride)

    def _stage(self, planes, blocks, stride):
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return x.mean(dim=(2, 3))


def timed(fn, images, repeats):
    fn()
    fn()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return images * repeats / wall, images * repeats / cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="inference batch (default 32)")
    parser.add_argument("--train-batch", type=int, default=16, help="train-step batch (default 16; 0 skips)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (default 3)")
    parser.add_argument("--channels-last", action="store_true", help="torch.channels_last memory format")
    args = parser.parse_args()
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = ResNet50(last_stride=1).to(memory_format=fmt)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, mkldnn "
          f"{torch.backends.mkldnn.is_available()}, channels_last {args.channels_last}")
    images = torch.rand(args.batch, 3, 384, 128).contiguous(memory_format=fmt) * 255

    model.eval()

    def infer():
        with torch.inference_mode():
            model(images)

    rate, per_cpu = timed(infer, args.batch, args.repeats)
    print(f"inference batch {args.batch}: {rate:.2f} images/s, {per_cpu:.2f} images/CPU-s")
    if args.train_batch:
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
        train_images = images[: args.train_batch].clone()

        def step():
            optimizer.zero_grad()
            model(train_images).mean().backward()
            optimizer.step()

        rate, per_cpu = timed(step, args.train_batch, args.repeats)
        print(f"train step batch {args.train_batch}: {rate:.2f} images/s, {per_cpu:.2f} images/CPU-s")


if __name__ == "__main__":
    main()

"""The seeds' CIFAR CNN: Conv 32-64-64 (3x3) with max-pooling, Dense 64, Dropout 0.5, Dense 10.

Introduced in chapter 00 and trained in every data-parallel chapter. It adapts to the input:
on 32x32 images the convolutions are 'valid' exactly as in the classic Keras CIFAR tutorial
(30 -> 15 -> 13 -> 6 -> 4, so the dense layer sees 4*4*64); on small images such as the 8x8
digits they are 'same', and a pooling layer is skipped once the map is down to 1 pixel.
"""
from __future__ import annotations

from torch import nn

from . import model


class CNN(nn.Module):
    def __init__(self, in_channels=3, size=(32, 32), n_classes=10, dropout=0.5):
        super().__init__()
        pad = 0 if min(size) >= 32 else 1
        h, w = size
        layers, c = [], in_channels
        for i, out in enumerate((32, 64, 64)):
            layers += [nn.Conv2d(c, out, 3, padding=pad), nn.ReLU()]
            h, w, c = h - 2 + 2 * pad, w - 2 + 2 * pad, out
            if i < 2 and min(h, w) >= 2:  # the seeds pool after the first two convolutions
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c * h * w, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


@model("cnn", kinds=("classification",))
def cnn(spec, cfg):
    c, h, w = spec["input_shape"]
    return CNN(c, (h, w), spec["n_classes"], cfg.dropout)

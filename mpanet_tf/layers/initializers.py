"""PyTorch's initialisations expressed as Keras initializers (design.md §1.1, §1.3, §1.4, §8.16).

- :func:`kaiming_normal_fan_out`: ``nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")``,
  used for every conv created inside the authors' ResNet class (backbone and MAM convs).
- :func:`torch_default_uniform`: PyTorch's default ``Conv2d``/``Linear`` init,
  ``kaiming_uniform_(a=sqrt(5))`` = U(+-1/sqrt(fan_in)), used for the PAM conv and the classifiers.

Keras and PyTorch agree on fan-in/fan-out for these kernels (kh*kw*in and kh*kw*out).
"""

from __future__ import annotations

import keras


def kaiming_normal_fan_out(seed=None):
    """N(0, 2/fan_out), untruncated, as PyTorch's kaiming_normal_(fan_out, relu)."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=seed
    )


def torch_default_uniform(seed=None):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default Conv2d/Linear weight init."""
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed
    )

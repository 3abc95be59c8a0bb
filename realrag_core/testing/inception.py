"""Random-weight Inception for offline tests and GPU checks (never imported by the library)."""

from __future__ import annotations

from pathlib import Path

import torch


def write_random_inception(path: Path, seed: int = 0) -> Path:
    """A random-weight state dict of torch-fidelity's ``FeatureExtractorInceptionV3`` (the network torchmetrics'
    FID uses) for offline tests and GPU checks: same class, same keys, loaded through the same path as the real
    weights. Variance-preserving initialisation, so features differ between images."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tf

    with (
        mock.patch.object(tf, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None),
    ):
        net = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return Path(path)

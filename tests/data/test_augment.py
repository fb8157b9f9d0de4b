"""The device-side augmentations against their references: DARTS' cutout and torchvision's ColorJitter."""

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from ista.data.augment import JITTER, Finish, color_jitter, cutout


def test_cutout_is_dartss_square_clipped_at_the_border():
    x = torch.ones(50, 3, 32, 32)
    out = cutout(x, 16, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    rows, cols = torch.randint(0, 32, (50,), generator=g), torch.randint(0, 32, (50,), generator=g)
    for i in range(50):  # DARTS utils.Cutout: centre anywhere, corners clipped with np.clip
        mask = np.ones((32, 32), np.float32)
        y0, y1 = np.clip([rows[i] - 8, rows[i] + 8], 0, 32)
        x0, x1 = np.clip([cols[i] - 8, cols[i] + 8], 0, 32)
        mask[y0:y1, x0:x1] = 0
        assert torch.equal(out[i], torch.from_numpy(mask).expand(3, 32, 32))


@pytest.mark.parametrize("which", range(4))
def test_color_jitter_is_torchvisions_with_a_factor_per_image(which):
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    strength = [0.0] * 4
    strength[which] = JITTER[which]
    out = color_jitter(x.clone(), torch.Generator().manual_seed(7), tuple(strength))
    draws = torch.rand(4, 6, generator=torch.Generator().manual_seed(7))  # the same draws, in order
    factors = [1 - s + 2 * s * d for s, d in zip(strength[:3], draws[:3], strict=True)]
    factors.append(-strength[3] + 2 * strength[3] * draws[3])
    adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)[which]
    assert not torch.allclose(out, x, atol=1e-3)
    for i in range(6):
        assert torch.allclose(out[i], adjust(x[i], float(factors[which][i])), atol=1e-5)


def test_finish_normalises_then_cuts_out():
    x = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = Finish((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), cutout=8)(x, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0.0, 2.0}  # (1 − 0.5) / 0.25 = 2 outside the square, 0 inside

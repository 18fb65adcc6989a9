"""The night model v2: its exposure curve, crops that agree with the whole photo, tiles (and the
chroma clean-up after them) that agree with one pass, and weight files that describe themselves."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from restoration.architectures.local_exposure import ExposureNet, apply_exposure, maps_for_crop
from restoration.architectures.nafnet_night import save_night
from restoration.architectures.nafnet_night_v2 import (
    NightNAFNetV2,
    from_v1,
    load_night_v2,
    save_night_v2,
)
from restoration.chroma_cleanup import SHIPPED
from restoration.loading import load_restorer
from restoration.tiling import tiled_forward
from shared.catalogue import get_entry
from shared.config import Settings
from tests.restoration.architectures.arch_cases import tiny_night, tiny_night_v2

CPU = torch.device("cpu")


def _maps(log_gain: float, lift: float, size: tuple[int, int]) -> torch.Tensor:
    return torch.cat([torch.full((1, 1, *size), log_gain), torch.full((1, 1, *size), lift)], 1)


def test_shadows_get_the_full_gain_and_bright_pixels_a_gamma_that_keeps_one_at_one() -> None:
    values = torch.tensor([0.001, 0.01, 0.1, 0.5, 0.9, 1.0])
    image = values.view(1, 1, 1, -1).expand(1, 3, 1, -1).contiguous()
    exposed, gain = apply_exposure(image, _maps(2.0, 0.5, (1, 6)), torch.zeros(1, 3))
    out = exposed[0, 0, 0]
    np.testing.assert_allclose(out[:2], values[:2] * np.exp(2.0), rtol=1e-5)  # below e^(-G/s)
    np.testing.assert_allclose(out[2:], values[2:] ** 0.5, rtol=1e-5)
    assert torch.all(out[1:] > out[:-1]), "the curve must be monotone"
    assert out[-1] == pytest.approx(1.0)
    assert torch.all(gain[0, 0, 0, 2:] < 2.0)


def test_all_channels_get_the_same_gain_so_hue_is_kept() -> None:
    image = torch.tensor([0.02, 0.01, 0.005]).view(1, 3, 1, 1)
    exposed, _ = apply_exposure(image, _maps(1.5, 0.4, (1, 1)), torch.zeros(1, 3))
    ratios = (exposed / image).flatten()
    assert torch.allclose(ratios, ratios[0].expand(3))
    assert ratios[0] > 4.0


def test_a_crop_gets_the_values_the_whole_photo_has_there() -> None:
    grid = torch.rand(2, 2, 5, 7, generator=torch.Generator().manual_seed(1))
    full = F.interpolate(grid, size=(61, 83), mode="bilinear", align_corners=False)
    for box in [(0, 0, 61, 83), (10, 20, 16, 32), (45, 70, 16, 13), (0, 82, 61, 1)]:
        top, left, h, w = box
        crop = maps_for_crop(grid, (61, 83), box)
        torch.testing.assert_close(crop, full[:, :, top : top + h, left : left + w])


def test_the_exposure_is_decided_in_float32_under_autocast() -> None:
    model = tiny_night_v2()
    image = torch.rand(1, 3, 40, 56) * 0.05
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = model.decide_exposure(image)
        exposed = model.expose(image)
    assert maps.log_gain.dtype == torch.float32
    assert exposed.dtype == torch.float32


def test_the_exposure_network_sees_the_frame_at_one_scale_whatever_its_size() -> None:
    net = ExposureNet(width=4)
    small = net(torch.rand(1, 3, 60, 90))
    large = net(torch.rand(1, 3, 600, 900))
    assert small.log_gain.shape == large.log_gain.shape
    assert abs(float(small.white_balance.detach().sum())) < 1e-5  # white balance keeps brightness


def test_tiles_are_cut_from_the_photo_exposed_as_a_whole(tmp_path: Path) -> None:
    """Deciding the exposure tile by tile (the control) would light each tile by what that tile
    alone shows, and the photo would come out a patchwork."""
    model = tiny_night_v2()
    path = save_night_v2(model, tmp_path / "v2.safetensors")
    entry = dataclasses.replace(get_entry("darkroom-night"), tile=64, overlap=32)
    restorer = load_restorer(entry, path, CPU, Settings(home=tmp_path, tile_batch_size=3))
    pixels = np.random.default_rng(3).random((150, 230, 3), dtype=np.float32) * 0.6
    pixels[:64, :64] *= 0.01  # a dark corner in a bright frame
    photo = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        exposed = model.expose(photo)
        torch.testing.assert_close(restorer.per_photo(photo).tiles_from, exposed)
        alone = model.expose(photo[..., :64, :64])
        stitched = tiled_forward(model, exposed, config=restorer.tiles, size=restorer.size)
        expected = SHIPPED(stitched, model.log_gain_of(exposed))  # then the chroma clean-up
    # Tiny random weights respond weakly to the photo, but far beyond float error.
    assert (alone - exposed[..., :64, :64]).abs().mean() > 1e-4, "the control shows no effect"
    np.testing.assert_allclose(
        restorer.restore(pixels), expected.clamp(0, 1)[0].numpy().transpose(1, 2, 0), atol=1e-5
    )


def test_v1_weights_start_the_u_net_and_leave_the_exposure_network_new() -> None:
    v1, v2 = tiny_night(), tiny_night_v2()
    new = from_v1(v1.state_dict(), v2)
    assert new and all(name.startswith("exposure.") for name in new)
    torch.testing.assert_close(v2.intro.weight[:, :3], v1.intro.weight)
    assert torch.count_nonzero(v2.intro.weight[:, 3]) == 0
    torch.testing.assert_close(v2.ending.weight, v1.ending.weight)


def test_weight_files_round_trip_and_other_files_are_refused(tmp_path: Path) -> None:
    model = tiny_night_v2()
    path = save_night_v2(model, tmp_path / "v2.safetensors", {"training_steps": 3})
    loaded = load_night_v2(path)
    assert loaded.config() == model.config()
    image = torch.rand(1, 3, 33, 47)
    with torch.no_grad():
        torch.testing.assert_close(loaded.enhance(image), model.enhance(image))
    v1 = save_night(tiny_night(), tmp_path / "v1.safetensors")
    with pytest.raises(ValueError, match="v2"):
        load_night_v2(v1)
    wrong = tmp_path / "wrong.safetensors"
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ending")}
    save_file(state, str(wrong), metadata={"version": "2", "config": '{"width": 4}'})
    with pytest.raises(ValueError, match="wrong.safetensors"):
        load_night_v2(wrong)


def test_the_shipped_configuration_stays_small() -> None:
    model = NightNAFNetV2()
    assert sum(p.numel() for p in model.parameters()) * 4 < 8 * 1024 * 1024


NIGHT_WITHOUT_SPANDREL = """
import sys
import numpy as np
import torch
from shared.catalogue import BUNDLED_WEIGHTS, get_entry
from shared.config import Settings
import workers.pipeline
from restoration.loading import load_restorer
entry = get_entry("darkroom-night")
path = BUNDLED_WEIGHTS / entry.weights_file
restorer = load_restorer(entry, path, torch.device("cpu"), Settings())
restorer.restore(np.full((40, 60, 3), 0.05, dtype=np.float32))
print("spandrel" in sys.modules, "torchvision" in sys.modules)
"""


@pytest.mark.slow  # a fresh interpreter that imports torch
def test_the_night_model_loads_and_restores_without_importing_spandrel() -> None:
    """``import spandrel`` imports every architecture it knows and torchvision with them: 5 s
    of every one-photo ``darkroom submit``, for models the night model does not use."""
    out = subprocess.run(
        [sys.executable, "-c", NIGHT_WITHOUT_SPANDREL], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]

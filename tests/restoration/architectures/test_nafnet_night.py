"""NightNAFNet: within the size budget, shape-preserving, and round-trips through safetensors.

Everything runs on randomly initialised models, so no weights are needed. Whether the shipped
weights improve PSNR is tested elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from restoration.architectures.nafnet_night import MODEL_NAME, NightNAFNet, load_night, save_night

SHIPPED_CONFIG = {
    "width": 16,
    "enc_blocks": [1, 1, 2, 2],
    "middle_blocks": 2,
    "dec_blocks": [1, 1, 1, 1],
}
TINY = {"width": 8, "enc_blocks": [1, 1], "middle_blocks": 1, "dec_blocks": [1, 1]}


def test_shipped_config_param_budget() -> None:
    model = NightNAFNet(**SHIPPED_CONFIG)
    n = sum(p.numel() for p in model.parameters())
    assert n <= 2_000_000
    assert n * 4 <= 8 * 1024 * 1024  # float32 safetensors stays under 8 MB
    assert model.size_multiple == 16


@pytest.mark.parametrize(("h", "w"), [(32, 48), (64, 64), (37, 50)])
def test_output_shape_equals_input(h: int, w: int) -> None:
    torch.manual_seed(0)
    model = NightNAFNet(**TINY).eval()
    assert model.size_multiple == 4
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_initial_model_brightens() -> None:
    # The gain head starts at about x3, so an untrained model already brightens dark input.
    model = NightNAFNet(**TINY).eval()
    x = torch.full((1, 3, 32, 32), 0.1)
    with torch.no_grad():
        assert model(x).mean() > 0.2


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = NightNAFNet(**TINY).eval()
    path = save_night(model, tmp_path / "night.safetensors", extra_metadata={"steps": 5})
    loaded = load_night(path)
    assert not loaded.training
    assert loaded.config() == model.config()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["name"] == MODEL_NAME and meta["version"] == "1"
    assert json.loads(meta["config"]) == model.config()
    assert json.loads(meta["steps"]) == 5


def test_not_safetensors_raises_value_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_night(bad)


def test_missing_config_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "noconfig.safetensors"
    save_file(NightNAFNet(**TINY).state_dict(), str(path), metadata={"name": "x"})
    with pytest.raises(ValueError, match="config"):
        load_night(path)


def test_mismatched_weights_raise_value_error(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.safetensors"
    state = NightNAFNet(**TINY).state_dict()
    other = {**TINY, "width": 12}
    save_file(state, str(path), metadata={"config": json.dumps(other)})
    with pytest.raises(ValueError, match="do not match"):
        load_night(path)


def test_bad_config_json_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "badjson.safetensors"
    save_file(NightNAFNet(**TINY).state_dict(), str(path), metadata={"config": "{not json"})
    with pytest.raises(ValueError, match="config"):
        load_night(path)
    save_file(NightNAFNet(**TINY).state_dict(), str(path), metadata={"config": '{"depth": 3}'})
    with pytest.raises(ValueError, match="unknown"):
        load_night(path)


def test_exposure_statistics_stay_exact_under_bf16_autocast() -> None:
    """Summed in bf16, 280000 positions came out as 262144; the sums and counts must be float32
    whatever precision the network runs in."""
    model = NightNAFNet(width=4, enc_blocks=[1] * 4, middle_blocks=1, dec_blocks=[1] * 4).eval()
    bottleneck = torch.ones(1, 64, 500, 560)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        sums, counts = model._gain_stats(bottleneck.to(torch.bfloat16))
    assert sums.dtype == counts.dtype == torch.float32
    assert counts[0].item() == 280_000
    assert sums[0, 0].item() == 280_000

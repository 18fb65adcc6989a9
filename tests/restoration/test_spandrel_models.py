"""Checkpoints load through spandrel the way users' files do, and each task runs its own head.

No published weights are downloaded: each architecture is built from spandrel's own classes with
tiny hyper-parameters and seeded random weights, saved in the layout its authors publish, then
detected, loaded and run through ``restoration.spandrel_models`` and compared with the module that
produced the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from spandrel.architectures.DnCNN import DnCNN
from spandrel.architectures.FFTformer import FFTformer
from spandrel.architectures.IPT import IPT
from spandrel.architectures.NAFNet import NAFNet
from spandrel.architectures.RetinexFormer import RetinexFormer
from spandrel.architectures.SCUNet import SCUNet

from restoration.device.precision import autocast_dtype
from restoration.loading import load_restorer
from restoration.spandrel_models import (
    IPT_PRETRAIN_TASKS,
    LoadedModel,
    UnsupportedCheckpoint,
    detect,
    load_spandrel,
)
from shared.catalogue import CATALOGUE, ModelEntry
from shared.config import Settings
from shared.errors import DarkroomError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build().eval()


def _save(state_dict: dict[str, torch.Tensor], path: Path, wrap: str | None = None) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    else:
        torch.save({wrap: state_dict} if wrap else state_dict, path)
    return path


def _image(height: int, width: int, batch: int = 1, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator)


# --- the single-task restoration models ---------------------------------------------------------

# (id, tiny constructor, file name, wrapping key, (supports_half, supports_bfloat16), multiple)
# File layouts follow the publishers: NAFNet (megvii-research) and RetinexFormer ship BasicSR
# files with the weights under "params"; SCUNet and FFTformer ship plain state dicts.
SINGLE_TASK: list[
    tuple[str, Callable[[], torch.nn.Module], str, str | None, tuple[bool, bool], int]
] = [
    (
        "NAFNet",
        lambda: NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1]),
        "nafnet-gopro.pth",
        "params",
        (False, True),
        1,
    ),
    (
        "RetinexFormer",
        lambda: RetinexFormer(n_feat=8, stage=1, num_blocks=[1, 1, 1]),
        "retinexformer-lol.safetensors",
        None,
        (False, True),
        8,
    ),
    (
        "SCUNet",
        lambda: SCUNet(config=[1, 1, 1, 1, 1, 1, 1], dim=64),
        "scunet-real-psnr.pth",
        None,
        (True, True),
        1,
    ),
    (
        "FFTformer",
        lambda: FFTformer(
            dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1, ffn_expansion_factor=1
        ),
        "fftformer-gopro.pt",
        None,
        (False, True),
        32,
    ),
    (
        "DnCNN",
        lambda: DnCNN(in_nc=3, out_nc=3, nc=8, nb=20, act_mode="R"),
        "dncnn-color.pth",
        None,
        (False, True),
        1,
    ),
]


@pytest.mark.parametrize(
    ("arch", "build", "filename", "wrap", "precision", "multiple"),
    SINGLE_TASK,
    ids=[case[0] for case in SINGLE_TASK],
)
def test_single_task_round_trip(
    tmp_path: Path,
    arch: str,
    build: Callable[[], torch.nn.Module],
    filename: str,
    wrap: str | None,
    precision: tuple[bool, bool],
    multiple: int,
) -> None:
    module = _seeded(build)
    path = _save(module.state_dict(), tmp_path / filename, wrap)

    assert detect(path) == arch
    loaded = load_spandrel(path)
    assert loaded.architecture == arch
    assert (loaded.supports_half, loaded.supports_bfloat16) == precision
    assert loaded.size_multiple == multiple
    assert loaded.tasks == ("restore",) and loaded.default_task == "restore"
    assert loaded.scale == loaded.scale_for(None) == loaded.scale_for("restore") == 1

    # 64 x 64 meets every size requirement, so the original module can run it directly.
    x = _image(64, 64)
    with torch.no_grad():
        expected = module(x).clamp(0.0, 1.0)
    got = loaded.forward(x)
    assert got.shape == x.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert (got - x).abs().max() > 1e-3, "the model should change the image"

    # A side that breaks the requirements is padded and cropped back.
    odd = _image(45, 70, seed=2)
    assert loaded.forward(odd, "restore").shape == odd.shape


@pytest.mark.parametrize(
    ("arch", "build", "filename", "wrap"),
    [case[:4] for case in SINGLE_TASK],
    ids=[case[0] for case in SINGLE_TASK],
)
def test_a_batch_runs_in_one_call_as_its_images_would_alone(
    tmp_path: Path, arch: str, build: Callable[[], torch.nn.Module], filename: str, wrap: str | None
) -> None:
    """Tiles (of one photo, or of several jobs' photos in one pass) go to the model as one
    batch; no sample may change another's output."""
    loaded = load_spandrel(_save(_seeded(build).state_dict(), tmp_path / filename, wrap))
    calls = []
    loaded.descriptor.model.register_forward_hook(lambda *_: calls.append(1))
    batch = _image(40, 72, batch=3, seed=5)
    together = loaded.forward(batch)
    assert len(calls) == 1
    alone = torch.cat([loaded.forward(image[None]) for image in batch])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_every_catalogue_architecture_is_checked_for_batches() -> None:
    single = {entry.architecture for entry in CATALOGUE.values() if entry.family == "spandrel"}
    assert single <= {case[0] for case in SINGLE_TASK}


def test_task_names_come_from_the_catalogue(tmp_path: Path) -> None:
    path = _save(_seeded(SINGLE_TASK[1][1]).state_dict(), tmp_path / "retinexformer.pth")
    loaded = load_spandrel(path, task_names=("low-light",))
    assert loaded.tasks == ("low-light",)
    assert loaded.forward(_image(16, 16), "low-light").shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown task 'restore'.*low-light"):
        loaded.forward(_image(16, 16), "restore")
    with pytest.raises(ValueError, match="1 head"):
        load_spandrel(path, task_names=("low-light", "denoise"))


def test_loaded_model_drops_into_the_whole_image_restorer(tmp_path: Path) -> None:
    """The worker's restorer pads, calls and clamps; a LoadedModel fits where a Module did."""
    module = _seeded(SINGLE_TASK[3][1])  # FFTformer: needs sides that are multiples of 32
    loaded = load_spandrel(_save(module.state_dict(), tmp_path / "fftformer.pth"))
    assert loaded.architecture == "FFTformer"
    entry = ModelEntry(
        name="fftformer-test",
        task="deblur",
        architecture="FFTformer",
        family="spandrel",
        description="",
        weights_file="fftformer.pth",
        tile=64,
        overlap=16,
    )
    path = tmp_path / "fftformer.pth"
    restorer = load_restorer(entry, path, torch.device("cpu"), Settings(home=tmp_path))
    pixels = np.random.default_rng(0).random((40, 50, 3), dtype=np.float32)
    restored = restorer.restore(pixels)
    assert restored.shape == pixels.shape and restored.dtype == np.float32
    assert restored.min() >= 0.0 and restored.max() <= 1.0


# --- IPT ------------------------------------------------------------------------------------------

# Published IPT: n_feats 64, patch_dim 3, 12 layers, 48-px patches. Tiny here, but the same
# 48-px patch (spandrel fixes num_heads at 12, so n_feats * 3 * 3 must divide by 12).
TINY_IPT: dict[str, Any] = {"patch_size": 48, "patch_dim": 3, "n_feats": 12, "num_layers": 1}
PRETRAIN_HEAD = {task: i for i, task in enumerate(IPT_PRETRAIN_TASKS)}


@pytest.fixture(scope="module")
def ipt_pretrain(tmp_path_factory: pytest.TempPathFactory) -> tuple[IPT, LoadedModel]:
    module = _seeded(lambda: IPT(**TINY_IPT, scale=[2, 3, 4, 1, 1, 1], num_queries=6))
    assert isinstance(module, IPT)
    path = _save(module.state_dict(), tmp_path_factory.mktemp("ipt") / "IPT_pretrain.pt")
    return module, load_spandrel(path)


def _reference_ipt(module: IPT, x: torch.Tensor, head: int) -> torch.Tensor:
    """The reference's arithmetic on one 48 x 48 patch: 0-255 in, chosen head, 0-255 out."""
    module.set_scale(head)
    with torch.no_grad():
        return (module(x * 255.0) / 255.0).clamp(0.0, 1.0)


def test_ipt_pretrained_checkpoint_exposes_six_tasks(ipt_pretrain: tuple[IPT, LoadedModel]) -> None:
    _, loaded = ipt_pretrain
    assert loaded.architecture == "IPT"
    assert loaded.tasks == ("sr-x2", "sr-x3", "sr-x4", "derain", "denoise-30", "denoise-50")
    assert [loaded.scale_for(task) for task in loaded.tasks] == [2, 3, 4, 1, 1, 1]
    assert loaded.default_task == "sr-x4" and loaded.scale == 4  # spandrel's own choice
    assert loaded.minimum_size == 48 and loaded.size_multiple == 1
    assert (loaded.supports_half, loaded.supports_bfloat16) == (False, True)
    assert loaded.changes_per_task  # set_scale picks the head: never compiled


@pytest.mark.parametrize("task", ["sr-x3", "derain", "denoise-30"])
def test_ipt_task_runs_its_own_head(ipt_pretrain: tuple[IPT, LoadedModel], task: str) -> None:
    module, loaded = ipt_pretrain
    x = _image(48, 48)
    expected = _reference_ipt(module, x, PRETRAIN_HEAD[task])
    got = loaded.forward(x, task)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_ipt_patches_any_size_and_heads_differ(ipt_pretrain: tuple[IPT, LoadedModel]) -> None:
    _, loaded = ipt_pretrain
    x = _image(40, 70)  # shorter than one 48-px patch: padded, chopped, cropped back
    assert loaded.forward(x, "sr-x3").shape == (1, 3, 120, 210)
    denoised = loaded.forward(x, "denoise-30")
    derained = loaded.forward(x, "derain")
    assert denoised.shape == derained.shape == x.shape
    assert (denoised - derained).abs().max() > 1e-3
    with pytest.raises(ValueError, match="unknown task 'denoise-25'"):
        loaded.forward(x, "denoise-25")
    with pytest.raises(ValueError, match="unknown task"):
        loaded.scale_for("deblur")


def test_ipt_batches_run_image_by_image(ipt_pretrain: tuple[IPT, LoadedModel]) -> None:
    """The reference's patch chop folds one image at a time; a batch must not be mixed up."""
    module, loaded = ipt_pretrain
    batch = _image(48, 48, batch=2)
    got = loaded.forward(batch, "derain")
    for i in range(2):
        expected = _reference_ipt(module, batch[i : i + 1], PRETRAIN_HEAD["derain"])
        torch.testing.assert_close(got[i : i + 1], expected, atol=1e-4, rtol=1e-4)


def test_ipt_single_task_checkpoints(tmp_path: Path) -> None:
    sr = _seeded(lambda: IPT(**TINY_IPT, scale=[2]))
    sr_path = _save(sr.state_dict(), tmp_path / "IPT_sr2.safetensors")
    loaded_sr = load_spandrel(sr_path)
    assert loaded_sr.tasks == ("sr-x2",) and loaded_sr.scale == 2
    assert not loaded_sr.changes_per_task
    x = _image(48, 48)
    assert isinstance(sr, IPT)
    torch.testing.assert_close(loaded_sr.forward(x), _reference_ipt(sr, x, 0), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="scale is x2"):
        load_spandrel(sr_path, task_names=("sr-x3",))

    restore_path = _save(_seeded(lambda: IPT(**TINY_IPT)).state_dict(), tmp_path / "IPT_dn30.pt")
    assert load_spandrel(restore_path).tasks == ("restore",)  # the weights cannot say which
    named = load_spandrel(restore_path, task_names=("denoise-30",))
    assert named.tasks == ("denoise-30",) and named.scale_for("denoise-30") == 1
    assert named.forward(_image(50, 60), "denoise-30").shape == (1, 3, 50, 60)


# --- refusals and precision -----------------------------------------------------------------------


def _unknown_files(tmp_path: Path) -> list[Path]:
    sequential = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3)
    )
    state_dict = tmp_path / "random-sequential.pth"
    torch.save(sequential.state_dict(), state_dict)
    pickled_module = tmp_path / "whole-module.pth"
    torch.save(sequential, pickled_module)
    text_as_pth = tmp_path / "notes.pth"
    text_as_pth.write_text("these are not weights\n")
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    return [state_dict, pickled_module, text_as_pth, text]


def test_unknown_checkpoints_are_refused_clearly(tmp_path: Path) -> None:
    for path in _unknown_files(tmp_path):
        for load in (detect, load_spandrel):
            with pytest.raises(UnsupportedCheckpoint) as refused:
                load(path)
            message = str(refused.value)
            assert message.startswith(f"{path.name} is not a checkpoint spandrel recognises (")
            assert isinstance(refused.value, DarkroomError)
            assert refused.value.code == "unsupported_checkpoint"
            assert refused.value.http_status == 422
            assert refused.value.message == message
    with pytest.raises(UnsupportedCheckpoint, match="none of the architectures.*4 tensors"):
        detect(tmp_path / "random-sequential.pth")


def test_missing_file_is_not_called_unsupported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        detect(tmp_path / "absent.pth")


def test_autocast_follows_spandrels_precision_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    both = {"supports_half": True, "supports_bfloat16": True}
    assert autocast_dtype("cpu", **both) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert autocast_dtype("cuda", **both) is torch.bfloat16
    assert autocast_dtype("cuda", supports_half=True, supports_bfloat16=False) is torch.float16
    assert autocast_dtype("cuda", supports_half=False, supports_bfloat16=False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert autocast_dtype("cuda", **both) is torch.float16
    assert autocast_dtype("cuda", supports_half=False, supports_bfloat16=True) is None

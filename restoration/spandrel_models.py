"""Published restoration checkpoints loaded through spandrel, with one task chosen per job.

Spandrel (github.com/chaiNNer-org/spandrel) reads a state dict, detects its architecture from the
key names and derives the hyper-parameters from tensor shapes, so NAFNet, RetinexFormer, SCUNet,
FFTformer, IPT and the other architectures it knows load from the files their authors publish,
with no per-model code here. This module adds what Darkroom needs on top:

* a refusal that says what is wrong (:class:`UnsupportedCheckpoint`) for a file spandrel cannot
  read or does not recognise, used by ``darkroom models add`` before it registers anything;
* *tasks*: a checkpoint can hold several heads, and the job says which one runs. IPT's
  multi-task pretrained checkpoint has six (super-resolution x2/x3/x4, deraining, denoising at
  sigma 30 and 50); spandrel's own call always runs the largest-scale head, so IPT is driven here
  through spandrel's port of the reference's patch-chopping ``Model``, head chosen per call;
* precision: on CUDA the forward pass runs under bf16 (else fp16) autocast where spandrel's
  ``supports_bfloat16`` / ``supports_half`` flags allow it; on CPU it stays in float32.

What is relied on from spandrel 0.4.2 (checked against its source):

* ``ImageModelDescriptor.__call__`` takes a ``1 x C x H x W`` tensor in [0, 1], pads it
  (reflect, then replicate) to ``size_requirements`` (minimum side, multiple, square), runs the
  architecture's own call function (e.g. RetinexFormer's interlaced pass for sides >= 3000 px),
  clamps to [0, 1] and crops the padding away. Non-IPT models go through it unchanged.
* ``spandrel.architectures.IPT.__arch.model.Model`` is a line-by-line port of the reference's
  ``Model.forward_chop`` (huawei-noah/Pretrained-IPT, ``model/__init__.py``) minus its
  ``.cuda()`` / ``data_parallel`` calls: the image is cut into ``patch_size`` (48 px for every
  published checkpoint) patches with a stride of ``patch_size / 4`` (12 px); the border strips
  and the bottom-right corner are run as their own patches; overlapping outputs are averaged
  after ``patch_size / 4`` px of each patch's margin is dropped. Patches run in batches of 64
  (the reference's ``--crop_batch_size``). The chop handles one image at a time, so IPT's
  batches are looped here; every other architecture takes a batch in one call.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
from spandrel.architectures.IPT import IPT
from spandrel.architectures.IPT.__arch.model import Model as IPTPatchRunner

from restoration.device.precision import autocast, autocast_dtype, finite_or_float32
from restoration.padding import SizeRequirements, pad_to
from shared.errors import UnsupportedCheckpoint

__all__ = [
    "IPT_PRETRAIN_SCALES",
    "IPT_PRETRAIN_TASKS",
    "LoadedModel",
    "UnsupportedCheckpoint",
    "detect",
    "load_spandrel",
    "size_requirements_of",
]

IPT_PRETRAIN_SCALES: tuple[int, ...] = (2, 3, 4, 1, 1, 1)
"""Tail scales of IPT's multi-task pretrained checkpoint (``--scale 2+3+4+1+1+1``)."""

IPT_PRETRAIN_TASKS: tuple[str, ...] = (
    "sr-x2",
    "sr-x3",
    "sr-x4",
    "derain",
    "denoise-30",
    "denoise-50",
)
"""Task of each head of IPT's multi-task pretrained checkpoint, in head order.

The weights cannot tell the three scale-1 heads apart; the order is the authors' pretraining
pipeline: task index 0-2 are bicubic x2/x3/x4, 3 adds rain streaks, 4 and 5 add Gaussian noise
with sigma 30 and 50 (``src/data/bicubic.py`` of the official MindSpore IPT, which trains with
``--scale 2+3+4+1+1+1 --num_queries 6``; the PyTorch release's ``IPT_pretrain.pt`` has the same
six queries). A checkpoint with another layout can be named with ``load_spandrel(task_names=...)``.
"""

_SR_TASK = re.compile(r"sr-x(\d+)")


def size_requirements_of(descriptor: ImageModelDescriptor) -> SizeRequirements:
    """A spandrel descriptor's requirements as ``restoration.padding``'s type."""
    theirs = descriptor.size_requirements
    return SizeRequirements(
        minimum=theirs.minimum, multiple_of=theirs.multiple_of, square=theirs.square
    )


@dataclass(eq=False)
class LoadedModel:
    """A checkpoint loaded by spandrel, with the tasks its heads perform.

    Duck-types the ``torch.nn.Module`` surface that ``restoration.restorers.TiledRestorer``
    uses (``to``, ``eval``, calling it, ``size_multiple``).
    """

    architecture: str
    """Spandrel's architecture id, e.g. ``"NAFNet"``, ``"IPT"``."""
    scale: int
    """Output scale of the default task (the one run when no task is given)."""
    size_multiple: int
    """Sides are padded to a multiple of this (>= 1); pick tile sizes accordingly."""
    minimum_size: int
    """Shorter sides are padded up to this (IPT: its patch size)."""
    square: bool
    supports_half: bool
    supports_bfloat16: bool
    tasks: tuple[str, ...]
    """What each head does, in head order; a single-task model has one."""
    default_task: str
    """Spandrel's choice when no task is given: the first head with the largest scale."""
    descriptor: ImageModelDescriptor = field(repr=False)
    task_scales: tuple[int, ...] = field(repr=False)
    """Output scale of each head, aligned with ``tasks``."""
    precision: str = "auto"
    """``auto``, ``fp32`` (e.g. to compare with references), ``bf16`` or ``fp16``: see
    :func:`autocast_dtype`."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, init=False)
    _overflow: threading.local = field(default_factory=threading.local, repr=False, init=False)
    """Per thread: whether the network's last output held inf or NaN (``watch_overflow``)."""

    @property
    def _is_ipt(self) -> bool:
        return isinstance(self.descriptor.model, IPT)

    @property
    def size_requirements(self) -> SizeRequirements:
        """What the model needs of its input's height and width (spandrel's own, as
        ``restoration.padding``'s type), which ``restoration.padding.pad_to`` pads tiles to."""
        return size_requirements_of(self.descriptor)

    @property
    def device(self) -> torch.device:
        return self.descriptor.device

    @property
    def changes_per_task(self) -> bool:
        """Whether running a task changes the module itself: IPT picks its head with
        ``set_scale``. A compiled graph guards on that state and would be rebuilt on a switch."""
        return self._is_ipt and len(self.tasks) > 1

    def head_for(self, task: str | None) -> int:
        """Index of the head that performs ``task`` (None: the default task)."""
        name = self.default_task if task is None else task
        try:
            return self.tasks.index(name)
        except ValueError:
            raise ValueError(
                f"unknown task {name!r} for this {self.architecture} model; "
                f"it can do: {', '.join(self.tasks)}"
            ) from None

    def scale_for(self, task: str | None) -> int:
        """Output scale of ``task``: 1 for restoration, N for N-times super-resolution."""
        return self.task_scales[self.head_for(task)]

    def autocast_dtype(self, device: torch.device | str) -> torch.dtype | None:
        return autocast_dtype(
            device,
            supports_half=self.supports_half,
            supports_bfloat16=self.supports_bfloat16,
            precision=self.precision,
        )

    def forward(self, x: torch.Tensor, task: str | None = None) -> torch.Tensor:
        """Run ``task`` on ``x`` (N x 3 x H x W, RGB in [0, 1], on the model's device).

        Returns N x 3 x H*s x W*s with s = ``scale_for(task)``, in ``x``'s dtype, values in
        [0, 1] (spandrel's call clamps; the IPT path clamps the same way).
        """
        if x.ndim != 4:
            raise ValueError(f"expected an N x C x H x W tensor, got shape {tuple(x.shape)}")
        head = self.head_for(task)

        def run(dtype: torch.dtype | None) -> torch.Tensor:
            with torch.inference_mode(), autocast(dtype, x.device):
                if not self._is_ipt:
                    # One call for the whole batch: spandrel documents 1 x C x H x W, but its
                    # padding, call and crop work on any N, and the catalogue's architectures
                    # treat the samples independently (tests/restoration/test_spandrel_models.py
                    # checks each). A batch of tiles then costs one pass, not N.
                    return self.descriptor(x).to(x.dtype)
                outputs = [self._ipt_forward(image[None], head) for image in x]
            return torch.cat(outputs).to(x.dtype)

        def finite(output: torch.Tensor) -> bool:
            # spandrel's call clamps, which turns inf into 1: the hook saw the raw output.
            return not self._overflow.seen and bool(torch.isfinite(output).all())

        self._overflow.seen = False
        return finite_or_float32(run, self.autocast_dtype(x.device), self.architecture, finite)

    def watch_overflow(self) -> None:
        """Note non-finite outputs of the network itself, before spandrel's call clamps them
        (``forward`` then runs the pass again in float32)."""

        def hook(_module: torch.nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and not bool(torch.isfinite(output).all()):
                self._overflow.seen = True

        self.descriptor.model.register_forward_hook(hook)

    __call__ = forward

    def _ipt_forward(self, image: torch.Tensor, head: int) -> torch.Tensor:
        """The reference's inference for one IPT head: 0-255 input, 48-px overlapping patches."""
        model = self.descriptor.model
        assert isinstance(model, IPT)
        model.eval()
        height, width = image.shape[-2:]
        padded = pad_to(image, self.size_requirements)
        rgb_range = float(model.rgb_range)
        # set_scale mutates the module: serialise so concurrent jobs keep their own head.
        with self._lock:
            output = IPTPatchRunner(model).forward(padded * rgb_range, head) / rgb_range
        scale = self.task_scales[head]
        return output[..., : height * scale, : width * scale].clamp_(0.0, 1.0)

    def to(self, device: torch.device | str) -> LoadedModel:
        self.descriptor.to(device)
        return self

    def eval(self) -> LoadedModel:
        self.descriptor.eval()
        return self


def _refuse(path: Path, why: str) -> UnsupportedCheckpoint:
    return UnsupportedCheckpoint(f"{path.name} is not a checkpoint spandrel recognises ({why})")


def _load_descriptor(path: Path, device: torch.device | str) -> ImageModelDescriptor:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    loader = ModelLoader(device)
    try:
        with warnings.catch_warnings():
            # spandrel tries TorchScript first for .pt files; torch warns that jit is deprecated.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load", category=FutureWarning)
            state_dict = loader.load_state_dict_from_file(path)
    except Exception as exc:
        # torch.load, safetensors and spandrel's restricted unpickler raise many unrelated
        # types for files that are not weights; all of them mean the same thing to the user.
        raise _refuse(
            path,
            "it cannot be read as .pth/.pt/.ckpt/.safetensors weights: "
            f"{type(exc).__name__}: {_first_line(exc)}",
        ) from exc
    if not isinstance(state_dict, dict) or not state_dict:
        raise _refuse(path, "the file holds no state dict of tensors")
    try:
        descriptor = loader.load_from_state_dict(state_dict)
    except UnsupportedModelError:
        raise _refuse(
            path,
            f"none of the architectures spandrel knows matches its {len(state_dict)} tensors",
        ) from None
    except Exception as exc:
        # Detection matched on key names but the shapes did not build a model.
        raise _refuse(
            path,
            "its keys look like a known architecture but the weights do not fit it: "
            f"{type(exc).__name__}: {_first_line(exc)}",
        ) from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise _refuse(
            path,
            f"it is a {descriptor.architecture.id} {descriptor.purpose.lower()} model, "
            "not an image-to-image one",
        )
    _check_runs_on_rgb(path, descriptor)
    return descriptor


PROBE_SIDE = 32
"""Side of the RGB image a loaded checkpoint must restore before it is accepted."""


def _check_runs_on_rgb(path: Path, descriptor: ImageModelDescriptor) -> None:
    """Refuse a checkpoint no photo could run through, before anyone registers it or a job
    meets it. Detection is a key-name heuristic, so a file can be taken for an architecture it
    is not: spandrel 0.4.2 reads KAIR's colour FFDNet as a 12-channel FDnCNN, which fails with a
    channel-count error on every RGB image. The channel counts catch that case; a small RGB
    image through the model catches any other mismatch."""
    described = f"{descriptor.architecture.id} ({', '.join(descriptor.tags) or 'no tags'})"
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise _refuse(
            path,
            f"spandrel takes it for a {described} with {descriptor.input_channels} input and "
            f"{descriptor.output_channels} output channels, but Darkroom restores 3-channel RGB "
            "photos; it may be an architecture spandrel misdetects (KAIR's FFDNet files are "
            "read as a 12-channel FDnCNN)",
        )
    requirements = size_requirements_of(descriptor)
    side = max(PROBE_SIDE, requirements.minimum)
    side += -side % max(1, requirements.multiple_of)
    probe = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            output = descriptor(probe.to(descriptor.device))
    except (RuntimeError, ValueError) as exc:
        raise _refuse(
            path,
            f"spandrel takes it for a {described}, but it fails on an RGB image: "
            f"{type(exc).__name__}: {_first_line(exc)}",
        ) from exc
    if output.shape[1] != 3:
        raise _refuse(path, f"it turns an RGB image into {output.shape[1]} channels")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"


def detect(path: Path) -> str:
    """Spandrel's architecture id for the checkpoint at ``path``.

    The checkpoint is fully built on the CPU, not only matched by key names: spandrel's detection
    is a key-name heuristic (SCUNet's looks at two keys), and ``models add`` must refuse a file
    whose shapes do not make a working model. Raises :class:`UnsupportedCheckpoint` otherwise.
    """
    return str(_load_descriptor(Path(path), "cpu").architecture.id)


def load_spandrel(
    path: Path,
    device: torch.device | str = "cpu",
    task_names: Sequence[str] | None = None,
    precision: str = "auto",
) -> LoadedModel:
    """Load the checkpoint at ``path`` onto ``device``, in eval mode.

    ``task_names`` names the heads in order, e.g. the catalogue entry's task for a single-task
    model (``("low-light",)``), or ``("denoise-30",)`` for an IPT denoising checkpoint, whose
    scale-1 head the weights alone cannot tell from a deraining one. Without it, names come
    from the weights: ``sr-xN`` for an N-times head, ``restore`` for a scale-1 one, and
    :data:`IPT_PRETRAIN_TASKS` for IPT's six-head pretrained layout.
    """
    path = Path(path)
    descriptor = _load_descriptor(path, device).eval()
    model = descriptor.model
    scales = tuple(int(s) for s in model.scale) if isinstance(model, IPT) else (descriptor.scale,)
    tasks = _task_names(path, descriptor, scales, task_names)
    default_head = scales.index(max(scales))
    requirements = descriptor.size_requirements
    loaded = LoadedModel(
        architecture=str(descriptor.architecture.id),
        scale=scales[default_head],
        size_multiple=max(1, requirements.multiple_of),
        minimum_size=requirements.minimum,
        square=requirements.square,
        supports_half=descriptor.supports_half,
        supports_bfloat16=descriptor.supports_bfloat16,
        tasks=tasks,
        default_task=tasks[default_head],
        descriptor=descriptor,
        task_scales=scales,
        precision=precision,
    )
    loaded.watch_overflow()
    return loaded


def _task_names(
    path: Path,
    descriptor: ImageModelDescriptor,
    scales: tuple[int, ...],
    given: Sequence[str] | None,
) -> tuple[str, ...]:
    if given is not None:
        names = tuple(given)
        if len(names) != len(scales):
            raise ValueError(
                f"{path.name} has {len(scales)} head(s) with scales {list(scales)}, "
                f"but {len(names)} task name(s) were given: {list(names)}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, got {list(names)}")
        for name, scale in zip(names, scales, strict=True):
            match = _SR_TASK.fullmatch(name)
            if match and int(match.group(1)) != scale:
                raise ValueError(
                    f"task {name!r} does not fit its head of {path.name}, whose scale is x{scale}"
                )
        return names
    if scales == IPT_PRETRAIN_SCALES and isinstance(descriptor.model, IPT):
        return IPT_PRETRAIN_TASKS
    if descriptor.purpose == "FaceSR":
        guessed = [f"face-sr-x{scales[0]}"]
    else:
        guessed = [f"sr-x{s}" if s > 1 else "restore" for s in scales]
    # Several heads of the same kind: tell them apart by head index.
    return tuple(
        f"{name}-head{i}" if guessed.count(name) > 1 else name for i, name in enumerate(guessed)
    )

"""The engine of ``bench_matrix.py``: models, candidates, timing, memory, targets.

One *configuration* is a model, an input size, a batch size, a layer depth, a
dtype, a device and a memory format. Within a configuration every *candidate*
(the ``no_grad`` forward, the autograd lower bound, each camseg extractor at
each number of targets, each installed peer library) is timed in interleaved
rounds on the same model and the same images, so every ratio comes from one
run. The method is written down in ``benchmarks/README.md``; the short form:

- a probe call at batch 1 (skips candidates that would exceed ``max_call_s``),
  ``warmup`` untimed rounds, then ``repeats`` timed rounds; within each round
  every candidate runs once, the starting candidate rotating from round to
  round; on CUDA ``torch.cuda.synchronize`` is called inside the timed region;
- medians and quartiles of the per-call seconds;
- peak memory of one call: on CPU the peak resident set (``VmHWM``) of a
  **fresh process per candidate**, forked from a server process that has only
  imported the libraries, measured above the resident set just before the call
  (after a batch-1 warm-up and a reset of the peak counter); on CUDA the
  caching allocator's peak above the allocation before the call;
- the peers' agreement: the largest absolute difference between their maps
  and camseg's maps of the same method, both min-max normalised per image at
  the input resolution.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import importlib.metadata
import importlib.util
import inspect
import multiprocessing as mp
import os
import statistics
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import camseg

SCHEMA = "camseg-bench/1"
NUM_CLASSES = 10
TARGET_CLASS = 1
PEERS = {
    "pytorch-grad-cam": ("grad-cam", "pytorch_grad_cam"),
    "torchcam": ("torchcam", "torchcam"),
    "captum": ("captum", "captum"),
    "monai": ("monai", "monai"),
}
"""Peer name -> (distribution name, import name)."""

FORWARD = "forward (no_grad)"
BOUND = "autograd lower bound"
SLOW_FACTOR = 30.0
"""A candidate is skipped only if its batch-1 probe is this many times slower than the
forward's and its estimated call exceeds ``max_call_s``."""


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    """A torchvision model and where to explain it."""

    name: str
    ctor: str
    last: str
    early: str
    head: str | None = None
    """The linear head right after global average pooling of ``last`` (LinearCAM)."""
    tokens: bool = False

    @property
    def family(self) -> str:
        return "vit" if self.tokens else "cnn"


MODELS: dict[str, ModelSpec] = {
    "resnet18": ModelSpec("resnet18", "resnet18", "layer4", "layer3", head="fc"),
    "resnet50": ModelSpec("resnet50", "resnet50", "layer4", "layer3", head="fc"),
    "densenet121": ModelSpec("densenet121", "densenet121", "features", "features.denseblock3"),
    "efficientnet_b0": ModelSpec("efficientnet_b0", "efficientnet_b0", "features", "features.6"),
    "convnext_tiny": ModelSpec("convnext_tiny", "convnext_tiny", "features", "features.5"),
    # the last block's pre-attention norm: the class token reads the patch tokens there
    # (the block's output reaches the head through the class token only)
    "vit_b_16": ModelSpec(
        "vit_b_16",
        "vit_b_16",
        "encoder.layers.encoder_layer_11.ln_1",
        "encoder.layers.encoder_layer_8.ln_1",
        tokens=True,
    ),
}


def build_model(spec: ModelSpec, side: int, *, seed: int) -> nn.Module:
    """Random-weight torchvision model (no downloads) in eval mode."""
    torch.manual_seed(seed)
    ctor = getattr(torchvision.models, spec.ctor)
    kwargs: dict[str, Any] = {"weights": None, "num_classes": NUM_CLASSES}
    if spec.tokens:
        kwargs["image_size"] = side
    model = ctor(**kwargs).eval()
    if spec.tokens:  # torchvision zero-initialises the ViT head: constant logits, zero gradients
        nn.init.normal_(model.heads.head.weight, std=0.02)
    return model


def token_reshape(spec: ModelSpec) -> Callable[[torch.Tensor], torch.Tensor] | None:
    if not spec.tokens:
        return None
    return functools.partial(camseg.functional.tokens_to_grid, prefix_tokens=1)


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class Config:
    """One configuration of the matrix; its candidates are timed together."""

    model: str
    side: int
    batch: int
    depth: str = "last"
    dtype: str = "fp32"
    device: str = "cpu"
    channels_last: bool = False
    ks: tuple[int, ...] = (1,)
    extractors: tuple[str, ...] | None = ("GradCAM", "GradCAMPlusPlus")
    """camseg extractor names; ``None`` = every extractor in ``camseg.__all__``."""
    peers: tuple[str, ...] = ()
    """Peer libraries, each with its Grad-CAM and (where it has one) Grad-CAM++."""
    groups: tuple[str, ...] = ()
    """What the configuration is for (``sweep``, ``size``, ``peers``, ...): plots and docs."""

    @property
    def id(self) -> str:
        parts = [f"{self.model}@{self.side}", f"b{self.batch}", self.depth, self.dtype, self.device]
        if self.channels_last:
            parts.append("channels_last")
        return " ".join(parts)

    @property
    def layer(self) -> str:
        spec = MODELS[self.model]
        return spec.last if self.depth == "last" else spec.early


def camseg_extractors() -> dict[str, type]:
    """Every extractor class exported by camseg (subclasses of ``BaseCAM``)."""
    base = camseg.BaseCAM
    out = {}
    for name in camseg.__all__:
        obj = getattr(camseg, name, None)
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base:
            out[name] = obj
    return out


def installed_peers() -> dict[str, str | None]:
    """Peer name -> installed version (``None`` when not installed)."""
    out: dict[str, str | None] = {}
    for name, (dist, _) in PEERS.items():
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    name: str
    impl: str
    method: str
    k: int = 1
    make: Callable[[torch.Tensor], Callable[[], Any]] | None = None
    """Builds the call for a batch of images (so the memory child can build it too)."""
    skip: str | None = None


def _autocast(cfg: Config) -> contextlib.AbstractContextManager[Any]:
    if cfg.dtype == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.dtype]
    return torch.autocast(device_type=torch.device(cfg.device).type, dtype=dtype)


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    maps = maps.float()
    flat = maps.flatten(1)
    lo = flat.amin(1).view(-1, *[1] * (maps.ndim - 1))
    hi = flat.amax(1).view(-1, *[1] * (maps.ndim - 1))
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def _to_input_size(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if maps.ndim == 3:
        maps = maps[:, None]
    maps = F.interpolate(maps.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return maps[:, 0]


@contextlib.contextmanager
def _drop_new_hooks(model: nn.Module) -> Iterator[None]:
    """Remove every hook added to ``model`` inside the block (MONAI keeps its hooks)."""
    before = {
        id(m): (set(m._forward_hooks), set(m._backward_hooks), set(m._forward_pre_hooks))
        for m in model.modules()
    }
    try:
        yield
    finally:
        for m in model.modules():
            fwd, bwd, pre = before.get(id(m), (set(), set(), set()))
            for key in set(m._forward_hooks) - fwd:
                del m._forward_hooks[key]
            for key in set(m._backward_hooks) - bwd:
                del m._backward_hooks[key]
            for key in set(m._forward_pre_hooks) - pre:
                del m._forward_pre_hooks[key]
            if not m._backward_hooks:
                m._is_full_backward_hook = None


def forward_candidate(model: nn.Module, cfg: Config) -> Candidate:
    def make(x: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad(), _autocast(cfg):
                return model(x)

        return call

    return Candidate(FORWARD, "torch", "forward", make=make)


def bound_candidate(model: nn.Module, cfg: Config) -> Candidate:
    """The least any gradient CAM at this layer can cost: no graph below the layer,
    one ``autograd.grad`` from the target logit to the layer, no map maths."""
    layer = model.get_submodule(cfg.layer)

    def make(x: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            store: dict[str, torch.Tensor] = {}

            def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> torch.Tensor:
                a = out.detach().requires_grad_(True)
                store["a"] = a
                torch.set_grad_enabled(True)  # the rest of the forward records a graph
                return a.clone()  # not the leaf itself: later in-place ops (DenseNet's ReLU)

            handle = layer.register_forward_hook(hook)
            try:
                with torch.no_grad(), _autocast(cfg):
                    logits = model(x)
            finally:
                handle.remove()
            with _autocast(cfg):
                (grad,) = torch.autograd.grad(logits[:, TARGET_CLASS].sum(), store["a"])
            return grad

        return call

    return Candidate(BOUND, "torch", "bound", make=make)


def camseg_candidates(model: nn.Module, cfg: Config) -> list[Candidate]:
    spec = MODELS[cfg.model]
    available = camseg_extractors()
    names = list(available) if cfg.extractors is None else list(cfg.extractors)
    out = []
    for name in names:
        cls = available.get(name)
        if cls is None:
            out.append(Candidate(f"camseg {name}", "camseg", name, skip="not in camseg.__all__"))
            continue
        kwargs: dict[str, Any] = {}
        params = inspect.signature(cls.__init__).parameters
        skip = None
        if cls.__module__ == "camseg.perturbation":
            skip = "one forward per channel: timed by bench_perturbation.py"
        if "head" in params:
            if spec.head is None or cfg.depth != "last":
                skip = "needs a global-average-pool + linear head right after the layer"
            kwargs["head"] = spec.head
        if spec.tokens:
            if "reshape" not in params:
                skip = "takes no `reshape=` for tokens"
            kwargs["reshape"] = token_reshape(spec)
        required = [
            p
            for n, p in params.items()
            if n not in ("self", "model", "layers", *kwargs)
            and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if required:
            skip = f"needs arguments {[p.name for p in required]}"
        ks = cfg.ks if name in ("GradCAM", "GradCAMPlusPlus") else (1,)
        for k in ks:
            label = f"camseg {name}" + (f" K={k}" if k > 1 else "")
            if skip is not None:
                out.append(Candidate(label, "camseg", name, k, skip=skip))
                continue

            def make(
                x: torch.Tensor, cls: type = cls, kwargs: dict[str, Any] = kwargs, k: int = k
            ) -> Callable[[], Any]:
                extractor = cls(model, cfg.layer, **kwargs)
                targets: Any = TARGET_CLASS
                if k > 1:
                    targets = torch.arange(k, device=x.device).expand(x.shape[0], k)

                def call() -> Any:
                    with _autocast(cfg):
                        return extractor(x, targets=targets)

                return call

            out.append(Candidate(label, "camseg", name, k, make=make))
    return out


def _pgc(model: nn.Module, cfg: Config, method: str) -> Candidate:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"GradCAM": pgc.GradCAM, "GradCAMPlusPlus": pgc.GradCAMPlusPlus}[method]
    layer = model.get_submodule(cfg.layer)
    reshape = token_reshape(MODELS[cfg.model])

    def make(x: torch.Tensor) -> Callable[[], Any]:
        targets = [ClassifierOutputTarget(TARGET_CLASS)] * x.shape[0]

        def call() -> Any:
            cam = cls(model=model, target_layers=[layer], reshape_transform=reshape)
            try:
                with _autocast(cfg):
                    return torch.from_numpy(cam(input_tensor=x, targets=targets))
            finally:
                cam.activations_and_grads.release()

        return call

    return Candidate(f"pytorch-grad-cam {method}", "pytorch-grad-cam", method, make=make)


def _torchcam(model: nn.Module, cfg: Config, method: str) -> Candidate:
    from torchcam import methods

    cls = {"GradCAM": methods.GradCAM, "GradCAMPlusPlus": methods.GradCAMpp}[method]
    reshape = token_reshape(MODELS[cfg.model])
    kwargs = {"reshape_transform": reshape} if reshape is not None else {}

    def make(x: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            shape = tuple(x.shape[1:])
            with (
                cls(model, target_layer=cfg.layer, input_shape=shape, **kwargs) as ex,
                _autocast(cfg),
            ):
                logits = model(x)
                (maps,) = ex(class_idx=TARGET_CLASS, scores=logits)
            return _to_input_size(maps, x)

        return call

    return Candidate(f"torchcam {method}", "torchcam", method, make=make)


def _captum(model: nn.Module, cfg: Config, method: str) -> Candidate:
    name = f"captum {method}"
    if method != "GradCAM":
        return Candidate(name, "captum", method, skip="Captum has no Grad-CAM++")
    if MODELS[cfg.model].tokens:
        return Candidate(name, "captum", method, skip="LayerGradCam has no token reshape")
    from captum.attr import LayerGradCam

    layer = model.get_submodule(cfg.layer)

    def make(x: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            with _autocast(cfg):
                maps = LayerGradCam(model, layer).attribute(
                    x, target=TARGET_CLASS, relu_attributions=True
                )
            return _minmax(_to_input_size(maps, x))

        return call

    return Candidate(name, "captum", method, make=make)


def _monai(model: nn.Module, cfg: Config, method: str) -> Candidate:
    name = f"monai {method}"
    if MODELS[cfg.model].tokens:
        return Candidate(name, "monai", method, skip="MONAI's CAMs take no token reshape")
    from monai.visualize import GradCAM, GradCAMpp

    cls = {"GradCAM": GradCAM, "GradCAMPlusPlus": GradCAMpp}[method]

    def make(x: torch.Tensor) -> Callable[[], Any]:
        def call() -> Any:
            with _drop_new_hooks(model):
                cam = cls(nn_module=model, target_layers=cfg.layer)
                with _autocast(cfg):
                    return cam(x, class_idx=TARGET_CLASS)[:, 0]

        return call

    return Candidate(name, "monai", method, make=make)


_PEER_FACTORIES = {
    "pytorch-grad-cam": _pgc,
    "torchcam": _torchcam,
    "captum": _captum,
    "monai": _monai,
}


def peer_candidates(model: nn.Module, cfg: Config) -> list[Candidate]:
    versions = installed_peers()
    out = []
    for peer in cfg.peers:
        for method in ("GradCAM", "GradCAMPlusPlus"):
            if versions.get(peer) is None:
                out.append(Candidate(f"{peer} {method}", peer, method, skip="not installed"))
                continue
            try:
                out.append(_PEER_FACTORIES[peer](model, cfg, method))
            except Exception as exc:  # an incompatible peer version is a result, not a crash
                out.append(Candidate(f"{peer} {method}", peer, method, skip=f"error: {exc!r}"))
    return out


def candidates(model: nn.Module, cfg: Config) -> list[Candidate]:
    return [
        forward_candidate(model, cfg),
        bound_candidate(model, cfg),
        *camseg_candidates(model, cfg),
        *peer_candidates(model, cfg),
    ]


def setup(cfg: Config, *, seed: int, batch: int | None = None) -> tuple[nn.Module, torch.Tensor]:
    spec = MODELS[cfg.model]
    model = build_model(spec, cfg.side, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(batch or cfg.batch, 3, cfg.side, cfg.side, generator=g)
    device = torch.device(cfg.device)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    x = x.to(device=device).contiguous(memory_format=fmt)
    return model, x


# --------------------------------------------------------------------------- measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles and the samples themselves (seconds)."""
    xs = list(samples)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) >= 2 else [xs[0]] * 3
    return {
        "median": statistics.median(xs),
        "q1": q[0],
        "q3": q[2],
        "n": len(xs),
        "samples": [round(s, 6) for s in xs],
    }


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _memory_child(conn: Any, cfg: Config, name: str, seed: int, threads: int) -> None:
    """In a fresh process: build the configuration, run the candidate once at
    batch 1 (code pages, library caches), reset the peak counter, run it at the
    configuration's batch and report the rise of the peak resident set."""
    try:
        torch.set_num_threads(threads)
        model, x = setup(cfg, seed=seed)
        (cand,) = [c for c in candidates(model, cfg) if c.name == name]
        assert cand.make is not None
        warm = cand.make(x[:1].clone())
        warm()
        call = cand.make(x)
        del warm
        gc.collect()
        reset = True
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            reset = False
        base = _status_kb("VmRSS")
        out = call()
        peak = _status_kb("VmHWM")
        del out
        conn.send({"bytes": (peak - base) * 1024, "base_bytes": base * 1024, "reset": reset})
    except BaseException as exc:  # report, never hang the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"[:300]})
    finally:
        conn.close()


_CTX: Any = None


def memory_context(preload: Sequence[str] = ()) -> Any:
    """The forkserver that forks one fresh process per candidate (CPU memory)."""
    global _CTX
    if _CTX is None:
        # glibc reads these at start-up: large freed blocks go back to the system
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
        os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "0")
        ctx = mp.get_context("forkserver")
        mods = ["torch", "torchvision", "camseg", "_harness", *preload]
        ctx.set_forkserver_preload([m for m in mods if importlib.util.find_spec(m)])
        _CTX = ctx
    return _CTX


def cpu_peak_rss(
    cfg: Config, name: str, *, seed: int, timeout: float = 600.0, preload: Sequence[str] = ()
) -> dict[str, Any]:
    ctx = memory_context(preload)
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_memory_child, args=(child, cfg, name, seed, torch.get_num_threads()))
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            proc.kill()
            return {"error": f"timed out after {timeout:.0f} s"}
        return dict(parent.recv())
    except EOFError:
        return {"error": f"memory child died (exit code {proc.exitcode})"}
    finally:
        proc.join(10)
        parent.close()


def cuda_peak(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    gc.collect()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del out
    return {"bytes": int(peak - base), "base_bytes": int(base)}


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _maps_of(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor) and out.ndim == 3:
        return out.detach().float().cpu()
    return None


def run_config(
    cfg: Config,
    *,
    repeats: int,
    warmup: int,
    seed: int = 0,
    memory: bool = True,
    max_call_s: float = 10.0,
    preload: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time every candidate of ``cfg`` (interleaved), then measure its peak memory."""
    device = torch.device(cfg.device)
    started = time.perf_counter()
    model, x = setup(cfg, seed=seed)
    cands = candidates(model, cfg)
    rows: dict[str, dict[str, Any]] = {}
    calls: dict[str, Callable[[], Any]] = {}
    x1 = x[:1].clone()
    t1_forward = float("inf")
    for c in cands:
        row = {"candidate": c.name, "impl": c.impl, "method": c.method, "k": c.k, "status": "ok"}
        rows[c.name] = row
        if c.skip is not None:
            row["status"] = f"skipped: {c.skip}"
            continue
        assert c.make is not None
        try:
            # probe at batch 1 (the forward first): skip what is far slower than the
            # forward *and* would exceed the time limit per call (perturbation methods)
            t1, _ = _timed(c.make(x1), device)
            if c.name == FORWARD:
                t1_forward = t1
            elif t1 > SLOW_FACTOR * t1_forward and t1 * cfg.batch > max_call_s:
                row["status"] = (
                    f"skipped: {t1:.2f} s at batch 1 ({t1 / t1_forward:.0f}x the forward), "
                    f"up to {t1 * cfg.batch:.0f} s per call expected (limit {max_call_s:.0f} s)"
                )
                continue
            calls[c.name] = c.make(x)
        except Exception as exc:
            row["status"] = _failure(exc)
    # warm-up rounds; the first one's maps give the agreement with camseg
    maps: dict[str, torch.Tensor] = {}
    for w in range(warmup):
        for name in list(calls):
            try:
                out = calls[name]()
                if w == 0 and (m := _maps_of(out)) is not None:
                    maps[name] = m
                del out
            except Exception as exc:
                rows[name]["status"] = _failure(exc)
                del calls[name]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    times: dict[str, list[float]] = {n: [] for n in calls}
    order = list(calls)
    for r in range(repeats):
        gc.collect()
        shift = r % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            if name not in calls:
                continue
            try:
                dt, out = _timed(calls[name], device)
                del out
                times[name].append(dt)
            except Exception as exc:
                rows[name]["status"] = _failure(exc)
                del calls[name]
    for name, ts in times.items():
        if ts and rows[name]["status"] == "ok":
            rows[name]["time_s"] = summary(ts)
    # memory: CUDA in process, CPU in a fresh process per candidate
    if memory:
        for name in list(calls):
            if device.type == "cuda":
                try:
                    res = cuda_peak(calls[name], device)
                except Exception as exc:
                    res = {"error": _failure(exc)}
                    torch.cuda.empty_cache()
            else:
                res = cpu_peak_rss(cfg, name, seed=seed, preload=preload)
            if "error" in res:
                rows[name]["memory_error"] = res["error"]
            else:
                rows[name]["peak_mem_bytes"] = res["bytes"]
    del calls
    _ratios(rows, maps)
    log_rows(cfg, rows, log)
    return {
        "id": cfg.id,
        **{k: v for k, v in asdict(cfg).items() if k not in ("extractors", "peers")},
        "extractors": list(cfg.extractors) if cfg.extractors is not None else "all",
        "peers": list(cfg.peers),
        "layer": cfg.layer,
        "family": MODELS[cfg.model].family,
        "num_classes": NUM_CLASSES,
        "elapsed_s": round(time.perf_counter() - started, 2),
        "rows": list(rows.values()),
    }


def _failure(exc: BaseException) -> str:
    if _is_oom(exc):
        return "oom"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
    return f"error: {type(exc).__name__}: {str(exc)[:200]}{where}"


def _ratios(rows: dict[str, dict[str, Any]], maps: dict[str, torch.Tensor]) -> None:
    fwd = rows.get(FORWARD, {})
    t_fwd = fwd.get("time_s", {}).get("median")
    m_fwd = fwd.get("peak_mem_bytes")
    for name, row in rows.items():
        t = row.get("time_s", {}).get("median")
        if t is not None and t_fwd:
            row["time_vs_forward"] = t / t_fwd
        m = row.get("peak_mem_bytes")
        if m is not None and m_fwd:
            row["mem_vs_forward"] = m / max(m_fwd, 1)
        if row["impl"] == "camseg" and row["k"] > 1:
            one = rows.get(f"camseg {row['method']}", {}).get("time_s", {}).get("median")
            if t is not None and one:
                row["time_vs_k1"] = t / one
        if row["impl"] not in ("camseg", "torch") and name in maps:
            ref = maps.get(f"camseg {row['method']}")
            peer = maps[name]
            if row["impl"] == "monai":  # MONAI's default normaliser maps (min, max) to (1, 0)
                peer = 1.0 - peer
            if ref is not None and ref.shape == peer.shape:
                row["agreement_max_abs_diff"] = float((_minmax(peer) - _minmax(ref)).abs().max())


def log_rows(cfg: Config, rows: dict[str, dict[str, Any]], log: Callable[[str], None]) -> None:
    log(f"== {cfg.id} (layer {cfg.layer})")
    for row in rows.values():
        t = row.get("time_s")
        if t is None:
            log(f"   {row['candidate']:<34} {row['status']}")
            continue
        mem = row.get("peak_mem_bytes")
        log(
            f"   {row['candidate']:<34} {t['median'] * 1e3:9.1f} ms"
            f" x{row.get('time_vs_forward', float('nan')):5.2f}"
            + (
                f"  {mem / 2**20:8.1f} MiB x{row.get('mem_vs_forward', float('nan')):5.2f}"
                if mem is not None
                else ""
            )
            + (
                f"  agree {row['agreement_max_abs_diff']:.3f}"
                if "agreement_max_abs_diff" in row
                else ""
            )
        )


# --------------------------------------------------------------------------- batch budget
def graph_bytes_per_image(cfg: Config, *, seed: int = 0) -> int:
    """Bytes autograd saves for one image in a full-graph forward (the costliest
    candidates, the peers, keep this whole graph)."""
    model, x = setup(replace(cfg, device="cpu", channels_last=False), seed=seed, batch=1)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    scale = 0.5 if cfg.dtype in ("bf16", "fp16") else 1.0
    return int(sum(seen.values()) * scale)


def batch_sweep(
    cfg: Config, budget_bytes: int, *, max_batch: int, seed: int = 0, factor: int = 2
) -> list[int]:
    """Batches 1, ``factor``, ``factor**2``, ... up to the largest power of two whose
    full autograd graph (1.5x the bytes saved for one image, times the batch) fits
    ``budget_bytes``; that largest batch is always included."""
    per_image = max(graph_bytes_per_image(cfg, seed=seed), 1)
    largest = 1
    while largest * 2 <= max_batch and largest * 2 * per_image * 1.5 <= budget_bytes:
        largest *= 2
    out, b = [], 1
    while b < largest:
        out.append(b)
        b *= factor
    return [*out, largest]


# --------------------------------------------------------------------------- targets
def _row(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    for r in cfg["rows"]:
        if r["candidate"] == name:
            return r
    return {}


def _check(
    out: list[dict[str, Any]],
    what: str,
    cfg: dict[str, Any],
    value: float | None,
    limit: float,
    kind: str,
) -> None:
    passed = None if value is None else (value <= limit if kind == "<=" else value >= limit)
    out.append(
        {
            "target": what,
            "config": cfg["id"],
            "value": value,
            "limit": limit,
            "op": kind,
            "passed": passed,
        }
    )


def evaluate_targets(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, judged on the medians of each configuration's run."""
    out: list[dict[str, Any]] = []
    for cfg in configs:
        methods = ("GradCAM", "GradCAMPlusPlus")
        if cfg["depth"] == "last":
            for m in methods:
                row = _row(cfg, f"camseg {m}")
                if not row or row.get("status") != "ok":
                    continue
                if cfg["family"] == "cnn":
                    _check(
                        out,
                        f"{m} time <= 1.05x forward",
                        cfg,
                        row.get("time_vs_forward"),
                        1.05,
                        "<=",
                    )
                    if "peak_mem_bytes" in row:
                        _check(
                            out,
                            f"{m} peak memory <= 1.10x forward",
                            cfg,
                            row.get("mem_vs_forward"),
                            1.10,
                            "<=",
                        )
                else:
                    _check(
                        out,
                        f"{m} on tokens time <= 1.15x forward",
                        cfg,
                        row.get("time_vs_forward"),
                        1.15,
                        "<=",
                    )
        else:
            bound = _row(cfg, BOUND).get("time_s", {}).get("median")
            for m in methods:
                t = _row(cfg, f"camseg {m}").get("time_s", {}).get("median")
                if t and bound:
                    _check(
                        out,
                        f"{m} (earlier layer) time <= 1.05x autograd lower bound",
                        cfg,
                        t / bound,
                        1.05,
                        "<=",
                    )
        for m in methods:
            row = _row(cfg, f"camseg {m} K=10")
            if "time_vs_k1" in row:
                _check(out, f"{m} K=10 time <= 1.3x K=1", cfg, row["time_vs_k1"], 1.3, "<=")
        if cfg["model"] == "resnet50" and cfg["side"] == 224 and cfg["dtype"] == "fp32":
            for m in methods:
                ours = _row(cfg, f"camseg {m}")
                for peer in ("pytorch-grad-cam", "monai"):
                    theirs = _row(cfg, f"{peer} {m}")
                    a = ours.get("time_s", {}).get("median")
                    b = theirs.get("time_s", {}).get("median")
                    if a and b:
                        _check(out, f"{m} >= 3x faster than {peer}", cfg, b / a, 3.0, ">=")
                for peer in ("torchcam", "captum"):
                    theirs = _row(cfg, f"{peer} {m}")
                    a, b = ours.get("peak_mem_bytes"), theirs.get("peak_mem_bytes")
                    if a and b:
                        _check(out, f"{m} >= 3x less memory than {peer}", cfg, b / a, 3.0, ">=")
        if cfg["device"] == "cuda" and "gpu-target" in cfg["groups"]:
            ours = _row(cfg, "camseg GradCAM")
            if "time_vs_forward" in ours:
                _check(
                    out,
                    "GPU GradCAM throughput >= 0.9x forward",
                    cfg,
                    1 / ours["time_vs_forward"],
                    0.9,
                    ">=",
                )
            if "mem_vs_forward" in ours:
                _check(
                    out,
                    "GPU GradCAM peak memory <= 1.1x forward",
                    cfg,
                    ours["mem_vs_forward"],
                    1.1,
                    "<=",
                )
            theirs = _row(cfg, "pytorch-grad-cam GradCAM").get("time_s", {}).get("median")
            if theirs and "time_s" in ours:
                _check(
                    out,
                    "GPU GradCAM >= 3x faster than pytorch-grad-cam",
                    cfg,
                    theirs / ours["time_s"]["median"],
                    3.0,
                    ">=",
                )
    return out


__all__ = [
    "BOUND",
    "FORWARD",
    "MODELS",
    "SCHEMA",
    "Config",
    "ModelSpec",
    "batch_sweep",
    "camseg_extractors",
    "evaluate_targets",
    "installed_peers",
    "run_config",
    "summary",
]

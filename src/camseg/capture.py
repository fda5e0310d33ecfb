"""Recording a layer's activations in one forward pass, and their gradients.

:class:`LayerCapture` is the one place where camseg touches a model: it
registers forward hooks for the duration of a ``with`` block (or of one
extractor call), records the hooked layers' outputs, and returns
``d score / d activations`` through :func:`torch.autograd.grad`. It never calls
``backward()``, never reads or writes parameter ``.grad``, and never changes
training or ``requires_grad`` flags.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeAlias, TypeVar, cast, overload

import torch
from torch import nn

from camseg._checks import check_finite, describe
from camseg._targets import Targets, resolve_scores

__all__ = ["CAMWarning", "Element", "LayerCapture", "LayerInfo", "LayerSpec", "list_layers"]

LayerSpec: TypeAlias = str | nn.Module
"""A layer, given as a dotted name (``"layer4"``, ``"features.29"``) or a module."""

Reshape: TypeAlias = Callable[[torch.Tensor], torch.Tensor]


def _layer_hint(model: nn.Module, name: str) -> str:
    names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = " Hint: camseg.list_layers(model) lists the layer names"
    if close:
        hint = f" Close names: {', '.join(repr(c) for c in close)}." + hint
    return hint + "."


def resolve_layers(
    model: nn.Module, layers: LayerSpec | Sequence[LayerSpec], *, name: str = "layers"
) -> list[tuple[str, nn.Module]]:
    """Return ``(name, module)`` pairs for ``layers``, validated against ``model``.

    ``name`` is the argument the messages name (``"layers"``, or ``"head"``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected `model` to be a torch.nn.Module, but got {describe(model)}.")
    specs: list[LayerSpec]
    if isinstance(layers, (str, nn.Module)):
        specs = [layers]
    elif isinstance(layers, Sequence) and len(layers) > 0:
        specs = list(layers)
    else:
        raise TypeError(
            "Expected `layers` to be a layer name, a module, or a non-empty sequence of them, "
            f"but got {describe(layers)}."
        )
    by_module = {id(m): n for n, m in model.named_modules()}
    out: list[tuple[str, nn.Module]] = []
    for spec in specs:
        if isinstance(spec, str):
            if spec == "":
                raise ValueError(
                    f"Expected `{name}` to name a submodule of the model, but got '' (the model "
                    "itself)." + _layer_hint(model, spec)
                )
            try:
                module = model.get_submodule(spec)
            except AttributeError:
                raise ValueError(
                    f"Expected `{name}` to name a submodule of the model, but got {spec!r}."
                    + _layer_hint(model, spec)
                ) from None
            out.append((spec, module))
        elif isinstance(spec, nn.Module):
            if id(spec) not in by_module or spec is model:
                raise ValueError(
                    f"Expected `{name}` to be a submodule of the model, but got a "
                    f"{type(spec).__name__} that is not part of it (or the model itself)."
                )
            out.append((by_module[id(spec)], spec))
        else:
            raise TypeError(
                "Expected each layer to be a dotted name or an nn.Module, but got "
                f"{describe(spec)}."
            )
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"Expected `layers` to name each layer once, but got {names}.")
    return out


class CAMWarning(UserWarning):
    """A map or gradient that is almost certainly not what the caller wanted (e.g. all zero)."""


_VIT_HINT = (
    "Hint: the layer may not reach the output. In a ViT the last block's patch tokens never "
    "reach the class token: hook the last block's first norm instead ('blocks.11.norm1' in timm, "
    "'encoder.layers.encoder_layer_11.ln_1' in torchvision) with `reshape=`; see the layer "
    "table in the CAM docs."
)


def warn_if_all_zero(tensors: Sequence[torch.Tensor], names: Sequence[str], what: str) -> bool:
    """Warn (:class:`CAMWarning`) for each layer whose ``what`` is zero everywhere; True if any."""
    warned = False
    for name, t in zip(names, tensors):
        if t.numel() and not bool(t.detach().ne(0).any()):
            warnings.warn(
                f"Every {what} of layer {name!r} is zero in this call, so its maps are all zero "
                f"and carry no information. {_VIT_HINT}",
                CAMWarning,
                stacklevel=3,
            )
            warned = True
    return warned


class _ThreadState(threading.local):
    """What one thread is doing with one capture; other threads never see it."""

    def __init__(self) -> None:
        self.recording = False
        self.entered = False
        self.attached = False
        self.grad_at_layer = False
        self.records: dict[str, list[torch.Tensor]] = {}


Element: TypeAlias = int | str | None
"""Which output of a layer returning a tuple, list or mapping to capture: an index or a key."""


def check_element(element: object) -> Element:
    """``element`` if it is ``None``, an int or a str; else a TypeError."""
    if element is None or isinstance(element, str):
        return element
    if isinstance(element, int) and not isinstance(element, bool):
        return element
    raise TypeError(
        f"Expected `element` to be None, an int index or a str key, but got {describe(element)}."
    )


def select_element(output: Any, element: Element, name: str) -> torch.Tensor:
    """The tensor a hooked layer's ``output`` holds at ``element`` (the output itself for None)."""
    if element is None:
        if isinstance(output, torch.Tensor):
            return output
        hint = "capture a submodule that returns a tensor"
        if isinstance(output, (tuple, list)):
            hint = "pass `element=0` (or the index of the tensor to explain)"
        elif isinstance(output, Mapping):
            keys = list(output)[:5]
            hint = f"pass `element=` with one of the keys {keys}"
        raise TypeError(
            f"Expected layer {name!r} to output a tensor, but it returned {describe(output)}. "
            f"Hint: {hint}."
        )
    if isinstance(output, torch.Tensor):
        raise TypeError(
            f"Expected `element=None` for layer {name!r}, which returns a tensor, but got "
            f"{element!r}. `element` chooses among the outputs of a layer returning a tuple, "
            "list or mapping."
        )
    if isinstance(element, int) and isinstance(output, (tuple, list)):
        if not -len(output) <= element < len(output):
            raise ValueError(
                f"Expected `element` to index the {len(output)} outputs of layer {name!r}, but "
                f"got {element}."
            )
        picked = output[element]
    elif isinstance(element, str) and isinstance(output, Mapping):
        if element not in output:
            raise ValueError(
                f"Expected `element` to be a key of the outputs of layer {name!r} "
                f"({list(output)[:10]}), but got {element!r}."
            )
        picked = output[element]
    else:
        kind = "an int index" if isinstance(output, (tuple, list)) else "a str key"
        raise TypeError(
            f"Expected `element` to be {kind} for the output of layer {name!r} "
            f"({describe(output)}), but got {element!r}."
        )
    if not isinstance(picked, torch.Tensor):
        raise TypeError(
            f"Expected output {element!r} of layer {name!r} to be a tensor, but it is "
            f"{describe(picked)}."
        )
    return picked


def replace_element(output: Any, element: Element, value: torch.Tensor) -> Any:
    """``output`` with the tensor at ``element`` replaced by ``value`` (same container type)."""
    if element is None:
        return value
    if isinstance(output, Mapping):
        new = copy.copy(output)
        new[element] = value  # type: ignore[index]
        return new
    items = list(output)
    items[element] = value  # type: ignore[index]
    if isinstance(output, list):
        return items
    if hasattr(output, "_make"):  # a namedtuple
        return type(output)._make(items)
    return tuple(items)


_Grads = TypeVar("_Grads", torch.Tensor, list[torch.Tensor])
_Self = TypeVar("_Self", bound="LayerCapture[Any]")


class LayerCapture(Generic[_Grads]):
    """Record layer outputs during a forward pass and differentiate scores w.r.t. them.

    Hooks are registered when the ``with`` block starts and removed when it
    ends, also when the block raises; nothing else about the model changes.
    Inside the block, every forward records each layer's output;
    :attr:`output` / :attr:`outputs` return them and :meth:`grad`
    returns ``d score / d output`` with :func:`torch.autograd.grad`, so
    parameter ``.grad`` is never touched and only the part of the graph between
    the layer and the score is walked. A block holds one forward pass: reading a
    layer that ran more than once (a module used twice, or a second forward in the
    same block) raises ``ValueError``. In a training loop, enter the block once per
    step (registering hooks is cheap) or call :meth:`clear` before each forward.

    The recorded activations can never be changed by what runs after the layer:
    with autograd on, the rest of the network receives a copy of the layer's
    output; with autograd off (:func:`torch.no_grad`, inference mode) the
    recorded tensor is the copy. So in-place operations after the layer
    (``ReLU(inplace=True)``, ``out += identity``) cannot alter them.

    Threads: each thread records only the forward passes it runs itself, so two
    threads may share a model (each with its own capture or extractor) and may
    even share one capture or extractor; a capture is entered at most once per
    thread at a time.

    Recording sessions (for code built on top, such as the extractors):
    :meth:`attach` registers the hooks without recording, :meth:`session` records
    for the duration of a block (optionally switching autograd on at the first
    hooked layer, so the network below it records no graph), and
    :meth:`score_gradients` differentiates given scores.

    Args:
        model: the network.
        layers: a layer (dotted name or module) or a sequence of them. One layer
            makes :meth:`grad` return a tensor, a sequence a list of tensors.
        reshape: optional callable applied to each recorded output before it is
            returned (and to its gradient), e.g.
            ``functools.partial(camseg.functional.tokens_to_grid, prefix_tokens=1)``
            for ViT tokens ``(B, N, C) -> (B, C, h, w)``.
        element: for layers whose forward returns a tuple, list or mapping
            (``nn.MultiheadAttention``, ``nn.LSTM``, many transformer blocks):
            the index or key of the tensor to record and differentiate; the
            layer's other outputs pass through unchanged. ``None``: the output
            must be a tensor.

    Raises:
        TypeError: if ``model`` is not a module or ``layers`` has the wrong type.
        ValueError: if a layer is not part of the model (the message lists close
            names).

    Example:
        >>> import camseg
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.randn(2, 3, 8, 8)
        >>> with camseg.LayerCapture(model, "1") as cap:
        ...     logits = model(x)
        ...     grads = cap.grad(logits, targets=1, create_graph=True)
        ...     maps = camseg.functional.gradcam(cap.output, grads)
        >>> maps.shape, maps.requires_grad
        (torch.Size([2, 8, 8]), True)
    """

    @overload
    def __init__(
        self: LayerCapture[torch.Tensor],
        model: nn.Module,
        layers: LayerSpec,
        *,
        reshape: Reshape | None = None,
        element: Element = None,
    ) -> None: ...

    @overload
    def __init__(
        self: LayerCapture[list[torch.Tensor]],
        model: nn.Module,
        layers: Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
        element: Element = None,
    ) -> None: ...

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        reshape: Reshape | None = None,
        element: Element = None,
    ) -> None:
        self.model = model
        self.layers = resolve_layers(model, layers)
        self._single = isinstance(layers, (str, nn.Module))
        if reshape is not None and not callable(reshape):
            raise TypeError(
                f"Expected `reshape` to be a callable or None, but got {describe(reshape)}."
            )
        self.reshape = reshape
        self.element = check_element(element)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._users = 0
        self._lock = threading.Lock()
        self._state = _ThreadState()

    # -- hooks (shared by all threads, counted) -------------------------------
    def _acquire(self) -> None:
        with self._lock:
            if self._users == 0:
                try:
                    for name, module in self.layers:
                        self._handles.append(module.register_forward_hook(self._make_hook(name)))
                except BaseException:
                    self._remove()
                    raise
            self._users += 1

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _check_not_busy(self) -> None:
        state = self._state
        if state.entered or state.recording:
            raise ValueError(
                "Expected a `LayerCapture` to be entered once per thread, but it is already "
                "active in this thread. Hint: leave the first `with` block, or use a second "
                "capture (or extractor); other threads may use this one concurrently."
            )

    # -- context management ------------------------------------------------
    def __enter__(self: _Self) -> _Self:
        self._check_not_busy()
        self._acquire()
        state = self._state
        state.records = {}
        state.entered = state.recording = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        state = self._state
        if not state.entered:
            return
        state.records = {}
        state.entered = state.recording = False
        self._release()

    def attach(self) -> None:
        """Register the hooks without recording (recording happens in :meth:`session`).

        Raises:
            ValueError: if this thread already attached or entered the capture.
        """
        if self._state.attached:
            raise ValueError(
                "Expected a `LayerCapture` to be attached once per thread, but it is already "
                "attached (an extractor's `with` block is entered twice)."
            )
        self._state.attached = True
        self._acquire()

    def detach(self) -> None:
        """Undo :meth:`attach`; the hooks go when no thread uses them any more."""
        if self._state.attached:
            self._state.attached = False
            self._release()

    @contextlib.contextmanager
    def session(self: _Self, *, grad_at_layer: bool = False) -> Iterator[_Self]:
        """Record this thread's forward passes for the duration of the block.

        Records are cleared when the block starts and when it ends. The hooks
        are registered for the block if :meth:`attach` did not already.

        Args:
            grad_at_layer: switch autograd on at the first hooked layer, so a
                forward run under :func:`torch.no_grad` records a graph only
                from the layer on (what gradient CAMs need).

        Raises:
            ValueError: if this thread is already recording with this capture.
        """
        self._check_not_busy()
        state = self._state
        self._acquire()
        state.records = {}
        state.recording = True
        state.grad_at_layer = grad_at_layer
        try:
            yield self
        finally:
            state.recording = False
            state.grad_at_layer = False
            state.records = {}
            self._release()

    def _make_hook(self, name: str) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            state = self._state
            if not state.recording:
                return None
            tensor = select_element(output, self.element, name)
            if state.grad_at_layer and not torch.is_grad_enabled():
                torch.set_grad_enabled(True)
            if torch.is_grad_enabled():
                recorded = tensor if tensor.requires_grad else tensor.detach().requires_grad_(True)
                state.records.setdefault(name, []).append(recorded)
                return replace_element(output, self.element, recorded.clone())
            # no graph: keep a copy, so in-place ops after the layer cannot rewrite it
            state.records.setdefault(name, []).append(tensor.detach().clone())
            return None

        return hook

    # -- reading -------------------------------------------------------------
    def _require_active(self, what: str) -> None:
        if not self._state.recording:
            raise ValueError(
                f"Expected `LayerCapture.{what}` to be used inside the capture's `with` block, but "
                "the block is not active (not entered yet, already left, or entered in another "
                "thread; records are released when it ends)."
            )

    def clear(self) -> None:
        """Forget this thread's recorded outputs (keeps the hooks)."""
        self._state.records = {}

    def raw(self, name: str) -> torch.Tensor:
        """The recorded output of layer ``name`` before ``reshape``."""
        self._require_active("raw")
        records = self._state.records.get(name)
        if not records:
            raise ValueError(
                f"Expected layer {name!r} to run in the forward pass, but it never did. Hint: "
                "check that the layer is on the path from the input to the output."
            )
        if len(records) > 1:
            raise ValueError(
                f"Expected layer {name!r} to run once per forward pass, but it ran "
                f"{len(records)} times in this thread (a shared module, or several forwards "
                "in one block). Hint: capture a layer that runs once."
            )
        return records[0]

    @property
    def outputs(self) -> dict[str, torch.Tensor]:
        """Recorded outputs by layer name, in the order the layers were given."""
        self._require_active("outputs")
        out = {}
        for name, _ in self.layers:
            a = self.raw(name)
            out[name] = self.reshape(a) if self.reshape is not None else a
        return out

    @property
    def output(self) -> torch.Tensor:
        """The recorded output of the single captured layer."""
        self._require_active("output")
        if len(self.layers) != 1:
            raise ValueError(
                f"Expected one captured layer for `.output`, but {len(self.layers)} are captured. "
                "Hint: use `.outputs[name]`."
            )
        return next(iter(self.outputs.values()))

    def score_gradients(
        self,
        scores: torch.Tensor,
        *,
        create_graph: bool = False,
        retain_graph: bool | None = None,
    ) -> list[torch.Tensor]:
        """Gradients of ``scores`` ``(B,)`` or ``(B, K)`` w.r.t. every recorded output.

        Returns:
            One gradient per layer, in layer order, shaped like the (reshaped)
            output, with a target dimension after the batch for ``(B, K)`` scores.

        Raises:
            ValueError: if the outputs were recorded without autograd, the scores
                do not depend on them, or a gradient is not finite.

        Warns:
            CAMWarning: for a layer whose (reshaped) gradient is zero everywhere.
        """
        self._require_active("score_gradients")
        raws = [self.raw(name) for name, _ in self.layers]
        grads = gradients(scores, raws, create_graph=create_graph, retain_graph=retain_graph)
        names = [name for name, _ in self.layers]
        for name, g in zip(names, grads):
            check_finite(
                g, f"gradient of layer {name!r}", "Hint: check the model output for overflow."
            )
        if self.reshape is not None:
            grads = [self._reshape_grad(g, scores.ndim == 2) for g in grads]
        # after the reshape: a ViT's last block has a class-token gradient but none on patches
        warn_if_all_zero(grads, names, "gradient")
        return grads

    def _reshape_grad(self, g: torch.Tensor, has_k: bool) -> torch.Tensor:
        assert self.reshape is not None
        if not has_k:
            return self.reshape(g)
        b, k = g.shape[:2]
        out = self.reshape(g.flatten(0, 1))
        return out.reshape(b, k, *out.shape[1:])

    def grad(
        self,
        logits: torch.Tensor,
        targets: Targets = None,
        *,
        create_graph: bool = False,
        retain_graph: bool | None = None,
    ) -> _Grads:
        """Gradients of the target scores w.r.t. the recorded outputs.

        Args:
            logits: the model output ``(B, C)`` (or anything a callable
                ``targets`` maps to scores), or scores ``(B,)`` used as they
                are when ``targets`` is ``None``.
            targets: see :data:`camseg.Targets`. ``(B, K)`` targets give
                gradients of shape ``(B, K, C, h, w)`` from one batched
                backward (``is_grads_batched``) instead of ``K`` passes.
            create_graph: keep the graph of the gradient, so maps built from it
                are differentiable w.r.t. the model parameters (for losses).
            retain_graph: keep the forward graph for another call; defaults to
                ``create_graph``.

        Returns:
            A tensor for a capture made with one layer, a list in layer order
            for one made with a sequence of layers; each has the shape of the
            (reshaped) output, with a target dimension inserted after the batch
            for ``(B, K)`` targets.

        Raises:
            ValueError: if the outputs were recorded without autograd, the
                targets do not fit the logits, or a gradient is not finite.

        Warns:
            CAMWarning: for a layer whose gradient is zero everywhere.
        """
        self._require_active("grad")
        if isinstance(logits, torch.Tensor) and logits.ndim == 1 and targets is None:
            scores = logits
        else:
            scores, _ = resolve_scores(logits, targets)
        grads = self.score_gradients(scores, create_graph=create_graph, retain_graph=retain_graph)
        return cast(_Grads, grads[0] if self._single else grads)


def gradients(
    scores: torch.Tensor,
    activations: list[torch.Tensor],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> list[torch.Tensor]:
    """``d scores / d activations`` for ``(B,)`` or ``(B, K)`` scores, batched over ``K``."""
    for a in activations:
        if not a.requires_grad:
            raise ValueError(
                "Expected the recorded activations to be part of an autograd graph, but they were "
                "recorded with gradients disabled. Hint: run the forward outside torch.no_grad() "
                "and torch.inference_mode() (camseg extractors already skip the graph below the "
                "layer)."
            )
    if not scores.requires_grad:
        raise ValueError(
            "Expected the scores to depend on the captured layer, but they carry no gradient. "
            "Hint: is the layer on the path to the output?"
        )
    keep = create_graph if retain_graph is None else retain_graph
    if scores.ndim == 1:
        grads = torch.autograd.grad(
            scores,
            activations,
            grad_outputs=torch.ones_like(scores),
            create_graph=create_graph,
            retain_graph=keep,
            allow_unused=True,
        )
        return [_zeros_if_none(g, a) for g, a in zip(grads, activations)]
    b, k = scores.shape
    eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
    grad_outputs = eye[:, None, :].expand(k, b, k)
    try:
        grads = torch.autograd.grad(
            scores,
            activations,
            grad_outputs=grad_outputs,
            create_graph=create_graph,
            retain_graph=keep,
            allow_unused=True,
            is_grads_batched=True,
        )
        out = [_zeros_if_none(g, a, k) for g, a in zip(grads, activations)]
        return [g.movedim(0, 1) for g in out]
    except RuntimeError as err:  # an op without a batching rule: one pass per target
        if "vmap" not in str(err) and "batch" not in str(err).lower():
            raise
    per_target: list[list[torch.Tensor]] = [[] for _ in activations]
    for j in range(k):
        gs = torch.autograd.grad(
            scores[:, j],
            activations,
            grad_outputs=torch.ones_like(scores[:, j]),
            create_graph=create_graph,
            retain_graph=True if j < k - 1 else keep,
            allow_unused=True,
        )
        for i, (g, a) in enumerate(zip(gs, activations)):
            per_target[i].append(_zeros_if_none(g, a))
    return [torch.stack(gs, dim=1) for gs in per_target]


def _zeros_if_none(g: torch.Tensor | None, a: torch.Tensor, k: int | None = None) -> torch.Tensor:
    if g is not None:
        return g
    shape = a.shape if k is None else (k, *a.shape)
    return torch.zeros(shape, dtype=a.dtype, device=a.device)


class LayerInfo(NamedTuple):
    """One row of :func:`list_layers`."""

    name: str
    """Dotted name to pass as ``layer``."""
    type: str
    """Class name of the module."""
    output_shape: tuple[int, ...] | None
    """Output shape for the probe input (``None``: the module did not run or returned a
    non-tensor)."""


def list_layers(
    model: nn.Module,
    *,
    input_size: tuple[int, ...] = (3, 96, 96),
    leaves_only: bool = False,
) -> list[LayerInfo]:
    """The names that can be passed as a layer, with output shapes for an input size.

    Runs one forward pass of a batch of two zero images of ``input_size`` on the
    model's device and dtype, with gradients off and every module in eval mode
    (so batch-norm statistics are not updated); the training flags are restored
    afterwards.

    Args:
        model: the network.
        input_size: ``(C, H, W)`` of one input image.
        leaves_only: list only modules without children.

    Returns:
        A list of :class:`LayerInfo` ``(name, type, output_shape)`` in
        registration order. Output shapes include the batch of two.

    Raises:
        TypeError: if ``model`` is not a module or ``leaves_only`` not a bool.
        ValueError: if ``input_size`` is not a tuple of positive ints.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> for row in list_layers(model, input_size=(3, 32, 32)):
        ...     print(row.name, row.type, row.output_shape)
        0 Conv2d (2, 8, 30, 30)
        1 ReLU (2, 8, 30, 30)
        2 AdaptiveAvgPool2d (2, 8, 1, 1)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"Expected `model` to be a torch.nn.Module, but got {describe(model)}.")
    if not (
        isinstance(input_size, tuple)
        and input_size
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_size)
    ):
        raise ValueError(
            f"Expected `input_size` to be a tuple of positive ints such as (3, 96, 96), but got "
            f"{input_size!r}."
        )
    if not isinstance(leaves_only, bool):
        raise TypeError(f"Expected `leaves_only` to be a bool, but got {describe(leaves_only)}.")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    shapes: dict[str, tuple[int, ...] | None] = {}
    named = [(n, m) for n, m in model.named_modules() if n]
    if leaves_only:
        named = [(n, m) for n, m in named if not any(True for _ in m.children())]

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else None

        return hook

    flags = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(make_hook(n)) for n, m in named]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((2, *input_size), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    return [LayerInfo(n, type(m).__name__, shapes.get(n)) for n, m in named]

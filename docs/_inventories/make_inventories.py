"""Write the small intersphinx inventories the docs build reads offline.

The docs build has no network, so ``docs/conf.py`` maps every intersphinx
project to a local ``<project>.inv`` file in this folder instead of fetching
``objects.inv`` from the project's site. The files hold only the names the
camseg docs refer to (docstrings, annotations, pages), with their URIs on the
real documentation sites; the links in the built pages therefore point at
pytorch.org, numpy.org and so on.

Regenerate after editing ``PROJECTS`` (a test checks that the committed files
match this script)::

    python docs/_inventories/make_inventories.py

A cross-reference that ``nitpicky = True`` reports as missing and that names a
torch/numpy/Python/... object is fixed by adding one line here. Some entries are
the spellings annotations and docstrings produce rather than documented names
(``torch.nn.modules.module.Module``, ``torch._C.Generator``, ``nn.Module``,
``np.ndarray``); they point at the documented object.

The format is Sphinx's inventory version 2: four header lines, then zlib-compressed
lines ``name domain:role priority uri display-name`` (a display name ``-``
stands for the name itself). In ``PROJECTS`` a ``$`` in a URI stands for the
name; the script writes the URIs out in full.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: project -> (base URL, version, [(name, "domain:role", uri relative to the base)])
PROJECTS: dict[str, tuple[str, str, list[tuple[str, str, str]]]] = {
    "python": (
        "https://docs.python.org/3/",
        "3",
        [
            *(
                (f"collections.abc.{n}", "py:class", "library/collections.abc.html#$")
                for n in ("Callable", "Hashable", "Iterable", "Iterator", "Mapping", "Sequence")
            ),
            ("collections.abc", "py:module", "library/collections.abc.html#module-$"),
            ("os.PathLike", "py:class", "library/os.html#$"),
            ("pathlib.Path", "py:class", "library/pathlib.html#$"),
            # annotations written as ``Path`` under ``from __future__ import annotations``
            ("Path", "py:class", "library/pathlib.html#pathlib.Path"),
            ("argparse.Namespace", "py:class", "library/argparse.html#$"),
            ("typing.Literal", "py:data", "library/typing.html#$"),
            ("typing.TypeAlias", "py:data", "library/typing.html#$"),
            ("typing.TypeVar", "py:class", "library/typing.html#$"),
            ("argparse", "py:module", "library/argparse.html#module-$"),
            ("json", "py:module", "library/json.html#module-$"),
            ("tomllib", "py:module", "library/tomllib.html#module-$"),
            ("os.replace", "py:function", "library/os.html#$"),
            ("warnings.warn", "py:function", "library/warnings.html#$"),
            ("dataclasses.dataclass", "py:function", "library/dataclasses.html#$"),
        ],
    ),
    "torch": (
        "https://pytorch.org/docs/stable/",
        "2",
        [
            ("torch", "py:module", "torch.html#module-torch"),
            ("torch.Tensor", "py:class", "tensors.html#$"),
            ("torch.nn.Module", "py:class", "generated/$.html#$"),
            # annotations resolve nn.Module to its defining module; docstrings abbreviate
            ("torch.nn.modules.module.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
            ("nn.Module", "py:class", "generated/torch.nn.Module.html#torch.nn.Module"),
            ("torch.nn.Parameter", "py:class", "generated/torch.nn.parameter.Parameter.html#torch.nn.parameter.Parameter"),
            ("torch.device", "py:class", "tensor_attributes.html#$"),
            ("torch.dtype", "py:class", "tensor_attributes.html#$"),
            ("torch.Generator", "py:class", "generated/$.html#$"),
            ("torch._C.Generator", "py:class", "generated/torch.Generator.html#torch.Generator"),
            ("torch.autocast", "py:class", "amp.html#$"),
            # context managers: torch documents them as classes, docstrings call them :func:
            *(
                (f"torch.{n}", role, f"generated/torch.{n}.html#torch.{n}")
                for n in ("no_grad", "enable_grad", "inference_mode")
                for role in ("py:class", "py:function")
            ),
            *(
                (f"torch.{n}", "py:function", f"generated/torch.{n}.html#torch.{n}")
                for n in (
                    "bincount", "bucketize", "compile", "get_num_threads", "load",
                    "manual_seed", "save", "set_num_threads", "where",
                )
            ),
            ("torch.autograd.grad", "py:function", "generated/$.html#$"),
            ("torch.autograd.gradcheck", "py:function", "generated/torch.autograd.gradcheck.gradcheck.html#torch.autograd.gradcheck.gradcheck"),
            ("torch.Tensor.scatter_reduce", "py:method", "generated/$.html#$"),
            ("torch.Tensor.backward", "py:method", "generated/$.html#$"),
            ("torch.nn.functional.interpolate", "py:function", "generated/$.html#$"),
            ("torch.nn.functional.unfold", "py:function", "generated/$.html#$"),
            ("torch.distributed", "py:module", "distributed.html#module-torch.distributed"),
            ("torch.distributed.barrier", "py:function", "distributed.html#$"),
            ("torch.distributed.all_gather_object", "py:function", "distributed.html#$"),
            ("torch.utils.data.Dataset", "py:class", "data.html#$"),
            ("torch.utils.data.dataset.Dataset", "py:class", "data.html#torch.utils.data.Dataset"),
            ("torch.utils.data.DataLoader", "py:class", "data.html#$"),
            ("torch.utils.data.dataloader.DataLoader", "py:class", "data.html#torch.utils.data.DataLoader"),
            ("torch.utils.data.DistributedSampler", "py:class", "data.html#$"),
            ("torch.nn.Sequential", "py:class", "generated/$.html#$"),
            ("torch.nn.modules.container.Sequential", "py:class", "generated/torch.nn.Sequential.html#torch.nn.Sequential"),
            ("torch.utils.data.Sampler", "py:class", "data.html#$"),
            ("torch.utils.data.sampler.Sampler", "py:class", "data.html#torch.utils.data.Sampler"),
            ("torch.nn.parallel.DistributedDataParallel", "py:class", "generated/$.html#$"),
        ],
    ),
    "torchvision": (
        "https://pytorch.org/vision/stable/",
        "0",
        [
            ("torchvision.utils.save_image", "py:function", "generated/$.html#$"),
            ("torchvision.models.feature_extraction.get_graph_node_names", "py:function", "generated/$.html#$"),
        ],
    ),
    "numpy": (
        "https://numpy.org/doc/stable/",
        "2",
        [
            ("numpy.ndarray", "py:class", "reference/generated/$.html#$"),
            ("np.ndarray", "py:class", "reference/generated/numpy.ndarray.html#numpy.ndarray"),
            ("numpy.random.Generator", "py:class", "reference/random/generator.html#$"),
            ("numpy.uint8", "py:class", "reference/arrays.scalars.html#$"),
            ("numpy.percentile", "py:function", "reference/generated/$.html#$"),
            ("numpy.histogram", "py:function", "reference/generated/$.html#$"),
        ],
    ),
    "matplotlib": (
        "https://matplotlib.org/stable/",
        "3",
        [
            ("matplotlib.figure.Figure", "py:class", "api/_as_gen/$.html#$"),
            ("matplotlib.pyplot.savefig", "py:function", "api/_as_gen/$.html#$"),
        ],
    ),
    "scipy": (
        "https://docs.scipy.org/doc/scipy/",
        "1",
        [
            ("scipy.ndimage", "py:module", "reference/ndimage.html#module-$"),
            ("scipy.ndimage.label", "py:function", "reference/generated/$.html#$"),
            ("scipy.ndimage.gaussian_filter", "py:function", "reference/generated/$.html#$"),
            ("scipy.stats.spearmanr", "py:function", "reference/generated/$.html#$"),
            ("scipy.ndimage.binary_fill_holes", "py:function", "reference/generated/$.html#$"),
            ("scipy.sparse", "py:module", "reference/sparse.html#module-$"),
            ("scipy.sparse.csgraph.connected_components", "py:function", "reference/generated/$.html#$"),
            ("scipy.spatial.ConvexHull", "py:class", "reference/generated/$.html#$"),
        ],
    ),
    "sklearn": (
        "https://scikit-learn.org/stable/",
        "1",
        [
            (f"sklearn.metrics.{n}", "py:function", f"modules/generated/sklearn.metrics.{n}.html#$")
            for n in (
                "average_precision_score", "cohen_kappa_score", "confusion_matrix",
                "roc_auc_score", "roc_curve", "log_loss", "jaccard_score", "f1_score",
            )
        ],
    ),
    "skimage": (
        "https://scikit-image.org/docs/stable/",
        "0",
        [
            *(
                (f"skimage.filters.{n}", "py:function", "api/skimage.filters.html#$")
                for n in ("threshold_otsu", "gaussian")
            ),
            *(
                (f"skimage.morphology.{n}", "py:function", "api/skimage.morphology.html#$")
                for n in (
                    "disk", "binary_dilation", "binary_erosion", "binary_opening",
                    "binary_closing", "remove_small_objects",
                )
            ),
            ("skimage.color.rgb2hed", "py:function", "api/skimage.color.html#$"),
            ("skimage.color.hed2rgb", "py:function", "api/skimage.color.html#$"),
        ],
    ),
}


def inventory_bytes(project: str, version: str, entries: list[tuple[str, str, str]]) -> bytes:
    """One inventory file's bytes (deterministic: entries sorted, fixed zlib level)."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    lines = []
    for name, role, uri in sorted(set(entries)):
        lines.append(f"{name} {role} 1 {uri.replace('$', name)} -\n")
    return header + zlib.compress("".join(lines).encode(), 9)


def write_all(folder: Path = HERE) -> list[Path]:
    """Write every ``<project>.inv`` into ``folder`` atomically; return the paths."""
    written = []
    for project, (_, version, entries) in PROJECTS.items():
        path = folder / f"{project}.inv"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(inventory_bytes(project, version, entries))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)

"""camseg-pcam: the PatchCamelyon example of camseg.

Train a metastasis classifier on PatchCamelyon (or on synthetic patches in the
PCam file format), regularize it so its class-activation maps segment tumor,
evaluate both and write a report. The command line is ``camseg-pcam``
(``make-synthetic``, ``train``, ``evaluate``, ``predict``, ``demo``).

Modules: :mod:`camseg_pcam.data` (readers), :mod:`camseg_pcam.synthetic_io`
(writers), :mod:`camseg_pcam.models`, :mod:`camseg_pcam.augment`,
:mod:`camseg_pcam.regularize`, :mod:`camseg_pcam.train`,
:mod:`camseg_pcam.evaluate`, :mod:`camseg_pcam.predict`, :mod:`camseg_pcam.cli`.
The example validates its arguments with its own ``_validate`` module (never
camseg's private ones) and writes every file through ``_io`` (atomic, umask-respecting,
no part file left behind).
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]

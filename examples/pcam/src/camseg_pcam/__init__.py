"""camseg-pcam: the PatchCamelyon example of camseg.

Train a metastasis classifier on PatchCamelyon (or on synthetic patches in the
PCam file format), regularise it so its class-activation maps segment tumour,
evaluate both and write a report. The command line is ``camseg-pcam``
(``make-synthetic``, ``train``, ``evaluate``, ``predict``, ``demo``).

Modules: :mod:`camseg_pcam.data` (readers), :mod:`camseg_pcam.synthetic_io`
(writers), :mod:`camseg_pcam.models`, :mod:`camseg_pcam.augment`,
:mod:`camseg_pcam.train`, :mod:`camseg_pcam.evaluate`, :mod:`camseg_pcam.cli`.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]

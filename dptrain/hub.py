"""The Hub mixin of every model of the toolkit: `PyTorchModelHubMixin`, quiet on stdout.

``save_pretrained`` writes ``config.json`` (the model's primitive init arguments) and
``model.safetensors``; ``from_pretrained`` loads from a folder or a Hub id. huggingface_hub
prints "Loading weights from local directory" on stdout when it loads a folder; a command's
stdout carries its results (``--json``), so `HubMixin` sends that line to the log instead.
Every model class of dptrain and dpeval inherits it::

    class DiffusionPrint(nn.Module, HubMixin, tags=["image-forensics", ...]): ...
"""

from __future__ import annotations

import logging
from typing import Any

from huggingface_hub import PyTorchModelHubMixin

from dpgen.logs import stdout_to_log

logger = logging.getLogger(__name__)

LIBRARY_NAME = "diffusionprint"
LICENSE = "apache-2.0"


class HubMixin(PyTorchModelHubMixin):
    """`PyTorchModelHubMixin` with the toolkit's library name and licence, logging its loads."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        kwargs.setdefault("library_name", LIBRARY_NAME)
        kwargs.setdefault("license", LICENSE)
        super().__init_subclass__(**kwargs)

    @classmethod
    def _from_pretrained(cls, **kwargs: Any) -> Any:
        with stdout_to_log(logger):
            return super()._from_pretrained(**kwargs)

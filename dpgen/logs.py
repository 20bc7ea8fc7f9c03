"""Logging for the command-line tools: the toolkit's own progress first, library noise filtered.

`setup_logging` sends the toolkit's records to stderr with a timestamp, keeps third-party
libraries at WARNING (INFO with ``--verbose``), and drops, by exact message, the warnings that
libraries emit needlessly for what the toolkit does on purpose (`NEEDLESS_WARNINGS`). Warnings
whose cause is the toolkit's own are fixed at their cause instead: the tiny VAEs ask for no
float32 upcast and the tiny T5 context fits the prompts (`dpgen.tiny`), and what a library
prints on stdout goes to the log through `stdout_to_log` (`dptrain.model.DiffusionPrint`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

#: Third-party loggers kept at WARNING unless --verbose.
LIBRARIES = ("diffusers", "transformers", "accelerate", "datasets", "huggingface_hub", "PIL")

#: (logger, exact message) of library warnings about things the toolkit does on purpose.
NEEDLESS_WARNINGS: tuple[tuple[str, str], ...] = (
    # diffusers warns whenever a model is cast with .to(dtype), even with nothing to keep in
    # float32 ("[]"); its own SDXL pipelines cast their VAE so on every call in float16, and
    # Generator.roundtrip decodes in float32 on purpose.
    (
        "diffusers.models.modeling_utils",
        "There are modules in AutoencoderKL that should be kept in float32: []. Casting "
        "directly with `to()` can lead to inconsistent results; set `torch_dtype` in "
        "`from_pretrained()` instead to keep these modules in float32.",
    ),
    # transformers 5 warns once per process when diffusers touches an image processor class
    # without torchvision (unusable with the pinned CPU torch); dpgen uses no image processor.
    *(
        (
            "transformers.utils.import_utils",
            f"`{name}` requires torchvision (not installed); falling back to `{name}Pil` for "
            f"backward compatibility. Install torchvision to use the default backend, or import "
            f"`{name}Pil` directly to silence this warning.",
        )
        for name in ("CLIPImageProcessor", "SiglipImageProcessor")
    ),
)

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _DropMessages(logging.Filter):
    def __init__(self, messages: tuple[str, ...]) -> None:
        super().__init__()
        self.messages = frozenset(messages)

    def filter(self, record: logging.LogRecord) -> bool:
        return str(record.getMessage()) not in self.messages


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once per process (idempotent)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    by_logger: dict[str, list[str]] = {}
    for name, message in NEEDLESS_WARNINGS:
        by_logger.setdefault(name, []).append(message)
    for name, messages in by_logger.items():
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in target.filters):
            target.addFilter(_DropMessages(tuple(messages)))


@contextlib.contextmanager
def stdout_to_log(logger: logging.Logger, level: int = logging.DEBUG) -> Iterator[None]:
    """Send what is printed on stdout inside the block to ``logger``, one record per line.

    For libraries that ``print`` progress (huggingface_hub's ``PyTorchModelHubMixin`` prints
    "Loading weights from local directory"): a command's stdout carries its results only
    (``dpeval probe --json``). Not thread-safe: stdout is redirected for the whole process.
    """
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                logger.log(level, "%s", line)

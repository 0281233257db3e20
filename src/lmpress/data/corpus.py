"""The shared corpus (``../shared/corpus``) and the fixed train / held-out split.

Whole files sit on one side only. Files known to be copies of each other
(the enwik8 heads; Snappy's copies of Canterbury texts; Calgary's ``pic`` =
Canterbury's ``ptt5``; USC-SIPI and Waterloo share boat/lena/peppers) are kept
on the same side. The split is written into every trained model's manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmpress.data.views import files_of
from lmpress.errors import LmpressError

# Subsets of the corpus, relative to its root, per modality.
SPLIT: dict[str, dict[str, list[str]]] = {
    "text": {
        "train": [
            "wiki/enwiki_dumps",
            "text/canterbury",
            "text/calgary",
            "text/snappy",
            "text/large",
        ],
        # Wikipedia XML from the enwik8 head: never trained on.
        "eval": ["wiki/enwik8_head"],
    },
    "image": {
        "train": [
            "image/waterloo",
            "image/usc_sipi_misc",
            "image/wikipedia_photos",
            "image/imagecompression_gray8",
            "image/imagecompression_rgb8",
        ],
        "eval": ["image/kodak"],
    },
    "audio": {
        "train": ["audio/librispeech_train-clean-100", "audio/sms_tools_sounds"],
        # Other speakers (LibriSpeech test sets) and another recording.
        "eval": ["audio/librispeech_test-clean", "audio/librispeech_test-other", "audio/misc_speech"],
    },
}


def corpus_root() -> Path:
    """``$LMPRESS_CORPUS``, else ``../shared/corpus`` beside the repository."""
    env = os.environ.get("LMPRESS_CORPUS")
    root = Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
    if not root.is_dir():
        raise LmpressError(f"corpus not found at {root} (set LMPRESS_CORPUS)")
    return root


def split_files(modality: str, side: str) -> list[Path]:
    """Files of one side ("train" or "eval") of the split for a modality."""
    root = corpus_root()
    return [f for sub in SPLIT[modality][side] for f in files_of(root / sub, modality)]

"""Context mixing (models/exact/mixer.py): the network mixed with context and match models, in integers."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

import lmpress
from lmpress.coding import entropy
from lmpress.coding.container import ArchiveReader
from lmpress.models.exact import mixer
from lmpress.models.registry import load_predictor

PINNED_MIXER_DIGEST = "4fb0098e4bb29cd3"  # mixer.digest()[:16]
PINNED_VARIANT_DIGESTS = {"cm/v4": "9d54b61b025e4adb",  # the default for text and other files
                          "cm/v3": "b588ab916b333f73",
                          "cm/v2": "d0718a8017ce5a75",
                          "cm/v1-image": "82b4546e1fdee5a4", "cm/v1-colour": "10b1a9e7ac795db1",  # front ends'
                          "cm/v1-audio": "fcb25dd2540740e7", "cm/v1-audio2": "3b284ccf786e5be6",
                          "cm/v1-image2": "962eb34cb5a6f5ba", "cm/v1-colour2": "63bc7cf31a2dea3f"}


@pytest.fixture(scope="module")
def xml(corpus) -> bytes:
    """Held-out Wikipedia XML (never trained on), 24 KB."""
    return (corpus / "wiki/enwik8_head/enwik8_small_wicked_trimmed").read_bytes()[600_000:624_576]


def test_mixed_archives_round_trip_and_beat_the_network_alone(xml):
    kw = dict(chunk_size=1024, block_chunks=24)  # one block of 24 segments coded side by side
    mixed = lmpress.compress(xml, **kw)
    alone = lmpress.compress(xml, mix=False, **kw)
    assert lmpress.decompress(mixed) == xml and lmpress.decompress(alone) == xml
    assert len(mixed) < 0.97 * len(alone), (len(mixed), len(alone))
    header = ArchiveReader(io.BytesIO(mixed)).header
    assert header.arithmetic["name"] == f"exact-int/v1+{mixer.DEFAULT_MIXER}"
    assert header.model_info["mixer"] == mixer.DEFAULT_MIXER
    plain = ArchiveReader(io.BytesIO(alone)).header
    assert plain.arithmetic["name"] == "exact-int/v1" and plain.arithmetic["id"] != header.arithmetic["id"]


def test_match_model_follows_a_repeat_in_another_row():
    """Row 1 repeats what row 0 coded earlier: once the match starts, its next byte gets most of the mass."""
    predictor = load_predictor("default")
    rng = np.random.default_rng(5)
    text = rng.integers(0, 256, 400)
    rows = np.stack([text, np.concatenate([rng.integers(0, 256, 200), text[:200]])])
    weights = predictor.begin(2)
    for t in range(rows.shape[1]):
        if t >= 200 + predictor.mixer.match_min + 40:  # 40 bytes into the repeat: the mixer has learned to trust it
            p = (weights[1, rows[1, t]] + 1) / entropy.TOTAL
            assert p > 0.5, (t, p)
        weights = predictor.advance(rows[:, t])
    assert predictor.mixer.match[1, 0] > 100  # the match length the model reached


def test_mixer_definition_is_pinned():
    """Changing a constant or table changes what archives decode to: it must come with a new MIXER name."""
    assert mixer.MIXER == "cm/v1"
    assert mixer.digest()[:16] == PINNED_MIXER_DIGEST
    assert {v: mixer.digest(v)[:16] for v in PINNED_VARIANT_DIGESTS} == PINNED_VARIANT_DIGESTS
    scores = mixer.count_scores()
    assert scores[0] == round(256 * np.log(0.5)) and scores[1] == round(256 * np.log(1.5))


def test_cli_no_mix_is_the_network_alone(tmp_path, xml):
    src = tmp_path / "page.xml"
    src.write_bytes(xml[:6000])
    for flags in ([], ["--no-mix"]):
        out = tmp_path / f"page{len(flags)}.lmpz"
        r = subprocess.run([sys.executable, "-m", "lmpress.cli", "-q", *flags, "-o", str(out), str(src)],
                           capture_output=True, timeout=600)
        assert r.returncode == 0, r.stderr.decode()
        name = ArchiveReader(io.BytesIO(out.read_bytes())).header.arithmetic["name"]
        assert ("+" in name) == (not flags)
        assert lmpress.decompress(out.read_bytes()) == xml[:6000]


def test_mixing_refused_where_it_cannot_apply():
    with pytest.raises(lmpress.LmpressError, match="context mixing"):
        load_predictor("default", precision="float32", mix=True)

"""The command line, run as a user runs it: a real subprocess, real files, real pipes."""

import os
import subprocess
import sys

import pytest

TEXT = b"Lossless means decoded. " * 30


def lmpress(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "lmpress.cli", *args], input=stdin, cwd=cwd,
                          capture_output=True, timeout=300)


def assert_clean_error(result, pattern):
    assert result.returncode == 1, result.stderr
    err = result.stderr.decode()
    assert pattern in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_bytes(TEXT)
    return p


def test_compress_decompress_keep_and_refuse_overwrite(text_file, tmp_path):
    r = lmpress("-q", str(text_file))
    assert r.returncode == 0, r.stderr
    archive = tmp_path / "notes.txt.lmpz"
    assert archive.exists() and text_file.exists()  # input kept

    before = archive.read_bytes()
    assert_clean_error(lmpress("-q", str(text_file)), "already exists")
    assert archive.read_bytes() == before

    assert_clean_error(lmpress("-q", "-d", str(archive)), "already exists")
    text_file.unlink()
    assert lmpress("decompress", "-q", str(archive)).returncode == 0
    assert text_file.read_bytes() == TEXT
    assert lmpress("-q", "-f", str(text_file)).returncode == 0  # -f overwrites
    assert archive.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_stdin_stdout_and_dash(text_file):
    packed = lmpress("-c", "-q", str(text_file))
    assert packed.returncode == 0 and packed.stdout.startswith(b"LMPZ")
    unpacked = lmpress("-d", "-c", "-q", "-", stdin=packed.stdout)
    assert unpacked.returncode == 0 and unpacked.stdout == TEXT
    piped = lmpress("-q", stdin=TEXT)  # no file: stdin to stdout
    assert piped.returncode == 0 and piped.stdout == packed.stdout


def test_output_option_and_test_and_info(text_file, tmp_path):
    out = tmp_path / "custom.bin"
    assert lmpress("-q", "-o", str(out), str(text_file)).returncode == 0
    t = lmpress("test", str(out))
    assert t.returncode == 0 and b"OK" in t.stderr
    info = lmpress("info", "--json", str(out))
    assert info.returncode == 0
    import json

    meta = json.loads(info.stdout)
    assert meta["original_length"] == len(TEXT)
    assert meta["model"]["parameters"] > 100_000 and meta["model"]["layers"] >= 1
    assert meta["blocks"][0]["chunks"] == 1 and meta["archive_bytes"] == out.stat().st_size


def test_expected_errors_are_one_line(tmp_path, text_file):
    assert_clean_error(lmpress("-d", str(tmp_path / "missing.lmpz")), "no such file")
    assert_clean_error(lmpress("-d", str(text_file)), "unknown suffix")
    not_archive = tmp_path / "junk.lmpz"
    not_archive.write_bytes(b"hello, not an archive")
    assert_clean_error(lmpress("-d", str(not_archive)), "not an lmpress archive")
    assert not (tmp_path / "junk").exists()

    assert lmpress("-q", str(text_file)).returncode == 0
    archive = tmp_path / "notes.txt.lmpz"
    blob = archive.read_bytes()
    archive.write_bytes(blob[: len(blob) // 2])
    text_file.unlink()
    assert_clean_error(lmpress("-d", str(archive)), "truncated")
    assert not text_file.exists()  # nothing half-written

    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0x40
    archive.write_bytes(bytes(bad))
    assert_clean_error(lmpress("-d", str(archive)), "corrupted")
    assert_clean_error(lmpress("-m", "no-such-model", str(tmp_path / "x")), "no such file")
    assert_clean_error(lmpress("demo", str(tmp_path / "missing.txt")), "no such file")


def test_wrong_model_cli(tmp_path, other_model, text_file):
    assert lmpress("-q", "-m", str(other_model), str(text_file)).returncode == 0
    r = lmpress("-q", "-d", "-c", "-m", "default", str(tmp_path / "notes.txt.lmpz"))
    assert_clean_error(r, "made with model")
    assert r.stdout == b""


def test_usage_errors_exit_2(text_file):
    assert lmpress("--no-such-flag").returncode == 2
    assert lmpress("-o", "x", str(text_file), str(text_file)).returncode == 2


def test_terminal_refusal_not_needed_for_pipes(text_file):
    # stdout here is a pipe, so compressing to stdout is allowed without -f
    assert lmpress("-q", stdin=b"abc").returncode == 0
    assert os.path.exists(text_file)


def test_models_lists_default():
    r = lmpress("models")
    assert r.returncode == 0 and b"default" in r.stdout


def test_impossible_chunking_is_one_clear_line(text_file, tmp_path):
    out = tmp_path / "x.lmpz"
    for flags in (["--chunk-size", "0"], ["--block-chunks", "0"]):
        r = lmpress("-q", *flags, "-o", str(out), str(text_file))
        err = r.stderr.decode()
        assert r.returncode == 1 and err.count("\n") == 1 and "must be between" in err and "Traceback" not in err
        assert not out.exists()

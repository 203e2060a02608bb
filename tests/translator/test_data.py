"""Finding, downloading, verifying and reading Multi30k, without ever touching the network."""

import gzip
import hashlib
import io
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from models.translator import data
from models.translator.data import (
    DIRECTIONS,
    ENV_VAR,
    LANGUAGES,
    SHA256SUMS,
    SPLITS,
    ChecksumError,
    DataError,
    DownloadError,
    align_pairs,
    default_cache_dir,
    file_name,
    find_multi30k,
    load_split,
    parse_direction,
    read_lines,
    verify_file,
)

# Sizes stated by the dataset's README, independent of our code.
EXPECTED_PAIRS = {"train": 29000, "val": 1014, "test_2016_flickr": 1000}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No network, no user environment: the env var is unset and the cache is a temp folder."""

    def no_network(url, *args, **kwargs):
        raise AssertionError(f"a test tried to reach the network: {url}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(data, "SHARED_DIR", tmp_path / "no-shared-copy")


def fake_upstream(monkeypatch, source_dir: Path, corrupt: bool = False) -> list[str]:
    """Serve upstream URLs from ``source_dir``; returns the list of URLs requested."""
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        name = url.rsplit("/", 1)[-1]
        body = (source_dir / name).read_bytes()
        if corrupt:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        return io.BytesIO(body)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def write_gz(path: Path, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def test_checksums_match_shared_sums_file(multi30k_dir):
    published = {}
    for line in (multi30k_dir / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        published[name] = digest
    assert SHA256SUMS == published
    assert set(published) == {file_name(s, lang) for s in SPLITS for lang in LANGUAGES}


def test_shared_copy_verifies(multi30k_dir):
    assert find_multi30k(multi30k_dir) == multi30k_dir
    for name in SHA256SUMS:
        verify_file(multi30k_dir / name)


@pytest.mark.parametrize("split", SPLITS)
def test_load_split_sizes_and_cleanliness(multi30k_dir, split):
    pairs = load_split(split, "de", "en", data_dir=multi30k_dir)
    assert len(pairs) == EXPECTED_PAIRS[split]
    for src, tgt in pairs:
        assert src and tgt
        assert src == src.strip() and tgt == tgt.strip()
        assert "\n" not in src + tgt


@pytest.mark.parametrize("src,tgt", DIRECTIONS)
def test_directions_are_aligned(multi30k_dir, src, tgt):
    pairs = load_split("val", src, tgt, data_dir=multi30k_dir)
    reverse = load_split("val", tgt, src, data_dir=multi30k_dir)
    assert [(t, s) for s, t in pairs] == reverse
    # The source column is the same file whatever the target language.
    other = next(lang for lang in LANGUAGES if lang not in (src, tgt))
    assert [s for s, _ in pairs] == [s for s, _ in load_split("val", src, other, data_dir=multi30k_dir)]


def test_env_var_and_explicit_dir_precedence(multi30k_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(multi30k_dir))
    assert find_multi30k(names=["val.de.gz"]) == multi30k_dir
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(multi30k_dir / "val.de.gz", mine)
    assert find_multi30k(mine, names=["val.de.gz"]) == mine  # the argument beats the variable


def test_explicit_dir_missing_files_is_an_error_not_a_download(tmp_path):
    with pytest.raises(DataError) as err:
        find_multi30k(tmp_path, names=["val.de.gz", "val.en.gz"])
    assert not isinstance(err.value, DownloadError)
    assert "val.de.gz" in str(err.value) and "val.en.gz" in str(err.value)


def test_download_into_cache(multi30k_dir, monkeypatch):
    requested = fake_upstream(monkeypatch, multi30k_dir)
    names = ["val.de.gz", "val.en.gz"]
    folder = find_multi30k(names=names)
    assert folder == default_cache_dir()
    assert sorted(requested) == sorted(data.UPSTREAM_URL.format(name=n) for n in names)
    assert requested[0].startswith("https://github.com/multi30k/dataset/raw/master/data/task1/raw/")
    for n in names:
        assert (folder / n).read_bytes() == (multi30k_dir / n).read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == names  # no temporary files left behind
    # Already there: nothing more is fetched.
    assert load_split("val", "de", "en") == load_split("val", "de", "en", data_dir=multi30k_dir)
    assert len(requested) == 2


def test_download_with_bad_checksum(multi30k_dir, monkeypatch):
    fake_upstream(monkeypatch, multi30k_dir, corrupt=True)
    body = (multi30k_dir / "val.en.gz").read_bytes()
    actual = hashlib.sha256(body[:-1] + bytes([body[-1] ^ 0xFF])).hexdigest()
    with pytest.raises(ChecksumError) as err:
        find_multi30k(names=["val.en.gz"])
    message = str(err.value)
    assert "val.en.gz" in message and SHA256SUMS["val.en.gz"] in message and actual in message
    folder = default_cache_dir()
    assert not folder.exists() or list(folder.iterdir()) == []  # the bad download was discarded


def test_offline_error_says_what_to_do(monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as err:
        load_split("val", "de", "en")
    message = str(err.value)
    assert data.UPSTREAM_URL.format(name="val.de.gz") in message
    assert "--data-dir" in message and ENV_VAR in message
    folder = default_cache_dir()
    assert not folder.exists() or list(folder.iterdir()) == []


def test_no_download_allowed():
    with pytest.raises(DataError, match="--data-dir"):
        find_multi30k(download=False, names=["val.de.gz"])


def test_tampered_file_in_data_dir(multi30k_dir, tmp_path):
    shutil.copy(multi30k_dir / "val.de.gz", tmp_path)
    lines = read_lines(multi30k_dir / "val.en.gz")
    write_gz(tmp_path / "val.en.gz", ["Changed."] + lines[1:])
    actual = hashlib.sha256((tmp_path / "val.en.gz").read_bytes()).hexdigest()
    with pytest.raises(ChecksumError) as err:
        load_split("val", "de", "en", data_dir=tmp_path)
    message = str(err.value)
    assert "val.en.gz" in message and SHA256SUMS["val.en.gz"] in message and actual in message
    pairs = load_split("val", "de", "en", data_dir=tmp_path, verify=False)
    assert pairs[0][1] == "Changed." and len(pairs) == EXPECTED_PAIRS["val"]


def test_verification_cache_notices_a_changed_file(multi30k_dir, tmp_path):
    copy = tmp_path / "val.fr.gz"
    shutil.copy(multi30k_dir / "val.fr.gz", copy)
    verify_file(copy)
    write_gz(copy, ["Bonjour."])
    with pytest.raises(ChecksumError):
        verify_file(copy)


def test_user_made_dir_drops_empty_pairs(tmp_path, caplog):
    write_gz(tmp_path / "train.de.gz", ["Ein Hund.", "", "  Zwei Katzen.  ", "Ein Haus.", ""])
    write_gz(tmp_path / "train.en.gz", ["A dog.", "Orphan.", "Two cats.", "", ""])
    with caplog.at_level(logging.WARNING):
        pairs = load_split("train", "de", "en", data_dir=tmp_path, verify=False)
    assert pairs == [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]
    assert "dropped 3" in caplog.text
    assert align_pairs(["a", "", "b"], ["x", "y", ""]) == ([("a", "x")], 2)


def test_misaligned_files_are_an_error(tmp_path):
    write_gz(tmp_path / "val.de.gz", ["Eins.", "Zwei."])
    write_gz(tmp_path / "val.en.gz", ["One."])
    with pytest.raises(DataError, match="misaligned"):
        load_split("val", "de", "en", data_dir=tmp_path, verify=False)


def test_bad_arguments(multi30k_dir):
    with pytest.raises(ValueError, match="split"):
        load_split("dev", "de", "en", data_dir=multi30k_dir)
    with pytest.raises(ValueError, match="language"):
        load_split("val", "de", "cs", data_dir=multi30k_dir)
    with pytest.raises(ValueError):
        load_split("val", "en", "en", data_dir=multi30k_dir)
    assert parse_direction("fr-en") == ("fr", "en")
    with pytest.raises(ValueError, match="de-en"):
        parse_direction("de-fr")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "tinygrad_attn" / "multi30k"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tinygrad_attn" / "multi30k"


def test_cli_reports_counts(multi30k_dir, capsys):
    data.main(["--data-dir", str(multi30k_dir)])
    out = capsys.readouterr().out
    assert "29000" in out and "1014" in out and str(multi30k_dir) in out


def test_shared_copy_is_used_after_the_cache(multi30k_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(data, "SHARED_DIR", multi30k_dir)
    names = ["val.de.gz", "val.en.gz"]
    assert find_multi30k(names=names) == multi30k_dir  # no download (urlopen would fail the test)
    cache = default_cache_dir()
    cache.mkdir(parents=True)
    for n in names:
        shutil.copy(multi30k_dir / n, cache)
    assert find_multi30k(names=names) == cache  # the cache wins when it has the files

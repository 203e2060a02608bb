"""Multi30k (task 1): find, download, verify and read the parallel sentences.

Multi30k task 1 holds short image descriptions in German (de), English (en) and French (fr).
Each split is stored as one gzipped text file per language, ``<split>.<lang>.gz``, with one
sentence per line; line ``i`` of ``train.de.gz`` is the translation of line ``i`` of
``train.en.gz``. The corpus is for non-commercial research and education (it derives from
Flickr30k); cite Elliott et al. 2016 (de/en) and Elliott et al. 2017 (fr).

Where the files come from, first match wins:

1. an explicit ``data_dir`` argument (the CLI's ``--data-dir``);
2. the environment variable ``TINYGRAD_ATTN_DATA`` (a folder holding the ``.gz`` files);
3. the cache folder ``$XDG_CACHE_HOME/tinygrad_attn/multi30k`` (``~/.cache/tinygrad_attn/multi30k``
   when ``XDG_CACHE_HOME`` is unset), if it already holds the files;
4. a read-only copy at ``<repo root>/../shared/data/multi30k`` (``SHARED_DIR``), if it holds them:
   the development and CI layout, so a checkout next to that folder never needs the network;
5. otherwise the missing files are downloaded into the cache folder from the upstream
   repository (``UPSTREAM_URL``).

Every file is checked against the SHA-256 sums in ``SHA256SUMS``. A folder you made yourself
(say, your own corpus in the same layout) can be used with ``verify=False``.

Run ``python -m models.translator.data`` to download and check the data ahead of time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

LANGUAGES: tuple[str, ...] = ("de", "en", "fr")
SPLITS: tuple[str, ...] = ("train", "val", "test_2016_flickr")
# Translation directions the demo supports, as (source, target).
DIRECTIONS: tuple[tuple[str, str], ...] = (("de", "en"), ("en", "de"), ("en", "fr"), ("fr", "en"))

ENV_VAR = "TINYGRAD_ATTN_DATA"
# Read-only copy beside the repository (development/CI layout): <repo root>/../shared/data/multi30k.
SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multi30k"
UPSTREAM_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{name}"
DOWNLOAD_TIMEOUT_S = 60.0

# SHA-256 of the upstream files (same as /work/shared/data/multi30k/SHA256SUMS).
SHA256SUMS: dict[str, str] = {
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}


class DataError(RuntimeError):
    """The Multi30k files could not be found or read."""


class DownloadError(DataError):
    """A file could not be fetched from upstream (for example: no internet)."""


class ChecksumError(DataError):
    """A file's SHA-256 does not match the published sum."""


def file_name(split: str, lang: str) -> str:
    """The file name of one split in one language, e.g. ``train.de.gz``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; expected one of {', '.join(LANGUAGES)}")
    return f"{split}.{lang}.gz"


def parse_direction(direction: str) -> tuple[str, str]:
    """Turn ``"de-en"`` into ``("de", "en")``, rejecting directions the demo does not support."""
    parts = tuple(direction.split("-"))
    if parts not in DIRECTIONS:
        supported = ", ".join(f"{s}-{t}" for s, t in DIRECTIONS)
        raise ValueError(f"unsupported direction {direction!r}; expected one of {supported}")
    return parts[0], parts[1]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tinygrad_attn/multi30k``, or ``~/.cache/tinygrad_attn/multi30k``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinygrad_attn" / "multi30k"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# Files already checked in this process: (path, size, mtime_ns) -> True. A changed file gets a new key.
_verified: set[tuple[str, int, int]] = set()


def verify_file(path: str | os.PathLike[str], sha256: str | None = None) -> None:
    """Check a file against ``sha256`` (default: the Multi30k sum for its name in ``SHA256SUMS``); raise
    ``ChecksumError`` on a mismatch.

    The result is remembered per process (keyed by path, size and modification time), so
    calling this again for an unchanged file costs one ``stat``.
    """
    path = Path(path)
    expected = sha256 if sha256 is not None else SHA256SUMS.get(path.name)
    if expected is None:
        raise ChecksumError(f"{path}: no known SHA-256 for a file named {path.name!r}")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _verified:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for {path}:\n  expected sha256 {expected}\n  actual   sha256 {actual}\n"
            "The file is corrupt or not the upstream file. Delete it to download it again, "
            "or pass verify=False if this is a data folder you made yourself."
        )
    _verified.add(key)


def download_file(name: str, dest_dir: str | os.PathLike[str], url: str | None = None,
                  sha256: str | None = None) -> Path:
    """Download one file into ``dest_dir`` as ``name`` and verify it; return its path. Without ``url`` and
    ``sha256``: a Multi30k file from ``UPSTREAM_URL``, checked against ``SHA256SUMS``.

    The bytes go to a temporary file in ``dest_dir`` that is renamed into place only after the
    checksum matches, so an interrupted or corrupted download never leaves a partial file behind.
    """
    if sha256 is None and name not in SHA256SUMS:
        raise ValueError(f"{name!r} is not a Multi30k task 1 file")
    expected = sha256 if sha256 is not None else SHA256SUMS[name]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    url = url or UPSTREAM_URL.format(name=name)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError) as e:
                raise DownloadError(
                    f"could not download {url}: {e}\n"
                    f"Without internet, get {name} some other way and pass its folder with --data-dir DIR "
                    f"(or data_dir=...), or set the environment variable {ENV_VAR}=DIR."
                ) from e
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {name} downloaded from {url}:\n"
                f"  expected sha256 {expected}\n  actual   sha256 {actual}\n"
                "The download was discarded."
            )
        final = dest_dir / name
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    st = final.stat()
    _verified.add((str(final.resolve()), st.st_size, st.st_mtime_ns))
    return final


def _all_names() -> list[str]:
    return [file_name(split, lang) for split in SPLITS for lang in LANGUAGES]


def find_multi30k(
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    verify: bool = True,
    names: Iterable[str] | None = None,
) -> Path:
    """Return the folder that holds the Multi30k files ``names`` (default: all nine).

    Looks in ``data_dir``, then ``$TINYGRAD_ATTN_DATA``, then the cache folder, then ``SHARED_DIR``;
    if neither of the last two has them, missing files are downloaded into the cache folder when
    ``download`` is true. A folder given explicitly (argument or
    environment variable) must already hold the files: nothing is downloaded into it.
    With ``verify`` every file is checked against ``SHA256SUMS``.
    """
    names = list(names) if names is not None else _all_names()
    if data_dir is not None or os.environ.get(ENV_VAR):
        if data_dir is not None:
            folder, origin = Path(data_dir).expanduser(), "data_dir / --data-dir"
        else:
            folder, origin = Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise DataError(
                f"{folder} (from {origin}) lacks {', '.join(missing)}. Expected Multi30k task 1 "
                f"files named <split>.<lang>.gz, e.g. from {UPSTREAM_URL.format(name='train.de.gz')}"
            )
    else:
        folder = default_cache_dir()
        missing = [n for n in names if not (folder / n).is_file()]
        if missing and all((SHARED_DIR / n).is_file() for n in names):
            folder, missing = SHARED_DIR, []
        if missing and not download:
            raise DataError(
                f"{folder} lacks {', '.join(missing)} and downloading is switched off. "
                f"Pass a folder with --data-dir DIR or set {ENV_VAR}=DIR."
            )
        for name in missing:
            log.info("downloading %s into %s", name, folder)
            download_file(name, folder)
    if verify:
        for name in names:
            verify_file(folder / name)
    return folder


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a gzipped UTF-8 text file, stripped of surrounding whitespace."""
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
        return [line.strip() for line in f]


def align_pairs(src_lines: Sequence[str], tgt_lines: Sequence[str]) -> tuple[list[tuple[str, str]], int]:
    """Zip aligned source and target lines, dropping pairs where either side is empty.

    Returns ``(pairs, n_dropped)``. Raises ``DataError`` when the line counts differ, since the
    alignment would then be wrong.
    """
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"misaligned files: {len(src_lines)} source lines vs {len(tgt_lines)} target lines")
    pairs = [(s, t) for s, t in zip(src_lines, tgt_lines) if s and t]
    return pairs, len(src_lines) - len(pairs)


def load_split(
    split: str,
    src: str,
    tgt: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    verify: bool = True,
) -> list[tuple[str, str]]:
    """Load one split as ``(source sentence, target sentence)`` pairs.

    Lines are stripped; pairs where either side is empty are dropped and their number is
    logged as a warning (use ``read_lines`` + ``align_pairs`` to get the count back).
    """
    if src == tgt:
        raise ValueError(f"source and target language are both {src!r}")
    src_name, tgt_name = file_name(split, src), file_name(split, tgt)
    folder = find_multi30k(data_dir, download=download, verify=verify, names=[src_name, tgt_name])
    pairs, dropped = align_pairs(read_lines(folder / src_name), read_lines(folder / tgt_name))
    if dropped:
        log.warning("%s %s-%s: dropped %d pair(s) with an empty side", split, src, tgt, dropped)
    return pairs


def load_pairs(direction: str, split: str, data_dir: str | os.PathLike[str] | None = None,
               limit: int | None = None) -> list[tuple[str, str]]:
    """The ``(source, target)`` pairs of ``split`` in ``direction`` (e.g. ``"de-en"``), the first ``limit`` only."""
    src, tgt = parse_direction(direction)
    pairs = load_split(split, src, tgt, data_dir=data_dir)
    return pairs[:limit] if limit is not None else pairs


def main(argv: Sequence[str] | None = None) -> None:
    """Download (if needed) and verify all Multi30k files, then print where they are."""
    parser = argparse.ArgumentParser(prog="python -m models.translator.data", description=main.__doc__)
    parser.add_argument("--data-dir", help=f"folder with the .gz files (default: ${ENV_VAR}, else the cache)")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = find_multi30k(args.data_dir, verify=not args.no_verify)
    for split in SPLITS:
        counts = {lang: len(read_lines(folder / file_name(split, lang))) for lang in LANGUAGES}
        print(f"{split:>18}: " + ", ".join(f"{lang} {n} lines" for lang, n in counts.items()))
    print(f"Multi30k task 1 is in {folder}")


if __name__ == "__main__":
    main()

"""Bad input, end to end through the CLI: each case is one line on stderr naming the file (and
the line) with a fix, exit code 2, and nothing written or changed where the command writes.

The table covers what a new user met on a tampered, truncated, mis-named, mis-encoded or
read-only input; the tests after it cover what is accepted on purpose (CRLF, a byte-order mark,
roles named in the config, long phrases) and the CLI's habits.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sst.cli import build_parser, main
from sst.io import sha256_file
from tests.conftest import split_config, synthetic_rows, write_kaggle

REPO = Path(__file__).resolve().parent.parent
HEADER = "PhraseId\tSentenceId\tPhrase\tSentiment\n"
TREE = "(3 (2 (2 The) (2 film)) (4 (3 (2 is) (4 great)) (2 .)))"
TREES = {  # three tiny PTB files: two sentences each
    "train": f"{TREE}\n(1 (1 dull) (2 .))\n",
    "dev": f"{TREE}\n(0 (0 awful) (2 .))\n",
    "test": f"{TREE}\n(4 (4 superb) (2 .))\n",
}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file and folder under ``folder`` with its bytes (folders: b"/")."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else b"/")
        for p in sorted(folder.rglob("*"))
    }


def ptb_files(folder: Path, names: dict[str, str]) -> list[Path]:
    """The TREES parts written under other file names: {"mydev.txt": "dev", …}."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, part in names.items():
        (folder / name).write_text(TREES[part])
        out.append(folder / name)
    return out


def ptb_config(tmp: Path, sources: list[Path], *extra: str) -> list[str]:
    listed = ",".join(f'"{s}"' for s in sources)
    return [
        "split",
        "data.format=ptb",
        f"data.sources=[{listed}]",
        "split.mode=canonical",
        f"split.out={tmp / 'out'}",
        "tracking.enabled=false",
        *extra,
    ]


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A real small tmpfs mounted under tmp_path with the given options (CI runs as root)."""
    mounts: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounts)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=False)


def run_copy(tracked_run: dict, tmp: Path, damage: Callable[[Path], None] | None = None) -> Path:
    """A copy of the session's tracked tiny run, damaged by ``damage``."""
    run = tmp / "runs" / tracked_run["run"].name
    shutil.copytree(tracked_run["run"], run)
    if damage:
        damage(run)
    return run


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def latin1_on_line_52(tmp: Path) -> Path:
    rows = "".join(f"{i}\t1\tphrase {i}\t2\n" for i in range(1, 51))
    path = tmp / "train.tsv"
    path.write_bytes((HEADER + rows).encode() + "51\t1\tcaf\xe9\t2\n".encode("latin-1"))
    return path


def cut_gzip(tmp: Path) -> tuple[Path, int]:
    """A gzip cut in the middle, and how many complete lines its intact part holds (counted
    with gzip's own streaming reader, read byte by byte until it fails)."""
    body = HEADER + "".join(f"{i}\t{i}\tphrase number {i}\t2\n" for i in range(1, 5000))
    data = gzip.compress(body.encode())
    path = tmp / "train.tsv.gz"
    path.write_bytes(data[: len(data) // 2])
    got = bytearray()
    with gzip.open(path, "rb") as f:
        try:
            while b := f.read(1):
                got += b
        except EOFError:
            pass
    return path, bytes(got).count(b"\n")


def header_only(tmp: Path) -> Path:
    path = tmp / "train.tsv"
    path.write_text(HEADER)
    return path


Case = Callable[[Path, dict], tuple[list[str], str]]


def _verify_flipped(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    run = run_copy(tracked, tmp, lambda r: flip_bytes(r / "weights.safetensors"))
    return ["verify", str(run)], f"{run}/weights.safetensors: sha256 "


def _verify_pair_truncated(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    run = run_copy(tracked, tmp, lambda r: truncate(r / "weights.safetensors"))
    return ["verify", str(tracked["run"]), str(run)], f"{run}/weights.safetensors: sha256 "


def _verify_edited_predictions(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    def edit(run: Path) -> None:
        text = (run / "predictions.tsv").read_text()
        (run / "predictions.tsv").write_text(text.replace("\t0.", "\t1.", 1))

    run = run_copy(tracked, tmp, edit)
    return ["verify", str(run)], f"{run}/predictions.tsv: sha256 "


def _predict_flipped(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    run = run_copy(tracked, tmp, lambda r: flip_bytes(r / "weights.safetensors"))
    return ["predict", "--run", str(run), "a film"], f"{run}/weights.safetensors: sha256 "


def _predict_truncated(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    run = run_copy(tracked, tmp, lambda r: truncate(r / "weights.safetensors"))
    return ["predict", "--run", str(run), "a film"], f"{run}/weights.safetensors: sha256 "


def _export_flipped(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    run = run_copy(tracked, tmp, lambda r: flip_bytes(r / "weights.safetensors"))
    return ["export", str(run), "--out", str(tmp / "export")], f"{run}/weights.safetensors: sha256 "


def _predict_latin1(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    src = tmp / "phrases.txt"
    src.write_bytes(b"a fine film\nanother one\ncaf\xe9 society\n")
    out = tmp / "out.tsv"
    return [
        "predict",
        "--run",
        str(tracked["run"]),
        "--file",
        str(src),
        "--out",
        str(out),
    ], f"{src}:3: not UTF-8 text: byte 0xe9 at column 4"


def _predict_extra_tab(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    src = tmp / "phrases.tsv"
    src.write_text("id\ttext\n1\ta fine film\n2\ta\ttabbed phrase\n")
    argv = ["predict", "--run", str(tracked["run"]), "--file", str(src), "--out", str(tmp / "o")]
    return argv, f"{src}:3: 3 tab-separated fields, expected 2"


def _ptb_unnamed_dev(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    files = ptb_files(tmp / "trees", {"train.txt": "train", "mydev.txt": "dev", "test.txt": "test"})
    return ptb_config(tmp, files), f"{files[1]}: cannot tell whether this file holds train, dev"


def _ptb_no_dev(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    files = ptb_files(tmp / "trees", {"train.txt": "train", "test.txt": "test"})
    return ptb_config(tmp, files), "needs PTB train, dev and test trees; no dev among"


def _ptb_roles_count(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    files = ptb_files(tmp / "trees", {"a.txt": "train", "b.txt": "dev", "c.txt": "test"})
    return ptb_config(tmp, files, "data.roles=[train,dev]"), "2 data.roles for 3 sources"


def _ptb_non_binary(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    folder = tmp / "trees"
    files = ptb_files(folder, {"train.txt": "train", "dev.txt": "dev", "test.txt": "test"})
    files[0].write_text("(2 (2 a) (2 b) (2 c))\n")
    return ptb_config(tmp, files), f"{files[0]}:1: a node with 3 child nodes"


def _kaggle(path: Path) -> list[str]:
    return ["split", "-c", str(split_config(path.parent, path)), "tracking.enabled=false"]


def _header_only(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    path = header_only(tmp)
    return _kaggle(path), f"{path}:2: no phrases after the header"


def _latin1(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    path = latin1_on_line_52(tmp)
    return _kaggle(path), f"{path}:52: not UTF-8 text: byte 0xe9 at column 9"


def _cut_gzip(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    path, lines = cut_gzip(tmp)
    assert lines > 1000  # the cut is well inside the file
    return _kaggle(path), f"{path}:{lines + 1}: truncated or corrupt gzip data after {lines} "


def _empty_val(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    source = write_kaggle(tmp / "train.tsv", synthetic_rows(30))
    return [*_kaggle(source), "split.val_fraction=0.001"], "split.val_fraction=0.001 of 24 sent"


def _train_other_dedup(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    recorded = tracked["run"] / "config.yaml"
    argv = ["train", "-c", str(recorded), "data.dedup=sentence", f"train.runs_dir={tmp}/runs"]
    return argv, "manifest.json: the split was made with data.dedup=none, the config asks sentence"


def _train_from_flipped(tmp: Path, tracked: dict) -> tuple[list[str], str]:
    run = run_copy(tracked, tmp, lambda r: flip_bytes(r / "weights.safetensors"))
    recorded = tracked["run"] / "config.yaml"
    argv = ["train", "-c", str(recorded), f"model.init_from={run}", f"train.runs_dir={tmp}/out"]
    return argv, f"{run}/weights.safetensors: sha256 "


CASES: dict[str, Case] = {
    "verify: flipped weights": _verify_flipped,
    "verify: two runs, one truncated": _verify_pair_truncated,
    "verify: edited predictions": _verify_edited_predictions,
    "predict: flipped weights": _predict_flipped,
    "predict: truncated weights": _predict_truncated,
    "predict: a latin-1 input file": _predict_latin1,
    "export: flipped weights": _export_flipped,
    "predict: a TSV row with a tab in its phrase": _predict_extra_tab,
    "split: PTB dev file named mydev.txt": _ptb_unnamed_dev,
    "split: canonical without dev": _ptb_no_dev,
    "split: roles of another length": _ptb_roles_count,
    "split: a node with three children": _ptb_non_binary,
    "split: header-only TSV": _header_only,
    "split: a latin-1 byte on line 52": _latin1,
    "split: a gzip cut in the middle": _cut_gzip,
    "split: a validation fraction that leaves val empty": _empty_val,
    "train: a split made with another data.dedup": _train_other_dedup,
    "train: model.init_from a run with flipped weights": _train_from_flipped,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, tmp_path: Path, tracked_run: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, needle = CASES[case](tmp_path, tracked_run)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sst {argv[0]}: error: "), err
    assert needle in err and "(fix: " in err and err.count("\n") == 1, err
    assert snapshot(tmp_path) == before


def test_read_only_and_full_file_systems_are_one_line(
    tmp_path: Path, mounted: Callable[[str], Path], tiny_model: Path, tiny_split: Path, capsys
) -> None:
    """Real file systems, not a mocked open: a read-only tmpfs for a split and a run folder, a
    16 KiB one for a split that does not fit. One line each, exit 2, nothing left behind."""
    from tests.conftest import train_overrides

    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows())
    read_only, full = mounted("ro,size=64k"), mounted("size=16k")
    for argv, where, needle in [
        ([*_kaggle(source), f"split.out={read_only}/out"], read_only, "read-only file system"),
        ([*_kaggle(source), f"split.out={full}/out"], full, "no space left on device"),
        (
            ["train", *train_overrides(tiny_model, tiny_split, read_only / "runs")],
            read_only,
            "read-only file system",
        ),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err  # train: model-loading progress bars come first
        line = err.splitlines()[-1] if argv[0] == "train" else err.removesuffix("\n")
        assert line.startswith(f"sst {argv[0]}: error: {where}/"), err
        assert f": {needle} (fix: " in line and "\n" not in line, err
    assert list(read_only.iterdir()) == [] and list(full.iterdir()) == []


def test_verify_one_intact_run_names_what_it_checked(tracked_run: dict, capsys) -> None:
    assert main(["verify", str(tracked_run["run"])]) == 0
    out = capsys.readouterr().out
    assert out.startswith("intact: 5 files match fingerprint.json")
    for name in ("weights.safetensors", "predictions.tsv", "metrics.json", "config.yaml"):
        assert name in out


def test_a_stale_temporary_split_folder_is_removed_and_said(tmp_path: Path, capsys) -> None:
    """A split killed mid-write left `.out.tmp-<pid>-…`: the next split removes it and says so;
    a live process's temporary folder is left alone."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".out.tmp-{dead.stdout.strip()}-abc"
    live = tmp_path / f".out.tmp-{os.getpid()}-abc"
    for folder in (stale, live):
        (folder / "plots").mkdir(parents=True)
        (folder / "train.tsv").write_text("half written")
    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows())
    assert main(_kaggle(source)) == 0
    assert f"removed {stale}: left by an sst process that ended" in capsys.readouterr().err
    assert not stale.exists() and live.is_dir()


def test_split_folders_follow_the_umask(tmp_path: Path) -> None:
    source = write_kaggle(tmp_path / "train.tsv", synthetic_rows())
    old = os.umask(0o022)
    try:
        assert main(_kaggle(source)) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "plots").stat().st_mode & 0o777 == 0o755


def test_roles_in_the_config_name_each_ptb_file(tmp_path: Path) -> None:
    from sst.data.pipeline import read_split

    files = ptb_files(tmp_path / "trees", {"a.txt": "train", "b.txt": "dev", "c.txt": "test"})
    assert main(ptb_config(tmp_path, files, "data.roles=[train,dev,test]")) == 0
    parts, _ = read_split(tmp_path / "out")
    assert {name: parts[name]["is_root"].sum() for name in parts} == {
        "train": 2,
        "val": 2,
        "test": 2,
    }
    assert "awful" in set(parts["val"]["text"]) and "superb" in set(parts["test"]["text"])


def test_crlf_and_a_byte_order_mark_are_read_as_the_plain_file(tmp_path: Path) -> None:
    """Accepted on purpose (a file saved by a Windows editor): the same phrase table."""
    from sst.data.formats import parse_kaggle_tsv, parse_ptb_file

    plain = write_kaggle(tmp_path / "plain.tsv", synthetic_rows(30))
    windows = tmp_path / "windows.tsv"
    windows.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes().replace(b"\n", b"\r\n"))
    a, b = parse_kaggle_tsv(plain), parse_kaggle_tsv(windows)
    assert a.frame.equals(b.frame)
    assert b.meta["byte_order_mark"] is True and b.meta["crlf_lines"] == len(b.frame) + 1
    assert (
        "crlf_lines" not in a.meta
    )  # nothing recorded for a plain file: its manifest is as before
    tree = tmp_path / "dev.txt"
    tree.write_bytes(b"\xef\xbb\xbf" + TREES["dev"].replace("\n", "\r\n").encode())
    assert list(parse_ptb_file(tree).frame["text"])[:3] == [
        "The film is great .",
        "The film",
        "The",
    ]


def test_phrases_longer_than_max_length_are_counted_by_the_split(tmp_path: Path, capsys) -> None:
    rows = synthetic_rows(30)
    long_text = " ".join(["word"] * 20000)
    rows[0] = (rows[0][0], rows[0][1], long_text, rows[0][3])
    source = write_kaggle(tmp_path / "train.tsv", rows)
    assert main([*_kaggle(source), "model.max_length=64"]) == 0
    out = capsys.readouterr().out
    assert "note: 1 phrases have more than model.max_length=64 words (longest 20000)" in out


def test_options_and_overrides_mix_in_any_order(tmp_path: Path) -> None:
    args = build_parser().parse_args(["split", "a.b=1"])  # the plain parser, for comparison
    assert args.overrides == ["a.b=1"]
    from sst.cli import parse

    args = parse(["split", "split.n_seeds=5", "--force", "-c", "x.yaml", "split.seed=2"])
    assert args.overrides == ["split.n_seeds=5", "split.seed=2"] and args.force
    assert args.config == "x.yaml"
    with pytest.raises(SystemExit):
        parse(["split", "a=1", "--no-such-option"])


def test_version_and_help_texts(capsys) -> None:
    import sst

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"sst {sst.__version__}\n"
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "report" in a.choices)
    for verb, sub in subparsers.choices.items():
        text = sub.format_help()
        assert "%%" not in text and "%(" not in text, verb


def test_make_targets_named_anywhere_exist_and_sweep_uses_no_test_code() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    named = set()
    for path in [REPO / "README.md", *REPO.glob("docker/*"), *REPO.glob("scripts/*.sh")]:
        if path.is_file():
            named |= set(re.findall(r"`make ([a-z][\w-]*)", path.read_text(errors="replace")))
            named |= set(re.findall(r"\(make ([a-z][\w-]*)\)", path.read_text(errors="replace")))
    assert named and named <= targets, named - targets
    sweep = re.search(r"^sweep:.*?(?=^\S)", makefile, flags=re.M | re.S)
    assert sweep and "tests" not in sweep.group(0)
    assert "tests" not in (REPO / "models.local.txt").read_text().split("#")[0]


def test_zip_cache_entries_are_rehashed_and_a_corrupt_one_fetched_again(
    tmp_path: Path, shared_data: Path
) -> None:
    """The archive in the cache is edited (one label flipped) after the first split: the next
    split re-hashes it, fetches the release again and writes the same split as before."""
    from tests.test_data_location import Release, release_zip

    server = Release([release_zip(shared_data / "sst_ptb")])
    try:
        argv = [
            "split",
            "-c",
            str(REPO / "configs" / "ptb.yaml"),
            "tracking.enabled=false",
            f"split.out={tmp_path / 'a'}",
            f"data.sources=[{','.join(f'{server.url}#trees/{n}.txt' for n in TREES)}]",
            "data.sha256=[]",
        ]
        assert main(argv) == 0 and server.hits == 1
        (archive,) = Path(os.environ["SST_CACHE_DIR"]).glob("sha256/*/*.zip")
        good = archive.read_bytes()
        archive.write_bytes(release_zip(shared_data / "sst_ptb", corrupt=True))
        for member in Path(os.environ["SST_CACHE_DIR"]).glob("members/*/trees/dev.txt"):
            member.write_bytes(member.read_bytes().replace(b"(3 ", b"(4 ", 1))  # never read
        argv[4] = f"split.out={tmp_path / 'b'}"
        assert main(argv) == 0 and server.hits == 2
        assert archive.read_bytes() == good
        assert sha256_file(tmp_path / "a" / "val.tsv") == sha256_file(tmp_path / "b" / "val.tsv")
    finally:
        server.server.shutdown()


def test_gzip_line_count_is_exact_with_zlib(tmp_path: Path) -> None:
    """The reference count of cut_gzip, cross-checked with zlib directly."""
    path, lines = cut_gzip(tmp_path)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflate.decompress(path.read_bytes()).count(b"\n") == lines

"""Write the tiny fixture model, a synthetic Kaggle-shaped file and configs to train on them.

    python -m tests.tiny /tmp/tiny && sst split -c /tmp/tiny/split.yaml && sst train -c /tmp/tiny/train.yaml

Used by CI's docker stage (made on the host, trained inside the runtime image) and for the
bits tables in BENCHMARKS.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import build_tiny_bert, split_config, synthetic_rows, write_kaggle


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = synthetic_rows(200)
    model = build_tiny_bert(folder / "model", [r[2] for r in rows])
    source = write_kaggle(folder / "train.tsv", rows)
    split_config(folder, source).rename(folder / "split.yaml")
    (folder / "train.yaml").write_text(
        "name: tiny\n"
        f"model: {{name: {model}, max_length: 32}}\n"
        f"train: {{split: {folder / 'out'}, runs_dir: {folder / 'runs'}, sampling: "
        "'stratified:1,alternate:1', batch_size: 16, threads: 1, lr: 1.0e-3}\n"
        "tracking: {monitor_resources: false}\n"
    )
    print(folder)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""The project stands alone: no tracked file points to files outside the repository."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("TASK" + ".md", "../" + "shared", "tech-" + "report")  # split so this file does not match itself


def test_no_file_refers_to_files_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    hits = []
    for name in tracked:
        path = ROOT / name
        if (
            path.suffix not in {".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".yaml", ".yml", ""}
            or not path.is_file()
        ):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{name}: {word}" for word in OUTSIDE if word in text]
    assert hits == []

"""Dataset manifests: read and validate a dataset root in the real BSD layout (docs/task.md §3).

    <root>/audio/<id>.wav
    <root>/metadata/<NAME>_metadata.csv
    <root>/metadata/BST_description.csv          (labelled sets)
    <root>/features/clap_{audio,text}_embeddings/<id>.npy   (optional)

``load_manifest`` never stops at the first problem: every problem (missing column,
duplicate id, unknown class, missing audio, empty field, non-UTF-8 text, an id that is not
a plain file name) is collected in a :class:`ValidationReport` naming file, row and field.
Rows that cannot be used are kept out of the manifest and counted; nothing else is lost.
A dataset that cannot be read completely (a CSV that stops parsing part-way) or that has no
usable row raises :class:`ManifestError`. Audio may be symlinked (the ``audio`` folder or
single files): paths are ``<root>/audio/<id>.wav`` as written, never resolved.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .provenance import sha256_json
from .taxonomy import CLASSES, LabelKind, UnknownClassError, parse_label

#: columns every labelled metadata CSV must have
LABELLED_COLUMNS = (
    "sound_id",
    "class",
    "class_idx",
    "class_top",
    "confidence",
    "uploader",
    "license",
    "title",
    "tags",
    "description",
)
#: columns an unlabelled (evaluation) metadata CSV must have
UNLABELLED_REQUIRED = ("anonymous_id", "title", "tags", "description")
TEXT_FIELDS = ("title", "tags", "description")
UNLABELLED = -1

# a metadata field may be megabytes long (descriptions): lift csv's 128 KiB field limit
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Problem:
    """One validation finding. ``row`` is the 1-based data row (header = row 0), or None."""

    file: str
    row: int | None
    field: str | None
    message: str
    severity: str = "error"  # "error": row dropped / dataset unusable; "warning": row kept

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.field:
            where += f" [{self.field}]"
        return f"{self.severity.upper():7s} {where}: {self.message}"


@dataclass
class ValidationReport:
    dataset: str
    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def add(self, *args, **kw) -> None:
        self.problems.append(Problem(*args, **kw))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def format(self, max_lines: int = 50) -> str:
        """The counts, then at most ``max_lines`` problems (errors first, by row); the rest summarised per
        kind of problem (its message without values) as a count and a few rows."""
        lines = [f"Dataset {self.dataset}: " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))]
        shown = sorted(self.problems, key=lambda p: (p.severity != "error", p.row or 0))
        max_lines = max(0, max_lines)
        lines += ["  " + str(p) for p in shown[:max_lines]]
        rest = shown[max_lines:]
        if rest:
            rows: dict[str, list] = defaultdict(list)
            for p in rest:
                rows[f"{p.severity} [{p.field or '-'}] {_problem_kind(p.message)}"].append(p.row)
            parts = []
            for kind, rs in sorted(rows.items(), key=lambda kv: -len(kv[1])):
                few = [str(r) for r in rs if r is not None][:3]
                listed = f" (rows {', '.join(few)}{', …' if len(rs) > 3 else ''})" if few else ""
                parts.append(f"{kind} ×{len(rs)}{listed}")
            lines.append(f"  … {len(rest)} more problem(s) (--max-lines to list them): " + "; ".join(parts))
        if not self.problems:
            lines.append("  no problems found")
        return "\n".join(lines)


def _problem_kind(message: str) -> str:
    """A problem message without its values (quoted text, paths, numbers): one kind per cause."""
    kind = re.sub(r"'[^']*'|\"[^\"]*\"", "…", message)
    kind = re.sub(r": [^;]*", ": …", kind)
    return re.sub(r"\d+", "N", kind)


class ManifestError(ValueError):
    """The dataset cannot be read at all (no metadata CSV, missing id column…)."""


@dataclass
class Manifest:
    """The usable rows of one dataset, in CSV order.

    ``labels[i]`` is a class index (see ``cache.taxonomy.CLASSES``) or ``UNLABELLED`` (-1)
    for the evaluation set and for non-target rows kept with ``keep_non_targets``.
    """

    name: str
    root: Path
    ids: np.ndarray  # (N,) object array of str
    labels: np.ndarray  # (N,) int64
    label_kinds: np.ndarray  # (N,) object array: 'target', 'top-level-only', 'other', 'missing', 'unlabelled'
    title: list[str]
    tags: list[str]
    description: list[str]
    confidence: np.ndarray  # (N,) float64, NaN when empty
    audio_paths: list[Path]
    labelled: bool
    report: ValidationReport
    csv_path: Path | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask_or_index: np.ndarray | Sequence[int]) -> Manifest:
        idx = np.asarray(mask_or_index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return Manifest(
            name=self.name,
            root=self.root,
            ids=self.ids[idx],
            labels=self.labels[idx],
            label_kinds=self.label_kinds[idx],
            title=[self.title[i] for i in idx],
            tags=[self.tags[i] for i in idx],
            description=[self.description[i] for i in idx],
            confidence=self.confidence[idx],
            audio_paths=[self.audio_paths[i] for i in idx],
            labelled=self.labelled,
            report=self.report,
            csv_path=self.csv_path,
        )

    def select_ids(self, ids: Sequence[str]) -> Manifest:
        """Rows for ``ids`` in that order; unknown ids raise naming them."""
        pos = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise KeyError(
                f"{len(missing)} id(s) not in dataset {self.name}: {', '.join(map(str, missing[:10]))}"
            )
        return self.subset([pos[i] for i in ids])

    def targets(self) -> Manifest:
        """Only rows with a target label (drops top-level-only, -other, missing labels)."""
        return self.subset(self.labels >= 0)

    def metadata_text(self, i: int) -> str:
        """Title, tags and description of row ``i`` joined as one raw string."""
        return " | ".join(x for x in (self.title[i], self.tags[i], self.description[i]) if x)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(CLASSES))
        return {c: int(n) for c, n in zip(CLASSES, counts, strict=False)}

    def digest(self) -> str:
        """sha256 of ids, labels and metadata text: identifies the data a result was made from."""
        return sha256_json(
            {
                "ids": self.ids.tolist(),
                "labels": self.labels.tolist(),
                "text": [self.title, self.tags, self.description],
            }
        )


def find_metadata_csv(root: Path) -> Path:
    meta = Path(root) / "metadata"
    if not meta.is_dir():
        raise ManifestError(f"{root}: no metadata/ folder (expected {meta}/<NAME>_metadata.csv)")
    found = sorted(p for p in meta.glob("*_metadata.csv") if p.name != "BST_description.csv")
    if not found:
        raise ManifestError(f"{meta}: no *_metadata.csv file")
    if len(found) > 1:
        raise ManifestError(
            f"{meta}: several metadata files ({', '.join(p.name for p in found)}); pass one with csv_path"
        )
    return found[0]


def read_csv(path: Path, report: ValidationReport | None = None) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a metadata CSV as the manifest reads it: UTF-8 (with or without BOM; bad
    bytes replaced and reported), header names stripped, ragged rows reported to ``report``."""
    report = report if report is not None else ValidationReport(path.name)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
        # name the rows that hold undecodable bytes
        for lineno, line in enumerate(raw.splitlines()):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                report.add(
                    path.name,
                    None,
                    None,
                    f"non-UTF-8 bytes on line {lineno + 1} (byte {e.start}); replaced with U+FFFD",
                    "warning",
                )
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict[str, str]] = []
    header: list[str] = []
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        for r in reader:
            rows.append(
                {
                    k: (v if isinstance(v, str) else ("" if v is None else ",".join(v)))
                    for k, v in r.items()
                    if k is not None
                }
            )
            if None in r:
                report.add(
                    path.name, len(rows), None, f"{len(r[None])} more value(s) than header columns", "warning"
                )
            elif any(v is None for v in r.values()):
                short = sum(v is None for v in r.values())
                report.add(
                    path.name,
                    len(rows),
                    None,
                    f"{short} value(s) fewer than header columns; treated as empty",
                    "warning",
                )
    except csv.Error as e:  # the rest of the file would be lost: the dataset cannot be read
        raise ManifestError(
            f"{path}: CSV cannot be parsed from line {reader.line_num} on (data row {len(rows) + 1}): "
            f"{e}; fix the file (rows after it would be lost)"
        ) from None
    return header, rows


def unsafe_id(cid: str) -> bool:
    """True when a clip id cannot name a file inside ``audio/``: it holds a path separator or ``..``,
    or is ``.`` or absolute. Symlinks are not followed or judged here."""
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    return any(c in cid for c in seps) or ".." in cid or cid == "." or os.path.isabs(cid) or "\0" in cid


def load_manifest(
    root: str | Path,
    csv_path: str | Path | None = None,
    *,
    require_audio: bool = True,
    keep_non_targets: bool = False,
    audio_ext: str = ".wav",
) -> Manifest:
    """Read and validate a dataset root. Labelled sets (``sound_id`` + ``class``) and the
    unlabelled evaluation set (``anonymous_id``) are told apart by their columns.

    Non-target rows (top-level-only, ``*-other``, empty label) are dropped and counted unless
    ``keep_non_targets``; rows with an unknown class, a duplicate id, a bad id or missing audio
    (when ``require_audio``) are dropped and reported.
    """
    root = Path(root).resolve()
    csv_file = Path(csv_path) if csv_path else find_metadata_csv(root)
    name = csv_file.name.removesuffix("_metadata.csv").removesuffix(".csv")
    report = ValidationReport(name)
    header, rows = read_csv(csv_file, report)
    fname = csv_file.name
    labelled = "anonymous_id" not in header
    id_col = "sound_id" if labelled else "anonymous_id"
    required = LABELLED_COLUMNS if labelled else UNLABELLED_REQUIRED
    missing_cols = [c for c in required if c not in header]
    fatal = [c for c in missing_cols if c in (id_col, "class")]
    for c in missing_cols:
        report.add(
            fname,
            0,
            c,
            "missing column"
            + (" (cannot read the dataset without it)" if c in fatal else "; treated as empty"),
            "error" if c in fatal else "warning",
        )
    if fatal:
        raise ManifestError(report.format())

    audio_dir = root / "audio"
    existing = {p.name for p in audio_dir.iterdir()} if audio_dir.is_dir() else set()
    if require_audio and not audio_dir.is_dir():
        report.add(fname, None, None, f"no audio folder {audio_dir}")

    seen: dict[str, int] = {}
    out = {k: [] for k in ("ids", "labels", "kinds", "title", "tags", "description", "conf", "paths")}
    counts = report.counts
    counts["rows"] = len(rows)
    for rownum, r in enumerate(rows, start=1):
        cid = (r.get(id_col) or "").strip()
        if not cid:
            report.add(fname, rownum, id_col, "empty id; row dropped")
            counts["dropped_bad_id"] += 1
            continue
        if cid in seen:
            report.add(fname, rownum, id_col, f"duplicate id {cid!r} (first on row {seen[cid]}); row dropped")
            counts["dropped_duplicate"] += 1
            continue
        seen[cid] = rownum
        audio = audio_dir / f"{cid}{audio_ext}"  # not resolved: audio/ or the file may be a symlink
        if unsafe_id(cid):
            report.add(
                fname,
                rownum,
                id_col,
                f"id {cid!r} is not a plain file name (path separator, '..' or "
                "absolute): it makes an audio path outside the dataset root; row dropped",
            )
            counts["dropped_bad_id"] += 1
            continue
        if labelled:
            try:
                parsed = parse_label(r.get("class"), r.get("class_idx"), where=f"{fname} row {rownum}")
            except UnknownClassError:
                report.add(
                    fname,
                    rownum,
                    "class",
                    f"unknown class {r.get('class')!r} (class_idx {r.get('class_idx')!r}); row dropped",
                )
                counts["dropped_unknown_class"] += 1
                continue
            kind = parsed.kind
            if kind is LabelKind.MISSING:
                report.add(
                    fname, rownum, "class", "empty class and class_idx; row treated as non-target", "warning"
                )
            if kind is not LabelKind.TARGET:
                counts[f"non_target_{kind.value}"] += 1
                if not keep_non_targets:
                    continue
            label = parsed.index if parsed.index is not None else UNLABELLED
            kind_s = kind.value
        else:
            label, kind_s = UNLABELLED, "unlabelled"
        if require_audio and audio.name not in existing:
            report.add(fname, rownum, "audio", f"audio file missing: {audio}; row dropped")
            counts["dropped_missing_audio"] += 1
            continue
        texts = []
        for f in TEXT_FIELDS:
            v = (r.get(f) or "").strip()
            if "\ufffd" in v:
                report.add(fname, rownum, f, "text contains undecodable (non-UTF-8) bytes", "warning")
            if not v:
                counts[f"empty_{f}"] += 1
            texts.append(v)
        if not any(texts):
            report.add(fname, rownum, "title/tags/description", "all metadata fields empty", "warning")
        conf_s = (r.get("confidence") or "").strip()
        try:
            conf = float(conf_s) if conf_s else float("nan")
        except ValueError:
            report.add(fname, rownum, "confidence", f"not a number: {conf_s!r}", "warning")
            conf = float("nan")
        out["ids"].append(cid)
        out["labels"].append(label)
        out["kinds"].append(kind_s)
        out["title"].append(texts[0])
        out["tags"].append(texts[1])
        out["description"].append(texts[2])
        out["conf"].append(conf)
        out["paths"].append(audio)
    counts["usable"] = len(out["ids"])
    if not out["ids"]:
        raise ManifestError(
            f"no usable rows in {csv_file}"
            + (
                f" (the file has {len(rows)} row(s); every one was dropped)\n{report.format(max_lines=10)}"
                if rows
                else " (it has a header but no data rows)"
            )
        )
    return Manifest(
        name=name,
        root=root,
        ids=np.array(out["ids"], dtype=object),
        labels=np.array(out["labels"], dtype=np.int64),
        label_kinds=np.array(out["kinds"], dtype=object),
        title=out["title"],
        tags=out["tags"],
        description=out["description"],
        confidence=np.array(out["conf"], dtype=np.float64),
        audio_paths=out["paths"],
        labelled=labelled,
        report=report,
        csv_path=csv_file,
    )


@dataclass
class ClassDescription:
    code: str
    name: str
    description: str
    examples: str


def load_class_descriptions(root: str | Path) -> dict[str, ClassDescription] | None:
    """``metadata/BST_description.csv`` as {code: ClassDescription}, or None if absent.

    Only target (second-level) rows are returned; the code is taken from ``class_key``.
    """
    path = Path(root) / "metadata" / "BST_description.csv"
    if not path.exists():
        return None
    report = ValidationReport(path.name)
    _, rows = read_csv(path, report)
    out: dict[str, ClassDescription] = {}
    for r in rows:
        code = (r.get("class_key") or "").strip().lower()
        if code in CLASSES:
            out[code] = ClassDescription(
                code,
                (r.get("second_level") or r.get("class_key_long") or "").strip(),
                (r.get("description") or "").strip(),
                (r.get("examples") or "").strip(),
            )
    return out


def shared_ids(a: Manifest, b: Manifest) -> list[str]:
    """Clip ids present in both manifests (e.g. BSD10k ∩ BSD35k-CS), sorted."""
    return sorted(set(a.ids.tolist()) & set(b.ids.tolist()))


def all_ids(manifests: Iterable[Manifest]) -> list[str]:
    out: list[str] = []
    for m in manifests:
        out.extend(m.ids.tolist())
    return out

"""Put a matrix drift report where CI users look (standard library only; run after `harness matrix report`).

    python .github/scripts/drift_summary.py reports/latest \
        [--summary "$GITHUB_STEP_SUMMARY"] [--comment comment.md] [--annotations]

--summary      appends reports/latest/summary.md to the job summary, cut to fit GitHub's 1 MiB limit per step
--comment      writes a pull request comment: a hidden marker (so a workflow can find and update its own
               comment), the report's headline and its summary table, within a comment's 65,536 characters
--annotations  prints one ::error:: workflow command per drifted model or unjudged cell (GitHub shows 10 per
               step; the rest are counted in one last ::error::)

Exit code 0 whatever the verdict: `harness matrix report` is the step that fails the job on drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

MARKER = "<!-- embedding-harness drift report -->"
SUMMARY_LIMIT = 1024 * 1024 - 1024  # bytes GitHub accepts per step summary, less room for the cut note
COMMENT_LIMIT = 65536 - 1024  # characters of one issue or pull request comment, less room for the cut note
ANNOTATION_LIMIT = 10
PASSING = {"pass", "incompatible"}


def cut(text: str, limit: int, note: str, *, in_bytes: bool) -> str:
    """``text`` whole when it fits ``limit`` (bytes or characters), else cut at a line and ``note`` appended."""
    size = len(text.encode("utf-8")) if in_bytes else len(text)
    if size <= limit:
        return text
    raw = text.encode("utf-8")[:limit].decode("utf-8", "ignore") if in_bytes else text[:limit]
    return raw[: raw.rfind("\n") + 1] + f"\n\n{note}\n"


def summary_table(markdown: str) -> str:
    """The headline and the ``## Summary`` table of a ``summary.md`` (everything up to the next section)."""
    lines = markdown.splitlines()
    out: List[str] = [lines[0]] if lines else []
    inside = False
    for line in lines[1:]:
        if line.startswith("## "):
            if inside:
                break
            inside = line.strip() == "## Summary"
            continue
        if inside:
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


def _escape(value: str, *, prop: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if prop else value


def annotations(report: Dict[str, Any]) -> List[str]:
    """``::error title=...::message`` for every drifted model and every cell that could not be judged."""
    found: List[str] = []
    for cell in report.get("cells", []):
        cell_id = cell.get("cell_id", "?")
        models = (cell.get("comparison") or {}).get("models") or []
        drifted = [m for m in models if m.get("status") not in PASSING]
        for model in drifted:
            title = f"drift: {report.get('matrix', '?')}/{cell_id} {model.get('model_id', '?')}"
            message = model.get("reason") or f"{model.get('status')} (class {model.get('tolerance_class')})"
            found.append(f"::error title={_escape(title, prop=True)}::{_escape(str(message))}")
        if cell.get("status") not in PASSING and not drifted:
            title = f"{cell.get('status', '?')}: {report.get('matrix', '?')}/{cell_id}"
            found.append(f"::error title={_escape(title, prop=True)}::{_escape(str(cell.get('reason') or cell.get('status')))}")
    if len(found) > ANNOTATION_LIMIT:
        rest = len(found) - (ANNOTATION_LIMIT - 1)
        found = found[: ANNOTATION_LIMIT - 1] + [f"::error title=drift::{rest} more drifted model(s) or cell(s): see the job summary"]
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report_dir", type=Path, help="the --out directory of harness matrix report (summary.md, report.json)")
    parser.add_argument("--summary", type=Path, help="append the summary here (the job summary: $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--comment", type=Path, help="write a pull request comment body here")
    parser.add_argument("--annotations", action="store_true", help="print ::error:: annotations for drifted models")
    args = parser.parse_args(argv)
    summary_md, report_json = args.report_dir / "summary.md", args.report_dir / "report.json"
    if not summary_md.is_file() or not report_json.is_file():
        text = f"No drift report in `{args.report_dir}`: the matrix did not get as far as its report (see the log).\n"
        print(f"::warning title=no drift report::{_escape(text.strip())}")
        markdown, report = f"# Drift report missing\n\n{text}", {}
    else:
        markdown = summary_md.read_text(encoding="utf-8")
        report = json.loads(report_json.read_text(encoding="utf-8"))
    if args.summary is not None:
        note = f"*(cut to fit GitHub's job summary limit: the whole report is the `{args.report_dir.name}` artifact)*"
        with args.summary.open("a", encoding="utf-8") as out:
            out.write(cut(markdown, SUMMARY_LIMIT, note, in_bytes=True))
    if args.comment is not None:
        note = "*(cut to fit a comment: the whole report is in the job summary and the workflow's artifact)*"
        body = f"{MARKER}\n{summary_table(markdown)}"
        args.comment.write_text(cut(body, COMMENT_LIMIT, note, in_bytes=False), encoding="utf-8")
    if args.annotations:
        for line in annotations(report):
            print(line)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

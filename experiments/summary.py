"""The experiments' summary table, generated from results/*/*.json (no hand-copied numbers).

Every experiment writes a top-level "claims" list in its JSON; each row is
{"claim", "paper", "measured", "verdict" (supported | contradicted | undecided), "why"}, with "measured" formatted
by the experiment from its own numbers. This script writes the rows between the markers
<!-- summary:begin --> and <!-- summary:end --> of experiments/README.md and README.md;
`--check` exits 1 when a file is out of date (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = (ROOT / "experiments" / "README.md", ROOT / "README.md")
BEGIN, END = "<!-- summary:begin -->", "<!-- summary:end -->"
VERDICTS = ("supported", "contradicted", "undecided")
FIELDS = ("claim", "paper", "measured", "verdict", "why")


def rows(results: Path = ROOT / "results") -> list[dict]:
    """Every summary row of every results/<name>/<name>.json, in experiment-name order, with its experiment name."""
    out = []
    for path in sorted(results.glob("*/*.json")):
        if path.stem != path.parent.name:
            continue
        data = json.loads(path.read_text())
        for i, row in enumerate(data.get("claims", [])):
            missing = [f for f in FIELDS if f not in row]
            if missing or row["verdict"] not in VERDICTS:
                raise ValueError(f"{path}: claims[{i}]: needs {FIELDS} with verdict in {VERDICTS}, got {row}")
            out.append({"experiment": path.stem, **row})
    return out


def table(summary: list[dict]) -> str:
    """The markdown table of the summary rows."""
    lines = ["| experiment | claim (paper) | measured here | verdict | why |", "|---|---|---|---|---|"]
    for r in summary:
        cells = [r["experiment"], f"{r['claim']} ({r['paper']})", r["measured"], f"**{r['verdict']}**", r["why"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def render(text: str, block: str) -> str:
    """`text` with the part between the markers replaced by `block` (unchanged when the markers are absent)."""
    if BEGIN not in text or END not in text:
        return text
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the summary tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a README's table is out of date")
    args = parser.parse_args(argv)
    block = table(rows())
    stale = []
    for target in TARGETS:
        text = target.read_text()
        new = render(text, block)
        if new != text:
            stale.append(target)
            if not args.check:
                from rkcompile.files import write_file

                write_file(target, new)
    if args.check and stale:
        print("out of date (run experiments/summary.py): " + ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``chargewatch verdicts export``: operators' verdicts on flags as labels for retraining.

Verdicts are posted to ``POST /api/v1/flags/{flag}/verdict`` and kept in the state database
(``chargewatch.verdicts``). The export takes the latest verdict of each flag whose anomaly
starts in ``[--since, --until)`` (either may be left out) and writes:

- ``--out LABELS.jsonl``: labels, CONTRACTS.md section 2, one line per (session, kind):
  ``confirmed`` is a label of the flag's kind over its range, ``wrong_kind`` a label of the
  kind the operator named; ``chargewatch evaluate --labels`` reads the file as it is;
- ``--negatives NEGATIVES.jsonl`` (optional): the (session, kind) pairs operators rejected
  (``false_alarm``, and the flag's own kind under ``wrong_kind``), in the same shape as labels:
  known normals for that kind, which retraining calibrates thresholds on. A pair that is also
  a label is left out of the negatives.

Files are written whole or not at all (a temporary file renamed into place). ``service.cli``
registers the group (``add_verdict_commands``) and lends its helpers when a command runs.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

__all__ = ["add_verdict_commands", "write_jsonl"]

verdicts_app = typer.Typer(help="Operators' verdicts on flags, as labels for retraining.")


def add_verdict_commands(app: typer.Typer) -> None:
    """Register the ``verdicts`` group on ``app``."""
    app.add_typer(verdicts_app, name="verdicts")


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> int:
    """Write ``lines`` as JSON Lines, whole or not at all; returns how many."""
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with partial.open("wb") as out:
            for line in lines:
                out.write(orjson.dumps(line) + b"\n")
                count += 1
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count


@verdicts_app.command("export")
def verdicts_export(
    out: Annotated[Path, typer.Option("--out", help="Labels file to write (JSON Lines).")],
    negatives: Annotated[
        Path | None,
        typer.Option("--negatives", help="Also write the rejected (session, kind) pairs here."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Flags that start at or after this, RFC 3339.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Flags that start before this (exclusive), RFC 3339.")
    ] = None,
) -> None:
    """Write the latest verdict on each flag as labels (CONTRACTS.md section 2), and with
    --negatives the pairs operators judged normal. Exit 2 on a usage or database error."""
    from chargewatch.events import parse_ts
    from chargewatch.settings import load_settings
    from chargewatch.state import StateStore
    from chargewatch.verdicts import labels_from_verdicts, latest_verdicts_between
    from service.cli import fail, guarded, stdout

    since_ns = None if since is None else guarded(lambda: parse_ts(since, "--since"))
    until_ns = None if until is None else guarded(lambda: parse_ts(until, "--until"))
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        fail("--until must be later than --since")
    for path, option in ((out, "--out"), (negatives, "--negatives")):
        if path is not None and not path.parent.is_dir():
            fail(f"{option}: folder {path.parent} does not exist")
    if negatives is not None and negatives.resolve() == out.resolve():
        fail("--negatives must be another file than --out")
    settings = guarded(load_settings)
    if settings.state_url is None and not settings.state_db_file.is_file():
        # an export is a read: it must not leave an empty database behind a mistyped folder
        fail(f"no state database at {settings.state_db_file}: check CHARGEWATCH_DATA_DIR")
    store = guarded(lambda: StateStore(settings.state_db_url))
    try:
        judged = guarded(lambda: latest_verdicts_between(store, since_ns, until_ns))
    finally:
        store.close()
    made = labels_from_verdicts(judged)
    try:
        write_jsonl(out, made.labels)
        if negatives is not None:
            write_jsonl(negatives, made.negatives)
    except OSError as exc:
        fail(f"cannot write {exc.filename}: {exc.strerror}")
    kinds = Counter(line["kind"] for line in made.labels)
    by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
    said = f"{len(made.labels)} labels ({by_kind}) from {len(judged)} judged flags to {out}"
    if negatives is not None:
        said += f"; {len(made.negatives)} negatives to {negatives}"
    stdout.print(said, markup=False)

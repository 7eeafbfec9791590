"""segrun's benchmarks: `segrun bench ops` and `segrun bench train`. Speed claims in the documentation
(docs/performance.md) are only what these measure; results/ holds the committed runs, one JSON and one Markdown file
per device and date."""
import json
from collections.abc import Callable
from pathlib import Path

from segrun.atomic_write import write_atomically


def write_results(result: dict, markdown: Callable[[dict], str], json_path: Path | None, md_path: Path | None) -> None:
    """The results so far as JSON and as their Markdown table (where a path is given), each file
    replaced whole: a benchmark stopped mid-write keeps the previous case's files."""
    if json_path is not None:
        write_atomically(json_path, (json.dumps(result, indent=1) + "\n").encode())
    if md_path is not None:
        write_atomically(md_path, markdown(result).encode())

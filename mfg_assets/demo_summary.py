"""Prints the summary of an onboard's report JSON again (``python -m mfg_assets.demo_summary REPORT``);
``mfgv onboard`` prints the same when it finishes."""

import json
import sys
from pathlib import Path

from mfg_assets.onboard_summary import summary_table


def summarise(report_path: Path) -> str:
    return "\n".join(summary_table(json.loads(report_path.read_text()), report_path.resolve()))


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1])))

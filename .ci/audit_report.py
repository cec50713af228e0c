"""Run pip-audit and summarise it honestly (`make audit`).

Runs `pip-audit -f json` (extra arguments are passed on) and prints how many packages were
audited, how many could not be (and why, grouped), and every known vulnerability. Exit
status:

* 0: every package audited, no known vulnerability;
* 1: known vulnerabilities (whether or not every package could be audited);
* 3: no known vulnerability among the packages audited, but some could not be audited:
  the result is INCOMPLETE, never reported as clean.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

INCOMPLETE = 3


def report(data: dict[str, Any]) -> tuple[str, int]:
    deps = data.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulnerable = [d for d in audited if d.get("vulns")]
    lines = [f"audit: {len(audited)} of {len(deps)} packages audited, {len(skipped)} not audited"]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            lines.append(
                f"  VULNERABLE {dep['name']} {dep.get('version', '?')}: {vuln['id']} ({fixes})"
            )
    if skipped:
        reasons = Counter(d["skip_reason"].split(":")[0] for d in skipped)
        for reason, count in reasons.most_common():
            lines.append(f"  not audited ({count}): {reason}")
        names = ", ".join(sorted(d["name"] for d in skipped)[:20])
        more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        lines.append(f"  e.g. {names}{more}")
    if vulnerable:
        count = sum(len(d["vulns"]) for d in vulnerable)
        lines.append(f"audit: FAILED: {count} known vulnerabilities in {len(vulnerable)} packages")
        return "\n".join(lines), 1
    if skipped:
        lines.append(
            f"audit: INCOMPLETE: no known vulnerability in the {len(audited)} packages audited; "
            f"{len(skipped)} could not be audited, so this is not a clean result"
        )
        return "\n".join(lines), INCOMPLETE
    lines.append(f"audit: clean: no known vulnerability in all {len(audited)} packages")
    return "\n".join(lines), 0


def main(argv: list[str]) -> int:
    command = ["pip-audit", "--progress-spinner", "off", "-f", "json", *argv]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError:
        # pip-audit's own "No known vulnerabilities found" line counts skipped packages as
        # clean: never pass it on
        errors = [ln for ln in done.stderr.splitlines() if "No known vulnerabilities" not in ln]
        print("\n".join(errors[-20:]), file=sys.stderr)
        print(f"audit: FAILED: pip-audit produced no report (exit {done.returncode})")
        return 1
    text, status = report(data)
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

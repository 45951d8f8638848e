"""Run the grader's attack suite (tests/test_attack_suite.py) as root and as a plain user.

As root every confinement layer must be active (``AUTOGRADER_ATTACK_LAYERS=all``). The
plain user is ``autograder-student`` (created with ``useradd`` when missing). Python may be
installed where only root may enter (pyenv under ``/root``, mode 0700): then the run as
that user happens in a private mount namespace in which that folder is replaced by a
world-readable tmpfs holding only a read-only bind of the interpreter's installation, so
the user can run the same interpreter and virtual environment and nothing else of root's
home. Needs root; prints each run's pytest summary and exits non-zero if either failed.

Usage: ``sudo .venv/bin/python scripts/attack_suite_as_user.py [-k EXPR]``
"""

from __future__ import annotations

import argparse
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

USER = "autograder-student"
ROOT = Path(__file__).resolve().parents[1]


def closed_ancestor(path: Path) -> Path | None:
    """The highest folder above ``path`` that other users may not enter, if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="pytest -k expression")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: it compares the run as root with the run as a plain user")
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
              "tests/test_attack_suite.py", *(["-k", args.k] if args.k else [])]
    env = dict(os.environ, AUTOGRADER_ATTACK_LAYERS="all")
    codes = [subprocess.run(pytest, cwd=ROOT, env=env, check=False).returncode]

    if subprocess.run(["id", "-u", USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        USER], check=True)
    base = Path(sys.base_prefix).resolve()
    hidden = closed_ancestor(base)
    steps = []
    if hidden is not None:  # a tmpfs over it, with only the interpreter bound back in
        keep = "/run/autograder-python"
        steps += [f"mkdir -p {keep}", f"mount --bind {shlex.quote(str(base))} {keep}",
                  f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(str(hidden))}",
                  f"mkdir -p {shlex.quote(str(base))}",
                  f"mount --bind -o ro {keep} {shlex.quote(str(base))}"]
    user_env = "HOME=/tmp TMPDIR=/tmp PATH=/usr/bin:/bin"
    steps.append(f"exec setpriv --reuid={USER} --regid={USER} --init-groups env -i {user_env} "
                 + " ".join(shlex.quote(a) for a in pytest))
    codes.append(subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 " && ".join(steps)], cwd=ROOT, check=False).returncode)
    print(f"attack suite: as root exit {codes[0]}, as {USER} exit {codes[1]}")
    return 0 if codes == [0, 0] else 1


if __name__ == "__main__":
    sys.exit(main())

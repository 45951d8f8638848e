"""Start JupyterLab on the course notebooks, wherever the course runs.

- As root (Docker, cloud notebooks, CI runners) JupyterLab refuses to start unless told
  ``--allow-root``: it is added only when the user is root.
- It opens no browser and prints the URL with its token, so it works the same in a
  container or over SSH (forward the port: ``ssh -L PORT:localhost:PORT host``).
- It picks a free port unless ``--port`` is given.

Usage (``make lab`` runs the first line)::

    python scripts/lab.py notebooks
    python scripts/lab.py notebooks --ip 0.0.0.0 --port 8888   # reachable from the host
    python scripts/lab.py notebooks -- --ServerApp.some_option=value   # passed on as is

Anything after ``--`` goes to ``jupyter lab`` unchanged.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def lab_command(
    notebook_dir: Path, ip: str, port: int, token: str, extra: list[str], is_root: bool
) -> list[str]:
    """The ``jupyter lab`` command line (run with this interpreter)."""
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        f"--ServerApp.root_dir={notebook_dir}", f"--ServerApp.ip={ip}",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
    ]
    if is_root:
        command.append("--allow-root")
    return command + extra


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook_dir", type=Path, nargs="?", default=Path("notebooks"))
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, help="port (default: a free one)")
    parser.add_argument("--token", default=os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(16))
    args = parser.parse_args(argv)
    if not args.notebook_dir.is_dir():
        parser.error(f"{args.notebook_dir} is not a folder (run from the repository root)")
    port = args.port or free_port(args.ip)
    host = "127.0.0.1" if args.ip in ("0.0.0.0", "") else args.ip
    print(f"JupyterLab: http://{host}:{port}/lab?token={args.token}", flush=True)
    command = lab_command(args.notebook_dir.resolve(), args.ip, port, args.token, extra,
                          is_root=os.geteuid() == 0)
    os.execv(command[0], command)  # JupyterLab takes over this process (Ctrl+C stops it)


if __name__ == "__main__":
    sys.exit(main())

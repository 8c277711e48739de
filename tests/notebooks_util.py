"""Execute a notebook from notebooks/ (used by the app tests)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def execute_notebook(name: str, env: dict | None = None, timeout: int = 300, cwd: Path | None = None):
    """Execute ``notebooks/<name>`` with ``env`` set for the kernel, from ``cwd`` (default notebooks/, as
    Jupyter does when a user opens the notebook); returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        path = str(cwd or ROOT / "notebooks")
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": path}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def refresh(name: str) -> None:
    """Re-execute ``notebooks/<name>`` against the shipped models and store its outputs (``make notebooks``),
    without the native log lines TensorFlow writes to stderr, execution counts or per-cell timings (so that
    a refresh changes only what the models print and draw)."""
    import nbformat

    nb = execute_notebook(name)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
            for o in cell.outputs:
                if "execution_count" in o:
                    o.execution_count = None
    nbformat.write(nb, ROOT / "notebooks" / name)
    print(f"notebooks/{name}: outputs stored", flush=True)


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")):
        refresh(name)

"""Running the ``ppgen`` command line inside the test process, for the tests of every
family's recipe and of bad input."""

from __future__ import annotations

import contextlib
import io

from ppgen.cli import main


def cli(*args):
    """Run ``ppgen ARGS`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def one_line(result, code=2):
    """The one stderr line of a refused command (exit ``code``, no traceback)."""
    status, _, err = result
    assert status == code, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]

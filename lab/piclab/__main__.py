"""``python3 lab/piclab ...`` (or ``python3 -m piclab`` with lab/ on the path)."""

import os
import sys

if __package__ in (None, ""):
    # run as a directory: sys.path[0] is this package's own directory; import
    # the package from its parent instead (and not its modules as top-level ones)
    HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    sys.path.insert(0, os.path.dirname(HERE))

from piclab.cli import main  # noqa: E402  pylint: disable=wrong-import-position

sys.exit(main())

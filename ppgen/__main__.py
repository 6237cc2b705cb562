"""``python -m ppgen`` is the ``ppgen`` command."""

import sys

from ppgen.cli import main

sys.exit(main())

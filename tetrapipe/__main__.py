"""`python -m tetrapipe`: the command line (the same as the `tetrapipe` console script)."""

import sys

from tetrapipe.cli.main import main

sys.exit(main())

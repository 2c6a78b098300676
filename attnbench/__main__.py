"""`python -m attnbench` runs the command line."""

import sys

from attnbench.cli import main

sys.exit(main())

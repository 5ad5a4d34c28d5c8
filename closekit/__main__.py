"""`python -m closekit …` is the `closekit` command."""

import sys

from closekit.cli import main

sys.exit(main())

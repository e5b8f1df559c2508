"""`python -m envisolation` is the `envisolation` command."""

import sys

from envisolation.cli import main

sys.exit(main())

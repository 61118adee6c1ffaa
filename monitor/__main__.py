"""`python -m monitor` is the `hybrid86` command."""

import sys

from monitor.cli import main

sys.exit(main())

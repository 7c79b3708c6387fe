"""``python -m services.cli``: the ``segstream`` command."""

import sys

from services.cli import main

sys.exit(main())

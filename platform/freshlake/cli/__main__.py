"""`python -m freshlake.cli`: the same as the `freshlake` console script."""

import sys

from freshlake.cli import main

sys.exit(main())

"""``python -m modelmine ...`` (and ``accelerate launch -m modelmine ...``): the same as ``modelmine``."""

import sys

from .cli import main

sys.exit(main())

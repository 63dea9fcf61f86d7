import sys

from .localizer_node import main

sys.exit(main())

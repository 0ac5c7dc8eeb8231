"""``python -m sbm_ros.apps.bench``: the same as the ``sbm-bench`` command."""

import sys

from sbm_ros.apps.bench import main

sys.exit(main())

import sys

from sweep.runner import main

sys.exit(main())

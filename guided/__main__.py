import sys

from guided.cli import main

sys.exit(main())

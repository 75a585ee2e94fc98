import sys

from guided.demo.run import main

sys.exit(main())

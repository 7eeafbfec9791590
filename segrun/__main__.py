import sys

from segrun.cli import main

sys.exit(main())

import sys

from seqapps.cli import main

sys.exit(main())

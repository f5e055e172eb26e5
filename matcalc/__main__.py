import sys

from matcalc.cli import main

sys.exit(main())

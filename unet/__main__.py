"""`python -m unet predict ...`: see `unet.cli`."""

from unet.cli import main

raise SystemExit(main())

"""``python -m eventcore.cli``: the same command line as the ``eventcore`` script."""

from eventcore.cli import main

main()

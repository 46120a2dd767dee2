"""``python -m fineproofs.cli``: the command line."""

from fineproofs.cli import main

main()

"""``python -m fineproofs``: the command line (used by ``accelerate launch -m fineproofs``)."""

from fineproofs.cli import main

main()

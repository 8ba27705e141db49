"""``python -m chargewatch``: the command line, which lives in the shell (``service.cli``)."""

from service.cli import main

main()

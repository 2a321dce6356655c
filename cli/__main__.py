"""``python -m cli``: the ``socialproof`` command (how the dev stack starts its children)."""

from cli.main import main

main()

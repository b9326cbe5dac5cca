"""``python -m core``: the ``ani`` command."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

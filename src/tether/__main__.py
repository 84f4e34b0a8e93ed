"""``python -m tether``: the ``tether`` command, for an environment whose scripts
directory is not on ``PATH``."""

from tether.cli import main

if __name__ == "__main__":
    main()

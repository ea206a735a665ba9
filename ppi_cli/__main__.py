# SPDX-License-Identifier: MIT
"""`python -m ppi_cli` runs the command-line interface."""

from ppi_cli.cli.main import main

if __name__ == "__main__":
    main()

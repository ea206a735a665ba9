# SPDX-License-Identifier: MIT
"""The Typer app: one thin module per verb, composed in `main.py`."""

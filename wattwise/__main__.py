"""`python -m wattwise` is the same as the `wattwise` console script."""

from wattwise.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

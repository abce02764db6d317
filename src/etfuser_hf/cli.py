"""`python -m etfuser_hf.cli` and `accelerate launch -m etfuser_hf.cli analyze ...`: the `etfuser` command."""

from .hub.cli import main

if __name__ == "__main__":
    main()

"""`python -m etfuser_hf.demo`: the annotated-photo demo (`etfuser_hf.hub.demo`)."""

from .hub.demo import main

if __name__ == "__main__":
    main()

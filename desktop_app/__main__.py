"""Entry point of `guidance-studio` and `python -m desktop_app`."""
import sys


def main() -> int:
    print("The Guidance Studio window is not built yet; use `python -m core` for headless sampling.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

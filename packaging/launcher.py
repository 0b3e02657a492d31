"""The frozen app's entry script: what `guidance-studio` (the console script) runs, as a file.

PyInstaller needs a script rather than an entry point; this one hands over to the same
`desktop_app.__main__.main` that the pip-installed console script calls (which also routes
`--self-test` to desktop_app.selftest), so the bundle and a pip install behave alike.
"""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen Windows/macOS child process must stop here
    from desktop_app.__main__ import main

    sys.exit(main())

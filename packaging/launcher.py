"""The frozen app's entry script: what `guidance-studio` (the console script) runs, as a file.

PyInstaller needs a script rather than an entry point; this one hands over to the same
`desktop_app.__main__.main` that the pip-installed console script calls, so both behave alike.
`--self-test` goes straight to desktop_app.selftest (as `main` also does), so the installed
bundle's check never depends on the window's start-up code.
"""
import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen Windows/macOS child process must stop here
    if "--self-test" in sys.argv[1:]:
        from desktop_app import selftest

        sys.exit(selftest.run(sys.argv[1:]))
    from desktop_app.__main__ import main

    sys.exit(main())

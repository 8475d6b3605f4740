"""``python -m kohakuriver_lab.runner``: start the runner daemon."""

from kohakuriver_lab.runner.app import main

if __name__ == "__main__":
    main()

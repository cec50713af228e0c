"""`python -m config` runs the `gridshift` command.

Guarded: the worker processes of a local Dask cluster (`gridshift replay --workers N`) are
spawned, and a spawned process imports the parent's `__main__` module; unguarded, each worker
would run the command again."""

from config.cli import main

if __name__ == "__main__":
    main()

"""The paper's experiments, runnable as ``coreselect reproduce NAME [options]``.

Each module ``coreselect.experiments.NAME`` has ``main(argv=None) -> int`` that parses its own
options (``argparse``, prog ``coreselect reproduce NAME``), writes its tables and figures and
returns an exit code. The scripts in the repository's ``experiments/`` folder call the same.
"""

"""Decode videos once into WebDataset tar shards: ``python data_prep/shard.py --root DIR --list FILE --out DIR``.

The implementation lives in ``vidprism_ds.data.prep`` (importable and tested); this file is the entry
point the docs name. ``python data_prep/shard.py --help`` lists the options; docs/data.md explains them.
"""

import sys

from vidprism_ds.data.prep.cli import main

if __name__ == "__main__":
    sys.exit(main())

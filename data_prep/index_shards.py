"""Write the member index beside every shard of shard folders made before ``data_prep/shard.py`` wrote
indexes: ``python data_prep/index_shards.py SHARD_DIR [SHARD_DIR ...] [--force]``.

The implementation is ``vidprism_ds.data.shard_index`` (docs/data.md, "Reading a sample where it lies").
"""

import sys

from vidprism_ds.data.shard_index import main

if __name__ == "__main__":
    sys.exit(main())

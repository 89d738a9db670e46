"""Train VidPrism with DeepSpeed: ``deepspeed train.py --deepspeed_config ds_configs/zero2.json [--config ...]``.

See ``python train.py --help`` and docs/training.md. Without ``--config`` it runs the demo.
"""

import sys

from vidprism_ds.train.cli import main

if __name__ == "__main__":
    sys.exit(main())

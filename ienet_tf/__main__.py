import sys

from ienet_tf.cli import main

sys.exit(main())

"""Deprecated alias of `ienet_tf.inspection` (the statistics moved there so that callbacks
and cost can use them without importing the report package); kept for one release."""

from ienet_tf.inspection import *  # noqa: F403
from ienet_tf.inspection import __all__  # noqa: F401

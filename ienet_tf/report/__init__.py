"""Reports on trained binary networks: statistics, the paper's figures, `report.md`.

```python
from ienet_tf.report import figures, write_report

write_report("runs/demo")  # runs/demo/report/report.md, the PNGs, TensorBoard images
rows = figures.entropy_table(model)  # entropy and quantization error per binary layer
```

The statistics are `ienet_tf.inspection`'s; `figures` holds one function per figure, `writer` the
report (`ienet report --run DIR`; `write_model_report` and `ienet report --model FILE` for a
saved model that is no run's).
"""

from ienet_tf.report import figures
from ienet_tf.report.writer import FIGURE_FILES, write_model_report, write_report

__all__ = ["FIGURE_FILES", "figures", "write_model_report", "write_report"]

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Notebooks and nbgrader kernels run on the CPU here, with the same threads CI has.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

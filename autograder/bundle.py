"""The zip an instructor hands out: one assignment's exercise notebook and a
README on checking and handing it in. Nothing from `solutions/` goes in: the
notebook is the released one, whose answer cells are stubs and whose hidden
test cells are empty."""
import zipfile
from pathlib import Path

from autograder.publish import exercise_links

README = """\
Assignment {a}

1. Open {a}/{a}.ipynb in Jupyter (or upload it to Google Colab:
   File -> Upload notebook). Its first code cell installs the course's
   package where it is missing; run the cells in order.
2. Write each answer in the cell that says `raise NotImplementedError()` and
   run the visible test below it.
3. Before you hand it in: restart and run every cell; every visible test
   must pass. With the course installed, `python -m autograder validate
   {a}.ipynb` checks it as the grader will.
4. Hand in {a}.ipynb itself, under that name, where your instructor
   collects the assignment.

Or open it online, nothing to install:
  Colab:  {colab}
  Binder: {binder}
"""


def write_bundle(notebook: Path, out: Path) -> list:
    """Write the zip of the released `notebook` to `out`; returns its entries."""
    a = notebook.stem
    links = exercise_links(a)
    entries = {f"{a}/{a}.ipynb": notebook.read_bytes(),
               f"{a}/README.txt": README.format(a=a, colab=links["Colab"], binder=links["Binder"]).encode()}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return list(entries)

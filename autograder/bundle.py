"""The zip an instructor hands out: one assignment's exercise notebook and a
README on checking and handing it in. Nothing from `solutions/` goes in: the
notebook is the released one, whose answer cells are stubs and whose hidden
test cells are empty."""
import json
import zipfile
from pathlib import Path

from autograder.exercise_translations import LANGUAGE, language_of
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


README_ZH = """\
作业 {a}

1. 在 Jupyter 中打开 {a}/{a}.ipynb（或者把它上传到 Google Colab：
   File -> Upload notebook）。它的第一个代码单元格会在缺少课程软件包的
   地方安装它；请按顺序运行各个单元格。
2. 把每个答案写在含有 `raise NotImplementedError()` 的单元格里，然后运行
   它下面的可见测试。
3. 提交之前：重启并运行全部单元格，每个可见测试都必须通过。如果安装了
   课程，`python -m autograder validate {a}.ipynb` 会像批改程序那样检查它。
4. 就用 {a}.ipynb 这个文件名，把这个文件本身提交到老师收作业的地方。

也可以在线打开，不用安装任何东西：
  Colab:  {colab}
  Binder: {binder}
"""


def write_bundle(notebook: Path, out: Path, assignment: str = None) -> list:
    """Write the zip of the released `notebook` (of `assignment`, by default
    its name) to `out`, with a README in the notebook's language; returns its entries."""
    a = notebook.stem
    links = exercise_links(assignment or a)
    chinese = language_of(json.loads(notebook.read_text(encoding="utf-8"))) == LANGUAGE
    readme = README_ZH if chinese else README
    entries = {f"{a}/{a}.ipynb": notebook.read_bytes(),
               f"{a}/README.txt": readme.format(a=a, colab=links["Colab"], binder=links["Binder"]).encode()}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return list(entries)

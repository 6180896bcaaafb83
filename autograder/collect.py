"""Unpack what an instructor downloads from a learning platform into nbgrader's
`submitted/<student>/<assignment>/<notebook>` layout of a course folder.

`collect` reads a zip (or a folder) and recognises, from the entry names
alone, the layout it was made with:

canvas      "Download Submissions": flat files
            `<namelastfirst>_<userid>_<submissionid>_<original file name>`,
            with `late_` after the name when Canvas marked the submission late;
            a file uploaded again under the same name may end in `-1`, `-2`:
                smithalice_12345_67890_feed_forward.ipynb
                jonesbob_late_23456_78901_feed_forward-1.ipynb
            student = the name part (`smithalice`), late = the `late` marker.
moodle      "Download all submissions": one folder per participant,
            `<Full Name>_<participantid>_assignsubmission_file[_]/<file>`
            (Moodle >= 3.1; later versions drop the trailing `_`), or, with
            "download submissions in folders" off (and before 3.1), flat:
                Alice Smith_1234_assignsubmission_file/feed_forward.ipynb
                Alice Smith_1234_assignsubmission_file_feed_forward.ipynb
            student = the participant id (`1234`; blind marking names the
            folder `Participant_1234_...`, with the same id).
blackboard  "Assignment File Download": flat files
            `<Assignment Name>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>_<file>`
            plus one `<Assignment Name>_<username>_attempt_<...>.txt` per
            attempt (the attempt record, skipped):
                Feed Forward_asmith_attempt_2026-12-01-10-30-00_feed_forward.ipynb
                Feed Forward_asmith_attempt_2026-12-01-10-30-00.txt
            student = the username, time = the one in the name (read as UTC).
folders     `<student>/<anything>.ipynb`, nbgrader's own
            `<student>/<assignment>/<anything>.ipynb`, or flat
            `<student>_<anything>.ipynb`; one folder wrapping them all (a
            zipped `submitted/`) is looked through:
                alice/feed_forward.ipynb
                submitted/alice/feed_forward/feed_forward.ipynb
pattern     a regular expression with a group `student`, searched in each
            entry path, for anything else: `--pattern '^(?P<student>\\w+)-'`.

The time of a submission is, in this order: the one in a Blackboard name, an
nbgrader `timestamp.txt` beside the notebook, the zip entry's date and time
(which carries no zone: read as UTC), a folder's file's mtime. Zip tools that
know no time write 1980-01-01 00:00, which counts as unknown.

Entry names are only ever parsed, never used as paths: what is written is
`root/submitted/<student>/<assignment>/<notebook_name>`, and a student id must
match STUDENT_ID, so nothing lands outside the course.
"""
import datetime as dt
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from autograder import UsageError

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_NOTEBOOK_BYTES = 50 * 2**20
NBGRADER_TIME = "%Y-%m-%d %H:%M:%S.%f %Z"  # what nbgrader writes and its parse_utc reads

UTC = dt.timezone.utc
_DOS_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's "no time": its earliest date
_EXAMPLE = "--pattern '^(?P<student>[^/]+)/'"

_CANVAS = re.compile(r"^(?P<student>[^_/]+)_(?:(?P<late>(?i:late))_)?(?P<uid>\d+)_\d+_.+$")
_MOODLE = re.compile(r"(?:^|/)[^/]+?_(?P<student>\d+)_assignsubmission_file(?:_?/|_)")
_BLACKBOARD = re.compile(
    r"^.+_(?P<student>[^_/]+)_attempt_(?P<time>\d{4}(?:-\d\d){5})(?P<rest>_.+|\.txt)$", re.IGNORECASE)


@dataclass
class _Entry:
    name: str                       # as the archive spells it, for messages
    path: Optional[str]             # normalised for parsing (_normal); None if unsafe
    time: Optional[dt.datetime]
    size: int
    read: Callable[[int], bytes]    # read(limit): at most `limit` bytes


@dataclass
class _Claim:
    """Whose notebook an entry is, as its layout tells."""
    student: str
    time: Optional[dt.datetime]
    late: bool = False
    uid: Optional[str] = None       # Canvas's user id: two users may share a name


class _NoStudent(Exception):
    """An entry whose owner cannot be told; `str()` is the reason."""


class _Unreadable(Exception):
    """An entry that cannot be read whole; `str()` is the reason."""


def collect(root: Path, assignment: str, notebook_name: str, archive: Path, pattern: str = None) -> dict:
    """Copy the notebooks of an LMS download into `root/submitted/`.

    Returns {"collected": {student: path}, "skipped": [reason], "layout": name,
    "late": {student: bool}, "timestamps": {student: aware UTC datetime or None}}.
    Raises ValueError (UsageError), one line naming the fix, for a missing
    archive, one that is not a zip or a folder, a bad `pattern`, and an
    archive none of whose notebooks could be given a student.
    """
    root, archive = Path(root), Path(archive)
    regex = _compile(pattern) if pattern is not None else None
    skipped = []
    entries = _notebooks(_read_archive(archive), skipped)
    layout = "pattern" if regex else _detect([e.path for e in entries])
    claim = _claimer(layout, regex, assignment, notebook_name, entries)
    claims, unowned = [], []
    for entry in entries:
        try:
            claims.append((entry, claim(entry)))
        except _NoStudent as why:
            unowned.append(f"{_show(entry.name)}: {why}")
    kept = _newest(_unambiguous(claims, skipped), skipped)
    if not kept and unowned:
        raise UsageError(_unrecognised(pattern, unowned[0]))
    collected = {}
    for student, (entry, owner) in sorted(kept.items()):
        try:
            collected[student] = _write(root, assignment, notebook_name, entry, owner)
        except _Unreadable as why:
            skipped.append(f"{_show(entry.name)}: {why}")
    return {"collected": collected, "skipped": unowned + skipped, "layout": layout,
            "late": {s: kept[s][1].late for s in collected},
            "timestamps": {s: kept[s][1].time for s in collected}}


# ------------------------------------------------------------------ input

def _compile(pattern: str):
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise UsageError(f"--pattern {pattern!r} is not a valid regular expression ({e}): "
                         f"fix it, e.g. {_EXAMPLE}") from None
    if "student" not in regex.groupindex:
        raise UsageError(f"--pattern {pattern!r} has no group named 'student': "
                         f"capture the student id with (?P<student>...), e.g. {_EXAMPLE}")
    return regex


def _read_archive(archive: Path) -> list:
    """Every file of a folder or a zip, as _Entry, in name order."""
    if archive.is_dir():
        return [_file_entry(archive, p) for p in sorted(archive.rglob("*"))
                if p.is_file() and not p.is_symlink()]  # a link may point anywhere on this machine
    if not archive.exists():
        raise UsageError(f"no such file or folder: {_show(str(archive))}: pass the zip downloaded "
                         f"from the learning platform, or a folder of notebooks")
    if not zipfile.is_zipfile(archive):
        raise UsageError(f"{_show(str(archive))} is not a zip file or a folder: pass the zip as the "
                         f"learning platform gave it (not packed again as .rar, .7z or .tar), "
                         f"or unpack it into a folder and pass that")
    with zipfile.ZipFile(archive) as z:
        infos = [i for i in z.infolist() if not i.is_dir()]
    return [_zip_entry(archive, i) for i in sorted(infos, key=lambda i: i.filename)]


def _file_entry(folder: Path, p: Path) -> _Entry:
    def read(limit):
        with p.open("rb") as f:
            return f.read(limit)
    stat = p.stat()
    name = p.relative_to(folder).as_posix()
    return _Entry(name, name, dt.datetime.fromtimestamp(stat.st_mtime, UTC), stat.st_size, read)


def _zip_entry(archive: Path, info: zipfile.ZipInfo) -> _Entry:
    def read(limit):
        # The zip is opened again for each read, so that no handle outlives collect.
        with zipfile.ZipFile(archive) as z, z.open(info) as f:
            return f.read(limit)
    try:
        when = None if info.date_time == _DOS_EPOCH else dt.datetime(*info.date_time, tzinfo=UTC)
    except ValueError:  # a broken header: month 0 and the like
        when = None
    return _Entry(info.filename, _normal(info.filename), when, info.file_size, read)


def _normal(name: str) -> Optional[str]:
    """`name` with "/" between folders (zips made on Windows may use "\\") and
    no empty or "." parts; None if it is absolute or climbs with "..": such
    a name is never parsed."""
    path = name.replace("\\", "/")
    parts = path.split("/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or ".." in parts:
        return None
    return "/".join(p for p in parts if p not in ("", "."))


def _notebooks(entries: list, skipped: list) -> list:
    """The entries that may be submissions; the others go to `skipped`, with why.
    A notebook's time is taken from an nbgrader timestamp.txt beside it."""
    stamps = {e.path.rpartition("/")[0]: e for e in entries
              if e.path is not None and e.path.rpartition("/")[2] == "timestamp.txt"}
    notebooks = []
    for e in entries:
        parts = e.path.split("/") if e.path is not None else []
        if e.path is None:
            skipped.append(f"{_show(e.name)}: unsafe path (absolute, or with ..)")
        elif "__MACOSX" in parts or any(p.startswith(".") for p in parts):
            skipped.append(f"{_show(e.name)}: hidden or macOS metadata file")
        elif _BLACKBOARD.match(parts[-1]) and parts[-1].lower().endswith(".txt"):
            skipped.append(f"{_show(e.name)}: Blackboard's attempt record")
        elif not parts[-1].lower().endswith(".ipynb"):
            skipped.append(f"{_show(e.name)}: not a notebook")
        elif e.size > MAX_NOTEBOOK_BYTES:
            skipped.append(f"{_show(e.name)}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
        else:
            stamp = stamps.get(e.path.rpartition("/")[0])
            e.time = (_stamp_of(stamp) if stamp else None) or e.time
            notebooks.append(e)
    return notebooks


def _stamp_of(entry: _Entry) -> Optional[dt.datetime]:
    """The time in an nbgrader timestamp.txt, aware UTC, or None if unreadable."""
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(entry.read(200).decode("utf-8").strip()).replace(tzinfo=UTC)
    except (ValueError, OverflowError, zipfile.BadZipFile, OSError):
        return None


# ---------------------------------------------------------------- layouts

def _detect(paths: list) -> str:
    """The platform whose names at least half of the notebooks carry, else "folders"."""
    tests = {"moodle": lambda p: _MOODLE.search(p),
             "blackboard": lambda p: _BLACKBOARD.match(p.rpartition("/")[2]),
             "canvas": lambda p: _CANVAS.match(p.rpartition("/")[2])}
    counts = {name: sum(1 for p in paths if test(p)) for name, test in tests.items()}
    best = max(counts, key=counts.get)  # ties go to the first: the more specific names
    # At least half, so that one `alice/hw_1_2_x.ipynb` does not make a folder of folders Canvas.
    return best if counts[best] and 2 * counts[best] >= len(paths) else "folders"


def _claimer(layout, regex, assignment, notebook_name, entries):
    """A function entry -> _Claim for `layout`, raising _NoStudent."""
    if layout == "pattern":
        return lambda e: _by_pattern(e, regex)
    if layout == "folders":
        wrapper = _wrapper([e.path for e in entries], assignment)
        released = {assignment.lower(), Path(notebook_name).stem.lower()}
        return lambda e: _by_folder(e, wrapper, released)
    return {"canvas": _by_canvas, "moodle": _by_moodle, "blackboard": _by_blackboard}[layout]


def _by_pattern(e: _Entry, regex) -> _Claim:
    m = regex.search(e.path)
    if not m or not m.group("student"):
        raise _NoStudent(f"does not match --pattern {regex.pattern!r}")
    return _Claim(_checked(m.group("student")), e.time)


def _by_canvas(e: _Entry) -> _Claim:
    m = _CANVAS.match(e.path.rpartition("/")[2])
    if not m:
        raise _NoStudent("not named like the other Canvas entries (<name>_<userid>_<submissionid>_<file>)")
    student = _checked(m["student"], hint=" (to use Canvas user ids instead: "
                                           "--pattern '_(?P<student>\\d+)_\\d+_[^/]*$')")
    return _Claim(student, e.time, late=bool(m["late"]), uid=m["uid"])


def _by_moodle(e: _Entry) -> _Claim:
    m = _MOODLE.search(e.path)
    if not m:
        raise _NoStudent("not named like the other Moodle entries (<Full Name>_<id>_assignsubmission_file_...)")
    return _Claim(_checked(m["student"]), e.time)


def _by_blackboard(e: _Entry) -> _Claim:
    m = _BLACKBOARD.match(e.path.rpartition("/")[2])
    if not m:
        raise _NoStudent("not named like the other Blackboard entries (<Assignment>_<user>_attempt_<time>_<file>)")
    when = dt.datetime.strptime(m["time"], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=UTC)
    return _Claim(_checked(m["student"]), when)


def _by_folder(e: _Entry, wrapper: Optional[str], released: set) -> _Claim:
    parts = e.path.split("/")
    if wrapper and parts[0] == wrapper:
        parts = parts[1:]
    if len(parts) > 1:
        return _Claim(_checked(parts[0]), e.time)
    # A flat <student>_<anything>.ipynb. The released notebook itself, or a
    # copy renamed (feed_forward.ipynb, Feed_Forward-final.ipynb), names no
    # student: its first word is the assignment's, not a student's.
    stem = Path(parts[0]).stem
    first = stem.split("_", 1)[0].lower()
    if "_" not in stem or any(stem.lower().startswith(r) or first == r.split("_", 1)[0] for r in released):
        raise _NoStudent("no student id in the name")
    return _Claim(_checked(stem.split("_", 1)[0]), e.time)


def _wrapper(paths: list, assignment: str) -> Optional[str]:
    """The one folder that holds every student folder (`submitted/` zipped
    whole, or a folder the instructor compressed), or None.

    `alice/feed_forward/nb.ipynb` alone is a student folder, not a wrapper:
    one is assumed only when every notebook lies in a folder inside it, and it
    holds several such folders or nbgrader's <student>/<assignment>/ (a
    single student's `alice/v1/`, `alice/v2/` would be taken for two students).
    """
    parts = [p.split("/") for p in paths]
    if not parts or any(len(p) < 3 for p in parts) or len({p[0] for p in parts}) != 1:
        return None
    seconds = {p[1] for p in parts}
    if assignment in seconds:  # <student>/<assignment>/...: parts[0] is the student
        return None
    if len(seconds) > 1 or all(len(p) > 3 and p[2] == assignment for p in parts):
        return parts[0][0]
    return None


def _checked(student: str, hint: str = "") -> str:
    if not STUDENT_ID.match(student):
        raise _NoStudent(f"no usable student id (got {student!r}){hint}")
    return student


# ---------------------------------------------------------------- output

def _unambiguous(claims: list, skipped: list) -> list:
    """`claims` less those of a Canvas name that several user ids share: which
    notebook is whose cannot be told, so none of them is graded."""
    uids = {}
    for _, c in claims:
        uids.setdefault(c.student, set()).add(c.uid)
    clear = []
    for entry, c in claims:
        if len(uids[c.student]) == 1:
            clear.append((entry, c))
            continue
        ids = " and ".join(sorted(uids[c.student]))
        skipped.append(f"{_show(entry.name)}: Canvas users {ids} share the name {c.student}; collect by "
                       f"user id with --pattern '_(?P<student>\\d+)_\\d+_[^/]*$'")
    return clear


def _newest(claims: list, skipped: list) -> dict:
    """{student: (entry, claim)}, the newest of each student's notebooks (by
    time, then name: Canvas's `-1` suffix sorts after the first upload); the
    older ones go to `skipped`."""
    kept = {}
    for entry, c in claims:
        if c.student in kept:
            older, newer = sorted([kept[c.student], (entry, c)], key=_age)
            skipped.append(f"{_show(older[0].name)}: {c.student} handed in more than one notebook; "
                           f"kept the newer {_show(newer[0].name)}")
            kept[c.student] = newer
        else:
            kept[c.student] = (entry, c)
    return kept


def _age(pair):
    entry, claim = pair
    return (claim.time is not None, claim.time or dt.datetime.min.replace(tzinfo=UTC), entry.path)


def _write(root: Path, assignment: str, notebook_name: str, entry: _Entry, claim: _Claim) -> Path:
    try:
        data = entry.read(MAX_NOTEBOOK_BYTES + 1)  # the size in a zip's header may lie
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise _Unreadable(f"unreadable ({e})") from None
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise _Unreadable(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    target = root / "submitted" / claim.student / assignment / notebook_name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    stamp = target.parent / "timestamp.txt"
    if claim.time is None:
        stamp.unlink(missing_ok=True)  # an earlier collect's time is not this notebook's
    else:
        stamp.write_text(claim.time.astimezone(UTC).strftime(NBGRADER_TIME) + "\n", encoding="utf-8")
    return target


def _unrecognised(pattern: Optional[str], reason: str) -> str:
    if pattern is not None:
        return (f"--pattern {pattern!r} gave no notebook a student (first: {reason}): fix it so that "
                f"its group 'student' captures the id from each entry path, e.g. {_EXAMPLE}")
    return (f"no notebook in the archive names its student (first: {reason}): pass --pattern, a regular "
            f"expression whose group 'student' captures the id from each entry path, e.g. {_EXAMPLE}")


def _show(name: str) -> str:
    """An entry name fit for a one-line message (a name may hold a newline)."""
    return name if name.isprintable() else repr(name)

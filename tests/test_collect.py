"""collect: an LMS download (zip or folder) into the course's submitted/ folder.

Each archive is built here with zipfile, every entry with an explicit
date_time, so that the layouts, the students, the times and the reasons for
skipping can be checked exactly. Nothing is graded.
"""
import datetime as dt
import json
import os
import zipfile

import pytest
from nbgrader.utils import parse_utc

from autograder import REPO
import autograder.collect as collect_module
from autograder.collect import collect

ASSIGNMENT = "feed_forward"
NAME = "feed_forward.ipynb"
RELEASED = (REPO / "exercises" / ASSIGNMENT / NAME).read_bytes()
UTC = dt.timezone.utc


def notebook(tag: str) -> bytes:
    """The released notebook, marked with `tag` so that which copy was kept shows."""
    nb = json.loads(RELEASED)
    nb["metadata"]["tag"] = tag
    return json.dumps(nb).encode()


def tag_of(path) -> str:
    return json.loads(path.read_bytes())["metadata"]["tag"]


def make_zip(path, entries):
    """entries: (name, bytes, date_time) each, written under exactly that name;
    a short date_time is padded with zeros: (2026, 12, 1) is midnight."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data, when in entries:
            z.writestr(zipfile.ZipInfo(name, date_time=tuple(when) + (0,) * (6 - len(when))), data)
    assert zipfile.ZipFile(path).namelist() == [n for n, _, _ in entries]  # no name was altered
    return path


def run(tmp_path, entries, pattern=None):
    root = tmp_path / "course"
    root.mkdir(exist_ok=True)
    archive = make_zip(tmp_path / "download.zip", entries)
    return root, collect(root, ASSIGNMENT, NAME, archive, pattern)


def stamp(root, student):
    """The time in the student's timestamp.txt as nbgrader reads it (naive UTC), or None."""
    path = root / "submitted" / student / ASSIGNMENT / "timestamp.txt"
    return parse_utc(path.read_text().strip()) if path.exists() else None


def target(root, student):
    return root / "submitted" / student / ASSIGNMENT / NAME


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


# ------------------------------------------------------------------ layouts

def test_canvas_late_marker_and_resubmission(tmp_path):
    root, r = run(tmp_path, [
        ("jonesbob_late_23456_78901_feed_forward-1.ipynb", notebook("bob"), (2026, 12, 3, 9, 15, 30)),
        ("smithalice_12345_67890_feed_forward.ipynb", notebook("alice first"), (2026, 12, 1, 10, 0, 0)),
        ("smithalice_12345_67891_feed_forward-1.ipynb", notebook("alice again"), (2026, 12, 1, 11, 30, 0)),
        ("smithalice_12345_67891_notes.pdf", b"%PDF", (2026, 12, 1, 11, 30, 0)),
    ])
    assert r["layout"] == "canvas"
    assert r["collected"] == {"jonesbob": target(root, "jonesbob"), "smithalice": target(root, "smithalice")}
    assert r["late"] == {"jonesbob": True, "smithalice": False}
    assert r["timestamps"] == {"jonesbob": utc(2026, 12, 3, 9, 15, 30), "smithalice": utc(2026, 12, 1, 11, 30)}
    assert tag_of(target(root, "smithalice")) == "alice again"
    assert tag_of(target(root, "jonesbob")) == "bob"
    assert (target(root, "smithalice").parent / "timestamp.txt").read_text() == "2026-12-01 11:30:00.000000 UTC\n"
    assert stamp(root, "jonesbob") == dt.datetime(2026, 12, 3, 9, 15, 30)
    assert r["skipped"] == [
        "smithalice_12345_67891_notes.pdf: not a notebook",
        "smithalice_12345_67890_feed_forward.ipynb: smithalice handed in more than one notebook; "
        "kept the newer smithalice_12345_67891_feed_forward-1.ipynb",
    ]


def test_canvas_users_sharing_a_name_are_not_guessed(tmp_path):
    root, r = run(tmp_path, [
        ("smithalice_12345_67890_feed_forward.ipynb", notebook("one"), (2026, 12, 1, 10, 0, 0)),
        ("smithalice_99999_67891_feed_forward.ipynb", notebook("other"), (2026, 12, 1, 11, 0, 0)),
        ("jonesbob_23456_78901_feed_forward.ipynb", notebook("bob"), (2026, 12, 1, 12, 0, 0)),
    ])
    assert list(r["collected"]) == ["jonesbob"]
    assert not (root / "submitted" / "smithalice").exists()
    assert [s.split(":")[0] for s in r["skipped"]] == ["smithalice_12345_67890_feed_forward.ipynb",
                                                     "smithalice_99999_67891_feed_forward.ipynb"]
    assert all("Canvas users 12345 and 99999 share the name smithalice" in s and "--pattern" in s
               for s in r["skipped"])


def test_moodle_folder_per_participant(tmp_path):
    root, r = run(tmp_path, [
        ("Alice Smith_1234_assignsubmission_file/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 10, 0, 0)),
        ("Bob Jones_5678_assignsubmission_file_/Feed_Forward.ipynb", notebook("bob"), (2026, 12, 2, 8, 5, 0)),
        ("Bob Jones_5678_assignsubmission_onlinetext_/onlinetext.html", b"<p>hi</p>", (2026, 12, 2, 8, 5, 0)),
    ])
    assert r["layout"] == "moodle"
    assert r["collected"] == {"1234": target(root, "1234"), "5678": target(root, "5678")}
    assert tag_of(target(root, "5678")) == "bob"
    assert r["timestamps"] == {"1234": utc(2026, 12, 1, 10), "5678": utc(2026, 12, 2, 8, 5)}
    assert stamp(root, "1234") == dt.datetime(2026, 12, 1, 10)
    assert r["late"] == {"1234": False, "5678": False}
    assert r["skipped"] == ["Bob Jones_5678_assignsubmission_onlinetext_/onlinetext.html: not a notebook"]


def test_moodle_flat(tmp_path):
    root, r = run(tmp_path, [
        ("Alice Smith_1234_assignsubmission_file_feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 10, 0, 0)),
        ("Participant_5678_assignsubmission_file_ff_final.ipynb", notebook("blind"), (2026, 12, 1, 12, 0, 0)),
    ])
    assert r["layout"] == "moodle"
    assert sorted(r["collected"]) == ["1234", "5678"]
    assert tag_of(target(root, "5678")) == "blind"
    assert stamp(root, "5678") == dt.datetime(2026, 12, 1, 12)
    assert r["skipped"] == []


def test_blackboard_two_attempts_and_attempt_records(tmp_path):
    late_entry_time = (2027, 1, 1, 0, 0, 0)  # the time in the name counts, not the entry's
    root, r = run(tmp_path, [
        ("Feed Forward_asmith_attempt_2026-12-01-10-30-00.txt", b"Name: Alice", late_entry_time),
        ("Feed Forward_asmith_attempt_2026-12-01-10-30-00_feed_forward.ipynb", notebook("first"), late_entry_time),
        ("Feed Forward_asmith_attempt_2026-12-02-08-00-00.txt", b"Name: Alice", late_entry_time),
        ("Feed Forward_asmith_attempt_2026-12-02-08-00-00_feed_forward.ipynb", notebook("second"), (2026, 1, 1)),
        ("Feed Forward_bjones_attempt_2026-12-01-23-59-59.txt", b"Name: Bob", late_entry_time),
        ("Feed Forward_bjones_attempt_2026-12-01-23-59-59_ff_bjones.ipynb", notebook("bob"), late_entry_time),
    ])
    assert r["layout"] == "blackboard"
    assert r["collected"] == {"asmith": target(root, "asmith"), "bjones": target(root, "bjones")}
    assert tag_of(target(root, "asmith")) == "second"
    assert r["timestamps"] == {"asmith": utc(2026, 12, 2, 8), "bjones": utc(2026, 12, 1, 23, 59, 59)}
    assert stamp(root, "asmith") == dt.datetime(2026, 12, 2, 8)
    assert stamp(root, "bjones") == dt.datetime(2026, 12, 1, 23, 59, 59)
    assert r["skipped"] == [
        "Feed Forward_asmith_attempt_2026-12-01-10-30-00.txt: Blackboard's attempt record",
        "Feed Forward_asmith_attempt_2026-12-02-08-00-00.txt: Blackboard's attempt record",
        "Feed Forward_bjones_attempt_2026-12-01-23-59-59.txt: Blackboard's attempt record",
        "Feed Forward_asmith_attempt_2026-12-01-10-30-00_feed_forward.ipynb: asmith handed in more than one "
        "notebook; kept the newer Feed Forward_asmith_attempt_2026-12-02-08-00-00_feed_forward.ipynb",
    ]


def test_folders_per_student_and_nbgrader_layout(tmp_path):
    root, r = run(tmp_path, [
        ("__MACOSX/alice/._feed_forward.ipynb", b"\0\5\26\7", (2026, 12, 1, 9, 0, 0)),
        ("alice/.ipynb_checkpoints/feed_forward-checkpoint.ipynb", notebook("checkpoint"), (2026, 12, 1, 9, 0, 0)),
        ("alice/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 9, 0, 0)),
        ("bob/feed_forward/feed_forward.ipynb", notebook("bob"), (2026, 12, 1, 9, 30, 0)),
        ("bob/feed_forward/timestamp.txt", b"2026-11-30 18:00:00.000000 UTC", (2026, 12, 1, 9, 30, 0)),
    ])
    assert r["layout"] == "folders"
    assert r["collected"] == {"alice": target(root, "alice"), "bob": target(root, "bob")}
    assert tag_of(target(root, "alice")) == "alice"
    # nbgrader's own timestamp.txt beside the notebook is the time it was handed in.
    assert r["timestamps"] == {"alice": utc(2026, 12, 1, 9), "bob": utc(2026, 11, 30, 18)}
    assert stamp(root, "bob") == dt.datetime(2026, 11, 30, 18)
    assert r["skipped"] == [
        "__MACOSX/alice/._feed_forward.ipynb: hidden or macOS metadata file",
        "alice/.ipynb_checkpoints/feed_forward-checkpoint.ipynb: hidden or macOS metadata file",
        "bob/feed_forward/timestamp.txt: not a notebook",
    ]


def test_two_notebooks_keep_the_newer_by_time_then_by_name(tmp_path):
    root, r = run(tmp_path, [
        ("dave/a_final.ipynb", notebook("final"), (2026, 12, 2, 9, 0, 0)),
        ("dave/b_draft.ipynb", notebook("draft"), (2026, 12, 1, 9, 0, 0)),
        ("erin/v1.ipynb", notebook("v1"), (2026, 12, 1, 9, 0, 0)),
        ("erin/v2.ipynb", notebook("v2"), (2026, 12, 1, 9, 0, 0)),  # same time: the later name wins
    ])
    assert tag_of(target(root, "dave")) == "final" and tag_of(target(root, "erin")) == "v2"
    assert r["timestamps"] == {"dave": utc(2026, 12, 2, 9), "erin": utc(2026, 12, 1, 9)}
    assert r["skipped"] == [
        "dave/b_draft.ipynb: dave handed in more than one notebook; kept the newer dave/a_final.ipynb",
        "erin/v1.ipynb: erin handed in more than one notebook; kept the newer erin/v2.ipynb",
    ]


def test_one_platform_like_name_does_not_change_the_layout(tmp_path):
    root, r = run(tmp_path, [
        ("alice/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 9, 0, 0)),
        ("bob/hw_1_2_feed_forward.ipynb", notebook("bob"), (2026, 12, 1, 9, 0, 0)),  # Canvas-like
        ("carol/feed_forward.ipynb", notebook("carol"), (2026, 12, 1, 9, 0, 0)),
    ])
    assert r["layout"] == "folders"
    assert sorted(r["collected"]) == ["alice", "bob", "carol"]


def test_a_zipped_submitted_folder_is_looked_through(tmp_path):
    root, r = run(tmp_path, [
        ("submitted/alice/feed_forward/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 9, 0, 0)),
        ("submitted/bob/feed_forward/feed_forward.ipynb", notebook("bob"), (2026, 12, 1, 9, 0, 0)),
    ])
    assert sorted(r["collected"]) == ["alice", "bob"]
    assert r["layout"] == "folders"


def test_notebook_suffix_is_case_insensitive(tmp_path):
    root, r = run(tmp_path, [("carol/Feed_Forward-final.IPYNB", notebook("carol"), (2026, 12, 1, 9, 0, 0))])
    assert r["collected"] == {"carol": target(root, "carol")}
    assert tag_of(target(root, "carol")) == "carol"
    assert r["skipped"] == []


def test_top_level_released_notebook_names_no_student(tmp_path):
    root, r = run(tmp_path, [
        ("Feed_Forward.ipynb", notebook("x"), (2026, 12, 1, 9, 0, 0)),
        ("alice/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 9, 0, 0)),
        ("feed_forward.ipynb", notebook("y"), (2026, 12, 1, 9, 0, 0)),
        ("feed_forward_v2.ipynb", notebook("z"), (2026, 12, 1, 9, 0, 0)),
        ("zoe_feed_forward.ipynb", notebook("zoe"), (2026, 12, 1, 9, 0, 0)),  # <student>_<anything>
    ])
    assert r["collected"] == {"alice": target(root, "alice"), "zoe": target(root, "zoe")}
    assert not (root / "submitted" / "feed").exists() and not (root / "submitted" / "Feed").exists()
    assert r["skipped"] == [
        "Feed_Forward.ipynb: no student id in the name",
        "feed_forward.ipynb: no student id in the name",
        "feed_forward_v2.ipynb: no student id in the name",
    ]


def test_a_folder_instead_of_a_zip_takes_mtimes(tmp_path):
    download = tmp_path / "download"
    (download / "alice").mkdir(parents=True)
    (download / "bob" / ASSIGNMENT).mkdir(parents=True)
    (download / "alice" / "feed_forward.ipynb").write_bytes(notebook("alice"))
    (download / "bob" / ASSIGNMENT / "mine.ipynb").write_bytes(notebook("bob"))
    (download / ".DS_Store").write_bytes(b"junk")
    when = utc(2026, 12, 1, 10, 30)
    for p in download.rglob("*.ipynb"):
        os.utime(p, (when.timestamp(), when.timestamp()))
    root = tmp_path / "course"
    root.mkdir()
    r = collect(root, ASSIGNMENT, NAME, download)
    assert r["layout"] == "folders"
    assert r["collected"] == {"alice": target(root, "alice"), "bob": target(root, "bob")}
    assert tag_of(target(root, "bob")) == "bob"
    assert r["timestamps"] == {"alice": when, "bob": when}
    assert (root / "submitted" / "alice" / ASSIGNMENT / "timestamp.txt").read_text() == \
        "2026-12-01 10:30:00.000000 UTC\n"
    assert r["skipped"] == [".DS_Store: hidden or macOS metadata file"]


def test_pattern_overrides_detection(tmp_path):
    # A Canvas zip, collected by Canvas user id instead of the name.
    root, r = run(tmp_path, [
        ("jonesbob_late_23456_78901_feed_forward.ipynb", notebook("bob"), (2026, 12, 3, 9, 0, 0)),
        ("readme.ipynb", notebook("readme"), (2026, 12, 3, 9, 0, 0)),
        ("smithalice_12345_67890_feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 10, 0, 0)),
    ], pattern=r"_(?P<student>\d+)_\d+_[^/]*$")
    assert r["layout"] == "pattern"
    assert r["collected"] == {"12345": target(root, "12345"), "23456": target(root, "23456")}
    assert r["late"] == {"12345": False, "23456": False}  # only Canvas's own layout reads the marker
    assert r["timestamps"]["12345"] == utc(2026, 12, 1, 10)
    assert stamp(root, "23456") == dt.datetime(2026, 12, 3, 9)
    assert r["skipped"] == ["readme.ipynb: does not match --pattern '_(?P<student>\\\\d+)_\\\\d+_[^/]*$'"]


def test_zip_slip_names_are_never_written(tmp_path):
    root = tmp_path / "course" / "deep"
    root.mkdir(parents=True)
    evil = [
        "../evil.ipynb",
        "../../evil.ipynb",
        "alice/../../../evil.ipynb",
        f"{tmp_path}/absolute.ipynb",
        "..\\windows.ipynb",
        "C:/drive.ipynb",
    ]
    archive = make_zip(tmp_path / "download.zip",
                       [(n, notebook("evil"), (2026, 12, 1, 9, 0, 0)) for n in evil]
                       + [("alice/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 9, 0, 0))])
    r = collect(root, ASSIGNMENT, NAME, archive)
    assert r["collected"] == {"alice": target(root, "alice")}
    assert r["skipped"] == [f"{n}: unsafe path (absolute, or with ..)" for n in sorted(evil)]
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted([archive, target(root, "alice"), target(root, "alice").parent / "timestamp.txt"])


def test_odd_student_ids_are_skipped_not_used(tmp_path):
    root, r = run(tmp_path, [
        ("-rf/feed_forward.ipynb", notebook("dash"), (2026, 12, 1, 9, 0, 0)),
        ("alice/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 9, 0, 0)),
    ])
    assert list(r["collected"]) == ["alice"]
    assert r["skipped"] == ["-rf/feed_forward.ipynb: no usable student id (got '-rf')"]


def test_too_large_a_notebook_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(collect_module, "MAX_NOTEBOOK_BYTES", 2**20)
    root, r = run(tmp_path, [
        ("alice/feed_forward.ipynb", notebook("alice"), (2026, 12, 1, 9, 0, 0)),
        ("bob/feed_forward.ipynb", b" " * (2**20 + 1), (2026, 12, 1, 9, 0, 0)),
    ])
    assert list(r["collected"]) == ["alice"]
    assert r["skipped"] == ["bob/feed_forward.ipynb: larger than 1 MB"]


def test_no_known_time_writes_no_timestamp_and_removes_a_stale_one(tmp_path):
    root, first = run(tmp_path, [("alice/feed_forward.ipynb", notebook("one"), (2026, 12, 1, 9, 0, 0))])
    assert stamp(root, "alice") == dt.datetime(2026, 12, 1, 9)
    # 1980-01-01 00:00 is what zip tools write when they know no time.
    root, again = run(tmp_path, [("alice/feed_forward.ipynb", notebook("two"), (1980, 1, 1, 0, 0, 0))])
    assert again["timestamps"] == {"alice": None}
    assert not (target(root, "alice").parent / "timestamp.txt").exists()
    assert tag_of(target(root, "alice")) == "two"


# ------------------------------------------------------------------- errors

def one_line_error(*args, **kwargs) -> str:
    with pytest.raises(ValueError) as e:
        collect(*args, **kwargs)
    message = str(e.value)
    assert "\n" not in message and message.strip() == message
    return message


def test_missing_archive(tmp_path):
    message = one_line_error(tmp_path, ASSIGNMENT, NAME, tmp_path / "nope.zip")
    assert message.startswith(f"no such file or folder: {tmp_path / 'nope.zip'}")
    assert "pass the zip" in message


def test_not_a_zip(tmp_path):
    bogus = tmp_path / "download.zip"
    bogus.write_bytes(b"Rar!\x1a\x07\x00 not a zip")
    message = one_line_error(tmp_path, ASSIGNMENT, NAME, bogus)
    assert message.startswith(f"{bogus} is not a zip file or a folder")
    assert "unpack it into a folder" in message


@pytest.mark.parametrize("pattern, problem", [
    ("(?P<student>[a-z+", "is not a valid regular expression"),
    (r"^(\w+)/", "has no group named 'student'"),
])
def test_bad_pattern(tmp_path, pattern, problem):
    archive = make_zip(tmp_path / "download.zip", [("alice/feed_forward.ipynb", notebook("a"), (2026, 12, 1, 9))])
    message = one_line_error(tmp_path, ASSIGNMENT, NAME, archive, pattern)
    assert message.startswith(f"--pattern {pattern!r} {problem}")
    assert "(?P<student>" in message
    assert not (tmp_path / "submitted").exists()


def test_unrecognised_layout_names_an_entry_and_the_fix(tmp_path):
    archive = make_zip(tmp_path / "download.zip", [
        ("feed_forward.ipynb", notebook("a"), (2026, 12, 1, 9, 0, 0)),
        ("notes.ipynb", notebook("b"), (2026, 12, 1, 9, 0, 0)),
    ])
    message = one_line_error(tmp_path, ASSIGNMENT, NAME, archive)
    assert "feed_forward.ipynb: no student id in the name" in message
    assert "pass --pattern" in message and "e.g. --pattern '^(?P<student>[^/]+)/'" in message
    assert not (tmp_path / "submitted").exists()


def test_a_pattern_that_matches_nothing(tmp_path):
    archive = make_zip(tmp_path / "download.zip", [("alice/feed_forward.ipynb", notebook("a"), (2026, 12, 1, 9))])
    message = one_line_error(tmp_path, ASSIGNMENT, NAME, archive, r"^hw1-(?P<student>\w+)\.ipynb$")
    assert "gave no notebook a student" in message and "alice/feed_forward.ipynb" in message
    assert "e.g. --pattern" in message

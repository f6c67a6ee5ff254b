"""The planning half of the minimal file view: which covers go up, in what order, and what
each puts back (the mounting half is exercised by ``test_hostile``)."""

from __future__ import annotations

from nnrag.sandbox._fsview import CoverPlan, plan_covers, private_paths


def test_covers_go_outermost_first_and_bind_back_only_outermost_needs() -> None:
    needed = ["/root/.pyenv/versions/3", "/root/.pyenv/versions/3/lib", "/work/repo"]
    plans = plan_covers(["/root/.nnrag", "/tmp", "/root"], needed)
    assert plans == [
        CoverPlan("/root", ("/root/.pyenv/versions/3",)),
        CoverPlan("/tmp", ()),
        CoverPlan("/root/.nnrag", ()),
    ]


def test_a_needed_cover_is_skipped_and_one_inside_a_needed_path_still_applies() -> None:
    plans = plan_covers(["/work/repo", "/work/repo/.nnrag"], ["/work/repo"])
    assert plans == [CoverPlan("/work/repo/.nnrag", ())]


def test_private_paths_follow_the_callers_environment() -> None:
    env = {"HOME": "/nonexistent-home", "NNRAG_DATA": "/nonexistent-data"}
    paths = private_paths(env)
    assert {"/root", "/tmp", "/nonexistent-home", "/nonexistent-home/.nnrag",
            "/nonexistent-data"} <= set(paths)  # fmt: skip
    assert private_paths({"HOME": "/h", "NNRAG_HOME": "/s"})[-1] == "/s"

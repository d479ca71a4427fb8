def rev_parse_short(length: int = 12) -> list[str]:
    return ["git", "rev-parse", f"--short={length}", "HEAD"]


def status_porcelain() -> list[str]:
    return ["git", "status", "--porcelain", "--untracked-files=normal"]


def image_tag(sha: str, porcelain: str) -> str:
    """Tag = short git sha, marked `-dirty` when the work tree has uncommitted changes."""
    return f"{sha.strip()}-dirty" if porcelain.strip() else sha.strip()


def commit_time() -> list[str]:
    """HEAD's commit time (ISO 8601, UTC): the image's `created`, as SOURCE_DATE_EPOCH does for
    reproducible builds, so an unchanged tree rebuilds to the same image id."""
    return ["git", "log", "-1", "--format=%cd", "--date=format-local:%Y-%m-%dT%H:%M:%SZ"]

def rev_parse_short(length: int = 12) -> list[str]:
    return ["git", "rev-parse", f"--short={length}", "HEAD"]


def status_porcelain() -> list[str]:
    return ["git", "status", "--porcelain", "--untracked-files=normal"]


def image_tag(sha: str, porcelain: str) -> str:
    """Tag = short git sha, marked `-dirty` when the work tree has uncommitted changes."""
    return f"{sha.strip()}-dirty" if porcelain.strip() else sha.strip()

"""The one check of a command's output targets, run before any work: no two outputs on one path, each file's
directory writable, and an ``--image`` path with a known suffix and a browser for kaleido."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["check_targets"]


def check_targets(
    files: Mapping[str, str | None], image: str | None = None, report: str | None = None
) -> None:
    """Check ``files`` ({flag: path or None}) and the ``--image`` path ``image`` (see the module docstring);
    raises :class:`pipesim.errors.InputError` naming the flag. ``report`` names what the command prints on
    standard output (its tables or JSON): a file sent to ``-`` would be mixed into it, so it is refused."""
    from pipesim.errors import InputError
    from pipesim.io.atomic import STDOUT, check_distinct_outputs, check_output_path

    if report is not None:
        for flag, path in {**files, "--image": image}.items():
            if path == STDOUT:
                raise InputError(
                    f"{flag} - writes to standard output, where this command prints {report}; give {flag} a "
                    "file name"
                )

    check_distinct_outputs({**files, "--image": image})
    for path in files.values():
        if path is not None:
            check_output_path(path)
    if image is not None:
        from pipesim.figures.static import check_image_target

        check_image_target(image)

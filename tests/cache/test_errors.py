"""cache.errors.describe_os_error: one actionable line for operating-system errors."""

import errno
import os

from cache.errors import describe_os_error


def test_disk_full_read_only_and_permission_get_a_hint_and_the_file():
    full = describe_os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/s.zarr/c/0"))
    assert full.startswith("No space left on device (/s.zarr/c/0): the disk is full")
    assert "run the same command again" in full
    ro = describe_os_error(OSError(errno.EROFS, os.strerror(errno.EROFS), "/data/BSD10k/cache.zarr"))
    assert "(/data/BSD10k/cache.zarr)" in ro and "--store PATH" in ro
    assert "--store PATH" in describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x"))


def test_other_errors_are_named_without_a_hint():
    assert (
        describe_os_error(OSError(errno.EIO, "Input/output error", "/disk/f"))
        == "Input/output error (/disk/f)"
    )
    assert describe_os_error(OSError("plain message")) == "plain message"

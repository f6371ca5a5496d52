"""trackio_shim.tensorboard.patch()/unpatch(): the writers' constructors are wrapped once and restored."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")


def test_patch_wraps_both_writers_once_and_unpatch_restores_them() -> None:
    import tensorboardX.event_file_writer as tbx
    from tensorboard.summary.writer import event_file_writer as tb

    import trackio_shim.tensorboard as shim_tb

    originals = (tb.EventFileWriter.__init__, tbx.EventFileWriter.__init__)
    try:
        shim_tb.patch()
        wrapped = (tb.EventFileWriter.__init__, tbx.EventFileWriter.__init__)
        assert wrapped[0] is not originals[0] and wrapped[1] is not originals[1]
        shim_tb.patch()  # a second patch() changes nothing
        assert (tb.EventFileWriter.__init__, tbx.EventFileWriter.__init__) == wrapped
    finally:
        shim_tb.unpatch()
    assert (tb.EventFileWriter.__init__, tbx.EventFileWriter.__init__) == originals


def test_patch_with_nothing_to_hook_warns() -> None:
    import trackio_shim.tensorboard as shim_tb

    try:
        with pytest.warns(UserWarning, match="none was hooked"):
            shim_tb.patch(pytorch=False, tensorboard_x=False)
    finally:
        shim_tb.unpatch()
